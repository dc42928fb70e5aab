"""Label-issue scores from one training run: training dynamics, one score per example.

Every score is a function of a run's per-example records (a :class:`~grlib.RunResult`,
or the folder of a saved or recorded run) and returns a float64 array ``[n]``,
one value per training example, NaN for an example never seen in the epochs used.
No extra training is needed: the run you already did is the detector.

=============  ===========================  ==========================  ================================
name           what                         range                       direction
=============  ===========================  ==========================  ================================
confidence     mean p of the given label    [0, 1]                      higher says clean
               over epochs (data maps)
variability    population std of that p     [0, 0.5]                    no clear direction
correctness    share of epochs predicted    [0, 1]                      higher says clean
               as the given label
aum            mean margin: given-label     real (logit units)          higher says clean
               logit minus largest other
forgetting     correct-to-wrong flips       0, 1, 2, ... or inf         higher says mislabelled
               (inf: never learnt)
final_p        p of the given label at the  [0, 1]                      higher says clean
               last epoch it was seen
mean_weight    mean emphasis weight (its    [0, 1]                      no clear direction
               share of its batch)
small_loss     mean rank of -log p within   [0, 1]                      higher says mislabelled
               each epoch (0 smallest)
=============  ===========================  ==========================  ================================

References: data maps (Swayamdipta et al. 2020, allenai/cartography:
confidence, variability, correctness), Area Under the Margin (Pleiss et al.
2020, asappresearch/aum), forgetting events (Toneva et al. 2019, counted as in
cartography), small-loss selection (co-teaching, Han et al. 2018).
``confidence`` of a GR run is "GR's mean p" (grlib's benchmark pages).

Where the numbers come from.  A run recorded by grlib keeps running
``summaries`` over *every* epoch of the training pass (``n_seen``, ``p_sum``,
...); without an epoch window, a score is computed from them.  Otherwise (an
epoch window, ``source="eval"``, a run without summaries, or a score the
summaries do not cover: ``final_p``, ``small_loss``) it streams over the
recorded rows of ``records[field]`` (``[rows, n]``, row ``k`` = epoch
``record_epochs[k]``), one row at a time with ``[n]``-sized accumulators, so a
disk-backed run of a million examples is never loaded whole.  With records
kept every ``k`` epochs, the streamed scores use the recorded epochs only
(``forgetting`` then counts flips between consecutive *recorded* epochs).

Epoch windows (``epochs=(first, last)``, 1-based and inclusive, or
``first_k=k`` for epochs 1..k): early epochs separate clean from mislabelled
examples best, before the network memorises the wrong labels.

:data:`SCORES` is the registry (name -> :class:`ScoreSpec` with the function,
direction and range); :func:`find_label_issues` ranks and flags, and
:func:`label_issues_frame` gives one row per example.
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ._checks import check_choice, check_int, check_real

__all__ = ["SCORES", "ScoreSpec", "DEFAULT_SCORE", "CLEAN_HIGH", "NOISY_HIGH", "NO_DIRECTION", "score_names",
           "compute_scores", "oriented", "confidence", "variability", "correctness", "aum", "forgetting",
           "final_p", "mean_weight", "small_loss", "find_label_issues", "label_issues_frame", "flag_threshold",
           "FlagThreshold", "make_threshold_samples", "ThresholdSamples", "with_threshold_samples",
           "default_percentile", "FLAG_METHODS"]

CLEAN_HIGH = "higher says clean"
NOISY_HIGH = "higher says mislabelled"
NO_DIRECTION = "no clear direction"
SOURCES = ("train", "eval")

#: How to get each record field into a run, for the error a score gives when it is missing.
_HOW_TO_RECORD = {
    "p": "record 'p' with grlib.Recorder(fields=[..., 'p']) (grlib.train keeps it unless record=False)",
    "pred": "record 'pred' with grlib.Recorder(fields=[..., 'pred']) (grlib.train keeps it unless record=False)",
    "margin": "record 'margin' with grlib.Recorder(fields=[..., 'margin']) (grlib.train keeps it unless record=False)",
    "weight": ("record 'weight' with grlib.Recorder(fields=[..., 'weight']) and pass the loss's details "
               "(rec.update(index, logits, targets, out=loss.details(logits, targets)))"),
    "eval_p": "keep the evaluation pass: grlib.train(eval_train=True) or Recorder.update_eval(...)",
    "eval_pred": "keep the evaluation pass: grlib.train(eval_train=True) or Recorder.update_eval(...)",
}
#: The running summary that stands for a record field over the whole run.
_SUMMARY_OF = {"p": "p_sum", "pred": "n_correct", "margin": "margin_sum", "weight": "weight_sum"}


# -- the run and its rows ---------------------------------------------------------------------------
def _as_result(result):
    from .results import RunResult

    if isinstance(result, RunResult):
        return result
    if isinstance(result, (str, PathLike)):
        return RunResult.load(Path(result))
    raise TypeError(f"result must be a grlib.RunResult or the folder of a saved run, got {type(result).__name__}")


class _Run:
    """A run's records restricted to an epoch window; yields rows one at a time."""

    def __init__(self, result, *, epochs=None, first_k=None):
        self.result = result = _as_result(result)
        self.y_given = np.asarray(result.y_given)
        self.n = int(self.y_given.size)
        if self.n == 0:
            raise ValueError("the run has no examples (y_given is empty); nothing to score")
        self.summaries = result.summaries
        self.completed = int(result.epochs_completed)
        self.last_epoch = self._last_epoch()
        if self.last_epoch == 0:
            rows = any(np.shape(a)[0] for a in result.records.values())
            why = (f"epochs_completed={self.completed}: its rows are of an unfinished epoch" if rows
                   else "no record rows and no running summaries")
            raise ValueError(f"the run recorded no epochs ({why}); nothing to score")
        self.window = _check_window(epochs, first_k, self.last_epoch)

    def _row_epochs(self, rows: int) -> np.ndarray:
        """The epoch of each record row, the rows of unfinished epochs (an interrupted run's) left out."""
        ep = np.asarray(self.result.record_epochs, dtype=np.int64)[:rows]
        return ep[ep <= self.completed]

    def _last_epoch(self) -> int:
        last = 0
        for arr in self.result.records.values():
            ep = self._row_epochs(int(np.shape(arr)[0]))
            if ep.size:
                last = max(last, int(ep.max()))
        n_seen = self.summaries.get("n_seen")
        if n_seen is not None and np.size(n_seen) and np.max(n_seen) > 0:
            last = max(last, self.completed)
        return last

    def use_summaries(self, keys) -> bool:
        """True when no window is asked for and the running summaries hold ``keys``."""
        return self.window is None and all(k in self.summaries for k in ("n_seen", *keys))

    def summary(self, key) -> np.ndarray:
        arr = np.asarray(self.summaries[key])
        if arr.shape != (self.n,):
            raise ValueError(f"summaries[{key!r}] has shape {arr.shape}; expected ({self.n},), one per example")
        return arr

    def require(self, field: str, score: str):
        if field not in self.result.records:
            kept = sorted(self.result.records)
            hint = ""
            if self.window is not None and _SUMMARY_OF.get(field) in self.summaries:
                hint = (f"; without an epoch window its running summaries ({_SUMMARY_OF[field]!r}) give it over "
                        f"the whole run")
            raise ValueError(f"score {score!r} needs the per-example record {field!r}, which this run did not keep "
                             f"(kept: {kept or 'none'}); {_HOW_TO_RECORD.get(field, f'record {field!r}')}{hint}")
        arr = self.result.records[field]
        if np.ndim(arr) != 2 or np.shape(arr)[1] != self.n:
            raise ValueError(f"records[{field!r}] has shape {np.shape(arr)}; expected [rows, {self.n}]")
        return arr

    def rows(self, field: str, score: str, *, reverse: bool = False):
        """``(epoch, row)`` for each recorded row inside the window (one row in memory at a time)."""
        arr = self.require(field, score)
        ep = self._row_epochs(int(np.shape(arr)[0]))
        keep = np.ones(ep.size, bool) if self.window is None else (ep >= self.window[0]) & (ep <= self.window[1])
        ks = np.flatnonzero(keep)
        if ks.size == 0:
            raise ValueError(f"no recorded epoch of {field!r} falls inside epochs={self.window}; recorded epochs: "
                             f"{_describe_epochs(ep)}")
        for k in (ks[::-1] if reverse else ks):
            yield int(ep[k]), np.asarray(arr[k])


