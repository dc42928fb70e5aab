"""Run settings: one dataclass with the defaults, validated, saved with every run."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ._checks import check_choice, check_int, check_real
from .losses import get_loss
from .models import model_names
from .noise import NOISE_KINDS

__all__ = ["RunConfig", "OPTIMIZERS", "SCHEDULES", "PROTOCOLS", "PROTOCOL_PRESETS", "DEFAULT_GR_PARAMS"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
PROTOCOLS = ("none", "paper")

#: grlib's one default GR setting (GRLoss(), RunConfig(), the notebooks, the tuner, `make compare`):
#: lambda 1 is the paper's best at 40% noise on CIFAR-10; beta 12 is in its grid for lambda 1.
DEFAULT_GR_PARAMS = {"lam": 1.0, "beta": 12.0}

#: What each protocol sets when the setting is not given explicitly.  "none" is grlib's quick
#: default (what the tests use); "paper" is the authors' training protocol (their solver files and
#: data layer, see docs/method.md): SGD lr 0.1, momentum 0.9, weight decay 5e-4, the learning rate
#: divided by 10 at 50% and 75% of training, networks with BatchNorm, and data augmentation.
PROTOCOL_PRESETS = {
    "none": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "constant", "batchnorm": False,
             "augment": False},
    "paper": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "step", "batchnorm": True,
              "augment": True},
}
_PRESET_FIELDS = tuple(PROTOCOL_PRESETS["none"])
_AUG_FIELDS = ("aug_shift", "aug_flip", "aug_noise")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run.

    The defaults (``protocol="none"``) are the quick embedded demonstration:
    ``digits`` with 40% symmetric noise, an MLP 64-256-256-10, SGD (lr 0.05,
    momentum 0.9, weight decay 5e-4, batch 64, constant rate) for 100 epochs,
    no augmentation, GR with ``lam=1, beta=12`` (capped, method.md).

    ``protocol="paper"`` presets the authors' protocol: lr 0.1, momentum 0.9,
    weight decay 5e-4, the step schedule (x0.1 at 50% and 75% of the epochs),
    BatchNorm and augmentation (the data set's default shifts / flips / input
    noise, see :func:`grlib.augment.augment_for`).  A setting given
    explicitly overrides the preset; :meth:`to_dict` holds the concrete values
    that ran.
    """

    dataset: str = "digits"          # digits | moons | fashion_mnist, or your own data's name (with train(data=...))
    n_train: int | None = None       # stratified subset of the training split (None: all)
    val_fraction: float = 0.0        # held-out share of the (noisy) training split
    split_seed: int = 0              # seed of the train/val/test splits (fixed: one test set across seeds)
    noise: str = "symmetric"         # none | symmetric | pair
    noise_rate: float = 0.4          # probability a training label is corrupted, [0, 1)
    outlier_fraction: float = 0.0    # share of training inputs replaced by out-of-distribution inputs (labels kept)
    outlier_source: str = "auto"     # auto | fashion_mnist | digits | noise | gaussian (see grlib.corruption)
    corruption_fraction: float = 0.0  # share of training inputs with heavy perceptual noise (labels kept)
    corruption_kind: str = "mixed"   # gaussian | blur | occlusion | mixed
    corruption_severity: float = 0.5  # (0, 1]
    loss: str = "gr"                 # ce | mae | mse | gce | sce | nce+rce | gr
    loss_params: dict | None = None  # None: (lam, beta) = DEFAULT_GR_PARAMS for "gr", the loss's own defaults else
    model: str = "mlp"               # mlp | cnn (or a user's model: train(model=...))
    hidden: tuple = (256, 256)       # MLP hidden widths
    epochs: int = 100
    batch_size: int = 64             # examples per step; an epoch is ceil(n / batch_size) near-equal batches
    optimizer: str = "sgd"           # sgd | adam | adamw (or train(optimizer=...))
    protocol: str = "none"           # none | paper: presets for the settings below left at None
    lr: float | None = None          # none: 0.05, paper: 0.1
    momentum: float | None = None    # SGD only; 0.9 in both presets
    weight_decay: float | None = None  # L2 (AdamW: decoupled); 5e-4 in both presets (the authors')
    schedule: str | None = None      # constant | cosine | step (x0.1 at 50% and 75% of epochs); paper: step
    batchnorm: bool | None = None    # BatchNorm in grlib's models; paper: True
    augment: bool | None = None      # the data set's augmentation on the training pass; paper: True
    aug_shift: int | None = None     # random shift in pixels (None: the data set's default)
    aug_flip: bool | None = None     # random horizontal flips (None: the data set's default; refused for digits)
    aug_noise: float | None = None   # std of Gaussian input noise on standardised features (None: default)
    seed: int = 0                    # noise, initialisation, shuffling and augmentation
    device: str = "auto"             # auto (CUDA if available) | cpu | cuda[:N]
    record: bool = True              # per-example records from the training forward passes
    eval_train: bool = True          # an extra evaluation pass over the training set each epoch
    _given: frozenset = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise TypeError(f"dataset must be a data set name (a non-empty string), got {self.dataset!r}")
        if self.n_train is not None:
            check_int("n_train", self.n_train, low=1)
        check_real("val_fraction", self.val_fraction, low=0.0, high=1.0, high_open=True)
        check_int("split_seed", self.split_seed, low=0)
        check_choice("noise", self.noise, NOISE_KINDS)
        check_real("noise_rate", self.noise_rate, low=0.0, high=1.0, high_open=True)
        from .corruption import CORRUPTION_KINDS, OUTLIER_SOURCES

        check_real("outlier_fraction", self.outlier_fraction, low=0.0, high=1.0, high_open=True)
        check_choice("outlier_source", self.outlier_source, OUTLIER_SOURCES)
        check_real("corruption_fraction", self.corruption_fraction, low=0.0, high=1.0, high_open=True)
        check_choice("corruption_kind", self.corruption_kind, CORRUPTION_KINDS)
        check_real("corruption_severity", self.corruption_severity, low=0.0, high=1.0, low_open=True)
        touched = (self.noise_rate if self.noise != "none" else 0.0) + self.outlier_fraction + self.corruption_fraction
        if touched >= 1.0:
            raise ValueError(f"noise_rate + outlier_fraction + corruption_fraction = {touched:g} must be below 1 "
                             "(the three kinds are disjoint)")
        if self.loss_params is None:
            gr = isinstance(self.loss, str) and self.loss.lower() == "gr"
            object.__setattr__(self, "loss_params", dict(DEFAULT_GR_PARAMS) if gr else {})
        if not isinstance(self.loss_params, dict):
            raise TypeError(f"loss_params must be a dict, got {type(self.loss_params).__name__}")
        get_loss(self.loss, **self.loss_params)  # validates the name and the parameters
        check_choice("model", self.model, model_names())  # your own model: train(model=...)
        if isinstance(self.hidden, (str, bytes)) or not hasattr(self.hidden, "__iter__"):
            raise TypeError(f"hidden must be a sequence of layer widths, e.g. (256, 256); got {self.hidden!r} "
                            f"({type(self.hidden).__name__})")
        object.__setattr__(self, "hidden", tuple(check_int("hidden width", h, low=1) for h in self.hidden))
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("protocol", self.protocol, PROTOCOLS)
        # presets: a field left at None takes the protocol's value; remember what was given explicitly
        given = set(self._given) | {k for k in _PRESET_FIELDS + _AUG_FIELDS if getattr(self, k) is not None}
        object.__setattr__(self, "_given", frozenset(given))
        for k in _PRESET_FIELDS:
            if getattr(self, k) is None:
                object.__setattr__(self, k, PROTOCOL_PRESETS[self.protocol][k])
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        for flag in ("batchnorm", "augment", "record", "eval_train"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if self.aug_shift is not None:
            check_int("aug_shift", self.aug_shift, low=0)
        if self.aug_flip is not None and not isinstance(self.aug_flip, bool):
            raise TypeError(f"aug_flip must be True, False or None (the data set's default), got {self.aug_flip!r}")
        if self.aug_noise is not None:
            check_real("aug_noise", self.aug_noise, low=0.0)
        if self.augment:  # the concrete augmentation that runs (the data set's defaults filled in)
            from .augment import AUGMENT_DEFAULTS

            defaults = AUGMENT_DEFAULTS.get(self.dataset, {"shift": 0, "flip": False, "noise": 0.0})
            for k, d in zip(_AUG_FIELDS, ("shift", "flip", "noise")):
                if getattr(self, k) is None:
                    object.__setattr__(self, k, defaults[d])
            if self.aug_flip and self.dataset == "digits":
                raise ValueError("aug_flip=True is refused for dataset='digits': a mirrored digit is another digit "
                                 "or none; allowed: aug_flip=False or None")
        check_int("seed", self.seed, low=0)
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string ('auto', 'cpu', 'cuda[:N]'), got {self.device!r}")

    def to_dict(self) -> dict:
        """The concrete settings (presets expanded), JSON-ready."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "_given"}
        d["hidden"] = list(self.hidden)
        d["loss_params"] = dict(self.loss_params)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """A config from :meth:`to_dict`'s output (every setting then counts as given explicitly)."""
        if not isinstance(d, dict):
            raise TypeError(f"from_dict needs a dict of settings, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"_given"}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown run setting(s) {unknown}; allowed: {sorted(names)}")
        d = dict(d)
        if "hidden" in d and isinstance(d["hidden"], list):
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes``; preset settings that were not given explicitly follow a new ``protocol``."""
        names = {f.name for f in dataclasses.fields(self)} - {"_given"}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown run setting(s) {unknown}; allowed: {sorted(names)}")
        d = {k: getattr(self, k) for k in names}
        for k in _PRESET_FIELDS + _AUG_FIELDS:
            if k not in self._given:
                d[k] = None  # derived: recomputed from the (possibly new) protocol / data set
        d.update(changes)
        given = (set(self._given) | {k for k, v in changes.items() if v is not None}) - \
            {k for k, v in changes.items() if v is None}
        return RunConfig(**d, _given=frozenset(given & set(_PRESET_FIELDS + _AUG_FIELDS)))

    @property
    def label(self) -> str:
        """A short human label, e.g. ``gr(lam=1, beta=12)``."""
        if not self.loss_params:
            return self.loss
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.loss_params.items())
        return f"{self.loss}({inner})"

    @property
    def explicit(self) -> frozenset:
        """The preset settings given explicitly (the rest came from ``protocol``)."""
        return self._given

