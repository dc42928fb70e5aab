"""The tuner's controls: which losses it offers, the ranges of its sliders, and one validated settings object."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .._checks import check_choice, check_int, check_real
from ..config import RunConfig
from ..emphasis import emphasis_mode
from ..noise import NOISE_KINDS

__all__ = ["TUNER_LOSSES", "RANGES", "TunerSettings", "loss_params"]

#: Losses the tuner offers (name -> button label).
TUNER_LOSSES = {"ce": "CE", "mae": "MAE", "gce": "GCE", "gr": "GR"}

#: Ranges of the controls: ``name -> (min, max, step)``.  The sliders clamp to
#: them; the tuner's methods refuse values outside them with a ValueError.
RANGES = {
    "lam": (0.0, 10.0, 0.1),
    "beta": (0.0, 30.0, 0.5),
    "q": (0.05, 1.0, 0.05),
    "noise_rate": (0.0, 0.8, 0.05),
    "epochs": (1, 200, 1),
}


@dataclass(frozen=True)
class TunerSettings:
    """The values of the tuner's controls, validated against :data:`RANGES`.

    lam:        GR emphasis mode, in [0, 10]; the EDF peaks at ``lam / (1 + lam)``.
    beta:       GR emphasis spread, in [0, 30]; 0 gives every example the same weight.
    loss:       ``ce``, ``mae``, ``gce`` or ``gr``.
    q:          GCE's exponent, in [0.05, 1]; mode ``q / (1 + q)``.
    noise:      ``none``, ``symmetric`` or ``pair`` label noise on ``digits``.
    noise_rate: share of corrupted training labels, in [0, 0.8].
    epochs:     epochs of the "Train" run, in [1, 200].
    seed:       noise, initialisation and shuffling seed (>= 0).

    The GR default ``(lam, beta) = (1, 12)`` is the project's one default
    (``grlib.GRLoss()``, ``grlib.RunConfig()``, the notebooks, ``grlib
    compare``): lam 1 is the paper's best at 40% noise on CIFAR-10 (emphasis
    mode ``p* = 0.5``), and beta 12 is in its grid for lam 1.
    """

    lam: float = 1.0
    beta: float = 12.0
    loss: str = "gr"
    q: float = 0.7
    noise: str = "symmetric"
    noise_rate: float = 0.4
    epochs: int = 20
    seed: int = 0

    def __post_init__(self):
        for name in ("lam", "beta", "q", "noise_rate"):
            lo, hi, _ = RANGES[name]
            object.__setattr__(self, name, check_real(name, getattr(self, name), low=lo, high=hi))
        check_choice("loss", self.loss, TUNER_LOSSES)
        check_choice("noise", self.noise, NOISE_KINDS)
        lo, hi, _ = RANGES["epochs"]
        object.__setattr__(self, "epochs", check_int("epochs", self.epochs, low=lo, high=hi))
        object.__setattr__(self, "seed", check_int("seed", self.seed, low=0))

    @property
    def loss_params(self) -> dict:
        """The selected loss's parameters for :func:`grlib.get_loss` / :func:`grlib.emphasis_curve`."""
        return loss_params(self.loss, self)

    @property
    def label(self) -> str:
        """e.g. ``gr(lam=1, beta=12)``."""
        from ..plotting import method_label

        return method_label(self.loss, self.loss_params)

    @property
    def mode(self) -> float:
        """The selected loss's emphasis mode ``p*`` (:func:`grlib.emphasis_mode`)."""
        return emphasis_mode(self.loss, **self.loss_params)

    def run_config(self, **overrides) -> RunConfig:
        """The :class:`RunConfig` of the "Train" run: ``digits``, the chosen noise, loss and epochs."""
        cfg = RunConfig(dataset="digits", noise=self.noise, noise_rate=self.noise_rate, loss=self.loss,
                        loss_params=self.loss_params, epochs=self.epochs, seed=self.seed, record=True,
                        eval_train=False)
        return cfg.replace(**overrides) if overrides else cfg

    def replace(self, **changes) -> "TunerSettings":
        """A copy with ``changes`` (validated); unknown names raise TypeError listing the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise TypeError(f"unknown tuner setting(s) {unknown}; allowed: {allowed}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def loss_params(loss: str, settings) -> dict:
    """The parameters of ``loss`` taken from ``settings`` (anything with ``lam``, ``beta``, ``q``)."""
    if loss == "gr":
        return {"lam": float(settings.lam), "beta": float(settings.beta)}
    if loss == "gce":
        return {"q": float(settings.q)}
    return {}
