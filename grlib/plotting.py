"""Plotting helpers for the notebooks: emphasis curves, run histories, per-example records, separation.

Every helper draws on an ``ax`` it is given (or on a new one) and returns what
it drew: an :class:`~matplotlib.axes.Axes` or a :class:`~matplotlib.figure.Figure`.
None of them calls ``plt.show()`` or saves a file; saving is
:func:`grlib.figures.save_figure`'s job, after :func:`grlib.figures.use_style`.

Conventions shared with the rest of grlib:

* ``p`` is the probability a model gives to the *labelled* (possibly wrong)
  class of an example, in [0, 1].
* ``weight`` is the emphasis normalised within a batch (sums to 1 over a
  batch, as recorded); higher means the loss pushes on the example harder.
  Every figure draws it in one unit, **weight x batch size**, so 1 is the
  batch average whatever the batch size (:func:`grlib.views.relative_weights`).
* ``is_noisy`` is the ground-truth mask of mislabelled examples; clean and
  mislabelled examples are drawn in ``METHOD_COLORS["clean"]`` and
  ``METHOD_COLORS["noisy"]``.  A run without the mask (real data,
  ``is_noisy is None``) is drawn as one group, "all examples".  A run that
  also keeps outlier / corruption masks is drawn by kind
  (:func:`grlib.views.group_masks`): clean, mislabelled, outlier (purple),
  corrupted (orange), :data:`GROUP_COLORS`.
* Histograms show counts (or shares of a group) per bin, never densities:
  on log-spaced bins a density would draw the right tail far too low.
* Separation scores follow :func:`grlib.separation_auc`: a higher score says
  "clean".
* Methods are coloured with :data:`grlib.figures.METHOD_COLORS`; several
  curves of one method get lighter-to-full shades of its colour.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ._checks import check_choice, check_int
from .emphasis import emphasis_curve, emphasis_mode, normalise_over_p
from .figures import METHOD_COLORS

__all__ = [
    "method_label", "method_color", "group_color", "shades", "plot_emphasis_curves", "plot_empirical_emphasis",
    "plot_history", "plot_group_histogram", "plot_weight_histogram", "plot_trajectories", "plot_share_above",
    "plot_p_heatmap", "plot_distribution_grid", "plot_roc", "plot_separation_auc", "plot_separation_by_kind",
    "plot_weight_share", "plot_image_grid", "plain_log_ticks", "histogram_edges", "FIELD_LABELS", "GROUP_LABELS",
    "GROUP_COLORS", "HISTOGRAM_STATS", "NORMALISATIONS",
]

#: Axis labels for record and history fields.
FIELD_LABELS = {
    "p": "p (prob. of given label, train pass)",
    "eval_p": "p (prob. of given label)",
    "weight": "weight x batch size (1 = batch average)",
    "margin": "margin (given-label logit minus the largest other)",
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
        (``result.config["loss"]``).  A run whose history lacks a field is
        not drawn in that panel; NaN values (not measured) leave gaps.
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
        KeyError for a field that no run recorded.
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
    colours = _colours_by_method([(results[k].config or {}).get("loss", k) for k in labels])
    for field in fields:
        if not any(field in results[k].history for k in labels):
            raise KeyError(f"history field {field!r} is in none of the runs; available: "
                           f"{sorted(set().union(*(results[k].history for k in labels)))}")
    for ax, field in zip(axes, fields):
        drawn = False
        for label, colour in zip(labels, colours):
            res = results[label]
            if field not in res.history:  # a user's run may not record every field: nothing to draw
                continue
            values = np.asarray(res.history[field], dtype=np.float64)
            e = min(int(res.epochs_completed or values.size), values.size)
            (line,) = ax.plot(np.arange(1, e + 1), values[:e], color=colour, label=label)
            line.set_gid(f"{label}:{field}")
            drawn = drawn or bool(np.isfinite(values[:e]).any())
        if not drawn:
            ax.text(0.5, 0.5, "not recorded in these runs", ha="center", va="center", transform=ax.transAxes,
                    color="0.4")
        ax.set_xlabel("epoch")
        ax.set_ylabel(FIELD_LABELS.get(field, field))
        ax.legend(loc="best")
    return fig


# -- per-example records ------------------------------------------------------------
#: Legend names of the groups of :func:`grlib.views.group_masks`.
GROUP_LABELS = {"clean": "clean", "mislabelled": "mislabelled", "outlier": "outlier", "corrupted": "corrupted",
                "other": "other examples", "all": "all examples"}
#: Colours of the groups: clean green and mislabelled red (``METHOD_COLORS``), outlier purple, corrupted
#: orange, ``other`` / ``all`` dark grey.
GROUP_COLORS = {"clean": METHOD_COLORS["clean"], "mislabelled": METHOD_COLORS["noisy"], "outlier": "#9467bd",
                "corrupted": "#ff7f0e", "other": "#4d4d4d", "all": "#4d4d4d"}
#: Colour maps of the p heat maps, one per group.
_GROUP_CMAPS = {"clean": "Greens", "mislabelled": "Reds", "outlier": "Purples", "corrupted": "Oranges"}
#: Short names of the touched kinds, for panel titles that list one number per kind.
_KIND_SHORT = {"mislabelled": "misl.", "outlier": "outl.", "corrupted": "corr."}
#: Allowed ``stat=`` values of the histograms.
HISTOGRAM_STATS = ("count", "share")


def group_color(group: str):
    """Colour of a group (:data:`GROUP_COLORS`): ``clean`` green, ``mislabelled`` red (``METHOD_COLORS``),
    ``outlier`` purple, ``corrupted`` orange, anything else dark grey."""
    return GROUP_COLORS.get(group, "#4d4d4d")


def _as_groups(groups, n: int) -> list:
    """``groups``: None (one group ``all``), a boolean noise mask ``[n]``, or ``[(name, mask), ...]``."""
    if groups is None:
        return [("all", np.ones(n, dtype=bool))]
    if isinstance(groups, (list, tuple)) and groups and isinstance(groups[0], tuple):
        out = [(str(g), np.asarray(m, dtype=bool).reshape(-1)) for g, m in groups]
    else:
        noisy = np.asarray(groups, dtype=bool).reshape(-1)
        out = [("clean", ~noisy), ("mislabelled", noisy)]
    for g, m in out:
        if m.size != n:
            raise ValueError(f"the mask of group {g!r} has {m.size} entries for {n} values")
    return [(g, m) for g, m in out if m.any()]


def _short_number(v: float) -> str:
    """``0.5``, ``2``, ``100`` as written; powers of ten beyond [0.01, 1000) as ``1e-4`` (short labels)."""
    if v <= 0 or 0.01 <= v < 1000:
        return f"{v:g}"
    exponent = np.log10(v)
    return f"1e{int(round(exponent))}" if abs(exponent - round(exponent)) < 1e-9 else f"{v:.0e}".replace("e-0", "e-")


def plain_log_ticks(axis, *, max_ticks: int = 5) -> None:
    """Readable ticks on a log axis: short plain labels (``1e-4``, ``0.01``, ``1``, ``10``), at most
    about ``max_ticks`` of them, 1-2-5 steps only within two decades, no minor labels (on narrow
    panels the default labels of several decades overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    narrow = lo > 0 and hi / lo < 100
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,), numticks=max_ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _short_number(v)))
    axis.set_minor_formatter(NullFormatter())