def _describe_epochs(ep: np.ndarray) -> str:
    if ep.size == 0:
        return "none"
    if ep.size > 8:
        return f"{', '.join(map(str, ep[:4]))}, ..., {ep[-1]} ({ep.size} rows)"
    return ", ".join(map(str, ep))


def _check_window(epochs, first_k, last_epoch: int):
    if epochs is not None and first_k is not None:
        raise ValueError(f"give epochs={epochs!r} or first_k={first_k!r}, not both")
    if first_k is not None:
        k = check_int("first_k", first_k, low=1)
        if k > last_epoch:
            raise ValueError(f"first_k={k} asks for epochs the run did not record: it recorded epochs up to "
                             f"{last_epoch}; allowed: 1 <= first_k <= {last_epoch}")
        return (1, k)
    if epochs is None:
        return None
    if not isinstance(epochs, (tuple, list)) or len(epochs) != 2:
        raise TypeError(f"epochs must be a pair (first, last) of 1-based epochs, got {epochs!r}")
    first = check_int("epochs[0] (first)", epochs[0], low=1)
    last = check_int("epochs[1] (last)", epochs[1], low=1)
    if first > last:
        raise ValueError(f"epochs={tuple(epochs)!r}: first must be <= last")
    if last > last_epoch:
        raise ValueError(f"epochs={tuple(epochs)!r} lies outside the recorded epochs 1..{last_epoch}")
    return (first, last)


def _source_fields(source: str) -> tuple[str, str]:
    check_choice("source", source, SOURCES)
    return ("p", "pred") if source == "train" else ("eval_p", "eval_pred")


# -- the scores -------------------------------------------------------------------------------------
def confidence(result, *, epochs=None, first_k=None, source: str = "train") -> np.ndarray:
    """Mean probability of the given label over the epochs (data maps' *confidence*).

    ``[n]`` float64 in [0, 1]; **higher says clean**; NaN where never seen.
    For a GR run this is "GR's mean p".  ``source="eval"`` uses the evaluation
    pass at the end of each epoch (``eval_p``) instead of the training pass.
    Cartography: ``np.mean(true_probs_trend)``.
    """
    mean, _ = _p_moments(result, epochs, first_k, source, "confidence")
    return mean


def variability(result, *, epochs=None, first_k=None, source: str = "train") -> np.ndarray:
    """Population standard deviation of the given label's probability over the epochs (data maps).

    ``[n]`` float64 in [0, 0.5]; **no clear direction** (high for examples
    learnt late or flipping; both clean hard examples and mislabelled ones).
    Cartography: ``np.std(true_probs_trend)`` (ddof 0).
    """
    _, std = _p_moments(result, epochs, first_k, source, "variability")
    return std


def _p_moments(result, epochs, first_k, source, score):
    run = _Run(result, epochs=epochs, first_k=first_k)
    p_field, _ = _source_fields(source)
    with np.errstate(invalid="ignore", divide="ignore"):
        if source == "train" and run.use_summaries(("p_sum", "p_sq_sum")):
            cnt = run.summary("n_seen").astype(np.float64)
            mean = run.summary("p_sum") / cnt
            var = np.maximum(run.summary("p_sq_sum") / cnt - mean ** 2, 0.0)
            return _nan_unseen(mean, cnt), _nan_unseen(np.sqrt(var), cnt)
    cnt = np.zeros(run.n)
    mean = np.zeros(run.n)
    m2 = np.zeros(run.n)
    for _, row in run.rows(p_field, score):
        x = row.astype(np.float64)
        s = np.isfinite(x)
        cnt[s] += 1
        d = x[s] - mean[s]
        mean[s] += d / cnt[s]
        m2[s] += d * (x[s] - mean[s])  # Welford: stable for tiny variances
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_unseen(mean, cnt), _nan_unseen(np.sqrt(m2 / cnt), cnt)


def _nan_unseen(values, count) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).copy()
    out[np.asarray(count) <= 0] = np.nan
    return out


