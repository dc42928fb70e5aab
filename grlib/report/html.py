"""The report page: ``index.html`` (offline: inline CSS and a few lines of JS, relative links) and ``runs.csv``.

The numbers come from :mod:`grlib.report.stats`, the figures from
:mod:`grlib.report.plots`; this module only lays them out (jinja2 template
``templates/report.html.j2``).  Sections of ``index.html``:

1. **Overview**: the counts (runs, executed now, cached, failed, damaged),
   grlib's version, the time it took and, for a fresh sweep, the ratio of the
   wall time to the training time alone; failed and damaged runs listed first.
2. **Findings**, one per setting (grid point): a plain-words paragraph (which
   method ends highest, by how much, GR against CE, when CE fits half of the
   mislabelled examples) and a table of every method variant: final and best
   test accuracy, the drop from best to final, the mislabelled examples fitted
   at the end, the epoch by which half of them are fitted, training seconds.
   Cells are the mean ± the half-width of the 95% t-interval over seeds; a
   cell is bold only when the 95% interval of its paired (same-seed)
   difference to the runner-up excludes zero.
3. **Curves**: learning and memorisation curves per setting (mean and 95%
   band over seeds, fixed 0-1 axes).
4. **Across settings**: the same metrics as tables with one column per
   setting, the figures against the noise rate, and the best variant of each
   method with several variants.
5. **Runs**: every run with its parameters, status, numbers and links to its
   executed notebook (rendered HTML and ``.ipynb``), metrics and history.
6. **Spec**: the YAML as given and how it expanded.

Every table sorts by a click on its header (inline JS, no CDN).  The executed
notebooks are rendered with nbconvert's ``lab`` template minus its CDN scripts
(require.js, MathJax, mermaid, widget manager); its CSS is inlined, images are
embedded, so every page works offline.
"""
from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_text
from . import stats

__all__ = ["build_report", "render_notebook_html", "external_urls", "Cell", "Row", "Table", "setting_table",
           "pivot_table", "delay_pivot", "runs_table", "best_variants_table", "table_markdown"]

_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""

_TEMPLATES = Path(__file__).resolve().parent / "templates"


# -- executed notebooks -> HTML -----------------------------------------------------------
_EXPORTER = None


def _exporter():
    global _EXPORTER
    if _EXPORTER is None:
        from jinja2 import DictLoader
        from nbconvert import HTMLExporter

        _EXPORTER = HTMLExporter(template_name="lab",
                                 extra_loaders=[DictLoader({"grlib_offline.html.j2": _OFFLINE_TEMPLATE})],
                                 template_file="grlib_offline.html.j2", embed_images=True)
    return _EXPORTER


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
@dataclass
class Cell:
    """One table cell: text (escaped by the template), the value it sorts by, and how it looks."""

    text: str
    sort: object = None          # number or text the column sorts by (default: the text); "" sorts last
    bold: bool = False
    cls: str = ""
    href: str | None = None
    title: str | None = None
    header: bool = False         # a row header (<th>)
    links: list = field(default_factory=list)  # [(text, href)] after the text


@dataclass
class Row:
    cells: list
    id: str | None = None
    cls: str = ""


@dataclass
class Table:
    """Columns (header texts) and rows (:class:`Row`, or plain lists of cells); sortable on the page."""

    columns: list
    rows: list
    cls: str = "summary"

    def __post_init__(self):
        self.rows = [r if isinstance(r, Row) else Row(list(r)) for r in self.rows]


def _sort_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return "" if not math.isfinite(float(v)) else repr(float(v))
    return str(v)


def _stat_cell(row, *, pct: bool = True, digits: int = 1, lower_better: bool = False) -> Cell:
    n, failed = int(row["n"]), int(row["n_failed"])
    if row["n_ok"] == 0:
        return Cell(f"failed ({failed} of {n})" if failed else "–", sort="", cls="fail" if failed else "")
    text = stats.fmt_interval(row["mean"], row["half"], pct=pct, digits=digits)
    if failed:
        text += f" ({failed} of {n} failed)"
    title = None
    lead = row.get("lead")
    if lead is not None and isinstance(lead, stats.Interval) and lead.n >= 2:
        scale = 100 if pct else 1
        word = "below" if lower_better else "ahead of"
        title = (f"{scale * lead.mean:.{digits}f} {word} the runner-up; paired 95% interval "
                 f"{scale * lead.low:.{digits}f} to {scale * lead.high:.{digits}f} over {lead.n} seeds")
    return Cell(text, sort=row["mean"], bold=bool(row["bold"]), cls="fail" if failed else "", title=title)


