"""One house style and one way to save figures (PNG and PDF, stable names, atomic writes)."""
from __future__ import annotations

import io
import re
from pathlib import Path

from .io import atomic_write_bytes

__all__ = ["use_style", "figure_name", "save_figure", "default_figures_dir", "METHOD_COLORS"]

#: Colours used for the same method across every figure.
METHOD_COLORS = {"ce": "#d62728", "mae": "#9467bd", "mse": "#8c564b", "gce": "#ff7f0e", "sce": "#e377c2",
                 "nce+rce": "#7f7f7f", "gr": "#1f77b4", "clean": "#2ca02c", "noisy": "#d62728"}


def use_style() -> None:
    """Apply the house style (seaborn ``whitegrid``, ``notebook`` context, a readable size)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    mpl.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titlesize": "medium", "legend.fontsize": "small", "figure.constrained_layout.use": True})


def default_figures_dir() -> Path:
    """Where figures go when no folder is given: the repository's ``figures/``, whatever the working directory.

    That is ``<repository>/figures`` for a source checkout or an editable
    install (``pip install -e .``), so ``papermill notebooks/NAME.ipynb out.ipynb``
    started from any folder saves into the repository.  For a grlib installed
    without its repository, ``figures/`` under the working directory.
    """
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root / "figures"
    return Path.cwd() / "figures"


def _slug(value) -> str:
    if isinstance(value, float):
        value = f"{value:g}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(value)).strip("-")


def figure_name(stem: str, **params) -> str:
    """A stable file stem: ``stem`` then ``key-value`` pairs in sorted key order.

    ``figure_name("02_trajectories", noise_rate=0.4, dataset="digits")`` ->
    ``"02_trajectories__dataset-digits__noise_rate-0.4"``.
    """
    parts = [_slug(stem)] + [f"{k}-{_slug(v)}" for k, v in sorted(params.items())]
    return "__".join(parts)


def save_figure(fig, name: str, figures_dir=None, *, formats=("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<name>.<fmt>`` for each format, atomically; return the paths.

    ``figures_dir`` defaults to the repository's ``figures/``.  Does not close
    or show the figure.
    """
    folder = Path(figures_dir) if figures_dir else default_figures_dir()
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        paths.append(atomic_write_bytes(folder / f"{name}.{fmt}", buf.getvalue()))
    return paths
