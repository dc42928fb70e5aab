"""Clean-vs-mislabelled detection: scores from one training run, and cleanlab's cross-validated baseline.

Every score here follows one direction: **higher says clean** (like cleanlab's
label-quality scores, in [0, 1] for probabilities).  The one-run scores come
from :mod:`grlib.scores` (confidence, AUM, forgetting, ...).  :func:`detection_table`
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


def run_scores(result, names=None, *, epochs=None, first_k=None) -> dict[str, np.ndarray]:
    """Scores from one training run (no extra training), oriented so that **higher says clean**.

    A thin wrapper over :func:`grlib.scores.compute_scores` (``orient=True``):
    ``{name: [n] float64}`` for every score of :data:`grlib.scores.SCORES` the
    run has the records for (or ``names``).  Scores whose documented direction
    is "higher says mislabelled" (``forgetting``, ``small_loss``) are negated;
    those with no clear direction (``variability``, ``mean_weight``) come as
    they are: CE's weight ``2(1-p)`` ranks mislabelled examples high, so its
    AUC as "higher says clean" is below 0.5.  ``confidence`` is the mean p of
    the given label over the epochs ("GR's mean p", formerly ``p_mean``);
    ``final_p`` the last epoch's (formerly ``p_final``, which read the
    evaluation pass; this reads the training pass); ``mean_weight`` was
    ``weight_mean``.  ``forgetting``'s "never learnt" (infinite) becomes one
    more flip than the largest finite count, so that AUC tools (which drop or
    refuse infinities) rank those examples as the most suspect.
    """
    from .scores import compute_scores

    out = compute_scores(result, names, epochs=epochs, first_k=first_k, orient=True)
    for name, v in out.items():
        if np.isneginf(v).any():  # oriented: the lowest value is the most suspect
            finite = v[np.isfinite(v)]
            out[name] = np.where(np.isneginf(v), (finite.min() if finite.size else 0.0) - 1.0, v)
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
