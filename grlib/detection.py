"""Clean-vs-mislabelled detection: scores from one training run, and cleanlab's cross-validated baseline.

Every score here follows one direction: **higher says clean** (like cleanlab's
label-quality scores, in [0, 1] for probabilities).  :func:`detection_table`
compares scores by ROC AUC (scikit-learn) and by the precision of flagging the
lowest-scored ``rate`` share as mislabelled, next to the seconds each score
cost to compute.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

from ._checks import check_int
from .config import RunConfig
from .data import Dataset
from .metrics import precision_at_rate, separation_auc
from .noise import NoisyLabels
from .results import RunResult
from .train import predict_proba, train

__all__ = ["cross_val_pred_probs", "cleanlab_scores", "run_scores", "detection_table"]


def _subset(data: Dataset, noisy: NoisyLabels, idx: np.ndarray) -> tuple[Dataset, NoisyLabels]:
    d = replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx],
                x_val=np.zeros((0, data.num_features), np.float32), y_val=np.zeros(0, np.int64))
    nl = NoisyLabels(labels=noisy.labels[idx], true_labels=noisy.true_labels[idx], is_noisy=noisy.is_noisy[idx],
                     transition=noisy.transition, kind=noisy.kind, rate=noisy.rate)
    return d, nl


def cross_val_pred_probs(config: RunConfig, data: Dataset, noisy: NoisyLabels, *, folds: int = 5,
                         progress: bool = False) -> np.ndarray:
    """Out-of-sample predicted probabilities ``[N, C]`` for every training example.

    Stratified K-fold on the *noisy* labels: for each fold, a model is trained
    with ``config`` (usually CE) on the other folds and predicts the held-out
    fold, as cleanlab recommends.  Costs ``folds`` trainings on ``(K-1)/K`` of
    the data.
    """
    from sklearn.model_selection import StratifiedKFold

    folds = check_int("folds", folds, low=2)
    cfg = config.replace(record=False, eval_train=False)
    probs = np.zeros((len(noisy.labels), data.num_classes), np.float32)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    for k, (tr, te) in enumerate(skf.split(data.x_train, noisy.labels)):
        d, nl = _subset(data, noisy, tr)
        r = train(cfg.replace(seed=config.seed + k), data=d, noisy=nl, progress=progress)
        probs[te] = predict_proba(r.model, data.x_train[te])
    return probs


def cleanlab_scores(labels, pred_probs, method: str = "self_confidence") -> np.ndarray:
    """cleanlab's label-quality scores (``cleanlab.rank.get_label_quality_scores``); lower = more likely wrong."""
    from cleanlab.rank import get_label_quality_scores

    return get_label_quality_scores(np.asarray(labels), np.asarray(pred_probs), method=method)


def run_scores(result: RunResult) -> dict[str, np.ndarray]:
    """Scores from one training run (no extra training), each "higher says clean".

    p_final:  probability of the given label at the last epoch (evaluation pass
              if kept, else the training pass).
    p_mean:   its mean over all epochs of the training passes (the "confidence"
              of dataset cartography, Swayamdipta et al. 2020).
    weight_mean: the emphasis weight averaged over epochs.  For CE it is
              ``2(1-p)``, so it ranks mislabelled examples *higher* (AUC < 0.5);
              for GR with ``lam >= 1`` it is not monotone in p.
    """
    p_field = "eval_p" if "eval_p" in result.records else "p"
    out = {"p_final": result.record(p_field, -1)}
    if "p" in result.records:
        out["p_mean"] = np.nanmean(result.record("p"), axis=0)
        out["weight_mean"] = np.nanmean(result.record("weight"), axis=0)
    return out


def detection_table(entries: dict, is_noisy) -> pd.DataFrame:
    """One row per score: ``{name: (scores, seconds)}`` -> AUC, precision at the true noise rate, seconds."""
    rows = []
    for name, (scores, seconds) in entries.items():
        rows.append({"score": name, "roc_auc": separation_auc(scores, is_noisy),
                     "precision_at_rate": precision_at_rate(scores, is_noisy), "seconds": float(seconds)})
    return pd.DataFrame(rows)


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of a call."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t
