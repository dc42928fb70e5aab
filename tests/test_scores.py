"""grlib.scores: label-issue scores from one run's records, find_label_issues, label_issues_frame.

Exact values on a hand-made 3-epoch record set, the documented direction on a real small training
loop with a known mask, references (the `aum` package's AUMCalculator on the same logits; data
maps' formulas as allenai/cartography writes them), the running summaries, streaming from disk,
find_label_issues on digits at 40% noise, and every bad input.
"""
import math
import warnings

import numpy as np
import pytest
import torch

import grlib
from grlib import scores as S

nan = np.nan


# -- hand-built runs -----------------------------------------------------------------------------------
def make_run(records, y_given, *, y_true=None, is_noisy=None, num_classes=3, epochs_completed=None,
             summaries=None, record_epochs=None):
    """A RunResult built by hand, as a user with their own loop would."""
    return grlib.RunResult(config={}, y_given=np.asarray(y_given), y_true=y_true, is_noisy=is_noisy,
                           num_classes=num_classes, records=records, epochs_completed=epochs_completed,
                           summaries=summaries or {}, record_epochs=record_epochs)


Y3 = np.array([0, 1, 2, 0])
P3 = np.array([[0.2, 0.5, 0.9, nan],
               [0.6, 0.4, 0.8, 0.1],
               [0.7, nan, 0.3, 0.2]])
PRED3 = np.array([[1, 1, 2, -1],    # correct: F T T .
                  [0, 0, 2, 1],     # correct: T F T F
                  [0, -1, 1, 2]],   # correct: T . F F
                 dtype=np.int16)
MARGIN3 = np.array([[-1.0, 0.5, 2.0, nan],
                    [0.5, -0.2, 1.5, -2.0],
                    [1.0, nan, -0.5, -1.0]])
WEIGHT3 = np.array([[0.5, 0.3, 0.2, nan],
                    [0.1, 0.2, 0.3, 0.4],
                    [0.2, nan, 0.5, 0.3]])


def run3(**kw):
    return make_run({"p": P3.copy(), "pred": PRED3.copy(), "margin": MARGIN3.copy(), "weight": WEIGHT3.copy()},
                    Y3, **kw)


# Worked by hand from the tables above.
EXPECTED3 = {
    "confidence": [1.5 / 3, 0.9 / 2, 2.0 / 3, 0.3 / 2],
    "variability": [math.sqrt(0.14 / 3), 0.05, math.sqrt((0.7 / 3) ** 2 / 3 + (0.4 / 3) ** 2 / 3 + (1.1 / 3) ** 2 / 3),
                    0.05],
    "correctness": [2 / 3, 1 / 2, 2 / 3, 0.0],
    "aum": [0.5 / 3, 0.3 / 2, 3.0 / 3, -3.0 / 2],
    "forgetting": [0.0, 1.0, 1.0, math.inf],  # example 3 is never predicted as its label
    "final_p": [0.7, 0.4, 0.3, 0.2],          # example 1 was last seen at epoch 2
    "mean_weight": [0.8 / 3, 0.5 / 2, 1.0 / 3, 0.7 / 2],
    # per-epoch rank of -log p among the seen, scaled to [0, 1]; epoch 1: (1, .5, 0), 2: (1/3, 2/3, 0, 1), 3: (0, .5, 1)
    "small_loss": [(1 + 1 / 3 + 0) / 3, (0.5 + 2 / 3) / 2, (0 + 0 + 0.5) / 3, (1 + 1) / 2],
}


@pytest.mark.parametrize("name", list(EXPECTED3))
def test_exact_values_on_a_hand_made_three_epoch_run(name):
    got = S.SCORES[name](run3())
    assert got.dtype == np.float64 and got.shape == (4,)
    np.testing.assert_allclose(got, EXPECTED3[name], rtol=1e-12, atol=1e-15)


def test_epoch_windows_use_only_their_epochs():
    r = run3()
    np.testing.assert_allclose(S.confidence(r, epochs=(2, 3)), [0.65, 0.4, 0.55, 0.15], rtol=1e-12)
    first = S.confidence(r, first_k=1)
    np.testing.assert_allclose(first[:3], [0.2, 0.5, 0.9])
    assert np.isnan(first[3])  # not seen in epoch 1: NaN, never 0
    np.testing.assert_allclose(S.final_p(r, first_k=2), [0.6, 0.4, 0.8, 0.1])
    np.testing.assert_allclose(S.forgetting(r, epochs=(1, 2)), [0.0, 1.0, 0.0, math.inf])
    np.testing.assert_allclose(S.small_loss(r, epochs=(3, 3)), [0.0, nan, 0.5, 1.0])
    np.testing.assert_allclose(S.aum(r, first_k=3), EXPECTED3["aum"], rtol=1e-12)