def _variant_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["variant"]))


def setting_table(data: stats.ReportData, point: dict) -> Table:
    """One setting's methods: final, best, drop, memorisation at the end and its delay, training seconds."""
    df = data.at(point)
    cols = {m: stats.cell_stats(df, m, ["variant"], [], lower_is_better=(m == "noisy_fit")).set_index("variant")
            for m in ("final_acc", "best_acc", "noisy_fit", "train_seconds")}
    drop = df.assign(_drop=df["best_acc"] - df["final_acc"])
    drop_st = stats.cell_stats(drop, "_drop", ["variant"], [], lower_is_better=True).set_index("variant")
    epochs = int(df["epochs"].max()) if "epochs" in df and df["epochs"].notna().any() else None
    rows = []
    for v in _variant_order(df):
        g = df[(df["variant"] == v) & (df["status"] == "ok")]
        delays = g["mem_delay"].tolist()
        info = stats.group_delay(delays)
        delay = stats.delay_text(delays, epochs)
        delay_sort = info["interval"].mean if info["reached"] else (1e9 if info["n"] else "")
        drop_row = drop_st.loc[v].copy()
        drop_row["bold"] = False
        rows.append([Cell(v, header=True), _stat_cell(cols["final_acc"].loc[v]), _stat_cell(cols["best_acc"].loc[v]),
                     _stat_cell(drop_row), _stat_cell(cols["noisy_fit"].loc[v], lower_better=True),
                     Cell(delay, sort=delay_sort),
                     _stat_cell(_no_bold(cols["train_seconds"].loc[v], interval=False), pct=False, digits=1),
                     Cell(f"{int(cols['final_acc'].loc[v]['n_ok'])} of {int(cols['final_acc'].loc[v]['n'])}",
                          sort=int(cols["final_acc"].loc[v]["n_ok"]))])
    columns = ["method", "final test acc (%)", "best test acc (%)", "best − final (points)",
               "mislabelled fitted at the end (%)", "half of them fitted by epoch", "training (s, mean)", "runs ok"]
    return Table(columns, rows, cls="summary setting")


def _no_bold(row, *, interval: bool = True):
    row = row.copy()
    row["bold"] = False
    row["lead"] = None
    if not interval:  # e.g. training seconds: a cost to read, not a finding to test
        row["half"] = math.nan
    return row


def _setting_label(point: dict, base: dict) -> str:
    text = stats.describe_point(point, base)
    return text[0].upper() + text[1:] if text else "all runs"


def pivot_table(data: stats.ReportData, metric: str, *, pct: bool = True, lower_better: bool = False) -> Table:
    """Method variants (rows) x settings (columns) of one metric: mean ± 95% interval, bold per column."""
    df = data.runs
    st = stats.cell_stats(df, metric, data.keys, data.axes, lower_is_better=lower_better)
    settings = data.settings
    rows = []
    keys = list(dict.fromkeys(tuple(stats._key(x) for x in r) for r in df[data.keys].itertuples(index=False)))
    for key in keys:
        sel = np.ones(len(st), bool)
        for k, v in zip(data.keys, key):
            sel &= np.array([stats._key(x) == v for x in st[k]])
        part = st[sel]
        row = [Cell(" · ".join(map(str, key)), header=True)]
        for point in settings:
            m = np.ones(len(part), bool)
            for a, v in point.items():
                m &= np.array([stats._key(x) == stats._key(v) for x in part[a]])
            row.append(_stat_cell(part[m].iloc[0], pct=pct, lower_better=lower_better) if m.any() else Cell("–", ""))
        rows.append(row)
    columns = [" · ".join(data.keys).replace("variant", "method")] + [_setting_label(p, data.base) for p in settings]
    return Table(columns, rows)


def delay_pivot(data: stats.ReportData) -> Table:
    df = data.runs
    rows = []
    for v in _variant_order(df):
        row = [Cell(v, header=True)]
        for point in data.settings:
            g = data.at(point)
            g = g[(g["variant"] == v) & (g["status"] == "ok")]
            epochs = int(g["epochs"].max()) if "epochs" in g and g["epochs"].notna().any() else None
            info = stats.group_delay(g["mem_delay"].tolist())
            row.append(Cell(stats.delay_text(g["mem_delay"].tolist(), epochs),
                            sort=info["interval"].mean if info["reached"] else (1e9 if info["n"] else "")))
        rows.append(row)
    return Table(["method"] + [_setting_label(p, data.base) for p in data.settings], rows)


