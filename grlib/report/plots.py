"""The report's figures, drawn from :mod:`grlib.report.stats` (PNG and PDF, fixed 0-1 axes).

* ``curves__<setting>``: per setting, the learning curve (test accuracy per
  epoch) and the memorisation curve (share of mislabelled training examples
  fitted to their wrong label) of every method variant: the mean over seeds
  with its 95% t-interval as a band, on fixed 0-1 axes so that small
  differences do not look large.
* ``accuracy_vs_<axis>`` / ``memorisation_vs_<axis>``: final and best test
  accuracy, and memorisation and separation at the end, against the grid's
  numeric axis (the noise rate), with 95% intervals.

A figure is drawn again only when the numbers it shows changed (a digest of
them is kept in ``figures/.digests.json``), so a cached rerun of a report
does not pay for matplotlib.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import stats

__all__ = ["make_figures", "FigurePlan", "setting_slug"]

_LABELS = {"final_acc": "final test accuracy", "best_acc": "best test accuracy",
           "noisy_fit": "mislabelled examples fitted", "auc_p": "AUC of p (clean vs mislabelled)",
           "test_acc": "test accuracy", "val_acc": "validation accuracy (noisy labels)"}

_VERSION = "2"  # bump when the drawing code changes, so cached figures are redrawn


@dataclass
class FigurePlan:
    """A figure to have on disk: its name, caption, the numbers it shows (for the digest) and how to draw it."""

    name: str
    caption: str
    payload: str
    draw: Callable  # () -> matplotlib Figure
    section: str = "curves"
    setting: str = ""


def setting_slug(point: dict) -> str:
    """A file-name part for a setting, e.g. ``augment-True__noise_rate-0.4``."""
    parts = [f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}" for k, v in point.items()]
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", "__".join(parts)) or "all"


def _styles(df: pd.DataFrame) -> dict:
    """variant -> (colour, linestyle, marker): the method's house colour, shaded per variant."""
    from ..figures import METHOD_COLORS

    out = {}
    dashes, markers = ["-", "--", "-.", ":"], "osD^v<>"
    for method, g in df.groupby("method", sort=False):
        variants = list(dict.fromkeys(g["variant"]))
        loss = str(g["loss"].dropna().iloc[0]) if "loss" in g and g["loss"].notna().any() else str(method)
        base = np.array(_rgb(METHOD_COLORS.get(loss.lower(), "#555555")))
        for i, v in enumerate(variants):
            a = 1.0 if len(variants) == 1 else 0.45 + 0.55 * i / (len(variants) - 1)
            out[v] = (tuple(a * base + (1 - a)), dashes[i % len(dashes)], markers[i % len(markers)])
    return out


def _rgb(hex_colour: str) -> tuple:
    h = hex_colour.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))


