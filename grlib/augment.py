"""Built-in data augmentation for grlib's data sets: random shifts, flips and input noise, per example.

What the paper did
------------------
The authors' data layer (CIFAR-10/100, ResNet-44/56; see ``docs/method.md``,
"How the authors trained") resized each training image to 36x36, took a
random 32x32 crop and a random horizontal flip, and used the centre crop for
testing.  Relative to that centre crop, a random crop is a translation of
the content by up to +-2 pixels on each axis, with no border to fill (the crop
stays inside the 36x36 image); the flip is a left-right mirror with
probability 1/2.  Augmentation is
the ingredient GR's robustness depends on: measured on digits at 40%
symmetric noise (issue 11), without it every loss, GR included, ends up
fitting most of the mislabelled examples.

What grlib does
---------------
:class:`Augment` transforms the *flat, standardised* feature vectors that
:func:`grlib.load_dataset` returns (images flattened row-major from
``image_shape = (C, H, W)``), one example at a time, on the training pass only
(never on evaluation or test data):

1. ``flip``: with probability 1/2, a horizontal (left-right) mirror.
2. ``shift``: a random integer translation ``(dy, dx)``, each drawn uniformly
   from ``{-shift, ..., shift}`` independently per example and per axis; the
   content moves ``dy`` pixels down and ``dx`` pixels right, and the pixels
   uncovered at the border are filled with **0** (zero padding, not wrapping).
   This is exactly torchvision's ``RandomCrop(size=(H, W), padding=shift)``
   with fill 0 applied to the standardised image, i.e. the common "pad and
   crop" CIFAR augmentation.  grlib's images are too small (8x8, 28x28) to
   crop without losing content, so it pads instead of resizing first.
3. ``noise``: additive Gaussian noise of standard deviation ``noise`` on
   every feature (in units of the standardised features, i.e. of one
   per-pixel standard deviation of the training data).

Flip and shift commute in distribution (the shift distribution is symmetric),
so the order above is a convention, not a modelling choice.

**Why zero padding rather than wrapping.**  Features are standardised per
pixel (zero mean, unit variance over the training set), so 0 is each pixel's
training mean: the filled border looks like an average image, never like
content.  Wrapping (``torch.roll``) would carry a stroke that leaves one edge
back in at the opposite edge, making shapes that no real example has (for a
digit a stroke at the wrong side can change what it looks like) and, for a
centred object, moving the object's edge next to the image's other border.

Defaults per data set (:func:`augment_for`): ``digits`` (8x8): shift 1, no
flip (a mirrored digit is a different or no digit: 2/5, 3/E-like shapes; the
paper never flips digits, and grlib refuses it), noise 0.2; ``fashion_mnist``
(28x28): shift 2, flip (a mirrored shirt is still a shirt), noise 0;
``moons`` (two features, no image): noise 0.1 only; any other (a user's own)
data set: only what is asked for explicitly.

Random numbers and seeds
------------------------
``aug(x)`` (one example) draws from torch's *global* random number generator
(or from ``aug(x, generator)``), so a data loader that seeds it per (seed,
epoch, example) before calling the transform gets results that do not depend
on the number of workers.  Seed with ``torch.default_generator.manual_seed``
(about 2 us), not ``torch.manual_seed`` (about 400 us: it also seeds every
accelerator back end).
``aug.batch(x, generator)`` transforms a whole batch ``[B, D]`` on its device
(CPU or CUDA, with a generator on the same device), vectorised and without
host synchronisation, with the same per-example distribution.  Both draw, in
this order and only for the parts that are switched on: one code per example,
``torch.randint(0, num_codes, [B])``, uniform over the ``2**flip *
(2*shift + 1)**2`` equally likely (flip, dy, dx) combinations (so flip, dy and
dx are independent and uniform), then the noise ``[B, D]`` with
``torch.randn``; so ``aug(x)`` equals ``aug.batch(x[None])[0]`` from the same
generator state.  The code selects a row of a small cached table of source
indices (computed per batch instead for images too large to tabulate), and one
``gather`` from the input with a zero appended does the shift, the flip and
the zero padding together.  The identity (shift 0, no flip, noise 0) draws
nothing and returns a copy of the input.
"""
from __future__ import annotations

import functools
import math
from dataclasses import KW_ONLY, dataclass
from numbers import Integral, Real
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Augment", "augment_for", "AUGMENT_DEFAULTS"]