def correctness(result, *, epochs=None, first_k=None, source: str = "train") -> np.ndarray:
    """Share of the epochs in which the prediction was the given label.

    ``[n]`` float64 in [0, 1]; **higher says clean**.  Cartography keeps the
    count (``sum(trend)``); this is that count over the epochs seen.
    """
    run = _Run(result, epochs=epochs, first_k=first_k)
    _, pred_field = _source_fields(source)
    if source == "train" and run.use_summaries(("n_correct",)):
        cnt = run.summary("n_seen")
        with np.errstate(invalid="ignore", divide="ignore"):
            return _nan_unseen(run.summary("n_correct") / cnt, cnt)
    cnt, right = _correct_counts(run, pred_field, "correctness")
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_unseen(right / cnt, cnt)


def _correct_counts(run, pred_field, score):
    cnt = np.zeros(run.n, np.int64)
    right = np.zeros(run.n, np.int64)
    for _, row in run.rows(pred_field, score):
        s = row >= 0
        cnt += s
        right += s & (row == run.y_given)
    return cnt, right


def aum(result, *, epochs=None, first_k=None) -> np.ndarray:
    """Area Under the Margin: the mean over epochs of (logit of the given label - largest other logit).

    ``[n]`` float64, real-valued (logit units); **higher says clean** (a
    mislabelled example's given label is pushed down by its true class's
    neighbours).  From the training pass's ``margin`` record (or the running
    ``margin_sum``), as ``aum.AUMCalculator`` computes it (Pleiss et al. 2020).
    """
    run = _Run(result, epochs=epochs, first_k=first_k)
    if run.use_summaries(("margin_sum",)):
        cnt = run.summary("n_seen")
        with np.errstate(invalid="ignore", divide="ignore"):
            return _nan_unseen(run.summary("margin_sum") / cnt, cnt)
    return _mean_of(run, "margin", "aum")


def _mean_of(run, field, score):
    cnt = np.zeros(run.n)
    tot = np.zeros(run.n)
    for _, row in run.rows(field, score):
        x = row.astype(np.float64)
        s = np.isfinite(x)
        cnt[s] += 1
        tot[s] += x[s]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_unseen(tot / cnt, cnt)


def forgetting(result, *, epochs=None, first_k=None, source: str = "train") -> np.ndarray:
    """Forgetting events: correct-to-wrong flips between consecutive epochs in which the example was seen.

    ``[n]`` float64 counts 0, 1, 2, ...; ``inf`` for an example never predicted
    as its given label (never learnt counts as most suspect, as cartography's
    ``compute_forgetfulness`` does with 1000); **higher says mislabelled**.
    Toneva et al. 2019.
    """
    run = _Run(result, epochs=epochs, first_k=first_k)
    _, pred_field = _source_fields(source)
    if source == "train" and run.use_summaries(("n_forget", "n_correct")):
        cnt = run.summary("n_seen")
        out = run.summary("n_forget").astype(np.float64)
        out[run.summary("n_correct") == 0] = np.inf
        return _nan_unseen(out, cnt)
    cnt = np.zeros(run.n, np.int64)
    ever = np.zeros(run.n, bool)
    prev = np.full(run.n, -1, np.int8)  # -1 not seen yet, else 0/1 correct at the last seen epoch
    flips = np.zeros(run.n, np.int64)
    for _, row in run.rows(pred_field, "forgetting"):
        s = row >= 0
        ok = s & (row == run.y_given)
        flips += s & (prev == 1) & ~ok
        prev[s] = ok[s]
        ever |= ok
        cnt += s
    out = flips.astype(np.float64)
    out[~ever] = np.inf
    return _nan_unseen(out, cnt)


def final_p(result, *, epochs=None, first_k=None, source: str = "train") -> np.ndarray:
    """Probability of the given label at the last epoch (of the window) in which the example was seen.

    ``[n]`` float64 in [0, 1]; **higher says clean**.  ``source="eval"`` reads
    the evaluation pass after the epoch (the model as it ended the epoch).
    """
    run = _Run(result, epochs=epochs, first_k=first_k)
    p_field, _ = _source_fields(source)
    out = np.full(run.n, np.nan)
    for _, row in run.rows(p_field, "final_p", reverse=True):
        x = row.astype(np.float64)
        fill = np.isnan(out) & np.isfinite(x)
        out[fill] = x[fill]
        if not np.isnan(out).any():
            break
    return out


def mean_weight(result, *, epochs=None, first_k=None) -> np.ndarray:
    """Mean emphasis weight over the epochs (the example's share of its batch's total weight).

    ``[n]`` float64 in [0, 1] (``1/B`` on average for batches of ``B``); **no
    clear direction**: CE's weight ``2(1-p)`` ranks mislabelled examples high
    (AUC 0.10 as "higher says clean" on Fashion-MNIST), GR's is not monotone in p.
    """
    run = _Run(result, epochs=epochs, first_k=first_k)
    if run.use_summaries(("weight_sum",)):
        cnt = run.summary("n_seen")
        with np.errstate(invalid="ignore", divide="ignore"):
            return _nan_unseen(run.summary("weight_sum") / cnt, cnt)
    return _mean_of(run, "weight", "mean_weight")


def small_loss(result, *, epochs=None, first_k=None, source: str = "train") -> np.ndarray:
    """Mean normalised rank of the cross-entropy ``-log p`` within each epoch (small-loss selection).

    In each epoch, the examples seen are ranked by ``-log p`` (ties share their
    mean rank) and the rank is scaled to [0, 1] (0: smallest loss, 1: largest);
    the score is its mean over epochs.  ``[n]`` float64 in [0, 1]; **higher
    says mislabelled** (co-teaching keeps the small-loss examples as clean).
    This is the cross-entropy of the given label, not the value of the run's
    own loss (GR's surrogate loss is not a loss in that sense).
    """
    from scipy.stats import rankdata

    run = _Run(result, epochs=epochs, first_k=first_k)
    p_field, _ = _source_fields(source)
    cnt = np.zeros(run.n)
    tot = np.zeros(run.n)
    for _, row in run.rows(p_field, "small_loss"):
        x = row.astype(np.float64)
        s = np.isfinite(x)
        m = int(s.sum())
        if m == 0:
            continue
        r = (rankdata(-x[s]) - 1.0) / (m - 1) if m > 1 else np.full(1, 0.5)  # -log p ranks as -p does
        cnt[s] += 1
        tot[s] += r
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_unseen(tot / cnt, cnt)


