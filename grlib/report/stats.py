"""The report's numbers, computed in one place: the page, ``runs.csv`` and the benchmarks all read them.

Reading a run's outputs
    :func:`read_outputs` reads a finished run's metrics JSON and history CSV and
    never raises: a damaged file marks the run ``damaged`` with the reason.
One row per run
    :func:`run_table` (the rows of ``runs.csv``): parameters, status, the
    notebook's metrics, and the memorisation delay from the history.
Intervals over seeds
    :func:`t_interval`: the mean with a two-sided 95% Student-t interval
    (``mean ± t_{0.975, n-1} · s / sqrt(n)``); with one seed there is no
    interval.  Runs with the same seed share the label noise and the
    initialisation, so two methods are compared by their *paired* differences
    (:func:`paired_difference`): the t-interval of the per-seed differences.
Emphasis
    :func:`cell_stats` marks a cell ``bold`` only when it is the best of its
    column *and* the 95% interval of its paired difference to the runner-up
    excludes zero; a tie, or a lead inside seed noise, is not bold.
Curves
    :func:`curve_band` gives, per epoch, the mean over seeds with its 95%
    t-interval clipped to [0, 1].
Summary
    :func:`setting_summary` writes the plain-words paragraph of a setting from
    the same numbers.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["HistoryError", "read_history", "read_outputs", "RunOutputs", "memorisation_delay", "Interval",
           "t_interval", "paired_difference", "run_table", "ReportData", "collect", "cell_stats", "curve_band",
           "setting_summary", "describe_point", "METRICS", "HISTORY_FIELDS", "LOWER_IS_BETTER", "fmt_pct",
           "fmt_interval", "delay_text", "group_delay", "CONFIDENCE", "CONFIG_COLUMNS"]

#: Level of every interval in the report.
CONFIDENCE = 0.95

#: Metrics the report knows (name -> description); others in the metrics files still reach runs.csv.
METRICS = {
    "final_acc": "final test accuracy (after the last epoch)",
    "best_acc": "best test accuracy (highest over the epochs; picked on the test set, so optimistic)",
    "epoch_of_best": "epoch of the best test accuracy",
    "noisy_fit": "mislabelled training examples fitted to their wrong label, at the end (lower: less memorisation)",
    "clean_acc": "accuracy on the clean training examples, at the end",
    "auc_p": "ROC AUC of p separating clean from mislabelled training examples (higher: better separation)",
    "val_acc": "final accuracy on the noisy validation split",
    "train_seconds": "seconds of training (learning-rate selection included)",
    "mem_delay": "first epoch at which half of the mislabelled examples are fitted",
}

#: Metrics where lower is better.
LOWER_IS_BETTER = {"noisy_fit", "mem_delay_inv", "train_seconds"}

#: Per-epoch fields of a history CSV the report draws (others are kept).
HISTORY_FIELDS = ("test_acc", "val_acc", "noisy_fit", "clean_acc", "lr")


class HistoryError(ValueError):
    """A history CSV is missing or damaged; the message names the file and the problem."""


# -- reading one run ----------------------------------------------------------------------------
def read_history(path) -> pd.DataFrame:
    """A run's per-epoch history: columns ``epoch`` (1, 2, ...) and numeric fields (NaN where unknown).

    Raises :class:`HistoryError` for a missing, empty, truncated or non-numeric file.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise HistoryError(f"{path.name} is missing") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise HistoryError(f"{path.name} is not a readable CSV: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if "epoch" not in df.columns:
        raise HistoryError(f"{path.name} has no 'epoch' column (columns: {list(df.columns)[:8]})")
    if df.empty:
        raise HistoryError(f"{path.name} has no epochs")
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            raise HistoryError(f"{path.name}: column {col!r} holds non-numbers (e.g. {df[col][bad].iloc[0]!r}); "
                               "the file is damaged")
        df[col] = values
    epochs = df["epoch"].to_numpy()
    if np.isnan(epochs).any() or not np.all(np.diff(epochs) > 0) or epochs[0] < 1:
        raise HistoryError(f"{path.name}: epochs must count up from 1 (got {epochs[:5].tolist()}...); the file is "
                           "damaged")
    return df


def _read_metrics(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} cannot be read: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path.name} is not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a {type(data).__name__}, not a mapping of name: value")
    return data


