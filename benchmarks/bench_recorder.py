"""The Recorder's cost: memory and time of recording a million examples to disk, and its overhead in a training loop.

Not a test: prints ratios (issue 9's targets) from one run on this machine.

1. ``scale``: 1,000,000 examples x 100 epochs recorded to disk (batch 1024; fields p, pred, margin, loss,
   weight; float32, or float16 with --dtype float16) in a loop that runs a 784-256-256-10 MLP forward and
   GR's per-example details on each batch of 1024 synthetic inputs generated per batch.  Two processes run
   the same loop, with and without the Recorder; each reports its time and the growth of its peak resident
   memory (``ru_maxrss``, file-backed pages included) over the run.
   Goals: peak RSS grows by at most 256 MiB; recording adds at most 5% to the loop's time.
2. ``loop``: a plain training loop (forward, GR loss, backward, SGD) on Fashion-MNIST-sized batches
   (128 x 784, 60,000 examples) with and without ``Recorder.update`` per step and ``end_epoch`` per epoch,
   in interleaved rounds.  Goal: at most 1.05x.

Usage:
    python benchmarks/bench_recorder.py scale [--examples 1000000] [--epochs 100] [--dtype float32]
    python benchmarks/bench_recorder.py loop [--rounds 5]
    python benchmarks/bench_recorder.py all
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

FIELDS = ("p", "pred", "margin", "loss", "weight")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def scale_worker(examples: int, epochs: int, batch: int, record: bool, dtype: str, folder: str | None) -> dict:
    """One process: the forward loop over synthetic batches, recording or not; time and peak-RSS growth."""
    import grlib

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = grlib.get_model("mlp", in_features=784, num_classes=10).eval()
    loss_fn = grlib.get_loss("gr")
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (examples,), generator=gen)
    n_batches = -(-examples // batch)
    rec = grlib.Recorder(examples, folder, fields=FIELDS, dtype=dtype, overwrite=True) if record else None
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(epochs):
            for b in range(n_batches):
                idx = torch.arange(b * batch, min(examples, (b + 1) * batch))
                x = torch.rand(len(idx), 784, generator=gen)  # generated per batch: 1M x 784 at once would be 2.9 GiB
                logits = model(x)
                out = loss_fn.details(logits, labels[idx], validate=False)
                if rec is not None:
                    rec.update(idx, logits, labels[idx], out)
            if rec is not None:
                rec.end_epoch()
    seconds = time.perf_counter() - t0
    if rec is not None:
        res = rec.result()
        assert res.records["p"].shape == (epochs, examples)
    return {"record": record, "seconds": seconds, "rss_start_mib": rss0, "rss_peak_mib": _rss_mib(),
            "rss_growth_mib": _rss_mib() - rss0}


def run_scale(examples: int, epochs: int, batch: int, dtype: str) -> dict:
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="grlib-bench-rec-"))
    try:
        for record in (False, True):
            cmd = [sys.executable, __file__, "_scale_worker", str(examples), str(epochs), str(batch), str(int(record)),
                   dtype, str(tmp / "run")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"the benchmark process failed:\n{proc.stderr[-3000:]}")
            out["recorded" if record else "plain"] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {'with' if record else 'without'} the Recorder: {out['recorded' if record else 'plain']}",
                  flush=True)
        size = sum(p.stat().st_size for p in (tmp / "run").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = out["recorded"]["seconds"] / out["plain"]["seconds"]
    growth = out["recorded"]["rss_growth_mib"]
    print(f"scale: {examples:,} examples x {epochs} epochs, batch {batch}, fields {', '.join(FIELDS)} ({dtype}); "
          f"folder {size / 2**30:.2f} GiB")
    print(f"  peak RSS growth with recording: {growth:.0f} MiB (goal <= 256) | time recorded / plain: "
          f"{ratio:.3f} (goal <= 1.05) | {out['plain']['seconds']:.0f} s vs {out['recorded']['seconds']:.0f} s")
    return {"rss_growth_mib": growth, "time_ratio": ratio, "folder_gib": size / 2**30, **out}


def run_loop(rounds: int, epochs: int = 1) -> dict:
    import numpy as np

    import grlib

    torch.set_num_threads(1)
    n, d, batch = 60000, 784, 128
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, d)).astype(np.float32)
    y = torch.as_tensor(rng.integers(0, 10, n))
    x = torch.as_tensor(centers[y.numpy()] + rng.normal(scale=2.0, size=(n, d)).astype(np.float32))
    sampler = grlib.EqualBatchSampler(n, batch, seed=0)

    def loop(record: bool) -> float:
        torch.manual_seed(0)
        model = grlib.get_model("mlp", in_features=d, num_classes=10)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = grlib.get_loss("gr")
        rec = grlib.Recorder(n) if record else None
        t = time.perf_counter()
        for e in range(epochs):
            sampler.set_epoch(e)
            for idx in torch.tensor_split(sampler.permutation(), len(sampler)):
                logits = model(x[idx])
                out = loss_fn.details(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                out.values.mean().backward()
                opt.step()
                if rec is not None:
                    rec.update(idx, logits, y[idx], out)
            if rec is not None:
                rec.end_epoch()
        return time.perf_counter() - t

    ratios = []
    for k in range(rounds):  # the order alternates, so a drift in the machine's speed does not favour one side
        if k % 2:
            recorded, plain = loop(True), loop(False)
        else:
            plain, recorded = loop(False), loop(True)
        ratios.append(recorded / plain)
    r = statistics.median(ratios)
    print(f"loop: plain PyTorch loop, Fashion-MNIST-sized batches (128 x 784), with / without the Recorder: {r:.3f} "
          f"(goal <= 1.05; median of {rounds} interleaved rounds: {', '.join(f'{v:.3f}' for v in ratios)})")
    return {"loop_ratio": r, "rounds": ratios}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["scale", "loop", "all"])
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, 1 thread")
    if args.what in ("loop", "all"):
        run_loop(args.rounds)
    if args.what in ("scale", "all"):
        run_scale(args.examples, args.epochs, args.batch, args.dtype)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_scale_worker":
        ex, ep, b, rec, dt, folder = sys.argv[2:8]
        print(json.dumps(scale_worker(int(ex), int(ep), int(b), bool(int(rec)), dt, folder if int(rec) else None)))
    else:
        main()
