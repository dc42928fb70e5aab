"""Per-run views: the numbers behind notebooks 02 and 03, for any saved run (grlib's or a user's own).

Every function takes a :class:`grlib.RunResult` (from :func:`grlib.train`, a
:class:`grlib.Recorder`, or :meth:`grlib.RunResult.load`) and returns plain
numpy arrays or pandas tables; :mod:`grlib.plotting` draws them.  They accept
what a user's run may lack:

* no noise mask (``result.is_noisy is None``: real data, the mislabelled
  examples are unknown): views that split clean from mislabelled examples use
  one group, ``"all"``; those that need the mask (:func:`weight_share_noisy`)
  raise a ValueError that says so;
* more kinds than label noise (``result.masks`` holds ``is_outlier`` /
  ``is_corrupted``: a run with ``RunConfig(outlier_fraction=...,
  corruption_fraction=...)``): every view groups the examples by kind,
  ``clean``, ``mislabelled``, ``outlier``, ``corrupted`` (:data:`KINDS`, the
  codes of :attr:`grlib.RunResult.example_kind`), and the separation views
  compare each touched kind with the *clean* examples
  (:func:`separation_by_epoch` with ``kind=``).  A run with only
  ``is_noisy`` gets exactly the two groups ``clean`` and ``mislabelled``;
* no evaluation pass (no ``eval_p`` record): :func:`p_field` falls back to
  ``p``, the probability seen by the training pass;
* examples not seen in an epoch (NaN in float records): left out of that
  epoch's numbers, never counted as zero;
* records kept every k epochs (``result.record_epochs``): epochs are the real,
  1-based epoch numbers.

Conventions: ``p`` is the probability the model gives to the *given*
(possibly wrong) label, in [0, 1]; weights are shown as **weight x batch
size** (:func:`relative_weights`), so 1 is the average weight in a batch,
whatever the batch size, while the recorded ``weight`` stays normalised (sums
to 1 per batch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "KINDS", "TOUCHED_KINDS", "GROUPS", "has_mask", "has_kinds", "touched_kinds", "kind_selection", "kind_shares",
    "example_titles", "weight_shares", "p_field", "recorded_epochs", "resolve_epochs", "record_row", "iter_record_rows",
    "relative_weights", "group_masks", "run_label", "load_runs", "train_runs", "share_above", "p_by_epoch",
    "group_medians", "weight_share_noisy", "separation_by_epoch", "ranked_examples", "run_images",
]

#: The kinds of training example (:data:`grlib.results.KIND_NAMES`, in the order of their codes).
KINDS = ("clean", "mislabelled", "outlier", "corrupted")
#: The kinds that are not clean: what a separation view compares with the clean examples.
TOUCHED_KINDS = KINDS[1:]
#: Group names of :func:`group_masks`: the kinds; ``other`` (a run that knows its outliers or corrupted
#: inputs but not which labels are wrong: every other example); ``all`` (a run that knows no kind).
GROUPS = KINDS + ("other", "all")
#: The kinds beyond label noise and the names of their masks in ``RunResult.masks``.
_EXTRA_KINDS = (("outlier", "is_outlier"), ("corrupted", "is_corrupted"))

# -- what a run holds --------------------------------------------------------------------------
def has_mask(result) -> bool:
    """True when the run knows which training labels are wrong (``result.is_noisy`` is set)."""
    return getattr(result, "is_noisy", None) is not None


def p_field(result) -> str:
    """The record to read ``p`` from: ``eval_p`` (evaluation pass after the epoch) when kept, else ``p``.

    Raises KeyError when the run kept neither.
    """
    for name in ("eval_p", "p"):
        if name in result.records:
            return name
    raise KeyError(f"the run kept neither 'eval_p' nor 'p'; its records: {sorted(result.records)}")


def _check_field(result, field: str) -> None:
    if field not in result.records:
        raise KeyError(f"record {field!r} was not kept in this run; available: {sorted(result.records)}")


def recorded_epochs(result, field: str) -> np.ndarray:
    """The 1-based epochs whose rows of ``records[field]`` are complete, ascending (int64 ``[rows]``).

    Row k of a record holds epoch ``result.record_epochs[k]`` when the run
    kept records every k epochs, else epoch k + 1; rows past
    ``epochs_completed`` (a run stopped early) are left out.
    """
    _check_field(result, field)
    rows = int(np.shape(result.records[field])[0])
    kept = getattr(result, "record_epochs", None)
    epochs = np.arange(1, rows + 1, dtype=np.int64) if kept is None else np.asarray(kept, dtype=np.int64)[:rows]
    done = getattr(result, "epochs_completed", None)
    if done:
        epochs = epochs[epochs <= int(done)]
    return epochs


def resolve_epochs(result, field: str, epochs: Sequence[int]) -> list[int]:
    """``epochs`` (1-based; -1 is the last recorded epoch) as recorded epoch numbers, sorted, duplicates dropped.

    Raises ValueError naming an epoch that was not recorded, with the ones that were.
    """
    kept = recorded_epochs(result, field)
    if kept.size == 0:
        raise ValueError(f"record {field!r} holds no complete epoch")
    out = set()
    for e in epochs:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
            raise TypeError(f"epoch {e!r} must be an integer (1-based, or -1 for the last)")
        e = int(kept[-1]) if e == -1 else int(e)
        if e not in kept:
            contiguous = np.array_equal(kept, np.arange(kept[0], kept[-1] + 1))
            shown = f"{kept[0]}..{kept[-1]}" if contiguous else kept.tolist()
            raise ValueError(f"epoch {e} of record {field!r} was not recorded; recorded epochs: {shown} "
                             "(or -1 for the last)")
        out.add(e)
    return sorted(out)


def record_row(result, field: str, epoch: int = -1) -> np.ndarray:
    """One epoch of a record as float64 ``[n]`` (``epoch`` 1-based; -1: the last recorded).

    Unseen examples are NaN (float fields) or -1 (``pred``, ``eval_pred``).
    """
    (e,) = resolve_epochs(result, field, [epoch])
    row = int(np.flatnonzero(recorded_epochs(result, field) == e)[0])
    return np.asarray(result.records[field][row], dtype=np.float64)


def iter_record_rows(result, field: str, epochs: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(epoch, row)`` for each recorded epoch (or those in ``epochs``), row float64 ``[n]``.

    One row at a time, so a memory-mapped run of any length is never read whole.
    """
    kept = recorded_epochs(result, field)
    wanted = kept if epochs is None else np.asarray(resolve_epochs(result, field, epochs), dtype=np.int64)
    position = {int(e): k for k, e in enumerate(kept)}
    for e in wanted:
        yield int(e), np.asarray(result.records[field][position[int(e)]], dtype=np.float64)


