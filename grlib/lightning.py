"""Record every example from a PyTorch Lightning training run: a callback around :class:`grlib.Recorder`.

Lightning owns the loop, so two things must reach the callback:

* **the example indices**, in each batch: wrap your training set in
  :class:`grlib.IndexedDataset` (its items are ``(x, y, index)``), or return a
  dict batch with an ``"index"`` entry;
* **the logits** (and, optionally, grlib's loss details), in the dict your
  ``training_step`` returns: ``{"loss": loss, "logits": logits}`` plus
  ``"details": loss_fn.details(logits, y)`` when you train with a grlib loss
  (then ``weight``, ``loss`` and ``log_emphasis`` are recorded too).

::

    class Module(lightning.LightningModule):
        def training_step(self, batch, batch_idx):
            x, y, index = batch
            logits = self(x)
            out = self.loss_fn.details(logits, y)            # a grlib loss, e.g. grlib.get_loss("gr")
            return {"loss": out.values.mean(), "logits": logits, "details": out}

    rec = grlib.lightning.RecorderCallback(len(train_set), path="runs/lightning")
    trainer = lightning.Trainer(max_epochs=10, callbacks=[rec])
    trainer.fit(Module(), DataLoader(grlib.IndexedDataset(train_set), batch_sampler=grlib.EqualBatchSampler(...)))
    result = rec.result                                     # a grlib.RunResult, after fit

Under a DDP strategy (``Trainer(strategy="ddp")``) pass ``distributed=True``
(each epoch is merged across ranks, rank 0 writes the folder) and train with
``grlib.GRLoss(normalize="global")``, returning ``loss_fn.reduce(out.values)``
as the loss (the exact global-batch loss; ``out.values.mean()`` is exact only
when every rank has the same number of examples).

At each epoch's end the callback passes Lightning's logged scalar metrics
(``trainer.callback_metrics``: e.g. ``val_acc`` logged by ``validation_step``)
to the Recorder's history.  (Lightning runs callbacks' ``on_train_epoch_end``
before the module's own, so a value logged there reaches the history one
epoch late: log it in ``validation_step`` or ``training_step``.)  Lightning must be installed (``pip install grlib[lightning]``).
"""
from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from .recorder import Recorder

__all__ = ["RecorderCallback"]


class RecorderCallback(pl.Callback):
    """A Lightning callback that records every training example through a :class:`grlib.Recorder`.

    Parameters
    ----------
    n_examples : int
        Size of the training set.
    path : optional
        Folder for disk-backed records (see :class:`grlib.Recorder`).
    index_key, logits_key, details_key : str
        Where the callback finds the indices (dict batches; tuple batches use
        their third item), the logits and the optional grlib ``LossOutput``
        (in the dict ``training_step`` returns).
    y_true, is_noisy : optional
        Passed to :meth:`grlib.Recorder.result` when training ends (known only
        for synthetic noise).
    **recorder_kwargs
        ``fields``, ``dtype``, ``every``, ``overwrite``, ``metadata`` for the Recorder.

    After ``trainer.fit`` the run is in :attr:`result` (a :class:`grlib.RunResult`).
    """

    def __init__(self, n_examples: int, path=None, *, index_key: str = "index", logits_key: str = "logits",
                 details_key: str = "details", y_true=None, is_noisy=None, **recorder_kwargs):
        super().__init__()
        self.recorder = Recorder(n_examples, path, **recorder_kwargs)
        self.index_key, self.logits_key, self.details_key = index_key, logits_key, details_key
        self.y_true, self.is_noisy = y_true, is_noisy
        self.result = None

    def _split_batch(self, batch):
        if isinstance(batch, dict):
            if self.index_key not in batch:
                raise KeyError(f"the batch has no {self.index_key!r} entry: wrap the training set in "
                               "grlib.IndexedDataset or add the examples' indices to each batch")
            return batch[self.index_key], batch.get("y", batch.get("target"))
        if isinstance(batch, (tuple, list)) and len(batch) >= 3:
            return batch[2], batch[1]
        raise TypeError("RecorderCallback needs each batch to carry the examples' indices: (x, y, index) tuples "
                        "(grlib.IndexedDataset) or dicts with an 'index' entry")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not isinstance(outputs, dict) or self.logits_key not in outputs:
            raise KeyError(f"training_step must return a dict with the logits under {self.logits_key!r} (and the "
                           f"loss under 'loss'), e.g. {{'loss': loss, '{self.logits_key}': logits}}")
        index, y = self._split_batch(batch)
        if y is None:
            raise KeyError("the batch's labels were not found (a tuple's second item, or 'y' / 'target' in a dict)")
        self.recorder.update(index, outputs[self.logits_key], y, outputs.get(self.details_key))

    def on_train_epoch_end(self, trainer, pl_module):
        hist = {}
        for k, v in trainer.callback_metrics.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                hist[k] = float(v.detach().cpu())
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                hist[k] = float(v)
        hist.setdefault("lr", _lr(trainer))
        self.recorder.end_epoch(**{k.replace("/", "_"): v for k, v in hist.items()})

    def on_fit_end(self, trainer, pl_module):
        self.result = self.recorder.result(y_true=self.y_true, is_noisy=self.is_noisy, model=pl_module,
                                           lightning_epochs=int(trainer.current_epoch))


def _lr(trainer) -> float:
    try:
        return float(trainer.optimizers[0].param_groups[0]["lr"])
    except (IndexError, AttributeError, KeyError):  # pragma: no cover - no optimizer
        return math.nan
