"""The tuner's pure computations: emphasis curves over ``p``, a fixed reference batch, a loss's weights on it.

* :func:`curve_data`: the emphasis of the selected loss and of the baselines
  over a grid of ``p`` (each a density over ``p``, :func:`grlib.emphasis_curve`
  and :func:`grlib.normalise_over_p`), with the emphasis mode
  (:func:`grlib.emphasis_mode`) and the grid's argmax.
* :func:`reference_batch`: a fixed batch of ``digits`` training examples and the
  logits of a model trained briefly with CE on noisy labels (the model "as it
  is early in training", when clean examples already have a high ``p`` and
  mislabelled ones a low one).
* :func:`batch_weights`: the weight each example of that batch would get under
  a loss, from ``get_loss(...).details(logits, labels)`` (normalised over the
  batch, sums to 1; higher means emphasised more), with the clean/mislabelled
  mask next to it.

No widgets and no drawing here: the headless notebooks and the tests call these directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_choice, check_int, check_real
from ..config import RunConfig
from ..data import Dataset, load_dataset
from ..emphasis import emphasis_curve, normalise_over_p
from ..losses import get_loss
from ..noise import NOISE_KINDS
from ..results import RunResult
from ..train import train
from .settings import RANGES, TUNER_LOSSES, TunerSettings, loss_params

__all__ = ["CurveData", "curve_data", "ReferenceBatch", "reference_batch", "BatchWeights", "batch_weights",
           "GRID_POINTS"]

#: Points of the ``p`` grid of :func:`curve_data`.
GRID_POINTS = 1001


@dataclass(frozen=True)
class CurveData:
    """Emphasis curves over ``p``, each normalised to a density (integrates to 1 over [0, 1]).

    p:         the grid, float64 ``[G]`` from 0 to 1.
    curves:    ``name -> float64 [G]`` for ``ce``, ``mae``, ``gce`` and ``gr`` (at the given parameters).
    params:    ``name -> the parameters`` each curve was drawn with.
    selected:  the selected loss's name (a key of ``curves``).
    mode:      the selected loss's emphasis mode ``p*`` (theory, :func:`grlib.emphasis_mode`).
    peak:      the grid point where the selected curve is largest (``mode`` up to the grid step,
               except for flat curves: GR with ``beta = 0``).
    flat:      True when the selected curve is constant (GR with ``beta = 0``: uniform weights).
    """

    p: np.ndarray
    curves: dict
    params: dict
    selected: str
    mode: float
    peak: float
    flat: bool

    @property
    def values(self) -> np.ndarray:
        """The selected loss's curve."""
        return self.curves[self.selected]


def curve_data(loss: str = "gr", *, lam: float = TunerSettings.lam, beta: float = TunerSettings.beta,
               q: float = TunerSettings.q, points: int = GRID_POINTS) -> CurveData:
    """Emphasis densities over ``p`` of CE, MAE, GCE(q) and GR(lam, beta), and the selected loss's mode.

    Each curve is the loss's logit-gradient magnitude as a function of ``p``
    (GR: its EDF ``exp(beta p^lam (1-p))``), scaled to integrate to 1 over
    ``p`` in [0, 1] (the paper's derivative normalisation), so curves of
    different losses compare as densities.
    """
    s = TunerSettings(lam=lam, beta=beta, loss=loss, q=q)
    points = check_int("points", points, low=3)
    grid = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    curves, params = {}, {}
    for name in TUNER_LOSSES:
        params[name] = loss_params(name, s)
        values = emphasis_curve(name, grid, **params[name]).to(torch.float64)
        curves[name] = normalise_over_p(values, grid).numpy()
    sel = curves[s.loss]
    flat = bool(np.ptp(sel) <= 1e-12 * max(1.0, float(np.abs(sel).max())))
    return CurveData(p=grid.numpy(), curves=curves, params=params, selected=s.loss, mode=s.mode,
                     peak=float(grid[int(np.argmax(sel))]), flat=flat)