# The built-in data sets' defaults (read-only); moons is not an image data set: noise only.
AUGMENT_DEFAULTS = MappingProxyType({
    "digits": MappingProxyType({"shift": 1, "flip": False, "noise": 0.2}),
    "fashion_mnist": MappingProxyType({"shift": 2, "flip": True, "noise": 0.0}),
    "moons": MappingProxyType({"shift": 0, "flip": False, "noise": 0.1}),
})
# Data sets on which a horizontal flip changes the class: refused.
_NO_FLIP = {"digits": "a mirrored digit is another digit or none (2 and 5, 3 and an E-like shape), "
                      "and the paper never flips digits"}
_USER_DEFAULTS = {"shift": 0, "flip": False, "noise": 0.0}


def _check_image_shape(image_shape) -> tuple[int, int, int] | None:
    if image_shape is None:
        return None
    bad = (f"image_shape={image_shape!r} is not valid; allowed: None (features that are not an image: noise "
           "only) or (C, H, W), three positive integers")
    if isinstance(image_shape, (str, bytes)) or not hasattr(image_shape, "__len__"):
        raise TypeError(bad)
    if len(image_shape) != 3:
        raise ValueError(bad)
    dims = []
    for d in image_shape:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, Integral) or int(d) < 1:
            raise ValueError(bad)
        dims.append(int(d))
    return tuple(dims)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


