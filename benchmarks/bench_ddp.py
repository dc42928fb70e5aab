"""The cost of GR's global normalisation under DDP: a globally normalised step over a locally normalised one.

Starts 2 processes on this machine (gloo on 127.0.0.1, CPU, a FileStore
rendezvous in a temporary folder), wraps an MLP in DistributedDataParallel and
times full optimisation steps (forward, GR loss, backward with DDP's gradient
all-reduce, SGD step) with ``GRLoss(normalize="batch")`` and with
``GRLoss(normalize="global")`` (one extra all_gather of 4 numbers per rank
per step), interleaved step by step (A, B, B, A, ...) so that drifting
machine load affects both sides; per round, the median step time of each
kind; prints the median of the per-round ratios (goal: at most 1.10), the
step times, and the latency of the extra collective alone.

Usage:  python benchmarks/bench_ddp.py [--rounds 9] [--steps 100] [--batch 64] [--features 784]
(per-rank batch; the global batch is twice that).  Not a test: the numbers
depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORLD = 2


def _worker(rank: int, store: str, out: str, args) -> None:  # noqa: C901
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import grlib
    from grlib.distributed import gather_statistics

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", store=dist.FileStore(store, WORLD), rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=300))
    torch.manual_seed(0)
    model = DDP(grlib.get_model("mlp", in_features=args.features, num_classes=10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(args.batch, args.features, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    losses = {"batch": grlib.GRLoss(normalize="batch"), "global": grlib.GRLoss(normalize="global")}

    def step(loss_fn) -> float:
        t = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    for _ in range(20):  # warm-up
        step(losses["batch"])
        step(losses["global"])
    rows = []
    for r in range(args.rounds):
        dist.barrier()
        t = {"batch": [], "global": []}
        for i in range(args.steps):  # interleaved step by step: both kinds see the same load
            for kind in (("batch", "global") if i % 2 == 0 else ("global", "batch")):
                t[kind].append(step(losses[kind]))
        rows.append({k: statistics.median(v) for k, v in t.items()})
    # the extra collective alone
    stats = torch.tensor([1.0, 2.0, 3.0, 4.0])
    for _ in range(20):
        gather_statistics(stats)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps * 2):
        gather_statistics(stats)
    collective = (time.perf_counter() - t0) / (args.steps * 2)
    if rank == 0:
        Path(out).write_text(json.dumps({"rows": rows, "collective_s": collective}))
    dist.barrier()
    dist.destroy_process_group()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64, help="examples per rank and step")
    ap.add_argument("--features", type=int, default=784)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--worker", nargs=3, metavar=("RANK", "STORE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(int(args.worker[0]), args.worker[1], args.worker[2], args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore::FutureWarning"}
        if sys.platform.startswith("linux"):
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        base = [sys.executable, __file__, "--rounds", str(args.rounds), "--steps", str(args.steps), "--batch",
                str(args.batch), "--features", str(args.features), "--threads", str(args.threads)]
        procs = [subprocess.Popen(base + ["--worker", str(r), str(Path(tmp) / "store"), str(out)], env=env)
                 for r in range(WORLD)]
        try:
            for p in procs:
                p.wait(timeout=3600)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if any(p.returncode for p in procs):
            raise SystemExit(f"a worker failed (exit codes {[p.returncode for p in procs]})")
        res = json.loads(out.read_text())
    rows = res["rows"]
    ratios = [r["global"] / r["batch"] for r in rows]
    print(f"DDP on CPU, {WORLD} processes (gloo), MLP {args.features}-256-256-10, {args.batch} examples per rank "
          f"({WORLD * args.batch} per step), {args.rounds} rounds x {args.steps} steps, {args.threads} thread(s) each")
    print(f"  step, normalize='batch':  {statistics.median(r['batch'] for r in rows) * 1e3:.3f} ms (median of rounds)")
    print(f"  step, normalize='global': {statistics.median(r['global'] for r in rows) * 1e3:.3f} ms")
    print(f"  the extra all_gather alone: {res['collective_s'] * 1e6:.0f} us")
    print(f"  per-round ratios: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"global_over_batch {statistics.median(ratios):.3f}   (goal <= 1.10)")


if __name__ == "__main__":
    main()