#: Concrete run settings copied from a metrics file's ``config`` (what ran, presets expanded) into runs.csv.
CONFIG_COLUMNS = ("protocol", "epochs", "batch_size", "optimizer", "schedule", "weight_decay", "batchnorm",
                  "augment", "aug_shift", "aug_flip", "aug_noise", "hidden", "n_train", "val_fraction")


@dataclass
class RunOutputs:
    """What a run left: its metrics (numbers only), its history (or None), what is wrong (or None), and the
    concrete settings it ran with (:data:`CONFIG_COLUMNS` from the metrics' ``config``, when recorded)."""

    metrics: dict
    history: pd.DataFrame | None
    problem: str | None = None
    config: dict = field(default_factory=dict)


def read_outputs(runs_dir, record: dict, *, need_history: bool | None = None) -> RunOutputs:
    """Read a run's metrics JSON and history CSV from its manifest ``record``; never raises.

    A failed run gives empty outputs.  A successful run whose files are
    missing or damaged gives ``problem`` (the report marks the run
    ``damaged``).  ``need_history``: whether a missing history is a problem
    (default: when the manifest lists one).
    """
    runs_dir = Path(runs_dir)
    files = record.get("files") or {}
    if record.get("status") != "ok":
        return RunOutputs({}, None)
    if not isinstance(files, dict) or "metrics" not in files:
        return RunOutputs({}, None, "the manifest lists no metrics file")
    try:
        raw = _read_metrics(runs_dir / str(files["metrics"]))
    except ValueError as exc:
        return RunOutputs({}, None, str(exc))
    metrics = {k: v for k, v in raw.items() if k != "parameters" and (
        v is None or isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool)))}
    for k in ("final_acc", "best_acc"):
        v = metrics.get(k)
        if v is not None and not isinstance(v, str) and not (0.0 <= float(v) <= 1.0):
            return RunOutputs({}, None, f"{files['metrics']}: {k}={v!r} is not an accuracy in [0, 1]; the file is "
                                        "damaged")
    cfg = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    config = {}
    for k in CONFIG_COLUMNS:
        v = cfg.get(k)
        if isinstance(v, list):
            v = " ".join(map(str, v))
        if v is None or isinstance(v, (str, int, float, bool)):
            config[k] = v
    history = None
    if need_history is None:
        need_history = "history" in files
    if "history" in files:
        try:
            history = read_history(runs_dir / str(files["history"]))
        except HistoryError as exc:
            return RunOutputs(metrics, None, str(exc), config)
    elif need_history:
        return RunOutputs(metrics, None, "the run saved no history CSV", config)
    return RunOutputs(metrics, history, None, config)


def memorisation_delay(history: pd.DataFrame | None, level: float = 0.5) -> float:
    """The first epoch at which at least ``level`` of the mislabelled examples are fitted to their wrong label.

    ``inf``: not reached within the run; ``nan``: unknown (no history, or no
    mislabelled examples).
    """
    if history is None or "noisy_fit" not in history:
        return math.nan
    fit = history["noisy_fit"].to_numpy(dtype=float)
    if not np.isfinite(fit).any():
        return math.nan
    hit = np.flatnonzero(fit >= level)
    return float(history["epoch"].iloc[hit[0]]) if hit.size else math.inf


# -- intervals ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with the half-width of its two-sided t-interval (NaN with n < 2)."""

    mean: float
    half: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def excludes_zero(self) -> bool:
        return self.n >= 2 and math.isfinite(self.half) and (self.low > 0 or self.high < 0)


