"""Plotting helpers for the notebooks: emphasis curves, run histories, per-example records, separation.

Every helper draws on an ``ax`` it is given (or on a new one) and returns what
it drew: an :class:`~matplotlib.axes.Axes` or a :class:`~matplotlib.figure.Figure`.
None of them calls ``plt.show()`` or saves a file; saving is
:func:`grlib.figures.save_figure`'s job, after :func:`grlib.figures.use_style`.

Conventions shared with the rest of grlib:

* ``p`` is the probability a model gives to the *labelled* (possibly wrong)
  class of an example, in [0, 1].
* ``weight`` is the emphasis normalised within a batch (sums to 1 over a
  batch); higher means the loss pushes on the example harder.
* ``is_noisy`` is the ground-truth mask of mislabelled examples; clean and
  mislabelled examples are drawn in ``METHOD_COLORS["clean"]`` and
  ``METHOD_COLORS["noisy"]``.
* Separation scores follow :func:`grlib.separation_auc`: a higher score says
  "clean".
* Methods are coloured with :data:`grlib.figures.METHOD_COLORS`; several
  curves of one method get lighter-to-full shades of its colour.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .emphasis import emphasis_curve, emphasis_mode, normalise_over_p
from .figures import METHOD_COLORS

__all__ = [
    "method_label", "method_color", "shades", "plot_emphasis_curves", "plot_empirical_emphasis", "plot_history",
    "plot_weight_histogram", "plot_trajectories", "plot_roc", "plot_separation_auc", "plot_image_grid",
    "FIELD_LABELS", "NORMALISATIONS",
]

#: Axis labels for record and history fields.
FIELD_LABELS = {
    "p": "p (prob. of given label, train pass)",
    "eval_p": "p (prob. of given label)",
    "weight": "weight (normalised in batch)",
    "log_emphasis": "log emphasis",
    "loss": "per-example loss",
    "train_loss": "training loss",
    "test_acc": "test accuracy",
    "val_acc": "validation accuracy (noisy labels)",
    "train_acc": "training accuracy (given labels)",
    "clean_acc": "clean training accuracy",
    "noisy_fit": "mislabelled examples fitted",
    "noisy_true_acc": "mislabelled examples predicted as true class",
    "lr": "learning rate",
}

#: Allowed ``normalise=`` values of :func:`plot_emphasis_curves`.
NORMALISATIONS = ("p", "max", None)

_DEFAULT_METHODS = (("ce", {}), ("mae", {}), ("gce", {"q": 0.7}), ("gr", {"lam": 1.0, "beta": 12.0}))


# -- labels and colours ----------------------------------------------------------
def method_label(name: str, params: Mapping | None = None) -> str:
    """A short label: ``method_label("gr", {"lam": 1.0, "beta": 12.0}) == "gr(lam=1, beta=12)"``."""
    if not params:
        return str(name)
    inner = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k}={v}"
                      for k, v in params.items())
    return f"{name}({inner})"


def method_color(name: str):
    """The house colour of a method (or of ``"clean"`` / ``"noisy"``); unknown names get grey."""
    return METHOD_COLORS.get(str(name).lower(), "#555555")


def shades(color, n: int) -> list:
    """``n`` RGB shades of ``color``, from light (first) to the full colour (last)."""
    from matplotlib.colors import to_rgb

    base = np.asarray(to_rgb(color))
    if n <= 1:
        return [tuple(base)]
    return [tuple(a * base + (1 - a) * np.ones(3)) for a in np.linspace(0.35, 1.0, n)]


def _colours_by_method(names: Sequence[str]) -> list:
    """One colour per entry: the method's colour, shaded when a method occurs more than once."""
    names = list(names)
    out = [None] * len(names)
    for name in dict.fromkeys(names):
        idx = [i for i, n in enumerate(names) if n == name]
        for i, c in zip(idx, shades(method_color(name), len(idx))):
            out[i] = c
    return out