def best_variants_table(data: stats.ReportData) -> Table | None:
    """For each method with several variants and each setting: the variant with the highest mean final accuracy."""
    df = data.runs
    multi = [m for m, g in df.groupby("method", sort=False) if g["variant"].nunique() > 1]
    if not multi:
        return None
    rows = []
    for method in multi:
        for point in data.settings:
            sub = data.at(point)
            sub = sub[sub["method"] == method]
            row = [Cell(method, header=True), Cell(_setting_label(point, data.base))]
            for metric in ("final_acc", "best_acc"):
                st = stats.cell_stats(sub, metric, ["variant"], [])
                st = st[st["n_ok"] > 0] if not st.empty else st
                if st.empty:
                    row += [Cell("all failed", sort="", cls="fail"), Cell("–", sort="")]
                    continue
                top = st.loc[st["mean"].idxmax()]
                row += [Cell(str(top["variant"])), Cell(stats.fmt_interval(top["mean"], top["half"]), sort=top["mean"])]
            rows.append(row)
    return Table(["method", "setting", "best variant by final acc", "its final acc (%)",
                  "best variant by best acc", "its best acc (%)"], rows, cls="summary best")


def runs_table(data: stats.ReportData, spec) -> Table:
    df = data.runs
    axes = spec.grid_axes
    columns = ["#", "run (rendered notebook)", "method", *axes, "seed", "status", "final acc (%)", "best acc (%)",
               "mislabelled fitted (%)", "half fitted by epoch", "lr", "training (s)", "kernel (s)", "files", "error"]
    rows = []
    for i, row in enumerate(df.to_dict("records"), 1):
        files = row.get("_files") or {}
        status = row["status"]
        link = f"runs/{files['html']}" if "html" in files else None
        st_text = status + (" (cached)" if row["cached"] and status == "ok" else "")
        links = [(t, f"runs/{files[k]}") for k, t in (("notebook", "ipynb"), ("metrics", "metrics"),
                                                      ("history", "history"), ("figures", "figures")) if k in files]
        delay = row.get("mem_delay")
        delay_text = ("–" if delay is None or (isinstance(delay, float) and math.isnan(delay))
                      else "not reached" if math.isinf(delay) else f"{delay:.0f}")
        pct = lambda k: Cell(stats.fmt_pct(row.get(k)), sort=row.get(k))  # noqa: E731
        num = lambda k, d: Cell("–" if _missing(row.get(k)) else f"{float(row[k]):.{d}f}",  # noqa: E731
                                sort=row.get(k))
        cells = [Cell(str(i), sort=i), Cell(row["run_id"], href=link, sort=row["run_id"]), Cell(row["variant"])]
        cells += [Cell(_fmt(row.get(a)), sort=row.get(a)) for a in axes]
        cells += [Cell(_fmt(row.get("seed")), sort=row.get("seed")),
                  Cell(st_text, cls="ok" if status == "ok" else "fail"),
                  pct("final_acc"), pct("best_acc"), pct("noisy_fit"),
                  Cell(delay_text, sort=(1e9 if delay_text == "not reached" else delay)),
                  Cell("–" if _missing(row.get("lr")) else f"{float(row['lr']):g}", sort=row.get("lr")),
                  num("train_seconds", 1), num("duration_s", 1),
                  Cell("", links=links, sort=""), Cell(str(row.get("error") or "")[:600], cls="err fail")]
        rows.append(Row(cells, id=f"run-{i}", cls="failed" if status != "ok" else ""))
    return Table(columns, rows, cls="runs")