def t_interval(values, level: float = CONFIDENCE) -> Interval:
    """Mean and the half-width of the two-sided Student-t interval at ``level`` (NaNs dropped)."""
    from scipy import stats as _st

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, 1)
    sd = float(x.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
    return Interval(mean, half, n)


def paired_difference(a: pd.Series, b: pd.Series, level: float = CONFIDENCE) -> Interval:
    """``a - b`` paired by index (the seed): the t-interval of the per-seed differences over the shared seeds."""
    a = pd.Series(a, dtype=float).dropna()
    b = pd.Series(b, dtype=float).dropna()
    common = a.index.intersection(b.index)
    return t_interval((a.loc[common] - b.loc[common]).to_numpy(), level)


# -- the runs table -------------------------------------------------------------------------------
def run_table(spec, runs, records, report_dir) -> tuple[pd.DataFrame, dict]:
    """One row per run (``runs.csv``) and ``{run_id: history DataFrame}`` for the runs that have one.

    Columns: run_id, notebook, method, variant, the variant's parameters, the
    grid axes, seed, status (``ok`` | ``failed`` | ``damaged``), cached,
    duration_s, finished, error, the notebook's numeric metrics,
    ``mem_delay`` (first epoch with half of the mislabelled examples fitted;
    ``inf`` not reached) and ``epochs`` (from the history).
    """
    runs_dir = Path(report_dir) / "runs"
    axes = spec.grid_axes
    rows, histories = [], {}
    for run, rec in zip(runs, records):
        err = rec.get("error") or {}
        need_history = "history_path" in run.notebook.parameters
        out = read_outputs(runs_dir, rec, need_history=need_history)
        status = rec.get("status", "failed")
        error = f"{err.get('ename')}: {err.get('evalue')}" if err else ""
        if status == "ok" and out.problem:
            status, error = "damaged", f"damaged output: {out.problem}; run the report again to re-execute it"
        row = {"run_id": run.run_id, "notebook": run.notebook.name, "method": run.method or run.notebook.name,
               "variant": run.label}
        row.update(dict(run.variant))
        row.update({k: run.parameters.get(k) for k in axes})
        row.update({"seed": run.seed, "status": status, "cached": bool(rec.get("cached")),
                    "duration_s": rec.get("duration_s"), "finished": rec.get("finished"), "error": error})
        if status == "ok":
            for k, v in out.metrics.items():
                if k not in row:
                    row[k] = v
            for k, v in out.config.items():  # what ran (presets expanded), beside what the spec said
                if k not in row:
                    row[k] = v
            if out.history is not None:
                histories[run.run_id] = out.history
                row["mem_delay"] = memorisation_delay(out.history)
                row["epochs"] = int(out.history["epoch"].iloc[-1])
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("final_acc", "best_acc", "noisy_fit", "mem_delay", "train_seconds"):
        if col not in df:
            df[col] = np.nan
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df, histories


@dataclass
class ReportData:
    """Everything the page shows: the runs table, the histories, the table keys and the grid axes."""

    runs: pd.DataFrame
    histories: dict
    keys: list[str]      # table rows: the method variant (and the notebook when a spec runs several)
    axes: list[str]      # grid axes that take several values (table columns / settings)
    base: dict

    @property
    def settings(self) -> list[dict]:
        """The grid points (one per distinct combination of ``axes``), in spec order."""
        if not self.axes:
            return [{}]
        seen = dict.fromkeys(tuple(_key(v) for v in r) for r in self.runs[self.axes].itertuples(index=False))
        out = []
        for combo in seen:
            mask = self._mask(dict(zip(self.axes, combo)))
            first = self.runs[mask].iloc[0]
            out.append({a: first[a] for a in self.axes})
        return out

    def _mask(self, point: dict) -> np.ndarray:
        mask = np.ones(len(self.runs), bool)
        for a, v in point.items():
            mask &= np.array([_key(x) == _key(v) for x in self.runs[a]])
        return mask

    def at(self, point: dict) -> pd.DataFrame:
        """The runs of one setting."""
        return self.runs[self._mask(point)]


def _key(v):
    """A hashable, NaN-safe key for grid values (lists, floats)."""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return v


def collect(spec, runs, records, report_dir) -> ReportData:
    df, histories = run_table(spec, runs, records, report_dir)
    keys = (["notebook"] if df["notebook"].nunique() > 1 else []) + ["variant"]
    return ReportData(runs=df, histories=histories, keys=keys, axes=spec.varying, base=dict(spec.base))


# -- table cells --------------------------------------------------------------------------------
def cell_stats(df: pd.DataFrame, metric: str, keys: list[str], axes: list[str], *,
               lower_is_better: bool | None = None, level: float = CONFIDENCE) -> pd.DataFrame:
    """One row per (keys, axes) group: ``mean``, ``half`` (t-interval), ``n_ok``, ``n``, ``n_failed``, ``bold``,
    and ``lead`` (the paired-difference interval to the runner-up, for the best of each column).

    ``bold``: the best mean of its column (lowest for lower-is-better metrics)
    whose paired difference to the runner-up has a 95% interval excluding 0.
    ``n_failed`` counts failed and damaged runs.
    """
    lower = metric in LOWER_IS_BETTER if lower_is_better is None else lower_is_better
    d = df.copy()
    if metric not in d:
        d[metric] = np.nan
    d["_ok"] = d["status"] == "ok"
    d["_value"] = pd.to_numeric(d[metric].where(d["_ok"]), errors="coerce")
    d["_value"] = d["_value"].where(np.isfinite(d["_value"]))
    d["_gkey"] = [tuple(_key(v) for v in r) for r in d[keys + axes].itertuples(index=False)]
    rows = []
    for gkey, g in d.groupby("_gkey", sort=False):
        iv = t_interval(g["_value"], level)
        row = {k: g[k].iloc[0] for k in keys + axes}
        row.update({"mean": iv.mean, "half": iv.half, "n_ok": iv.n, "n": len(g), "n_failed": int((~g["_ok"]).sum()),
                    "bold": False, "lead": None, "_gkey": gkey,
                    "_col": tuple(_key(g[a].iloc[0]) for a in axes)})
        rows.append(row)
    st = pd.DataFrame(rows)
    if st.empty:
        return st
    for _, col in st.groupby("_col", sort=False):
        ranked = col[np.isfinite(col["mean"])].sort_values("mean", ascending=lower)
        if len(ranked) < 2:
            continue
        best, runner = ranked.iloc[0], ranked.iloc[1]
        a = _by_seed(d, best["_gkey"])
        b = _by_seed(d, runner["_gkey"])
        diff = paired_difference(a, b, level) if not lower else paired_difference(b, a, level)
        st.at[best.name, "lead"] = diff
        st.at[best.name, "bold"] = bool(diff.excludes_zero() and diff.mean > 0)
    return st.drop(columns=["_gkey", "_col"])


def _by_seed(d: pd.DataFrame, gkey) -> pd.Series:
    g = d[d["_gkey"] == gkey]
    return pd.Series(g["_value"].to_numpy(), index=g["seed"].to_numpy())


def fmt_pct(x: float, digits: int = 1) -> str:
    """An accuracy-like fraction as percent: 0.9491 -> '94.9'."""
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def fmt_interval(mean: float, half: float, *, pct: bool = True, digits: int = 1) -> str:
    """'94.9 ± 1.0' (percent) or '48 ± 6' (pct=False, digits=0); the ± part only with an interval."""
    if mean is None or not math.isfinite(mean):
        return "–"
    scale = 100 if pct else 1
    text = f"{scale * mean:.{digits}f}"
    if half is not None and math.isfinite(half):
        text += f" ± {scale * half:.{digits}f}"
    return text


# -- memorisation delay over seeds ------------------------------------------------------------------
def group_delay(values) -> dict:
    """Memorisation delays of a group's seeds -> ``{"reached", "n", "interval"}`` (interval over reached seeds)."""
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    reached = v[np.isfinite(v)]
    return {"reached": int(reached.size), "n": int(v.size), "interval": t_interval(reached)}


def delay_text(values, epochs: int | None = None) -> str:
    """'48 ± 6' (every seed reached half), 'not reached' (none did), '2 of 3 seeds: 48' (some did), '–' unknown."""
    g = group_delay(values)
    if g["n"] == 0:
        return "–"
    if g["reached"] == 0:
        return "not reached" + (f" in {epochs} epochs" if epochs else "")
    iv = g["interval"]
    text = fmt_interval(iv.mean, iv.half, pct=False, digits=0)
    if g["reached"] < g["n"]:
        return f"{g['reached']} of {g['n']} seeds: {text}"
    return text


# -- curves -----------------------------------------------------------------------------------------
def curve_band(histories: list[pd.DataFrame], field: str, level: float = CONFIDENCE) -> pd.DataFrame:
    """Per epoch over the given histories (seeds): ``epoch``, ``mean``, ``low``, ``high`` (t-interval clipped
    to [0, 1]; equal to the mean with one seed) and ``n``."""
    from scipy import stats as _st

    frames = [h[["epoch", field]].rename(columns={field: i}).set_index("epoch")
              for i, h in enumerate(histories) if field in h]
    if not frames:
        return pd.DataFrame(columns=["epoch", "mean", "low", "high", "n"])
    wide = pd.concat(frames, axis=1).sort_index()
    n = wide.notna().sum(axis=1)
    mean = wide.mean(axis=1)
    sd = wide.std(axis=1, ddof=1)
    t = pd.Series(np.where(n >= 2, _st.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan), index=wide.index)
    half = (t * sd / np.sqrt(n)).where(n >= 2, 0.0)
    out = pd.DataFrame({"epoch": wide.index.to_numpy(), "mean": mean.to_numpy(),
                        "low": np.clip(mean - half, 0, 1).to_numpy(), "high": np.clip(mean + half, 0, 1).to_numpy(),
                        "n": n.to_numpy()})
    return out[out["n"] > 0].reset_index(drop=True)


# -- words ------------------------------------------------------------------------------------------
def describe_point(point: dict, base: dict | None = None) -> str:
    """A setting in words: 'with augmentation, at 40% symmetric noise' (other axes as 'name = value')."""
    base = dict(base or {})
    parts = []
    if "augment" in point:
        parts.append("with augmentation" if _truthy(point["augment"]) else "without augmentation")
    if "protocol" in point:
        parts.append(f"with the {point['protocol']} protocol")
    kind = point.get("noise", base.get("noise", "symmetric"))
    if "noise_rate" in point:
        rate = float(point["noise_rate"])
        parts.append("without label noise" if rate == 0 or kind == "none" else f"at {rate:.0%} {kind} noise")
    elif "noise" in point:
        parts.append(f"with {kind} noise")
    for k, v in point.items():
        if k not in ("augment", "protocol", "noise_rate", "noise"):
            parts.append(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}")
    return ", ".join(parts) if parts else "over all runs"


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _loss_of(df: pd.DataFrame, variant: str) -> str:
    g = df[df["variant"] == variant]
    if "loss" in g and g["loss"].notna().any():
        return str(g["loss"].dropna().iloc[0])
    return str(g["method"].iloc[0]) if len(g) else ""


def setting_summary(data: ReportData, point: dict, *, metric: str = "final_acc") -> str:
    """The plain-words paragraph of one setting, from the same numbers as the tables.

    E.g. "With augmentation, at 40% symmetric noise, gr(lam=1, beta=12) ends
    highest (94.9% ± 1.0); its lead over gce(q=0.7) (93.1%) is 1.8 points
    (95% interval 0.4 to 3.2 over 3 paired seeds). GR ends 11.1 points above CE
    (...). CE fits half of the mislabelled examples by epoch 48 (mean of 3
    seeds)."
    """
    df = data.at(point).copy()
    for col in (metric, "mem_delay", "noisy_fit", "epochs"):
        if col not in df:
            df[col] = np.nan
    ok = df[df["status"] == "ok"]
    where = describe_point(point, data.base)
    where = where[0].upper() + where[1:]
    if ok.empty or not np.isfinite(ok[metric]).any():
        n_bad = int((df["status"] != "ok").sum())
        return f"{where}: no run finished ({n_bad} failed or damaged)."
    st = cell_stats(df, metric, ["variant"], [])
    st = st[np.isfinite(st["mean"])].sort_values("mean", ascending=False)
    top = st.iloc[0]
    seeds_word = lambda n: f"{n} seed{'s' if n != 1 else ''}"  # noqa: E731
    level = st[np.isclose(st["mean"], top["mean"], rtol=0, atol=1e-12)]
    if len(level) > 1:  # an exact tie at the top: nobody "ends highest"
        names = ", ".join(level["variant"].iloc[:-1]) + f" and {level['variant'].iloc[-1]}"
        text = f"{where}, {names} end level at {fmt_pct(top['mean'])}% (mean over {seeds_word(int(top['n_ok']))})"
    else:
        text = f"{where}, {top['variant']} ends highest ({fmt_interval(top['mean'], top['half'])}%"
        text += f", mean ± 95% interval over {seeds_word(int(top['n_ok']))})" if top["n_ok"] > 1 else ", one seed)"
    if len(st) > 1 and len(level) == 1:
        runner, lead = st.iloc[1], top["lead"]
        if lead is not None and lead.n >= 2:
            verdict = "" if lead.excludes_zero() else ", within seed noise"
            text += (f"; its lead over {runner['variant']} ({fmt_pct(runner['mean'])}%) is "
                     f"{100 * lead.mean:.1f} points (95% interval {100 * lead.low:.1f} to {100 * lead.high:.1f} "
                     f"over {lead.n} paired seeds){verdict}")
        else:
            text += f"; {runner['variant']} follows at {fmt_pct(runner['mean'])}%"
    text += "."
    # GR against CE (the best GR variant when there are several)
    losses = {v: _loss_of(df, v) for v in st["variant"]}
    grs = [v for v in st["variant"] if losses[v] == "gr"]
    ces = [v for v in st["variant"] if losses[v] == "ce"]
    if grs and ces:
        gr, ce = grs[0], ces[0]  # st is sorted: the best of each
        d = ok.assign(_v=ok[metric])
        a = d[d["variant"] == gr].set_index("seed")["_v"]
        b = d[d["variant"] == ce].set_index("seed")["_v"]
        diff = paired_difference(a, b)
        name = "GR" if len(grs) == 1 else f"GR (best variant, {gr})"
        if math.isfinite(diff.mean):
            word = "above" if diff.mean >= 0 else "below"
            text += f" {name} ends {abs(100 * diff.mean):.1f} points {word} CE"
            if diff.n >= 2:
                sure = "" if diff.excludes_zero() else ", within seed noise"
                text += f" (95% interval {100 * diff.low:+.1f} to {100 * diff.high:+.1f}{sure})"
            text += "."
    # memorisation: CE's delay, and GR's when it memorises too
    for v, label in ((ces[0] if ces else None, "CE"), (grs[0] if grs else None, "GR")):
        if v is None:
            continue
        g = ok[ok["variant"] == v]
        delays = g["mem_delay"].to_numpy(dtype=float)
        info = group_delay(delays)
        if info["n"] == 0:
            continue
        fit_end = t_interval(g["noisy_fit"])
        epochs = int(g["epochs"].max()) if "epochs" in g and g["epochs"].notna().any() else None
        if info["reached"] == 0:
            text += (f" {label} does not fit half of the mislabelled examples within "
                     f"{epochs or 'its'} epochs (at the end: {fmt_pct(fit_end.mean, 0)}%).")
        else:
            iv = info["interval"]
            when = f"by epoch {iv.mean:.0f}" if info["n"] == 1 else f"by epoch {iv.mean:.0f} on average"
            some = "" if info["reached"] == info["n"] else f" in {info['reached']} of {info['n']} seeds"
            text += (f" {label} fits half of the mislabelled examples {when}{some} (at the end: "
                     f"{fmt_pct(fit_end.mean, 0)}%).")
    return text
