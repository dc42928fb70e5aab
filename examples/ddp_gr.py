"""Train with GR on several processes: DDP, GR's weights normalised over the global batch, every example recorded.

Run on CPU (gloo; no GPU needed)::

    torchrun --standalone --nproc_per_node=2 examples/ddp_gr.py --out runs/ddp-digits

On GPUs (one per process)::

    torchrun --standalone --nproc_per_node=4 examples/ddp_gr.py --backend nccl --out runs/ddp-digits

What it shows:

* ``grlib.GRLoss(normalize="global")``: the weights are a softmax over every
  rank's examples of the step (the paper's weights for the global batch), not
  over each rank's shard; DDP's averaged gradient is exactly the gradient one
  process would compute on the concatenated batch.
* ``grlib.Recorder(..., distributed=True)`` on every rank: each rank records
  the examples it sees by their index in the training set; every epoch is
  merged across ranks and rank 0 writes one ordinary run folder, which
  ``grlib.RunResult.load`` and notebooks 02/03 (``run_dir=...``) read.
* ``DistributedSampler`` pads each epoch with repeats so that every rank gets
  as many examples; the Recorder keeps an example's first occurrence (the
  lowest rank).  ``drop_last=True`` in the DataLoader avoids a short last
  step, whose few examples would get inflated GR weights.
"""
from __future__ import annotations

import argparse
import datetime
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

import grlib


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="GR with DDP and the Recorder (run it under torchrun)")
    ap.add_argument("--out", default="runs/ddp-digits", help="run folder (replaced if it exists)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32, help="examples per process and step")
    ap.add_argument("--noise", type=float, default=0.4, help="symmetric label noise rate")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    args = ap.parse_args(argv)

    if "RANK" not in os.environ:
        raise SystemExit("run me under torchrun, e.g.: torchrun --standalone --nproc_per_node=2 examples/ddp_gr.py")
    dist.init_process_group(args.backend, timeout=datetime.timedelta(minutes=5))
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)

    # the same data, labels and initial model on every rank
    data = grlib.load_dataset("digits")
    noisy = grlib.add_label_noise(data.y_train, data.num_classes, "symmetric", args.noise, seed=args.seed)
    train_set = grlib.IndexedDataset((data.x_train, noisy.labels))          # items: (x, y, index)
    sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)   # this rank's shard of each epoch
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    torch.manual_seed(args.seed)
    model = grlib.get_model("mlp", in_features=data.num_features, num_classes=data.num_classes).to(device)
    model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    loss_fn = grlib.GRLoss(lam=1.0, beta=12.0, normalize="global")          # the paper's weights, global batch
    rec = grlib.Recorder(len(train_set), args.out, distributed=True, overwrite=True)
    x_test = torch.as_tensor(data.x_test, device=device)
    y_test = torch.as_tensor(data.y_test, device=device)
    x_all = torch.as_tensor(data.x_train, device=device)
    y_given = torch.as_tensor(noisy.labels, device=device)
    mislabelled = torch.as_tensor(noisy.is_noisy, device=device)

    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        for x, y, index in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            out = loss_fn.details(logits, y)             # weights sum to 1 over every rank's examples
            opt.zero_grad(set_to_none=True)
            loss_fn.reduce(out.values).backward()        # DDP's mean of the ranks' gradients: the global batch's
            opt.step()
            rec.update(index, logits, y, out)
        model.eval()
        with torch.no_grad():  # every rank evaluates the same model, so every rank gets the same numbers
            test_acc = float((model.module(x_test).argmax(1) == y_test).float().mean())
            z = model.module(x_all)                      # small data: the whole training set on every rank
            fitted = z.argmax(1) == y_given
            rec.update_eval(torch.arange(len(train_set)), z, y_given)
        info = rec.end_epoch(test_acc=test_acc, lr=opt.param_groups[0]["lr"], train_acc=float(fitted.float().mean()),
                             noisy_fit=float(fitted[mislabelled].float().mean()),
                             clean_acc=float(fitted[~mislabelled].float().mean()))
        if rank == 0 and (epoch == 1 or epoch % 10 == 0 or epoch == args.epochs):
            print(f"epoch {epoch:3d}  test_acc {test_acc:.3f}  examples seen {info['seen']}/{len(train_set)}",
                  flush=True)

    result = rec.result(y_true=noisy.true_labels, data_name="digits", config={
        "loss": "gr", "lam": 1.0, "beta": 12.0, "normalize": "global", "world_size": world,
        "batch_size_per_rank": args.batch_size, "noise": args.noise, "lr": args.lr, "seed": args.seed})
    if rank == 0:
        s = result.summary()
        p_last = result.record("p", -1)
        seen = np.isfinite(p_last)
        auc = grlib.separation_auc(p_last[seen], result.is_noisy[seen])
        print(f"{world} processes: final test accuracy {s['final_acc']:.3f} (best {s['best_acc']:.3f}), "
              f"mislabelled examples fitted {s['noisy_fit']:.3f}, clean-vs-mislabelled AUC of p {auc:.3f}")
        print(f"run saved to {args.out} (grlib.RunResult.load({args.out!r}))")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
