"""The plain results object of a training run: history, per-example records, summaries, save/load.

A :class:`RunResult` comes from :func:`grlib.train`, from a
:class:`grlib.Recorder` in a user's own loop, from :meth:`RunResult.load`, or is
built by hand: every field but ``config`` and ``y_given`` is optional.

On disk (format 2) a run is a folder::

    run.json                 settings, metadata, summary, format version (written last: a complete run)
    labels.npz               y_given, and y_true / is_noisy when known
    history.csv              one row per epoch
    summaries.npz            running per-example summaries (see grlib.recorder.SUMMARY_FIELDS)
    records/<field>.npy      [rows, n] per record field, one row per recorded epoch (memory-mapped on load)
    model.pt                 the model's state_dict (when there is a model)

A folder a :class:`grlib.Recorder` is still writing (or that crashed) holds
``progress.json`` and the records instead of ``run.json``; :meth:`RunResult.load`
reads its finished epochs.  Format 1 folders (``arrays.npz``, grlib 0.1) still load.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["RunResult", "RECORD_FIELDS", "HISTORY_FIELDS", "RunLoadError", "FORMAT_VERSION", "KIND_NAMES"]

FORMAT_VERSION = 2

#: Per-example records, each ``[rows, n]`` (one row per recorded epoch).  From the training
#: forward passes (the model as it was when the example's batch was seen):
#:   p            probability of the *given* (possibly wrong) label, [0, 1]
#:   pred         predicted class (int; -1: not seen that epoch)
#:   margin       logit of the given label minus the largest other logit (> 0: predicted as given)
#:   loss         the loss's per-example value (for GR a surrogate; see grlib.losses)
#:   weight       emphasis normalised within the example's batch (sums to 1 per batch)
#:   log_emphasis log of the unnormalised emphasis (GR: beta * p**lam * (1 - p))
#: From an evaluation pass at the end of each epoch:
#:   eval_p       probability of the given label
#:   eval_pred    predicted class
RECORD_FIELDS = ("p", "pred", "margin", "loss", "weight", "log_emphasis", "eval_p", "eval_pred")
_INT_FIELDS = ("pred", "eval_pred")

#: Per-epoch history (arrays of length ``epochs``; a field a run lacks reads as NaN):
#:   train_loss       mean training loss over the epoch's examples
#:   test_acc         accuracy on the test split (true labels)
#:   val_acc          accuracy on the validation split against its *noisy* labels
#:   train_acc        training accuracy against the given labels
#:   clean_acc        accuracy on the clean training examples (needs the noise mask; with outliers or corrupted
#:                    inputs: the untouched examples only)
#:   noisy_fit        share of mislabelled examples predicted as their given, wrong label
#:                    ("mislabelled examples fitted": memorisation; needs the mask)
#:   noisy_true_acc   share of mislabelled examples predicted as their true label
#:   lr               learning rate used in the epoch
#: Names of :attr:`RunResult.example_kind`'s codes.
KIND_NAMES = ("clean", "mislabelled", "outlier", "corrupted")

HISTORY_FIELDS = ("train_loss", "test_acc", "val_acc", "train_acc", "clean_acc", "noisy_fit", "noisy_true_acc", "lr")


class RunLoadError(ValueError):
    """A run folder is missing, damaged or from an unknown format; the message names the file."""


@dataclass
class RunResult:
    """Everything a run produced.  Plain numpy arrays; ``to_frame()`` gives a tidy table.

    config : dict
        The run's settings (``RunConfig.to_dict()`` for :func:`grlib.train`; what
        the user passed for a Recorder run).
    y_given : int array [n]
        The labels trained on (possibly noisy); -1 for an example never seen.
    y_true, is_noisy : arrays [n] or None
        True labels and the mask of mislabelled examples, when known (synthetic
        noise).  Given ``y_true`` alone, ``is_noisy = y_true != y_given``.
    num_classes : int, optional
        Inferred from the labels when not given.
    history : dict of per-epoch arrays (see :data:`HISTORY_FIELDS`).
    records : dict of ``[rows, n]`` arrays; row ``k`` is epoch ``record_epochs[k]``.
    epochs_completed : int, optional
        Inferred from the records and the history when not given.
    record_epochs : int array [rows], optional
        The (1-based) epoch of each record row; default ``1..rows``.
    summaries : dict of ``[n]`` arrays
        Running per-example summaries (see :data:`grlib.recorder.SUMMARY_FIELDS`).
    metadata : dict
        Anything else worth keeping (e.g. ``data_name``; ``partial_epoch`` when
        the last record row is an interrupted epoch).
    """

    config: dict
    y_given: np.ndarray
    y_true: np.ndarray | None = None
    is_noisy: np.ndarray | None = None
    num_classes: int | None = None
    history: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)
    epochs_completed: int | None = None
    stopped: str | None = None
    model: object = None  # the trained torch module (not saved by save(); its state_dict is)
    model_inputs: dict = field(default_factory=dict)  # {"in_features": D, "image_shape": [C, H, W] | None}
    record_epochs: np.ndarray | None = None
    summaries: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)   # other known kinds: {"is_outlier": bool [n], "is_corrupted": bool [n]}

    def __post_init__(self):
        if not isinstance(self.config, dict):
            raise TypeError(f"config must be a dict of settings, got {type(self.config).__name__}")
        y = np.asarray(self.y_given)
        if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer)):
            raise TypeError(f"y_given must be a 1-D integer array, got dtype {y.dtype} and shape {y.shape}")
        self.y_given = y.astype(np.int64, copy=False)
        n = y.size
        if self.y_true is not None:
            yt = np.asarray(self.y_true)
            if yt.shape != (n,) or not np.issubdtype(yt.dtype, np.integer):
                raise ValueError(f"y_true must be an integer array of shape ({n},), got {yt.dtype} {yt.shape}")
            self.y_true = yt.astype(np.int64, copy=False)
        if self.is_noisy is not None:
            m = np.asarray(self.is_noisy)
            if m.shape != (n,) or m.dtype != bool:
                raise ValueError(f"is_noisy must be a boolean array of shape ({n},), got {m.dtype} {m.shape}")
            self.is_noisy = m
        elif self.y_true is not None:
            self.is_noisy = (self.y_true != self.y_given) & (self.y_given >= 0)
        if self.num_classes is None:
            hi = max(int(self.y_given.max(initial=-1)), int(self.y_true.max(initial=-1)) if self.y_true is not None else -1)
            self.num_classes = max(hi + 1, 2)
        if isinstance(self.num_classes, bool) or int(self.num_classes) != self.num_classes or self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes!r} must be an integer >= 2")
        self.num_classes = int(self.num_classes)
        if not isinstance(self.records, dict) or not isinstance(self.history, dict):
            raise TypeError("records and history must be dicts")
        rows = None
        for k, v in self.records.items():
            shape = getattr(v, "shape", None)
            if shape is None:
                v = self.records[k] = np.asarray(v)
                shape = v.shape
            if len(shape) != 2 or shape[1] != n:
                raise ValueError(f"record {k!r} has shape {tuple(shape)}; records must be [rows, n] with n={n} "
                                 "(one column per example, one row per recorded epoch)")
            if rows is not None and shape[0] != rows:
                raise ValueError(f"records disagree on the number of rows: {k!r} has {shape[0]}, others {rows}")
            rows = shape[0]
        rows = rows or 0
        if self.record_epochs is None:
            self.record_epochs = np.arange(1, rows + 1, dtype=np.int64)
        else:
            re_ = np.asarray(self.record_epochs, dtype=np.int64).reshape(-1)
            if self.records and re_.size != rows:
                raise ValueError(f"record_epochs has {re_.size} entries for {rows} record rows")
            if re_.size and (re_[0] < 1 or np.any(np.diff(re_) <= 0)):
                raise ValueError(f"record_epochs must be increasing epoch numbers >= 1, got {re_[:8].tolist()}...")
            self.record_epochs = re_
        self.history = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.history.items()}
        partial = self.metadata.get("partial_epoch") if isinstance(self.metadata, dict) else None
        last_full_record = int(self.record_epochs[-1]) if self.record_epochs.size else 0
        if partial is not None and last_full_record == partial:
            last_full_record = int(self.record_epochs[-2]) if self.record_epochs.size > 1 else 0
        inferred = max([last_full_record] + [v.size for v in self.history.values()])
        if self.epochs_completed is None:
            self.epochs_completed = inferred
        else:
            if isinstance(self.epochs_completed, bool) or int(self.epochs_completed) != self.epochs_completed \
                    or self.epochs_completed < 0:
                raise ValueError(f"epochs_completed={self.epochs_completed!r} must be an integer >= 0")
            self.epochs_completed = int(self.epochs_completed)
            if self.epochs_completed < last_full_record:
                raise ValueError(f"epochs_completed={self.epochs_completed} but records hold epoch {last_full_record}; "
                                 "leave epochs_completed out to infer it")
        if not isinstance(self.masks, dict):
            raise TypeError(f"masks must be a dict of boolean [n] arrays, got {type(self.masks).__name__}")
        for k, m in list(self.masks.items()):
            m = np.asarray(m)
            if m.shape != (n,) or m.dtype != bool:
                raise ValueError(f"mask {k!r} must be a boolean array of shape ({n},), got {m.dtype} {m.shape}")
            self.masks[k] = m
        for k, s in list(self.summaries.items()):
            s = np.asarray(s)
            if s.shape != (n,):
                raise ValueError(f"summary {k!r} has shape {s.shape}, expected ({n},)")
            self.summaries[k] = s

    # -- views --------------------------------------------------------------
    @property
    def n_train(self) -> int:
        return int(self.y_given.size)

    n_examples = n_train

    @property
    def has_mask(self) -> bool:
        """Whether the mask of mislabelled examples is known (synthetic noise)."""
        return self.is_noisy is not None

    @property
    def example_kind(self) -> np.ndarray | None:
        """Per example: 0 clean, 1 mislabelled, 2 outlier, 3 corrupted input (see :data:`KIND_NAMES`); None when
        the noise mask is unknown."""
        if self.is_noisy is None:
            return None
        kind = np.where(self.is_noisy, 1, 0).astype(np.int8)
        if "is_outlier" in self.masks:
            kind[self.masks["is_outlier"]] = 2
        if "is_corrupted" in self.masks:
            kind[self.masks["is_corrupted"]] = 3
        return kind

    def mask(self, name: str) -> np.ndarray:
        """A boolean ``[n]`` mask by name: ``is_noisy``, ``is_outlier``, ``is_corrupted``, ``touched`` (any of them)."""
        if name == "is_noisy" and self.is_noisy is not None:
            return self.is_noisy
        if name in self.masks:
            return self.masks[name]
        if name == "touched" and self.is_noisy is not None:
            return self.example_kind != 0
        known = (["is_noisy", "touched"] if self.is_noisy is not None else []) + sorted(self.masks)
        raise KeyError(f"mask {name!r} is not known for this run; known: {known}")

    @property
    def partial_epoch(self) -> int | None:
        """The epoch an interrupted run stopped in, when its rows were kept (the last record row)."""
        return self.metadata.get("partial_epoch")

    def history_frame(self) -> pd.DataFrame:
        """One row per completed epoch (``epoch`` starts at 1); every :data:`HISTORY_FIELDS` column (NaN if absent)."""
        e = self.epochs_completed
        cols = {}
        for k in dict.fromkeys(HISTORY_FIELDS + tuple(self.history)):
            v = np.full(e, np.nan)
            src = self.history.get(k)
            if src is not None:
                m = min(e, src.size)
                v[:m] = src[:m]
            cols[k] = v
        df = pd.DataFrame(cols)
        df.insert(0, "epoch", np.arange(1, e + 1))
        return df

    def _row_of(self, epoch: int) -> int:
        if epoch == -1:
            if not self.record_epochs.size:
                raise ValueError("this run has no record rows")
            return self.record_epochs.size - 1
        hit = np.flatnonzero(self.record_epochs == epoch)
        if not hit.size:
            shown = self.record_epochs.tolist()
            shown = shown if len(shown) <= 12 else shown[:6] + ["..."] + shown[-3:]
            raise ValueError(f"epoch={epoch} was not recorded; recorded epochs: {shown} (-1: the last)")
        return int(hit[0])

    def record(self, name: str, epoch: int | None = None) -> np.ndarray:
        """A record ``[rows, n]`` (rows: :attr:`record_epochs`) or, with ``epoch`` (1-based; -1 = last row), ``[n]``."""
        if name not in self.records:
            raise KeyError(f"record {name!r} was not kept in this run; available: {sorted(self.records)}")
        arr = self.records[name]
        if epoch is None:
            return arr
        return np.asarray(arr[self._row_of(epoch)])

    def iter_record(self, name: str, epochs=None):
        """Yield ``(epoch, row [n])`` for the recorded epochs (or those of ``epochs`` recorded), one row at a time."""
        if name not in self.records:
            raise KeyError(f"record {name!r} was not kept in this run; available: {sorted(self.records)}")
        want = None if epochs is None else {int(e) for e in epochs}
        for k, e in enumerate(self.record_epochs.tolist()):
            if want is None or e in want:
                yield e, np.asarray(self.records[name][k])

    def to_frame(self, fields=None, epochs=None, index=None) -> pd.DataFrame:
        """Tidy per-example table: one row per example and recorded epoch.

        Columns: ``epoch``, ``index`` (position in the training set), ``given``,
        ``true`` and ``is_noisy`` (when known), one column per record field
        (default: all kept) and ``correct`` (prediction == given label) when
        ``pred`` is kept.  ``epochs`` and ``index`` select a subset (the full
        table of a 1M-example, 100-epoch run would need ~5 GiB).
        """
        fields = [f for f in (fields or RECORD_FIELDS) if f in self.records]
        rows = [self._row_of(int(e)) for e in (self.record_epochs if epochs is None else epochs)]
        ep = self.record_epochs[rows] if rows else np.zeros(0, np.int64)
        idx = np.arange(self.n_train) if index is None else np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_train):
            raise ValueError(f"index must lie in [0, {self.n_train}); got values in [{idx.min()}, {idx.max()}]")
        k = idx.size
        cols = {"epoch": np.repeat(ep, k).astype(np.int32), "index": np.tile(idx, len(rows)).astype(np.int64),
                "given": np.tile(self.y_given[idx], len(rows))}
        if self.y_true is not None:
            cols["true"] = np.tile(self.y_true[idx], len(rows))
        if self.is_noisy is not None:
            cols["is_noisy"] = np.tile(self.is_noisy[idx], len(rows))
        for k, m in self.masks.items():
            cols[k] = np.tile(m[idx], len(rows))
        if self.masks and self.is_noisy is not None:
            cols["kind"] = np.tile(np.asarray(KIND_NAMES)[self.example_kind[idx]], len(rows))
        for f in fields:
            arr = self.records[f]
            cols[f] = np.concatenate([np.asarray(arr[r])[idx] for r in rows]) if rows else np.zeros(0, arr.dtype)
        if "pred" in cols:
            cols["correct"] = cols["pred"] == cols["given"]
        return pd.DataFrame(cols)

    def summary(self) -> dict:
        """Headline numbers: final and best test accuracy (and where), final memorisation.

        NaN-aware: ``final_acc`` is the test accuracy of the last epoch that has
        one; ``best_acc`` the best over the epochs that have one (a run stopped
        by a non-finite loss keeps its real best).  NaN where not measured.
        """
        h = self.history_frame()
        out = {"epochs": int(self.epochs_completed), "final_acc": math.nan, "best_acc": math.nan,
               "epoch_of_best": None, "noisy_fit": math.nan, "clean_acc": math.nan,
               "noise_rate_realised": float(self.is_noisy.mean()) if self.is_noisy is not None and self.n_train
               else math.nan, "stopped": self.stopped}
        if h.empty:
            return out
        acc = h["test_acc"].to_numpy()
        ok = np.flatnonzero(np.isfinite(acc))
        if ok.size:
            best = ok[np.argmax(acc[ok])]
            out.update(final_acc=float(acc[ok[-1]]), best_acc=float(acc[best]), epoch_of_best=int(h["epoch"].iloc[best]))
        for k in ("noisy_fit", "clean_acc"):
            v = h[k].to_numpy()
            fin = np.flatnonzero(np.isfinite(v))
            if fin.size:
                out[k] = float(v[fin[-1]])
        return out

    # -- persistence -----------------------------------------------------------
    def save(self, folder) -> Path:
        """Save to ``folder`` (format 2, see the module docstring); returns the folder.

        Each file is written atomically and ``run.json`` last, so a folder with a
        ``run.json`` is a complete run.  Records are written row by row (a
        memory-mapped run is never loaded whole); records that already live in
        ``folder`` (a Recorder's folder) are kept as they are.
        """
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(f"cannot save the run to {str(folder)!r}: it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        labels = {"y_given": self.y_given}
        if self.y_true is not None:
            labels["y_true"] = self.y_true
        if self.is_noisy is not None:
            labels["is_noisy"] = self.is_noisy
        labels.update({f"mask__{k}": m for k, m in self.masks.items()})
        _save_npz(folder / "labels.npz", labels)
        atomic_write_text(folder / "history.csv", self.history_frame().to_csv(index=False))
        if self.summaries:
            _save_npz(folder / "summaries.npz", self.summaries)
        fields = {}
        for name, arr in self.records.items():
            target = folder / "records" / f"{name}.npy"
            fields[name] = str(np.dtype(arr.dtype))
            if isinstance(arr, np.memmap) and arr.filename and Path(arr.filename).resolve() == target.resolve():
                continue
            _save_rows(target, arr)
        if self.model is not None:
            import torch

            mbuf = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, mbuf)
            atomic_write_bytes(folder / "model.pt", mbuf.getvalue())
        from . import __version__

        atomic_write_json(folder / "run.json", {
            "format_version": FORMAT_VERSION, "config": self.config, "num_classes": self.num_classes,
            "n_examples": self.n_train, "epochs_completed": self.epochs_completed, "stopped": self.stopped,
            "record_epochs": self.record_epochs.tolist(), "fields": fields, "summary": self.summary(),
            "grlib_version": __version__, "model_inputs": self.model_inputs, "metadata": self.metadata,
        })
        return folder

    @classmethod
    def load(cls, folder, *, with_model: bool = False, mmap: bool = True) -> "RunResult":
        """Load a run saved by :meth:`save` or being written by a :class:`grlib.Recorder`.

        Records are memory-mapped (read-only) unless ``mmap=False``.  A Recorder
        folder without ``run.json`` (still training, or crashed) loads its
        finished epochs, with ``stopped`` saying so.  ``with_model=True``
        rebuilds a grlib model on CPU (a user's own model: load
        ``model.pt`` into it with :meth:`load_model_state`).  Damaged or
        foreign folders raise :class:`RunLoadError` naming the file.
        """
        folder = Path(folder)
        if folder.is_file():
            hint = f"; pass its folder, {str(folder.parent)!r}" if folder.name in ("run.json", "progress.json") else ""
            raise RunLoadError(f"{str(folder)!r} is a file, not a run folder{hint}")
        if not folder.is_dir():
            raise FileNotFoundError(f"no run folder at {str(folder)!r}")
        meta_path = folder / "run.json"
        if meta_path.is_file():
            meta = _read_json(meta_path)
            status = None
        elif (folder / "progress.json").is_file():
            meta = _read_json(folder / "progress.json")
            status = meta.get("status")
        else:
            raise RunLoadError(f"{str(folder)!r} holds no run (no run.json, and no progress.json of a Recorder)")
        version = meta.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise RunLoadError(f"{meta_path.name if status is None else 'progress.json'} in {str(folder)!r} has "
                               f"format_version {version!r}: written by a newer grlib ({meta.get('grlib_version')}); "
                               f"this grlib ({_version()}) reads formats 1-{FORMAT_VERSION}: upgrade grlib")
        if version == 1:
            res = _load_v1(folder, meta)
        elif status is None:
            res = _load_v2(folder, meta, mmap)
        else:
            res = _load_progress(folder, meta, mmap)
        if with_model:
            res.model = _load_model(folder, res)
        return res

    def load_model_state(self, model, folder=None):
        """Load this run's saved ``model.pt`` (from ``folder``, default: where it was loaded from) into ``model``."""
        import torch

        folder = Path(folder or self.metadata.get("_folder", ""))
        path = folder / "model.pt"
        if not path.is_file():
            raise FileNotFoundError(f"no model.pt in {str(folder)!r}")
        model.load_state_dict(_torch_load(path))
        return model

    def __repr__(self) -> str:
        s = self.summary()
        acc = ""
        if s.get("epochs") and np.isfinite(s.get("final_acc", math.nan)):
            acc = f", final_acc={s['final_acc']:.4f}, best_acc={s['best_acc']:.4f}"
        name = self.config.get("loss") or self.metadata.get("data_name") or "run"
        stop = f", stopped={self.stopped!r}" if self.stopped else ""
        return f"RunResult({name}, n_train={self.n_train}, epochs={self.epochs_completed}{acc}{stop})"


# -- file helpers ---------------------------------------------------------------------------------------------
def _version() -> str:
    from . import __version__

    return __version__


def _save_npz(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def _save_rows(target: Path, arr) -> None:
    """Write a [rows, n] array as .npy row by row into a temporary file, then move it into place."""
    import os
    import tempfile

    from .storage import NpyRows

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        rows, n = arr.shape
        w = NpyRows.create(tmp, arr.dtype, n)
        for r in range(rows):
            w.append(np.asarray(arr[r]))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise RunLoadError(f"{str(path)!r} is damaged (not text); the run cannot be loaded") from None
    except ValueError as exc:
        raise RunLoadError(f"{str(path)!r} is damaged (not valid JSON: {exc}); the run cannot be loaded") from None
    if not isinstance(meta, dict):
        raise RunLoadError(f"{str(path)!r} is not a grlib run file (a JSON object was expected)")
    return meta


def _read_npz(path: Path) -> dict:
    if not path.is_file():
        raise RunLoadError(f"{str(path)!r} is missing; the run folder is incomplete")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise RunLoadError(f"{str(path)!r} is damaged (not a readable .npz of arrays: {type(exc).__name__}); the "
                           "run cannot be loaded") from None


def _load_npy(path: Path, rows: int | None, mmap: bool):
    from .storage import load_rows

    if not path.is_file():
        raise RunLoadError(f"record file {str(path)!r} is missing")
    try:
        return load_rows(path, rows, mmap=mmap)
    except (ValueError, OSError, EOFError) as exc:
        raise RunLoadError(f"record file {str(path)!r} is damaged ({exc})") from None


def _history_from_csv(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        df = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RunLoadError(f"{str(path)!r} is damaged ({type(exc).__name__}: {exc})") from None
    return {k: df[k].to_numpy(np.float64) for k in df.columns if k != "epoch"}


def _check_n(folder: Path, name: str, arr, n: int):
    if arr is not None and np.shape(arr)[-1] != n:
        raise RunLoadError(f"{name} in {str(folder)!r} has {np.shape(arr)[-1]} examples but the run has {n}")


def _load_records(folder: Path, meta: dict, n: int, mmap: bool) -> tuple[np.ndarray, dict]:
    """The record epochs a run (or a Recorder's progress file) states, and its records/<field>.npy cut to them."""
    rec_epochs = np.asarray(meta.get("record_epochs") or [], np.int64)
    records = {}
    for name in meta.get("fields") or {}:
        arr = _load_npy(folder / "records" / f"{name}.npy", len(rec_epochs), mmap)
        _check_n(folder, f"records/{name}.npy", arr, n)
        records[name] = arr
    return rec_epochs, records


def _load_v2(folder: Path, meta: dict, mmap: bool) -> RunResult:
    labels = _read_npz(folder / "labels.npz")
    if "y_given" not in labels:
        raise RunLoadError(f"{str(folder / 'labels.npz')!r} lacks y_given")
    n = labels["y_given"].size
    rec_epochs, records = _load_records(folder, meta, n, mmap)
    summaries = _read_npz(folder / "summaries.npz") if (folder / "summaries.npz").is_file() else {}
    for k, v in summaries.items():
        _check_n(folder, f"summaries.npz[{k}]", v, n)
    try:
        res = RunResult(config=meta.get("config") or {}, y_given=labels["y_given"], y_true=labels.get("y_true"),
                        is_noisy=labels.get("is_noisy"), num_classes=meta.get("num_classes"),
                        history=_history_from_csv(folder / "history.csv"), records=records,
                        epochs_completed=meta.get("epochs_completed"), stopped=meta.get("stopped"),
                        model_inputs=meta.get("model_inputs") or {}, record_epochs=rec_epochs,
                        summaries=summaries, metadata={**(meta.get("metadata") or {}), "_folder": str(folder)},
                        masks={k.split("__", 1)[1]: v for k, v in labels.items() if k.startswith("mask__")})
    except (TypeError, ValueError) as exc:
        raise RunLoadError(f"run folder {str(folder)!r} is inconsistent: {exc}") from None
    return res


def _load_progress(folder: Path, meta: dict, mmap: bool) -> RunResult:
    """A Recorder folder without run.json: the finished epochs of a run still going or crashed."""
    n = meta.get("n_examples")
    if not isinstance(n, int) or n < 1:
        raise RunLoadError(f"{str(folder / 'progress.json')!r} does not state n_examples")
    rec_epochs, records = _load_records(folder, meta, n, mmap)
    lab = folder / "labels_given.npy"
    y_given = np.load(lab, allow_pickle=False).astype(np.int64) if lab.is_file() else np.full(n, -1, np.int64)
    done = int(meta.get("epochs_completed") or 0)
    status = meta.get("status")
    stopped = (f"incomplete: the recording is {status!r} (not finished) after {done} epoch(s); "
               f"epoch {done + 1} was in progress or never started")
    md = {"_folder": str(folder), "unseen_per_epoch": meta.get("unseen_per_epoch"), "incomplete": True}
    if meta.get("partial_epoch") is not None:
        md["partial_epoch"] = meta["partial_epoch"]
    history = _history_from_csv(folder / "history.csv")
    history = {k: v[:done] for k, v in history.items()}
    return RunResult(config={}, y_given=y_given, num_classes=meta.get("num_classes"), history=history,
                     records=records, epochs_completed=done, stopped=stopped, record_epochs=rec_epochs, metadata=md)


def _load_v1(folder: Path, meta: dict) -> RunResult:
    arrays = _read_npz(folder / "arrays.npz")
    for k in ("y_given",):
        if k not in arrays:
            raise RunLoadError(f"{str(folder / 'arrays.npz')!r} lacks {k}")
    records = {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("records__")}
    history = {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("history__")}
    done = meta.get("epochs_completed")
    if done is None:  # older files: infer from the history
        acc = history.get("test_acc")
        done = int(np.isfinite(acc).sum()) if acc is not None else None
    if done is not None:  # v1 records were allocated for every planned epoch: keep the completed ones
        records = {k: v[: max(int(done), 1) if v.shape[0] else 0] for k, v in records.items()}
        if records and int(done) == 0:
            records = {k: v[:0] for k, v in records.items()}
    try:
        return RunResult(config=meta.get("config") or {}, y_given=arrays["y_given"], y_true=arrays.get("y_true"),
                         is_noisy=arrays.get("is_noisy"), num_classes=meta.get("num_classes"), history=history,
                         records=records, epochs_completed=done, stopped=meta.get("stopped"),
                         model_inputs=meta.get("model_inputs") or {}, metadata={"_folder": str(folder)})
    except (TypeError, ValueError) as exc:
        raise RunLoadError(f"run folder {str(folder)!r} is inconsistent: {exc}") from None


def _torch_load(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError for damaged files
        raise RunLoadError(f"{str(path)!r} is damaged and cannot be read as a model state_dict "
                           f"({type(exc).__name__})") from None


def _load_model(folder: Path, res: RunResult):
    path = folder / "model.pt"
    if not path.is_file():
        raise RunLoadError(f"{str(folder)!r} holds no model.pt (the run kept no model)")
    state = _torch_load(path)
    from .models import get_model, model_names

    name = res.config.get("model")
    if name not in model_names():
        raise RunLoadError(f"the run's model ({name!r}) is not one of grlib's ({', '.join(model_names())}); build "
                           "your model and call result.load_model_state(model)")
    if "in_features" not in res.model_inputs:
        raise RunLoadError(f"{str(folder / 'run.json')!r} does not record the model's inputs; cannot rebuild the model")
    shape = res.model_inputs.get("image_shape")
    kwargs = {}
    if res.config.get("batchnorm"):
        kwargs["batchnorm"] = True
    model = get_model(name, in_features=int(res.model_inputs["in_features"]), num_classes=res.num_classes,
                      image_shape=tuple(shape) if shape else None, hidden=tuple(res.config.get("hidden", (256, 256))),
                      **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RunLoadError(f"{str(path)!r} does not fit the run's model: {str(exc).splitlines()[0]}") from None
    return model.eval()
