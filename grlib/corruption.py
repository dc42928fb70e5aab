"""Noise beyond labels: outliers and corrupted inputs, each with an exact mask.

The companions of :mod:`grlib.noise` (which corrupts *labels*).  Everything
here is seeded, returns the changed data **and** the boolean mask of the
examples it touched, leaves untouched rows bit-identical and never modifies
its arguments in place.

* :func:`add_outliers`: a fraction of the examples get an **out-of-distribution
  input** and keep their label (the label of the example they replace: a
  label from the data's own classes, unrelated to the new input).
* :func:`corrupt_inputs`: a fraction of the inputs get **heavy perceptual
  noise** (strong Gaussian pixel noise, a strong blur, or a blanked square),
  labels kept.
* :func:`add_data_noise`: label noise (:func:`grlib.noise.add_label_noise`),
  outliers and corrupted inputs together, with every mask and one ``kind`` per
  example (:data:`EXAMPLE_KINDS`: clean, mislabelled, outlier, corrupted).

How many examples are touched
-----------------------------
Outliers and corrupted inputs touch **exactly** ``round(fraction * N)``
examples (halves rounded up), drawn uniformly without replacement: the
realised fraction is the asked one up to ``1 / (2N)``.  (Label noise keeps
its own convention: each label flips independently with probability
``rate``, so its realised rate is binomial.)

Outlier sources (``source=``)
-----------------------------
``"fashion_mnist"``
    Fashion-MNIST images (the cached ``fashion_mnist.npz``; its 10,000 test
    images, all 70,000 when more are needed), resized to ``image_shape`` by
    exact area averaging (28x28 -> 8x8 for ``digits``).  Needs the cache:
    without it this source raises :class:`grlib.DataNotAvailableError` saying
    how to build it (``make data`` or ``grlib data fetch``).
``"digits"``
    scikit-learn's bundled 8x8 digits (1,797 images, always available),
    resized to ``image_shape`` by area interpolation (8x8 -> 28x28 for
    ``fashion_mnist``).
``"noise"``
    Uniform noise: every pixel drawn uniformly over the pixel range
    ``[low, high]``.  For data without ``image_shape``: every feature uniform
    over that feature's observed range.
``"gaussian"``
    One far-away Gaussian, in the units of ``x``: feature ``j`` is
    ``N(mu_j + shift * s_j * sign_j, sd_j^2)`` with ``mu_j, sd_j`` the
    feature's mean and standard deviation over ``x`` and one random sign per
    feature, so the cluster sits ``shift`` standard deviations away from the
    data's mean along every feature.  Works for any data.
an array ``[M, D]``
    Your own out-of-distribution inputs, **already in the units of x**
    (standardise them as ``x`` was).
``"auto"`` (default)
    By the name of the data set (``dataset=``): ``"digits"`` -> ``"fashion_mnist"``
    when the cache exists, else ``"noise"`` with a :class:`SourceFallbackWarning`;
    ``"fashion_mnist"`` -> ``"digits"``; any other data: ``"noise"`` when
    ``image_shape`` is given, else ``"gaussian"`` (uniform noise in the bounding
    box of non-image data would land inside the data).  For your own images,
    name a source explicitly: e.g. ``"digits"`` is *in* distribution for MNIST.

The result's ``source`` says which source was used.  Pool images (data-set
sources and arrays) are drawn without replacement while the pool lasts;
beyond it the pool is reused in a fresh random order, so each pool image is
used ``floor(k / M)`` or ``ceil(k / M)`` times.

Scale: raw pixels and standardised inputs
-----------------------------------------
grlib's data sets are standardised with training statistics
(``x = (raw - mean) / std``).  Images are made and damaged in **raw pixel
units** and put back on the scale of ``x``: pass ``scale=InputScale(mean, std,
pixel_range)``, or :func:`input_scale` for a grlib data set (it recomputes the
statistics :func:`grlib.load_dataset` used).  ``scale=None`` means ``x``
holds raw values and the pixel range is ``[x.min(), x.max()]``.  Pixel ranges
of grlib's data: digits ``[0, 16]``, Fashion-MNIST ``[0, 1]``.

Corruption kinds (``kind=``) and ``severity`` in ``(0, 1]``
-----------------------------------------------------------
``"gaussian"``
    Add ``N(0, (severity * (high - low))^2)`` to every pixel and clip to
    ``[low, high]`` (data without ``image_shape``: per-feature range, no clip).
    Default severity 0.5: a noise standard deviation of half the pixel range.
``"blur"``
    Gaussian blur of each channel with standard deviation
    ``severity * min(H, W) / 4`` pixels (nearest-edge padding): 1 pixel for
    8x8 digits and 3.5 pixels for 28x28 images at severity 0.5.
``"occlusion"``
    A square of side ``round(sqrt(severity * H * W))`` (at most ``min(H, W)``)
    set to ``low`` (the background), placed uniformly among the positions
    where it hides at least one non-background pixel (anywhere, for a blank
    image).  It covers about ``severity`` of the image: 6x6 of 8x8, 20x20 of
    28x28 at severity 0.5.
``"mixed"``
    Each touched example gets one of the three, uniformly at random; the
    per-example choice is in the result's ``corruption`` codes
    (:data:`CORRUPTION_NAMES`).

Blur, occlusion and mixed need ``image_shape``: ``(H, W)`` or ``(C, H, W)``,
the row-major layout of each flat row of ``x``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._checks import check_choice, check_int, check_real
from .data import DataNotAvailableError, data_dir
from .noise import NOISE_KINDS, NoisyLabels, add_label_noise

__all__ = ["InputScale", "input_scale", "Outliers", "add_outliers", "CorruptedInputs", "corrupt_inputs",
           "NoisyData", "add_data_noise", "SourceFallbackWarning", "OUTLIER_SOURCES", "CORRUPTION_KINDS",
           "CORRUPTION_NAMES", "EXAMPLE_KINDS"]

OUTLIER_SOURCES = ("auto", "fashion_mnist", "digits", "noise", "gaussian")
CORRUPTION_KINDS = ("gaussian", "blur", "occlusion", "mixed")
CORRUPTION_NAMES = ("gaussian", "blur", "occlusion")   # per-example codes 0, 1, 2 (-1: untouched)
EXAMPLE_KINDS = ("clean", "mislabelled", "outlier", "corrupted")   # per-example codes 0..3

_PIXEL_RANGES = {"digits": (0.0, 16.0), "fashion_mnist": (0.0, 1.0)}
_FMNIST_FILE = "fashion_mnist.npz"


class SourceFallbackWarning(UserWarning):
    """``source="auto"`` could not use its first choice (a missing cache) and used a fallback."""


# ----------------------------------------------------------------------------------------------- scale

@dataclass(frozen=True)
class InputScale:
    """How inputs relate to raw pixel values: ``x = (raw - mean) / std``.

    mean, std:    scalars or float arrays ``[D]`` (the training statistics that
                  standardised ``x``; ``0`` and ``1`` for raw data).  ``std > 0``.
    pixel_range:  ``(low, high)`` of raw pixel values (digits ``(0, 16)``,
                  Fashion-MNIST ``(0, 1)``), or None: the min and max of the raw data.
    """

    mean: float | np.ndarray = 0.0
    std: float | np.ndarray = 1.0
    pixel_range: tuple | None = None

    def __post_init__(self):
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        for name, arr in (("mean", mean), ("std", std)):
            if arr.ndim > 1:
                raise ValueError(f"InputScale {name} must be a scalar or a 1-D array [D], got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"InputScale {name} must be finite; it has {int((~np.isfinite(arr)).sum())} "
                                 "non-finite entries")
        if np.any(std <= 0):
            raise ValueError(f"InputScale std must be > 0 everywhere; got min {std.min():.4g}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.pixel_range is not None:
            pr = self.pixel_range
            if not isinstance(pr, (tuple, list)) or len(pr) != 2:
                raise ValueError(f"InputScale pixel_range={pr!r} must be a pair (low, high) or None")
            low = check_real("pixel_range low", pr[0])
            high = check_real("pixel_range high", pr[1])
            if not high > low:
                raise ValueError(f"InputScale pixel_range={pr!r} needs low < high")
            object.__setattr__(self, "pixel_range", (low, high))

    def _check_width(self, d: int) -> None:
        for name in ("mean", "std"):
            arr = getattr(self, name)
            if arr.ndim == 1 and arr.shape[0] != d:
                raise ValueError(f"scale.{name} has {arr.shape[0]} entries but x has {d} features")

    def to_raw(self, x) -> np.ndarray:
        """Raw values (float64) of inputs ``x`` ``[k, D]``."""
        return np.asarray(x, dtype=np.float64) * self.std + self.mean

    def from_raw(self, raw, dtype=np.float32) -> np.ndarray:
        """Inputs on the scale of ``x`` from raw values ``[k, D]``."""
        return ((np.asarray(raw, dtype=np.float64) - self.mean) / self.std).astype(dtype)


def input_scale(dataset: str = "digits", **load_kwargs) -> InputScale:
    """The :class:`InputScale` of a grlib data set, as :func:`grlib.load_dataset` standardises it.

    ``load_kwargs`` are the split arguments given to :func:`grlib.load_dataset`
    (``val_fraction``, ``test_fraction``, ``n_train``, ``split_seed``): the
    statistics are those of that training split.  ``pixel_range``: digits
    ``(0, 16)``, Fashion-MNIST ``(0, 1)``, other data sets None.
    """
    from .data import load_dataset

    if "standardize" in load_kwargs:
        raise TypeError("input_scale() takes the split arguments of load_dataset, not standardize= (it "
                        "always measures the unstandardised training split)")
    ds = load_dataset(dataset, standardize=False, **load_kwargs)
    # the same statistics as grlib.data.load_dataset(standardize=True)
    mean = ds.x_train.mean(axis=0)
    std = ds.x_train.std(axis=0)
    std[std < 1e-6] = 1.0
    return InputScale(mean=mean, std=std, pixel_range=_PIXEL_RANGES.get(dataset))


# ------------------------------------------------------------------------------------------ checks

def _check_x(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"x must be a floating-point array [N, D], got dtype {arr.dtype}; convert it with "
                        "x.astype(np.float32)")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"x must be a non-empty 2-D array [N, D] (one flat row per example), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"x must be finite; it has {int((~np.isfinite(arr)).sum())} non-finite entries")
    return arr


def _check_y(y, n: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"y must be integer class indices, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match x, got {arr.shape}")
    return arr.astype(np.int64)


def _check_fraction(name: str, value) -> float:
    return check_real(name, value, low=0.0, high=1.0, high_open=True)


def _check_image_shape(image_shape, d: int) -> tuple | None:
    if image_shape is None:
        return None
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise TypeError(f"image_shape must be (H, W) or (C, H, W) or None, got {image_shape!r}") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"image_shape={image_shape!r} must be (H, W) or (C, H, W) with positive sizes")
    if len(shape) == 2:
        shape = (1,) + shape
    if math.prod(shape) != d:
        raise ValueError(f"image_shape={image_shape!r} holds {math.prod(shape)} values but x has {d} features")
    return shape


def _check_exclude(exclude, n: int) -> np.ndarray:
    if exclude is None:
        return np.zeros(n, dtype=bool)
    arr = np.asarray(exclude)
    if arr.dtype != bool or arr.shape != (n,):
        raise ValueError(f"exclude must be a boolean mask of shape ({n},), got dtype {arr.dtype} shape {arr.shape}")
    return arr


def _check_scale(scale, d: int) -> InputScale:
    if scale is None:
        return InputScale()
    if not isinstance(scale, InputScale):
        raise TypeError(f"scale must be an InputScale (see grlib.input_scale) or None, got {type(scale).__name__}")
    scale._check_width(d)
    return scale


def _count(fraction: float, n: int) -> int:
    """round(fraction * n), halves rounded up."""
    return int(math.floor(fraction * n + 0.5))


def _select(rng: np.random.Generator, n: int, k: int, exclude: np.ndarray, what: str) -> np.ndarray:
    eligible = np.flatnonzero(~exclude)
    if k > eligible.size:
        raise ValueError(f"{what} needs {k} examples but only {eligible.size} of {n} are eligible "
                         f"({int(exclude.sum())} excluded); lower the fraction")
    return np.sort(rng.choice(eligible, size=k, replace=False))


class _Context:
    """What both kinds need to know about the clean data, measured once on the original x."""

    def __init__(self, x: np.ndarray, scale: InputScale, image_shape: tuple | None):
        self.x = x
        self.scale = scale
        self.image_shape = image_shape
        self._raw_range = None

    def raw_range(self):
        """``(low, high)`` scalars for images, per-feature arrays ``[D]`` otherwise."""
        if self._raw_range is None:
            if self.scale.pixel_range is not None:
                self._raw_range = self.scale.pixel_range
            else:
                raw = self.scale.to_raw(self.x)
                if self.image_shape is not None:
                    self._raw_range = (float(raw.min()), float(raw.max()))
                else:
                    self._raw_range = (raw.min(axis=0), raw.max(axis=0))
                if np.all(np.asarray(self._raw_range[1]) <= np.asarray(self._raw_range[0])):
                    raise ValueError("x is constant, so it has no pixel range to draw from; pass "
                                     "scale=InputScale(..., pixel_range=(low, high))")
        return self._raw_range


# ----------------------------------------------------------------------------------------- outliers

@dataclass(frozen=True)
class Outliers:
    """Inputs with out-of-distribution rows in place.

    x:           ``[N, D]`` (dtype of the input), outlier rows replaced, all other rows bit-identical.
    labels:      int64 ``[N]``, unchanged: an outlier keeps the label of the example it replaced.
    is_outlier:  bool ``[N]``, True exactly where a row was replaced.
    source:      the source used: ``"fashion_mnist"``, ``"digits"``, ``"noise"``, ``"gaussian"`` or
                 ``"array"`` (what ``"auto"`` resolved to).
    fraction:    the fraction asked for; ``is_outlier.sum() == round(fraction * N)``.
    """

    x: np.ndarray
    labels: np.ndarray
    is_outlier: np.ndarray
    source: str
    fraction: float

    @property
    def realised_fraction(self) -> float:
        return float(self.is_outlier.mean())

    def __repr__(self) -> str:
        return (f"Outliers(source={self.source!r}, fraction={self.fraction}, n={self.labels.size}, "
                f"outliers={int(self.is_outlier.sum())})")


def _fmnist_path():
    return data_dir() / _FMNIST_FILE


def _missing_fmnist_message(path) -> str:
    return (f"outlier source 'fashion_mnist' needs the Fashion-MNIST cache at {path}, which is missing. Build it "
            "once with 'make data' or 'grlib data fetch' (or set GRLIB_DATA_DIR to a folder holding "
            "fashion_mnist.npz); or use source='auto' (falls back to uniform noise images with a warning) or "
            "source='noise'")


def _resolve_source(source, dataset: str | None, image_shape, d: int) -> str:
    if not isinstance(source, str):
        return "array"
    check_choice("source", source, OUTLIER_SOURCES)
    if dataset is not None and source == dataset:
        raise ValueError(f"source={source!r} is the data set itself (dataset={dataset!r}): its images are not "
                         "out of distribution; choose another source")
    if source != "auto":
        return source
    if dataset == "digits" and image_shape is not None:
        path = _fmnist_path()
        if path.is_file():
            return "fashion_mnist"
        warnings.warn(f"source='auto' for digits would use Fashion-MNIST images, but the cache {path} is missing "
                      "('make data' or 'grlib data fetch' builds it); using uniform noise images instead "
                      "(source='noise')", SourceFallbackWarning, stacklevel=4)
        return "noise"
    if dataset == "fashion_mnist" and image_shape is not None:
        return "digits"
    return "noise" if image_shape is not None else "gaussian"


def _load_fmnist_pool(k: int) -> np.ndarray:
    """Fashion-MNIST images as intensities in [0, 1], ``[M, 28, 28]`` (test split; all 70,000 if k > 10,000)."""
    path = _fmnist_path()
    if not path.is_file():
        raise DataNotAvailableError(_missing_fmnist_message(path))
    try:
        with np.load(path) as z:
            imgs = z["x_test"]
            if k > imgs.shape[0]:
                imgs = np.concatenate([imgs, z["x_train"]])
    except (OSError, ValueError, KeyError) as err:
        raise DataNotAvailableError(f"the Fashion-MNIST cache {path} cannot be read ({err}); rebuild it with "
                                    "'grlib data fetch --force' (or 'make data')") from err
    return imgs.reshape(-1, 28, 28)


def _load_digits_pool() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images / 16.0   # [1797, 8, 8] in [0, 1]


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` weights of exact area resampling of a 1-D signal (rows sum to 1)."""
    width = n_in / n_out
    lo = np.arange(n_out)[:, None] * width
    hi = lo + width
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / width


