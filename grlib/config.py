"""Run settings: one dataclass with the defaults, validated, saved with every run."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ._checks import check_choice, check_int, check_real
from .data import dataset_names
from .losses import get_loss
from .models import model_names
from .noise import NOISE_KINDS

__all__ = ["RunConfig", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run.

    The defaults are the embedded demonstration: ``digits`` with 40% symmetric
    noise, an MLP 64-256-256-10, SGD (lr 0.05, momentum 0.9, batch 64) for 100
    epochs, weight decay 5e-4, GR with ``lam=0.5, beta=8`` (capped, method.md).
    """

    dataset: str = "digits"          # digits | moons | fashion_mnist
    n_train: int | None = None       # stratified subset of the training split (None: all)
    val_fraction: float = 0.0        # held-out share of the (noisy) training split
    split_seed: int = 0              # seed of the train/val/test splits (fixed: one test set across seeds)
    noise: str = "symmetric"         # none | symmetric | pair
    noise_rate: float = 0.4          # probability a training label is corrupted, [0, 1)
    loss: str = "gr"                 # ce | mae | mse | gce | sce | nce+rce | gr
    loss_params: dict = field(default_factory=lambda: {"lam": 0.5, "beta": 8.0})
    model: str = "mlp"               # mlp | cnn
    hidden: tuple = (256, 256)       # MLP hidden widths
    epochs: int = 100
    batch_size: int = 64             # examples per step; an epoch is ceil(n / batch_size) near-equal batches
    optimizer: str = "sgd"           # sgd | adam
    lr: float = 0.05
    momentum: float = 0.9            # SGD only
    weight_decay: float = 5e-4       # L2; bounds the margins GR keeps pushing (the authors used 5e-4)
    schedule: str = "constant"       # constant | cosine | step (x0.1 at 50% and 75% of epochs)
    seed: int = 0                    # noise, initialisation and shuffling
    device: str = "auto"             # auto (CUDA if available) | cpu | cuda[:N]
    record: bool = True              # per-example records from the training forward passes
    eval_train: bool = True          # an extra evaluation pass over the training set each epoch

    def __post_init__(self):
        check_choice("dataset", self.dataset, dataset_names())
        if self.n_train is not None:
            check_int("n_train", self.n_train, low=1)
        check_real("val_fraction", self.val_fraction, low=0.0, high=1.0, high_open=True)
        check_int("split_seed", self.split_seed, low=0)
        check_choice("noise", self.noise, NOISE_KINDS)
        check_real("noise_rate", self.noise_rate, low=0.0, high=1.0, high_open=True)
        if not isinstance(self.loss_params, dict):
            raise TypeError(f"loss_params must be a dict, got {type(self.loss_params).__name__}")
        get_loss(self.loss, **self.loss_params)  # validates the name and the parameters
        check_choice("model", self.model, model_names())
        object.__setattr__(self, "hidden", tuple(check_int("hidden width", h, low=1) for h in self.hidden))
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("seed", self.seed, low=0)
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string ('auto', 'cpu', 'cuda[:N]'), got {self.device!r}")
        for flag in ("record", "eval_train"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown run setting(s) {unknown}; allowed: {sorted(names)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    def replace(self, **changes) -> "RunConfig":
        return self.from_dict({**self.to_dict(), **changes})

    @property
    def label(self) -> str:
        """A short human label, e.g. ``gr(lam=0.5, beta=8)``."""
        if not self.loss_params:
            return self.loss
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.loss_params.items())
        return f"{self.loss}({inner})"
