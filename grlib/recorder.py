"""Record every example's probability, margin, loss and weight from any PyTorch training loop.

::

    rec = grlib.Recorder(len(train_set), path="runs/mine")     # path=None keeps the records in memory
    for epoch in range(epochs):
        for x, y, index in loader:                              # index: positions in the training set
            logits = model(x)
            out = loss_fn.details(logits, y)                     # optional: any grlib loss
            out.values.mean().backward(); opt.step(); opt.zero_grad()
            rec.update(index, logits, y, out)                    # out=None: p, pred, margin from the logits
        rec.end_epoch(test_acc=acc, lr=sched.get_last_lr()[0])  # optional per-epoch history values
    result = rec.result(y_true=None, is_noisy=None, data_name="mine")

What is recorded, per example and epoch (``[epochs, n]``, NaN / -1 where an
example was not seen that epoch):

==============  =========================================================================
``p``           probability of the *given* label, from the logits of the training pass
``pred``        predicted class (argmax of the logits)
``margin``      logit of the given label minus the largest other logit (AUM's margin; > 0: predicted as given)
``loss``        the loss's per-example value (needs ``out``)
``weight``      the loss's emphasis normalised within the batch: sums to 1 per batch (needs ``out``)
``log_emphasis`` log of the unnormalised emphasis (needs ``out``)
``eval_p``      ``p`` from an evaluation pass (:meth:`Recorder.update_eval`)
``eval_pred``   ``pred`` from an evaluation pass
==============  =========================================================================

Running per-example summaries are kept from every epoch's training pass, in
float64, whatever the storage dtype and ``every`` (see :data:`SUMMARY_FIELDS`),
so detectors need not scan every epoch.

Cost on the hot path: :meth:`update` launches a handful of small tensor ops and
never synchronises with the device: values are written into per-epoch
buffers on the logits' device, and copied to the host once per epoch by
:meth:`end_epoch`.  Index checks on CPU index tensors run at once (no device
involved); for index tensors already on a GPU they run on the device and are
reported at :meth:`end_epoch`.

Storage: with ``path``, one ``.npy`` file per field in ``path/records/``,
appended epoch by epoch (plain writes, no memory map held open, so resident
memory stays bounded for any run length), a ``progress.json`` replaced
atomically after each epoch (the folder is readable by
:meth:`grlib.RunResult.load` while training goes on and after a crash), and
``run.json`` written by :meth:`result`.

Several processes (``DistributedDataParallel``, ``torchrun``): create the
Recorder on **every** rank with ``distributed=True`` and the same ``path``;
each rank calls :meth:`update` with the global indices of the examples it
sees.  :meth:`end_epoch` merges the epoch across ranks (two collectives per
epoch, on the buffers' device: a MAX over ``3n`` integers and a SUM over
``10n`` floats; nothing on the per-batch hot path), so every rank holds the
whole epoch, the running summaries (forgetting included) are computed from the
merged epoch exactly as one process would compute them, and rank 0 alone
writes the folder: one ordinary run folder, readable while training goes on.
An example seen by several ranks in one epoch (``DistributedSampler`` pads
each epoch with repeats of the first examples of its order, so that every
rank gets as many) keeps the value of the **lowest rank** that saw it: for
``DistributedSampler`` that is the example's first occurrence in the epoch's
order (the repeats always land on higher ranks).  :meth:`end_epoch` and
:meth:`result` are then collective calls (every rank calls them, in step).
"""
from __future__ import annotations

import datetime as _dt
import io
import math
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
import torch

from ._checks import check_choice, check_int
from .distributed import collective_device, process_group_ready, process_group_size
from .io import atomic_write_json, atomic_write_text
from .loader import as_index_tensor
from .storage import NpyRows

__all__ = ["Recorder", "RECORD_FIELDS", "TRAIN_FIELDS", "EVAL_FIELDS", "LOSS_FIELDS", "SUMMARY_FIELDS",
           "DEFAULT_FIELDS"]

