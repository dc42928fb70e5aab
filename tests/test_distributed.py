"""GR under DistributedDataParallel and the Recorder across ranks, with real processes (gloo on 127.0.0.1).

One job of 2 processes (this file run as a script, ``--worker``) runs every
multi-process check and saves what it saw; the tests compare it with a
single process on the concatenated batch, computed here.  The rendezvous is a
FileStore in a temporary folder (no port to pick), the process group has a
generous timeout, and the test kills its workers if they have not finished
within a generous bound.
"""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import grlib
from grlib.losses import GRLoss

WORLD = 2
SPLITS = {"even": (32, 32), "uneven": (40, 24)}
LAMS = (0.0, 1.0, 2.0)
SCALES = ("unit", "ce")
N_REC, BATCH_REC, EPOCHS_REC, SEED_REC = 47, 8, 2, 5   # 47 examples: DistributedSampler pads one repeat per epoch
ACC_SPLITS = ((20, 12), (8, 24))                         # rank 0, rank 1: two micro-batches each (64 in all)
JOB_TIMEOUT_S = 600


# -- shared by the workers and the tests ----------------------------------------------------------------------
def _model(seed=0, features=12, classes=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, classes)).double()


def _batch(n=64, features=12, classes=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _rec_data():
    g = torch.Generator().manual_seed(7)
    y_true = torch.randint(0, 5, (N_REC,), generator=g)
    centers = torch.randn(5, 12, generator=g, dtype=torch.float64) * 2
    x = centers[y_true] + torch.randn(N_REC, 12, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(N_REC, generator=g) < 0.3, torch.randint(0, 5, (N_REC,), generator=g), y_true)
    return x, y, y_true


def _rank_batches(epoch):
    """Each rank's batches of one epoch, in DistributedSampler's order (shuffled, padded to equal length)."""
    from torch.utils.data import DistributedSampler

    out = []
    for r in range(WORLD):
        s = DistributedSampler(range(N_REC), num_replicas=WORLD, rank=r, shuffle=True, seed=SEED_REC)
        s.set_epoch(epoch)
        idx = torch.tensor(list(s))
        out.append(list(idx.split(BATCH_REC)))
    return out


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


# -- the worker (one process of the job) ----------------------------------------------------------------------
def _worker(rank: int, store_path: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import grlib.distributed as gd

    torch.set_num_threads(1)
    early = grlib.Recorder(4, Path(out_dir) / "early", distributed=True)   # before the group exists (Lightning)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, WORLD), rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=300))
    res = {}
    calls = {"n": 0}
    real_gather = gd.gather_statistics

    def counting_gather(*a, **k):
        calls["n"] += 1
        return real_gather(*a, **k)

    gd.gather_statistics = counting_gather
    import grlib.losses as gl
    gl.gather_statistics = counting_gather

    # 1. gradients and weights of one batch of 64 split over the ranks
    model = DDP(_model())
    x, y = _batch()
    for split, sizes in SPLITS.items():
        lo = sum(sizes[:rank])
        xr, yr = x[lo: lo + sizes[rank]], y[lo: lo + sizes[rank]]
        for lam in LAMS:
            for scale in SCALES:
                key = f"{split}/{lam}/{scale}"
                loss_fn = GRLoss(lam=lam, beta=12.0, scale=scale, normalize="global")
                model.zero_grad(set_to_none=True)
                loss = loss_fn(model(xr), yr)
                loss.backward()
                res[f"grad/{key}"] = _grads(model)
                res[f"loss/{key}"] = loss.detach()
                model.zero_grad(set_to_none=True)
                out = loss_fn.details(model(xr), yr)
                loss_fn.reduce(out.values).backward()
                res[f"grad_details/{key}"] = _grads(model)
                res[f"weight/{key}"] = out.weight
                res[f"values/{key}"] = out.values.detach()
                res[f"magnitude/{key}"] = out.magnitude
        loss_fn = GRLoss(normalize="global", reduction="sum")
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(xr), yr)
        loss.backward()
        res[f"grad_sum/{split}"] = _grads(model)
        res[f"loss_sum/{split}"] = loss.detach()

    # 2. collectives: one per call with normalize="global", none with "batch"
    before = calls["n"]
    GRLoss(normalize="global")(model(x[:8]), y[:8])
    GRLoss(normalize="global").details(model(x[:8]), y[:8])
    res["calls_global"] = calls["n"] - before
    before = calls["n"]
    GRLoss()(model(x[:8]), y[:8])
    GRLoss().details(model(x[:8]), y[:8])
    res["calls_batch"] = calls["n"] - before

    # 3. the short-batch warning looks at the global batch
    loss_fn = GRLoss(normalize="global")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss_fn(model(x[:32]), y[:32])                       # global 64
        loss_fn(model(x[:(60 if rank == 0 else 4)]), y[:(60 if rank == 0 else 4)])  # rank 1 short, global 64
        res["warned_uneven_local"] = [str(w.message) for w in caught if w.category is grlib.GRBatchWarning]
        loss_fn(model(x[:4]), y[:4])                         # global 8
        res["warned_short_global"] = [str(w.message) for w in caught if w.category is grlib.GRBatchWarning]

    # 4. gradient accumulation over two micro-batches per rank, normalised over all four
    lo = sum(sum(s) for s in ACC_SPLITS[:rank])
    sizes = ACC_SPLITS[rank]
    xs = list(x[lo: lo + sum(sizes)].split(list(sizes)))
    ys = list(y[lo: lo + sum(sizes)].split(list(sizes)))
    for scale in SCALES:
        loss_fn = GRLoss(scale=scale, normalize="global")
        model.zero_grad(set_to_none=True)
        weights = []
        before = calls["n"]
        with loss_fn.accumulate(model, xs, ys):
            with model.no_sync():
                out = loss_fn.details(model(xs[0]), ys[0])
                loss_fn.reduce(out.values).backward()
                weights.append(out.weight)
            out = loss_fn.details(model(xs[1]), ys[1])
            loss_fn.reduce(out.values).backward()
            weights.append(out.weight)
        res[f"acc_calls/{scale}"] = calls["n"] - before
        res[f"acc_grad/{scale}"] = _grads(model)
        res[f"acc_weight/{scale}"] = torch.cat(weights)

    # 5. a Recorder across ranks, over 2 epochs of training with DDP and GR normalised globally
    rx, ry, _ = _rec_data()
    net = DDP(_model(seed=3))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    loss_fn = GRLoss(normalize="global")
    rec = grlib.Recorder(N_REC, Path(out_dir) / "run", distributed=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        local = grlib.Recorder(N_REC)   # this rank's own view, to check which value wins
    for epoch in range(1, EPOCHS_REC + 1):
        for idx in _rank_batches(epoch)[rank]:
            logits = net(rx[idx])
            out = loss_fn.details(logits, ry[idx])
            opt.zero_grad()
            loss_fn.reduce(out.values).backward()
            opt.step()
            rec.update(idx, logits, ry[idx], out)
            local.update(idx, logits, ry[idx], out)
        with torch.no_grad():
            z = net.module(rx)
        rec.update_eval(torch.arange(N_REC), z, ry)
        acc = float((z.argmax(1) == ry).double().mean())
        info = rec.end_epoch(train_acc=acc)
        local.end_epoch()
    res["rec_info"] = info
    result = rec.result(y_true=_rec_data()[2].numpy(), data_name="ddp-test")
    res["rec_records"] = {f: np.asarray(v) for f, v in result.records.items()}
    res["rec_summaries"] = {k: np.asarray(v) for k, v in result.summaries.items()}
    res["rec_history"] = {k: np.asarray(v) for k, v in result.history.items()}
    res["local_records"] = {f: np.asarray(v) for f, v in local.result().records.items()}
    res["rec_params"] = [p.detach().clone() for p in net.parameters()]

    # 6. forgetting when an example's epochs land on different ranks; duplicates within an epoch
    right, wrong = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    r3 = grlib.Recorder(3, distributed=True)
    if rank == 0:
        r3.update([0], right, torch.tensor([0]))                            # epoch 1: example 0 right on rank 0
        r3.update([1], torch.tensor([[1.0, 0.0]]), torch.tensor([0]))       # example 1 on both ranks
    else:
        r3.update([1], torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    r3.end_epoch()
    if rank == 1:
        r3.update([0], wrong, torch.tensor([0]))                            # epoch 2: example 0 wrong on rank 1
    r3.end_epoch()
    small = r3.result()
    res["small_summaries"] = {k: np.asarray(v) for k, v in small.summaries.items()}
    res["small_p"] = np.asarray(small.records["p"])

    # 7. a Recorder built before the process group joins it at its first update
    early.update([rank, 2 + rank], torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    early.end_epoch()
    res["early_pred"] = np.asarray(early.result().records["pred"])

    # 8. bad input on one rank is reported on every rank (nobody left waiting)
    r4 = grlib.Recorder(5, distributed=True)
    r4._force_device_checks = True  # the device-side index check: reported at end_epoch
    r4.update([0, 9] if rank == 1 else [1], torch.zeros(2 if rank == 1 else 1, 3),
              torch.zeros(2 if rank == 1 else 1, dtype=torch.long))
    try:
        r4.end_epoch()
        res["bad_index_error"] = None
    except IndexError as exc:
        res["bad_index_error"] = str(exc)

    torch.save(res, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    (Path(out_dir) / f"done{rank}").write_text("ok")


# -- the tests --------------------------------------------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run the 2-process job once; yield the two ranks' results."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::FutureWarning"}
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")   # 127.0.0.1, whatever the host name resolves to
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(r), str(out / "store"), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) for r in range(WORLD)]
    logs = []
    try:
        for p in procs:
            try:
                logs.append(p.communicate(timeout=JOB_TIMEOUT_S)[0].decode(errors="replace"))
            except subprocess.TimeoutExpired:
                logs.append("timed out")
    finally:
        for p in procs:  # end every worker we started, whatever happened
            if p.poll() is None:
                p.kill()
                p.wait(timeout=60)
    for r, p in enumerate(procs):
        assert p.returncode == 0 and (out / f"done{r}").is_file(), f"rank {r} failed:\n{logs[r][-4000:]}"
    yield [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], out


def _reference(lam, scale, reduction="mean"):
    model = _model()
    x, y = _batch()
    loss_fn = GRLoss(lam=lam, beta=12.0, scale=scale, reduction=reduction)
    out = loss_fn.details(model(x), y)
    loss_fn.reduce(out.values).backward()
    return _grads(model), out


def _assert_grads(got, ref, what):
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-12 * float(r.abs().max()), msg=what)


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("scale", SCALES)
def test_ddp_gradients_equal_single_process_on_the_whole_batch(job, split, lam, scale):
    ranks, _ = job
    ref, ref_out = _reference(lam, scale)
    key = f"{split}/{lam}/{scale}"
    for r in range(WORLD):
        _assert_grads(ranks[r][f"grad/{key}"], ref, f"rank {r} forward {key}")
        _assert_grads(ranks[r][f"grad_details/{key}"], ref, f"rank {r} details+reduce {key}")
    # the global weights: gathered from both ranks, they are the single process's, and sum to 1
    w = torch.cat([ranks[r][f"weight/{key}"] for r in range(WORLD)])
    torch.testing.assert_close(w, ref_out.weight, rtol=1e-6, atol=0)
    assert abs(float(w.sum()) - 1.0) < 1e-12
    # per-example values and magnitudes are those of the concatenated batch
    torch.testing.assert_close(torch.cat([ranks[r][f"values/{key}"] for r in range(WORLD)]),
                               ref_out.values.detach(), rtol=1e-6, atol=1e-14)
    torch.testing.assert_close(torch.cat([ranks[r][f"magnitude/{key}"] for r in range(WORLD)]),
                               ref_out.magnitude, rtol=1e-6, atol=1e-14)
    # "mean": the ranks' mean of the returned losses is the loss of the whole batch
    mean_loss = sum(float(ranks[r][f"loss/{key}"]) for r in range(WORLD)) / WORLD
    assert mean_loss == pytest.approx(float(ref_out.values.detach().mean()), rel=1e-9)


@pytest.mark.parametrize("split", list(SPLITS))
def test_ddp_sum_reduction_is_the_sum_over_the_whole_batch(job, split):
    ranks, _ = job
    ref, ref_out = _reference(1.0, "unit", reduction="sum")
    for r in range(WORLD):
        _assert_grads(ranks[r][f"grad_sum/{split}"], ref, f"rank {r} sum {split}")
    total = sum(float(ranks[r][f"loss_sum/{split}"]) for r in range(WORLD)) / WORLD
    assert total == pytest.approx(float(ref_out.values.detach().sum()), rel=1e-9)


def test_one_collective_per_global_call_and_none_for_batch(job):
    ranks, _ = job
    for r in range(WORLD):
        assert ranks[r]["calls_global"] == 2
        assert ranks[r]["calls_batch"] == 0


def test_short_batch_warning_looks_at_the_global_batch(job):
    ranks, _ = job
    for r in range(WORLD):
        assert ranks[r]["warned_uneven_local"] == []   # rank 1's 4 examples are part of a global batch of 64
        (msg,) = ranks[r]["warned_short_global"]
        assert "batch of 8 examples (the global batch: every rank's examples) after batches of 64" in msg


@pytest.mark.parametrize("scale", SCALES)
def test_ddp_gradient_accumulation_equals_the_whole_batch(job, scale):
    """Two ranks x two micro-batches of unequal sizes (20+12, 8+24): the accumulated, averaged gradient is the
    single process's gradient on all 64, and the weights sum to 1 over the four micro-batches."""
    ranks, _ = job
    ref, ref_out = _reference(1.0, scale)
    for r in range(WORLD):
        _assert_grads(ranks[r][f"acc_grad/{scale}"], ref, f"rank {r} accumulate {scale}")
        assert ranks[r][f"acc_calls/{scale}"] == 1   # one collective per accumulated batch
    w = torch.cat([ranks[r][f"acc_weight/{scale}"] for r in range(WORLD)])
    torch.testing.assert_close(w, ref_out.weight, rtol=1e-6, atol=0)


def _reference_run():
    """The single-process run of the job's Recorder check: each step trains on the union of the ranks' batches."""
    x, y, y_true = _rec_data()
    net = _model(seed=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    loss_fn = GRLoss()
    rec = grlib.Recorder(N_REC)
    for epoch in range(1, EPOCHS_REC + 1):
        per_rank = _rank_batches(epoch)
        seen = set()
        for step in range(len(per_rank[0])):
            idx = torch.cat([per_rank[r][step] for r in range(WORLD)])
            logits = net(x[idx])
            out = loss_fn.details(logits, y[idx])
            opt.zero_grad()
            loss_fn.reduce(out.values).backward()
            opt.step()
            # an example repeated by the sampler's padding keeps its first occurrence (lowest rank, earlier step)
            keep = torch.tensor([int(i) not in seen for i in idx])
            seen.update(int(i) for i in idx)
            rec.update(idx[keep], logits[keep], y[idx][keep], _subset(out, keep))
        with torch.no_grad():
            z = net(x)
        rec.update_eval(torch.arange(N_REC), z, y)
        rec.end_epoch(train_acc=float((z.argmax(1) == y).double().mean()))
    return rec.result(y_true=y_true.numpy()), [p.detach() for p in net.parameters()]


def _subset(out, keep):
    from grlib.losses import LossOutput

    return LossOutput(values=out.values[keep], p=out.p[keep], magnitude=out.magnitude[keep],
                      log_emphasis=out.log_emphasis[keep], weight=out.weight[keep])


def test_records_of_two_ranks_equal_the_single_process_records(job):
    ranks, out = job
    ref, ref_params = _reference_run()
    for p, q in zip(ranks[0]["rec_params"], ref_params):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    for r in range(WORLD):  # every rank returns the merged run
        got = ranks[r]["rec_records"]
        assert set(got) == set(ref.records) == set(grlib.RECORD_FIELDS)
        for f in grlib.RECORD_FIELDS:
            if f in ("pred", "eval_pred"):
                np.testing.assert_array_equal(got[f], ref.records[f], err_msg=f)
            else:
                np.testing.assert_allclose(got[f], ref.records[f], rtol=1e-5, atol=1e-6, err_msg=f)
        s = ranks[r]["rec_summaries"]
        for k in ("n_seen", "n_correct", "n_forget", "last_correct"):
            np.testing.assert_array_equal(s[k], ref.summaries[k], err_msg=k)
        for k in ("p_sum", "p_sq_sum", "margin_sum", "weight_sum"):
            np.testing.assert_allclose(s[k], ref.summaries[k], rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(ranks[r]["rec_history"]["train_acc"], ref.history["train_acc"])
    assert ranks[0]["rec_info"] == {"epoch": 2, "seen": N_REC, "unseen": 0}
    # one ordinary run folder, written by rank 0 alone; RunResult.load reads it
    loaded = grlib.RunResult.load(out / "run")
    assert loaded.epochs_completed == 2 and loaded.metadata["data_name"] == "ddp-test"
    np.testing.assert_array_equal(np.asarray(loaded.records["pred"]), ref.records["pred"])
    assert loaded.has_mask and loaded.summary()["epochs"] == 2
    assert sorted(p.name for p in (out / "run" / "records").iterdir()) == sorted(f"{f}.npy" for f in
                                                                                 grlib.RECORD_FIELDS)


def test_padding_repeats_keep_the_lowest_ranks_value(job):
    """DistributedSampler repeats one example per epoch (47 over 2 ranks): rank 0's value is kept."""
    ranks, _ = job
    merged = ranks[0]["rec_records"]["p"]
    mine0, mine1 = ranks[0]["local_records"]["p"], ranks[1]["local_records"]["p"]
    both = np.isfinite(mine0) & np.isfinite(mine1)
    assert both.sum() == EPOCHS_REC                     # one repeat per epoch
    assert not np.array_equal(mine0[both], mine1[both])  # the two occurrences differ (the model moved on)
    np.testing.assert_array_equal(merged[both], mine0[both])
    only1 = np.isfinite(mine1) & ~both
    np.testing.assert_array_equal(merged[only1], mine1[only1])


def test_forgetting_across_ranks_and_duplicates(job):
    ranks, _ = job
    p_right = float(torch.softmax(torch.tensor([4.0, 0.0]), 0)[0])
    for r in range(WORLD):
        s = ranks[r]["small_summaries"]
        assert s["n_seen"].tolist() == [2, 1, 0]
        assert s["n_correct"].tolist() == [1, 1, 0]
        assert s["n_forget"].tolist() == [1, 0, 0]        # right on rank 0, then wrong on rank 1
        assert s["last_correct"].tolist() == [0, 1, -1]
        p = ranks[r]["small_p"]
        assert p[0, 0] == pytest.approx(p_right, rel=1e-6)
        assert p[0, 1] == pytest.approx(float(torch.softmax(torch.tensor([1.0, 0.0]), 0)[0]), rel=1e-6)  # rank 0's
        assert np.isnan(p[0, 2]) and np.isnan(p[1, 1])


def test_a_recorder_built_before_the_process_group_joins_it(job):
    ranks, out = job
    for r in range(WORLD):
        assert ranks[r]["early_pred"].tolist() == [[0, 0, 1, 1]]
    assert grlib.RunResult.load(out / "early").records["pred"].tolist() == [[0, 0, 1, 1]]


def test_a_bad_index_on_one_rank_is_an_error_on_every_rank(job):
    ranks, _ = job
    for r in range(WORLD):
        assert ranks[r]["bad_index_error"] is not None
        assert "outside [0, 5)" in ranks[r]["bad_index_error"]


# -- the runnable examples ----------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def _run_example(cmd, cwd, timeout=JOB_TIMEOUT_S):
    """Run an example in its own session; on timeout end the whole session (the launcher's workers too)."""
    import signal

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        log = p.communicate(timeout=timeout)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"{cmd} did not finish within {timeout} s")
    assert p.returncode == 0, log[-4000:]
    return log


@pytest.mark.slow
def test_torchrun_example_trains_and_records_on_two_processes(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    log = _run_example([str(torchrun), "--standalone", "--nproc_per_node=2", str(REPO / "examples" / "ddp_gr.py"),
                        "--epochs", "2", "--out", str(tmp_path / "run")], cwd=tmp_path)
    assert "2 processes: final test accuracy" in log
    res = grlib.RunResult.load(tmp_path / "run")
    assert res.epochs_completed == 2 and res.has_mask and res.config["normalize"] == "global"
    assert res.metadata["unseen_per_epoch"] == [3, 3]      # 1347 examples, 2 x 21 steps of 32: drop_last drops 3
    assert np.isfinite(res.history["noisy_fit"]).all()


@pytest.mark.slow
def test_lightning_ddp_example_records_both_processes(tmp_path):
    pytest.importorskip("lightning.pytorch")
    log = _run_example([sys.executable, str(REPO / "examples" / "lightning_ddp_gr.py"), "--epochs", "1",
                        "--out", str(tmp_path / "run")], cwd=tmp_path)
    assert "2 processes: final test accuracy" in log
    res = grlib.RunResult.load(tmp_path / "run")
    assert res.epochs_completed == 1 and res.metadata["data_name"] == "digits"
    assert res.metadata["unseen_per_epoch"] == [3]         # both ranks' examples are in the one run
    assert int(np.isfinite(res.record("p", 1)).sum()) == 1344


# -- single process -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("scale", SCALES + (0.5,))
@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
def test_global_without_a_process_group_is_batch_exactly(lam, scale, reduction):
    torch.manual_seed(0)
    z0 = torch.randn(37, 10) * 3
    y = torch.randint(0, 10, (37,))
    got = []
    for normalize in ("batch", "global"):
        loss_fn = GRLoss(lam=lam, scale=scale, reduction=reduction, normalize=normalize)
        z = z0.clone().requires_grad_()
        v = loss_fn(z, y)
        v.sum().backward()
        d = loss_fn.details(z0, y)
        got.append([v.detach(), z.grad, d.values, d.weight, d.magnitude, d.p, d.log_emphasis,
                    loss_fn.reduce(d.values)])
    for a, b in zip(*got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("reduction", ("mean", "sum"))
def test_accumulation_equals_the_big_batch_gradient(scale, reduction):
    """Three micro-batches of unequal sizes inside accumulate(): the summed gradient is the big batch's (1e-6 rel.)."""
    x, y = _batch(n=60)
    big = _model()
    loss_fn = GRLoss(scale=scale, reduction=reduction)
    loss_fn(big(x), y).backward()
    small = _model()
    parts = [(x[:7], y[:7]), (x[7:40], y[7:40]), (x[40:], y[40:])]
    weights = []
    with loss_fn.accumulate(small, [p[0] for p in parts], [p[1] for p in parts]):
        for xm, ym in parts:
            out = loss_fn.details(small(xm), ym)
            weights.append(out.weight)
            loss_fn.reduce(out.values).backward()
    _assert_grads(_grads(small), _grads(big), "accumulated")
    torch.testing.assert_close(torch.cat(weights), loss_fn.details(big(x), y).weight, rtol=1e-9, atol=0)
    # forward() inside the block gives the same gradient as details() + reduce()
    third = _model()
    with loss_fn.accumulate(third, [p[0] for p in parts], [p[1] for p in parts]):
        for xm, ym in parts:
            loss_fn(third(xm), ym).backward()
    _assert_grads(_grads(third), _grads(big), "accumulated forward")


def test_accumulation_replays_dropout_and_keeps_batchnorm_statistics():
    """With dropout and BatchNorm the two forwards agree (random state and buffers restored): weights sum to 1."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 5)).double()
    x, y = _batch(n=48)
    xs, ys = list(x.split(16)), list(y.split(16))
    loss_fn = GRLoss()

    def run(replay):
        before = net[1].num_batches_tracked.item()
        total = 0.0
        with loss_fn.accumulate(net, xs, ys, replay_rng=replay):
            for xm, ym in zip(xs, ys):
                total += float(loss_fn.details(net(xm), ym).weight.sum())
        return total, net[1].num_batches_tracked.item() - before

    total, steps = run(True)
    assert total == pytest.approx(1.0, abs=1e-12)
    assert steps == len(xs)          # BatchNorm saw each micro-batch once (the statistics pass was undone)
    total, _ = run(False)
    assert abs(total - 1.0) > 1e-6   # without the replay the dropout masks differ: the check can fail


def test_accumulation_warns_when_the_block_sees_other_examples():
    x, y = _batch(n=32)
    model = _model()
    loss_fn = GRLoss()
    with pytest.warns(RuntimeWarning, match=r"given 16 examples inside the block but its statistics came from 32"):
        with loss_fn.accumulate(model, [x[:16], x[16:]], [y[:16], y[16:]]):
            loss_fn(model(x[:16]), y[:16]).backward()
    # no short-batch warning for micro-batches: the block's whole batch (32) is what counts
    with warnings.catch_warnings():
        warnings.simplefilter("error", grlib.GRBatchWarning)
        loss_fn(model(x), y)
        with loss_fn.accumulate(model, [x[:4], x[4:]], [y[:4], y[4:]]):
            loss_fn(model(x[:4]), y[:4])
            loss_fn(model(x[4:]), y[4:])


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match=r"normalize='all' is not one of the allowed values: 'batch', 'global'"):
        GRLoss(normalize="all")
    with pytest.raises(ValueError, match=r"group=.* is only used with normalize='global'"):
        GRLoss(group=object())
    with pytest.raises(TypeError, match=r"group must be a torch.distributed.ProcessGroup"):
        GRLoss(normalize="global", group="world")
    with pytest.raises(TypeError, match=r"distributed must be True or False"):
        grlib.Recorder(4, distributed="yes")
    loss_fn = GRLoss()
    with pytest.raises(ValueError, match=r"got 2 inputs and 1 targets"):
        loss_fn.accumulate(_model(), [torch.zeros(1, 12)] * 2, [torch.zeros(1, dtype=torch.long)])
    with pytest.raises(TypeError, match=r"model must be callable"):
        loss_fn.accumulate(3, [torch.zeros(1, 12)], [torch.zeros(1, dtype=torch.long)])
    z, t = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    with loss_fn.normalize_over([z], [t]):
        with pytest.raises(RuntimeError, match=r"do not nest"):
            loss_fn.normalize_over([z], [t])
        loss_fn(z, t)
    assert "normalize='global'" in repr(GRLoss(normalize="global"))


def test_statistics_merge_exactly_whatever_the_split():
    from grlib.distributed import merge_statistics, score_statistics

    g = torch.Generator().manual_seed(0)
    u = torch.rand(50, generator=g, dtype=torch.float64) * 40
    o = torch.rand(50, generator=g, dtype=torch.float64)
    whole = score_statistics(u, o)
    parts = torch.stack([score_statistics(u[a:b], o[a:b]) for a, b in ((0, 3), (3, 3), (3, 41), (41, 50))])
    merged = merge_statistics(parts)
    torch.testing.assert_close(merged, whole, rtol=1e-12, atol=0)
    assert parts[1].tolist() == [float("-inf"), 0.0, 0.0, 0.0]   # an empty part is neutral


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    _worker(int(sys.argv[2]), sys.argv[3], sys.argv[4])