def test_an_interrupted_epoch_is_left_out():
    # the run stopped during epoch 3; its rows were kept (marked partial): scores use epochs 1-2
    r = grlib.RunResult(config={}, y_given=Y3, records={"p": P3.copy()}, epochs_completed=2,
                        metadata={"partial_epoch": 3})
    np.testing.assert_allclose(S.confidence(r), [0.4, 0.45, 0.85, 0.1], rtol=1e-12)
    with pytest.raises(ValueError, match=r"epochs=\(1, 3\) lies outside the recorded epochs 1..2"):
        S.confidence(r, epochs=(1, 3))


def test_record_epochs_kept_every_other_epoch():
    # rows hold epochs 2 and 4 (records kept every 2 epochs); windows select by epoch number
    r = make_run({"p": P3[:2].copy()}, Y3, epochs_completed=4, record_epochs=[2, 4])
    np.testing.assert_allclose(S.confidence(r, epochs=(3, 4)), [0.6, 0.4, 0.8, 0.1])
    np.testing.assert_allclose(S.confidence(r, first_k=2), [0.2, 0.5, 0.9, nan])
    with pytest.raises(ValueError, match="no recorded epoch of 'p' falls inside epochs=\\(3, 3\\).*2, 4"):
        S.confidence(r, epochs=(3, 3))


def _summaries_of(p, pred, margin, weight, y):
    """The running summaries as INTERFACES.md defines them, from full per-epoch arrays."""
    seen = np.isfinite(p)
    correct = (pred == y) & (pred >= 0)
    n_forget = np.zeros(y.size, np.int64)
    for i in range(y.size):
        trend = correct[seen[:, i], i]
        n_forget[i] = int(np.sum(trend[:-1] & ~trend[1:]))
    return {"n_seen": seen.sum(0), "p_sum": np.nansum(p, 0), "p_sq_sum": np.nansum(p ** 2, 0),
            "margin_sum": np.nansum(margin, 0), "weight_sum": np.nansum(weight, 0), "n_correct": correct.sum(0),
            "n_forget": n_forget}


def test_summaries_give_the_same_scores_as_the_records():
    plain = run3()
    summ = _summaries_of(P3, PRED3, MARGIN3, WEIGHT3, Y3)
    for name in ("confidence", "variability", "correctness", "aum", "forgetting", "mean_weight"):
        from_sums = S.SCORES[name](make_run({}, Y3, epochs_completed=3, summaries=summ))  # summaries only
        np.testing.assert_allclose(from_sums, S.SCORES[name](plain), rtol=1e-12, atol=1e-12, err_msg=name)


def test_summaries_cover_every_epoch_records_only_the_kept_ones():
    # the summaries saw epochs 1-3; the records kept epoch 3 only (every=3): without a window the
    # summaries answer (every epoch), with a window the records do (the summaries cannot be windowed)
    summ = _summaries_of(P3, PRED3, MARGIN3, WEIGHT3, Y3)
    r = make_run({"p": P3[2:].copy()}, Y3, epochs_completed=3, summaries=summ, record_epochs=[3])
    np.testing.assert_allclose(S.confidence(r), EXPECTED3["confidence"], rtol=1e-12)
    np.testing.assert_allclose(S.confidence(r, epochs=(1, 3)), [0.7, nan, 0.3, 0.2])
    # final_p and small_loss have no summary: they stream the kept rows
    np.testing.assert_allclose(S.final_p(r), [0.7, nan, 0.3, 0.2])


class RowsOnly:
    """A [rows, n] record that hands out single rows and refuses any larger read (a streaming check)."""

    def __init__(self, arr):
        self._arr = np.asarray(arr)
        self.shape, self.ndim, self.dtype = self._arr.shape, 2, self._arr.dtype
        self.reads = 0

    def __getitem__(self, k):
        if not isinstance(k, (int, np.integer)):
            raise AssertionError(f"read more than one row at once: {k!r}")
        self.reads += 1
        return self._arr[k].copy()

    def __array__(self, *a, **kw):
        raise AssertionError("the whole record was loaded")


@pytest.mark.parametrize("name", list(EXPECTED3))
def test_scores_stream_one_row_at_a_time(name):
    recs = {"p": RowsOnly(P3), "pred": RowsOnly(PRED3), "margin": RowsOnly(MARGIN3), "weight": RowsOnly(WEIGHT3)}
    r = make_run(recs, Y3, epochs_completed=3)
    np.testing.assert_allclose(S.SCORES[name](r), EXPECTED3[name], rtol=1e-12, atol=1e-15)
    assert sum(v.reads for v in recs.values()) >= 1


# -- a real small training loop with a known mask -----------------------------------------------------
def _blobs(n=360, num_classes=4, dim=8, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, (num_classes, dim))
    y = rng.integers(0, num_classes, n)
    x = (centres[y] + rng.normal(0.0, 1.0, (n, dim))).astype(np.float32)
    noisy = rng.random(n) < noise
    given = y.copy()
    given[noisy] = (y[noisy] + rng.integers(1, num_classes, noisy.sum())) % num_classes
    return x, y, given, noisy


