"""What a report notebook's kernel does: settings -> RunConfig, training (with a learning rate chosen on
the noisy validation split), and the run's key numbers and per-epoch history.

Notebook 05 calls these so that it stays thin and every piece is tested here.
This module is part of grlib's source fingerprint (a change re-executes the
reports' runs); the rest of :mod:`grlib.report` only builds pages.

* :func:`expand_runs`: the runs of one kernel: the notebook's parameters, or
  one set per entry of its ``runs`` parameter (overrides from ``grlib report``).
* :func:`run_config`: notebook settings -> :class:`grlib.RunConfig`.  A
  setting left at None takes the protocol's value (``protocol="paper"``
  presets lr 0.1, momentum 0.9, weight decay 5e-4, the step schedule,
  BatchNorm and augmentation); a setting given explicitly overrides it.
* :func:`train_run`: trains once, or once per learning rate of ``lrs`` and
  keeps the one with the best *final accuracy on the noisy validation split*
  (:func:`choose_by_validation`; the test split is never looked at).
  ``train_seconds`` covers all of it.
* :meth:`TrainedRun.metrics` / :meth:`TrainedRun.history`: the metrics JSON and
  the history CSV the report reads (:mod:`grlib.report.stats`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["expand_runs", "run_config", "train_run", "choose_by_validation", "TrainedRun", "config_digest",
           "HISTORY_COLUMNS", "LOSS_PARAMETERS"]

#: Columns of the history CSV (one row per epoch).
HISTORY_COLUMNS = ("epoch", "test_acc", "val_acc", "noisy_fit", "clean_acc", "train_acc", "train_loss", "lr")

#: The notebook parameters that belong to each loss.
LOSS_PARAMETERS = {"gr": ("lam", "beta"), "gce": ("q",)}

#: Notebook settings that are not RunConfig fields (handled here).
_NOT_CONFIG = {"lam", "beta", "q", "lrs", "hidden"}

#: Values that mean "nothing new" for settings an older RunConfig lacks (dropped instead of refused).
_NEUTRAL = {"protocol": "none", "augment": False, "batchnorm": False}


def expand_runs(settings: dict, outputs: dict, runs: list) -> list[tuple[dict, dict]]:
    """``[(settings, outputs), ...]`` for the runs of one kernel.

    ``runs`` empty: one run with ``settings`` and ``outputs`` (the notebook's
    parameters).  Otherwise one run per entry, each a dict overriding some
    settings and outputs (``seed``, ``metrics_path``, ...); an unknown key is
    refused, naming it.
    """
    if not isinstance(runs, (list, tuple)):
        raise TypeError(f"runs must be a list of dicts of parameter overrides, got {type(runs).__name__}")
    if not runs:
        return [(dict(settings), dict(outputs))]
    jobs = []
    for i, over in enumerate(runs):
        if not isinstance(over, dict):
            raise TypeError(f"runs[{i}] must be a dict of parameter overrides, got {over!r}")
        unknown = sorted(set(over) - set(settings) - set(outputs))
        if unknown:
            raise ValueError(f"runs[{i}] sets unknown parameter(s) {unknown}; allowed: "
                             f"{sorted(set(settings) | set(outputs))}")
        jobs.append(({**settings, **{k: v for k, v in over.items() if k in settings}},
                     {**outputs, **{k: v for k, v in over.items() if k in outputs}}))
    return jobs


def run_config(**settings):
    """A :class:`grlib.RunConfig` from notebook settings.

    ``loss`` with ``lam``/``beta`` (GR) or ``q`` (GCE) become ``loss_params``
    (the other losses' parameters are ignored); ``n_train=0`` means all;
    ``hidden=[]`` keeps RunConfig's widths; ``lrs`` is :func:`train_run`'s.
    A setting that is None is left out, so the protocol's preset (or
    RunConfig's default) applies.  A setting this grlib's RunConfig does not
    have is refused unless it is None or neutral (``protocol="none"``,
    ``augment=False``, ``batchnorm=False``).
    """
    from ..config import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    loss = settings.get("loss", "gr")
    kwargs = {k: v for k, v in settings.items() if k not in _NOT_CONFIG and v is not None
              and not (k not in fields and k in _NEUTRAL and v == _NEUTRAL[k])}
    unknown = sorted(k for k in kwargs if k not in fields)
    if unknown:
        raise ValueError(f"setting(s) {unknown} are not run settings of this grlib's RunConfig "
                         f"(known: {sorted(fields)}); leave them at None or update grlib")
    kwargs["loss_params"] = {k: float(settings[k]) for k in LOSS_PARAMETERS.get(loss, ()) if k in settings}
    if kwargs.get("n_train") == 0:
        kwargs["n_train"] = None
    hidden = settings.get("hidden")
    if hidden:
        kwargs["hidden"] = tuple(hidden)
    return RunConfig(**kwargs)


def config_digest(config) -> str:
    """8 hex digits identifying every setting of a run (for figure names that never collide)."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _final(history: dict, name: str, epochs: int | None = None) -> float:
    """The value at the last completed epoch (NaN if missing there)."""
    v = np.asarray(history.get(name, []), dtype=float)
    if epochs is not None:
        v = v[: int(epochs)]
    return float(v[-1]) if v.size else math.nan


def choose_by_validation(candidates: dict) -> float:
    """The learning rate whose run ends with the highest accuracy on the noisy validation split.

    ``candidates``: ``{lr: RunResult}``.  Only ``history["val_acc"]`` is
    read (its value at the last completed epoch); ties go to the smaller
    learning rate.  A
    candidate without a finite validation accuracy cannot win; if none has
    one, :class:`ValueError`.
    """
    if not candidates:
        raise ValueError("no candidate runs to choose from")
    scored = []
    for lr, res in candidates.items():
        v = _final(res.history, "val_acc", getattr(res, "epochs_completed", None))
        if math.isfinite(v):
            scored.append((-v, float(lr)))
    if not scored:
        raise ValueError("no candidate has a validation accuracy: set val_fraction > 0 to choose the learning "
                         "rate on a noisy validation split")
    return min(scored)[1]


@dataclass
class TrainedRun:
    """One finished run: its result, the config it ran with, its training time and the selection it made."""

    result: object                      # grlib.RunResult
    config: object                      # grlib.RunConfig (the chosen learning rate)
    train_seconds: float                # all training of this run, every candidate learning rate included
    selection: list = field(default_factory=list)  # [{"lr", "val_acc"}] when a learning rate was chosen

    def summary(self) -> dict:
        s = dict(self.result.summary())
        # grlib < 0.2 named two keys final_noisy_fit / final_clean_acc
        s.setdefault("noisy_fit", s.get("final_noisy_fit", math.nan))
        s.setdefault("clean_acc", s.get("final_clean_acc", math.nan))
        return s

    def history(self):
        """The per-epoch history as a DataFrame with :data:`HISTORY_COLUMNS` (NaN where unknown)."""
        import pandas as pd

        h = self.result.history
        e = int(self.result.epochs_completed or 0)
        out = {"epoch": np.arange(1, e + 1)}
        for k in HISTORY_COLUMNS[1:]:
            v = np.asarray(h.get(k, np.full(e, np.nan)), dtype=float)[:e]
            out[k] = np.concatenate([v, np.full(e - v.size, np.nan)]) if v.size < e else v
        return pd.DataFrame(out)

    def metrics(self, settings: dict) -> dict:
        """The run's key numbers for the metrics JSON (``parameters``: the notebook settings as given)."""
        from .. import __version__, separation_auc

        s = self.summary()
        res = self.result
        auc = math.nan
        is_noisy = getattr(res, "is_noisy", None)
        if is_noisy is not None and "eval_p" in getattr(res, "records", {}):
            auc = separation_auc(res.record("eval_p", -1), is_noisy)
        hist = res.history
        val = np.asarray(hist.get("val_acc", []), dtype=float)
        return {
            "method": self.config.label, "loss": self.config.loss, "loss_params": dict(self.config.loss_params),
            "parameters": dict(settings), "config": self.config.to_dict(),
            "epochs_completed": s.get("epochs"), "stopped": s.get("stopped"),
            "final_acc": s.get("final_acc"), "best_acc": s.get("best_acc"), "epoch_of_best": s.get("epoch_of_best"),
            "noisy_fit": s.get("noisy_fit"), "clean_acc": s.get("clean_acc"),
            "noise_rate_realised": s.get("noise_rate_realised"), "auc_p": auc,
            "val_acc": _final(hist, "val_acc", res.epochs_completed),
            "val_best_acc": float(np.nanmax(val)) if np.isfinite(val).any() else None,
            "lr": float(self.config.lr), "lr_selection": self.selection,
            "train_seconds": round(self.train_seconds, 3), "grlib_version": __version__,
            **kind_metrics(res),
        }


def kind_metrics(result) -> dict:
    """Per touched kind (mislabelled, outlier, corrupted), against the clean examples, at the last epoch.

    Only for a run with outlier or corrupted-input masks (issue 14), else ``{}``.  Keys
    ``<kind>_fitted`` (share predicted as the given label), ``<kind>_auc_p`` (eval p, higher says
    clean), ``<kind>_auc_confidence`` (mean p over the epochs), ``<kind>_weight_ratio`` (median
    weight of the kind over the clean examples' median: above 1, the loss pushes harder on it) and
    ``<kind>_weight_share`` (its share of the last epoch's weight; its share of the data beside it as
    ``<kind>_data_share``).
    """
    from .. import separation_auc
    from ..views import kind_selection, touched_kinds

    if not getattr(result, "masks", None) or getattr(result, "is_noisy", None) is None:
        return {}
    out = {}
    kind = result.example_kind
    s = result.summaries
    conf = s["p_sum"] / np.maximum(s["n_seen"], 1) if "p_sum" in s else None
    pred = result.record("eval_pred" if "eval_pred" in result.records else "pred", -1)
    p = result.record("eval_p" if "eval_p" in result.records else "p", -1)
    w = result.record("weight", -1) if "weight" in result.records else None
    clean = kind == 0
    med_clean = float(np.nanmedian(w[clean])) if w is not None and clean.any() else math.nan
    for name in touched_kinds(result):
        sel, is_kind = kind_selection(result, name)
        mask = sel.copy()
        mask[sel] = is_kind
        out[f"{name}_fitted"] = float((pred[mask] == result.y_given[mask]).mean()) if mask.any() else math.nan
        out[f"{name}_auc_p"] = separation_auc(p[sel], is_kind)
        out[f"{name}_auc_confidence"] = separation_auc(conf[sel], is_kind) if conf is not None else math.nan
        out[f"{name}_data_share"] = float(mask.mean())
        if w is not None:
            out[f"{name}_weight_ratio"] = float(np.nanmedian(w[mask])) / med_clean if med_clean else math.nan
            out[f"{name}_weight_share"] = float(np.nansum(w[mask]) / np.nansum(w))
    return out


def train_run(config, *, lrs=(), progress: bool = False) -> TrainedRun:
    """Train ``config``; with ``lrs``, once per learning rate, keeping the best on the noisy validation split.

    The data and the label noise are prepared once and shared by every
    candidate (same seed: same noise, same initialisation).  ``lrs`` needs
    ``config.val_fraction > 0``.  ``train_seconds`` is the time of every
    ``train`` call (data preparation excluded).
    """
    from .. import prepare, train

    lrs = [float(x) for x in (lrs or [])]
    if lrs:
        bad = [x for x in lrs if not (math.isfinite(x) and x > 0)]
        if bad:
            raise ValueError(f"lrs must be positive learning rates, got {bad}")
        if len(set(lrs)) != len(lrs):
            raise ValueError(f"lrs {lrs} repeat a learning rate")
        if not config.val_fraction > 0:
            raise ValueError(f"lrs={lrs} needs a noisy validation split to choose on: set val_fraction > 0 "
                             f"(got {config.val_fraction}); the test split is never used to choose")
    data, noisy, _ = prepare(config)
    if not lrs:
        t0 = time.perf_counter()
        result = train(config, data=data, noisy=noisy, progress=progress)
        return TrainedRun(result, config, time.perf_counter() - t0)
    seconds, results, diverged = 0.0, {}, {}
    for lr in lrs:
        cfg = config.replace(lr=lr)
        t0 = time.perf_counter()
        # a candidate whose loss or gradient turns non-finite stops there and cannot be chosen; the run goes on
        res = train(cfg, data=data, noisy=noisy, progress=progress, on_nonfinite="stop")
        seconds += time.perf_counter() - t0
        if (res.epochs_completed or 0) < cfg.epochs:
            diverged[lr] = res.stopped or f"stopped after {res.epochs_completed} epochs"
        else:
            results[lr] = res
    if not results:
        raise FloatingPointError(f"every candidate learning rate of lrs={lrs} stopped early: "
                                 + "; ".join(f"lr {k:g}: {v}" for k, v in diverged.items()))
    chosen = choose_by_validation(results)
    selection = [{"lr": lr, "val_acc": _final(results[lr].history, "val_acc", results[lr].epochs_completed)
                  if lr in results else None, "chosen": lr == chosen,
                  **({"stopped": diverged[lr]} if lr in diverged else {})} for lr in lrs]
    return TrainedRun(results[chosen], config.replace(lr=chosen), seconds, selection)
