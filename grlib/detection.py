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

__all__ = ["cross_val_pred_probs", "cleanlab_scores", "cleanlab_issues", "run_scores", "detection_table",
           "average_precision", "separation_metrics", "flag_metrics", "timed"]


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


def cleanlab_issues(labels, pred_probs, **kwargs) -> np.ndarray:
    """cleanlab's flagged examples (``cleanlab.filter.find_label_issues``), as indices ranked most suspect first.

    ``kwargs`` go to cleanlab (default ``filter_by="prune_by_noise_rate"``,
    its automatic count from the confident joint);
    ``return_indices_ranked_by`` defaults to ``"self_confidence"``.
    """
    from cleanlab.filter import find_label_issues

    kwargs.setdefault("return_indices_ranked_by", "self_confidence")
    out = find_label_issues(np.asarray(labels), np.asarray(pred_probs), **kwargs)
    return np.asarray(out, dtype=np.int64)


def average_precision(scores, is_noisy) -> float:
    """Average precision of finding the mislabelled examples by the lowest scores (higher says clean).

    scikit-learn's ``average_precision_score`` with the mislabelled as the
    positive class and ``-scores`` as their score: the mean precision over
    the recall levels of the ranking, in [0, 1]; a random ranking scores
    the noise rate.  Non-finite scores are left out; NaN when only one group
    is present.
    """
    from sklearn.metrics import average_precision_score

    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(is_noisy, dtype=bool)
    if s.shape != m.shape or s.ndim != 1:
        raise ValueError(f"scores and is_noisy must be 1-D of one length; got {s.shape} and {m.shape}")
    ok = np.isfinite(s)
    s, m = s[ok], m[ok]
    if m.all() or not m.any():
        return float("nan")
    return float(average_precision_score(m, -s))


def separation_metrics(scores, is_noisy) -> dict:
    """``{"roc_auc", "average_precision", "precision_at_rate"}`` of one score (higher says clean)."""
    return {"roc_auc": separation_auc(scores, is_noisy), "average_precision": average_precision(scores, is_noisy),
            "precision_at_rate": precision_at_rate(scores, is_noisy)}


def flag_metrics(flagged, is_noisy, *, candidates=None) -> dict:
    """How good a flagged set is: its size against the true number of mislabelled examples, precision, recall.

    ``flagged``: example indices (or a boolean mask ``[n]``); ``candidates``
    (indices or mask, default all): the examples that could be flagged (e.g.
    without the threshold samples), over which the true count is taken.
    Returns ``n_flagged``, ``n_true``, ``flagged_over_true`` (1 is the right
    count), ``flag_precision`` (share of flagged that are mislabelled; NaN
    when nothing is flagged), ``flag_recall`` (share of the mislabelled that
    are flagged).
    """
    m = np.asarray(is_noisy, dtype=bool).reshape(-1)
    n = m.size
    f = np.asarray(flagged)
    fm = f.astype(bool) if f.dtype == bool else np.isin(np.arange(n), f.astype(np.int64))
    if fm.shape != (n,):
        raise ValueError(f"flagged as a mask must have shape ({n},), got {fm.shape}")
    pool = np.ones(n, bool)
    if candidates is not None:
        c = np.asarray(candidates)
        pool = c.astype(bool) if c.dtype == bool else np.isin(np.arange(n), c.astype(np.int64))
    fm &= pool
    n_true = int((m & pool).sum())
    n_flag = int(fm.sum())
    tp = int((fm & m).sum())
    return {"n_flagged": n_flag, "n_true": n_true,
            "flagged_over_true": n_flag / n_true if n_true else float("nan"),
            "flag_precision": tp / n_flag if n_flag else float("nan"),
            "flag_recall": tp / n_true if n_true else float("nan")}


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