def relative_weights(weight) -> np.ndarray:
    """Weights in the plotting unit, **weight x batch size** (1 = the average weight in a batch).

    ``weight`` is one epoch's recorded weights ``[n]`` (each batch's weights
    sum to 1; NaN for unseen examples) or one batch ``[B]``; a 2-D array is
    taken row by row (one epoch per row).  Each row is multiplied by
    ``seen / sum(weights)``, the number of examples seen per batch on average
    (the sum of the weights is the number of batches).  That is exact when the
    epoch's batches have one size and within ``1/B`` with grlib's near-equal
    batches; a run with one short last batch shows that batch's examples
    larger by the factor they really got.  Returns float64, NaN where the
    input is NaN (or a whole row when it holds no positive weight).
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim == 0 or w.ndim > 2:
        raise ValueError(f"weight must be one epoch [n] or rows of epochs [E, n]; got shape {w.shape}")
    ok = np.isfinite(w)
    seen = ok.sum(axis=-1, keepdims=True)
    total = np.where(ok, w, 0.0).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(total > 0, seen / total, np.nan)
    return w * factor


def _extra_masks(result) -> dict:
    """``{"outlier": mask, "corrupted": mask}`` for the extra masks the run keeps (checked: boolean ``[n]``)."""
    n = int(np.asarray(result.y_given).size)
    masks = getattr(result, "masks", None) or {}
    out = {}
    for kind, key in _EXTRA_KINDS:
        if key in masks:
            m = np.asarray(masks[key]).reshape(-1)
            if m.dtype != bool or m.size != n:
                raise ValueError(f"mask {key!r} must be boolean with one entry per training example ({n}); "
                                 f"got {m.dtype} with {m.size}")
            out[kind] = m
    return out


def has_kinds(result) -> bool:
    """True when the run keeps a mask of outliers or of corrupted inputs (``result.masks``), touched or not."""
    return bool(_extra_masks(result))


def _group_codes(result) -> tuple[tuple, np.ndarray]:
    """``(names, codes)``: one group code (int8 ``[n]``) per example, an index into ``names``.

    With the noise mask the names are :data:`KINDS` (the codes of
    :attr:`grlib.RunResult.example_kind`: a later kind wins where masks of a
    hand-built run overlap); without it but with extra masks ``("other",
    "outlier", "corrupted")``; with neither ``("all",)``.
    """
    n = int(np.asarray(result.y_given).size)
    extra = _extra_masks(result)
    if has_mask(result):
        noisy = np.asarray(result.is_noisy, dtype=bool).reshape(-1)
        if noisy.size != n:
            raise ValueError(f"is_noisy has {noisy.size} entries for {n} training examples")
        names, codes = KINDS, noisy.astype(np.int8)
    elif extra:
        names, codes = ("other", "outlier", "corrupted"), np.zeros(n, dtype=np.int8)
    else:
        return ("all",), np.zeros(n, dtype=np.int8)
    for kind, mask in extra.items():
        codes[mask] = names.index(kind)
    return names, codes


def group_masks(result) -> list[tuple[str, np.ndarray]]:
    """The groups every per-group view splits the examples into, as ``[(name, mask [n]), ...]``.

    * a run with only the noise mask: ``clean``, ``mislabelled`` (as
      ``~is_noisy`` / ``is_noisy``);
    * a run that also keeps ``is_outlier`` / ``is_corrupted``
      (``result.masks``): the kinds ``clean``, ``mislabelled``, ``outlier``,
      ``corrupted`` (disjoint; ``clean`` is what no mask touches);
    * extra masks without the noise mask: ``other``, ``outlier``, ``corrupted``;
    * no mask at all: one group, ``all``.

    Groups with no example are left out; the order is that of :data:`GROUPS`.
    """
    names, codes = _group_codes(result)
    out = [(g, codes == k) for k, g in enumerate(names)]
    return [(g, m) for g, m in out if m.any()]


def touched_kinds(result) -> list[str]:
    """The kinds other than clean that have at least one example (``mislabelled``, ``outlier``, ``corrupted``).

    Empty for a run without the noise mask: the clean examples, which every
    touched kind is compared with, are then unknown.
    """
    if not has_mask(result):
        return []
    return [g for g, _ in group_masks(result) if g in TOUCHED_KINDS]


def kind_selection(result, kind: str = "mislabelled") -> tuple[np.ndarray, np.ndarray]:
    """The examples that compare one kind with the clean ones: ``(selected [n], is_kind [selected])``.

    ``selected`` marks the clean examples and those of ``kind`` (the other
    kinds are left out); ``is_kind`` marks, among the selected, those of
    ``kind``.  For a run with only the noise mask and ``kind="mislabelled"``,
    ``selected`` is every example and ``is_kind`` is ``is_noisy``.  Pass
    ``scores[selected]`` and ``is_kind`` to :func:`grlib.separation_auc`.
    Raises ValueError without the noise mask, or for a kind whose mask the run lacks.
    """
    from ._checks import check_choice

    check_choice("kind", kind, TOUCHED_KINDS)
    if not has_mask(result):
        raise ValueError(f"comparing kind={kind!r} with the clean examples needs the run's noise mask, and this "
                         "run has none (result.is_noisy is None)")
    names, codes = _group_codes(result)
    if kind != "mislabelled" and kind not in _extra_masks(result):
        key = dict(_EXTRA_KINDS)[kind]
        raise ValueError(f"kind={kind!r} needs the run's {key!r} mask, and this run keeps "
                         f"{sorted(getattr(result, 'masks', None) or {}) or 'no extra mask'} "
                         "(train with RunConfig(outlier_fraction=..., corruption_fraction=...))")
    code = names.index(kind)
    selected = (codes == 0) | (codes == code)
    return selected, codes[selected] == code


def kind_shares(result, index) -> dict:
    """The share of each touched kind among the examples at ``index`` (e.g. the ones a loss weights least).

    ``{"mislabelled": share, ...}`` with every kind of
    :func:`touched_kinds` (a run with only the noise mask: just
    ``mislabelled``), values in [0, 1] (NaN for an empty ``index``); ``{}``
    without the noise mask.
    """
    idx = np.asarray(index, dtype=np.int64).reshape(-1)
    if not has_mask(result):
        return {}
    names, codes = _group_codes(result)
    picked = codes[idx]
    return {k: float(np.mean(picked == names.index(k))) if idx.size else float("nan")
            for k in touched_kinds(result)}


#: Short marks of the touched kinds in image titles (:func:`example_titles`).
_KIND_MARKS = {"mislabelled": " x", "outlier": " outlier", "corrupted": " corrupted"}


def example_titles(result, index, class_names: Sequence[str] | None = None) -> list[str]:
    """Short titles for images of the examples at ``index``: ``"given/true"`` and a mark of the example's kind.

    ``given`` is the label trained on, ``true`` the original one (left out
    when the run does not know it); ``" x"`` marks a mislabelled example,
    ``" outlier"`` and ``" corrupted"`` the other touched kinds.
    ``class_names`` maps labels to names.
    """
    idx = np.asarray(index, dtype=np.int64).reshape(-1)

    def name(c):
        c = int(c)
        return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)

    y_true = getattr(result, "y_true", None)
    names, codes = _group_codes(result)
    titles = []
    for i in idx:
        title = name(result.y_given[i]) + (f"/{name(y_true[i])}" if y_true is not None else "")
        titles.append(title + _KIND_MARKS.get(names[codes[i]], ""))
    return titles


# -- run-level numbers -------------------------------------------------------------------------
def run_label(result, default: str = "run") -> str:
    """A short label: the loss and its parameters (``gr(lam=1, beta=12)``) when the run's settings name a
    loss, else ``default``."""
    from .plotting import method_label

    cfg = result.config or {}
    loss = cfg.get("loss")
    if not loss:
        return default
    params = dict(cfg.get("loss_params") or {})
    first = {"lam": 0, "beta": 1}  # GR's parameters in the paper's order, whatever order a settings file kept
    return method_label(str(loss), dict(sorted(params.items(), key=lambda kv: first.get(kv[0], 2))))


def train_runs(configs: dict, *, progress: bool = False) -> dict:
    """Train ``configs`` (name -> :class:`grlib.RunConfig`) on one shared data set and label noise.

    What notebooks 02 and 03 compare: one :func:`grlib.prepare` makes the
    data and the noisy labels of the first config (outliers and corrupted
    inputs included, with their masks), and every run trains on them.
    Returns ``{label: RunResult}``; a run that stops early is a RuntimeError
    (the notebooks compare whole runs).
    """
    from .train import prepare, train

    if not isinstance(configs, dict) or not configs:
        raise ValueError(f"configs must be a non-empty mapping of name: RunConfig, got {configs!r}")
    first = next(iter(configs.values()))
    data, noisy, _ = prepare(first)
    # noisy carries prepare's outlier/corruption masks: train() must not damage the prepared inputs again
    results = {c.label: train(c, data=data, noisy=noisy, progress=progress) for c in configs.values()}
    for c, res in zip(configs.values(), results.values()):
        if res.epochs_completed != c.epochs:
            raise RuntimeError(f"{res!r} stopped early: {res.stopped}")
    return results


def load_runs(run_dir: str) -> dict:
    """Load the runs of a notebook's ``run_dir`` parameter: one saved run folder, or two separated by a comma.

    Returns ``{label: RunResult}`` in the order given; labels come from
    :func:`run_label` (the folder's name where the settings do not name a
    loss, or where two runs would share a label).  Raises ValueError for an
    empty value or more than two folders, FileNotFoundError naming a folder
    that does not exist.
    """
    from .results import RunResult

    if not isinstance(run_dir, str):
        raise TypeError(f"run_dir must be a string (one folder, or two separated by a comma), got {run_dir!r}")
    folders = [part.strip() for part in run_dir.split(",") if part.strip()]
    if not 1 <= len(folders) <= 2:
        raise ValueError(f"run_dir={run_dir!r} must name one saved run folder, or two separated by a comma")
    paths = [Path(f).expanduser() for f in folders]
    for path in paths:
        if not path.is_dir():
            raise FileNotFoundError(f"run_dir={run_dir!r}: {str(path)!r} is not a folder (a saved run: "
                                    "RunResult.save(folder) or a Recorder's path)")
    loaded = [(path, RunResult.load(path)) for path in paths]
    labels = [run_label(res, default=path.name) for path, res in loaded]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{path.name}]" for label, (path, _) in zip(labels, loaded)]
    if len(set(labels)) < len(labels):  # one folder twice, or two folders of one name
        labels = [f"{label} [{k}]" for k, label in enumerate(labels, start=1)]
    return dict(zip(labels, (res for _, res in loaded)))


# -- per-epoch views -----------------------------------------------------------------------------
def share_above(result, field: str | None = None, threshold: float = 0.5) -> pd.DataFrame:
    """Per epoch, the share of each group's examples with ``p > threshold``.

    For ``p`` (default :func:`p_field`) and ``threshold=0.5``, the
    mislabelled group's share is the share of mislabelled examples the model
    believes in their wrong label: the readable view of a bimodal group (where
    quantile bands read as "spread everywhere").  Among examples seen in the
    epoch (finite values).  Returns columns ``epoch`` then one per group
    (:func:`group_masks`), values in [0, 1] (NaN for a group with no example seen).
    """
    from ._checks import check_real

    field = field or p_field(result)
    threshold = check_real("threshold", threshold)
    groups = group_masks(result)
    rows = []
    for epoch, row in iter_record_rows(result, field):
        entry = {"epoch": epoch}
        for name, mask in groups:
            values = row[mask]
            seen = np.isfinite(values)
            entry[name] = float((values[seen] > threshold).mean()) if seen.any() else float("nan")
        rows.append(entry)
    return pd.DataFrame(rows, columns=["epoch", *(g for g, _ in groups)])


def p_by_epoch(result, field: str | None = None, *, group: str = "mislabelled", bins: int = 20):
    """The distribution of ``p`` in one group at every epoch, as shares per ``p`` bin (a heat map's data).

    Parameters
    ----------
    field : str, optional
        A record in [0, 1] (default :func:`p_field`).
    group : str
        Which examples: a group of :func:`group_masks` (``clean``,
        ``mislabelled``, ``outlier``, ``corrupted`` need the masks that say
        so; ``other`` the extra masks without the noise mask) or ``all``
        (every example, whatever the run knows).
    bins : int
        Equal-width bins over [0, 1].

    Returns
    -------
    (epochs, edges, shares)
        ``epochs`` int ``[E]``, ``edges`` float ``[bins + 1]`` from 0 to 1,
        ``shares`` float ``[bins, E]``: the share of the group's examples seen
        in that epoch whose value lies in each bin (each column sums to 1;
        NaN for an epoch in which none was seen).
    """
    from ._checks import check_choice, check_int

    field = field or p_field(result)
    check_choice("group", group, GROUPS)
    bins = check_int("bins", bins, low=1)
    masks = dict(group_masks(result))
    if group == "all":
        mask = np.ones(int(np.asarray(result.y_given).size), dtype=bool)
    elif group in masks:
        mask = masks[group]
    elif group in ("clean", "mislabelled") and not has_mask(result):
        raise ValueError(f"group={group!r} needs the run's noise mask, and this run has none "
                         "(result.is_noisy is None); use group='all'")
    elif group in ("outlier", "corrupted") and group not in _extra_masks(result):
        raise ValueError(f"group={group!r} needs the run's {dict(_EXTRA_KINDS)[group]!r} mask (result.masks), "
                         f"and this run keeps none; its groups: {[g for g, _ in group_masks(result)]} or 'all'")
    else:
        raise ValueError(f"group={group!r} has no example in this run; its groups: "
                         f"{[g for g, _ in group_masks(result)]} or 'all'")
    edges = np.linspace(0.0, 1.0, bins + 1)
    epochs, columns = [], []
    for epoch, row in iter_record_rows(result, field):
        values = row[mask]
        values = values[np.isfinite(values)]
        counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=edges)
        columns.append(counts / values.size if values.size else np.full(bins, np.nan))
        epochs.append(epoch)
    shares = np.stack(columns, axis=1) if columns else np.zeros((bins, 0))
    return np.asarray(epochs, dtype=np.int64), edges, shares


def group_medians(result, epochs: Sequence[int] = (-1,), *, field: str | None = None) -> pd.DataFrame:
    """Median ``p`` and median weight x batch size of each group at the given epochs.

    Returns one row per epoch (index ``epoch``) with columns ``p <group>``
    and, when the run kept ``weight``, ``weight x batch size <group>`` for
    each group of :func:`group_masks`; with the noise mask also ``weight
    ratio <kind>/clean`` for each touched kind (:func:`touched_kinds`: a run
    with only the noise mask has ``weight ratio mislabelled/clean``): the
    median weight of that kind over the clean examples' (above 1: the loss
    pushes harder on that kind).  NaN-aware (unseen examples are left out).
    """
    field = field or p_field(result)
    keep_weight = "weight" in result.records
    groups = group_masks(result)
    kinds = touched_kinds(result)
    rows = []
    for epoch in resolve_epochs(result, field, list(epochs)):
        p = record_row(result, field, epoch)
        entry = {"epoch": epoch}
        for name, mask in groups:
            entry[f"p {name}"] = _nanmedian(p[mask])
        if keep_weight:
            w = relative_weights(record_row(result, "weight", epoch))
            for name, mask in groups:
                entry[f"weight x batch size {name}"] = _nanmedian(w[mask])
            if "clean" in dict(groups):
                for kind in kinds:
                    entry[f"weight ratio {kind}/clean"] = (entry[f"weight x batch size {kind}"]
                                                           / entry["weight x batch size clean"])
        rows.append(entry)
    return pd.DataFrame(rows).set_index("epoch")


def _nanmedian(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def weight_share_noisy(result) -> pd.Series:
    """Per epoch, the share of all the weight that went to mislabelled examples (index ``epoch``, values in [0, 1]).

    Uniform weights give the mislabelled share of the training set; CE gives
    more (it emphasises the examples it finds hard, mostly the mislabelled).
    Needs the noise mask and the ``weight`` record: raises ValueError otherwise.
    The share of every kind: :func:`weight_shares`.
    """
    if not has_mask(result):
        raise ValueError("weight_share_noisy needs the run's noise mask, and this run has none "
                         "(result.is_noisy is None)")
    _check_field(result, "weight")
    noisy = np.asarray(result.is_noisy, dtype=bool)
    epochs, shares = [], []
    for epoch, row in iter_record_rows(result, "weight"):
        ok = np.isfinite(row)
        total = row[ok].sum()
        shares.append(float(row[ok & noisy].sum() / total) if total > 0 else float("nan"))
        epochs.append(epoch)
    return pd.Series(shares, index=pd.Index(epochs, name="epoch"), name="weight share on mislabelled")


def weight_shares(result) -> pd.DataFrame:
    """Per epoch, the share of all the weight that went to each group (index ``epoch``, a column per group).

    The groups of :func:`group_masks` (``clean``, ``mislabelled``,
    ``outlier``, ``corrupted``, ...); each row sums to 1 over the groups.
    Uniform weights give each group its share of the training set; CE
    gives more to the groups it finds hard.
    Examples not seen in an epoch are left out of it.  Needs the ``weight``
    record (KeyError otherwise).
    """
    _check_field(result, "weight")
    groups = group_masks(result)
    epochs, rows = [], []
    for epoch, row in iter_record_rows(result, "weight"):
        ok = np.isfinite(row)
        total = row[ok].sum()
        rows.append([float(row[ok & m].sum() / total) if total > 0 else float("nan") for _, m in groups])
        epochs.append(epoch)
    return pd.DataFrame(rows, index=pd.Index(epochs, name="epoch"), columns=[g for g, _ in groups])


def separation_by_epoch(result, fields: Sequence[str] = ("eval_p", "p", "weight", "log_emphasis"), *,
                        kind: str = "mislabelled") -> pd.DataFrame:
    """Per recorded epoch, the AUC of each field separating the clean examples from one kind of touched ones.

    The AUC of "a higher score says clean" (:func:`grlib.separation_auc`)
    over the clean examples and those of ``kind`` (``mislabelled``,
    ``outlier`` or ``corrupted``; the other kinds are left out, see
    :func:`kind_selection`): for ``kind="outlier"`` and ``p`` it answers "is
    ``p`` lower for outliers than for clean examples?".  For a run with only
    the noise mask and the default kind this is :func:`grlib.separation_table`
    (mislabelled against every other example), with the real epoch numbers
    of a run that kept records every k epochs, read one row at a time.
    Fields the run did not keep are left out.  Columns ``epoch`` and
    ``auc_<field>`` (1: every clean example scores above every example of
    the kind; 0.5: no separation; below 0.5 the score ranks the kind higher,
    as CE's weight does for mislabelled examples; NaN when the kind has no
    example).  Needs the noise mask (and, for outliers and corrupted inputs,
    their mask): ValueError otherwise.
    """
    from .metrics import separation_auc

    if not has_mask(result):
        raise ValueError("separation needs the run's noise mask, and this run has none (result.is_noisy is None)")
    selected, is_kind = kind_selection(result, kind)
    kept = [f for f in fields if f in result.records]
    rows: dict = {}
    for field in kept:
        for epoch, row in iter_record_rows(result, field):
            rows.setdefault(epoch, {"epoch": epoch})[f"auc_{field}"] = separation_auc(row[selected], is_kind)
    return pd.DataFrame([rows[e] for e in sorted(rows)], columns=["epoch", *(f"auc_{f}" for f in kept)])


def ranked_examples(result, *, top: bool = True, n: int = 12, by: str | None = None, epoch: int = -1,
                    class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``n`` examples a loss emphasised most (``top=True``) or least at one epoch, as a table.

    Ranked by ``by``: default ``log_emphasis`` (the unnormalised emphasis,
    which does not depend on the batch an example fell in) when kept, else the
    weight x batch size.  Examples not seen in the epoch are left out; ties
    keep the index order.  Columns: ``index`` (position in the training
    set), ``given`` (the label trained on), ``true`` and ``mislabelled`` when
    the run knows them, ``kind`` (the group of :func:`group_masks`) when the
    run keeps outlier or corruption masks, ``p (train pass)`` /
    ``p (after epoch)`` when kept, and the ranking value.  ``class_names``
    maps labels to names.
    """
    from ._checks import check_int

    n = check_int("n", n, low=1)
    if by is None:
        by = "log_emphasis" if "log_emphasis" in result.records else "weight"
    values = record_row(result, by, epoch)
    label = "weight x batch size" if by == "weight" else by.replace("_", " ")
    if by == "weight":
        values = relative_weights(values)
    seen = np.flatnonzero(np.isfinite(values))
    order = seen[np.argsort(-values[seen] if top else values[seen], kind="stable")][:n]

    def name_of(labels):
        labels = np.asarray(labels)[order]
        if class_names:
            return [class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c)) for c in labels]
        return [int(c) for c in labels]

    table = {"index": order, "given": name_of(result.y_given)}
    if getattr(result, "y_true", None) is not None:
        table["true"] = name_of(result.y_true)
    if has_mask(result):
        table["mislabelled"] = np.asarray(result.is_noisy, dtype=bool)[order]
    if has_kinds(result):
        names, codes = _group_codes(result)
        table["kind"] = np.asarray(names, dtype=object)[codes[order]]
    for field, column in (("p", "p (train pass)"), ("eval_p", "p (after epoch)")):
        if field in result.records:
            table[column] = record_row(result, field, epoch)[order]
    table[label] = values[order]
    return pd.DataFrame(table)