def table_markdown(table: Table) -> str:
    """A table as GitHub markdown (bold cells as **x**; links and sorting dropped)."""
    def text(c: Cell) -> str:
        t = str(c.text).replace("|", "\\|")
        return f"**{t}**" if c.bold else t

    lines = ["| " + " | ".join(str(c).replace("|", "\\|") for c in table.columns) + " |",
             "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(table.columns))) + "|"]
    lines += ["| " + " | ".join(text(c) for c in row.cells) + " |" for row in table.rows]
    return "\n".join(lines)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "–" if v is None else str(v)


# -- the page ---------------------------------------------------------------------------------------
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["sortkey"] = _sort_value
    return env


def _timing(data: stats.ReportData, context: dict) -> dict:
    """This invocation's times: wall, runs phase, the executed runs' training seconds and the ratio."""
    df = data.runs
    executed = df[~df["cached"].astype(bool)]
    train = pd.to_numeric(executed.get("train_seconds"), errors="coerce").sum() if len(executed) else 0.0
    workers = int(context.get("workers") or 1)
    runs_s = context.get("runs_s")
    ratio = (context.get("elapsed_s", math.nan) / (train / workers)) if train > 0 and not context.get("scheduler") \
        else None
    return {"executed": len(executed), "train_s": float(train), "ratio": ratio, "runs_s": runs_s,
            "total_train_s": float(pd.to_numeric(df.get("train_seconds"), errors="coerce").sum()),
            "kernel_s": float(pd.to_numeric(df["duration_s"], errors="coerce").sum())}


def build_report(spec, report_dir, runs, records, *, context: dict | None = None) -> Path:
    """Write ``runs.csv``, the figures and ``index.html`` into ``report_dir``; return the index path."""
    from .plots import make_figures

    report_dir = Path(report_dir)
    context = {"grlib": "?", "python": platform.python_version(), "workers": 1, "elapsed_s": math.nan,
               "runs_s": None, "kernels": 0, "forced": False, "scheduler": None, **(context or {})}
    data = stats.collect(spec, runs, records, report_dir)
    data.runs["_files"] = [rec.get("files", {}) for rec in records]
    csv = data.runs.drop(columns=["_files"])
    atomic_write_text(report_dir / "runs.csv", csv.to_csv(index=False))

    df = data.runs
    figures = make_figures(data, report_dir / "figures")
    curves = {f["setting"]: f for f in figures if f["section"] == "curves"}
    findings = []
    for point in data.settings:
        label = _setting_label(point, data.base)
        where = stats.describe_point(point, data.base)
        findings.append({"title": label, "anchor": "setting-" + "-".join(str(v) for v in point.values()),
                         "paragraph": stats.setting_summary(data, point), "table": setting_table(data, point),
                         "figure": curves.get(where)})
    across = [("Final test accuracy (%, after the last epoch)", pivot_table(data, "final_acc")),
              ("Best test accuracy (%, highest over the epochs)", pivot_table(data, "best_acc"))]
    if df["noisy_fit"].notna().any():
        across.append(("Mislabelled training examples fitted at the end (%, lower: less memorisation)",
                       pivot_table(data, "noisy_fit", lower_better=True)))
        across.append(("Epoch by which half of the mislabelled examples are fitted", delay_pivot(data)))
    if "auc_p" in df and pd.to_numeric(df["auc_p"], errors="coerce").notna().any():
        across.append(("ROC AUC of p, clean vs mislabelled (%, higher: better separation)", pivot_table(data, "auc_p")))
    seeds = f"{len(spec.seeds)} seed(s): {', '.join(map(str, spec.seeds))}" if spec.seeds else "no seeds"
    npoints = len(df.drop_duplicates(subset=spec.grid_axes)) if spec.grid_axes else 1
    shape = [f"{len(spec.notebooks)} notebook(s) ({', '.join(nb.name for nb in spec.notebooks)})",
             f"{df['variant'].nunique()} method variant(s)", f"{npoints} grid point(s)", seeds]
    page = _environment().get_template("report.html.j2").render(
        spec=spec, source=spec.source.name if spec.source else "(a dict)", shape=" × ".join(shape),
        n=len(df), n_ok=int((df["status"] == "ok").sum()), n_failed=int((df["status"] == "failed").sum()),
        n_damaged=int((df["status"] == "damaged").sum()), n_cached=int(df["cached"].sum()),
        bad=[{"index": i + 1, "run_id": r["run_id"], "status": r["status"], "error": str(r["error"])[:300]}
             for i, r in enumerate(df.drop(columns=["_files"]).to_dict("records")) if r["status"] != "ok"],
        context=context, timing=_timing(data, context), findings=findings, across=across,
        axis_figures=[f for f in figures if f["section"] == "axis"], best=best_variants_table(data),
        runs=runs_table(data, spec), seeds=seeds, confidence=int(round(100 * stats.CONFIDENCE)),
        last_finished=str(df["finished"].dropna().max()) if df["finished"].notna().any() else "–")
    return atomic_write_text(report_dir / "index.html", page)
