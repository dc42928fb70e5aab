"""Clean-vs-noisy separation metrics (scikit-learn's ROC AUC)."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["separation_auc", "separation_table", "precision_at_rate"]


def _check(scores, is_noisy):
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(is_noisy, dtype=bool)
    if s.shape != m.shape or s.ndim != 1:
        raise ValueError(f"scores and is_noisy must be 1-D of one length; got {s.shape} and {m.shape}")
    ok = np.isfinite(s)
    return s[ok], m[ok]


def separation_auc(scores, is_noisy) -> float:
    """ROC AUC of "a higher score says clean".

    1.0: every clean example scores above every mislabelled one; 0.5: no
    separation; below 0.5: the score ranks mislabelled examples *higher* (as
    CE's emphasis weight does: it emphasises the mislabelled).  NaN when only
    one group is present.
    """
    from sklearn.metrics import roc_auc_score  # lazily: keeps `import grlib` fast in every kernel

    s, m = _check(scores, is_noisy)
    if m.all() or not m.any():
        return float("nan")
    return float(roc_auc_score(~m, s))


def precision_at_rate(scores, is_noisy, rate: float | None = None) -> float:
    """Precision of flagging the ``rate`` fraction of *lowest*-scored examples as mislabelled.

    ``rate`` defaults to the true noise rate.
    """
    s, m = _check(scores, is_noisy)
    rate = m.mean() if rate is None else rate
    k = int(round(rate * s.size))
    if k == 0:
        return float("nan")
    flagged = np.argsort(s, kind="stable")[:k]
    return float(m[flagged].mean())


def separation_table(result, fields=("eval_p", "p", "weight"), *, mask="is_noisy") -> pd.DataFrame:
    """Per recorded epoch, the separation AUC ("higher says clean") of each kept record field of a run.

    ``mask`` names the examples to separate from the rest (``"is_noisy"``,
    ``"is_outlier"``, ``"is_corrupted"``, ``"touched"``: see
    :meth:`grlib.RunResult.mask`) or is a boolean ``[n]`` array.  Epoch numbers
    are the run's recorded epochs (a run that kept every k-th epoch has rows
    for those only); rows are read one at a time.
    """
    m = result.mask(mask) if isinstance(mask, str) else np.asarray(mask, dtype=bool)
    kept = [f for f in fields if f in result.records]
    rows = []
    for k, e in enumerate(np.asarray(result.record_epochs).tolist()):
        if result.partial_epoch is not None and e == result.partial_epoch:
            continue  # an interrupted epoch's rows are not a finished epoch
        row = {"epoch": e}
        for f in kept:
            row[f"auc_{f}"] = separation_auc(np.asarray(result.records[f][k]), m)
        rows.append(row)
    return pd.DataFrame(rows, columns=["epoch", *(f"auc_{f}" for f in kept)])
