"""Step-time ratios for grlib's training loop (issue 2's benchmark; not a test).

Prints, from one run on this machine, for the MLP on digits-shaped batches
(64 x 64 features) and Fashion-MNIST-shaped batches (128 x 784 features):

  gr_over_ce          GR step time / CE step time            (goal <= 1.03)
  record_over_plain   grlib.train with per-example records / without   (goal <= 1.05)
  loop_throughput     grlib.train throughput / a bare PyTorch loop's   (goal >= 0.90)

Steps are timed in interleaved rounds (A, B, A, B, ...) and the median of the
per-round ratios is reported, so drifting machine load affects both sides.
Usage:  python benchmarks/bench_step.py [--rounds 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import grlib
from grlib.data import Dataset

SHAPES = {"digits": (64, 64, 1347, 450), "fashion_mnist": (128, 784, 12000, 2000)}


def _fake_dataset(name, features, n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, features)).astype(np.float32)
    y = rng.integers(0, 10, n_train + n_test)
    x = (centers[y] + rng.normal(scale=2.0, size=(y.size, features))).astype(np.float32)
    return Dataset(name=name, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:],
                   num_classes=10)


def time_steps(loss_name, params, batch, features, steps=300, record=False):
    """Seconds per optimisation step (forward, loss, backward, SGD step) of the MLP."""
    torch.manual_seed(0)
    model = grlib.get_model("mlp", in_features=features, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = grlib.get_loss(loss_name, **params)
    x = torch.randn(batch, features)
    y = torch.randint(0, 10, (batch,))
    for _ in range(20):  # warm-up
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t = time.perf_counter()
    for _ in range(steps):
        logits = model(x)
        if record:
            loss = loss_fn.reduce(loss_fn.details(logits, y, validate=False).values)
        else:
            loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps


def bare_loop(data: Dataset, epochs: int, batch: int, seed=0, fused=None):
    """A plain PyTorch loop: same model, same shuffling, CE, SGD, test accuracy each epoch.

    ``fused=None`` is torch.optim.SGD's default (what a user writes); ``fused=True`` the fused kernel
    grlib.train uses, for a like-for-like comparison of the loop itself.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = grlib.get_model("mlp", in_features=data.num_features, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, fused=fused)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    xt, yt = torch.as_tensor(data.x_test), torch.as_tensor(data.y_test)
    n = len(y)
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            model.eval()
            float((model(xt).argmax(1) == yt).float().mean())
            model.train()
    return time.perf_counter() - t


def grlib_loop(data: Dataset, epochs: int, batch: int, record: bool, loss="ce", params=None):
    cfg = grlib.RunConfig(dataset="digits", noise="none", noise_rate=0.0, loss=loss, loss_params=params or {},
                          epochs=epochs, batch_size=batch, record=record, eval_train=False, device="cpu")
    noisy = grlib.add_label_noise(data.y_train, 10, "none", 0.0)
    t = time.perf_counter()
    grlib.train(cfg, data=data, noisy=noisy, progress=False)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the steadiest)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gr = ("gr", {"lam": 1.0, "beta": 12.0})
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} interleaved rounds; median ratios")
    rows = []
    for name, (batch, features, n_train, n_test) in SHAPES.items():
        data = _fake_dataset(name, features, n_train, n_test)
        epochs = 10 if name == "digits" else 2
        r_gr, r_rec, r_loop, r_loop_rec, t_ce, r_fused = [], [], [], [], [], []
        for _ in range(args.rounds):
            ce = time_steps("ce", {}, batch, features)
            g = time_steps(*gr, batch, features)
            r_gr.append(g / ce)
            t_ce.append(ce)
            plain = grlib_loop(data, epochs, batch, record=False, loss=gr[0], params=gr[1])
            rec = grlib_loop(data, epochs, batch, record=True, loss=gr[0], params=gr[1])
            r_rec.append(rec / plain)
            bare = bare_loop(data, epochs, batch)
            ours = grlib_loop(data, epochs, batch, record=False)
            ours_rec = grlib_loop(data, epochs, batch, record=True)
            r_loop.append(bare / ours)          # throughput ratio = time ratio inverted
            r_loop_rec.append(bare / ours_rec)
            r_fused.append(bare_loop(data, epochs, batch, fused=True) / ours_rec)
        row = {"shape": f"{name} (batch {batch} x {features})", "ce_step_ms": 1e3 * statistics.median(t_ce),
               "gr_over_ce": statistics.median(r_gr), "record_over_plain": statistics.median(r_rec),
               "loop_throughput": statistics.median(r_loop), "loop_throughput_recording": statistics.median(r_loop_rec),
               "loop_throughput_recording_vs_fused_bare": statistics.median(r_fused)}
        rows.append(row)
        print(f"{row['shape']:<34} CE step {row['ce_step_ms']:.3f} ms | GR/CE step {row['gr_over_ce']:.3f} "
              f"(goal <= 1.03) | record/plain {row['record_over_plain']:.3f} (goal <= 1.05) | "
              f"grlib/bare throughput {row['loop_throughput']:.3f} (goal >= 0.90; with records "
              f"{row['loop_throughput_recording']:.3f}; with records against a bare loop with fused SGD "
              f"{row['loop_throughput_recording_vs_fused_bare']:.3f})", flush=True)
    return rows


if __name__ == "__main__":
    main()