def _resize(images: np.ndarray, hw: tuple) -> np.ndarray:
    """Area-resize ``[k, h, w]`` images to ``[k, H, W]`` (down: box averages; up: area interpolation)."""
    a_h = _area_matrix(images.shape[1], hw[0])
    a_w = _area_matrix(images.shape[2], hw[1])
    return np.einsum("ih,khw,jw->kij", a_h, images.astype(np.float64), a_w)


def _pool_order(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    reps = -(-k // m)
    return np.concatenate([rng.permutation(m) for _ in range(reps)])[:k]


def _outlier_rows(rng, source: str, array, k: int, ctx: _Context, shift: float) -> np.ndarray:
    """``k`` OOD rows on the scale of x (float64)."""
    x, scale, shape = ctx.x, ctx.scale, ctx.image_shape
    if source == "array":
        return np.asarray(array, dtype=np.float64)[_pool_order(rng, len(array), k)]
    if source == "gaussian":
        mu = x.mean(axis=0, dtype=np.float64)
        sd = x.std(axis=0, dtype=np.float64)
        positive = sd[sd > 1e-12]
        sd = np.where(sd > 1e-12, sd, positive.mean() if positive.size else 1.0)
        sign = rng.choice([-1.0, 1.0], size=x.shape[1])
        return mu + sd * (shift * sign + rng.standard_normal((k, x.shape[1])))
    low, high = ctx.raw_range()
    if source == "noise":
        return scale.from_raw(rng.uniform(0.0, 1.0, (k, x.shape[1])) * (np.asarray(high) - low) + low, np.float64)
    if shape is None:
        raise ValueError(f"source={source!r} makes images and needs image_shape=(H, W) or (C, H, W)")
    pool = _load_fmnist_pool(k) / 255.0 if source == "fashion_mnist" else _load_digits_pool()
    imgs = _resize(pool[_pool_order(rng, len(pool), k)], shape[1:])          # [k, H, W] in [0, 1]
    imgs = np.repeat(imgs[:, None], shape[0], axis=1).reshape(k, -1)           # same on every channel
    return scale.from_raw(low + imgs * (high - low), np.float64)


def _check_array_source(source, d: int) -> np.ndarray:
    arr = np.asarray(source)
    if arr.dtype.kind not in "fiu" or arr.ndim != 2 or arr.shape[1] != d or arr.shape[0] == 0:
        raise ValueError(f"source must be one of {', '.join(map(repr, OUTLIER_SOURCES))} or a non-empty numeric "
                         f"array [M, {d}] of out-of-distribution inputs; got {type(source).__name__} "
                         f"with shape {getattr(arr, 'shape', None)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("source array must be finite")
    return arr


def add_outliers(x, y, fraction: float, *, seed: int = 0, source="auto", image_shape=None, scale=None,
                 dataset: str | None = None, shift: float = 4.0, exclude=None) -> Outliers:
    """Replace ``round(fraction * N)`` inputs by out-of-distribution inputs; labels kept.

    x:            float ``[N, D]``, one flat row per example (standardised or raw, see ``scale``).
    y:            int ``[N]`` labels; returned unchanged (an outlier keeps the label of the row it replaced).
    fraction:     share of examples replaced, in ``[0, 1)``.
    seed:         which rows, which pool images, which noise.
    source:       ``"auto"``, ``"fashion_mnist"``, ``"digits"``, ``"noise"``, ``"gaussian"`` or an array
                  ``[M, D]`` of OOD inputs in the units of ``x`` (module docstring: what each is, and
                  what ``"auto"`` picks per data set).
    image_shape:  ``(H, W)`` or ``(C, H, W)`` of each row, or None (non-image data).
    scale:        :class:`InputScale` relating ``x`` to raw pixels (None: ``x`` is raw).
    dataset:      the data set's name, for ``"auto"`` (and to refuse a source that is the data itself).
    shift:        ``source="gaussian"`` only: offset of the Gaussian's mean, in standard deviations per
                  feature (> 0).
    exclude:      bool ``[N]``: rows never chosen (e.g. mislabelled ones); the fraction still counts
                  over all ``N``.

    Raises :class:`grlib.DataNotAvailableError` for ``source="fashion_mnist"`` without the cache
    (``source="auto"`` falls back to ``"noise"`` with a :class:`SourceFallbackWarning`).
    """
    x = _check_x(x)
    n, d = x.shape
    y = _check_y(y, n)
    fraction = _check_fraction("fraction", fraction)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    ctx = _Context(x, _check_scale(scale, d), _check_image_shape(image_shape, d))
    exclude = _check_exclude(exclude, n)
    out = x.copy()
    mask = np.zeros(n, dtype=bool)
    used = _place_outliers(out, mask, rng, fraction, source, ctx, dataset, shift, exclude)
    return Outliers(x=out, labels=y.copy(), is_outlier=mask, source=used, fraction=fraction)


def _place_outliers(out, mask, rng, fraction, source, ctx, dataset, shift, exclude) -> str:
    """Write the outliers into ``out`` and ``mask`` (both owned by the caller); return the source used."""
    n, d = out.shape
    if dataset is not None and not isinstance(dataset, str):
        raise TypeError(f"dataset must be a data set name (str) or None, got {dataset!r}")
    array = None if isinstance(source, str) else _check_array_source(source, d)
    shift = check_real("shift", shift, low=0.0, low_open=True)
    used = _resolve_source(source, dataset, ctx.image_shape, d)
    if used == "fashion_mnist" and not _fmnist_path().is_file():
        raise DataNotAvailableError(_missing_fmnist_message(_fmnist_path()))
    k = _count(fraction, n)
    if k == 0:
        return used
    idx = _select(rng, n, k, exclude, f"outlier fraction={fraction}")
    out[idx] = _outlier_rows(rng, used, array, k, ctx, shift).astype(out.dtype)
    mask[idx] = True
    return used


# --------------------------------------------------------------------------------- corrupted inputs

@dataclass(frozen=True)
class CorruptedInputs:
    """Inputs with heavy perceptual noise on some rows.

    x:             ``[N, D]`` (dtype of the input), corrupted rows changed, all other rows bit-identical.
    is_corrupted:  bool ``[N]``, True exactly where a row was corrupted.
    corruption:    int8 ``[N]``: -1 untouched, else the index in :data:`CORRUPTION_NAMES` of what was
                   done (differs per example for ``kind="mixed"``).
    kind, severity, fraction:  as asked; ``is_corrupted.sum() == round(fraction * N)``.
    """

    x: np.ndarray
    is_corrupted: np.ndarray
    corruption: np.ndarray
    kind: str
    severity: float
    fraction: float

    @property
    def realised_fraction(self) -> float:
        return float(self.is_corrupted.mean())

    @property
    def corruption_names(self) -> np.ndarray:
        """``[N]`` strings: ``"none"`` or the corruption applied."""
        return np.array(("none",) + CORRUPTION_NAMES)[self.corruption + 1]

    def __repr__(self) -> str:
        return (f"CorruptedInputs(kind={self.kind!r}, severity={self.severity}, fraction={self.fraction}, "
                f"n={self.is_corrupted.size}, corrupted={int(self.is_corrupted.sum())})")


def _occlude(rng, imgs: np.ndarray, low: float, side: int, tol: float) -> np.ndarray:
    """Blank one ``side x side`` square per image ``[k, C, H, W]``, where it hides something
    (a pixel further than ``tol`` from the background ``low``: raw values read back from
    standardised float32 inputs are not exact)."""
    k, _, h, w = imgs.shape
    ink = (np.abs(imgs - low) > tol).any(axis=1).astype(np.int64)            # [k, H, W]
    c = np.zeros((k, h + 1, w + 1), np.int64)
    c[:, 1:, 1:] = ink.cumsum(1).cumsum(2)
    box = c[:, side:, side:] - c[:, :-side, side:] - c[:, side:, :-side] + c[:, :-side, :-side]
    ok = (box > 0).reshape(k, -1)                                             # [k, positions]
    ok[~ok.any(axis=1)] = True                                                # blank image: anywhere
    # uniform among the allowed positions: the first allowed position after a uniform rank
    rank = (rng.random(k) * ok.sum(axis=1)).astype(np.int64)
    pos = np.argmax(ok.cumsum(axis=1) > rank[:, None], axis=1)
    n_w = w - side + 1
    out = imgs.copy()
    for i, (r, col) in enumerate(zip(pos // n_w, pos % n_w)):
        out[i, :, r:r + side, col:col + side] = low
    return out


def _corrupt_rows(rng, raw: np.ndarray, codes: np.ndarray, severity: float, ctx: _Context) -> np.ndarray:
    """Corrupt raw rows ``[k, D]`` in place of a copy, code per row (index in CORRUPTION_NAMES)."""
    low, high = ctx.raw_range()
    out = raw.copy()
    sel = codes == 0
    if sel.any():
        noisy = out[sel] + rng.standard_normal(out[sel].shape) * (severity * (np.asarray(high) - low))
        out[sel] = np.clip(noisy, low, high) if ctx.image_shape is not None else noisy
    shape = ctx.image_shape
    sel = codes == 1
    if sel.any():
        from scipy.ndimage import gaussian_filter

        sigma = severity * min(shape[1:]) / 4.0
        imgs = out[sel].reshape((-1,) + shape)
        out[sel] = gaussian_filter(imgs, sigma=(0, 0, sigma, sigma), mode="nearest").reshape(imgs.shape[0], -1)
    sel = codes == 2
    if sel.any():
        h, w = shape[1:]
        side = min(h, w, max(1, int(round(math.sqrt(severity * h * w)))))
        imgs = out[sel].reshape((-1,) + shape)
        out[sel] = _occlude(rng, imgs, low, side, 1e-3 * (high - low)).reshape(imgs.shape[0], -1)
    return out


def corrupt_inputs(x, fraction: float, *, kind: str = "mixed", severity: float = 0.5, image_shape=None,
                   seed: int = 0, scale=None, exclude=None) -> CorruptedInputs:
    """Heavy perceptual noise on ``round(fraction * N)`` inputs (labels are not touched).

    x:            float ``[N, D]``, one flat row per example.
    fraction:     share of examples corrupted, in ``[0, 1)``.
    kind:         ``"gaussian"``, ``"blur"``, ``"occlusion"`` or ``"mixed"`` (one of the three per
                  example); all but ``"gaussian"`` need ``image_shape``.
    severity:     strength in ``(0, 1]``; its meaning per kind is in the module docstring (default 0.5:
                  noise sd half the pixel range, blur sd an eighth of the image side, about half the
                  image blanked).
    image_shape:  ``(H, W)`` or ``(C, H, W)`` of each row, or None.
    seed:         which rows, which kind per row (mixed), the noise and square positions.
    scale:        :class:`InputScale` relating ``x`` to raw pixels (None: ``x`` is raw); corruption
                  happens in raw pixel units, then the rows are put back on the scale of ``x``.
    exclude:      bool ``[N]``: rows never chosen; the fraction still counts over all ``N``.
    """
    x = _check_x(x)
    n, d = x.shape
    fraction = _check_fraction("fraction", fraction)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    ctx = _Context(x, _check_scale(scale, d), _check_image_shape(image_shape, d))
    exclude = _check_exclude(exclude, n)
    out = x.copy()
    codes = np.full(n, -1, dtype=np.int8)
    kind, severity = _place_corruption(out, codes, rng, fraction, kind, severity, ctx, exclude)
    return CorruptedInputs(x=out, is_corrupted=codes >= 0, corruption=codes, kind=kind, severity=severity,
                           fraction=fraction)


def _place_corruption(out, codes, rng, fraction, kind, severity, ctx, exclude):
    n = out.shape[0]
    check_choice("kind", kind, CORRUPTION_KINDS)
    severity = check_real("severity", severity, low=0.0, high=1.0, low_open=True)
    if kind != "gaussian" and ctx.image_shape is None:
        raise ValueError(f"kind={kind!r} acts on images and needs image_shape=(H, W) or (C, H, W); for data "
                         "that are not images use kind='gaussian'")
    k = _count(fraction, n)
    if k == 0:
        return kind, severity
    idx = _select(rng, n, k, exclude, f"corruption fraction={fraction}")
    if kind == "mixed":
        row_codes = rng.integers(0, len(CORRUPTION_NAMES), size=k).astype(np.int8)
    else:
        row_codes = np.full(k, CORRUPTION_NAMES.index(kind), dtype=np.int8)
    raw = ctx.scale.to_raw(out[idx])
    out[idx] = ctx.scale.from_raw(_corrupt_rows(rng, raw, row_codes, severity, ctx), out.dtype)
    codes[idx] = row_codes
    return kind, severity


# -------------------------------------------------------------------------------------------- together

@dataclass(frozen=True)
class NoisyData:
    """Training data with label noise, outliers and corrupted inputs, and the mask of each.

    The three sets are **disjoint**: labels are corrupted first (exactly as
    :func:`grlib.noise.add_label_noise` with the same ``seed``), outliers are
    drawn among the correctly labelled examples, corrupted inputs among the
    examples that are neither.  Each example has one ``kind``.

    x:             ``[N, D]`` inputs (outlier and corrupted rows changed, others bit-identical).
    labels:        int64 ``[N]``, the given labels (after label noise).
    true_labels:   int64 ``[N]``, the labels before label noise (an outlier's is the label of the row it
                   replaced).
    is_noisy:      bool ``[N]``, mislabelled (``labels != true_labels``).
    is_outlier:    bool ``[N]``, input replaced by an out-of-distribution input.
    is_corrupted:  bool ``[N]``, input with heavy perceptual noise.
    kind:          int8 ``[N]``, index in :data:`EXAMPLE_KINDS` (0 clean, 1 mislabelled, 2 outlier,
                   3 corrupted); ``kind_names`` gives the strings.
    corruption:    int8 ``[N]``, -1 or the index in :data:`CORRUPTION_NAMES` of what was done.
    outlier_source: the outlier source used (``"none"`` without outliers).
    label_noise:   the :class:`grlib.NoisyLabels` (transition matrix, realised rate).
    settings:      what was asked (a JSON-friendly dict).
    """

    x: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray
    is_noisy: np.ndarray
    is_outlier: np.ndarray
    is_corrupted: np.ndarray
    kind: np.ndarray
    corruption: np.ndarray
    outlier_source: str
    label_noise: NoisyLabels
    settings: dict = field(default_factory=dict)

    @property
    def kind_names(self) -> np.ndarray:
        """``[N]`` strings from :data:`EXAMPLE_KINDS`."""
        return np.array(EXAMPLE_KINDS)[self.kind]

    @property
    def is_clean(self) -> np.ndarray:
        return self.kind == 0

    @property
    def is_touched(self) -> np.ndarray:
        """Any of the three: mislabelled, outlier or corrupted."""
        return self.kind != 0

    def mask(self, kind: str) -> np.ndarray:
        """Boolean ``[N]`` mask of one kind (``"clean"``, ``"mislabelled"``, ``"outlier"``, ``"corrupted"``)
        or ``"touched"`` (any but clean)."""
        check_choice("kind", kind, EXAMPLE_KINDS + ("touched",))
        return self.is_touched if kind == "touched" else self.kind == EXAMPLE_KINDS.index(kind)

    def masks(self) -> dict:
        """``{"is_noisy", "is_outlier", "is_corrupted"}`` boolean arrays (copies)."""
        return {"is_noisy": self.is_noisy.copy(), "is_outlier": self.is_outlier.copy(),
                "is_corrupted": self.is_corrupted.copy()}

    def counts(self) -> dict:
        """Examples of each kind, ``{"clean": ..., "mislabelled": ..., "outlier": ..., "corrupted": ...}``."""
        return {name: int(c) for name, c in zip(EXAMPLE_KINDS, np.bincount(self.kind, minlength=4))}

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"NoisyData(n={self.labels.size}, {counts}, outlier_source={self.outlier_source!r})"


def add_data_noise(x, y, num_classes: int, *, noise: str = "none", noise_rate: float = 0.0,
                   outlier_fraction: float = 0.0, outlier_source="auto", corruption_fraction: float = 0.0,
                   corruption_kind: str = "mixed", severity: float = 0.5, image_shape=None, scale=None,
                   dataset: str | None = None, seed: int = 0, shift: float = 4.0, matrix=None) -> NoisyData:
    """Label noise, outliers and corrupted inputs on one training set, disjoint, with every mask.

    x, y, num_classes:       float ``[N, D]`` inputs, int ``[N]`` true labels in ``[0, num_classes)``.
    noise, noise_rate:       label noise, as :func:`grlib.noise.add_label_noise` (``"none"``,
                             ``"symmetric"``, ``"pair"``, ``"transition"`` with ``matrix``); the mask
                             equals that function's with the same ``seed``.
    outlier_fraction:        share of all ``N`` examples replaced by OOD inputs (exact count, see
                             :func:`add_outliers`; ``outlier_source``, ``shift`` as there).
    corruption_fraction:     share of all ``N`` examples corrupted (exact count, see
                             :func:`corrupt_inputs`; ``corruption_kind``, ``severity`` as there).
    image_shape, scale, dataset:  as in :func:`add_outliers`.
    seed:                    label noise uses ``seed`` itself; outliers and corruption use independent
                             streams derived from it (``numpy.random.SeedSequence(seed).spawn(2)``).

    The three kinds are kept disjoint: outliers are drawn among the examples whose label was not
    changed, corrupted inputs among those neither mislabelled nor outliers.  So
    ``noise_rate + outlier_fraction + corruption_fraction`` must be below 1.
    """
    x = _check_x(x)
    n, d = x.shape
    y = _check_y(y, n)
    check_choice("noise", noise, NOISE_KINDS + ("transition",))
    noise_rate = check_real("noise_rate", noise_rate, low=0.0, high=1.0, high_open=True)
    outlier_fraction = _check_fraction("outlier_fraction", outlier_fraction)
    corruption_fraction = _check_fraction("corruption_fraction", corruption_fraction)
    seed = check_int("seed", seed, low=0)
    label_share = noise_rate if noise in ("symmetric", "pair") else 0.0
    total = label_share + outlier_fraction + corruption_fraction
    if total >= 1.0:
        raise ValueError(f"noise_rate={noise_rate} + outlier_fraction={outlier_fraction} + corruption_fraction="
                         f"{corruption_fraction} = {total:.4g} must be below 1: the three kinds are disjoint")
    ctx = _Context(x, _check_scale(scale, d), _check_image_shape(image_shape, d))
    # validate the corruption settings up front, so a bad kind fails before any work
    check_choice("corruption_kind", corruption_kind, CORRUPTION_KINDS)
    check_real("severity", severity, low=0.0, high=1.0, low_open=True)
    if corruption_fraction > 0 and corruption_kind != "gaussian" and ctx.image_shape is None:
        raise ValueError(f"corruption_kind={corruption_kind!r} acts on images and needs image_shape=(H, W) or "
                         "(C, H, W); for data that are not images use corruption_kind='gaussian'")

    labels = add_label_noise(y, num_classes, noise, noise_rate, seed=seed, matrix=matrix)
    out = x.copy()
    is_outlier = np.zeros(n, dtype=bool)
    codes = np.full(n, -1, dtype=np.int8)
    out_seed, cor_seed = np.random.SeedSequence(seed).spawn(2)
    source_used = "none"
    if outlier_fraction > 0:
        source_used = _place_outliers(out, is_outlier, np.random.default_rng(out_seed), outlier_fraction,
                                      outlier_source, ctx, dataset, shift, labels.is_noisy)
    if corruption_fraction > 0:
        _place_corruption(out, codes, np.random.default_rng(cor_seed), corruption_fraction, corruption_kind,
                          severity, ctx, labels.is_noisy | is_outlier)
    is_corrupted = codes >= 0
    kind = np.zeros(n, dtype=np.int8)
    kind[labels.is_noisy] = 1
    kind[is_outlier] = 2
    kind[is_corrupted] = 3
    settings = {"noise": noise, "noise_rate": noise_rate, "outlier_fraction": outlier_fraction,
                "outlier_source": outlier_source if isinstance(outlier_source, str) else "array",
                "corruption_fraction": corruption_fraction, "corruption_kind": corruption_kind,
                "severity": float(severity), "seed": seed, "dataset": dataset}
    return NoisyData(x=out, labels=labels.labels, true_labels=labels.true_labels, is_noisy=labels.is_noisy,
                     is_outlier=is_outlier, is_corrupted=is_corrupted, kind=kind, corruption=codes,
                     outlier_source=source_used, label_noise=labels, settings=settings)