@dataclass(frozen=True)
class ReferenceBatch:
    """A fixed batch of training examples as seen by a model trained on noisy labels.

    indices:     int64 ``[B]``, positions in the ``digits`` training split (the same for every noise setting
                 with one seed).
    logits:      float32 ``[B, C]``, the reference model's logits (eval mode, no gradient).
    labels:      int64 ``[B]``, the given (possibly corrupted) labels.
    true_labels: int64 ``[B]``.
    is_noisy:    bool ``[B]``, True where the given label is wrong.
    noise, noise_rate, seed, epochs: how the reference model was made (CE, SGD, ``epochs`` epochs).
    test_acc:    the reference model's test accuracy.
    """

    indices: np.ndarray
    logits: torch.Tensor
    labels: torch.Tensor
    true_labels: np.ndarray
    is_noisy: np.ndarray
    noise: str
    noise_rate: float
    seed: int
    epochs: int
    test_acc: float


def reference_batch(noise: str = "symmetric", noise_rate: float = 0.4, *, seed: int = 0, epochs: int = 5,
                    batch_size: int = 256, data: Dataset | None = None) -> ReferenceBatch:
    """Train CE briefly on noisy ``digits`` labels and return a fixed batch's logits and labels.

    The batch (``batch_size`` training examples drawn with ``seed``) is the
    same for every noise setting; only the labels and the model change.
    A few epochs (default 5, well under a second on a CPU) give a model that
    fits the clean examples but has not yet memorised the mislabelled ones,
    which is when the choice of emphasis matters most.
    """
    check_choice("noise", noise, NOISE_KINDS)
    lo, hi, _ = RANGES["noise_rate"]
    noise_rate = check_real("noise_rate", noise_rate, low=lo, high=hi)
    seed = check_int("seed", seed, low=0)
    epochs = check_int("epochs", epochs, low=1)
    batch_size = check_int("batch_size", batch_size, low=2)
    if data is None:
        data = load_dataset("digits")
    cfg = RunConfig(dataset="digits", noise=noise, noise_rate=noise_rate, loss="ce", loss_params={}, epochs=epochs,
                    seed=seed, record=False, eval_train=False)
    res = train(cfg, data=data, progress=False)
    n = len(res.y_given)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(batch_size, n), replace=False))
    model = res.model
    device = next(model.parameters()).device
    with torch.no_grad():
        model.eval()
        logits = model(torch.as_tensor(data.x_train[idx], device=device)).float().cpu()
    return ReferenceBatch(indices=idx, logits=logits, labels=torch.as_tensor(res.y_given[idx]),
                          true_labels=np.asarray(res.y_true[idx]), is_noisy=np.asarray(res.is_noisy[idx], bool),
                          noise=noise, noise_rate=noise_rate, seed=seed, epochs=epochs,
                          test_acc=float(res.history["test_acc"][-1]))


@dataclass(frozen=True)
class BatchWeights:
    """What a loss would do with a :class:`ReferenceBatch` (all ``[B]``).

    p:        probability of the given label, in [0, 1].
    weight:   emphasis normalised over the batch (sums to 1); higher = emphasised more.
    is_noisy: the ground-truth mask of mislabelled examples.
    loss, params: the loss it was computed with.
    """

    p: np.ndarray
    weight: np.ndarray
    is_noisy: np.ndarray
    loss: str
    params: dict

    @property
    def noisy_share(self) -> float:
        """Share of the batch that is mislabelled."""
        return float(self.is_noisy.mean())

    @property
    def noisy_weight_share(self) -> float:
        """Share of the total weight that goes to mislabelled examples (compare with :attr:`noisy_share`)."""
        return float(self.weight[self.is_noisy].sum() / self.weight.sum())

    def as_result(self) -> RunResult:
        """The batch as a one-epoch :class:`RunResult` (records ``weight`` and ``p``), for the plot helpers."""
        n = self.weight.size
        return RunResult(config={"loss": self.loss, "loss_params": dict(self.params)}, y_given=np.zeros(n, np.int64),
                         y_true=np.zeros(n, np.int64), is_noisy=self.is_noisy, num_classes=2,
                         records={"weight": self.weight[None, :].astype(np.float32),
                                  "p": self.p[None, :].astype(np.float32)}, epochs_completed=1)


def batch_weights(batch: ReferenceBatch, loss: str, **params) -> BatchWeights:
    """The per-example weights ``get_loss(loss, **params).details(logits, labels).weight`` on ``batch``."""
    out = get_loss(loss, **params).details(batch.logits, batch.labels)
    return BatchWeights(p=out.p.double().numpy(), weight=out.weight.double().numpy(), is_noisy=batch.is_noisy,
                        loss=loss, params=dict(params))