def run_images(result):
    """The training images a run trained on (grlib's image data sets), or None where they cannot be recovered.

    Rebuilds the training split from the run's settings (``dataset``,
    ``n_train``, ``val_fraction``, ``split_seed``), unstandardised.  For a
    run with outliers or corrupted inputs (``outlier_fraction`` /
    ``corruption_fraction`` in its settings) it redoes that corruption as
    :func:`grlib.train` did (same seed and settings), so the images are those
    the model saw, in raw pixel units.  Returns ``(images [n, D],
    image_shape, class_names)`` only when the rows line up with the run's
    examples: the true labels equal the run's ``y_true`` example by example,
    and for a corrupted run also the given labels and the outlier and
    corruption masks.  None for a user's own data, a run without ``y_true``,
    a data set without images, a missing data cache, or rows that do not
    line up.  (With ``outlier_source="auto"`` the source follows the
    Fashion-MNIST cache: a run trained with the cache and redone without it
    would draw other outliers at the same rows.)
    """
    from .data import DataNotAvailableError, dataset_names, load_dataset

    cfg = result.config or {}
    name = cfg.get("dataset")
    y_true = getattr(result, "y_true", None)
    if y_true is None or name not in dataset_names():
        return None
    split = {"val_fraction": float(cfg.get("val_fraction", 0.0) or 0.0), "n_train": cfg.get("n_train"),
             "split_seed": int(cfg.get("split_seed", 0) or 0)}
    outliers = float(cfg.get("outlier_fraction", 0.0) or 0.0)
    corrupted = float(cfg.get("corruption_fraction", 0.0) or 0.0)
    try:
        data = load_dataset(name, standardize=False, **split)
    except (DataNotAvailableError, FileNotFoundError, ValueError, TypeError):
        return None
    if data.image_shape is None or not np.array_equal(np.asarray(data.y_train), np.asarray(y_true)):
        return None
    x = data.x_train
    if outliers > 0 or corrupted > 0:
        x = _redo_corruption(result, cfg, name, split, outliers, corrupted)
        if x is None:
            return None
    return x, tuple(data.image_shape), tuple(data.class_names)