def _new_ax(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


# -- emphasis curves ---------------------------------------------------------------
def plot_emphasis_curves(ax=None, *, methods=_DEFAULT_METHODS, p=None, normalise="p", mark_modes=True, **line_kw):
    """Emphasis as a function of ``p`` for several losses, one line each (method.md, emphasis table / EDF).

    Parameters
    ----------
    ax : Axes, optional
        Where to draw (default: a new figure).
    methods : sequence of ``(name, params)``
        ``name`` is one of ``ce``, ``mae``, ``mse``, ``gce``, ``gr`` and
        ``params`` its keyword arguments for :func:`grlib.emphasis_curve`
        (``gce``: ``q``; ``gr``: ``lam``, ``beta``; ``mse``: ``num_classes``).
    p : 1-D array, optional
        The grid of ``p`` values, sorted, within [0, 1] (default 1001 points).
    normalise : "p", "max" or None
        ``"p"``: each curve integrates to 1 over ``p`` (:func:`grlib.normalise_over_p`,
        the paper's derivative normalisation, so curves compare as densities);
        ``"max"``: each curve peaks at 1; ``None``: raw emphasis values.
    mark_modes : bool
        Draw a dotted vertical line at each curve's emphasis mode
        (:func:`grlib.emphasis_mode`: CE 0, MAE 0.5, MSE 1/3, GCE q/(1+q), GR
        lam/(1+lam)).  GR with ``beta=0`` is flat and gets no mode line.  Mode
        lines carry ``gid="mode:<label>"`` and stay out of the legend.
    **line_kw
        Passed to every ``ax.plot`` of a curve (e.g. ``lw=2``); ``color`` here
        overrides the method colours.

    Returns
    -------
    Axes
        The curves are ``ax.lines`` with ``gid="curve:<label>"`` and labels
        like ``gr(lam=1, beta=12)``.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise={normalise!r} is not one of the allowed values: {NORMALISATIONS}")
    methods = [(m[0], dict(m[1] if len(m) > 1 and m[1] else {})) for m in methods]
    if not methods:
        raise ValueError("methods is empty; give at least one (name, params) pair")
    grid = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64) if p is None else torch.as_tensor(p, dtype=torch.float64)
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"p must be a 1-D grid of at least 2 points, got shape {tuple(grid.shape)}")
    if bool((grid < 0).any() or (grid > 1).any()) or bool((grid[1:] < grid[:-1]).any()):
        raise ValueError("p must be sorted and lie within [0, 1]")
    ax = _new_ax(ax)
    colours = _colours_by_method([name for name, _ in methods])
    x = grid.numpy()
    for (name, params), colour in zip(methods, colours):
        values = emphasis_curve(name, grid, **params).to(torch.float64)
        if normalise == "p":
            values = normalise_over_p(values, grid)
        elif normalise == "max":
            values = values / values.max()
        label = method_label(name, params)
        kw = {"color": colour, "lw": 1.8, **line_kw}
        (line,) = ax.plot(x, values.numpy(), label=label, **kw)
        line.set_gid(f"curve:{label}")
        flat = name == "gr" and float(params.get("beta", 1.0)) == 0.0
        if mark_modes and not flat:
            mode = emphasis_mode(name, **params)
            vline = ax.axvline(mode, color=kw["color"], ls=":", lw=1.2, label=f"_mode {label}")
            vline.set_gid(f"mode:{label}")
    ax.set_xlim(float(x[0]), float(x[-1]))
    ax.set_xlabel("p (probability of the labelled class)")
    ax.set_ylabel({"p": "emphasis density over p", "max": "emphasis / max", None: "emphasis"}[normalise])
    ax.legend(loc="best")
    return ax


def plot_empirical_emphasis(p, values, *, name: str, params: Mapping | None = None, curve_scale="batch", ax=None,
                            color=None, label=None, s: float = 12.0, is_noisy=None):
    """Per-example emphasis from a real batch (scatter) over the analytic curve of the same loss.

    Parameters
    ----------
    p : array [B]
        Probability of the labelled class of each example in the batch.
    values : array [B]
        The per-example quantity to compare: a batch-normalised ``weight``
        (``LossOutput.weight``) or a raw ``magnitude`` (``LossOutput.magnitude``).
    name, params :
        The loss whose analytic emphasis :func:`grlib.emphasis_curve` is drawn.
    curve_scale : "batch", "batch_mean" or float
        ``"batch"``: the curve is ``e(p) / sum_i e(p_i)`` over this batch, i.e.
        the weight an example with probability ``p`` would get in this batch
        (right for ``weight``); ``"batch_mean"``: ``e(p) / mean_i e(p_i)``
        (right for ``weight * B``, where 1 means the batch average); a number
        multiplies the raw curve (1.0 for a ``magnitude``).
    color, label, s :
        Scatter colour (default: the method's), legend label, marker size.
    is_noisy : array [B] of bool, optional
        Colour the points clean / mislabelled (``METHOD_COLORS["clean"/"noisy"]``)
        instead of one colour; the curve's batch scale still uses every point.

    Returns
    -------
    Axes
        With one scatter per group (``gid="empirical"``, or
        ``"empirical:clean"`` / ``"empirical:noisy"``) and one line
        (``gid="analytic"``).
    """
    params = dict(params or {})
    p = np.asarray(torch.as_tensor(p).detach().cpu(), dtype=np.float64).reshape(-1)
    values = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64).reshape(-1)
    if p.shape != values.shape:
        raise ValueError(f"p and values must have one length; got {p.shape} and {values.shape}")
    ax = _new_ax(ax)
    colour = color or method_color(name)
    grid = torch.linspace(0.0, 1.0, 501, dtype=torch.float64)
    curve = emphasis_curve(name, grid, **params).numpy()
    if isinstance(curve_scale, str):
        if curve_scale not in ("batch", "batch_mean"):
            raise ValueError(f"curve_scale={curve_scale!r} must be 'batch', 'batch_mean' or a number")
        at_p = emphasis_curve(name, torch.as_tensor(p), **params)
        scale = 1.0 / float(at_p.sum() if curve_scale == "batch" else at_p.mean())
    else:
        scale = float(curve_scale)
    lab = method_label(name, params)
    if is_noisy is None:
        sc = ax.scatter(p, values, s=s, color=colour, alpha=0.6, edgecolor="none", zorder=3,
                        label=label or f"{lab}: examples in a batch")
        sc.set_gid("empirical")
    else:
        noisy = np.asarray(is_noisy, dtype=bool).reshape(-1)
        if noisy.shape != p.shape:
            raise ValueError(f"is_noisy must have the length of p; got {noisy.shape} and {p.shape}")
        for group, mask in (("clean", ~noisy), ("noisy", noisy)):
            if mask.any():
                sc = ax.scatter(p[mask], values[mask], s=s, color=method_color(group), alpha=0.6, edgecolor="none",
                                zorder=3,
                                label=f"{'clean' if group == 'clean' else 'mislabelled'} (n={int(mask.sum())})")
                sc.set_gid(f"empirical:{group}")
    (line,) = ax.plot(grid.numpy(), curve * scale, color="k", lw=1.0, ls="--", zorder=2, label=f"{lab}: analytic")
    line.set_gid("analytic")
    ax.set_xlim(0, 1)
    ax.set_xlabel("p (probability of the labelled class)")
    ax.legend(loc="best")
    return ax


# -- run histories -------------------------------------------------------------------
def plot_history(results: dict, fields=("test_acc", "noisy_fit"), axes=None):
    """Per-epoch history of several runs: one panel per field, one line per run.

    Parameters
    ----------
    results : dict ``label -> RunResult``
        Lines are labelled with the keys and coloured by each run's loss
        (``result.config["loss"]``).
    fields : sequence of str
        History fields (:data:`grlib.results.HISTORY_FIELDS`), e.g.
        ``test_acc`` (higher is better) and ``noisy_fit`` (share of
        mislabelled examples predicted as their wrong label: memorisation).
    axes : sequence of Axes, optional
        One per field (default: a new figure with one row of panels).

    Returns
    -------
    Figure
        ``x`` is the epoch (1-based), each line ``gid="<label>:<field>"``.
    """
    if not results:
        raise ValueError("results is empty; give at least one label -> RunResult")
    fields = [fields] if isinstance(fields, str) else list(fields)
    if not fields:
        raise ValueError("fields is empty")
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(fields), figsize=(4.2 * len(fields), 3.4), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(axes))
        if len(axes) != len(fields):
            raise ValueError(f"got {len(axes)} axes for {len(fields)} fields")
        fig = axes[0].figure
    labels = list(results)
    colours = _colours_by_method([results[k].config.get("loss", k) for k in labels])
    for ax, field in zip(axes, fields):
        for label, colour in zip(labels, colours):
            res = results[label]
            if field not in res.history:
                raise KeyError(f"history field {field!r} is not in run {label!r}; available: {sorted(res.history)}")
            e = res.epochs_completed
            (line,) = ax.plot(np.arange(1, e + 1), np.asarray(res.history[field])[:e], color=colour, label=label)
            line.set_gid(f"{label}:{field}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(FIELD_LABELS.get(field, field))
        ax.legend(loc="best")
    return fig


# -- per-example records ------------------------------------------------------------
def _groups(result):
    noisy = np.asarray(result.is_noisy, dtype=bool)
    return (("clean", ~noisy), ("noisy", noisy))


def plot_weight_histogram(result, *, epoch: int = -1, field: str = "weight", ax=None, bins=40, log: bool = False):
    """Distribution of a per-example record at one epoch, clean vs mislabelled.

    Parameters
    ----------
    result : RunResult
        Its ``records[field]`` is ``[epochs, n_train]`` and ``is_noisy`` ``[n_train]``.
    epoch : int
        1-based epoch, ``-1`` for the last one.
    field : str
        ``weight``, ``p``, ``eval_p``, ``loss`` or ``log_emphasis``.
    bins : int or sequence
        Shared bin edges for both groups (an int spans the finite values).
    log : bool
        Logarithmic bins and x axis (for positive fields such as ``weight``).

    Returns
    -------
    Axes
        Two step histograms, densities, ``gid`` ``"clean"`` and ``"noisy"``
        (a group with no examples is skipped).
    """
    values = np.asarray(result.record(field, epoch), dtype=np.float64)
    finite = np.isfinite(values)
    nonpos = np.zeros_like(finite)
    if log:
        positive = finite & (values > 0)
        if not positive.any():
            raise ValueError(f"record {field!r} at epoch {epoch} has no finite positive values for log=True")
        # values <= 0 (e.g. CE's weight of a fitted example underflows to 0) are counted in the first bin
        nonpos = finite & ~positive
        values = np.where(nonpos, values[positive].min(), values)
    if not finite.any():
        raise ValueError(f"record {field!r} at epoch {epoch} has no finite values")
    lo, hi = values[finite].min(), values[finite].max()
    if np.isscalar(bins) or np.ndim(bins) == 0:
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.geomspace(lo, hi, int(bins) + 1) if log else np.linspace(lo, hi, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
    ax = _new_ax(ax)
    ep = result.epochs_completed if epoch == -1 else epoch
    for group, mask in _groups(result):
        sel = mask & finite
        if not sel.any():
            continue
        _, _, patches = ax.hist(values[sel], bins=edges, density=True, histtype="stepfilled", alpha=0.35,
                                color=method_color(group), edgecolor=method_color(group), lw=1.5,
                                label=f"{'clean' if group == 'clean' else 'mislabelled'} (n={int(sel.sum())}"
                                      + (f", {int((sel & nonpos).sum())} at 0 in the first bin" if (sel & nonpos).any()
                                         else "") + ")")
        for patch in patches:
            patch.set_gid(group)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(FIELD_LABELS.get(field, field))
    ax.set_ylabel("density")
    ax.set_title(f"{result.config.get('loss', '')}, epoch {ep}")
    ax.legend(loc="best")
    return ax


def plot_trajectories(result, field: str = "weight", *, ax=None, n_per_group: int = 15, quantiles=(0.1, 0.9),
                      seed: int = 0, log: bool = False, relative: bool = False):
    """A record over epochs: sampled clean and mislabelled examples, with group medians and quantile bands.

    Parameters
    ----------
    result : RunResult
        ``records[field]`` is ``[epochs, n_train]``.
    field : str
        ``weight``, ``p``, ``eval_p``, ``loss``, ``log_emphasis``.
    n_per_group : int
        Thin lines drawn per group (sampled without replacement with ``seed``).
    quantiles : (low, high)
        The band drawn around each group's median, over *all* its examples.
    log : bool
        Logarithmic y axis.
    relative : bool
        Multiply by the batch size (``weight`` only): 1 then means "the
        average weight in a batch", whatever the batch size.

    Returns
    -------
    Axes
        Thin lines ``gid="sample:<group>"``, medians ``gid="median:<group>"``,
        bands ``gid="band:<group>"`` with group ``clean`` / ``noisy``.
    """
    lo_q, hi_q = quantiles
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ValueError(f"quantiles={quantiles!r} must satisfy 0 <= low < high <= 1")
    if n_per_group < 0:
        raise ValueError(f"n_per_group={n_per_group} must be >= 0")
    arr = np.asarray(result.record(field), dtype=np.float64)  # [E, n]
    if relative:
        if field != "weight":
            raise ValueError("relative=True only applies to field='weight'")
        arr = arr * float(result.config.get("batch_size", 1))
    epochs = np.arange(1, arr.shape[0] + 1)
    ax = _new_ax(ax)
    rng = np.random.default_rng(seed)
    for group, mask in _groups(result):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        colour = method_color(group)
        name = "clean" if group == "clean" else "mislabelled"
        pick = rng.choice(idx, size=min(n_per_group, idx.size), replace=False)
        for j in pick:
            (line,) = ax.plot(epochs, arr[:, j], color=colour, lw=0.5, alpha=0.35)
            line.set_gid(f"sample:{group}")
        sub = arr[:, idx]
        with np.errstate(all="ignore"):
            med = np.nanmedian(sub, axis=1)
            lo, hi = np.nanquantile(sub, [lo_q, hi_q], axis=1)
        band = ax.fill_between(epochs, lo, hi, color=colour, alpha=0.18, lw=0,
                               label=f"{name} {lo_q:.0%}-{hi_q:.0%}")
        band.set_gid(f"band:{group}")
        (line,) = ax.plot(epochs, med, color=colour, lw=2.2, label=f"{name} median (n={idx.size})")
        line.set_gid(f"median:{group}")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    label = FIELD_LABELS.get(field, field)
    ax.set_ylabel("weight x batch size (1 = batch average)" if relative else label)
    ax.legend(loc="best")
    return ax


# -- separation ---------------------------------------------------------------------
def plot_roc(scores, is_noisy, *, ax=None, label: str | None = None, color=None, chance: bool = True, **line_kw):
    """ROC curve of "a higher score says clean" (clean is the positive class).

    Parameters
    ----------
    scores : array [n]
        Per-example scores, e.g. ``p`` (higher: the model agrees with the
        given label) or ``-weight``.  Non-finite scores are dropped.
    is_noisy : array [n] of bool
        The ground-truth mask of mislabelled examples.
    label : str, optional
        Legend label; the AUC is appended (``"ce (AUC 0.76)"``).
    chance : bool
        Also draw the diagonal (once per axes, ``gid="chance"``).

    Returns
    -------
    Axes
        The ROC line has ``gid="roc"``; x is the false-positive rate
        (mislabelled called clean), y the true-positive rate (clean called clean).
    """
    from sklearn.metrics import roc_curve

    from .metrics import separation_auc

    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(is_noisy, dtype=bool).reshape(-1)
    if s.shape != m.shape:
        raise ValueError(f"scores and is_noisy must have one length; got {s.shape} and {m.shape}")
    ok = np.isfinite(s)
    s, m = s[ok], m[ok]
    if m.all() or not m.any():
        raise ValueError("a ROC curve needs both clean and mislabelled examples")
    fpr, tpr, _ = roc_curve(~m, s)
    auc = separation_auc(s, m)
    ax = _new_ax(ax)
    if chance and not any(line.get_gid() == "chance" for line in ax.lines):
        (diag,) = ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="_chance")
        diag.set_gid("chance")
    kw = {"lw": 1.8, **line_kw}
    if color is not None:
        kw["color"] = color
    (line,) = ax.plot(fpr, tpr, label=f"{label or 'score'} (AUC {auc:.2f})", **kw)
    line.set_gid("roc")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("mislabelled called clean (FPR)")
    ax.set_ylabel("clean called clean (TPR)")
    ax.legend(loc="lower right")
    return ax


def plot_separation_auc(tables: dict, column: str = "auc_eval_p", *, ax=None, colors: dict | None = None):
    """Separation AUC per epoch for several runs (tables from :func:`grlib.separation_table`).

    Parameters
    ----------
    tables : dict ``label -> DataFrame``
        Each with an ``epoch`` column and ``column``.
    column : str
        e.g. ``auc_eval_p``, ``auc_p``, ``auc_weight``.  0.5 is no separation,
        1 perfect, below 0.5 the score ranks mislabelled examples higher.
    colors : dict, optional
        ``label -> colour`` (default: by the method name before ``(`` in the label).

    Returns
    -------
    Axes
        One line per label (``gid=<label>``) and a dotted line at 0.5.
    """
    if not tables:
        raise ValueError("tables is empty")
    ax = _new_ax(ax)
    labels = list(tables)
    default = _colours_by_method([k.split("(")[0] for k in labels])
    for label, colour in zip(labels, default):
        df = tables[label]
        if column not in df:
            raise KeyError(f"column {column!r} is not in the table of {label!r}; available: {list(df.columns)}")
        (line,) = ax.plot(df["epoch"], df[column], color=(colors or {}).get(label, colour), label=label)
        line.set_gid(label)
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"ROC AUC ({column.removeprefix('auc_')} says clean)")
    ax.legend(loc="best")
    return ax


def plot_image_grid(images, *, titles: Sequence[str] | None = None, image_shape=None, ncols: int = 8,
                    fig=None, cmap: str = "gray_r"):
    """A grid of images (e.g. the examples a model weights least), one axes each, no ticks.

    Parameters
    ----------
    images : array [n, ...]
        Each row is one image, flat (then give ``image_shape``) or ``[H, W]`` /
        ``[1, H, W]``.
    titles : sequence of str, optional
        One short title per image (e.g. ``"given 3 / true 8"``).
    image_shape : tuple, optional
        ``(H, W)`` or ``(1, H, W)`` to reshape flat rows.
    ncols : int
        Images per row.
    fig : Figure, optional
        Draw on this figure (it should be empty); default a new one.

    Returns
    -------
    Figure
        With ``n`` image axes (and empty cells of the last row turned off).
    """
    imgs = np.asarray(images, dtype=np.float64)
    n = imgs.shape[0]
    if n == 0:
        raise ValueError("no images to draw")
    if image_shape is not None:
        imgs = imgs.reshape(n, *image_shape)
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]
    if imgs.ndim != 3:
        raise ValueError(f"images must be [n, H, W] (or flat with image_shape); got shape {imgs.shape}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images")
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(1.25 * ncols, 1.45 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if k >= n:
            ax.set_axis_off()
            continue
        ax.imshow(imgs[k], cmap=cmap, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize="x-small")
    return fig