# -- the registry -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreSpec:
    """One score: its function ``fn(result, **window) -> [n]``, direction, range and the records it needs."""

    name: str
    fn: Callable[..., np.ndarray]
    direction: str
    range: str
    needs: tuple  # record fields of the training pass
    summary_keys: tuple  # running summaries that replace them (empty: records only)
    has_source: bool  # takes source="train" | "eval"
    neutral: float | None  # the value at which the model is indifferent to the given label (None: no such point)

    def __call__(self, result, **kwargs) -> np.ndarray:
        return self.fn(result, **kwargs)


SCORES: dict[str, ScoreSpec] = {s.name: s for s in (
    ScoreSpec("confidence", confidence, CLEAN_HIGH, "[0, 1]", ("p",), ("p_sum",), True, 0.5),
    ScoreSpec("variability", variability, NO_DIRECTION, "[0, 0.5]", ("p",), ("p_sum", "p_sq_sum"), True, None),
    ScoreSpec("correctness", correctness, CLEAN_HIGH, "[0, 1]", ("pred",), ("n_correct",), True, 0.5),
    ScoreSpec("aum", aum, CLEAN_HIGH, "real (logit units)", ("margin",), ("margin_sum",), False, 0.0),
    ScoreSpec("forgetting", forgetting, NOISY_HIGH, "0, 1, 2, ... or inf (never learnt)", ("pred",),
              ("n_forget", "n_correct"), True, None),
    ScoreSpec("final_p", final_p, CLEAN_HIGH, "[0, 1]", ("p",), (), True, 0.5),
    ScoreSpec("mean_weight", mean_weight, NO_DIRECTION, "[0, 1]", ("weight",), ("weight_sum",), False, None),
    ScoreSpec("small_loss", small_loss, NOISY_HIGH, "[0, 1]", ("p",), (), True, None),
)}

#: The score find_label_issues ranks by unless told otherwise (see its docstring for the measurements).
DEFAULT_SCORE = "confidence"


def score_names(*, ranked: bool = False) -> list[str]:
    """The registered score names; ``ranked=True``: only those with a direction (usable for ranking)."""
    return [k for k, s in SCORES.items() if not ranked or s.direction != NO_DIRECTION]


def _spec(name, *, ranked=False, param="score") -> ScoreSpec:
    allowed = score_names(ranked=ranked)
    if isinstance(name, str) and ranked and name in SCORES and name not in allowed:
        raise ValueError(f"{param}={name!r} has no clear direction ({SCORES[name].direction}), so it cannot rank "
                         f"examples; use it as a feature (label_issues_frame). Ranking scores: "
                         f"{', '.join(map(repr, allowed))}")
    check_choice(param, name, allowed)
    return SCORES[name]


def _call(spec: ScoreSpec, result, *, epochs=None, first_k=None, source="train") -> np.ndarray:
    kw = {"epochs": epochs, "first_k": first_k}
    if spec.has_source:
        kw["source"] = source
    elif source != "train":
        check_choice("source", source, SOURCES)
        raise ValueError(f"score {spec.name!r} comes from the training pass only; source={source!r} is not "
                         f"available for it (allowed: 'train')")
    return spec.fn(result, **kw)


def _available(run: _Run, spec: ScoreSpec, source: str) -> bool:
    if source == "eval" and spec.has_source:
        needs = tuple("eval_" + f for f in spec.needs)
        return all(f in run.result.records for f in needs)
    if source == "eval":
        return False
    if spec.summary_keys and run.use_summaries(spec.summary_keys):
        return True
    return all(f in run.result.records for f in spec.needs)


def oriented(name: str, values) -> np.ndarray:
    """A score turned to "higher says clean" (negated where higher says mislabelled); refuses undirected ones."""
    spec = _spec(name, ranked=True, param="name")
    v = np.asarray(values, dtype=np.float64)
    return -v if spec.direction == NOISY_HIGH else v.copy()


def compute_scores(result, names=None, *, epochs=None, first_k=None, source: str = "train",
                   orient: bool = False) -> dict[str, np.ndarray]:
    """Several scores of one run: ``{name: [n] float64}``.

    ``names``: a list of registered names (default: every score this run has
    the records for).  ``orient=True`` turns the directed scores to "higher
    says clean" (undirected ones are returned as they are).
    """
    run = _Run(result, epochs=epochs, first_k=first_k)
    if names is None:
        specs = [s for s in SCORES.values() if _available(run, s, source)]
    else:
        if isinstance(names, str):
            names = [names]
        specs = [_spec(n, param="names") for n in names]
    out = {}
    for s in specs:
        v = _call(s, run.result, epochs=epochs, first_k=first_k, source=source)
        out[s.name] = -v if orient and s.direction == NOISY_HIGH else v
    return out


# -- threshold samples (AUM) ------------------------------------------------------------------------
class ThresholdSamples(NamedTuple):
    """Threshold samples for one run: ``labels`` ``[n]`` (the given labels, with the chosen examples
    relabelled to the fake class), ``mask`` ``[n]`` bool (the chosen examples), ``fake_class`` (= C)
    and ``num_classes`` (= C + 1, the outputs the model needs)."""

    labels: np.ndarray
    mask: np.ndarray
    fake_class: int
    num_classes: int