def train_recording(x, given, num_outputs, *, epochs=12, batch=32, seed=0, loss="ce", calculator=None,
                    keep_logits=False, recorder=None):
    """A plain torch loop that keeps p, pred, margin and weight per example ([epochs, n], float32) itself;
    optionally feeds a grlib.Recorder and the `aum` package's AUMCalculator the same logits."""
    torch.manual_seed(seed)
    n, dim = x.shape
    model = torch.nn.Sequential(torch.nn.Linear(dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, num_outputs))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = grlib.get_loss(loss, **({"lam": 1.0, "beta": 12.0} if loss == "gr" else {}))
    X, Y = torch.as_tensor(x), torch.as_tensor(given)
    recs = {k: np.full((epochs, n), np.nan, np.float32) for k in ("p", "margin", "weight")}
    recs["pred"] = np.full((epochs, n), -1, np.int16)
    logits_kept = np.zeros((epochs, n, num_outputs), np.float32)
    gen = torch.Generator().manual_seed(seed)
    for e in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for idx in torch.tensor_split(perm, -(-n // batch)):  # near-equal batches: never a batch of one
            logits = model(X[idx])
            out = loss_fn.details(logits, Y[idx])
            opt.zero_grad()
            loss_fn.reduce(out.values).backward()
            opt.step()
            with torch.no_grad():
                lg = logits.detach()
                given_logit = lg.gather(1, Y[idx, None]).squeeze(1)
                other = torch.scatter(lg, 1, Y[idx, None], float("-inf")).max(1).values
                i = idx.numpy()
                recs["p"][e, i] = out.p.numpy()
                recs["margin"][e, i] = (given_logit - other).numpy()
                recs["weight"][e, i] = out.weight.numpy()
                recs["pred"][e, i] = lg.argmax(1).numpy()
                logits_kept[e, i] = lg.numpy()
            if calculator is not None:
                calculator.update(lg, Y[idx], idx.tolist())
            if recorder is not None:
                recorder.update(idx, logits, Y[idx], out)
        if recorder is not None:
            recorder.end_epoch()
    return recs, (logits_kept if keep_logits else None)


@pytest.fixture(scope="module")
def blob_run():
    x, y, given, noisy = _blobs()
    recs, logits = train_recording(x, given, 4, keep_logits=True)
    r = make_run(recs, given, y_true=y, is_noisy=noisy, num_classes=4)
    return r, logits


@pytest.mark.parametrize("name", list(S.SCORES))
def test_documented_direction_and_range_hold_on_a_real_noisy_run(blob_run, name):
    r, _ = blob_run
    spec = S.SCORES[name]
    v = spec(r)
    assert v.shape == (r.n_train,) and np.isfinite(v).sum() + np.isinf(v).sum() == r.n_train
    lo, hi = {"confidence": (0, 1), "variability": (0, 0.5), "correctness": (0, 1), "final_p": (0, 1),
              "mean_weight": (0, 1), "small_loss": (0, 1), "aum": (-np.inf, np.inf),
              "forgetting": (0, np.inf)}[name]
    assert ((v >= lo) & (v <= hi)).all(), (name, v.min(), v.max())
    if name == "forgetting":
        assert np.all((v == np.floor(v)) | np.isinf(v))
    if spec.direction == S.NO_DIRECTION:
        return
    o = S.oriented(name, v)
    o = np.where(np.isinf(o), -1e9, o)
    # clean examples score higher than mislabelled ones on average, and rank above them (ROC AUC)
    assert o[~r.is_noisy].mean() > o[r.is_noisy].mean()
    assert grlib.separation_auc(o, r.is_noisy) > 0.75, name


def test_aum_equals_the_aum_package_on_the_same_logits(tmp_path):
    aum_pkg = pytest.importorskip("aum", reason="the reference check needs the `aum` package (pip install aum==1.0.2)")
    x, y, given, noisy = _blobs(n=200, seed=3)
    calc = aum_pkg.AUMCalculator(save_dir=str(tmp_path / "aum"), compressed=True)
    rec = grlib.Recorder(len(given), tmp_path / "run", fields=["p", "pred", "margin"])
    recs, _ = train_recording(x, given, 4, epochs=6, seed=3, calculator=calc, recorder=rec)
    ref = np.array([calc.sums[i] / calc.counts[i] for i in range(len(given))])
    assert all(calc.counts[i] == 6 for i in range(len(given)))
    # from the loop's own float32 margins, from the Recorder's running summaries (float64), from its
    # disk records (float32, memory-mapped) with a window over every epoch, and from the saved folder
    mine = make_run(recs, given, num_classes=4)
    recorded = rec.result()
    assert recorded.summaries and isinstance(recorded.records["margin"], np.memmap)
    for r in (mine, recorded, tmp_path / "run"):
        np.testing.assert_allclose(S.aum(r), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(S.aum(recorded, epochs=(1, 6)), ref, rtol=1e-6, atol=1e-6)


def test_the_recorders_summaries_and_records_agree(tmp_path):
    """Without a window the scores come from the Recorder's float64 running summaries; with one, from
    its float32 records: over every epoch the two agree to float32 precision."""
    x, y, given, noisy = _blobs(n=240, seed=4)
    rec = grlib.Recorder(len(given), tmp_path / "run")
    train_recording(x, given, 4, epochs=7, seed=4, loss="gr", recorder=rec)
    r = rec.result(y_true=y)
    assert r.has_mask and r.summaries["n_seen"].min() == 7
    for name in ("confidence", "variability", "correctness", "aum", "forgetting", "mean_weight"):
        np.testing.assert_allclose(S.SCORES[name](r), S.SCORES[name](r, epochs=(1, 7)), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def _cartography_reference(logits, gold):
    """Data-map metrics as allenai/cartography's compute_train_dy_metrics defines them, per example:
    softmax probability of the gold label per epoch; confidence = mean, variability = np.std (ddof 0),
    correctness = count of epochs with argmax == gold, forgetfulness = learnt->wrong transitions
    (1000 when never predicted right)."""
    out = {"confidence": [], "variability": [], "correctness": [], "forgetting": []}
    for i in range(logits.shape[1]):
        probs = torch.softmax(torch.as_tensor(logits[:, i]), dim=-1).numpy()
        trend_p = [float(pe[gold[i]]) for pe in probs]
        trend_ok = [bool(np.argmax(le) == gold[i]) for le in logits[:, i]]
        forgotten = 1000
        if any(trend_ok):
            forgotten, learnt = 0, False
            for ok in trend_ok:
                if learnt and not ok:
                    forgotten += 1
                learnt = ok
        out["confidence"].append(np.mean(trend_p))
        out["variability"].append(np.std(trend_p))
        out["correctness"].append(sum(trend_ok))
        out["forgetting"].append(forgotten)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def test_data_map_scores_equal_cartographys_formulas(blob_run):
    r, logits = blob_run
    ref = _cartography_reference(logits, r.y_given)
    epochs = logits.shape[0]
    # p was recorded from the same logits (float32); cartography recomputes softmax in float32
    np.testing.assert_allclose(S.confidence(r), ref["confidence"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(S.variability(r), ref["variability"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(S.correctness(r) * epochs, ref["correctness"], rtol=0, atol=1e-9)
    ours = S.forgetting(r)
    np.testing.assert_array_equal(np.where(np.isinf(ours), 1000, ours), ref["forgetting"])


# -- find_label_issues and label_issues_frame ---------------------------------------------------------
def test_find_label_issues_ranks_most_suspect_first_and_counts_with_the_mixture(blob_run):
    r, _ = blob_run
    conf = S.confidence(r)
    ranked = grlib.scores.find_label_issues(r, return_all=True)
    assert ranked.dtype == np.int64 and sorted(ranked) == list(range(r.n_train))
    assert np.all(np.diff(conf[ranked]) >= 0)  # ascending confidence: least clean-looking first
    flagged = grlib.scores.find_label_issues(r)
    np.testing.assert_array_equal(flagged, ranked[:flagged.size])
    true = int(r.is_noisy.sum())
    assert 0.75 * true <= flagged.size <= 1.25 * true
    assert r.is_noisy[flagged].mean() >= 0.85
    # a count you choose
    assert grlib.scores.find_label_issues(r, num_issues=7).tolist() == ranked[:7].tolist()
    assert grlib.scores.find_label_issues(r, noise_rate=0.25).size == round(0.25 * r.n_train)
    # scores where higher says mislabelled are turned round
    fg = grlib.scores.find_label_issues(r, score="small_loss", return_all=True)
    assert np.all(np.diff(S.small_loss(r)[fg]) <= 0)


def test_a_clean_run_flags_nothing_and_says_why():
    x, y, _, _ = _blobs(noise=0.0, seed=1)
    recs, _ = train_recording(x, y, 4, epochs=10, seed=1)
    r = make_run(recs, y, num_classes=4)
    # a two-component mixture splits clean data too; its low group here is still confidently right
    with pytest.warns(UserWarning, match="low group of 'confidence' scores is centred at 0.9.*none is flagged"):
        flagged = grlib.scores.find_label_issues(r)
    assert flagged.size == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no count asked for: no mixture, no warning
        assert grlib.scores.find_label_issues(r, return_all=True).size == r.n_train
        assert grlib.scores.find_label_issues(r, noise_rate=0.1).size == round(0.1 * r.n_train)
    with pytest.warns(UserWarning, match="'aum' scores is centred at"):
        assert grlib.scores.find_label_issues(r, score="aum").size == 0


def test_never_learnt_examples_rank_first_by_forgetting():
    r = run3()
    ranked = grlib.scores.find_label_issues(r, score="forgetting", return_all=True)
    assert ranked[0] == 3  # never predicted as its label: most suspect
    assert set(ranked[1:3]) == {1, 2} and ranked[3] == 0


def test_unseen_examples_are_not_ranked():
    r = run3()
    ranked = grlib.scores.find_label_issues(r, first_k=1, return_all=True)
    assert 3 not in ranked and ranked.tolist() == [0, 1, 2]


def test_label_issues_frame(blob_run):
    r, _ = blob_run
    df = grlib.scores.label_issues_frame(r)
    assert len(df) == r.n_train and df.index.name == "index"
    for col in ("given_label", "predicted_label", "confidence", "variability", "correctness", "aum", "forgetting",
                "final_p", "mean_weight", "small_loss", "label_score", "rank", "is_label_issue", "true_label",
                "is_noisy"):
        assert col in df.columns, col
    flagged = grlib.scores.find_label_issues(r)
    assert set(np.flatnonzero(df.is_label_issue.to_numpy())) == set(flagged.tolist())
    assert df.loc[flagged[0], "rank"] == 1
    np.testing.assert_array_equal(df.predicted_label.to_numpy(), r.records["pred"][-1])
    np.testing.assert_array_equal(df.is_noisy.to_numpy(), r.is_noisy)
    # a run with unknown truth: no truth columns, no error; only the scores its records allow
    bare = make_run({"p": P3.copy()}, Y3, epochs_completed=3)
    d2 = grlib.scores.label_issues_frame(bare, num_issues=1)
    assert d2.is_label_issue.sum() == 1 and d2.is_label_issue[3]  # the lowest mean p
    assert "is_noisy" not in d2.columns and "true_label" not in d2.columns
    assert {"confidence", "variability", "final_p", "small_loss"} <= set(d2.columns)
    assert "aum" not in d2.columns and (d2.predicted_label == -1).all()


def test_threshold_samples_pick_a_fake_class():
    y = np.repeat(np.arange(10), 30)
    ts = grlib.scores.make_threshold_samples(y, 10, seed=0)
    assert ts.fake_class == 10 and ts.num_classes == 11
    assert ts.mask.sum() == round(300 / 11)
    assert (ts.labels[ts.mask] == 10).all() and (ts.labels[~ts.mask] == y[~ts.mask]).all()
    again = grlib.scores.make_threshold_samples(y, 10, seed=0)
    np.testing.assert_array_equal(again.mask, ts.mask)
    second = grlib.scores.make_threshold_samples(y, 10, seed=1, exclude=ts.mask)
    assert not (second.mask & ts.mask).any() and second.mask.sum() == ts.mask.sum()
    assert grlib.scores.make_threshold_samples(y, 10, fraction=0.5, seed=0).mask.sum() == 150


def test_threshold_samples_set_the_count_and_are_not_scored():
    x, y, given, noisy = _blobs(n=440, noise=0.25, seed=2)
    ts = grlib.scores.make_threshold_samples(given, 4, seed=2)
    recs, _ = train_recording(x, ts.labels, ts.num_classes, epochs=4, seed=2)  # few epochs: before memorising
    r = make_run(recs, ts.labels, num_classes=ts.num_classes)
    flagged = grlib.scores.find_label_issues(r, score="aum", threshold_samples=ts.mask)
    assert not ts.mask[flagged].any()
    ranked = grlib.scores.find_label_issues(r, score="aum", threshold_samples=np.flatnonzero(ts.mask), return_all=True)
    assert ranked.size == (~ts.mask).sum()
    real_noisy = noisy & ~ts.mask
    # the threshold samples are mislabelled by construction: the threshold catches nearly every real
    # mislabelled example (on these low-dimensional blobs it also catches clean ones near the class
    # boundaries: precision is measured on digits, not asserted here)
    assert real_noisy[flagged].sum() >= 0.9 * real_noisy.sum()
    assert real_noisy[flagged].mean() > 1.5 * real_noisy.mean()
    # the threshold is a percentile of their AUM (88 of them: 100 (1 - 5/88), so that 5 lie above it);
    # every flagged example is at or below it, and flag_threshold reports it
    a = S.aum(r)
    m = int(ts.mask.sum())
    assert m == 88 and S.default_percentile(m) == pytest.approx(100 * (1 - 5 / 88))
    cut = np.percentile(a[ts.mask], S.default_percentile(m))
    assert (a[flagged] <= cut).all() and (a[~ts.mask & (a <= cut)].size == flagged.size)
    assert (a[ts.mask] > cut).sum() >= 5
    th = grlib.scores.flag_threshold(r, score="aum", threshold_samples=ts.mask)
    assert th.method == "threshold_samples" and th.count == flagged.size
    assert th.value == pytest.approx(cut) and th.percentile == pytest.approx(S.default_percentile(m))
    # the paper's 99th percentile when asked for
    at99 = grlib.scores.flag_threshold(r, score="aum", threshold_samples=ts.mask, threshold_percentile=99)
    assert at99.value == pytest.approx(np.percentile(a[ts.mask], 99)) and at99.percentile == 99
    assert at99.count == grlib.scores.find_label_issues(r, score="aum", threshold_samples=ts.mask,
                                                        threshold_percentile=99).size


def test_default_percentile_keeps_five_threshold_samples_above_the_cut():
    assert S.default_percentile(10_000) == 99 and S.default_percentile(500) == 99
    assert S.default_percentile(122) == pytest.approx(100 * (1 - 5 / 122))
    assert S.default_percentile(6) == 50  # never below the median
    for m in (20, 50, 122, 300, 499):
        q = S.default_percentile(m)
        assert np.sum(np.arange(m) > np.percentile(np.arange(m), q)) >= 5
    with pytest.raises(ValueError, match="n_threshold_samples=0 is too small"):
        S.default_percentile(0)


def test_few_threshold_samples_warn():
    r = make_run({"margin": MARGIN3.copy()}, [0, 1, 3, 0], num_classes=4)  # example 2 is the one threshold sample
    with pytest.warns(UserWarning, match="only 1 threshold samples were seen.*fragile"):
        flagged = grlib.scores.find_label_issues(r, score="aum", threshold_samples=[2])
    # AUM -1.5, 0.15 and 1/6 all lie at or below the threshold sample's 1.0: flagged, lowest first
    assert flagged.tolist() == [3, 1, 0]


def test_flag_threshold_in_the_scores_own_units(blob_run):
    r, _ = blob_run
    conf = S.confidence(r)
    th = grlib.scores.flag_threshold(r)
    flagged = grlib.scores.find_label_issues(r)
    assert th.method == "mixture" and th.count == flagged.size and th.score == "confidence"
    assert 0 < th.value < 1 and (conf[flagged] <= th.value).all() and (np.delete(conf, flagged) >= th.value).all()
    # a score where higher says mislabelled: flagged at or above its cut
    sl = S.small_loss(r)
    th_sl = grlib.scores.flag_threshold(r, score="small_loss")
    fl_sl = grlib.scores.find_label_issues(r, score="small_loss")
    assert th_sl.direction == S.NOISY_HIGH and 0 < th_sl.value < 1
    assert (sl[fl_sl] >= th_sl.value).all() and (np.delete(sl, fl_sl) <= th_sl.value).all()
    # a count you choose: the score of the last example flagged
    th7 = grlib.scores.flag_threshold(r, num_issues=7)
    assert th7.method == "num_issues" and th7.value == conf[grlib.scores.find_label_issues(r, num_issues=7)[-1]]
    assert math.isnan(grlib.scores.flag_threshold(r, num_issues=0).value)


# -- a real grlib.train run on digits -----------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_gr_40():
    return grlib.train(grlib.RunConfig(dataset="digits", noise="symmetric", noise_rate=0.4, epochs=30, loss="gr",
                                       loss_params={"lam": 1.0, "beta": 12.0}, seed=0), progress=False)


def test_find_label_issues_on_digits_at_40_percent_noise(digits_gr_40):
    r = digits_gr_40
    ranked = grlib.scores.find_label_issues(r, return_all=True)
    k = int(r.is_noisy.sum())
    assert r.is_noisy[ranked[:k]].mean() > 0.85  # precision at the true rate
    assert grlib.precision_at_rate(S.confidence(r), r.is_noisy) == pytest.approx(r.is_noisy[ranked[:k]].mean())
    flagged = grlib.scores.find_label_issues(r)  # the automatic count, no mask used
    assert 0.75 * k <= flagged.size <= 1.25 * k
    assert r.is_noisy[flagged].mean() >= 0.85


def test_aum_on_digits(digits_gr_40):
    r = digits_gr_40
    flagged = grlib.scores.find_label_issues(r, score="aum")
    k = int(r.is_noisy.sum())
    assert 0.75 * k <= flagged.size <= 1.25 * k and r.is_noisy[flagged].mean() >= 0.85


def test_disk_backed_runs_give_the_same_scores(digits_gr_40, tmp_path):
    r = digits_gr_40
    r.save(tmp_path / "run")
    loaded = grlib.RunResult.load(tmp_path / "run")
    assert isinstance(loaded.records["p"], np.memmap) and loaded.summaries
    for name in S.SCORES:
        np.testing.assert_array_equal(S.SCORES[name](loaded), S.SCORES[name](r), err_msg=name)
        np.testing.assert_array_equal(S.SCORES[name](loaded, first_k=10), S.SCORES[name](r, first_k=10),
                                      err_msg=name)
        np.testing.assert_array_equal(S.SCORES[name](tmp_path / "run"), S.SCORES[name](r), err_msg=name)
    np.testing.assert_array_equal(grlib.scores.find_label_issues(str(tmp_path / "run")),
                                  grlib.scores.find_label_issues(r))
    # records as memory-mapped .npy files, read row by row
    mm = {}
    for k, v in r.records.items():
        np.save(tmp_path / f"{k}.npy", np.asarray(v))
        mm[k] = np.load(tmp_path / f"{k}.npy", mmap_mode="r")
    on_disk = make_run(mm, r.y_given, num_classes=r.num_classes, epochs_completed=r.epochs_completed)
    np.testing.assert_array_equal(S.small_loss(on_disk), S.small_loss(r))
    np.testing.assert_array_equal(S.confidence(on_disk, first_k=10), S.confidence(r, first_k=10))


# -- bad input ----------------------------------------------------------------------------------------
def test_unknown_score_names_are_listed():
    with pytest.raises(ValueError, match="score='p_mean'.*'confidence'.*'aum'.*'small_loss'"):
        grlib.scores.find_label_issues(run3(), score="p_mean")
    with pytest.raises(ValueError, match="names='nope'.*'confidence'"):
        S.compute_scores(run3(), ["confidence", "nope"])
    with pytest.raises(ValueError, match="'variability' has no clear direction.*Ranking scores: 'confidence'"):
        grlib.scores.find_label_issues(run3(), score="variability")
    with pytest.raises(ValueError, match="mean_weight.*no clear direction"):
        S.oriented("mean_weight", np.zeros(3))


def test_a_missing_field_names_it_and_how_to_record_it():
    r = make_run({"p": P3.copy()}, Y3)
    with pytest.raises(ValueError, match=r"score 'aum' needs the per-example record 'margin'.*kept: \['p'\].*"
                                         r"grlib\.Recorder\(fields="):
        S.aum(r)
    with pytest.raises(ValueError, match="'correctness' needs the per-example record 'pred'"):
        S.correctness(r)
    with pytest.raises(ValueError, match="'mean_weight' needs .*'weight'.*out=loss.details"):
        S.mean_weight(r)
    with pytest.raises(ValueError, match="'confidence' needs .*'eval_p'.*eval_train=True"):
        S.confidence(r, source="eval")
    with pytest.raises(ValueError, match="source='test' is not one of the allowed values: 'train', 'eval'"):
        S.confidence(r, source="test")
    # a run with the running summaries but without the margin records: fine over the whole run, not windowed
    summ = _summaries_of(P3, PRED3, MARGIN3, WEIGHT3, Y3)
    only_sums = make_run({"p": P3.copy()}, Y3, summaries=summ)
    np.testing.assert_allclose(S.aum(only_sums), EXPECTED3["aum"], rtol=1e-12)
    with pytest.raises(ValueError, match="needs the per-example record 'margin'.*without an epoch window its "
                                         "running summaries \\('margin_sum'\\)"):
        S.aum(only_sums, first_k=2)
    with pytest.raises(ValueError, match="'aum' comes from the training pass only"):
        grlib.scores.find_label_issues(run3(), score="aum", source="eval")


def test_empty_runs_are_refused():
    with pytest.raises(ValueError, match="the run has no examples"):
        S.confidence(make_run({"p": np.zeros((2, 0))}, np.zeros(0, np.int64)))
    with pytest.raises(ValueError, match="the run recorded no epochs"):
        S.confidence(make_run({"p": np.zeros((0, 4))}, Y3))
    with pytest.raises(ValueError, match="the run recorded no epochs"):
        grlib.scores.find_label_issues(make_run({}, Y3))
    # an interrupted run: its only row is the unfinished epoch 1
    partial = grlib.RunResult(config={}, y_given=Y3, records={"p": P3[:1].copy()}, epochs_completed=0,
                              metadata={"partial_epoch": 1})
    with pytest.raises(ValueError, match="the run recorded no epochs.*rows are of an unfinished epoch"):
        S.confidence(partial)
    never = make_run({"p": np.full((2, 4), np.nan)}, Y3)
    with pytest.raises(ValueError, match="no example was seen"):
        grlib.scores.find_label_issues(never)


@pytest.mark.parametrize("kw, exc, match", [
    ({"first_k": 5}, ValueError, r"first_k=5 asks for epochs the run did not record.*1 <= first_k <= 3"),
    ({"first_k": 0}, ValueError, "first_k=0 is too small"),
    ({"first_k": 2.5}, TypeError, "first_k must be an integer"),
    ({"epochs": (2, 9)}, ValueError, r"epochs=\(2, 9\) lies outside the recorded epochs 1..3"),
    ({"epochs": (3, 2)}, ValueError, "first must be <= last"),
    ({"epochs": (0, 2)}, ValueError, r"epochs\[0\] \(first\)=0 is too small"),
    ({"epochs": 3}, TypeError, "epochs must be a pair"),
    ({"epochs": (1, 2), "first_k": 2}, ValueError, "not both"),
])
def test_bad_epoch_windows(kw, exc, match):
    with pytest.raises(exc, match=match):
        S.confidence(run3(), **kw)


def test_bad_inputs_to_find_label_issues():
    r = run3()
    with pytest.raises(TypeError, match="result must be a grlib.RunResult or the folder"):
        grlib.scores.find_label_issues({"p": P3})
    with pytest.raises(FileNotFoundError, match="no run folder at"):
        grlib.scores.find_label_issues("/nonexistent/run/folder")
    with pytest.raises(TypeError, match="return_all must be True or False"):
        grlib.scores.find_label_issues(r, return_all="yes")
    with pytest.raises(ValueError, match="at most one of threshold_samples, num_issues, noise_rate"):
        grlib.scores.find_label_issues(r, num_issues=2, noise_rate=0.5)
    with pytest.raises(ValueError, match="num_issues=9 is too large"):
        grlib.scores.find_label_issues(r, num_issues=9)
    with pytest.raises(ValueError, match="noise_rate=1.5 is outside"):
        grlib.scores.find_label_issues(r, noise_rate=1.5)
    with pytest.raises(ValueError, match=r"threshold_samples as a boolean mask must have shape \(4,\)"):
        grlib.scores.find_label_issues(r, threshold_samples=np.ones(3, bool))
    with pytest.raises(ValueError, match="one fake class that no other example carries"):
        grlib.scores.find_label_issues(r, threshold_samples=[0])  # label 0 is also example 3's
    with pytest.raises(ValueError, match=r"threshold_samples indices must lie in \[0, 3\]"):
        grlib.scores.find_label_issues(r, threshold_samples=[7])
    with pytest.raises(ValueError, match="threshold_percentile=120.0 is outside"):
        grlib.scores.find_label_issues(make_run({"margin": MARGIN3.copy()}, [0, 1, 3, 0], num_classes=4),
                                       score="aum", threshold_samples=[2], threshold_percentile=120)


def test_bad_inputs_to_make_threshold_samples():
    y = np.arange(10) % 3
    with pytest.raises(ValueError, match="num_classes=1 is too small"):
        grlib.scores.make_threshold_samples(y, 1, seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        grlib.scores.make_threshold_samples(y, 2, seed=0)
    with pytest.raises(TypeError, match="labels must be a 1-D integer array"):
        grlib.scores.make_threshold_samples(y.astype(float), 3, seed=0)
    with pytest.raises(ValueError, match="fraction=1.0 is outside"):
        grlib.scores.make_threshold_samples(y, 3, fraction=1.0, seed=0)
    with pytest.raises(ValueError, match="picks no threshold sample"):
        grlib.scores.make_threshold_samples(y, 3, fraction=0.01, seed=0)
    with pytest.raises(ValueError, match="only 1 examples are left after exclude"):
        grlib.scores.make_threshold_samples(y, 3, fraction=0.5, seed=0, exclude=np.arange(9))


def test_with_threshold_samples_trains_with_one_output_more():
    cfg = grlib.RunConfig(dataset="digits", noise="symmetric", noise_rate=0.3, epochs=8, seed=1, eval_train=False)
    data, noisy, _ = grlib.prepare(cfg)
    data_ts, noisy_ts, ts = grlib.scores.with_threshold_samples(data, noisy, seed=5)
    assert data_ts.num_classes == 11 and data_ts.class_names[-1] == "threshold"
    assert (noisy_ts.labels[ts.mask] == 10).all() and (noisy_ts.labels[~ts.mask] == noisy.labels[~ts.mask]).all()
    assert (noisy_ts.is_noisy == (noisy.is_noisy | ts.mask)).all()
    np.testing.assert_array_equal(noisy_ts.true_labels, noisy.true_labels)  # the truth is kept
    assert data.num_classes == 10 and noisy.labels.max() <= 9  # the inputs are not changed
    r = grlib.train(cfg, data=data_ts, noisy=noisy_ts, progress=False)
    assert r.num_classes == 11 and grlib.predict_proba(r.model, data.x_test[:5]).shape == (5, 11)
    flagged = grlib.scores.find_label_issues(r, score="aum", threshold_samples=ts.mask)
    assert flagged.size and not ts.mask[flagged].any()
    real = noisy.is_noisy & ~ts.mask
    assert real[flagged].mean() > 2 * real.mean()  # far richer in mislabelled examples than the data
    with pytest.raises(TypeError, match="data must be a grlib.Dataset"):
        grlib.scores.with_threshold_samples((data.x_train, data.y_train), noisy)
    with pytest.raises(TypeError, match="noisy must be a grlib.NoisyLabels"):
        grlib.scores.with_threshold_samples(data, noisy.labels)
