"""Detection benchmark: which training label is wrong? One-run scores (GR and CE) against cleanlab's 5-fold.

    python benchmarks/detection_benchmark.py                  # the full benchmark (resumable; see docs/detection.md)
    python benchmarks/detection_benchmark.py --workers 2      # two units at a time
    python benchmarks/detection_benchmark.py --no-run         # rebuild the CSV and the page from finished units
    python benchmarks/detection_benchmark.py --tiny           # digits only, 4 epochs, 1 seed (the CI version)

On Fashion-MNIST and digits, at 20% and 40% symmetric and 40% pair noise,
for each seed, four units of work:

* ``gr``: one GR run (lam 1, beta 12) recorded by ``grlib.train``; every
  score of :mod:`grlib.scores` over every epoch and over the first half of
  the epochs (``early``: before the first learning-rate drop of the paper
  protocol's step schedule), each with its automatic flag count (the
  two-component mixture of :func:`grlib.find_label_issues`);
* ``ce``: the same with cross-entropy;
* ``gr-ts``: one GR run with AUM threshold samples (a fake class on 1/11 of
  the examples, :func:`grlib.scores.with_threshold_samples`): the count from
  their scores (AUM and confidence), the paper's way;
* ``cleanlab``: 5-fold cross-validated CE probabilities
  (:func:`grlib.detection.cross_val_pred_probs`), each fold trained like the
  one-run models (same regime and epochs, on 4/5 of the data), scored by
  ``cleanlab.rank.get_label_quality_scores`` and flagged by
  ``cleanlab.filter.find_label_issues``.

Measured: ROC AUC, average precision and precision at the true noise rate of
each score, the automatic count's flagged / true count, precision and recall,
and the wall-clock seconds each detector needs, training included.

The training regime is the named setting ``--regime`` (:data:`REGIMES`):
``paper`` (default) is ``RunConfig(protocol="paper")`` (SGD lr 0.1, momentum
0.9, weight decay 5e-4, the learning rate x0.1 at 50% and 75% of the epochs,
BatchNorm, augmentation), batch 128; ``fashion-spec`` takes Fashion-MNIST's
settings from the paper-protocol spec of the Fashion-MNIST benchmark
(``benchmarks/fashion_mnist_paper.yaml``) so the two benchmarks train alike.

Cached and resumable: each unit writes one JSON file (atomically) into
``--cache`` when it finishes; a rerun skips finished units, a failing unit
leaves its traceback beside them and the others go on, and ``--no-run`` runs
nothing and rebuilds the results from the finished units (a partial page says
which units are missing and estimates their time from the finished ones).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
UNIT_FORMAT = 1  # bump when a unit's content changes: older unit files are then ignored

#: The named training regimes: ``{regime: {dataset: RunConfig settings}}``.  Loss, noise and seed are set per unit.
REGIMES = {
    # the authors' protocol as grlib presets it (RunConfig(protocol="paper")), batch 128
    "paper": {
        "digits": {"dataset": "digits", "protocol": "paper", "epochs": 100, "batch_size": 128},
        "fashion_mnist": {"dataset": "fashion_mnist", "protocol": "paper", "n_train": 10000, "epochs": 60,
                          "batch_size": 128},
    },
    # Fashion-MNIST as the Fashion-MNIST benchmark trains it under the paper's protocol (the base settings of its
    # spec: protocol, augmentation, epochs, batch, subset; its per-run learning-rate choice on a validation split
    # is not repeated here: the protocol's learning rate unless the spec fixes one); digits as "paper"
    "fashion-spec": {
        "digits": {"dataset": "digits", "protocol": "paper", "epochs": 100, "batch_size": 128},
        "fashion_mnist": "benchmarks/fashion_mnist_paper.yaml",
    },
    # CI: seconds
    "tiny": {"digits": {"dataset": "digits", "protocol": "paper", "epochs": 4, "batch_size": 128}},
}
DEFAULT_REGIME = "paper"
SETTINGS = (("symmetric", 0.2), ("symmetric", 0.4), ("pair", 0.4))
DATASETS = ("digits", "fashion_mnist")
DETECTORS = ("gr", "ce", "gr-ts", "cleanlab")
GR_PARAMS = {"lam": 1.0, "beta": 12.0}
CLEANLAB_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
TS_SCORES = ("aum", "confidence")
CSV_COLUMNS = ["dataset", "noise", "noise_rate", "seed", "detector", "score", "window", "count_method", "roc_auc",
               "average_precision", "precision_at_rate", "n_flagged", "n_true", "flagged_over_true",
               "flag_precision", "flag_recall", "seconds", "seconds_train", "epochs"]


# -- settings ---------------------------------------------------------------------------------------
def regime_settings(regime: str, dataset: str, root: Path = ROOT) -> dict:
    """The RunConfig settings of ``dataset`` under ``regime`` (a spec file's base read when the regime names one)."""
    if regime not in REGIMES:
        raise SystemExit(f"--regime {regime!r} is not one of {', '.join(REGIMES)}")
    table = REGIMES[regime]
    if dataset not in table:
        raise SystemExit(f"regime {regime!r} has no settings for dataset {dataset!r} (it has {', '.join(table)})")
    entry = table[dataset]
    if isinstance(entry, str):  # a batch-report spec: its base settings, without the validation split
        import dataclasses

        import yaml

        import grlib

        spec_path = root / entry
        if not spec_path.is_file():
            raise SystemExit(f"regime {regime!r} reads {dataset}'s settings from {entry}, which does not exist "
                             f"(under {root.name}/); choose another --regime ({', '.join(REGIMES)})")
        base = dict(yaml.safe_load(spec_path.read_text())["base"])
        names = {f.name for f in dataclasses.fields(grlib.RunConfig)} - {"_given"}
        entry = {k: v for k, v in base.items() if k in names and k not in ("loss", "loss_params", "noise",
                                                                            "noise_rate", "seed", "val_fraction")}
        entry.setdefault("dataset", dataset)
    return dict(entry)


@dataclass(frozen=True)
class Unit:
    dataset: str
    noise: str
    noise_rate: float
    seed: int
    detector: str

    @property
    def name(self) -> str:
        return f"{self.dataset}__{self.noise}-{self.noise_rate:g}__seed-{self.seed}__{self.detector}"


def unit_config(unit: Unit, settings: dict):
    """The RunConfig of a unit's run(s): the regime's settings, the unit's noise and seed, GR or CE."""
    import grlib

    loss = "ce" if unit.detector in ("ce", "cleanlab") else "gr"
    return grlib.RunConfig(**settings, noise=unit.noise, noise_rate=unit.noise_rate, seed=unit.seed, loss=loss,
                           loss_params=dict(GR_PARAMS) if loss == "gr" else {}, eval_train=False)


def cache_folder(cache: Path, regime: str, dataset: str, settings: dict, folds: int) -> Path:
    """``<cache>/<regime>/<dataset>-<hash>``: a changed regime, fold count or unit format never reuses old units."""
    key = json.dumps({"settings": settings, "folds": folds, "gr": GR_PARAMS, "format": UNIT_FORMAT}, sort_keys=True)
    return cache / regime / f"{dataset}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


# -- one unit ---------------------------------------------------------------------------------------
def _windows(epochs: int) -> dict:
    """Every epoch, and the first half (before the paper protocol's first learning-rate drop)."""
    out = {"all": None}
    if epochs >= 2:
        out["early"] = epochs // 2
    return out


def _score_rows(result, is_noisy, epochs, *, exclude=None) -> list[dict]:
    """Every score of a run, per window: separation metrics, and each directed score's mixture count."""
    import grlib
    from grlib import scores as S
    from grlib.detection import flag_metrics, run_scores, separation_metrics

    keep = np.ones(result.n_train, bool) if exclude is None else ~exclude
    rows = []
    for window, first_k in _windows(epochs).items():
        scores = run_scores(result, first_k=first_k)
        for name, values in scores.items():
            row = {"score": name, "window": window, **separation_metrics(values[keep], is_noisy[keep])}
            if S.SCORES[name].direction != S.NO_DIRECTION and exclude is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "no group stands out": a count of 0, reported as such
                    flagged = grlib.find_label_issues(result, score=name, first_k=first_k)
                row.update(count_method="mixture", **flag_metrics(flagged, is_noisy))
            rows.append(row)
    return rows


def run_unit(unit: Unit, settings: dict, folds: int, keep_runs: Path | None = None) -> dict:
    """Train and score one unit; returns its record (rows of metrics, seconds, settings)."""
    import torch

    import grlib
    from grlib import scores as S
    from grlib.detection import cleanlab_issues, cleanlab_scores, cross_val_pred_probs, flag_metrics, \
        separation_metrics

    torch.set_num_threads(1)
    cfg = unit_config(unit, settings)
    data, noisy, _ = grlib.prepare(cfg)
    is_noisy = np.asarray(noisy.is_noisy, bool)
    rows, extra = [], {}
    # seconds: what a user of this detector pays, training included: the run(s), then one ranking with its
    # automatic count (the benchmark's own evaluation of every other score and window is not counted)
    t0 = time.perf_counter()
    if unit.detector in ("gr", "ce"):
        result = grlib.train(cfg, data=data, noisy=noisy, progress=False)
        t_train = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grlib.find_label_issues(result)
        seconds = time.perf_counter() - t0
        rows = _score_rows(result, is_noisy, cfg.epochs)
        extra = {"final_acc": result.summary()["final_acc"], "noisy_fit": result.summary()["noisy_fit"]}
    elif unit.detector == "gr-ts":
        data_ts, noisy_ts, ts = S.with_threshold_samples(data, noisy, seed=unit.seed + 1000)
        result = grlib.train(cfg, data=data_ts, noisy=noisy_ts, progress=False)
        t_train = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grlib.find_label_issues(result, score="aum", threshold_samples=ts.mask)
        seconds = time.perf_counter() - t0
        rows = _score_rows(result, is_noisy, cfg.epochs, exclude=ts.mask)
        for window, first_k in _windows(cfg.epochs).items():
            for name in TS_SCORES:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    th = S.flag_threshold(result, score=name, threshold_samples=ts.mask, first_k=first_k)
                    flagged = grlib.find_label_issues(result, score=name, threshold_samples=ts.mask, first_k=first_k)
                rows.append({"score": name, "window": window,
                             "count_method": f"threshold samples (q={th.percentile:.3g})",
                             **flag_metrics(flagged, is_noisy, candidates=~ts.mask)})
        extra = {"n_threshold_samples": int(ts.mask.sum()), "final_acc": result.summary()["final_acc"]}
    elif unit.detector == "cleanlab":
        probs = cross_val_pred_probs(cfg, data, noisy, folds=folds)
        t_train = time.perf_counter() - t0
        quality = cleanlab_scores(noisy.labels, probs)
        flagged = cleanlab_issues(noisy.labels, probs)
        seconds = time.perf_counter() - t0
        result = None
        for method in CLEANLAB_METHODS:
            values = quality if method == "self_confidence" else cleanlab_scores(noisy.labels, probs, method=method)
            row = {"score": method, "window": f"{folds}-fold", **separation_metrics(values, is_noisy)}
            if method == "self_confidence":
                row.update(count_method="cleanlab prune_by_noise_rate", **flag_metrics(flagged, is_noisy))
            rows.append(row)
        extra = {"cv_acc_on_given": float((probs.argmax(1) == noisy.labels).mean())}
    else:
        raise ValueError(f"unknown detector {unit.detector!r}; allowed: {', '.join(DETECTORS)}")
    wall = time.perf_counter() - t0
    if keep_runs is not None and result is not None:
        result.save(keep_runs / unit.name)
    return {"format": UNIT_FORMAT, "unit": unit.name, "dataset": unit.dataset, "noise": unit.noise,
            "noise_rate": unit.noise_rate, "seed": unit.seed, "detector": unit.detector, "epochs": cfg.epochs,
            "config": cfg.to_dict(), "folds": folds, "seconds": seconds, "seconds_train": t_train, "wall_seconds": wall,
            "true_noise_rate": float(is_noisy.mean()), "rows": rows, **extra, "grlib_version": grlib.__version__,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


_WARM = False


def warm_up() -> None:
    """Once per process, before anything is timed: a one-epoch run, a mixture count and cleanlab's filter, so
    that no unit's seconds carry the first call's imports and initialisation."""
    global _WARM
    if _WARM:
        return
    import torch

    import grlib
    from grlib.detection import cleanlab_issues

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = grlib.train(grlib.RunConfig(dataset="digits", n_train=200, epochs=2, protocol="paper", eval_train=False),
                        progress=False)
        grlib.find_label_issues(r)
        probs = np.full((200, 10), 0.05)
        probs[np.arange(200), r.y_given] = 0.55
        cleanlab_issues(r.y_given, probs)
    _WARM = True


def _unit_paths(folder: Path, unit: Unit) -> tuple[Path, Path]:
    return folder / f"{unit.name}.json", folder / f"{unit.name}.error.txt"


def read_unit(folder: Path, unit: Unit) -> dict | None:
    """A finished unit's record, or None (not run, failed, unreadable or of an older format)."""
    path, _ = _unit_paths(folder, unit)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("format") == UNIT_FORMAT and rec.get("unit") == unit.name else None


def _work(unit: Unit, settings: dict, folds: int, folder: str, keep_runs: str | None) -> tuple[str, str | None]:
    """Run one unit in a worker and write its file; never raises (a failure is written beside the units)."""
    from grlib.io import atomic_write_json, atomic_write_text

    path, err = _unit_paths(Path(folder), unit)
    try:
        warm_up()
        rec = run_unit(unit, settings, folds, Path(keep_runs) if keep_runs else None)
    except Exception:  # noqa: BLE001 - one unit's failure must not take down the others
        atomic_write_text(err, traceback.format_exc())
        return unit.name, traceback.format_exc().strip().splitlines()[-1]
    atomic_write_json(path, rec)
    err.unlink(missing_ok=True)
    return unit.name, None


# -- the table ---------------------------------------------------------------------------------------
def frame_from_units(records: list[dict]) -> pd.DataFrame:
    """One row per (unit, score, window, count method), as in :data:`CSV_COLUMNS`."""
    rows = []
    for rec in records:
        for r in rec["rows"]:
            rows.append({"dataset": rec["dataset"], "noise": rec["noise"], "noise_rate": rec["noise_rate"],
                         "seed": rec["seed"], "detector": rec["detector"], "seconds": rec["seconds"],
                         "seconds_train": rec["seconds_train"], "epochs": rec["epochs"], **r})
    df = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    return df.sort_values(["dataset", "noise", "noise_rate", "detector", "score", "window", "seed"],
                          kind="stable").reset_index(drop=True)


def _setting(noise, rate) -> str:
    return f"{noise} {float(rate):.0%}"


def _cell(values, digits=3) -> str:
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return "n/a"
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


DETECTOR_LABELS = {"gr": "GR, one run", "ce": "CE, one run", "gr-ts": "GR + threshold samples, one run",
                   "cleanlab": "cleanlab, K-fold CE"}


def _row_label(detector, score, window) -> str:
    if detector == "cleanlab":
        return f"cleanlab: {score} ({window})"
    return f"{DETECTOR_LABELS.get(detector, detector)}: {score} ({window} epochs)"


def metric_table(df: pd.DataFrame, metric: str, dataset: str) -> pd.DataFrame:
    """Scores x noise settings, ``mean ± std`` over seeds of ``metric`` (threshold-sample runs left out)."""
    d = df[(df.dataset == dataset) & (df.detector != "gr-ts") & df[metric].notna()]
    d = d.drop_duplicates(["noise", "noise_rate", "seed", "detector", "score", "window"])
    if d.empty:
        return pd.DataFrame()
    d = d.assign(setting=[_setting(n, r) for n, r in zip(d.noise, d.noise_rate)],
                 row=[_row_label(a, b, c) for a, b, c in zip(d.detector, d.score, d.window)])
    t = d.groupby(["row", "setting"])[metric].apply(_cell).unstack("setting")
    order = [_setting(n, r) for n, r in SETTINGS if _setting(n, r) in t.columns]
    ranks = {lab: k for k, lab in enumerate(_ordered_rows(d))}
    return t[order].reindex(sorted(t.index, key=lambda r: ranks.get(r, 1e9)))


def _ordered_rows(d: pd.DataFrame) -> list[str]:
    from grlib import scores as S

    score_order = list(S.SCORES) + list(CLEANLAB_METHODS)
    det_order = ["gr", "gr-ts", "ce", "cleanlab"]
    keys = d[["detector", "score", "window"]].drop_duplicates()
    keys = sorted(keys.itertuples(index=False), key=lambda k: (det_order.index(k.detector) if k.detector in det_order
                                                               else 9, k.window != "all",
                                                               score_order.index(k.score) if k.score in score_order
                                                               else 99))
    return [_row_label(*k) for k in keys]


def count_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Automatic flag counts: ``flagged/true (precision, recall)``, means over seeds, per noise setting."""
    d = df[(df.dataset == dataset) & df.count_method.notna()]
    if d.empty:
        return pd.DataFrame()
    d = d.assign(setting=[_setting(n, r) for n, r in zip(d.noise, d.noise_rate)],
                 row=[f"{_row_label(a, b, c)} [{m}]" for a, b, c, m in zip(d.detector, d.score, d.window,
                                                                            d.count_method)])
    g = d.groupby(["row", "setting"])[["flagged_over_true", "flag_precision", "flag_recall"]].mean()
    cells = pd.Series([f"{a:.2f} ({b:.2f}, {c:.2f})" if np.isfinite(a) else "n/a"
                       for a, b, c in g.to_numpy()], index=g.index).unstack("setting")
    order = [_setting(n, r) for n, r in SETTINGS if _setting(n, r) in cells.columns]
    ranks = {lab: k for k, lab in enumerate(_ordered_rows(d))}
    return cells[order].reindex(sorted(cells.index, key=lambda r: (ranks.get(r.rsplit(" [", 1)[0], 1e9), r)))


def compute_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Seconds per detector (training included), mean over seeds, and GR's share of cleanlab's."""
    d = df[df.dataset == dataset].drop_duplicates(["noise", "noise_rate", "seed", "detector"])
    if d.empty:
        return pd.DataFrame()
    d = d.assign(setting=[_setting(n, r) for n, r in zip(d.noise, d.noise_rate)])
    t = d.groupby(["setting", "detector"])["seconds"].mean().unstack("detector")
    t = t.reindex(columns=[c for c in DETECTORS if c in t.columns])
    if {"gr", "cleanlab"} <= set(t.columns):
        t["GR / cleanlab"] = t["gr"] / t["cleanlab"]
    return t.rename(columns=DETECTOR_LABELS).reindex([_setting(n, r) for n, r in SETTINGS if _setting(n, r) in t.index])


def summary_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per noise setting: the default score of a GR run, the best one-run score, and cleanlab (mean AUC / AP)."""
    from grlib.scores import DEFAULT_SCORE

    d = df[(df.dataset == dataset) & df.roc_auc.notna() & (df.detector != "gr-ts")]
    d = d.drop_duplicates(["noise", "noise_rate", "seed", "detector", "score", "window"])
    rows = {}
    for noise, rate in SETTINGS:
        s = d[(d.noise == noise) & np.isclose(d.noise_rate, rate)]
        if s.empty:
            continue
        g = s.groupby(["detector", "score", "window"]).agg(auc=("roc_auc", "mean"), ap=("average_precision", "mean"),
                                                           sec=("seconds", "mean"), n=("seed", "nunique"))
        row = {}
        if ("gr", DEFAULT_SCORE, "all") in g.index:
            x = g.loc[("gr", DEFAULT_SCORE, "all")]
            row[f"GR {DEFAULT_SCORE} (default): AUC / AP"] = f"{x.auc:.3f} / {x.ap:.3f}"
        one = g.loc[[k for k in g.index if k[0] in ("gr", "ce")]]
        if not one.empty:
            k = one["auc"].idxmax()
            row["best one-run score"] = f"{DETECTOR_LABELS[k[0]].split(',')[0]} {k[1]} ({k[2]})"
            row["its AUC / AP"] = f"{one.loc[k].auc:.3f} / {one.loc[k].ap:.3f}"
        if ("cleanlab", "self_confidence") in {(a, b) for a, b, _ in g.index}:
            x = g.loc[[k for k in g.index if k[:2] == ("cleanlab", "self_confidence")][0]]
            row["cleanlab self-confidence: AUC / AP"] = f"{x.auc:.3f} / {x.ap:.3f}"
            if not one.empty and ("gr", DEFAULT_SCORE, "all") in g.index:
                row["GR run / cleanlab seconds"] = f"{g.loc[('gr', DEFAULT_SCORE, 'all')].sec / x.sec:.2f}"
        row["seeds"] = int(g["n"].max())
        rows[_setting(noise, rate)] = row
    return pd.DataFrame(rows).T


def goals(df: pd.DataFrame) -> list[str]:
    """The issue's numbers, each judged met / not met from the finished units (or said to be missing)."""
    from grlib.scores import DEFAULT_SCORE

    out = []
    for dataset in DATASETS:
        at = df[(df.dataset == dataset) & (df.noise == "symmetric") & np.isclose(df.noise_rate, 0.4)]
        one = at[at.detector.isin(["gr", "ce"]) & at.roc_auc.notna()]
        cl = at[(at.detector == "cleanlab") & (at.score == "self_confidence")]
        if one.empty or cl.empty:
            out.append(f"- {dataset}, 40% symmetric: one-run AUC >= cleanlab's at <= 0.3x its compute: "
                       "**not measured yet**.")
            continue
        best = one.groupby(["detector", "score", "window"]).agg(auc=("roc_auc", "mean"), sec=("seconds", "mean"))
        (det, score, window), b = best["auc"].idxmax(), best.loc[best["auc"].idxmax()]
        c_auc, c_sec = cl.roc_auc.mean(), cl.seconds.mean()
        ok = b.auc >= c_auc and b.sec <= 0.3 * c_sec
        out.append(f"- {dataset}, 40% symmetric: the best one-run score reaches cleanlab's 5-fold AUC at <= 0.3x its "
                   f"compute: **{'met' if ok else 'not met'}** ({DETECTOR_LABELS[det]} `{score}` ({window} epochs) "
                   f"AUC {b.auc:.3f} in {b.sec:.0f} s; cleanlab self-confidence AUC {c_auc:.3f} in {c_sec:.0f} s; "
                   f"ratio {b.sec / c_sec:.2f}).")
    for dataset in DATASETS:
        for rate in (0.2, 0.4):
            d = df[(df.dataset == dataset) & (df.noise == "symmetric") & np.isclose(df.noise_rate, rate)
                   & (df.detector == "gr") & (df.score == DEFAULT_SCORE) & (df.window == "all")
                   & (df.count_method == "mixture")]
            if d.empty:
                out.append(f"- {dataset}, {rate:.0%} symmetric: automatic count within 25% with precision >= 0.85: "
                           "**not measured yet**.")
                continue
            ok = bool(((d.flagged_over_true - 1).abs() <= 0.25).all() and (d.flag_precision >= 0.85).all())
            out.append(f"- {dataset}, {rate:.0%} symmetric: GR `{DEFAULT_SCORE}`'s automatic count within 25% of the "
                       f"true count with precision >= 0.85 in every seed: **{'met' if ok else 'not met'}** "
                       f"(flagged/true {d.flagged_over_true.min():.2f}-{d.flagged_over_true.max():.2f}, precision "
                       f"{d.flag_precision.min():.2f}-{d.flag_precision.max():.2f}, {len(d)} seeds).")
    return out


def failures(df: pd.DataFrame) -> list[str]:
    """Where the default score fails: pair noise against 40% symmetric, per dataset and loss (AUC means)."""
    from grlib.scores import DEFAULT_SCORE

    out = []
    for dataset in DATASETS:
        for det in ("gr", "ce"):
            d = df[(df.dataset == dataset) & (df.detector == det) & (df.score == DEFAULT_SCORE) & (df.window == "all")]
            sym = d[(d.noise == "symmetric") & np.isclose(d.noise_rate, 0.4)].roc_auc.mean()
            pair = d[(d.noise == "pair")]
            if pair.empty or not np.isfinite(sym):
                continue
            out.append(f"- {dataset}, {DETECTOR_LABELS[det]}: `{DEFAULT_SCORE}` AUC {sym:.3f} at 40% symmetric, "
                       f"{pair.roc_auc.mean():.3f} at 40% pair noise; its count at pair noise: "
                       f"{pair.flagged_over_true.mean():.2f}x the true count, precision {pair.flag_precision.mean():.2f}.")
    return out


def write_doc(path: Path, df: pd.DataFrame, *, regime: str, settings: dict, seeds, folds: int, missing: list,
              failed: list, estimate: dict, command: str, wall_minutes: float = 0.0) -> None:
    from grlib.io import atomic_write_text

    def md(t, floatfmt=".3f"):
        return t.to_markdown(floatfmt=floatfmt) if not t.empty else "(no finished unit)"

    total = len(df.drop_duplicates(["dataset", "noise", "noise_rate", "seed", "detector"])) if not df.empty else 0
    lines = ["# Detection benchmark: finding the mislabelled training examples", ""]
    if missing or failed:
        lines += [f"**Partial results: {total} of {total + len(missing)} units finished"
                  + (f", {len(failed)} failed ({', '.join(failed[:6])}{', ...' if len(failed) > 6 else ''})"
                     if failed else "") + ".** Numbers below are over the finished units only; "
                  f"the missing ones need about {estimate['remaining_min']:.0f} minutes more "
                  f"({estimate['how']}).", ""]
    lines += [
        f"Reproduce (resumable; `--no-run` rebuilds this page from finished units): `{command}`",
        "",
        f"Wall-clock time of the finished units: **{wall_minutes:.1f} minutes** (training, every score, every count)"
        if not df.empty else "Wall-clock time of the finished units: none yet.",
        "",
        "## Setup",
        f"- Regime `{regime}` (one named setting in `benchmarks/detection_benchmark.py`, `--regime`):",
    ]
    for ds, s in settings.items():
        lines.append(f"  - {ds}: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    lines += [
        "  `protocol=paper` is grlib's preset of the authors' protocol: SGD lr 0.1, momentum 0.9, weight decay 5e-4, "
        "the learning rate x0.1 at 50% and 75% of the epochs, BatchNorm, data augmentation.",
        f"- Noise: {', '.join(_setting(n, r) for n, r in SETTINGS)} (pair: class k becomes k+1 mod 10); seeds "
        f"{', '.join(map(str, seeds))} (noise, initialisation, order).",
        f"- One-run detectors: one GR run (lam {GR_PARAMS['lam']:g}, beta {GR_PARAMS['beta']:g}) and one CE run, "
        "recorded by `grlib.train` (no evaluation pass: the scores use the training pass). Scores of "
        "`grlib.scores`, over every epoch (`all`) and over the first half of the epochs (`early`; under the "
        "step schedule: before the first learning-rate drop, as AUM's paper computes it), each turned so that "
        "higher says clean.",
        f"- cleanlab: {folds}-fold stratified cross-validation with CE, each fold trained with the same regime "
        "and epochs on (K-1)/K of the data; `cleanlab.rank.get_label_quality_scores` on the out-of-sample "
        "probabilities; its flags from `cleanlab.filter.find_label_issues` (`prune_by_noise_rate`).",
        "- ROC AUC: the chance that a clean example scores above a mislabelled one. Average precision: of finding "
        "the mislabelled by the lowest scores (a random ranking scores the noise rate). Precision at the true "
        "rate: the share mislabelled among the lowest-scored `rate x n`.",
        "- Automatic count (no noise rate given): `grlib.find_label_issues`'s two-component mixture on the score "
        "(`mixture`), AUM's threshold samples (a fake class on 1/11 of the examples, a percentile of their "
        "scores; a separate GR run with 11 outputs), or cleanlab's own count. Cells: flagged / true count "
        "(1 is right), then (precision, recall) of the flagged set; means over seeds.",
        "- In your own data: `grlib.find_label_issues(result)` on any recorded run (a `grlib.Recorder` folder, a "
        "saved run, `grlib.train`'s result) ranks and flags with the default score; `score=`, `first_k=` "
        "(an early window), `threshold_samples=` choose as in these tables; notebook `07_data_map` "
        "(`run_dir=<your run>`) draws the data map, the score's distribution with its cut, and the top suspects.",
        "- Seconds: what a user of the detector pays, wall clock on the machine that ran the unit: the training "
        "(cleanlab: every fold) plus one ranking with its automatic count (grlib: the default score; cleanlab: its "
        "quality scores and flags); the benchmark's own evaluation of every other score is not counted.",
        "",
    ]
    for dataset in DATASETS:
        sub = df[df.dataset == dataset]
        if sub.empty:
            lines += [f"## {dataset}", "", "(no finished unit)", ""]
            continue
        lines += [f"## {dataset}", "", "### In short", "", md(summary_table(df, dataset)), "",
                  "### ROC AUC (mean ± std over seeds)", "", md(metric_table(df, "roc_auc", dataset)),
                  "", "### Average precision", "", md(metric_table(df, "average_precision", dataset)), "",
                  "### Precision at the true noise rate", "", md(metric_table(df, "precision_at_rate", dataset)), "",
                  "### Automatic flag count: flagged/true (precision, recall)", "", md(count_table(df, dataset)), "",
                  "### Compute (seconds, training included)", "", md(compute_table(df, dataset), floatfmt=".2f"), ""]
    lines += ["## The issue's numbers", ""] + goals(df) + [""]
    fails = failures(df)
    if fails:
        lines += ["## Where the default score fails", ""] + fails + [""]
    atomic_write_text(path, "\n".join(lines) + "\n")


def estimate_remaining(done: list[dict], missing: list[Unit], settings: dict) -> dict:
    """Minutes the missing units need: each at the mean seconds of finished units of its dataset and detector,
    scaled by epochs; a dataset with no finished unit is scaled from digits by its examples x features x epochs."""
    if not missing:
        return {"remaining_min": 0.0, "how": "none missing"}
    by = {}
    for rec in done:
        by.setdefault((rec["dataset"], rec["detector"]), []).append(rec.get("wall_seconds", rec["seconds"]) / rec["epochs"])
    cost = {"digits": 1347 * 64, "fashion_mnist": None}
    secs, unknown = 0.0, 0
    for u in missing:
        per_epoch = by.get((u.dataset, u.detector))
        epochs = settings[u.dataset]["epochs"]
        if per_epoch:
            secs += np.mean(per_epoch) * epochs
        elif by.get(("digits", u.detector)) and u.dataset == "fashion_mnist":
            n = settings[u.dataset].get("n_train") or 60000
            secs += np.mean(by[("digits", u.detector)]) * epochs * (n * 784) / cost["digits"]
        else:
            unknown += 1
    how = "from the finished units' seconds per epoch, on the machine that ran them"
    if unknown:
        how += f"; {unknown} unit(s) of a kind not run yet are not counted"
    return {"remaining_min": secs / 60.0, "how": how}


# -- main ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regime", default=None, help=f"training regime: {', '.join(REGIMES)} (default {DEFAULT_REGIME})")
    ap.add_argument("--datasets", nargs="+", default=None, choices=DATASETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    ap.add_argument("--settings", nargs="+", default=None, metavar="NOISE:RATE",
                    help="noise settings, e.g. symmetric:0.4 pair:0.4 (default: the three of the benchmark)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="units run at once (processes)")
    ap.add_argument("--cache", default=None, help="folder of the finished units (default reports/detection-benchmark)")
    ap.add_argument("--results", default=None, help="CSV (default benchmarks/results/detection.csv)")
    ap.add_argument("--docs", default=None, help="the page (default docs/detection.md)")
    ap.add_argument("--keep-runs", action="store_true", help="also save each one-run result (records) in the cache")
    ap.add_argument("--limit", type=int, default=None, help="run at most this many missing units, then write the page")
    ap.add_argument("--no-run", action="store_true", help="run nothing: rebuild the CSV and the page from finished units")
    ap.add_argument("--tiny", action="store_true", help="digits only, the tiny regime (4 epochs), seed 0, 3 folds")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    regime = args.regime or ("tiny" if args.tiny else DEFAULT_REGIME)
    datasets = args.datasets or (["digits"] if args.tiny else list(DATASETS))
    seeds = args.seeds if args.seeds is not None else ([0] if args.tiny else [0, 1, 2])
    folds = 3 if args.tiny and "--folds" not in (argv if argv is not None else sys.argv) else args.folds
    out_root = ROOT / "reports" / ("detection-tiny" if args.tiny else "detection-benchmark")
    cache = Path(args.cache) if args.cache else out_root
    results = Path(args.results) if args.results else (out_root / "detection_tiny.csv" if args.tiny
                                                         else ROOT / "benchmarks" / "results" / "detection.csv")
    docs = Path(args.docs) if args.docs else (out_root / "detection_tiny.md" if args.tiny else ROOT / "docs" / "detection.md")
    if args.settings:
        settings_list = []
        for s in args.settings:
            noise, _, rate = s.partition(":")
            settings_list.append((noise, float(rate)))
    else:
        settings_list = list(SETTINGS)
    if args.workers < 1 or folds < 2:
        raise SystemExit("--workers must be >= 1 and --folds >= 2")

    settings = {ds: regime_settings(regime, ds) for ds in datasets}
    folders = {ds: cache_folder(cache, regime, ds, settings[ds], folds) for ds in datasets}
    units = [Unit(ds, n, r, s, d) for ds in datasets for (n, r) in settings_list for s in seeds for d in args.detectors]
    todo = [u for u in units if read_unit(folders[u.dataset], u) is None]
    t0 = time.perf_counter()
    failed = []
    if not args.no_run and todo:
        run_now = todo if args.limit is None else todo[:args.limit]
        if not args.quiet:
            print(f"{len(units) - len(todo)} of {len(units)} units finished before; running {len(run_now)}", flush=True)
        for f in folders.values():
            f.mkdir(parents=True, exist_ok=True)
        jobs = [(u, settings[u.dataset], folds, str(folders[u.dataset]),
                 str(folders[u.dataset] / "runs") if args.keep_runs else None) for u in run_now]
        if args.workers == 1:
            outcomes = (_work(*job) for job in jobs)
        else:
            pool = ProcessPoolExecutor(max_workers=args.workers)
            futures = {pool.submit(_work, *job): job[0] for job in jobs}
            outcomes = (_outcome(fut, futures[fut]) for fut in as_completed(futures))
        for k, (name, error) in enumerate(outcomes, start=1):
            if error:
                failed.append(name)
            if not args.quiet:
                print(f"[{k}/{len(run_now)}] {name}: {'FAILED: ' + error if error else 'done'} "
                      f"({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
        if args.workers > 1:
            pool.shutdown()
    done = [rec for u in units if (rec := read_unit(folders[u.dataset], u)) is not None]
    missing = [u for u in units if read_unit(folders[u.dataset], u) is None]
    failed_all = sorted({u.name for u in missing if _unit_paths(folders[u.dataset], u)[1].is_file()} | set(failed))
    df = frame_from_units(done) if done else pd.DataFrame(columns=CSV_COLUMNS)
    from grlib.io import atomic_write_text

    atomic_write_text(results, df.to_csv(index=False))
    cmd = "python benchmarks/detection_benchmark.py" + (" --tiny" if args.tiny else "") + \
          (f" --regime {regime}" if args.regime else "")
    write_doc(docs, df, regime=regime, settings=settings, seeds=seeds, folds=folds, missing=missing,
              failed=failed_all, estimate=estimate_remaining(done, missing, settings), command=cmd,
              wall_minutes=sum(rec.get("wall_seconds", rec["seconds"]) for rec in done) / 60.0)
    if not args.quiet:
        print(f"wrote {results} ({len(df)} rows from {len(done)} of {len(units)} units) and {docs}")
    return 1 if failed_all else 0


def _outcome(fut, unit: Unit) -> tuple[str, str | None]:
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory)
        return unit.name, f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