def _curve_plans(data: stats.ReportData) -> list[FigurePlan]:
    plans = []
    df = data.runs
    styles = _styles(df)
    for point in data.settings:
        sub = data.at(point)
        ok = sub[(sub["status"] == "ok") & sub["run_id"].isin(list(data.histories))]
        if ok.empty:
            continue
        bands = {}
        for variant, g in ok.groupby("variant", sort=False):
            hs = [data.histories[r] for r in g["run_id"]]
            bands[variant] = {f: stats.curve_band(hs, f) for f in ("test_acc", "noisy_fit")}
        has_noise = any(b["noisy_fit"]["mean"].notna().any() for b in bands.values() if not b["noisy_fit"].empty)
        where = stats.describe_point(point, data.base)
        payload = json.dumps({"v": _VERSION, "where": where, "styles": {k: list(map(str, v)) for k, v in styles.items()},
                              "bands": {v: {f: b.round(5).to_dict("list") for f, b in fb.items()}
                                        for v, fb in bands.items()}}, sort_keys=True, default=str)

        last_epoch = max((int(b["test_acc"]["epoch"].max()) for b in bands.values() if not b["test_acc"].empty),
                         default=1)

        def draw(bands=bands, where=where, has_noise=has_noise, last_epoch=last_epoch):
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator

            fig = Figure(figsize=(11.5, 3.9), layout="constrained")
            axes = fig.subplots(1, 2)
            for ax, field, title in ((axes[0], "test_acc", "learning curve: test accuracy"),
                                     (axes[1], "noisy_fit", "memorisation: mislabelled examples fitted")):
                for variant, fb in bands.items():
                    b = fb[field]
                    if b.empty or not b["mean"].notna().any():
                        continue
                    colour, ls, _ = styles.get(variant, ((0.33, 0.33, 0.33), "-", "o"))
                    ax.plot(b["epoch"], b["mean"], color=colour, ls=ls, lw=1.8, label=variant)
                    ax.fill_between(b["epoch"], b["low"], b["high"], color=colour, alpha=0.18, lw=0)
                ax.set_ylim(0, 1)
                ax.set_xlim(1, max(2, last_epoch))
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("epoch")
                ax.set_ylabel(_LABELS[field])
                ax.set_title(title)
                if field == "noisy_fit":
                    ax.axhline(0.5, color="#999999", lw=0.8, ls=":")
                    if not has_noise:
                        ax.text(0.5, 0.5, "no mislabelled examples", ha="center", va="center",
                                transform=ax.transAxes, color="#777777")
            handles, names = axes[0].get_legend_handles_labels()
            if handles:
                fig.legend(handles, names, loc="outside right center", title="method")
            fig.suptitle(where[0].upper() + where[1:])
            return fig

        n_seeds = int(ok.groupby("variant")["seed"].nunique().max())
        caption = (f"{where[0].upper() + where[1:]}: test accuracy (left) and the share of mislabelled training "
                   f"examples fitted to their wrong label (right) per epoch; lines: mean over {n_seeds} seed(s), "
                   f"bands: 95% t-interval over seeds; dotted line: half of the mislabelled examples fitted.")
        plans.append(FigurePlan(name=f"curves__{setting_slug(point)}", caption=caption, payload=payload, draw=draw,
                                section="curves", setting=where))
    return plans


def _x_axis(df: pd.DataFrame, axes: list[str]) -> str | None:
    """The numeric grid axis to draw against (the noise rate first); None with fewer than 3 values (the tables
    say the same)."""
    numeric = [a for a in axes if a in df and not any(isinstance(v, (bool, np.bool_)) for v in df[a])
               and pd.to_numeric(df[a], errors="coerce").notna().all()
               and pd.to_numeric(df[a], errors="coerce").nunique() >= 3]
    if "noise_rate" in numeric:
        return "noise_rate"
    return numeric[0] if numeric else None


