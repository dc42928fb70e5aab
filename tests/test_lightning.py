"""The Lightning callback with a real lightning.Trainer on CPU: the records equal a plain loop's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import grlib

pl = pytest.importorskip("lightning.pytorch")
from grlib.lightning import RecorderCallback  # noqa: E402

EPOCHS, BATCH, SEED = 2, 64, 0


def _data():
    d = grlib.load_dataset("digits", n_train=400, val_fraction=0.2)
    noisy = grlib.add_label_noise(d.y_train, 10, "symmetric", 0.4, seed=SEED)
    train = grlib.IndexedDataset((torch.as_tensor(d.x_train), torch.as_tensor(d.y_train)), labels=noisy.labels)
    return d, noisy, train


class Module(pl.LightningModule):
    def __init__(self, d):
        super().__init__()
        torch.manual_seed(SEED)
        self.net = grlib.get_model("mlp", in_features=d.num_features, num_classes=10)
        self.loss_fn = grlib.get_loss("gr")
        self.xv, self.yv = torch.as_tensor(d.x_val), torch.as_tensor(d.y_val)

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        logits = self.net(x)
        out = self.loss_fn.details(logits, y)
        return {"loss": out.values.mean(), "logits": logits, "details": out}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def _loader(train, epoch_sampler):
    return torch.utils.data.DataLoader(train, batch_sampler=epoch_sampler)


class _EpochSampler(grlib.EqualBatchSampler):
    """Lightning calls set_epoch(e) with e = 0, 1, ...; the plain loop below uses the same numbers."""


def test_lightning_callback_records_equal_a_plain_loop(tmp_path):
    d, noisy, train = _data()
    n = len(noisy.labels)
    cb = RecorderCallback(n, tmp_path / "lightning", y_true=noisy.true_labels)
    sampler = _EpochSampler(n, BATCH, seed=SEED)
    trainer = pl.Trainer(max_epochs=EPOCHS, callbacks=[cb], accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(d.x_val),
                                                                     torch.as_tensor(d.y_val)), batch_size=256)
    trainer.fit(Module(d), _loader(train, sampler), val)
    res = cb.result
    assert isinstance(res, grlib.RunResult) and res.epochs_completed == EPOCHS
    assert set(res.records) >= {"p", "pred", "margin", "loss", "weight", "log_emphasis"}
    assert np.isfinite(res.history_frame()["val_acc"]).all()
    assert res.is_noisy is not None and res.is_noisy.sum() == noisy.is_noisy.sum()
    assert grlib.RunResult.load(tmp_path / "lightning").epochs_completed == EPOCHS

    # the same model, optimizer and batches in a plain loop with the Recorder
    module = Module(d)
    opt = module.configure_optimizers()
    rec = grlib.Recorder(n)
    plain = _EpochSampler(n, BATCH, seed=SEED)
    for epoch in range(EPOCHS):
        plain.set_epoch(epoch)
        for x, y, index in _loader(train, plain):
            logits = module.net(x)
            out = module.loss_fn.details(logits, y)
            opt.zero_grad()
            out.values.mean().backward()
            opt.step()
            rec.update(index, logits, y, out)
        rec.end_epoch()
    ref = rec.result()
    for f in ("p", "pred", "margin", "weight"):
        np.testing.assert_allclose(np.asarray(res.records[f]), ref.records[f], rtol=1e-6, atol=1e-7, err_msg=f)


def test_callback_explains_what_it_needs():
    cb = RecorderCallback(4)
    with pytest.raises(KeyError, match=r"training_step must return a dict with the logits under 'logits'"):
        cb.on_train_batch_end(None, None, {"loss": torch.tensor(1.0)}, (None, None, None), 0)
    with pytest.raises(TypeError, match=r"needs each batch to carry the examples' indices"):
        cb.on_train_batch_end(None, None, {"logits": torch.zeros(2, 3)}, (torch.zeros(2, 1), torch.zeros(2)), 0)
