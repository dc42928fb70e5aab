"""The Recorder: any loop's per-example records, equal to train()'s; disk-backed, crash-safe, memory-mapped; bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import grlib
from grlib.recorder import SUMMARY_FIELDS


def _logits(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_plain_loop_records_equal_train_records():
    """The same seed, model, optimizer and batches through a plain loop + Recorder give train()'s records exactly."""
    cfg = grlib.RunConfig(epochs=3, n_train=300, batch_size=64, loss="gr", seed=3, eval_train=True)
    ref = grlib.train(cfg, progress=False)

    data, noisy, _ = grlib.prepare(cfg)
    torch.manual_seed(cfg.seed)
    model = grlib.get_model("mlp", in_features=data.num_features, num_classes=data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          fused=True)
    loss_fn = grlib.get_loss("gr", **cfg.loss_params)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(noisy.labels)
    n = len(y)
    sampler = grlib.EqualBatchSampler(n, cfg.batch_size, seed=cfg.seed)
    rec = grlib.Recorder(n)
    for epoch in range(1, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        for batch in sampler:
            idx = torch.as_tensor(batch)
            logits = model(x[idx])
            out = loss_fn.details(logits, y[idx])
            opt.zero_grad()
            out.values.mean().backward()
            opt.step()
            rec.update(idx, logits, y[idx], out)
        model.eval()
        with torch.no_grad():
            rec.update_eval(torch.arange(n), model(x), y)
        model.train()
        rec.end_epoch()
    mine = rec.result(y_true=noisy.true_labels)
    assert set(mine.records) == set(ref.records) == set(grlib.RECORD_FIELDS)
    for f in grlib.RECORD_FIELDS:
        np.testing.assert_array_equal(mine.records[f], ref.records[f], err_msg=f)
    for k in SUMMARY_FIELDS:
        np.testing.assert_array_equal(mine.summaries[k], ref.summaries[k], err_msg=k)
    np.testing.assert_array_equal(mine.is_noisy, ref.is_noisy)


def test_fields_and_margin_on_hand_made_logits():
    rec = grlib.Recorder(3)
    # example 0: given 0, predicted 0 (margin 2 - 1); example 1: given 2, predicted 0 (margin 0.5 - 3); example 2 unseen
    rec.update([0, 1], _logits([[2.0, 1.0, 0.0], [3.0, 1.0, 0.5]]), torch.tensor([0, 2]))
    rec.end_epoch(test_acc=0.5)
    r = rec.result()
    np.testing.assert_allclose(r.record("margin", 1), [1.0, -2.5, np.nan])
    np.testing.assert_array_equal(r.record("pred", 1), [0, 0, -1])
    p = torch.softmax(_logits([[2.0, 1.0, 0.0], [3.0, 1.0, 0.5]]), 1)
    np.testing.assert_allclose(r.record("p", 1)[:2], [p[0, 0], p[1, 2]], rtol=1e-6)
    assert np.isnan(r.record("p", 1)[2])
    assert r.y_given.tolist() == [0, 2, -1] and r.num_classes == 3
    assert r.metadata["unseen_per_epoch"] == [1]
    assert r.y_true is None and r.is_noisy is None and not r.has_mask
    assert "loss" not in r.records  # no LossOutput given
    assert np.isnan(r.summary()["noisy_fit"]) and r.summary()["final_acc"] == 0.5


def test_summaries_count_correct_and_forgetting_over_epochs():
    """Example 0: right, wrong, right, wrong (2 forgetting events); example 1: never right; example 2: right once."""
    rec = grlib.Recorder(3)
    right, wrong = [5.0, 0.0], [0.0, 5.0]
    seq = [(right, wrong, right), (wrong, wrong, None), (right, wrong, None), (wrong, wrong, None)]
    for e0, e1, e2 in seq:
        idx = [0, 1] + ([2] if e2 is not None else [])
        rows = [e0, e1] + ([e2] if e2 is not None else [])
        rec.update(idx, _logits(rows), torch.zeros(len(idx), dtype=torch.long))
        rec.end_epoch()
    s = rec.result().summaries
    assert s["n_seen"].tolist() == [4, 4, 1]
    assert s["n_correct"].tolist() == [2, 0, 1]
    assert s["n_forget"].tolist() == [2, 0, 0]
    assert s["last_correct"].tolist() == [0, 0, 1]
    p_hi, p_lo = torch.softmax(torch.tensor([5.0, 0.0]), 0).tolist()
    np.testing.assert_allclose(s["p_sum"][0], 2 * p_hi + 2 * p_lo, rtol=1e-6)
    np.testing.assert_allclose(s["p_sq_sum"][1], 4 * p_lo ** 2, rtol=1e-6)
    np.testing.assert_allclose(s["margin_sum"], [0.0, -20.0, 5.0], atol=1e-6)


def test_every_and_float16_keep_fewer_rows_but_the_same_summaries():
    torch.manual_seed(0)
    batches = [(torch.randperm(50)[:40], torch.randn(40, 4)) for _ in range(5)]
    y = torch.randint(0, 4, (50,))

    def run(**kw):
        rec = grlib.Recorder(50, **kw)
        for idx, z in batches:
            rec.update(idx, z, y[idx])
            rec.end_epoch()
        return rec.result()

    full, thin = run(), run(every=2, dtype="float16")
    assert thin.record_epochs.tolist() == [1, 3, 5] and thin.records["p"].dtype == np.float16
    assert thin.epochs_completed == full.epochs_completed == 5
    np.testing.assert_allclose(thin.record("p", 3), full.record("p", 3), rtol=1e-3, equal_nan=True)
    for k in SUMMARY_FIELDS:
        np.testing.assert_array_equal(thin.summaries[k], full.summaries[k], err_msg=k)
    with pytest.raises(ValueError, match=r"epoch=2 was not recorded; recorded epochs: \[1, 3, 5\]"):
        thin.record("p", 2)


def test_disk_backed_records_load_memory_mapped_and_equal_memory(tmp_path):
    torch.manual_seed(1)
    y = torch.randint(0, 3, (20,))
    recs = [grlib.Recorder(20), grlib.Recorder(20, tmp_path / "run")]
    loss = grlib.get_loss("ce")
    for _ in range(3):
        for idx in torch.randperm(20).split(8):
            z = torch.randn(len(idx), 3, requires_grad=True)
            out = loss.details(z, y[idx])
            for r in recs:
                r.update(idx, z, y[idx], out)
        for r in recs:
            r.end_epoch(lr=0.1)
    mem, disk = (r.result(y_true=y.numpy()) for r in recs)
    assert isinstance(disk.records["p"], np.memmap)
    for f in mem.records:
        np.testing.assert_array_equal(np.asarray(disk.records[f]), mem.records[f])
    again = grlib.RunResult.load(tmp_path / "run")
    assert isinstance(again.records["weight"], np.memmap) and again.epochs_completed == 3
    np.testing.assert_array_equal(again.history_frame()["lr"], [0.1] * 3)
    np.testing.assert_array_equal(again.summaries["n_seen"], mem.summaries["n_seen"])
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["status"] == "finished"


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch, grlib
    rec = grlib.Recorder(1000, sys.argv[1])
    y = torch.randint(0, 5, (1000,))
    for epoch in range(1000):
        for idx in torch.randperm(1000).split(100):
            rec.update(idx, torch.randn(100, 5), y[idx])
        rec.end_epoch(step=epoch)
        time.sleep(0.05)
""")


def test_records_survive_a_killed_process(tmp_path):
    folder = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(folder)])
    try:
        deadline = time.monotonic() + 300  # generous: the condition, not the clock, ends the wait
        done = 0
        while time.monotonic() < deadline:
            try:
                done = json.loads((folder / "progress.json").read_text())["epochs_completed"]
            except (FileNotFoundError, ValueError, KeyError):
                done = 0
            if done >= 3 or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert done >= 3, "the recording never reached epoch 3"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    res = grlib.RunResult.load(folder)
    assert res.epochs_completed >= 3 and res.stopped.startswith("incomplete")
    assert isinstance(res.records["p"], np.memmap) and res.records["p"].shape == (res.epochs_completed, 1000)
    assert np.isfinite(res.records["p"]).all()  # every finished epoch saw every example
    assert len(res.history_frame()) == res.epochs_completed


def test_short_last_batch_warns_once_for_gr():
    loss = grlib.get_loss("gr")
    y = torch.zeros(64, dtype=torch.long)
    loss(torch.randn(64, 3), y)
    with pytest.warns(grlib.GRBatchWarning, match=r"batch of 3 examples after batches of 64.*drop_last=True.*"
                                                    r"EqualBatchSampler"):
        loss(torch.randn(3, 3), y[:3])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(torch.randn(3, 3), y[:3])  # once per loss object


def test_equal_batch_sampler_has_no_short_batch_and_is_seeded():
    s = grlib.EqualBatchSampler(1347, 64, seed=0)
    s.set_epoch(1)
    first = list(s)
    sizes = [len(b) for b in first]
    assert len(sizes) == 22 and max(sizes) - min(sizes) <= 1 and sum(sizes) == 1347
    assert sorted(i for b in first for i in b) == list(range(1347))
    second = list(s)  # without set_epoch the next iteration is the next epoch (a loop that forgets still shuffles)
    assert second != first
    s.set_epoch(1)
    assert list(s) == first and list(s) == second


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n_examples=0), ValueError, r"n_examples=0 must be a positive integer"),
    (dict(n_examples=2.5), ValueError, r"n_examples=2.5 must be a positive integer"),
    (dict(n_examples=True), ValueError, r"n_examples=True must be a positive integer"),
    (dict(n_examples="10"), ValueError, r"n_examples='10' must be a positive integer"),
    (dict(n_examples=5, fields=["p", "logits"]), ValueError, r"fields entry='logits' is not one of the allowed"),
    (dict(n_examples=5, dtype="float64"), ValueError, r"dtype='float64' is not one of the allowed values: "
                                                      r"'float32', 'float16'"),
    (dict(n_examples=5, every=0), ValueError, r"every=0 is too small"),
])
def test_bad_construction(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        grlib.Recorder(**kwargs)


def test_existing_folder_refused_unless_overwrite(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"already exists and is not empty; pass overwrite=True"):
        grlib.Recorder(5, tmp_path / "r")
    with pytest.raises(FileExistsError, match=r"holds files but is not a grlib run folder"):
        grlib.Recorder(5, tmp_path / "r", overwrite=True)  # nothing is lost: only a previous run is replaced
    assert (tmp_path / "r" / "keep.txt").exists()
    rec = grlib.Recorder(5, tmp_path / "run")
    rec.update([0], torch.randn(1, 3), torch.tensor([0]))
    rec.end_epoch()
    grlib.Recorder(5, tmp_path / "run", overwrite=True)
    assert not (tmp_path / "run" / "records").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match=r"is a file; the Recorder needs a folder"):
        grlib.Recorder(5, tmp_path / "f")


@pytest.mark.parametrize("device_checks", [False, True])
def test_bad_batches(device_checks):
    rec = grlib.Recorder(5)
    rec._force_device_checks = device_checks
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"lengths disagree: index 3, logits 2, targets 2"):
        rec.update([0, 1, 2], z, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"targets must be a 1-D tensor of integer class indices"):
        rec.update([0, 1], z, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"index must hold integer positions"):
        rec.update(torch.tensor([0.0, 1.0]), z, torch.tensor([0, 1]))
    if not device_checks:
        with pytest.raises(IndexError, match=r"index holds values in \[3, 5\], outside \[0, 5\) \(n_examples=5\)"):
            rec.update([3, 5], z, torch.tensor([0, 1]))
        with pytest.raises(ValueError, match=r"an index is repeated within one batch"):
            rec.update([1, 1], z, torch.tensor([0, 1]))
    else:  # on a GPU the checks run on the device and are reported at the end of the epoch
        rec.update([3, 5], z, torch.tensor([0, 1]))
        with pytest.raises(IndexError, match=r"1 index value\(s\) outside \[0, 5\)"):
            rec.end_epoch()
        rec2 = grlib.Recorder(5)
        rec2._force_device_checks = True
        rec2.update([1, 1], z, torch.tensor([0, 1]))
        with pytest.raises(ValueError, match=r"an index was repeated within one batch 1 time"):
            rec2.end_epoch()
    with pytest.raises(ValueError, match=r"logits have 4 classes but earlier batches had 3"):
        rec.update([0, 1], torch.randn(2, 4), torch.tensor([0, 1]))


def test_pending_updates_are_dropped_with_a_warning():
    rec = grlib.Recorder(4)
    rec.update([0, 1], torch.randn(2, 3), torch.tensor([0, 1]))
    rec.end_epoch()
    rec.update([2], torch.randn(1, 3), torch.tensor([2]))
    with pytest.warns(RuntimeWarning, match=r"updates since the last end_epoch\(\) are dropped"):
        r = rec.result()
    assert r.epochs_completed == 1 and r.record("pred", 1)[2] == -1


def test_result_takes_masks_and_metadata(tmp_path):
    rec = grlib.Recorder(4, tmp_path / "m", metadata={"data_name": "scans"})
    rec.update([0, 1, 2, 3], torch.eye(4)[:, :3] * 5, torch.tensor([0, 1, 2, 2]))
    rec.end_epoch(test_acc=1.0)
    r = rec.result(y_true=np.array([0, 1, 2, 0]), config={"loss": "ce"}, note="hand-made")
    assert r.is_noisy.tolist() == [False, False, False, True]
    q = grlib.RunResult.load(tmp_path / "m")
    assert q.metadata["data_name"] == "scans" and q.metadata["note"] == "hand-made" and q.config == {"loss": "ce"}
    assert q.is_noisy.tolist() == [False, False, False, True]


@pytest.mark.parametrize("with_out", [True, False])
def test_logits_buffer_and_per_batch_paths_record_the_same(monkeypatch, with_out):
    """Few classes keep the epoch's logits and derive once per epoch; many classes derive per batch: same records."""
    import grlib.recorder as recorder_module

    g = torch.Generator().manual_seed(0)
    n, c = 50, 4
    epochs = [(torch.randperm(n, generator=g)[:41], torch.randn(n, c, generator=g) * 3) for _ in range(3)]
    y = torch.randint(0, c, (n,), generator=g)
    loss_fn = grlib.get_loss("gr")

    def record(limit):
        monkeypatch.setattr(recorder_module, "_LOGITS_BUFFER_MAX", limit)
        rec = grlib.Recorder(n)
        for seen, z in epochs:
            for idx in torch.split(seen, 16):                      # three batches, the last one short, 9 unseen
                out = loss_fn.details(z[idx], y[idx]) if with_out else None
                rec.update(idx, z[idx], y[idx], out)
            rec.end_epoch()
        assert (rec._zbuf is not None) == (limit > 0)
        return rec.result()

    buffered, per_batch = record(1 << 22), record(0)
    assert set(buffered.records) == set(per_batch.records)
    assert ("weight" in buffered.records) == with_out
    for f in buffered.records:
        np.testing.assert_allclose(buffered.records[f], per_batch.records[f], rtol=1e-6, atol=1e-6, err_msg=f)
        assert np.isnan(buffered.records[f][0][~np.isin(np.arange(n), epochs[0][0])]).all() or f == "pred"
    for k in SUMMARY_FIELDS:
        np.testing.assert_allclose(buffered.summaries[k], per_batch.summaries[k], rtol=1e-6, atol=1e-6, err_msg=k)