def _axis_plans(data: stats.ReportData) -> list[FigurePlan]:
    df = data.runs
    x = _x_axis(df, data.axes)
    if x is None:
        return []
    others = [a for a in data.axes if a != x]
    styles = _styles(df)
    panels = [("accuracy", ["final_acc", "best_acc"],
               "Test accuracy against {x}: final (after the last epoch, left) and best (highest over the epochs, "
               "right); mean and 95% t-interval over seeds"),
              ("memorisation", ["noisy_fit", "auc_p"],
               "Memorisation and separation against {x}: mislabelled training examples fitted to their wrong label "
               "at the end (left, lower is better) and the ROC AUC of p separating clean from mislabelled examples "
               "(right, higher is better); mean and 95% t-interval over seeds")]
    plans = []
    combos = [{}] if not others else [dict(zip(others, k)) for k in
                                      dict.fromkeys(tuple(r) for r in df[others].itertuples(index=False))]
    for combo in combos:
        sub = df
        for a, v in combo.items():
            sub = sub[[stats._key(u) == stats._key(v) for u in sub[a]]]
        where = stats.describe_point(combo, data.base) if combo else ""
        for stem, metrics, caption in panels:
            metrics = [m for m in metrics if m in sub and pd.to_numeric(sub[m], errors="coerce").notna().any()]
            if not metrics:
                continue
            series = {}
            for metric in metrics:
                st = stats.cell_stats(sub, metric, ["variant"], [x])
                st = st[np.isfinite(st["mean"])]
                series[metric] = {v: g[[x, "mean", "half"]].astype(float).sort_values(x).round(5).to_dict("list")
                                  for v, g in st.groupby("variant", sort=False)}
            payload = json.dumps({"v": _VERSION, "x": x, "where": where, "series": series}, sort_keys=True,
                                 default=str)
            xticks = sorted(pd.to_numeric(sub[x]).unique().tolist())

            def draw(series=series, where=where, xticks=xticks, stem=stem):
                from matplotlib.figure import Figure

                fig = Figure(figsize=(5.0 * len(series) + 2.2, 3.7), layout="constrained")
                axs = np.atleast_1d(fig.subplots(1, len(series)))
                for ax, (metric, by_variant) in zip(axs, series.items()):
                    for variant, s in by_variant.items():
                        colour, ls, mk = styles.get(variant, ((0.33, 0.33, 0.33), "-", "o"))
                        yerr = np.nan_to_num(np.asarray(s["half"], float))
                        ax.errorbar(s[x], s["mean"], yerr=yerr, color=colour, ls=ls, marker=mk, capsize=3,
                                    label=variant)
                    ax.set_ylim(0, 1)
                    ax.set_xticks(xticks)
                    ax.set_xlabel(x)
                    ax.set_ylabel(_LABELS.get(metric, metric))
                    ax.set_title(_LABELS.get(metric, metric))
                handles, names = axs[0].get_legend_handles_labels()
                if handles:
                    fig.legend(handles, names, loc="outside right center", title="method")
                if where:
                    fig.suptitle(where[0].upper() + where[1:])
                return fig

            name = f"{stem}_vs_{x}" + ("__" + setting_slug(combo) if combo else "")
            plans.append(FigurePlan(name=name, caption=caption.format(x=x) + (f" ({where})" if where else ""),
                                    payload=payload, draw=draw, section="axis", setting=where))
    return plans


def make_figures(data: stats.ReportData, figures_dir, *, prefix: str = "", sections=("curves", "axis")) -> list[dict]:
    """Draw (or keep, when unchanged) the report's figures; ``[{name, caption, section, setting, png, pdf}]``.

    ``prefix`` starts every file name (for a folder shared with other figures);
    ``sections``: ``curves`` (per setting) and/or ``axis`` (against the noise rate).
    """
    figures_dir = Path(figures_dir)
    digests_path = figures_dir / f".{prefix}digests.json"
    try:
        old = json.loads(digests_path.read_text())
        old = old if isinstance(old, dict) else {}
    except (OSError, ValueError):
        old = {}
    plans = (_curve_plans(data) if "curves" in sections else []) + (_axis_plans(data) if "axis" in sections else [])
    new, out = {}, []
    for plan in plans:
        plan.name = prefix + plan.name
        digest = hashlib.sha256(plan.payload.encode()).hexdigest()
        files = [figures_dir / f"{plan.name}.{ext}" for ext in ("png", "pdf")]
        if old.get(plan.name) != digest or not all(f.is_file() for f in files):
            import matplotlib as mpl

            from ..figures import save_figure, use_style

            with mpl.rc_context():
                use_style()
                save_figure(plan.draw(), plan.name, figures_dir)
        new[plan.name] = digest
        out.append({"name": plan.name, "caption": plan.caption, "section": plan.section, "setting": plan.setting,
                    "png": f"{figures_dir.name}/{plan.name}.png", "pdf": f"{figures_dir.name}/{plan.name}.pdf"})
    for name in set(old) - set(new):  # figures this report drew before and no longer shows
        for ext in ("png", "pdf"):
            (figures_dir / f"{name}.{ext}").unlink(missing_ok=True)
    if new != old:
        from ..io import atomic_write_json

        atomic_write_json(digests_path, new)
    return out
