"""GR with PyTorch Lightning's DDP strategy: global-batch weights and every example recorded across processes.

Run on CPU (2 processes, gloo; Lightning starts the second one itself)::

    python examples/lightning_ddp_gr.py --out runs/lightning-ddp-digits

What it shows:

* ``grlib.GRLoss(normalize="global")`` inside ``training_step``: Lightning's
  DDP strategy is torch's DDP, so the weights are normalised over every
  rank's examples and the averaged gradient is the global batch's.  Return
  ``loss_fn.reduce(out.values)`` (exact for any split) as the loss.
* ``grlib.lightning.RecorderCallback(..., distributed=True)``: built before
  the strategy starts the process group, its Recorder joins the group at the
  first batch; each epoch is merged across ranks and rank 0 writes one run
  folder.  After ``fit`` every rank holds the run in ``callback.result``.
* Lightning replaces the sampler with a ``DistributedSampler`` (padding:
  an example repeated within an epoch keeps its first occurrence's values).
  Lightning's ``accumulate_grad_batches`` normalises GR per micro-batch; for
  weights over the whole accumulated batch use ``GRLoss.accumulate`` in a
  loop of your own.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import grlib

try:
    import lightning.pytorch as pl

    from grlib.lightning import RecorderCallback
except ImportError as exc:  # pragma: no cover - the example needs Lightning
    raise SystemExit(f"this example needs Lightning: pip install 'grlib[lightning]' ({exc})")


class GRModule(pl.LightningModule):
    def __init__(self, in_features: int, num_classes: int, lr: float):
        super().__init__()
        self.net = grlib.get_model("mlp", in_features=in_features, num_classes=num_classes)
        self.loss_fn = grlib.GRLoss(lam=1.0, beta=12.0, normalize="global")
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        logits = self.net(x)
        out = self.loss_fn.details(logits, y)   # weights over every rank's examples of the step
        return {"loss": self.loss_fn.reduce(out.values), "logits": logits.detach(), "details": out}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        acc = (self.net(x).argmax(1) == y).float().mean()
        self.log("test_acc", acc, sync_dist=True, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="GR with Lightning's DDP strategy and the Recorder callback")
    ap.add_argument("--out", default="runs/lightning-ddp-digits", help="run folder (replaced if it exists)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32, help="examples per process and step")
    ap.add_argument("--devices", type=int, default=2, help="processes")
    ap.add_argument("--noise", type=float, default=0.4)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    pl.seed_everything(args.seed, verbose=False)
    data = grlib.load_dataset("digits")
    noisy = grlib.add_label_noise(data.y_train, data.num_classes, "symmetric", args.noise, seed=args.seed)
    train_set = grlib.IndexedDataset((data.x_train, noisy.labels))          # items: (x, y, index)
    test_set = TensorDataset(torch.as_tensor(data.x_test), torch.as_tensor(data.y_test))
    callback = RecorderCallback(len(train_set), args.out, distributed=True, overwrite=True,
                                y_true=noisy.true_labels, metadata={"data_name": "digits"})
    trainer = pl.Trainer(strategy="ddp", devices=args.devices, accelerator="cpu", max_epochs=args.epochs,
                         callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    module = GRModule(data.num_features, data.num_classes, args.lr)
    trainer.fit(module, DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True),
                DataLoader(test_set, batch_size=256))
    result = callback.result
    if trainer.is_global_zero:
        s = result.summary()
        p_last = result.record("p", -1)
        seen = np.isfinite(p_last)
        auc = grlib.separation_auc(p_last[seen], result.is_noisy[seen])
        print(f"{trainer.world_size} processes: final test accuracy {s['final_acc']:.3f} (best {s['best_acc']:.3f}), "
              f"clean-vs-mislabelled AUC of p {auc:.3f}; run saved to {args.out}")


if __name__ == "__main__":
    main()