def make_threshold_samples(labels, num_classes: int, *, fraction: float | None = None, seed: int = 0,
                           exclude=None) -> ThresholdSamples:
    """Pick threshold samples and relabel them to a fake class ``C`` (AUM, Pleiss et al. 2020).

    ``fraction`` of the examples (default ``1 / (C + 1)``: as many as an
    average class, as the paper) are chosen uniformly at random and given the
    label ``C``; the model must then have ``C + 1`` outputs.  Every threshold
    sample is mislabelled by construction, so the 99th percentile of their AUM
    is the threshold below which :func:`find_label_issues` flags the other
    examples (pass ``threshold_samples=ts.mask``).  The threshold samples
    themselves are not scored in that run: train a second run with a disjoint
    set (``exclude=first.mask``) to score them, as the paper does.  With only
    a hundred or so threshold samples the paper's 99th percentile is fragile:
    :func:`find_label_issues` then uses a lower one (:func:`default_percentile`).
    :func:`with_threshold_samples` does this for a ``grlib.prepare`` data set.

    Returns a :class:`ThresholdSamples` ``(labels, mask, fake_class, num_classes)``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be a 1-D integer array of class indices, got dtype {y.dtype}, "
                        f"shape {y.shape}")
    C = check_int("num_classes", num_classes, low=2)
    if y.size and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"labels must lie in [0, {C - 1}] for num_classes={C}; got values in [{y.min()}, {y.max()}]")
    if fraction is None:
        fraction = 1.0 / (C + 1)
    fraction = check_real("fraction", fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    seed = check_int("seed", seed, low=0)
    pool = np.ones(y.size, bool)
    if exclude is not None:
        pool &= ~_as_mask(exclude, y.size, "exclude")
    k = int(round(fraction * y.size))
    if k < 1:
        raise ValueError(f"fraction={fraction:g} of {y.size} examples picks no threshold sample; allowed: "
                         f"fraction >= {1 / max(y.size, 1):.3g}")
    if k > pool.sum():
        raise ValueError(f"fraction={fraction:g} asks for {k} threshold samples but only {int(pool.sum())} "
                         f"examples are left after exclude")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.flatnonzero(pool), size=k, replace=False)
    mask = np.zeros(y.size, bool)
    mask[chosen] = True
    new = y.astype(np.int64).copy()
    new[mask] = C
    return ThresholdSamples(labels=new, mask=mask, fake_class=C, num_classes=C + 1)


def with_threshold_samples(data, noisy, *, fraction: float | None = None, seed: int = 0, exclude=None):
    """A data set and its noisy labels with AUM threshold samples added, ready for :func:`grlib.train`.

    ``data`` is a :class:`grlib.Dataset` and ``noisy`` its
    :class:`grlib.NoisyLabels` (both from ``grlib.prepare(config)``).
    Returns ``(data, noisy, ts)``: ``data`` with ``num_classes + 1`` classes
    (the extra one named ``"threshold"`` when the classes have names; the
    splits are unchanged, so the test accuracy stays that of the real
    classes), ``noisy`` with the threshold samples relabelled to the fake
    class and counted as mislabelled (``is_noisy``; their true labels are
    kept), and the :class:`ThresholdSamples` (``ts.mask`` goes to
    ``find_label_issues(threshold_samples=...)``)::

        data, noisy, _ = grlib.prepare(config)
        data, noisy, ts = grlib.scores.with_threshold_samples(data, noisy, seed=1)
        result = grlib.train(config, data=data, noisy=noisy)   # the model gets C + 1 outputs
        flagged = grlib.find_label_issues(result, score="aum", threshold_samples=ts.mask, first_k=...)

    With your own ``(X, y)``: ``ts = make_threshold_samples(y, C)``, then
    ``grlib.train(config.replace(noise="none"), data=(X, ts.labels), model=<C + 1 outputs>)``
    (with ``noise="none"``: synthetic noise would also move examples into the fake class).
    """
    from dataclasses import replace

    from .data import Dataset
    from .noise import NoisyLabels

    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a grlib.Dataset (e.g. from grlib.prepare), got {type(data).__name__}")
    if not isinstance(noisy, NoisyLabels):
        raise TypeError(f"noisy must be a grlib.NoisyLabels (e.g. from grlib.prepare), got {type(noisy).__name__}")
    if noisy.labels.shape != (len(data.y_train),):
        raise ValueError(f"noisy has {noisy.labels.size} labels for {len(data.y_train)} training examples")
    ts = make_threshold_samples(noisy.labels, data.num_classes, fraction=fraction, seed=seed, exclude=exclude)
    names = tuple(data.class_names) + ("threshold",) if data.class_names else ()
    new_data = replace(data, num_classes=ts.num_classes, class_names=names)
    new_noisy = replace(noisy, labels=ts.labels, is_noisy=np.asarray(noisy.is_noisy, bool) | ts.mask)
    return new_data, new_noisy, ts


def _as_mask(value, n: int, param: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype == bool:
        if a.shape != (n,):
            raise ValueError(f"{param} as a boolean mask must have shape ({n},), got {a.shape}")
        return a.copy()
    if a.ndim == 1 and (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
        if a.size and (a.min() < 0 or a.max() >= n):
            raise ValueError(f"{param} indices must lie in [0, {n - 1}]; got values in [{a.min()}, {a.max()}]")
        m = np.zeros(n, bool)
        m[a.astype(np.int64)] = True
        return m
    raise TypeError(f"{param} must be a boolean mask of shape ({n},) or an array of example indices, "
                    f"got dtype {a.dtype}, shape {a.shape}")


# -- ranking and flagging ---------------------------------------------------------------------------
_GMM_MAX_FIT = 100_000  # examples the mixture is fitted on (a random subset beyond that)


def _gmm_cut(x: np.ndarray, seed: int) -> tuple[float, float]:
    """``(cut, low_mean)`` of a two-component 1-D Gaussian mixture fitted to ``x``.

    Values below ``cut`` belong to the low component: the cut is where the
    low component's posterior falls to 0.5 between the two means (a wide low
    component can win again far in the upper tail; those confident examples
    are not flagged).  ``low_mean`` is the low component's mean.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = np.asarray(x, dtype=np.float64)
    fit = x
    if x.size > _GMM_MAX_FIT:
        fit = np.random.default_rng(seed).choice(x, size=_GMM_MAX_FIT, replace=False)
    gm = GaussianMixture(n_components=2, random_state=seed, max_iter=1000, tol=1e-5, reg_covar=1e-6, n_init=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the cut is read off whatever it reached
        gm.fit(fit[:, None])
    mu = gm.means_.ravel()
    lo, hi = int(np.argmin(mu)), int(np.argmax(mu))
    xs = np.unique(x[(x >= mu[lo]) & (x <= mu[hi])])
    if xs.size == 0:
        return float(mu[lo]), float(mu[lo])
    post = gm.predict_proba(xs[:, None])[:, lo]
    above = np.flatnonzero(post <= 0.5)
    return (float(xs[above[0]]) if above.size else float(mu[hi])), float(mu[lo])


def _transform_for_gmm(name: str, s: np.ndarray) -> np.ndarray:
    """Spread bounded scores before the mixture: logit for [0, 1] scores (their masses pile up at 0 and 1)."""
    if name in ("confidence", "final_p", "correctness", "small_loss"):
        eps = 1e-4
        v = np.clip(s + 1.0 if name == "small_loss" else s, eps, 1 - eps)  # small_loss arrives as -rank
        return np.log(v) - np.log1p(-v)
    return s


def _untransform(name: str, x: float) -> float:
    """The inverse of :func:`_transform_for_gmm` (for the oriented score: small_loss arrives as -rank)."""
    if name in ("confidence", "final_p", "correctness"):
        return float(1.0 / (1.0 + np.exp(-x)))
    if name == "small_loss":
        return float(1.0 / (1.0 + np.exp(-x))) - 1.0
    return float(x)


#: Threshold samples kept above the cut when ``threshold_percentile`` is left to grlib (see :func:`default_percentile`).
MIN_ABOVE_CUT = 5
FLAG_METHODS = ("threshold_samples", "mixture", "num_issues", "noise_rate", "none")


def default_percentile(n_threshold_samples: int) -> float:
    """The percentile of the threshold samples' scores that sets the cut when none is given.

    The paper's 99th percentile, lowered for small sets so that at least
    :data:`MIN_ABOVE_CUT` (5) threshold samples lie above it:
    ``min(99, 100 * (1 - 5 / m))`` for ``m`` threshold samples (never below
    50).  The paper had tens of thousands of threshold samples, so its 99th
    percentile sits among hundreds of them; with ``m = 122`` (digits) the
    99th percentile is the second-largest score, and one memorised threshold
    sample moves it above most clean examples.  The rule gives 99 from
    ``m = 500`` on, 95.9 for ``m = 122``.
    """
    m = check_int("n_threshold_samples", n_threshold_samples, low=1)
    return float(max(50.0, min(99.0, 100.0 * (1.0 - MIN_ABOVE_CUT / m))))


class FlagThreshold(NamedTuple):
    """How :func:`find_label_issues` counted: ``value`` is the cut in the score's own units (NaN when it
    flags nothing or when no cut applies), ``count`` the number flagged, ``method`` one of
    :data:`FLAG_METHODS`, ``percentile`` the threshold samples' percentile used (NaN otherwise),
    ``score`` the score's name, ``direction`` its direction.  Flagged examples lie at or below
    ``value`` for scores where higher says clean, at or above it where higher says mislabelled."""

    value: float
    count: int
    method: str
    percentile: float
    score: str
    direction: str


class _Ranking(NamedTuple):
    order: np.ndarray      # ranked example indices, most suspect first
    count: int             # how many of them are flagged
    values: np.ndarray     # the raw score [n]
    ts: np.ndarray | None  # the threshold-sample mask [n]
    threshold: FlagThreshold


def _rank_and_count(result, *, score, epochs, first_k, source, threshold_samples, threshold_percentile,
                    num_issues, noise_rate, seed, need_count=True, warn=True) -> _Ranking:
    spec = _spec(score, ranked=True)
    run = _Run(result, epochs=epochs, first_k=first_k)
    given = [k for k, v in (("threshold_samples", threshold_samples), ("num_issues", num_issues),
                            ("noise_rate", noise_rate)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of threshold_samples, num_issues, noise_rate (got {', '.join(given)})")
    seed = check_int("seed", seed, low=0)
    if num_issues is not None:
        num_issues = check_int("num_issues", num_issues, low=0)
    if noise_rate is not None:
        noise_rate = check_real("noise_rate", noise_rate, low=0.0, high=1.0)
    if threshold_percentile is not None:
        threshold_percentile = check_real("threshold_percentile", threshold_percentile, low=0.0, high=100.0)
    values = _call(spec, run.result, epochs=epochs, first_k=first_k, source=source)
    sign = -1.0 if spec.direction == NOISY_HIGH else 1.0
    s = sign * values  # higher says clean
    candidates = np.isfinite(s) | np.isinf(s)  # seen in the window (forgetting's never-learnt is -inf here)
    ts = None
    if threshold_samples is not None:
        ts = _as_mask(threshold_samples, run.n, "threshold_samples")
        if not ts.any():
            raise ValueError("threshold_samples selects no example")
        fake = np.unique(run.y_given[ts])
        if fake.size != 1 or np.any(run.y_given[~ts] == fake[0]):
            raise ValueError("threshold samples must all carry one fake class that no other example carries "
                             f"(their given labels: {fake.tolist()[:10]}); make them with "
                             "grlib.make_threshold_samples and train on its labels")
        candidates &= ~ts
    pool = np.flatnonzero(candidates)
    if pool.size == 0:
        raise ValueError(f"no example was seen in the epochs used; score {score!r} is NaN everywhere")
    order = pool[np.argsort(s[pool], kind="stable")]  # most suspect (lowest) first; ties by index
    cut, method, q = np.nan, "none", np.nan  # cut: oriented ("higher says clean") units
    if ts is not None:
        tv = s[ts & np.isfinite(s)]
        if tv.size == 0:
            raise ValueError("no threshold sample was seen in the epochs used; cannot set the threshold")
        q = default_percentile(tv.size) if threshold_percentile is None else threshold_percentile
        if warn and tv.size < 50:
            import warnings

            warnings.warn(f"only {tv.size} threshold samples were seen: a percentile of so few scores is a fragile "
                          f"threshold (the {q:g}th is used); make more (make_threshold_samples(fraction=...))",
                          UserWarning, stacklevel=3)
        cut = float(np.percentile(tv, q))
        count = int(np.sum(s[pool] <= cut))
        method = "threshold_samples"
    elif not need_count:
        count = pool.size
    elif num_issues is not None:
        count = check_int("num_issues", num_issues, low=0, high=pool.size)
        method = "num_issues"
    elif noise_rate is not None:
        count = int(round(noise_rate * pool.size))
        method = "noise_rate"
    else:
        method = "mixture"
        finite = np.isfinite(s[pool])
        x = _transform_for_gmm(spec.name, s[pool][finite])
        count = 0  # one value: nothing stands out
        if np.unique(x).size >= 2:
            xcut, low_mean = _gmm_cut(x, seed)
            count = int(np.sum(x < xcut)) + int(np.sum(~finite))  # -inf (never learnt) counts as flagged
            cut = _untransform(spec.name, xcut)
            if spec.neutral is not None:
                neutral = float(_transform_for_gmm(spec.name, np.array([spec.neutral], dtype=np.float64))[0])
                if low_mean >= neutral:
                    count, cut = 0, np.nan
                    if warn:
                        import warnings

                        at = _untransform(spec.name, low_mean)
                        warnings.warn(
                            f"the mixture's low group of {score!r} scores is centred at {at:.3g}, at or above "
                            f"{spec.neutral:g}, where the model favours the given label: no group of "
                            f"likely-mislabelled examples stands out, so none is flagged. The data may be clean, or "
                            f"the network memorised the wrong labels (then try an early epoch window, e.g. "
                            f"first_k=10). For the ranking anyway use return_all=True, or num_issues= / noise_rate= "
                            f"for a count you choose", UserWarning, stacklevel=3)
    if method in ("num_issues", "noise_rate") and count > 0:
        cut = float(s[order[count - 1]])
    if count == 0 and method != "threshold_samples":
        cut = np.nan
    threshold = FlagThreshold(value=float(sign * cut) if np.isfinite(cut) else float("nan"), count=int(count),
                              method=method, percentile=float(q), score=spec.name, direction=spec.direction)
    return _Ranking(order, int(count), values, ts, threshold)


def find_label_issues(result, *, score: str = DEFAULT_SCORE, return_all: bool = False, epochs=None, first_k=None,
                      source: str = "train", threshold_samples=None, threshold_percentile: float | None = None,
                      num_issues: int | None = None, noise_rate: float | None = None, seed: int = 0) -> np.ndarray:
    """Indices of the examples a run's training dynamics flag as likely mislabelled, most suspect first.

    Parameters
    ----------
    result : RunResult or path
        A run (``grlib.train``, a ``grlib.Recorder`` run, or one built by hand)
        or the folder of a saved one.  The noise mask is never used.
    score : str
        The score to rank by (:data:`SCORES`; those with a direction):
        ``confidence`` (default), ``aum``, ``correctness``, ``final_p``,
        ``forgetting``, ``small_loss``.  Each is oriented so that the least
        clean-looking example comes first.
    return_all : bool
        False (default): the flagged examples only, ranked; the array's length
        is the automatic count.  True: every ranked example (every example
        seen in the epochs used, threshold samples left out), so ``find_label_issues(r, return_all=True)[:k]`` is
        the top ``k`` for any ``k`` you choose.
    epochs, first_k : optional
        An epoch window ``(first, last)`` (1-based, inclusive) or the first
        ``k`` epochs; early epochs separate best before memorisation.
    source : "train" or "eval"
        The training pass's records (default) or the evaluation pass's
        (``eval_p`` / ``eval_pred``), for the scores that have both.
    threshold_samples : bool mask [n] or indices, optional
        AUM's threshold samples of this run (:func:`make_threshold_samples`):
        examples relabelled to a fake extra class.  The count is then the
        number of other examples whose score is at or below the
        ``threshold_percentile`` percentile of the threshold samples' scores
        (use ``score="aum"`` for the paper's method).  The threshold samples
        are not scored (never returned): a second run with another set scores
        them.
    threshold_percentile : float in [0, 100], optional
        Default: the paper's 99, lowered for small sets so that at least 5
        threshold samples lie above the cut (:func:`default_percentile`:
        95.9 for the 122 threshold samples of digits, 99 from 500 on).
    num_issues, noise_rate : optional
        Flag exactly ``num_issues`` examples, or the share ``noise_rate`` of
        them, when you know it.
    seed : int
        The mixture's initialisation (and its subsample beyond 100,000 examples).

    The count, without threshold samples or a known number: a two-component
    Gaussian mixture (scikit-learn ``GaussianMixture``, as DivideMix-style
    methods fit one to the per-example loss) on the score, after a logit for
    scores in [0, 1] (on the raw mean p, the mixture over-flagged at 20% noise:
    1.18-1.27x the true count, precision 0.79-0.85); the examples below the
    point where the low component's posterior falls to 0.5 are flagged.  A
    mixture splits any data, clean data too, so the low group must also be
    one the model disagrees with: its centre below the score's neutral point
    (p = 0.5 for ``confidence`` and ``final_p``, 0.5 for ``correctness``,
    margin 0 for ``aum``).  Otherwise no example is flagged and a
    ``UserWarning`` says so (clean runs on digits and on synthetic blobs:
    low groups centred at p = 0.68-0.99; noisy runs: 0.01-0.45).
    ``forgetting`` and ``small_loss`` have no neutral point: their mixture
    count always stands, even on clean data.  Examples never seen are not
    ranked.

    Returns
    -------
    np.ndarray of int64
        Example indices, most suspect first.

    Unlike ``cleanlab.filter.find_label_issues``, which takes out-of-sample
    ``pred_probs`` from K-fold cross-validation and returns a boolean mask
    ``[n]`` unless ``return_indices_ranked_by`` is given, this takes the
    records of one ordinary training run (no extra training) and always
    returns ranked indices; ``label_issues_frame`` gives the boolean column.

    The default score, ``confidence`` (mean p of the given label over all
    epochs, "GR's mean p" for a GR run), measured best among the scores every
    run has: on digits at 20% and 40% symmetric noise, 30-epoch
    ``grlib.train`` runs, seeds 0-2, GR (lam=1, beta=12) gave ROC AUC
    0.996-1.000, precision at the true rate 0.96-0.99, and the mixture
    flagged 0.96-1.05x the true count with precision 0.94-0.99 (clean runs:
    nothing).  From a CE run, which memorises the wrong labels, all epochs
    gave AUC 0.97-0.99 and counts of 0.89-1.19x (precision 0.79-0.94); the
    first 10 epochs (``first_k=10``) gave 0.98-1.09x with precision
    0.90-0.97.  ``aum`` and ``small_loss`` are as good from GR runs;
    ``correctness``, ``forgetting`` and ``final_p`` rank well but their
    mixture counts are poor (discrete or memorised).

    Under ``RunConfig(protocol="paper")`` (``benchmarks/detection_benchmark.py``,
    seed 0 so far, ``docs/detection.md``), a GR run's ``confidence`` gave AUC
    0.998-0.999 on digits (100 epochs) and 0.978-0.979 on Fashion-MNIST
    (10,000 examples, 60 epochs) at 20% and 40% symmetric noise, against
    0.979-0.990 and 0.979-0.987 for cleanlab's 5-fold self-confidence at
    0.13-0.30x its compute; the mixture flagged 0.96-1.03x the true count
    with precision 0.88-0.98.  At 40% pair noise it kept AUC 0.967 / 0.951
    where cleanlab fell to 0.73 / 0.78 and a CE run's ``confidence`` to
    0.86 / 0.78 (CE's count there: 0.47x, precision 0.56 on Fashion-MNIST).

    Threshold samples on digits (122 of them): the paper's 99th percentile
    is then the second-largest threshold-sample score, and one memorised
    threshold sample moves it above most clean examples (counts up to 5.5x;
    within 25% of the truth with precision >= 0.85 in 5 of 12 runs even with
    ``first_k=10``).  The default percentile for so small a set (95.9, see
    :func:`default_percentile`) with ``first_k=10`` gave 0.97-1.04x with
    precision 0.95-0.98 in all 12 runs (GR and CE, 20% and 40%); over all 30
    epochs it held for GR (0.89-1.00x, precision >= 0.97) but not for CE,
    which memorises its threshold samples too (1.24-2.06x).  The paper
    (tens of thousands of examples) computes AUM up to the first
    learning-rate drop, before memorisation: use an epoch window likewise
    (``first_k`` = the epoch of the first drop; half the epochs under
    ``RunConfig(protocol="paper")``).  :func:`flag_threshold` gives the cut
    itself, for a figure.
    """
    if not isinstance(return_all, bool):
        raise TypeError(f"return_all must be True or False, got {return_all!r}")
    order, count, _, _, _ = _rank_and_count(result, score=score, epochs=epochs, first_k=first_k, source=source,
                                         threshold_samples=threshold_samples,
                                         threshold_percentile=threshold_percentile, num_issues=num_issues,
                                         noise_rate=noise_rate, seed=seed, need_count=not return_all)
    return order.astype(np.int64) if return_all else order[:count].astype(np.int64)


def flag_threshold(result, *, score: str = DEFAULT_SCORE, epochs=None, first_k=None, source: str = "train",
                   threshold_samples=None, threshold_percentile: float | None = None, num_issues: int | None = None,
                   noise_rate: float | None = None, seed: int = 0) -> FlagThreshold:
    """The cut :func:`find_label_issues` flags at, with the same options: a :class:`FlagThreshold`.

    ``value`` is in the score's own units (e.g. AUM's logit margin; for
    ``confidence`` a probability), NaN when nothing is flagged;
    ``method`` says where it came from: ``"threshold_samples"`` (their
    ``percentile``-th percentile), ``"mixture"`` (where the two-component
    mixture's low component stops being the likelier one), ``"num_issues"``
    / ``"noise_rate"`` (the score of the last example flagged).  Draw it on
    the score's distribution to see what the count rests on.  The same
    warnings as :func:`find_label_issues`.
    """
    return _rank_and_count(result, score=score, epochs=epochs, first_k=first_k, source=source,
                           threshold_samples=threshold_samples, threshold_percentile=threshold_percentile,
                           num_issues=num_issues, noise_rate=noise_rate, seed=seed).threshold


def label_issues_frame(result, *, scores=None, score: str = DEFAULT_SCORE, epochs=None, first_k=None,
                       source: str = "train", threshold_samples=None, threshold_percentile: float | None = None,
                       num_issues: int | None = None, noise_rate: float | None = None, seed: int = 0):
    """One row per example (index = example index): its scores, labels and whether it is flagged.

    Columns: ``given_label``; ``predicted_label`` (the last recorded epoch's
    prediction: evaluation pass when kept, else training pass; -1 if unseen);
    one column per score in ``scores`` (default: every score the run has the
    records for, raw, in its own direction: see :data:`SCORES`);
    ``label_score`` (``score`` turned to "higher says clean"); ``rank`` (1 =
    most suspect; 0 for examples not ranked); ``is_label_issue`` (flagged by
    :func:`find_label_issues` with the same options); ``is_threshold_sample``
    when threshold samples are given; ``true_label`` and ``is_noisy`` when the
    run knows them.  ``df.attrs["flag_threshold"]`` holds the
    :class:`FlagThreshold` of the flags (what :func:`flag_threshold` returns).
    """
    import pandas as pd

    run = _Run(result, epochs=epochs, first_k=first_k)
    r = run.result
    order, count, values, ts, threshold = _rank_and_count(r, score=score, epochs=epochs, first_k=first_k, source=source,
                                               threshold_samples=threshold_samples,
                                               threshold_percentile=threshold_percentile, num_issues=num_issues,
                                               noise_rate=noise_rate, seed=seed)
    cols = {"given_label": run.y_given.astype(np.int64), "predicted_label": _last_prediction(run)}
    cols.update(compute_scores(r, scores, epochs=epochs, first_k=first_k, source=source))
    cols.setdefault(score, values)
    cols["label_score"] = oriented(score, values)
    rank = np.zeros(run.n, np.int64)
    rank[order] = np.arange(1, order.size + 1)
    cols["rank"] = rank
    flag = np.zeros(run.n, bool)
    flag[order[:count]] = True
    cols["is_label_issue"] = flag
    if ts is not None:
        cols["is_threshold_sample"] = ts
    if r.y_true is not None:
        cols["true_label"] = np.asarray(r.y_true, dtype=np.int64)
    if r.is_noisy is not None:
        cols["is_noisy"] = np.asarray(r.is_noisy, dtype=bool)
    df = pd.DataFrame(cols)
    df.index.name = "index"
    df.attrs["flag_threshold"] = threshold
    return df


def _last_prediction(run: _Run) -> np.ndarray:
    for field in ("eval_pred", "pred"):
        if field in run.result.records:
            out = np.full(run.n, -1, np.int64)
            for _, row in run.rows(field, "predicted_label", reverse=True):
                fill = (out < 0) & (row >= 0)
                out[fill] = row[fill]
                if (out >= 0).all():
                    break
            return out
    return np.full(run.n, -1, np.int64)