@dataclass(frozen=True)
class Augment:
    """Random shift (zero padding), horizontal flip and Gaussian noise for flat image features.

    Parameters
    ----------
    image_shape : (C, H, W) or None
        Shape of one image; the flat features are its row-major flattening, so
        ``D = C * H * W``.  None for features that are not an image (then only
        ``noise`` is allowed).
    shift : int, >= 0 and < min(H, W)
        Largest translation in pixels: ``dy`` and ``dx`` are drawn uniformly
        and independently from ``{-shift, ..., shift}`` per example; the
        uncovered border is 0 (the per-pixel mean of standardised features).
    flip : bool
        Mirror left-right with probability 1/2 per example.
    noise : float, >= 0
        Standard deviation of additive Gaussian noise, in standardised units.

    Call ``aug(x)`` on ONE example (``[D]`` or ``(C, H, W)``, tensor or numpy
    array) with torch's global generator (or ``aug(x, generator)``), or
    ``aug.batch(x, generator)`` on a batch ``[B, D]`` (or ``[B, C, H, W]``) on
    any device.  Both return a new tensor of the input's shape and dtype and
    never modify the input.
    """

    image_shape: tuple[int, int, int] | None
    _: KW_ONLY
    shift: int = 0
    flip: bool = False
    noise: float = 0.0

    def __post_init__(self):
        shape = _check_image_shape(self.image_shape)
        shift, flip, noise = self.shift, self.flip, self.noise
        if isinstance(shift, (bool, np.bool_)) or not isinstance(shift, Integral):
            raise TypeError(f"shift must be an integer number of pixels, got {shift!r} ({type(shift).__name__})")
        shift = int(shift)
        if shift < 0:
            raise ValueError(f"shift={shift} is negative; allowed: integers >= 0 (0 = no shift)")
        flip = _check_bool("flip", flip)
        if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, Real):
            raise TypeError(f"noise must be a real number (a standard deviation), got {noise!r} "
                            f"({type(noise).__name__})")
        noise = float(noise)
        if not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise={noise!r} is not allowed; allowed: a finite real >= 0 (the standard deviation "
                             "of the Gaussian noise on standardised features; 0 = no noise)")
        if shape is None:
            if shift:
                raise ValueError(f"shift={shift} needs image features: image_shape is None; pass "
                                 "image_shape=(C, H, W) or shift=0")
            if flip:
                raise ValueError("flip=True needs image features: image_shape is None; pass "
                                 "image_shape=(C, H, W) or flip=False")
        elif shift >= min(shape[1], shape[2]):
            raise ValueError(f"shift={shift} is too large for image_shape={shape}; allowed: integers "
                             f"0 <= shift < {min(shape[1], shape[2])} (the smaller image side)")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "flip", flip)
        object.__setattr__(self, "noise", noise)

    # ------------------------------------------------------------------ info
    @property
    def num_features(self) -> int | None:
        """``C * H * W``, or None for non-image features."""
        if self.image_shape is None:
            return None
        c, h, w = self.image_shape
        return c * h * w

    @property
    def is_identity(self) -> bool:
        """True when the transform changes nothing (shift 0, no flip, noise 0)."""
        return self.shift == 0 and not self.flip and self.noise == 0.0

    def __repr__(self) -> str:
        return (f"Augment(image_shape={self.image_shape!r}, shift={self.shift}, flip={self.flip}, "
                f"noise={self.noise!r})")

    def to_dict(self) -> dict:
        """Plain JSON-able settings: ``{"image_shape": [C, H, W] | None, "shift", "flip", "noise"}``."""
        return {"image_shape": list(self.image_shape) if self.image_shape is not None else None,
                "shift": self.shift, "flip": self.flip, "noise": self.noise}

    @classmethod
    def from_dict(cls, d: dict) -> "Augment":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict):
            raise TypeError(f"d must be a dict as written by Augment.to_dict(), got {type(d).__name__}")
        unknown = set(d) - {"image_shape", "shift", "flip", "noise"}
        if unknown:
            raise ValueError(f"Augment.from_dict got unknown keys {sorted(unknown)}; allowed: image_shape, shift, "
                             "flip, noise")
        shape = d.get("image_shape")
        return cls(tuple(shape) if shape is not None else None, shift=d.get("shift", 0),
                   flip=d.get("flip", False), noise=d.get("noise", 0.0))

    # ------------------------------------------------------------ transform
    def _as_tensor(self, x, name: str) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.tensor(x)  # a copy: never shares memory with the caller's array
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must hold floating-point features (float16/32/64), got dtype {x.dtype}")
        return x

    @staticmethod
    def _check_generator(generator, x: torch.Tensor) -> None:
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
            if generator.device.type != x.device.type:
                raise ValueError(f"generator is on device {generator.device} but x is on {x.device}; allowed: a "
                                 "generator on x's device type (torch.Generator(device=x.device))")

    def __call__(self, x, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ONE example ``[D]`` (or ``(C, H, W)``); returns a new tensor of its shape and dtype.

        ``generator``: None (default) draws from torch's global generator, which a
        data loader seeds per (seed, epoch, example); a ``torch.Generator`` leaves
        the global one alone.  Seed the global CPU generator per example with
        ``torch.default_generator.manual_seed(s)`` (about 2 us), not
        ``torch.manual_seed(s)`` (which also seeds every accelerator: measured at
        about 400 us on a CPU-only torch).
        """
        x = self._as_tensor(x, "x")
        self._check_generator(generator, x)
        if self.image_shape is None:
            if x.dim() != 1:
                raise ValueError(f"x must be one example of shape [D]; got shape {list(x.shape)} (for a batch "
                                 "[B, D] use aug.batch(x))")
        elif not (x.dim() == 1 and x.shape[0] == self.num_features) and tuple(x.shape) != self.image_shape:
            raise ValueError(f"x must be one example of shape [{self.num_features}] or {self.image_shape} for "
                             f"image_shape={self.image_shape}; got shape {list(x.shape)} (for a batch use "
                             "aug.batch(x))")
        return self._apply(x.reshape(1, -1), generator).reshape(x.shape)

    def batch(self, x, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch ``[B, D]`` (or ``[B, C, H, W]``), each example independently, on ``x``'s device.

        ``generator``: a ``torch.Generator`` on the same device type as ``x``
        (None: torch's default generator for that device).  Vectorised (no
        loop over examples), no host synchronisation; returns a new tensor of
        ``x``'s shape and dtype.
        """
        x = self._as_tensor(x, "x")
        self._check_generator(generator, x)
        if self.image_shape is None:
            if x.dim() != 2:
                raise ValueError(f"x must be a batch of shape [B, D]; got shape {list(x.shape)}")
        elif not (x.dim() == 2 and x.shape[1] == self.num_features) and tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must be a batch of shape [B, {self.num_features}] or [B, "
                             f"{', '.join(map(str, self.image_shape))}] for image_shape={self.image_shape}; got "
                             f"shape {list(x.shape)}")
        if x.dim() == 2:
            return self._apply(x, generator)
        return self._apply(x.reshape(x.shape[0], -1), generator).reshape(x.shape)

    @property
    def num_codes(self) -> int:
        """Number of equally likely (flip, dy, dx) combinations: ``2**flip * (2*shift + 1)**2``."""
        return (2 if self.flip else 1) * (2 * self.shift + 1) ** 2

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x: [B, D] (D = C*H*W for images); returns a new [B, D] tensor."""
        if self.is_identity:
            return x.clone()
        out = x
        if self.shift or self.flip:
            # One uniform code per example = independent uniform (flip, dy, dx); see _index_rows.
            code = torch.randint(0, self.num_codes, (x.shape[0],), generator=generator, device=x.device)
            idx = _index_rows(self.image_shape, self.shift, self.flip, code)
            # Index D (one past the last feature) reads the appended 0: the zero padding.
            out = (F.pad(x, (0, 1)) if self.shift else x).gather(1, idx)
        if self.noise:
            eps = torch.randn(out.shape, generator=generator, device=x.device, dtype=out.dtype)
            out = torch.add(out, eps, alpha=self.noise)
        return out


_TABLE_MAX_ENTRIES = 1 << 22  # 32 MiB of int64: above it, index rows are computed per batch


def _index_rows_compute(image_shape: tuple[int, int, int], shift: int, flip: bool,
                        code: torch.Tensor) -> torch.Tensor:
    """Source index of every output feature, ``[len(code), C*H*W]`` int64, for the given codes.

    ``code = (f * n + (dy + shift)) * n + (dx + shift)`` with ``n = 2*shift + 1``
    and ``f`` the flip bit.  Output pixel ``(c, i, j)`` reads the mirrored image
    (``f = 1``) at ``(c, i - dy, j - dx)``, i.e. input pixel
    ``(c, i - dy, W-1-(j-dx))`` when flipped; a source outside the image gives
    index ``C*H*W`` (the zero appended by the caller).
    """
    c, h, w = image_shape
    n = 2 * shift + 1
    dev = code.device
    f = code // (n * n)
    dy = (code // n) % n - shift
    dx = code % n - shift
    rows = torch.arange(h, device=dev).view(1, h, 1) - dy.view(-1, 1, 1)      # [B, H, 1]
    cols = torch.arange(w, device=dev).view(1, 1, w) - dx.view(-1, 1, 1)      # [B, 1, W]
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)              # [B, H, W]
    if flip:
        cols = torch.where(f.view(-1, 1, 1) == 1, (w - 1) - cols, cols)
    plane = rows * w + cols                                                   # [B, H, W]
    idx = torch.arange(c, device=dev).view(1, c, 1, 1) * (h * w) + plane.unsqueeze(1)
    idx = torch.where(valid.unsqueeze(1), idx, c * h * w)                     # [B, C, H, W]
    return idx.reshape(code.shape[0], c * h * w)


@functools.lru_cache(maxsize=32)
def _index_table(image_shape: tuple[int, int, int], shift: int, flip: bool, device: torch.device) -> torch.Tensor:
    n_codes = (2 if flip else 1) * (2 * shift + 1) ** 2
    return _index_rows_compute(image_shape, shift, flip, torch.arange(n_codes, device=device))


def _index_rows(image_shape, shift, flip, code: torch.Tensor) -> torch.Tensor:
    """Rows of the (cached) index table for ``code``; computed directly when the table would be large."""
    n_codes = (2 if flip else 1) * (2 * shift + 1) ** 2
    if n_codes * math.prod(image_shape) <= _TABLE_MAX_ENTRIES:
        return _index_table(image_shape, shift, flip, code.device).index_select(0, code)
    return _index_rows_compute(image_shape, shift, flip, code)


def augment_for(dataset: str, image_shape, *, shift: int | None = None, flip: bool | None = None,
                noise: float | None = None) -> Augment | None:
    """The augmentation of a data set: its defaults, with explicit values overriding them.

    Defaults: ``digits`` shift 1, no flip, noise 0.2; ``fashion_mnist`` shift 2,
    flip, noise 0; ``moons`` noise 0.1 only; any other name (a user's own data
    set): shift 0, no flip, noise 0, i.e. only what is given explicitly.
    ``flip=True`` is refused for ``digits`` (a mirrored digit changes class).

    Returns None when the result changes nothing (shift 0, no flip, noise 0),
    so that a caller can skip augmentation altogether.
    """
    if not isinstance(dataset, str) or not dataset:
        raise TypeError(f"dataset must be a data set name (a non-empty str), got {dataset!r}")
    image_shape = _check_image_shape(image_shape)
    defaults = AUGMENT_DEFAULTS.get(dataset, _USER_DEFAULTS)
    if flip is not None:
        flip = _check_bool("flip", flip)
        if flip and dataset in _NO_FLIP:
            raise ValueError(f"flip=True is refused for dataset={dataset!r}: {_NO_FLIP[dataset]}; "
                             "allowed: flip=False or None")
    given = {"shift": shift, "flip": flip, "noise": noise}
    settings = {k: (defaults[k] if v is None else v) for k, v in given.items()}
    if image_shape is None:
        implicit = [f"{k}={defaults[k]!r}" for k in ("shift", "flip") if given[k] is None and defaults[k]]
        if implicit:
            raise ValueError(f"dataset={dataset!r} defaults to {' and '.join(implicit)} (an image data set) but "
                             "image_shape is None; pass image_shape=(C, H, W), or shift=0 and flip=False")
    aug = Augment(image_shape, **settings)
    return None if aug.is_identity else aug
