"""Synthetic label noise with a known corruption mask.

Three kinds, all seeded and all returning :class:`NoisyLabels` (the noisy
labels **and** the boolean mask of corrupted examples):

* ``symmetric``: with probability ``rate`` a label is replaced by one of the
  *other* ``C - 1`` classes, uniformly.  The true class is **not** re-drawn,
  so the expected fraction of wrong labels is exactly ``rate`` (the
  convention of Zhang & Sabuncu 2018 and Wang et al. 2019 for "symmetric";
  pass ``include_true=True`` for the other convention, where the new label is
  drawn from all ``C`` classes and the expected corruption is
  ``rate * (C - 1) / C``).
* ``pair`` (asymmetric): class ``k`` flips to ``(k + 1) mod C`` with
  probability ``rate``.
* ``transition``: any row-stochastic ``C x C`` matrix ``T``; a label ``k`` is
  redrawn from row ``T[k]``.

Labels are integer class indices (any integer dtype, a list, or a torch
tensor), 1-D, in ``[0, num_classes)``.  Every argument is checked: a matrix
whose size disagrees with ``num_classes``, a ``matrix=`` given with a kind
that does not use it, or a ``rate`` given with ``kind="transition"`` (where
the matrix sets the noise) raises instead of being ignored.  One documented
exception: ``kind="none"`` ignores ``rate`` (a run configured with
``noise="none"`` keeps its ``noise_rate`` setting without effect).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._checks import as_array, check_choice, check_int, check_real

__all__ = ["NoisyLabels", "add_label_noise", "symmetric_noise", "pair_noise", "transition_noise",
           "symmetric_matrix", "pair_matrix", "NOISE_KINDS"]

NOISE_KINDS = ("none", "symmetric", "pair")


@dataclass(frozen=True)
class NoisyLabels:
    """Noisy labels with the ground truth kept.

    labels:        int64 ``[N]``, the labels after corruption (what training sees).
    true_labels:   int64 ``[N]``, the labels before corruption.
    is_noisy:      bool ``[N]``, True where ``labels != true_labels``.
    transition:    float ``[C, C]``, the expected transition matrix that was sampled.
    kind, rate:    how the noise was made.
    masks:         other kinds of damage made together with the labels' (``{"is_outlier": bool [N],
                   "is_corrupted": bool [N]}`` from :func:`grlib.prepare` with outliers or corrupted
                   inputs; see :mod:`grlib.corruption`), else empty.
    """

    labels: np.ndarray
    true_labels: np.ndarray
    is_noisy: np.ndarray
    transition: np.ndarray
    kind: str
    rate: float
    masks: dict = field(default_factory=dict)

    @property
    def realised_rate(self) -> float:
        """Fraction of labels that were actually changed."""
        return float(self.is_noisy.mean()) if self.is_noisy.size else 0.0

    def __repr__(self) -> str:
        return (f"NoisyLabels(kind={self.kind!r}, rate={self.rate}, n={self.labels.size}, "
                f"realised_rate={self.realised_rate:.4f})")


def _check_labels(labels, num_classes) -> tuple[np.ndarray, int]:
    arr = as_array("labels", labels)
    if arr.dtype.kind not in "iu":
        hint = (" (whole-number floats: convert them with labels.astype(np.int64))" if arr.dtype.kind == "f"
                else "")
        raise TypeError(f"labels must be integer class indices, got dtype {arr.dtype}{hint}")
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels is empty; label noise needs at least one example")
    num_classes = check_int("num_classes", num_classes, low=2)
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] for num_classes={num_classes}; "
                         f"got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64), num_classes


def _check_rate(rate) -> float:
    return check_real("rate", rate, low=0.0, high=1.0, high_open=True)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def symmetric_matrix(num_classes: int, rate: float, *, include_true: bool = False) -> np.ndarray:
    """Expected transition matrix of symmetric noise."""
    num_classes = check_int("num_classes", num_classes, low=2)
    rate = _check_rate(rate)
    include_true = _check_bool("include_true", include_true)
    if include_true:
        t = np.full((num_classes, num_classes), rate / num_classes)
        np.fill_diagonal(t, 1.0 - rate + rate / num_classes)
    else:
        t = np.full((num_classes, num_classes), rate / (num_classes - 1))
        np.fill_diagonal(t, 1.0 - rate)
    return t


def pair_matrix(num_classes: int, rate: float) -> np.ndarray:
    """Transition matrix of pair noise ``k -> (k + 1) mod C``."""
    num_classes = check_int("num_classes", num_classes, low=2)
    rate = _check_rate(rate)
    t = np.eye(num_classes) * (1.0 - rate)
    for k in range(num_classes):
        t[k, (k + 1) % num_classes] += rate
    return t


_MATRIX_FORM = "a 2-D row-stochastic C x C array (row k: the probabilities that class k becomes each class)"


def _matrix_array(matrix) -> np.ndarray:
    """``matrix`` as a 2-D square float64 array (its size is checked against num_classes later)."""
    raw = as_array("transition matrix", matrix)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"transition matrix must be {_MATRIX_FORM} of real numbers, got dtype {raw.dtype}")
    t = raw.astype(np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"transition matrix must be {_MATRIX_FORM}; got shape {t.shape}")
    return t


def _check_transition(matrix, num_classes: int) -> np.ndarray:
    t = _matrix_array(matrix)
    if t.shape != (num_classes, num_classes):
        raise ValueError(f"transition matrix must have shape ({num_classes}, {num_classes}) for "
                         f"num_classes={num_classes}, got {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("transition matrix must have finite, non-negative entries; "
                         f"got min {np.nanmin(t):.4g}, non-finite entries: {int((~np.isfinite(t)).sum())}")
    sums = t.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        bad = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"transition matrix must be row-stochastic (each row sums to 1); row {bad} sums "
                         f"to {sums[bad]:.6g}")
    return t


def transition_noise(labels, matrix, *, num_classes: int | None = None, seed: int = 0, kind: str = "transition",
                     rate: float | None = None) -> NoisyLabels:
    """Redraw each label ``k`` from row ``matrix[k]`` of a row-stochastic ``C x C`` matrix.

    num_classes: C; None takes it from the matrix.  Given, the matrix must be
                 ``num_classes x num_classes`` (a 5 x 5 matrix with
                 ``num_classes=3`` would make labels up to 4).
    kind, rate:  what the returned :class:`NoisyLabels` reports; ``rate``
                 defaults to the matrix's expected rate ``1 - mean(diag)``
                 (exact for balanced classes).  They do not change the noise.
    """
    t = _matrix_array(matrix)
    if num_classes is None:
        num_classes = t.shape[0]
        if num_classes < 2:
            raise ValueError(f"transition matrix must be at least 2 x 2 (num_classes >= 2), got shape {t.shape}")
    num_classes = check_int("num_classes", num_classes, low=2)
    t = _check_transition(t, num_classes)
    arr, num_classes = _check_labels(labels, num_classes)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty string (a label for the noise), got {kind!r}")
    if rate is None:
        rate = float(1.0 - np.mean(np.diag(t)))
    else:
        rate = check_real("rate", rate, low=0.0, high=1.0)
    # inverse-CDF sampling, one uniform per example
    cdf = np.cumsum(t, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(arr.size)
    noisy = (u[:, None] >= cdf[arr]).sum(axis=1).astype(np.int64)
    return NoisyLabels(labels=noisy, true_labels=arr, is_noisy=noisy != arr, transition=t, kind=kind,
                       rate=float(rate))


def symmetric_noise(labels, num_classes: int, rate: float, *, seed: int = 0, include_true: bool = False
                    ) -> NoisyLabels:
    """Symmetric noise (see module docstring for the convention)."""
    arr, num_classes = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    include_true = _check_bool("include_true", include_true)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    flip = rng.random(arr.size) < rate
    if include_true:
        new = rng.integers(0, num_classes, size=arr.size)
    else:
        # one of the other C-1 classes uniformly: shift by 1..C-1
        new = (arr + rng.integers(1, num_classes, size=arr.size)) % num_classes
    noisy = np.where(flip, new, arr).astype(np.int64)
    return NoisyLabels(labels=noisy, true_labels=arr, is_noisy=noisy != arr,
                       transition=symmetric_matrix(num_classes, rate, include_true=include_true),
                       kind="symmetric", rate=rate)


def pair_noise(labels, num_classes: int, rate: float, *, seed: int = 0) -> NoisyLabels:
    """Pair (asymmetric) noise: ``k -> (k + 1) mod C`` with probability ``rate``."""
    arr, num_classes = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    flip = rng.random(arr.size) < rate
    noisy = np.where(flip, (arr + 1) % num_classes, arr).astype(np.int64)
    return NoisyLabels(labels=noisy, true_labels=arr, is_noisy=noisy != arr,
                       transition=pair_matrix(num_classes, rate), kind="pair", rate=rate)


def add_label_noise(labels, num_classes: int, kind: str = "symmetric", rate: float = 0.0, *, seed: int = 0,
                    matrix=None) -> NoisyLabels:
    """Dispatch by kind: ``"none"``, ``"symmetric"``, ``"pair"`` or ``"transition"`` (needs ``matrix``).

    labels:      integer class indices ``[N]`` in ``[0, num_classes)``.
    rate:        in [0, 1): the corruption probability for ``symmetric`` and
                 ``pair``; ignored for ``none``; must stay 0 for ``transition``
                 (the matrix sets the noise).
    matrix:      only with ``kind="transition"``: a row-stochastic
                 ``num_classes x num_classes`` array.  Given with another kind
                 it raises (it would be ignored).
    """
    check_choice("noise kind", kind, NOISE_KINDS + ("transition",))
    num_classes = check_int("num_classes", num_classes, low=2)
    if kind == "transition":
        if matrix is None:
            raise ValueError("noise kind='transition' needs matrix= (a row-stochastic C x C array)")
        if check_real("rate", rate, low=0.0, high=1.0) != 0:
            raise ValueError(f"rate={rate!r} is not used with noise kind='transition': the matrix sets the noise "
                             "(its expected rate is 1 - mean(diag)); leave rate at 0")
        return transition_noise(labels, matrix, num_classes=num_classes, seed=seed)
    if matrix is not None:
        raise ValueError(f"matrix= is used only with noise kind='transition', got kind={kind!r} (the matrix would "
                         "be ignored); pass kind='transition' to use it, or leave matrix out")
    if kind == "none" or rate == 0:
        arr, num_classes = _check_labels(labels, num_classes)
        _check_rate(rate)
        check_int("seed", seed, low=0)
        return NoisyLabels(labels=arr.copy(), true_labels=arr, is_noisy=np.zeros(arr.size, bool),
                           transition=np.eye(num_classes), kind=kind, rate=0.0 if kind == "none" else float(rate))
    if kind == "symmetric":
        return symmetric_noise(labels, num_classes, rate, seed=seed)
    return pair_noise(labels, num_classes, rate, seed=seed)
