"""Figures and tables of notebook 07 (data maps and label-issue scores), for any run.

Every function takes plain arrays (the scores of :mod:`grlib.scores`, a
``label_issues_frame``) and draws on an ``ax`` it is given, or on a new one,
returning what it drew; none calls ``plt.show()`` or saves a file (that is
:func:`grlib.figures.save_figure`'s job).  Conventions as in
:mod:`grlib.plotting`: clean examples green and mislabelled red
(``METHOD_COLORS``), a run without the noise mask drawn as one group.

* :func:`plot_data_map`: the data map of Swayamdipta et al. (2020): each
  example at (variability, confidence), coloured by correctness, or by
  clean / mislabelled when the mask is known.
* :func:`plot_score_distribution`: a score's histogram (e.g. AUM) with the
  cut :func:`grlib.scores.flag_threshold` flags at, and the threshold
  samples' own distribution when the run has them.
* :func:`plot_score_rocs`: the ROC curve of every score, one axes.
* :func:`top_suspects` / :func:`suspect_titles`: the most suspect examples
  as a table and as image titles.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ._checks import check_choice, check_int
from .figures import METHOD_COLORS

__all__ = ["plot_data_map", "plot_score_distribution", "plot_score_rocs", "top_suspects", "suspect_titles",
           "COLOUR_BY", "THRESHOLD_COLOR", "REGIONS"]

#: What :func:`plot_data_map` can colour by.
COLOUR_BY = ("correctness", "is_noisy")
#: Colour of the threshold samples and of the cut line.
THRESHOLD_COLOR = "#ff7f0e"
#: The data map's regions (cartography's names), with where each sits: (variability, confidence) in axes units.
REGIONS = {"easy-to-learn": (0.03, 0.96), "ambiguous": (0.97, 0.55), "hard-to-learn": (0.03, 0.04)}


def _as_1d(name: str, values, n: int | None = None) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per example), got shape {a.shape}")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has {a.size} values for {n} examples")
    return a


def _new_ax(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(5.5, 4.5))
    return ax


def plot_data_map(confidence, variability, *, correctness=None, is_noisy=None, colour_by: str = "correctness",
                  ax=None, max_points: int = 20000, seed: int = 0, size: float | None = None, regions: bool = True):
    """The data map: each example at (variability, confidence), coloured by correctness or by its noise mask.

    Parameters
    ----------
    confidence, variability : array [n]
        :func:`grlib.scores.confidence` (mean p of the given label, [0, 1])
        and :func:`grlib.scores.variability` (its population std, [0, 0.5]).
        Examples with a non-finite value (never seen) are left out.
    correctness : array [n], optional
        :func:`grlib.scores.correctness` (share of epochs predicted as the
        given label, [0, 1]); needed for ``colour_by="correctness"``, drawn
        on a sequential colour map with a colour bar.
    is_noisy : bool array [n], optional
        The noise mask; needed for ``colour_by="is_noisy"`` (clean green,
        mislabelled red, mislabelled drawn on top).
    colour_by : "correctness" or "is_noisy"
    max_points : int
        At most this many examples are drawn (a seeded random subset beyond
        it; the title says so), so a million-example run stays drawable.
    regions : bool
        Name the map's regions as cartography does: easy-to-learn (high
        confidence, low variability), ambiguous (high variability),
        hard-to-learn (low confidence, low variability; mislabelled examples
        gather there).

    Returns
    -------
    Axes
        The scatter collections carry ``gid`` ``"correctness"`` or the group
        names ``"clean"`` / ``"mislabelled"``.
    """
    check_choice("colour_by", colour_by, COLOUR_BY)
    conf = _as_1d("confidence", confidence)
    var = _as_1d("variability", variability, conf.size)
    max_points = check_int("max_points", max_points, low=1)
    seed = check_int("seed", seed, low=0)
    if colour_by == "correctness":
        if correctness is None:
            raise ValueError("colour_by='correctness' needs correctness= (grlib.scores.correctness of the run)")
        colour = _as_1d("correctness", correctness, conf.size)
    else:
        if is_noisy is None:
            raise ValueError("colour_by='is_noisy' needs the noise mask, and is_noisy is None; use "
                             "colour_by='correctness'")
        noisy = np.asarray(is_noisy, dtype=bool).reshape(-1)
        if noisy.size != conf.size:
            raise ValueError(f"is_noisy has {noisy.size} values for {conf.size} examples")
    shown = np.flatnonzero(np.isfinite(conf) & np.isfinite(var))
    if shown.size == 0:
        raise ValueError("no example has a finite confidence and variability (none was seen?)")
    subset = shown.size > max_points
    if subset:
        shown = np.sort(np.random.default_rng(seed).choice(shown, size=max_points, replace=False))
    s = size if size is not None else float(np.clip(3000.0 / np.sqrt(shown.size), 2.0, 30.0))
    ax = _new_ax(ax)
    if colour_by == "correctness":
        import matplotlib.pyplot as plt

        order = shown[np.argsort(-colour[shown], kind="stable")]  # the rarely-correct drawn last, on top
        sc = ax.scatter(var[order], conf[order], c=colour[order], cmap="viridis", vmin=0.0, vmax=1.0, s=s,
                        alpha=0.7, linewidths=0)
        sc.set_gid("correctness")
        plt.colorbar(sc, ax=ax, label="correctness (share of epochs predicted as given)")
    else:
        for group, mask in (("clean", ~noisy), ("mislabelled", noisy)):
            idx = shown[mask[shown]]
            if idx.size == 0:
                continue
            colour_g = METHOD_COLORS["clean" if group == "clean" else "noisy"]
            sc = ax.scatter(var[idx], conf[idx], color=colour_g, s=s, alpha=0.6, linewidths=0,
                            label=f"{group} (n={int(mask.sum())})")
            sc.set_gid(group)
        ax.legend(loc="lower right", markerscale=max(1.0, 6.0 / np.sqrt(s)))
    if regions:
        for name, (x, y) in REGIONS.items():
            ax.text(x, y, name, transform=ax.transAxes, fontsize="x-small", color="0.3",
                    ha="right" if x > 0.5 else "left", va="top" if y > 0.5 else "bottom")
    ax.set_xlim(left=0.0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("variability (std of p over epochs)")
    ax.set_ylabel("confidence (mean p of the given label)")
    if subset:
        ax.set_title(f"a random {shown.size:,} of {np.isfinite(conf).sum():,} examples", fontsize="small")
    return ax


def plot_score_distribution(values, *, threshold=None, is_noisy=None, threshold_samples=None, name: str = "score",
                            ax=None, bins: int = 50, stat: str = "count"):
    """A score's histogram by group, the cut it is flagged at, and the threshold samples' scores.

    Parameters
    ----------
    values : array [n]
        One score per example in its own units (e.g. :func:`grlib.scores.aum`).
        Non-finite values are left out (counted in the legend).
    threshold : grlib.scores.FlagThreshold or float, optional
        The cut (:func:`grlib.scores.flag_threshold`); drawn as a vertical
        line labelled with how it was set and how many examples it flags.
        NaN or None: no line.
    is_noisy : bool array [n], optional
        The noise mask: clean and mislabelled drawn apart; without it, one group.
    threshold_samples : bool array [n] or indices, optional
        AUM threshold samples: drawn as their own group (orange), left out of
        the others.
    stat : "count" or "share"
        As :func:`grlib.plotting.plot_group_histogram`.

    Returns
    -------
    Axes
        Histogram patches with ``gid`` the group name (``"threshold samples"``
        for those), the cut line with ``gid="threshold"``.
    """
    from .plotting import histogram_edges, plot_group_histogram

    v = _as_1d("values", values)
    n = v.size
    ts = np.zeros(n, bool)
    if threshold_samples is not None:
        t = np.asarray(threshold_samples)
        if t.dtype == bool:
            if t.shape != (n,):
                raise ValueError(f"threshold_samples as a mask must have shape ({n},), got {t.shape}")
            ts = t.copy()
        else:
            ts[t.astype(np.int64)] = True
    finite = np.isfinite(v)
    if not finite.any():
        raise ValueError(f"no finite {name} value to draw")
    edges = histogram_edges(v[finite], bins)
    if is_noisy is None:
        groups = [("all", ~ts)]
    else:
        noisy = np.asarray(is_noisy, dtype=bool).reshape(-1)
        if noisy.size != n:
            raise ValueError(f"is_noisy has {noisy.size} values for {n} examples")
        groups = [("clean", ~noisy & ~ts), ("mislabelled", noisy & ~ts)]
    groups = [(g, m) for g, m in groups if (m & finite).any()]
    ax = _new_ax(ax)
    if groups:
        plot_group_histogram(v, groups, bins=edges, stat=stat, ax=ax, xlabel=name)
    sel = ts & finite
    if sel.any():
        w = np.full(int(sel.sum()), 1.0 / sel.sum() if stat == "share" else 1.0)
        _, _, patches = ax.hist(np.clip(v[sel], edges[0], edges[-1]), bins=edges, weights=w, histtype="step",
                                color=THRESHOLD_COLOR, lw=2.0, label=f"threshold samples (n={int(sel.sum())})")
        for p in patches:
            p.set_gid("threshold samples")
    dropped = int((~finite).sum())
    value = getattr(threshold, "value", threshold)
    if value is not None and np.isfinite(value):
        if hasattr(threshold, "method"):
            how = {"threshold_samples": f"{threshold.percentile:.3g}th percentile of the threshold samples",
                   "mixture": "two-component mixture", "num_issues": "num_issues",
                   "noise_rate": "noise_rate"}.get(threshold.method, threshold.method)
            label = f"cut {value:.3g} ({how}): {threshold.count} flagged"
        else:
            label = f"cut {value:.3g}"
        line = ax.axvline(value, color=THRESHOLD_COLOR, ls="--", lw=1.8, label=label)
        line.set_gid("threshold")
    ax.set_xlabel(name + (f" ({dropped} not finite, left out)" if dropped else ""))
    ax.legend(loc="best", fontsize="x-small")
    return ax


def plot_score_rocs(scores: Mapping[str, np.ndarray], is_noisy, *, ax=None, colors: Mapping | None = None):
    """ROC curves of several scores on one axes, each oriented so that a higher score says clean.

    ``scores``: ``{name: [n]}`` as :func:`grlib.detection.run_scores` returns
    them (oriented, ``forgetting``'s never-learnt made finite).  Curves are
    drawn best AUC first, so the legend reads as a ranking.  Needs the noise
    mask.  Returns the Axes (one line per score, ``gid="roc"``).
    """
    from .metrics import separation_auc
    from .plotting import plot_roc

    if is_noisy is None:
        raise ValueError("ROC curves of clean vs mislabelled need the noise mask, and is_noisy is None")
    if not scores:
        raise ValueError("scores is empty: nothing to draw")
    aucs = {k: separation_auc(v, is_noisy) for k, v in scores.items()}
    names = sorted(scores, key=lambda k: -np.nan_to_num(aucs[k], nan=-1.0))
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab10")
    ax = _new_ax(ax)
    for k, name in enumerate(names):
        colour = (colors or {}).get(name, palette(k % 10))
        plot_roc(scores[name], is_noisy, ax=ax, label=name, color=colour, lw=1.5)
    return ax


def top_suspects(frame: pd.DataFrame, n: int = 16, *, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``n`` most suspect examples of a :func:`grlib.label_issues_frame`, most suspect first.

    Columns: ``index`` (position in the training set), ``rank``, ``given``
    and ``predicted`` labels (names when ``class_names`` is given; -1 for a
    prediction never recorded), ``flagged``, ``label_score`` (higher says
    clean), and ``true`` / ``mislabelled`` when the run knows them.
    """
    n = check_int("n", n, low=1)
    for col in ("rank", "given_label", "predicted_label", "label_score", "is_label_issue"):
        if col not in frame:
            raise KeyError(f"frame has no column {col!r}: pass grlib.label_issues_frame(result)")
    ranked = frame[frame["rank"] > 0].sort_values("rank").head(n)

    def names(labels):
        if not class_names:
            return labels.astype(int).to_numpy()
        return [class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c)) for c in labels]

    out = {"index": ranked.index.to_numpy(), "rank": ranked["rank"].to_numpy(), "given": names(ranked["given_label"]),
           "predicted": names(ranked["predicted_label"]), "flagged": ranked["is_label_issue"].to_numpy(),
           "label_score": ranked["label_score"].to_numpy()}
    if "true_label" in ranked:
        out["true"] = names(ranked["true_label"])
    if "is_noisy" in ranked:
        out["mislabelled"] = ranked["is_noisy"].to_numpy()
    return pd.DataFrame(out)


def suspect_titles(table: pd.DataFrame) -> list[str]:
    """One short title per row of :func:`top_suspects`: ``"given 3 / pred 8"``, with `` x`` for a known mislabel."""
    marks = table["mislabelled"].to_numpy() if "mislabelled" in table else np.zeros(len(table), bool)
    return [f"given {g} / pred {p}{' x' if m else ''}" for g, p, m in zip(table["given"], table["predicted"], marks)]
