"""The tuner's two views, drawn on a matplotlib Figure it is given (no pyplot state, no display)."""
from __future__ import annotations

import io

import numpy as np

from ..results import RunResult
from .compute import BatchWeights, CurveData
from .settings import TUNER_LOSSES

__all__ = ["new_figure", "png_bytes", "draw_emphasis", "draw_runs"]


def new_figure(size):
    """A constrained-layout Figure outside pyplot (safe to make from widget callbacks)."""
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def png_bytes(fig, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (for an ``ipywidgets.Image``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def draw_emphasis(fig, curve: CurveData, weights: BatchWeights | None = None):
    """Left: the selected loss's emphasis density (thick, mode marked) over the baselines (dashed), with
    the batch's examples as a rug on the p axis; right: the batch's weights (weight x batch size, 1 = the
    batch average), clean vs mislabelled, counts per bin.  Returns the two axes."""
    from ..plotting import method_color, method_label, plot_emphasis_curves, plot_weight_histogram

    ax_c, ax_w = fig.subplots(1, 2, width_ratios=[3, 2])
    sel = curve.selected
    baselines = [(n, curve.params[n]) for n in TUNER_LOSSES if n != sel]
    plot_emphasis_curves(ax_c, methods=baselines, p=curve.p, normalise="p", mark_modes=False, lw=1.2, ls="--",
                         alpha=0.75)
    plot_emphasis_curves(ax_c, methods=[(sel, curve.params[sel])], p=curve.p, normalise="p", mark_modes=True,
                         lw=2.8)
    colour = method_color(sel)
    label = method_label(sel, curve.params[sel])
    if not curve.flat:
        y = float(np.interp(curve.mode, curve.p, curve.values))
        ax_c.plot([curve.mode], [y], "o", color=colour, ms=8, clip_on=False, label="_mode marker")
    if weights is not None:
        trans = ax_c.get_xaxis_transform()
        for group, mask, yy in (("clean", ~weights.is_noisy, 0.025), ("noisy", weights.is_noisy, 0.07)):
            if mask.any():
                name = "clean" if group == "clean" else "mislabelled"
                ax_c.plot(weights.p[mask], np.full(int(mask.sum()), yy), "|", transform=trans, ms=9, alpha=0.5,
                          color=method_color(group), label=f"batch: {name}")
    ax_c.set_title(f"{label}: emphasis over p" + (" (uniform: beta = 0)" if curve.flat else
                                                  f", mode p* = {curve.mode:.3f}"))
    ax_c.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, frameon=False)
    if weights is not None:
        plot_weight_histogram(weights.as_result(), ax=ax_w, bins=30)
        ax_w.set_title(f"fixed batch ({weights.weight.size}): mislabelled get {weights.noisy_weight_share:.0%} "
                       f"of the weight\n(they are {weights.noisy_share:.0%} of the batch)")
    else:
        ax_w.set_axis_off()
    return ax_c, ax_w


def draw_runs(fig, current: RunResult, previous: RunResult | None = None, labels=("current", "previous")):
    """Top: test accuracy and memorisation (``noisy_fit``) per epoch, previous run vs current run;
    bottom: the clean-vs-mislabelled weight histogram (last epoch, weight x batch size on log-spaced
    bins, counts per bin) of each.  Returns the axes [2, 2]."""
    from ..plotting import plot_history, plot_weight_histogram

    axes = fig.subplots(2, 2)
    runs = {}
    if previous is not None:
        runs[labels[1]] = previous
    runs[labels[0]] = current
    plot_history(runs, fields=("test_acc", "noisy_fit"), axes=axes[0])
    axes[0, 0].set_title("test accuracy per epoch")
    axes[0, 1].set_title("memorisation: mislabelled examples fitted")
    for ax, (label, res) in zip(axes[1], [(labels[0], current), (labels[1], previous)]):
        if res is None:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "the previous run shows here\nafter a second training", ha="center",
                    va="center", transform=ax.transAxes, color="0.4")
            continue
        # log-spaced bins: weights span orders of magnitude
        plot_weight_histogram(res, ax=ax, bins=40, log=True)
        ax.set_title(f"{label}: weights at epoch {res.epochs_completed}", fontsize="small")
    return axes
