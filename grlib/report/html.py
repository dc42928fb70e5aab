"""The report: ``index.html`` (offline: inline CSS, relative links) with tables, figures and every run.

Sections of ``index.html``:

1. **Overview**: the counts (runs, executed now, cached, failed), grlib's
   version, the machine and the time it took; failed runs listed first.
2. **Test accuracy**: two tables built with pandas from every run's metrics,
   *final* test accuracy (after the last epoch) and *best* test accuracy (the
   highest seen during training, as the paper's tables report), each as mean
   ± std over seeds, one row per method variant and one column per grid point
   (e.g. noise rate).  The best mean of each column is in bold; a group with
   failed runs says so in the cell, and a group whose runs all failed reads
   "failed".
3. **Best settings per grid point**: for each method with several variants
   (e.g. GR's ``lam``/``beta``), the variant with the highest mean final and
   the highest mean best accuracy at each grid point.
4. **Figures**: accuracy (final and best) against the grid's numeric axis
   (noise rate) per method variant, and memorisation / separation when the
   notebooks report them (``noisy_fit``, ``auc_p``).  Saved as PNG and PDF with
   :func:`grlib.figures.save_figure`.
5. **Runs**: every run with its parameters, status, numbers and links to its
   executed notebook (rendered HTML and ``.ipynb``), metrics and figures.
6. **Spec**: the YAML as given and how it expanded.

The executed notebooks are rendered with nbconvert's ``lab`` template minus
its CDN scripts (require.js, MathJax, mermaid, widget manager); its CSS is
inlined, images are embedded, so every page works offline.  LaTeX in markdown
shows as source.
"""
from __future__ import annotations

import html as _html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_text

__all__ = ["build_report", "render_notebook_html", "runs_frame", "summary_table", "best_variants",
           "external_urls", "METRIC_LABELS", "LOWER_IS_BETTER"]

#: Metrics the report knows how to describe (others in the metrics files still reach runs.csv).
METRIC_LABELS = {
    "final_acc": "final test accuracy (after the last epoch)",
    "best_acc": "best test accuracy (highest over the epochs)",
    "epoch_of_best": "epoch of the best test accuracy",
    "noisy_fit": "mislabelled training examples fitted to their wrong label, at the end (lower: less memorisation)",
    "auc_p": "ROC AUC of p separating clean from mislabelled training examples (higher: better separation)",
    "clean_acc": "accuracy on the clean training examples, at the end",
}

#: Metrics where lower is better (bold marks the lowest mean).
LOWER_IS_BETTER = {"noisy_fit"}

_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


# -- executed notebooks -> HTML -----------------------------------------------------------
def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"grlib_offline.html.j2": _OFFLINE_TEMPLATE})],
                        template_file="grlib_offline.html.j2", embed_images=True)