#: Fields from the training pass (the first three need only the logits).
TRAIN_FIELDS = ("p", "pred", "margin", "loss", "weight", "log_emphasis")
#: Fields that need a grlib LossOutput (``out``) in :meth:`Recorder.update`.
LOSS_FIELDS = ("loss", "weight", "log_emphasis")
#: Fields from an evaluation pass (:meth:`Recorder.update_eval`).
EVAL_FIELDS = ("eval_p", "eval_pred")
RECORD_FIELDS = TRAIN_FIELDS + EVAL_FIELDS
DEFAULT_FIELDS = RECORD_FIELDS
_INT_FIELDS = ("pred", "eval_pred")
#: Columns of the per-epoch device buffer (one row per example); margin is derived per epoch.
_COLS = ("p", "pred", "loss", "weight", "log_emphasis", "top1", "top2", "z_y")
_C = {c: i for i, c in enumerate(_COLS)}
#: Largest (n + 1) x C kept as the epoch's logits on the device (16 MiB of float32: Fashion-MNIST's 60,000 x 10
#: and CIFAR-10's 50,000 x 10 fit); beyond, p, the prediction and the top two logits are derived per batch, which
#: keeps the memory of a million-example run (bench_recorder.py scale) and costs a few more ops per update.
_LOGITS_BUFFER_MAX = 1 << 22
#: Examples per block when the running summaries are updated at the end of an epoch.
_SUMMARY_BLOCK = 1 << 16
#: Running summaries over every epoch's training pass, each ``[n]``:
#: n_seen (epochs the example was seen), p_sum, p_sq_sum, margin_sum, weight_sum (float64),
#: n_correct (epochs predicted as the given label), n_forget (correct -> wrong between consecutive
#: seen epochs), last_correct (int8: -1 never seen, else 0/1).
SUMMARY_FIELDS = ("n_seen", "p_sum", "p_sq_sum", "margin_sum", "weight_sum", "n_correct", "n_forget", "last_correct")
FORMAT_VERSION = 2
_STORAGE_DTYPES = ("float32", "float16")