def _redo_corruption(result, cfg: dict, name: str, split: dict, outliers: float, corrupted: float):
    """The raw training inputs of a corrupted run, redone as grlib.train did; None when they do not line up."""
    import warnings

    from .corruption import add_data_noise, input_scale
    from .data import DataNotAvailableError, load_dataset

    try:
        data = load_dataset(name, **split)  # standardised, as grlib.train corrupts it
        scale = input_scale(name, **split)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fallback source was reported when the run trained
            nd = add_data_noise(data.x_train, data.y_train, data.num_classes, noise=cfg.get("noise", "none"),
                                noise_rate=float(cfg.get("noise_rate", 0.0) or 0.0), outlier_fraction=outliers,
                                outlier_source=cfg.get("outlier_source", "auto"), corruption_fraction=corrupted,
                                corruption_kind=cfg.get("corruption_kind", "mixed"),
                                severity=float(cfg.get("corruption_severity", 0.5)), image_shape=data.image_shape,
                                scale=scale, dataset=name, seed=int(cfg.get("seed", 0) or 0))
    except (DataNotAvailableError, FileNotFoundError, ValueError, TypeError):
        return None
    extra = _extra_masks(result)
    lined_up = (np.array_equal(nd.labels, np.asarray(result.y_given))
                and np.array_equal(nd.is_outlier, extra.get("outlier", np.zeros_like(nd.is_outlier)))
                and np.array_equal(nd.is_corrupted, extra.get("corrupted", np.zeros_like(nd.is_corrupted))))
    used = (getattr(result, "metadata", None) or {}).get("outlier_source_used")
    if not lined_up or (used is not None and outliers > 0 and used != nd.outlier_source):
        return None
    return scale.to_raw(nd.x)