def histogram_edges(values, bins=40, *, log: bool = False) -> np.ndarray:
    """Shared bin edges over the finite values (``log``: the positive ones, geometric spacing)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & ((values > 0) if log else True)]
    if values.size == 0:
        raise ValueError("no finite values to bin" + (" (log=True needs positive values)" if log else ""))
    nb = check_int("bins", bins, low=1)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    return np.geomspace(lo, hi, nb + 1) if log else np.linspace(lo, hi, nb + 1)


def plot_group_histogram(values, groups=None, *, bins=40, log: bool = False, stat: str = "count", ax=None,
                         xlabel: str | None = None, alpha: float = 0.35):
    """Histogram of per-example values, one step histogram per group, on shared bins.

    Parameters
    ----------
    values : array [n]
        e.g. ``p`` or weight x batch size (:func:`grlib.views.relative_weights`).
        Non-finite values (examples not seen) are left out.
    groups : None, bool array [n] or list of ``(name, mask)``
        None: one group ``all``; a boolean noise mask: ``clean`` and
        ``mislabelled``; or explicit groups (names as in
        :func:`grlib.views.group_masks`: the kinds ``clean``,
        ``mislabelled``, ``outlier``, ``corrupted``, or ``all``).
    bins : int or sequence
        The number of bins over the finite values (log: geometric spacing),
        or the edges (values outside them are counted in the end bins).
    log : bool
        Log-spaced bins and a log x axis.  Values <= 0 (e.g. a weight that
        underflowed to 0) are counted in the first bin and said so in the legend.
    stat : "count" or "share"
        ``count``: examples per bin; ``share``: the share of the group's
        examples per bin (each group sums to 1, so groups of different sizes
        compare).  Never a density: on log-spaced bins a density divides by
        widths that grow geometrically and draws the right tail far too low.

    Returns
    -------
    Axes
        Patches with ``gid`` the group name; heights are what ``stat`` says.
    """
    check_choice("stat", stat, HISTOGRAM_STATS)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    groups = _as_groups(groups, values.size)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("no finite values to draw (every example is NaN: not seen?)")
    moved = np.zeros_like(finite)
    if log:
        positive = finite & (values > 0)
        if not positive.any():
            raise ValueError("log=True needs positive values; every finite value is <= 0")
        moved = finite & ~positive
        values = np.where(moved, values[positive].min(), values)
    if np.isscalar(bins) or np.ndim(bins) == 0:
        edges = histogram_edges(values[finite], bins, log=log)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bins given as edges must be a 1-D increasing sequence of at least 2 numbers")
    values = np.clip(values, edges[0], edges[-1])  # nothing falls outside the edges unseen
    ax = _new_ax(ax)
    for group, mask in groups:
        sel = mask & finite
        if not sel.any():
            continue
        weights = np.full(int(sel.sum()), 1.0 / sel.sum() if stat == "share" else 1.0)
        note = f", {int((sel & moved).sum())} at 0 in the first bin" if (sel & moved).any() else ""
        colour = group_color(group)
        _, _, patches = ax.hist(values[sel], bins=edges, weights=weights, histtype="stepfilled", alpha=alpha,
                                color=colour, edgecolor=colour, lw=1.5,
                                label=f"{GROUP_LABELS.get(group, group)} (n={int(sel.sum())}{note})")
        for patch in patches:
            patch.set_gid(group)
    if log:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    what = "examples" if stat == "count" else "share of group"
    ax.set_ylabel(f"{what} per {'log ' if log else ''}bin")  # log bins: counts per bin, never a density
    ax.legend(loc="best")
    return ax


def _record_values(result, field: str, epoch: int) -> np.ndarray:
    from .views import record_row, relative_weights

    row = record_row(result, field, epoch)
    return relative_weights(row) if field == "weight" else row


def plot_weight_histogram(result, *, epoch: int = -1, field: str = "weight", ax=None, bins=40, log: bool = False,
                          stat: str = "count"):
    """Distribution of a per-example record at one epoch, clean vs mislabelled (one group without the mask;
    one per kind with outlier / corruption masks, :func:`grlib.views.group_masks`).

    Parameters
    ----------
    result : RunResult
        Its ``records[field]``; ``is_noisy`` splits the groups (None: one group).
    epoch : int
        1-based epoch, ``-1`` for the last one recorded.
    field : str
        ``weight`` (drawn as weight x batch size: 1 = the batch average,
        :func:`grlib.views.relative_weights`), ``p``, ``eval_p``, ``loss``,
        ``margin`` or ``log_emphasis``.
    bins, log, stat :
        As :func:`plot_group_histogram`: counts per bin by default, on shared
        bins (log: log-spaced bins and axis, for weights).

    Returns
    -------
    Axes
        Step histograms with ``gid`` ``"clean"`` / ``"mislabelled"`` (or ``"all"``).
    """
    from .views import group_masks, resolve_epochs, run_label

    (ep,) = resolve_epochs(result, field, [epoch])
    values = _record_values(result, field, ep)
    ax = plot_group_histogram(values, group_masks(result), bins=bins, log=log, stat=stat, ax=ax,
                              xlabel=FIELD_LABELS.get(field, field))
    ax.set_title(f"{run_label(result, default='')}, epoch {ep}".lstrip(", "))
    return ax


def plot_trajectories(result, field: str = "weight", *, ax=None, n_per_group: int = 15, quantiles=(0.1, 0.9),
                      seed: int = 0, log: bool = False, band: bool = True):
    """A record over epochs: sampled examples per group, with group medians and (optionally) quantile bands.

    Parameters
    ----------
    result : RunResult
        ``records[field]`` is ``[epochs, n_train]``; ``is_noisy`` splits the
        groups clean / mislabelled (None: one group, ``all``), and outlier /
        corruption masks add the groups ``outlier`` and ``corrupted``.
    field : str
        ``weight`` (drawn as weight x batch size, 1 = the batch average),
        ``p``, ``eval_p``, ``loss``, ``margin``, ``log_emphasis``.
    n_per_group : int
        Thin lines drawn per group (sampled without replacement with ``seed``).
    quantiles : (low, high)
        The band drawn around each group's median, over *all* its examples.
        A band misleads for a bimodal group (``p`` of mislabelled examples
        under GR sits near 0 or near 1): draw ``p`` with
        :func:`plot_share_above` or :func:`plot_p_heatmap` instead, or pass ``band=False``.
    log : bool
        Logarithmic y axis.

    Returns
    -------
    Axes
        Thin lines ``gid="sample:<group>"``, medians ``gid="median:<group>"``,
        bands ``gid="band:<group>"``; the groups of :func:`grlib.views.group_masks`.
        Epochs on x are the recorded ones (1-based); unseen examples are left out.
    """
    from .views import group_masks, iter_record_rows, recorded_epochs, relative_weights

    lo_q, hi_q = quantiles
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ValueError(f"quantiles={quantiles!r} must satisfy 0 <= low < high <= 1")
    n_per_group = check_int("n_per_group", n_per_group, low=0)
    groups = group_masks(result)
    if recorded_epochs(result, field).size == 0:
        raise ValueError(f"record {field!r} holds no complete epoch")
    rng = np.random.default_rng(seed)
    picks = {g: rng.choice(np.flatnonzero(m), size=min(n_per_group, int(m.sum())), replace=False) for g, m in groups}
    epochs, stats, samples = [], {g: [] for g, _ in groups}, {g: [] for g, _ in groups}
    for epoch, row in iter_record_rows(result, field):  # one epoch at a time: any run length
        if field == "weight":
            row = relative_weights(row)
        epochs.append(epoch)
        for g, mask in groups:
            sub = row[mask]
            sub = sub[np.isfinite(sub)]
            stats[g].append(np.quantile(sub, [0.5, lo_q, hi_q]) if sub.size else np.full(3, np.nan))
            samples[g].append(row[picks[g]])
    ax = _new_ax(ax)
    x = np.asarray(epochs)
    for g, mask in groups:
        colour, name = group_color(g), GROUP_LABELS.get(g, g)
        for line_values in np.asarray(samples[g]).reshape(len(epochs), -1).T:
            (line,) = ax.plot(x, line_values, color=colour, lw=0.5, alpha=0.35)
            line.set_gid(f"sample:{g}")
        med, lo, hi = np.asarray(stats[g]).reshape(len(epochs), 3).T
        if band:
            poly = ax.fill_between(x, lo, hi, color=colour, alpha=0.18, lw=0, label=f"{name} {lo_q:.0%}-{hi_q:.0%}")
            poly.set_gid(f"band:{g}")
        (line,) = ax.plot(x, med, color=colour, lw=2.2, label=f"{name} median (n={int(mask.sum())})")
        line.set_gid(f"median:{g}")
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("epoch")
    ax.set_ylabel(FIELD_LABELS.get(field, field))
    ax.legend(loc="best")
    return ax


def plot_share_above(result, field: str | None = None, *, threshold: float = 0.5, ax=None):
    """Per epoch, the share of each group with ``p > threshold`` (default: the model believes the given label).

    The honest view of a bimodal group: for GR's mislabelled examples, which
    sit near ``p = 0`` or near ``p = 1``, a median with a quantile band reads
    as "spread everywhere", while this line says how many are fitted.  Data:
    :func:`grlib.views.share_above` (``field`` defaults to ``eval_p``, else ``p``).

    Returns
    -------
    Axes
        One line per group, ``gid="share:<group>"``, y in [0, 1].
    """
    from .views import p_field, share_above

    field = field or p_field(result)
    table = share_above(result, field, threshold=threshold)
    ax = _new_ax(ax)
    for g in table.columns[1:]:
        (line,) = ax.plot(table["epoch"], table[g], color=group_color(g), lw=2.0, label=GROUP_LABELS.get(g, g))
        line.set_gid(f"share:{g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"share with {'p' if field in ('p', 'eval_p') else field} > {threshold:g}")
    ax.legend(loc="best")
    return ax


def plot_p_heatmap(result, field: str | None = None, *, group: str = "mislabelled", bins: int = 20, ax=None,
                   vmax: float | None = None, colorbar: bool = True):
    """Heat map of ``p`` against the epoch for one group: the colour is the share of the group in each ``p`` bin.

    Shows a bimodal group as two bands (near 0 and near 1) where a quantile
    band would cover everything.  Data: :func:`grlib.views.p_by_epoch`.

    Parameters
    ----------
    field : str, optional
        A record in [0, 1] (default ``eval_p``, else ``p``).
    group : str
        A group of :func:`grlib.views.group_masks` (``clean`` /
        ``mislabelled`` need the run's noise mask, ``outlier`` /
        ``corrupted`` its masks of those kinds) or ``all``.
    bins : int
        Equal-width ``p`` bins over [0, 1].
    vmax : float, optional
        Top of the colour scale (default: the largest share drawn); pass one
        value to several panels to compare them.
    colorbar : bool
        Add a colour bar ("share of the group").

    Returns
    -------
    Axes
        With one QuadMesh, ``gid="heatmap:<group>"``; x the recorded epochs, y ``p``.
    """
    from .views import p_by_epoch, p_field

    field = field or p_field(result)
    epochs, edges, shares = p_by_epoch(result, field, group=group, bins=bins)
    if epochs.size == 0:
        raise ValueError(f"record {field!r} holds no complete epoch")
    ax = _new_ax(ax)
    # epoch cells centred on the epoch numbers (works for records kept every k epochs too)
    mids = epochs.astype(np.float64)
    half = np.diff(mids) / 2 if mids.size > 1 else np.array([0.5])
    x_edges = np.concatenate([[mids[0] - half[0]], mids[:-1] + half, [mids[-1] + half[-1]]])
    cmap = _GROUP_CMAPS.get(group, "Greys")
    top = vmax if vmax is not None else (float(np.nanmax(shares)) if np.isfinite(shares).any() else 1.0)
    mesh = ax.pcolormesh(x_edges, edges, np.ma.masked_invalid(shares), cmap=cmap, vmin=0.0, vmax=top,
                         shading="flat")
    mesh.set_gid(f"heatmap:{group}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("p (prob. of given label)" if field in ("p", "eval_p") else field)
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=f"share of {GROUP_LABELS.get(group, group)}", pad=0.01)
    return ax


def plot_distribution_grid(results: dict, field: str, epochs, *, log: bool = False, bins: int = 30,
                           stat: str = "share", auc_field: str | None = None, fig=None):
    """Distributions of a record, one row per run and one column per epoch, clean vs mislabelled (or by kind).

    Every row (one run, e.g. one loss) has its own x axis, shared across its
    epochs: CE's and GR's weights live on scales orders of magnitude apart,
    and a shared axis would squeeze one of them into a sliver.

    Parameters
    ----------
    results : dict ``label -> RunResult``
    field : str
        A record (``weight`` is drawn as weight x batch size, 1 = the batch average).
    epochs : sequence of int
        1-based epochs (-1: the last recorded) of every run.
    log, bins, stat :
        As :func:`plot_group_histogram` (default ``share``: each group's
        shares sum to 1, so the smaller mislabelled group stays visible).
    auc_field : str, optional
        A record whose separation AUC ("higher says clean",
        :func:`grlib.separation_auc`) is shown in each title, when the run has
        the noise mask.  A run with outlier / corruption masks gets one AUC
        per touched kind against the clean examples, on a second title line
        (``misl.``, ``outl.``, ``corr.``: mislabelled, outlier, corrupted).
    fig : Figure, optional
        An empty figure to draw on (default: a new one).

    Returns
    -------
    Figure
        ``len(results) x len(epochs)`` axes; titles ``"<label>, epoch <e>"``.
    """
    from .metrics import separation_auc
    from .views import group_masks, has_kinds, has_mask, kind_selection, record_row, resolve_epochs, touched_kinds

    if not results:
        raise ValueError("results is empty; give at least one label -> RunResult")
    resolved = {label: resolve_epochs(res, field, list(epochs)) for label, res in results.items()}
    ncols = max(len(e) for e in resolved.values())
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(3.6 * ncols, 3.0 * len(results)))
    axes = fig.subplots(len(results), ncols, squeeze=False, sharex="row")  # one x axis per run
    for row, (label, res) in enumerate(results.items()):
        values = {e: _record_values(res, field, e) for e in resolved[label]}
        stacked = np.concatenate(list(values.values()))
        edges = histogram_edges(stacked[np.isfinite(stacked) & ((stacked > 0) if log else True)], bins, log=log)
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(resolved[label]):
                ax.set_axis_off()
                continue
            e = resolved[label][col]
            plot_group_histogram(values[e], group_masks(res), bins=edges, log=log, stat=stat, ax=ax,
                                 xlabel=FIELD_LABELS.get(field, field))
            title = f"{label}, epoch {e}"
            if auc_field and has_mask(res) and auc_field in res.records:
                scores = record_row(res, auc_field, e)
                if has_kinds(res):
                    aucs = []
                    for kind in touched_kinds(res):
                        selected, is_kind = kind_selection(res, kind)
                        aucs.append(f"{_KIND_SHORT[kind]} {separation_auc(scores[selected], is_kind):.2f}")
                    title += "\nAUC " + ", ".join(aucs)
                else:
                    title += f": AUC {separation_auc(scores, res.is_noisy):.2f}"
            ax.set_title(title)
            if col:
                ax.set_ylabel("")
            if row or col:
                ax.get_legend().remove()
    return fig


# -- separation ---------------------------------------------------------------------
def plot_roc(scores, is_noisy, *, ax=None, label: str | None = None, color=None, chance: bool = True,
             kind: str = "mislabelled", **line_kw):
    """ROC curve of "a higher score says clean" (clean is the positive class).

    Parameters
    ----------
    scores : array [n]
        Per-example scores, e.g. ``p`` (higher: the model agrees with the
        given label) or ``-weight``.  Non-finite scores are dropped.
    is_noisy : array [n] of bool
        The ground-truth mask of the examples that are not clean (mislabelled,
        or those of ``kind``; give the clean examples and those of one kind
        only, as :func:`grlib.views.kind_selection` selects them).
    label : str, optional
        Legend label; the AUC is appended (``"ce (AUC 0.76)"``).
    chance : bool
        Also draw the diagonal (once per axes, ``gid="chance"``).
    kind : str
        What the negative class is, for the axis label
        (``"mislabelled called clean (FPR)"``; e.g. ``"outlier"``).

    Returns
    -------
    Axes
        The ROC line has ``gid="roc"``; x is the false-positive rate
        (``kind`` called clean), y the true-positive rate (clean called clean).
    """
    from sklearn.metrics import roc_curve

    from .metrics import separation_auc

    if is_noisy is None:
        raise ValueError(f"a ROC curve of clean vs {kind} needs the noise mask, and is_noisy is None")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(is_noisy, dtype=bool).reshape(-1)
    if s.shape != m.shape:
        raise ValueError(f"scores and is_noisy must have one length; got {s.shape} and {m.shape}")
    ok = np.isfinite(s)
    s, m = s[ok], m[ok]
    if m.all() or not m.any():
        raise ValueError(f"a ROC curve needs both clean and {kind} examples")
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
    ax.set_xlabel(f"{kind} called clean (FPR)")
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


def plot_separation_by_kind(results: dict, field: str, epochs, *, emphasis_field: str | None = None,
                            tables: dict | None = None, fig=None):
    """Clean against each touched kind: ROC curves at some epochs and the AUC per epoch, one row per kind.

    Row ``k`` compares the clean examples with those of the ``k``-th kind
    that any run has (``mislabelled``, ``outlier``, ``corrupted``:
    :func:`grlib.views.touched_kinds`; the other kinds left out,
    :func:`grlib.views.kind_selection`), so it answers "is ``p`` lower for
    outliers than for clean examples?".  Columns: the ROC curves of
    ``field`` ("higher says clean") at ``epochs`` (lighter = earlier, one
    colour per run's loss), the AUC of ``field`` at every recorded epoch,
    and the AUC of ``emphasis_field`` (the loss's emphasis; below 0.5 the
    loss weights that kind *more* than the clean examples).  A run with only
    the noise mask gives one row, clean vs mislabelled.

    Parameters
    ----------
    results : dict ``label -> RunResult``
        Runs with the noise mask (others are left out; ValueError when none has it).
    field : str
        A record, e.g. ``eval_p`` or ``p``.
    epochs : sequence of int or dict ``label -> sequence``
        1-based epochs of the ROC curves (-1: the last recorded), for every
        run or per run.
    emphasis_field : str, optional
        ``log_emphasis`` or ``weight``; None: the third column is left empty.
    tables : dict ``label -> {kind: DataFrame}``, optional
        :func:`grlib.views.separation_by_epoch` of each run and kind
        (computed when not given), with ``auc_<field>`` and ``auc_<emphasis_field>``.
    fig : Figure, optional
        An empty figure to draw on (default: a new one).

    Returns
    -------
    Figure
        ``rows x 3`` axes; titles name the kind when a run keeps outlier or
        corruption masks (``"outlier vs clean: ROC of p"``), else as for one
        row of clean vs mislabelled.
    """
    from .views import has_kinds, has_mask, kind_selection, record_row, resolve_epochs, separation_by_epoch, \
        touched_kinds

    if not results:
        raise ValueError("results is empty; give at least one label -> RunResult")
    masked = {label: res for label, res in results.items() if has_mask(res)}
    if not masked:
        raise ValueError("no run has the noise mask (is_noisy is None): nothing to separate")
    fields = (field,) + ((emphasis_field,) if emphasis_field else ())
    if tables is None:
        tables = {label: {kind: separation_by_epoch(res, fields, kind=kind) for kind in touched_kinds(res)}
                  for label, res in masked.items()}
    kinds = [k for k in ("mislabelled", "outlier", "corrupted")
             if any(k in touched_kinds(res) for res in masked.values())]
    if not kinds:
        raise ValueError("no run has an example of a touched kind (mislabelled, outlier, corrupted)")
    named = any(has_kinds(res) for res in masked.values())
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(16, 4.6 * len(kinds)))
    axes = fig.subplots(len(kinds), 3, squeeze=False)
    for row, kind in zip(axes, kinds):
        runs = {label: res for label, res in masked.items() if kind in touched_kinds(res)}
        for label, res in runs.items():
            colour = METHOD_COLORS.get(str((res.config or {}).get("loss", "")), "#555555")
            picks = epochs.get(label, [-1]) if isinstance(epochs, Mapping) else epochs
            resolved = resolve_epochs(res, field, list(picks))
            selected, is_kind = kind_selection(res, kind)
            for e, shade in zip(resolved, shades(colour, len(resolved))):
                plot_roc(record_row(res, field, e)[selected], is_kind, ax=row[0], label=f"{label}, epoch {e}",
                         color=shade, kind=kind)
        kind_tables = {label: tables[label][kind] for label in runs}
        plot_separation_auc(kind_tables, f"auc_{field}", ax=row[1])
        column = f"auc_{emphasis_field}" if emphasis_field else None
        if column and all(column in t for t in kind_tables.values()):
            plot_separation_auc(kind_tables, column, ax=row[2])
        prefix = f"{kind} vs clean: " if named else ""
        name = "p" if field in ("p", "eval_p") else field
        row[0].set_title(f"{prefix}ROC of {name} (clean is positive)")
        row[1].set_title(f"{prefix}separation by {name}, per epoch")
        row[2].set_title(f"{prefix}separation by the loss's emphasis, per epoch")
        for ax in row[1:]:
            ax.set_ylim(0, 1)
    return fig


def plot_weight_share(results: dict, group: str = "mislabelled", *, ax=None):
    """Per epoch, the share of all the weight that went to one group, one line per run (coloured by its loss).

    A dotted line per run marks the group's share of the training set, what
    uniform weights would give: a line above it says the loss pushes that
    group harder than the average example.  Data:
    :func:`grlib.views.weight_shares`.  Runs without the group (or without
    the ``weight`` record) are left out; ValueError when none is left.

    Returns
    -------
    Axes
        Lines ``gid="share:<label>"`` and ``gid="population:<label>"``, y in [0, 1].
    """
    from .views import group_masks, weight_shares

    ax = _new_ax(ax)
    drawn = 0
    for label, res in results.items():
        masks = dict(group_masks(res))
        if group not in masks or "weight" not in res.records:
            continue
        share = weight_shares(res)[group]
        colour = METHOD_COLORS.get(str((res.config or {}).get("loss", "")), "0.3")
        (line,) = ax.plot(share.index, share.to_numpy(), color=colour, label=label)
        line.set_gid(f"share:{label}")
        ref = ax.axhline(float(np.mean(masks[group])), color=colour, ls=":", lw=1)
        ref.set_gid(f"population:{label}")
        drawn += 1
    if not drawn:
        raise ValueError(f"no run has examples of group {group!r} and a 'weight' record")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"share of weight on {GROUP_LABELS.get(group, group)}")
    ax.set_ylim(0, 1)
    ax.legend()
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