class Recorder:
    """Per-example records from any PyTorch loop (see the module docstring).

    Parameters
    ----------
    n_examples : int
        Size of the training set; indices passed to :meth:`update` lie in ``[0, n_examples)``.
    path : str or Path, optional
        A folder for disk-backed records (created; an existing folder is
        refused unless ``overwrite=True``).  None keeps the records in memory.
    fields : sequence of str, optional
        The record fields to keep (default: all of :data:`RECORD_FIELDS`;
        loss fields are kept only if ``out`` is given, evaluation fields only
        if :meth:`update_eval` is called).  The running summaries are kept
        whatever the fields.
    dtype : "float32" or "float16"
        Storage dtype of the float fields (predictions are int16, or int32
        beyond 32,767 classes).  Summaries are float64 regardless.
    every : int
        Keep the records of epochs 1, 1 + every, 1 + 2*every, ... (summaries
        use every epoch).
    overwrite : bool
        Replace the contents of an existing ``path``.
    metadata : dict, optional
        Saved with the run (e.g. ``{"data_name": ..., "model": ...}``).
    sync_writes : bool
        ``fsync`` each epoch's rows before the progress file says they exist.
    distributed : bool
        Merge the records of every rank of ``group`` (see the module
        docstring): create the Recorder on every rank with the same
        arguments.  If ``torch.distributed`` is not initialised yet (a
        Lightning callback is built before the strategy starts the group),
        the Recorder joins the group, and prepares ``path``, at its first
        :meth:`update` / :meth:`end_epoch`.  With a single process it changes
        nothing.  Left False in a process group of
        several ranks, each Recorder keeps only the examples its own rank
        sees (a warning says so).
    group : torch.distributed.ProcessGroup, optional
        The ranks to merge over (default: the default group).
    """

    def __init__(self, n_examples: int, path=None, *, fields=None, dtype: str = "float32", every: int = 1,
                 overwrite: bool = False, metadata: dict | None = None, sync_writes: bool = False,
                 distributed: bool = False, group=None):
        if isinstance(n_examples, bool) or not isinstance(n_examples, Integral) or int(n_examples) < 1:
            raise ValueError(f"n_examples={n_examples!r} must be a positive integer (the size of the training set)")
        self.n = int(n_examples)
        if fields is None:
            fields = DEFAULT_FIELDS
        if isinstance(fields, str):
            fields = (fields,)
        fields = tuple(fields)
        for f in fields:
            check_choice("fields entry", f, RECORD_FIELDS)
        self.fields = tuple(dict.fromkeys(fields))
        self.dtype = np.dtype(check_choice("dtype", dtype, _STORAGE_DTYPES))
        self.every = check_int("every", every, low=1)
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.metadata = dict(metadata or {})
        self.sync_writes = bool(sync_writes)
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {distributed!r}")
        self.group = group
        self._overwrite = bool(overwrite)
        self._deferred = False               # distributed=True before the process group exists: join it later
        world, rank = process_group_size(group)
        self.world, self.rank = 1, 0
        if distributed:
            if process_group_ready():
                self.world, self.rank = world, rank
            else:  # e.g. a Lightning callback, built before the strategy initialises the group
                self._deferred = True
        elif world > 1:
            warnings.warn(f"Recorder(distributed=False) in a process group of {world} ranks: this Recorder keeps "
                          f"only the examples rank {rank} sees. Pass distributed=True (on every rank, same "
                          "arguments) to merge every rank's examples into one run.", RuntimeWarning, stacklevel=2)
        self.path = None if path is None else Path(path)
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise FileExistsError(f"path={str(self.path)!r} is a file; the Recorder needs a folder")
            if not self._deferred:
                self._prepare(overwrite)

        self.epoch = 0                       # completed epochs
        self.record_epochs: list[int] = []   # epochs whose rows were kept
        self.partial_epoch: int | None = None
        self.num_classes: int | None = None
        self.device: torch.device | None = None
        self._buf = None                     # [n + 1, 8] float32 on the device, one row per example (see _COLS)
        self._ebuf = None                    # [n + 1, 2]: eval_p, eval_pred
        self._given = None                   # [n + 1] int64 on device, -1 unseen
        self._flags = None                   # [2] int64 on device: bad index, repeated index (device-side checks)
        self._have_out = False
        self._trusted = False                # set by grlib.train: skip the index checks
        self._force_device_checks = False    # tests: run the GPU-side index checks on CPU tensors
        self._labels_fixed = False
        self._fixed_labels = None
        self._nan3 = None
        self._zbuf = None                    # [n + 1, C] the epoch's logits (few classes), see _init_buffers
        self._z_dirty = False
        self._epoch_has_out = False
        self._epoch_has_eval = False
        self._pending = False                # updates since the last end_epoch
        self._rows: dict[str, list] = {}     # in-memory rows (path=None)
        self._files: dict[str, NpyRows] = {}  # on-disk rows
        self._history: dict[str, list] = {}
        self._unseen: list[int] = []
        self.summaries = {
            "n_seen": np.zeros(self.n, np.int32), "p_sum": np.zeros(self.n), "p_sq_sum": np.zeros(self.n),
            "margin_sum": np.zeros(self.n), "weight_sum": np.zeros(self.n), "n_correct": np.zeros(self.n, np.int32),
            "n_forget": np.zeros(self.n, np.int32), "last_correct": np.full(self.n, -1, np.int8),
        }
        self._given_host = np.full(self.n, -1, np.int64)
        if not self._deferred:
            self._write_progress(status="running")

    def _prepare(self, overwrite: bool) -> None:
        if self.world > 1:
            self._prepare_shared(overwrite)
        else:
            _prepare_folder(self.path, overwrite)

    def _resolve(self) -> None:
        """Join the process group now (``distributed=True`` given before it existed): prepare the folder."""
        self._deferred = False
        self.world, self.rank = process_group_size(self.group)
        if self.path is not None:
            self._prepare(self._overwrite)
        self._write_progress(status="running")

    # -- the hot path -------------------------------------------------------------------------
    def _init_buffers(self, logits: torch.Tensor) -> None:
        self._alloc(logits.device)
        self.num_classes = int(logits.shape[1])
        # few classes: keep the epoch's logits and derive p, the prediction and the margin once per epoch (two
        # ops per update instead of ten); many classes: derive them per batch (the logits would not fit)
        if (self.n + 1) * self.num_classes <= _LOGITS_BUFFER_MAX:
            self._zbuf = torch.full((self.n + 1, self.num_classes), float("nan"), device=self.device)
            self._zseen = torch.zeros(self.n + 1, dtype=torch.bool, device=self.device)

    def _alloc(self, device) -> None:
        self.device = torch.device(device)
        self._buf = torch.full((self.n + 1, len(_COLS)), float("nan"), device=self.device)
        self._ebuf = torch.full((self.n + 1, len(EVAL_FIELDS)), float("nan"), device=self.device)
        self._given = torch.full((self.n + 1,), -1, dtype=torch.long, device=self.device)
        self._flags = torch.zeros(2, dtype=torch.long, device=self.device)
        self._spare = torch.full((), self.n, dtype=torch.long, device=self.device)
        if self._labels_fixed:
            self._given[: self.n] = self._fixed_labels.to(self.device)

    def _check_batch(self, index, logits, targets, what: str):
        if self._deferred:
            self._resolve()
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or not torch.is_floating_point(logits):
            raise TypeError(f"logits must be a floating-point tensor [B, C], got "
                            f"{type(logits).__name__}{'' if not isinstance(logits, torch.Tensor) else tuple(logits.shape)}")
        if logits.shape[1] < 2:
            raise ValueError(f"logits must have at least 2 classes, got shape {tuple(logits.shape)}")
        if self._buf is None:
            self._init_buffers(logits)
        elif self.num_classes is None:  # buffers made by a merge before this rank saw a batch
            self.num_classes = int(logits.shape[1])
        elif logits.shape[1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[1]} classes but earlier batches had {self.num_classes}")
        elif logits.device != self.device:
            raise ValueError(f"logits are on {logits.device} but earlier batches were on {self.device}")
        if self._trusted:  # grlib.train: indices from its own sampler, labels checked once
            idx = index if index.device == self.device else index.to(self.device, non_blocking=True)
            return idx, targets
        index = as_index_tensor(index, "index")
        if not isinstance(targets, torch.Tensor):
            targets = torch.as_tensor(np.asarray(targets))
        if targets.ndim != 1 or torch.is_floating_point(targets) or targets.dtype == torch.bool:
            raise TypeError(f"targets must be a 1-D tensor of integer class indices, got dtype {targets.dtype} "
                            f"and shape {tuple(targets.shape)}")
        b = logits.shape[0]
        if index.shape[0] != b or targets.shape[0] != b:
            raise ValueError(f"{what}: the batch tensors' lengths disagree: index {index.shape[0]}, logits {b}, "
                             f"targets {targets.shape[0]}")
        if index.device.type == "cpu" and not self._force_device_checks:  # on the host: no device sync
            if b:
                lo, hi = (int(v) for v in torch.aminmax(index))
                if lo < 0 or hi >= self.n:
                    raise IndexError(f"{what}: index holds values in [{lo}, {hi}], outside [0, {self.n}) "
                                     f"(n_examples={self.n})")
                if torch.unique(index).numel() != b:
                    raise ValueError(f"{what}: an index is repeated within one batch (each example may appear once "
                                     "per batch)")
            idx = index.to(self.device, non_blocking=True)
            idx = idx if idx.dtype == torch.long else idx.long()
        else:  # on the device: flag, route bad rows to the spare slot n, report at end_epoch
            idx = index.to(self.device)
            idx = idx if idx.dtype == torch.long else idx.long()
            bad = (idx < 0) | (idx >= self.n)
            self._flags[0] += bad.sum()
            srt = torch.sort(idx).values
            self._flags[1] += (srt[1:] == srt[:-1]).sum()
            idx = torch.where(bad, self._spare, idx)
        if targets.device != self.device:
            targets = targets.to(self.device, non_blocking=True)
        return idx, (targets if targets.dtype == torch.long else targets.long())

    @torch.no_grad()
    def update(self, index, logits: torch.Tensor, targets, out=None, *, mask=None) -> None:
        """Record one training batch.

        index : [B] int (tensor, array or list)
            The examples' positions in the training set.
        logits : [B, C] float tensor
            The model's outputs on the batch (detached here).
        targets : [B] int
            The labels the model was trained on (possibly noisy).
        out : grlib.LossOutput, optional
            ``loss_fn.details(logits, targets)``: adds ``loss``, ``weight``
            and ``log_emphasis`` (and its ``p``).
        mask : 0-d bool tensor, optional
            Device-side switch: when False the batch is not recorded (used by
            :func:`grlib.train` to drop the steps after a non-finite one without a
            host sync).
        """
        idx, t = self._check_batch(index, logits, targets, "update")
        z = logits.detach()
        if z.dtype != torch.float32:
            z = z.float()
        if mask is not None:
            idx = torch.where(mask, idx, self._spare)
        if out is not None:
            for name in ("values", "p", "weight", "log_emphasis"):
                v = getattr(out, name, None)
                if not isinstance(v, torch.Tensor) or v.shape != (z.shape[0],):
                    raise ValueError(f"out.{name} must be a tensor of shape [{z.shape[0]}] (a grlib LossOutput for "
                                     "this batch)")
            self._have_out = self._epoch_has_out = True
        if self._zbuf is not None:
            # the logits now, everything derived from them once per epoch (_materialize): no host sync
            self._zbuf.index_put_((idx,), z)
            self._zseen.index_fill_(0, idx, True)  # seen, even when its logits are NaN (a diverged model)
            self._z_dirty = True
            if out is not None:
                self._buf[:, _C["loss"]:_C["log_emphasis"] + 1].index_put_(
                    (idx,), torch.stack([out.values.detach(), out.weight, out.log_emphasis], 1).to(z.dtype))
        else:
            # many classes: the margin and the prediction are derived per epoch from the top two logits and the
            # given label's logit (see _derive)
            top_v, top_i = z.topk(2, dim=1)
            z_y = z.gather(1, t.view(-1, 1))
            if out is not None:
                cols = torch.cat([torch.stack([out.p, top_i[:, 0].to(z.dtype), out.values.detach(), out.weight,
                                               out.log_emphasis], 1).to(z.dtype), top_v, z_y], 1)
                self._buf.index_put_((idx,), cols)
            else:
                p = torch.exp(z_y - torch.logsumexp(z, dim=1, keepdim=True))
                self._put_no_out(idx, p, top_i, top_v, z_y)
        if not self._labels_fixed:
            self._given[idx] = t
        self._pending = True

    @torch.no_grad()
    def _materialize(self) -> None:
        """Fill the buffer's p, pred, top1, top2 and z_y columns from the epoch's logits (few-class mode)."""
        if self._zbuf is None or not self._z_dirty:
            return
        z = self._zbuf
        seen = self._zseen
        given = self._given.clamp(min=0).view(-1, 1)
        z_y = z.gather(1, given)
        top_v, top_i = z.topk(2, dim=1)
        p = torch.exp(z_y - torch.logsumexp(z, dim=1, keepdim=True))
        pred = torch.where(seen.view(-1, 1), top_i[:, :1].to(z.dtype), torch.full_like(p, float("nan")))
        self._buf[:, _C["p"]:_C["pred"] + 1] = torch.cat([p, pred], 1)
        self._buf[:, _C["top1"]:_C["z_y"] + 1] = torch.cat([top_v, z_y], 1)
        self._z_dirty = False

    def _put_no_out(self, idx, p, top_i, top_v, z_y) -> None:
        nan = self._nan_cols(p.shape[0])
        self._buf.index_put_((idx,), torch.cat([p, top_i[:, :1].to(p.dtype), nan, top_v, z_y], 1))

    def _nan_cols(self, b: int) -> torch.Tensor:
        if self._nan3 is None or self._nan3.shape[0] < b:
            self._nan3 = torch.full((b, 3), float("nan"), device=self.device)
        return self._nan3[:b]

    def set_labels(self, labels) -> None:
        """Fix the given labels of every example up front (skips one write per :meth:`update`)."""
        lab = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels))
        if lab.shape != (self.n,) or torch.is_floating_point(lab):
            raise ValueError(f"labels must be {self.n} integer labels, got {lab.dtype} {tuple(lab.shape)}")
        self._fixed_labels = lab.long()
        self._labels_fixed = True
        if self._given is not None:
            self._given[: self.n] = self._fixed_labels.to(self.device)

    @torch.no_grad()
    def update_eval(self, index, logits: torch.Tensor, targets) -> None:
        """Record one batch of an evaluation pass (``eval_p``, ``eval_pred``); same arguments as :meth:`update`."""
        idx, t = self._check_batch(index, logits, targets, "update_eval")
        z = logits.detach().float()
        p = torch.exp(z.gather(1, t[:, None]).squeeze(1) - torch.logsumexp(z, dim=1))
        self._ebuf[idx] = torch.stack([p, z.argmax(1).float()], 1)
        self._epoch_has_eval = True
        self._pending = True

    # -- per epoch ----------------------------------------------------------------------------
    def current(self, field: str) -> torch.Tensor | None:
        """This epoch's values of a field so far, ``[n]`` on the device (NaN / -1 unseen), or None before any update."""
        check_choice("field", field, RECORD_FIELDS + ("given",))
        if self._buf is None:
            return None
        self._materialize()
        b = self._buf[: self.n]
        if field == "given":
            return self._given[: self.n]
        if field in EVAL_FIELDS:
            v = self._ebuf[: self.n, EVAL_FIELDS.index(field)]
        elif field == "margin":
            top1, top2, z_y = b[:, _C["top1"]], b[:, _C["top2"]], b[:, _C["z_y"]]
            v = z_y - torch.where(b[:, _C["pred"]] == self._given[: self.n].to(b.dtype), top2, top1)
        else:
            v = b[:, _C[field]]
        return torch.nan_to_num(v, nan=-1.0).long() if field in _INT_FIELDS else v

    def end_epoch(self, *, partial: bool = False, **history) -> dict:
        """Close the epoch: update the summaries, store its rows, save progress.

        ``history``: per-epoch values (numbers or 0-d tensors), e.g. ``test_acc=...``.
        ``partial=True`` stores an interrupted epoch's rows (marked as partial)
        and ends the recording.  Returns ``{"epoch", "seen", "unseen"}``.
        """
        if self.partial_epoch is not None:
            raise RuntimeError(f"the recording ended with the partial epoch {self.partial_epoch}")
        if self._deferred:
            self._resolve()
        epoch = self.epoch + 1
        for k in history:
            if k in ("epoch", "partial"):
                raise ValueError(f"history name {k!r} is reserved")
        ehost = None
        self._materialize()
        if self.world > 1:
            self._merge_epoch()
        if self._buf is None:  # nothing seen at all
            host = None
            seen = np.zeros(self.n, bool)
        else:
            flags = self._flags.cpu().numpy()
            if flags[0]:
                raise IndexError(f"epoch {epoch}: {int(flags[0])} index value(s) outside [0, {self.n}) were passed to "
                                 f"update()/update_eval() (n_examples={self.n}); they were not recorded")
            if flags[1]:
                raise ValueError(f"epoch {epoch}: an index was repeated within one batch {int(flags[1])} time(s); each "
                                 "example may appear once per batch")
            raw = self._buf[: self.n].cpu().numpy()
            ehost = self._ebuf[: self.n].T.cpu().numpy() if self._epoch_has_eval else None
            given = self._given[: self.n].cpu().numpy()
            seen = np.isfinite(raw[:, _C["pred"]])
            self._given_host[seen] = given[seen]
            host = _derive(raw, given)
            if not partial:  # summaries cover finished epochs only (an interrupted one is kept as rows)
                self._update_summaries(host, seen)
        self._unseen.append(int(self.n - seen.sum()))
        for k, v in history.items():
            self._history.setdefault(k, [])
        for k in self._history:
            lst = self._history[k]
            lst.extend([math.nan] * (epoch - 1 - len(lst)))
            lst.append(_to_float(history.get(k, math.nan), k))
        keep = partial or (epoch - 1) % self.every == 0
        if keep:
            self._store_rows(epoch, host, ehost)
            self.record_epochs.append(epoch)
        if partial:
            self.partial_epoch = epoch
        else:
            self.epoch = epoch
        self._reset_epoch()
        self._write_progress(status="running")
        return {"epoch": epoch, "seen": int(seen.sum()), "unseen": int(self.n - seen.sum())}

    def _update_summaries(self, host: np.ndarray, seen: np.ndarray) -> None:
        # in blocks of examples: the float64 temporaries stay a few MiB whatever n (a 1M-example run would
        # otherwise hold ~50 MiB of them at the end of every epoch)
        for lo in range(0, self.n, _SUMMARY_BLOCK):
            sl = slice(lo, min(self.n, lo + _SUMMARY_BLOCK))
            s = {k: v[sl] for k, v in self.summaries.items()}  # views: updated in place
            sn = seen[sl]
            p = host[0][sl].astype(np.float64)
            pred = host[1][sl]
            margin = host[2][sl].astype(np.float64)
            ok = sn & np.isfinite(p)
            s["n_seen"] += sn
            s["p_sum"] += np.where(ok, p, 0.0)
            s["p_sq_sum"] += np.where(ok, p * p, 0.0)
            s["margin_sum"] += np.where(sn & np.isfinite(margin), margin, 0.0)
            if self._epoch_has_out:
                w = host[4][sl].astype(np.float64)
                s["weight_sum"] += np.where(sn & np.isfinite(w), w, 0.0)
            correct = sn & (pred == self._given_host[sl])
            s["n_correct"] += correct
            s["n_forget"] += sn & (s["last_correct"] == 1) & ~correct
            s["last_correct"][:] = np.where(sn, correct.astype(np.int8), s["last_correct"])

    def _field_available(self, f: str) -> bool:
        if f in EVAL_FIELDS:
            return self._epoch_has_eval
        if f in LOSS_FIELDS:
            return self._epoch_has_out
        return True

    def _store_rows(self, epoch: int, host, ehost) -> None:
        for f in self.fields:
            exists = f in self._rows or f in self._files
            if not exists and (host is None or not self._field_available(f)):
                continue  # never had values: not created (yet)
            dtype = self._field_dtype(f)
            if host is None or not self._field_available(f):
                row = np.full(self.n, -1 if f in _INT_FIELDS else np.nan, dtype)
            elif f in EVAL_FIELDS:
                row = ehost[EVAL_FIELDS.index(f)]
            else:
                row = host[TRAIN_FIELDS.index(f)]
            if f in _INT_FIELDS:
                row = np.where(np.isfinite(row), row, -1).astype(dtype)
            else:
                row = row.astype(dtype)  # a copy: the rows are views of the epoch buffer, reused next epoch
            self._append_row(f, row, dtype)

    def _field_dtype(self, f: str) -> np.dtype:
        if f in _INT_FIELDS:
            return np.dtype(np.int16 if (self.num_classes or 0) <= np.iinfo(np.int16).max else np.int32)
        return self.dtype

    def _append_row(self, f: str, row: np.ndarray, dtype) -> None:
        prior = len(self.record_epochs)  # rows already kept for other fields
        fill = -1 if f in _INT_FIELDS else np.nan
        if self.path is None:
            rows = self._rows.setdefault(f, [])
            while len(rows) < prior:
                rows.append(np.full(self.n, fill, dtype))
            rows.append(row)
        elif self.rank == 0:  # several ranks: rank 0 writes the merged rows
            fh = self._files.get(f)
            if fh is None:
                fh = self._files[f] = NpyRows.create(self.path / "records" / f"{f}.npy", dtype, self.n)
            while fh.rows < prior:
                fh.append(np.full(self.n, fill, dtype), fsync=False)
            fh.append(row, fsync=self.sync_writes)

    def _reset_epoch(self) -> None:
        if self._buf is not None:
            self._buf.fill_(float("nan"))
            self._ebuf.fill_(float("nan"))
        if self._zbuf is not None:
            self._zbuf.fill_(float("nan"))
            self._zseen.fill_(False)
            self._z_dirty = False
        self._epoch_has_out = False
        self._epoch_has_eval = False
        self._pending = False

    # -- results ------------------------------------------------------------------------------
    def history(self) -> dict:
        return {k: np.asarray(v + [math.nan] * (self.epoch - len(v)), dtype=np.float64)[: self.epoch]
                for k, v in self._history.items()}

    def _progress(self, status: str) -> dict:
        return {"format_version": FORMAT_VERSION, "status": status, "n_examples": self.n,
                "epochs_completed": self.epoch, "record_epochs": list(self.record_epochs),
                "partial_epoch": self.partial_epoch, "num_classes": self.num_classes,
                "fields": {f: str(fh.dtype) for f, fh in self._files.items()},
                "rows": {f: fh.rows for f, fh in self._files.items()},
                "unseen_per_epoch": list(self._unseen), "every": self.every,
                "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def _write_progress(self, status: str) -> None:
        if self.path is None or self.rank != 0:
            return
        if self.epoch or self.partial_epoch:
            _atomic_save_npy(self.path / "labels_given.npy", self._given_host.astype(np.int32))
            atomic_write_text(self.path / "history.csv", _history_csv(self.history()))
        atomic_write_json(self.path / "progress.json", self._progress(status))

    def result(self, *, y_true=None, is_noisy=None, model=None, model_inputs=None, config=None, stopped=None,
               **metadata):
        """The recorded run as a :class:`grlib.RunResult` (what the notebooks, plots and reports take).

        ``y_true`` / ``is_noisy``: the true labels / the mask of mislabelled
        examples when known (synthetic noise); None for real data (metrics
        that need them are NaN).  ``config``: the run's settings (a dict,
        saved); other keywords are saved as metadata (e.g.
        ``data_name="my-scans"``).  With ``path``, the run is also saved
        there (``run.json`` written last) and the result reads its records
        memory-mapped.

        With ``distributed=True`` in a process group this is a collective:
        rank 0 saves the merged run (its own ``history`` values and metadata
        are the ones saved), and every rank returns it loaded from ``path``
        (None, with a warning, on a rank that cannot see the folder: several
        machines need a shared file system).  Without ``path`` every rank
        returns the merged records from memory.
        """
        from .results import RunResult

        if self._deferred:
            self._resolve()
        if self._pending:
            warnings.warn("Recorder.result(): updates since the last end_epoch() are dropped (call end_epoch() "
                          "after the epoch's last batch)", RuntimeWarning, stacklevel=2)
            self._reset_epoch()
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config must be a dict of settings, got {type(config).__name__}")
        meta = {**self.metadata, **metadata, "unseen_per_epoch": list(self._unseen)}
        if self.partial_epoch is not None:
            meta["partial_epoch"] = self.partial_epoch
        if self.path is not None and self.world > 1:
            return self._shared_result(dict(y_true=y_true, is_noisy=is_noisy, model=model, model_inputs=model_inputs,
                                            config=config, stopped=stopped, meta=meta))
        res = self._build_result(y_true=y_true, is_noisy=is_noisy, model=model, model_inputs=model_inputs,
                                 config=config, stopped=stopped, meta=meta)
        if self.path is not None:
            self._write_progress(status="finished")
            res.save(self.path)
            return RunResult.load(self.path)
        return res

    def _build_result(self, *, y_true, is_noisy, model, model_inputs, config, stopped, meta):
        from .results import RunResult

        if self.path is None:
            records = {f: np.stack(rows) for f, rows in self._rows.items()}
            for f, arr in records.items():  # fields that started late were padded on append
                if arr.shape[0] != len(self.record_epochs):  # pragma: no cover - defensive
                    raise RuntimeError(f"record {f} has {arr.shape[0]} rows for {len(self.record_epochs)} epochs")
        else:
            from .storage import load_rows

            records = {f: load_rows(fh.path, fh.rows) for f, fh in self._files.items()}
        return RunResult(config=dict(config or {}), y_given=self._given_host.copy(), y_true=y_true, is_noisy=is_noisy,
                         num_classes=self.num_classes, history=self.history(), records=records,
                         epochs_completed=self.epoch, stopped=stopped, model=model,
                         model_inputs=dict(model_inputs or {}), record_epochs=np.asarray(self.record_epochs, np.int64),
                         summaries={k: v.copy() for k, v in self.summaries.items()}, metadata=meta)

    # -- several ranks ------------------------------------------------------------------------
    def _any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (a collective: also a barrier)."""
        import torch.distributed as dist

        t = torch.tensor([int(bool(flag))], dtype=torch.int32, device=collective_device(self.group))
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return bool(t.item())

    def _prepare_shared(self, overwrite: bool) -> None:
        """Rank 0 prepares the folder; every rank raises if it could not (no rank is left waiting)."""
        err = None
        if self.rank == 0:
            try:
                _prepare_folder(self.path, overwrite)
            except (OSError, ValueError) as exc:
                err = exc
        if self._any_rank(err is not None):
            if err is not None:
                raise err
            raise RuntimeError(f"rank 0 could not prepare the Recorder folder path={str(self.path)!r} (see rank 0's "
                               "error)")

    def _shared_result(self, kw: dict):
        """Rank 0 saves the merged run; every rank then returns it, loaded (memory-mapped) from ``path``."""
        from .results import RunResult

        err = None
        if self.rank == 0:
            try:
                res = self._build_result(**kw)
                self._write_progress(status="finished")
                res.save(self.path)
            except Exception as exc:  # every rank must reach the collective below
                err = exc
        if self._any_rank(err is not None):
            if err is not None:
                raise err
            raise RuntimeError(f"rank 0 could not save the run to path={str(self.path)!r} (see rank 0's error)")
        if not (self.path / "run.json").is_file():  # a folder this rank cannot see (no shared file system)
            warnings.warn(f"Recorder.result() on rank {self.rank}: path={str(self.path)!r} holds no run.json here "
                          "(rank 0 wrote it; several machines need a shared file system); returning None",
                          RuntimeWarning, stacklevel=3)
            return None
        return RunResult.load(self.path)

    def _merge_epoch(self) -> None:
        """Give every rank the whole epoch: the lowest rank that saw an example supplies its values.

        Two collectives on the buffers' device: a MAX over ``[3n + 5]`` int64
        (who saw each example in training and in evaluation, the given labels,
        the device-side error flags, whether loss details / evaluation came,
        the number of classes), then a SUM over ``[n, 10]`` float32 in which
        only the owning rank contributes each example (``x + 0 = x`` exactly,
        so the merged values are the owner's, bit for bit).
        """
        import torch.distributed as dist

        if self._buf is None:  # this rank saw nothing yet: join with empty buffers
            self._alloc(collective_device(self.group))
        n, code = self.n, self.world - self.rank  # MAX over codes picks the lowest rank
        buf, ebuf = self._buf[:n], self._ebuf[:n]
        seen = ~torch.isnan(buf[:, _C["pred"]])
        eseen = ~torch.isnan(ebuf[:, 1])
        zero = torch.zeros((), dtype=torch.long, device=self.device)
        codes = torch.tensor(code, dtype=torch.long, device=self.device)
        info = torch.tensor([int(self._epoch_has_out), int(self._epoch_has_eval), self.num_classes or 0],
                            dtype=torch.long, device=self.device)
        ints = torch.cat([torch.where(seen, codes, zero), torch.where(eseen, codes, zero), self._given[:n],
                          self._flags, info])
        dist.all_reduce(ints, op=dist.ReduceOp.MAX, group=self.group)
        owner, eowner = ints[:n], ints[n:2 * n]
        floats = torch.cat([torch.where((owner == code)[:, None], buf, 0.0),
                            torch.where((eowner == code)[:, None], ebuf, 0.0)], 1)
        dist.all_reduce(floats, op=dist.ReduceOp.SUM, group=self.group)
        nan = torch.tensor(float("nan"), device=self.device)
        buf.copy_(torch.where((owner > 0)[:, None], floats[:, : buf.shape[1]], nan))
        ebuf.copy_(torch.where((eowner > 0)[:, None], floats[:, buf.shape[1]:], nan))
        self._given[:n] = ints[2 * n: 3 * n]
        self._flags.copy_(ints[3 * n: 3 * n + 2])
        has_out, has_eval, classes = ints[3 * n + 2:].tolist()
        self._epoch_has_out = bool(has_out)
        self._have_out = self._have_out or self._epoch_has_out
        self._epoch_has_eval = bool(has_eval)
        if self.num_classes is None and classes:
            self.num_classes = int(classes)


def _derive(raw: np.ndarray, given: np.ndarray) -> list[np.ndarray]:
    """The epoch's TRAIN_FIELDS rows (``n`` each) from the device buffer's columns (margin from the top two logits).

    Views of ``raw`` where possible (no ``[6, n]`` copy: a million-example epoch would hold 24 MB more)."""
    pred = raw[:, _C["pred"]]
    margin = np.where(pred == given, raw[:, _C["top2"]], raw[:, _C["top1"]])
    with np.errstate(invalid="ignore"):  # inf - inf: a diverged example's margin is NaN, as its other fields
        np.subtract(raw[:, _C["z_y"]], margin, out=margin)
    return [raw[:, _C["p"]], pred, margin, raw[:, _C["loss"]], raw[:, _C["weight"]], raw[:, _C["log_emphasis"]]]


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    from .io import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _to_float(v, name: str) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"history value {name} must be a number, got a tensor of shape {tuple(v.shape)}")
        v = v.item()
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"history value {name}={v!r} must be a number") from None


def _history_csv(history: dict) -> str:
    import pandas as pd

    e = max((len(v) for v in history.values()), default=0)
    df = pd.DataFrame({k: v for k, v in history.items()})
    df.insert(0, "epoch", np.arange(1, e + 1))
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()


def _prepare_folder(path: Path, overwrite: bool) -> None:
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"path={str(path)!r} is a file; the Recorder needs a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"path={str(path)!r} already exists and is not empty; pass overwrite=True to "
                                  "replace its contents, or choose a new folder")
        if not ((path / "run.json").is_file() or (path / "progress.json").is_file()):
            raise FileExistsError(f"path={str(path)!r} holds files but is not a grlib run folder (no run.json or "
                                  "progress.json): overwrite=True replaces only a previous run; choose an empty or "
                                  "new folder")
        import shutil

        for child in path.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"path={str(path)!r} is not writable: {exc.strerror}") from None