def render_notebook_html(notebook, output) -> Path:
    """Render an executed notebook to a self-contained HTML page (no external scripts or styles)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    body, _ = _exporter().from_notebook_node(nb, resources={"metadata": {"name": Path(notebook).stem}})
    return atomic_write_text(output, body)


def external_urls(html: str) -> list[str]:
    """URLs a page would *load* (``src=``, ``<link href>``, CSS ``url()``/``@import``) that are not local.

    Plain ``<a href>`` links to the web are allowed (they load nothing).
    """
    import re

    found = re.findall(r"""\bsrc\s*=\s*["']?\s*((?:https?:)?//[^"' >]+)""", html, flags=re.I)
    found += re.findall(r"""<link\b[^>]*\bhref\s*=\s*["']?\s*((?:https?:)?//[^"' >]+)""", html, flags=re.I)
    found += re.findall(r"""url\(\s*["']?((?:https?:)?//[^"')]+)""", html, flags=re.I)
    found += re.findall(r"""@import\s+["']((?:https?:)?//[^"']+)""", html, flags=re.I)
    return sorted(set(found))


# -- tables ------------------------------------------------------------------------------------
def _read_metrics(runs_dir: Path, record: dict) -> dict:
    name = record.get("files", {}).get("metrics")
    if record.get("status") != "ok" or not name:
        return {}
    try:
        data = json.loads((runs_dir / name).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k != "parameters"}


def runs_frame(spec, runs, records, report_dir: Path) -> pd.DataFrame:
    """One row per run: ids, method, variant and grid values, seed, status, error and the metrics."""
    runs_dir = Path(report_dir) / "runs"
    axes = spec.grid_axes
    rows = []
    for run, rec in zip(runs, records):
        err = rec.get("error") or {}
        row = {"run_id": run.run_id, "notebook": run.notebook.name, "method": run.method or run.notebook.name,
               "variant": run.label}
        row.update({f"{k}": v for k, v in run.variant.items()})
        row.update({k: run.parameters.get(k) for k in axes})
        row.update({"seed": run.seed, "status": rec["status"], "cached": bool(rec.get("cached")),
                    "duration_s": rec.get("duration_s"), "finished": rec.get("finished"),
                    "error": f"{err.get('ename')}: {err.get('evalue')}" if err else ""})
        metrics = _read_metrics(runs_dir, rec)
        for k, v in metrics.items():
            if k not in row:
                row[k] = v
        row["_files"] = rec.get("files", {})
        rows.append(row)
    return pd.DataFrame(rows)


def _group_keys(df) -> list[str]:
    """Table rows: the method variant (and the notebook when a spec runs several)."""
    return (["notebook"] if df["notebook"].nunique() > 1 else []) + ["variant"]


def _stats(df: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    d = df.copy()
    d["_ok"] = d["status"] == "ok"
    if metric not in d:
        d[metric] = np.nan
    d["_value"] = pd.to_numeric(d[metric].where(d["_ok"]), errors="coerce")
    g = d.groupby(keys, sort=False, dropna=False)
    return pd.DataFrame({"mean": g["_value"].mean(), "std": g["_value"].std(ddof=1), "n_ok": g["_value"].count(),
                         "n": g.size(), "n_failed": g["_ok"].apply(lambda s: int((~s).sum()))}).reset_index()


def _cell(row, best: bool) -> str:
    n, failed = int(row["n"]), int(row["n_failed"])
    if row["n_ok"] == 0:
        return f'<span class="fail">failed ({failed} of {n})</span>' if failed else "–"
    text = f"{row['mean']:.3f}" + (f" ± {row['std']:.3f}" if not math.isnan(row["std"]) else "")
    if best:
        text = f"<b>{text}</b>"
    if failed:
        text += f' <span class="fail">({failed} of {n} failed)</span>'
    return text


def summary_table(df: pd.DataFrame, metric: str, keys: list[str], axes: list[str]) -> pd.DataFrame:
    """Mean ± std over seeds of ``metric`` (HTML strings): rows ``keys`` (method variant), columns ``axes``.

    Failed runs count in ``n`` but not in the mean; a group with no successful
    run reads "failed".  The best mean of each column is bold (the lowest for
    :data:`LOWER_IS_BETTER` metrics, else the highest).
    """
    st = _stats(df, keys + axes, metric)
    col_keys = axes
    how = "min" if metric in LOWER_IS_BETTER else "max"
    if col_keys:
        best = st.groupby(col_keys, sort=False, dropna=False)["mean"].transform(how)
    else:
        best = pd.Series(st["mean"].agg(how), index=st.index)
    st["cell"] = [_cell(r, bool(np.isfinite(r["mean"]) and r["mean"] == b)) for (_, r), b in zip(st.iterrows(), best)]
    if not col_keys:
        table = st.set_index(keys)[["cell"]].rename(columns={"cell": "all runs"})
    else:
        table = st.set_index(keys + col_keys)["cell"].unstack(col_keys)
        order = list(dict.fromkeys(tuple(r) if len(col_keys) > 1 else r[0]
                                   for r in st[col_keys].itertuples(index=False)))
        table = table.reindex(columns=order)
    rows = list(dict.fromkeys(tuple(r) if len(keys) > 1 else r[0] for r in st[keys].itertuples(index=False)))
    table = table.reindex(rows)
    table.columns.names = list(col_keys) if col_keys else [None]
    table.index.names = keys
    return table.fillna("–")


def best_variants(df: pd.DataFrame, axes: list[str], metrics=("final_acc", "best_acc")) -> pd.DataFrame:
    """For each method with several variants and each grid point: the variant with the highest mean of each metric."""
    rows = []
    multi = [m for m, g in df.groupby("method", sort=False) if g["variant"].nunique() > 1]
    for method in multi:
        sub = df[df["method"] == method]
        points = [()] if not axes else list(dict.fromkeys(tuple(r) for r in sub[axes].itertuples(index=False)))
        for point in points:
            mask = np.ones(len(sub), bool)
            for a, v in zip(axes, point):
                mask &= (sub[a] == v).to_numpy()
            row = dict(zip(axes, point))
            row["method"] = method
            for metric in metrics:
                st = _stats(sub[mask], ["variant"], metric)
                st = st[st["n_ok"] > 0]
                if st.empty:
                    row[f"best by {metric}"] = '<span class="fail">all failed</span>'
                    row[metric] = "–"
                    continue
                top = st.loc[st["mean"].idxmax()]
                row[f"best by {metric}"] = _html.escape(str(top["variant"]))
                row[metric] = f"{top['mean']:.3f}" + (f" ± {top['std']:.3f}" if not math.isnan(top["std"]) else "")
            rows.append(row)
    return pd.DataFrame(rows)


# -- figures -------------------------------------------------------------------------------------
def _x_axis(df: pd.DataFrame, axes: list[str]) -> str | None:
    numeric = [a for a in axes if pd.to_numeric(df[a], errors="coerce").notna().all()]
    if "noise_rate" in numeric:
        return "noise_rate"
    return numeric[0] if numeric else None


def _line_styles(df: pd.DataFrame):
    """variant -> (colour, marker, linestyle): the method's house colour, shaded per variant."""
    from ..plotting import method_color, shades

    styles = {}
    markers, dashes = "osD^v<>", ["-", "--", "-.", ":"]
    for method, g in df.groupby("method", sort=False):
        variants = list(dict.fromkeys(g["variant"]))
        loss = g["loss"].iloc[0] if "loss" in g and isinstance(g["loss"].iloc[0], str) else method
        for i, (v, c) in enumerate(zip(variants, shades(method_color(loss), len(variants)))):
            styles[v] = (c, markers[i % len(markers)], dashes[i % len(dashes)])
    return styles


def make_figures(df: pd.DataFrame, axes: list[str], figures_dir: Path) -> list[dict]:
    """Metric-vs-grid-axis figures (PNG + PDF); returns ``[{name, title, caption, png, pdf}]``."""
    import matplotlib as mpl
    from matplotlib.figure import Figure

    from ..figures import save_figure, use_style
    from ..plotting import FIELD_LABELS

    x = _x_axis(df, axes)
    if x is None:
        return []
    others = [a for a in axes if a != x]
    panels = [("accuracy", ["final_acc", "best_acc"],
               "Test accuracy against {x}: final (after the last epoch, left) and best (highest over the epochs, "
               "right); mean ± std over seeds"),
              ("memorisation", ["noisy_fit", "auc_p"],
               "Memorisation and separation against {x}: mislabelled training examples fitted to their wrong label "
               "at the end (left, lower is better) and the ROC AUC of p separating clean from mislabelled examples "
               "(right, higher is better); mean ± std over seeds")]
    labels = {"final_acc": "final test accuracy", "best_acc": "best test accuracy",
              "noisy_fit": FIELD_LABELS.get("noisy_fit", "noisy_fit"), "auc_p": "AUC of p (clean vs mislabelled)"}
    styles = _line_styles(df)
    groups = [((), df)] if not others else list(df.groupby(others, sort=False, dropna=False))
    out = []
    with mpl.rc_context():
        use_style()
        for key, gdf in groups:
            key = key if isinstance(key, tuple) else (key,)
            suffix = "".join(f"__{a}-{v}" for a, v in zip(others, key))
            where = ", ".join(f"{a}={v}" for a, v in zip(others, key))
            for stem, metrics, caption in panels:
                metrics = [m for m in metrics if m in gdf and pd.to_numeric(gdf[m], errors="coerce").notna().any()]
                if not metrics:
                    continue
                fig = Figure(figsize=(5.2 * len(metrics) + 2.2, 3.8), layout="constrained")
                axs = np.atleast_1d(fig.subplots(1, len(metrics), sharey=stem == "accuracy" and len(metrics) > 1))
                for ax, metric in zip(axs, metrics):
                    ok = gdf[gdf["status"] == "ok"].copy()
                    ok["_x"] = pd.to_numeric(ok[x])
                    ok["_y"] = pd.to_numeric(ok[metric], errors="coerce")
                    for variant, v in ok.groupby("variant", sort=False):
                        st = v.groupby("_x")["_y"].agg(["mean", "std"]).sort_index()
                        c, mk, ls = styles.get(variant, ("#555555", "o", "-"))
                        ax.errorbar(st.index, st["mean"], yerr=st["std"].fillna(0), color=c, marker=mk, ls=ls,
                                    capsize=3, label=variant)
                    ax.set_xticks(sorted(pd.to_numeric(gdf[x]).unique()))
                    ax.set_xlabel(x)
                    ax.set_ylabel(labels.get(metric, metric))
                    ax.set_title(labels.get(metric, metric))
                handles, names = axs[0].get_legend_handles_labels()
                if handles:
                    fig.legend(handles, names, loc="outside right center", title="method")
                if where:
                    fig.suptitle(where)
                name = f"{stem}_vs_{x}{suffix}"
                paths = save_figure(fig, name, figures_dir)
                out.append({"name": name, "caption": caption.format(x=x) + (f" ({where})" if where else ""),
                            **{p.suffix[1:]: f"figures/{p.name}" for p in paths}})
    return out


# -- the page ---------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 1.2em 2em 3em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1.2em; } .muted { color: #666; } .small { font-size: 0.85em; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #d5d5d5; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f4f6; } tbody th { text-align: left; font-weight: 600; }
td.text, th.text { text-align: left; }
table.runs th, table.runs td { text-align: left; white-space: nowrap; }
table.runs td.err { white-space: normal; max-width: 28em; }
tr.failed td { background: #fdecea; } .fail { color: #b3261e; font-weight: 600; }
table.summary td:first-child, table.best td:nth-child(-n+2) { text-align: left; font-weight: 600; }
.ok { color: #1e7d32; } .cached { color: #666; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; min-width: 8em; background: #fafafa; }
.card b { display: block; font-size: 1.6em; } .card.bad { border-color: #e8a29c; background: #fdecea; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; max-width: 60em; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 0.8em; overflow-x: auto; font-size: 0.88em; }
.scroll { overflow-x: auto; max-width: 100%; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; max-width: 60em; }
"""


def _table_html(table: pd.DataFrame, cls: str = "summary") -> str:
    """A summary table as HTML: one header row when the columns are one grid axis."""
    if isinstance(table.columns, pd.MultiIndex):
        return table.to_html(escape=False, classes=cls, border=0, na_rep="–")
    df = table.copy()
    name = table.columns.name
    df.columns = [f"{name} = {_fmt(c)}" if name else str(c) for c in table.columns]
    df = df.reset_index().rename(columns={"variant": "method"})
    df.iloc[:, : table.index.nlevels] = df.iloc[:, : table.index.nlevels].map(lambda v: _html.escape(str(v)))
    return df.to_html(escape=False, classes=cls, border=0, na_rep="–", index=False)


def _runs_table(df: pd.DataFrame, spec) -> str:
    e = _html.escape
    cols = ["#", "run (rendered notebook)", "method", *spec.grid_axes, "seed", "status", "final acc", "best acc",
            "epoch of best", "time (s)", "files"]
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for i, row in enumerate(df.to_dict("records"), 1):
        files = row["_files"]
        link = (f'<a href="runs/{e(files["html"])}">{e(row["run_id"])}</a>' if "html" in files
                else e(row["run_id"]))
        status = row["status"]
        status_html = (f'<span class="fail">failed</span>' if status != "ok"
                       else '<span class="ok">ok</span>' + (' <span class="cached">(cached)</span>'
                                                            if row["cached"] else ""))
        extra = []
        for key, text in (("notebook", "ipynb"), ("metrics", "metrics"), ("figures", "figures")):
            if key in files:
                extra.append(f'<a href="runs/{e(files[key])}">{text}</a>')
        num = lambda k, fmt: (fmt.format(row[k]) if k in row and row[k] is not None
                              and not (isinstance(row[k], float) and math.isnan(row[k])) else "–")
        cells = [str(i), link, e(row["variant"])] + [e(_fmt(row.get(a))) for a in spec.grid_axes] + [
            e(str(row["seed"])), status_html, num("final_acc", "{:.3f}"), num("best_acc", "{:.3f}"),
            num("epoch_of_best", "{:.0f}"), num("duration_s", "{:.1f}"), " · ".join(extra)]
        tr = (f'<tr id="run-{i}" class="{"failed" if status != "ok" else ""}">'
              + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        if status != "ok":
            tr += (f'<tr class="failed"><td></td><td class="err" colspan="{len(cols) - 1}">'
                   f'<span class="fail">{e(str(row["error"])[:600])}</span></td></tr>')
        body.append(tr)
    return (f'<div class="scroll"><table class="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            '</tbody></table></div>')


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "–" if v is None else str(v)


def build_report(spec, report_dir, runs, records, *, context: dict | None = None) -> Path:
    """Write ``runs.csv``, the figures and ``index.html`` into ``report_dir``; return the index path."""
    report_dir = Path(report_dir)
    context = dict(context or {})
    e = _html.escape
    df = runs_frame(spec, runs, records, report_dir)
    df.drop(columns=["_files"]).to_csv(report_dir / "runs.csv", index=False)
    keys = _group_keys(df)
    axes = spec.varying  # table columns: the grid axes that take several values
    n, n_failed = len(df), int((df["status"] != "ok").sum())
    n_cached = int(df["cached"].sum())

    parts = [f"<h1>{e(spec.title)}</h1>"]
    if spec.description:
        parts.append(f"<p>{e(spec.description)}</p>")
    parts.append('<nav><a href="#overview">Overview</a><a href="#accuracy">Test accuracy</a>'
                 '<a href="#best">Best settings</a><a href="#figures">Figures</a><a href="#runs">Runs</a>'
                 '<a href="#spec">Spec</a></nav>')

    # 1. overview
    parts.append('<h2 id="overview">Overview</h2><div class="cards">')
    for label, value, bad in (("runs", n, False), ("ok", n - n_failed, False), ("failed", n_failed, n_failed > 0),
                              ("executed now", n - n_cached, False), ("cached", n_cached, False)):
        parts.append(f'<div class="card{" bad" if bad else ""}"><b>{value}</b>{e(label)}</div>')
    parts.append("</div>")
    where = f"Dask scheduler {context['scheduler']}" if context.get("scheduler") else \
        f"{context.get('workers', 1)} local worker(s)"
    parts.append(f'<p class="muted small">Report <code>{e(spec.name)}</code> · '
                 f'grlib {e(str(context.get("grlib")))} · '
                 f'Python {e(str(context.get("python")))} on {e(str(context.get("host")))} · {e(where)} · '
                 f'this invocation ran {n - n_cached} notebook(s) in {context.get("elapsed_s", float("nan")):.1f} s'
                 f'{" (forced rerun)" if context.get("forced") else ""} · '
                 f'notebook time over all runs {pd.to_numeric(df["duration_s"], errors="coerce").sum():.0f} s · '
                 f'last run finished {e(str(df["finished"].dropna().max() if df["finished"].notna().any() else "–"))}'
                 f'</p>')
    if n_failed:
        items = "".join(f'<li><a href="#run-{i}">{e(r.run_id)}</a>: '
                        f'<span class="fail">{e(str(r.error)[:300])}</span></li>'
                        for i, r in enumerate(df.itertuples(index=False), 1) if r.status != "ok")
        parts.append(f'<div class="note"><b class="fail">{n_failed} run(s) failed.</b> They appear in the tables '
                     f'as failed; their executed notebooks (with the traceback) are linked in <a href="#runs">Runs</a>.'
                     f'<ul>{items}</ul></div>')

    # 2. accuracy tables
    parts.append('<h2 id="accuracy">Test accuracy</h2>')
    parts.append('<p class="note"><b>Final</b> is the test accuracy after the last epoch. <b>Best</b> is the highest '
                 'test accuracy seen during training, as the paper\'s tables report; it is picked on the test set, so '
                 'it is optimistic. Under label noise a memorising loss (CE) ends far below its best. '
                 'Cells: mean ± std over seeds (sample std); bold: the best mean of the column.</p>')
    seeds_note = f"{len(spec.seeds)} seed(s): {', '.join(map(str, spec.seeds))}" if spec.seeds else "no seeds"
    for metric, title in (("final_acc", "Final test accuracy (after the last epoch)"),
                          ("best_acc", "Best test accuracy (highest over the epochs)")):
        parts.append(f"<h3>{e(title)}</h3><p class='muted small'>mean ± std over {e(seeds_note)}</p>")
        parts.append(_table_html(summary_table(df, metric, keys, axes)))
    for metric in ("noisy_fit", "auc_p"):
        if metric in df and pd.to_numeric(df[metric], errors="coerce").notna().any():
            parts.append(f"<h3>{e(METRIC_LABELS[metric][0].upper() + METRIC_LABELS[metric][1:])}</h3>")
            parts.append(_table_html(summary_table(df, metric, keys, axes)))

    # 3. best variants
    parts.append('<h2 id="best">Best settings per grid point</h2>')
    best = best_variants(df, axes)
    if best.empty:
        parts.append('<p class="muted">No method has several variants in this spec.</p>')
    else:
        parts.append("<p>For each method with several variants (e.g. GR's <code>lam</code>/<code>beta</code>): the "
                     "variant with the highest mean final and the highest mean best test accuracy at each grid point "
                     "(selected on the test set: optimistic).</p>")
        parts.append(best.rename(columns=lambda c: c.replace("_", " ")).to_html(escape=False, index=False, border=0,
                                                                               classes="best"))

    # 4. figures
    parts.append('<h2 id="figures">Figures</h2>')
    figs = make_figures(df, axes, report_dir / "figures")
    if not figs:
        parts.append('<p class="muted">No numeric grid axis to plot against.</p>')
    for f in figs:
        parts.append(f'<figure><img src="{e(f["png"])}" alt="{e(f["name"])}"><figcaption>{e(f["caption"])} '
                     f'(<a href="{e(f.get("pdf", f["png"]))}">PDF</a>)</figcaption></figure>')

    # 5. runs
    parts.append('<h2 id="runs">Runs</h2>')
    parts.append("<p class='muted small'>Each run's link opens its executed notebook rendered to HTML (failed ones "
                 "show the traceback); <code>ipynb</code> is the executed notebook itself. All runs, their parameters "
                 "and metrics are also in <a href='runs.csv'>runs.csv</a>.</p>")
    parts.append(_runs_table(df, spec))

    # 6. spec
    parts.append('<h2 id="spec">Spec</h2>')
    shape = [f"{len(spec.notebooks)} notebook(s) ({', '.join(nb.name for nb in spec.notebooks)})",
             f"{df['variant'].nunique()} method variant(s)"]
    npoints = len(df.drop_duplicates(subset=spec.grid_axes)) if spec.grid_axes else 1
    shape.append(f"{npoints} grid point(s)")
    shape.append(seeds_note)
    parts.append(f"<p>{n} runs = {e(' × '.join(shape))}. Source: "
                 f"<code>{e(str(spec.source) if spec.source else '(a dict)')}</code>; a copy is in "
                 f"<a href='spec.yaml'>spec.yaml</a>.</p>")
    parts.append(f"<pre>{e(spec.text)}</pre>")

    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{e(spec.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    return atomic_write_text(report_dir / "index.html", page)
