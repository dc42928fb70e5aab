"""Detection scores: one run's per-example scores and cleanlab's cross-validated baseline."""
import numpy as np
import pytest

import grlib
import grlib.scores
from grlib.detection import cleanlab_scores, cross_val_pred_probs, detection_table, run_scores


@pytest.fixture(scope="module")
def noisy_digits():
    cfg = grlib.RunConfig(epochs=15, loss="ce", loss_params={}, seed=0)
    data, noisy, _ = grlib.prepare(cfg)
    return cfg, data, noisy


def test_cross_val_probs_are_out_of_sample_and_detect_noise(noisy_digits):
    cfg, data, noisy = noisy_digits
    probs = cross_val_pred_probs(cfg, data, noisy, folds=3)
    assert probs.shape == (len(noisy.labels), 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    scores = cleanlab_scores(noisy.labels, probs)
    assert scores.shape == (len(noisy.labels),) and ((scores >= 0) & (scores <= 1)).all()
    # out-of-sample predictions mostly disagree with a wrong label, so the scores separate well;
    # in-sample probabilities of a 15-epoch CE model have memorised part of the noise and separate worse
    auc_cv = grlib.separation_auc(scores, noisy.is_noisy)
    assert auc_cv > 0.9, auc_cv


def test_run_scores_and_table(noisy_digits):
    cfg, data, noisy = noisy_digits
    r = grlib.train(cfg.replace(loss="gr", loss_params={"lam": 1.0, "beta": 12.0}), data=data, noisy=noisy,
                    progress=False)
    s = run_scores(r)
    # every score grlib.train's records allow (aum needs the 'margin' record)
    assert {"confidence", "variability", "correctness", "forgetting", "final_p", "mean_weight", "small_loss"} <= set(s)
    table = detection_table({k: (v, 1.0) for k, v in s.items()}, noisy.is_noisy)
    assert list(table.columns) == ["score", "roc_auc", "precision_at_rate", "seconds"]
    row = table.set_index("score").loc["confidence"]
    assert row.roc_auc > 0.9 and row.precision_at_rate > 0.7
    # oriented: the scores where higher says mislabelled come negated, so they too rank clean examples high
    np.testing.assert_array_equal(s["small_loss"], -grlib.scores.small_loss(r))
    assert table.set_index("score").loc["small_loss"].roc_auc > 0.9
    assert np.isfinite(s["forgetting"]).all()
    # CE's weight 2(1 - p) emphasises the mislabelled: "higher weight says clean" scores below 0.5
    ce = grlib.train(cfg, data=data, noisy=noisy, progress=False)
    assert grlib.separation_auc(run_scores(ce)["mean_weight"], noisy.is_noisy) < 0.5
    assert set(run_scores(ce, ["confidence"])) == {"confidence"}


def test_run_scores_turn_never_learnt_into_the_worst_finite_forgetting_count():
    # example 0: right, wrong, right (1 flip); 1: right throughout (0); 2: never right (infinite); 3: never seen
    pred = np.array([[0, 1, 0, -1], [1, 1, 0, -1], [0, 1, 0, -1]], dtype=np.int16)
    r = grlib.RunResult(config={}, y_given=np.array([0, 1, 2, 0]), y_true=None, is_noisy=None, num_classes=3,
                        records={"pred": pred}, epochs_completed=3)
    np.testing.assert_array_equal(grlib.scores.forgetting(r), [1, 0, np.inf, np.nan])
    np.testing.assert_array_equal(run_scores(r, ["forgetting"])["forgetting"], [-1, -0, -2, np.nan])


def test_detection_table_precision_matches_definition():
    is_noisy = np.array([True, True, False, False, False])
    scores = np.array([0.1, 0.5, 0.2, 0.9, 0.8])  # flag the 2 lowest: indices 0 and 2 -> precision 0.5
    t = detection_table({"s": (scores, 0.0)}, is_noisy)
    assert t.precision_at_rate.iloc[0] == pytest.approx(0.5)
    assert t.roc_auc.iloc[0] == pytest.approx(5 / 6)  # clean-over-noisy pairs: 5 of 6


def test_average_precision_matches_its_definition():
    from grlib.detection import average_precision

    is_noisy = np.array([True, False, True, False, False])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8])  # lowest first: noisy, clean, noisy, ...
    # precision at each mislabelled example found: 1/1, then 2/3; AP is their mean
    assert average_precision(scores, is_noisy) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.r_[scores, np.nan], np.r_[is_noisy, True]) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(average_precision(scores, np.zeros(5, bool)))
    # a random ranking scores about the noise rate
    rng = np.random.default_rng(0)
    m = rng.random(20000) < 0.3
    assert average_precision(rng.random(20000), m) == pytest.approx(m.mean(), abs=0.02)
    with pytest.raises(ValueError, match="1-D of one length"):
        average_precision(scores, is_noisy[:4])


def test_separation_metrics_and_flag_metrics():
    from grlib.detection import flag_metrics, separation_metrics

    is_noisy = np.array([True, True, False, False, False, False])
    scores = np.array([0.1, 0.5, 0.2, 0.9, 0.8, 0.7])
    m = separation_metrics(scores, is_noisy)
    assert set(m) == {"roc_auc", "average_precision", "precision_at_rate"}
    assert m["roc_auc"] == pytest.approx(7 / 8) and m["precision_at_rate"] == pytest.approx(0.5)
    f = flag_metrics([0, 2, 4], is_noisy)
    assert f == {"n_flagged": 3, "n_true": 2, "flagged_over_true": 1.5, "flag_precision": pytest.approx(1 / 3),
                 "flag_recall": 0.5}
    # as a mask, and over candidates only (e.g. without threshold samples): example 1 is not a candidate
    f2 = flag_metrics(np.array([True, True, False, False, False, False]), is_noisy, candidates=[0, 2, 3, 4, 5])
    assert f2["n_flagged"] == 1 and f2["n_true"] == 1 and f2["flag_precision"] == 1 and f2["flag_recall"] == 1
    empty = flag_metrics([], is_noisy)
    assert empty["n_flagged"] == 0 and np.isnan(empty["flag_precision"]) and empty["flag_recall"] == 0
    with pytest.raises(ValueError, match=r"flagged as a mask must have shape \(6,\)"):
        flag_metrics(np.ones(3, bool), is_noisy)


def test_cleanlab_issues_are_ranked_indices_of_its_flags(noisy_digits):
    from cleanlab.filter import find_label_issues as cl_find

    from grlib.detection import cleanlab_issues

    _, _, noisy = noisy_digits
    rng = np.random.default_rng(0)
    # probabilities that mostly agree with the true labels: cleanlab flags the disagreeing given labels
    probs = np.full((noisy.labels.size, 10), 0.02)
    probs[np.arange(noisy.labels.size), noisy.true_labels] = 0.82
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    got = cleanlab_issues(noisy.labels, probs)
    mask = cl_find(noisy.labels, probs)
    assert got.dtype == np.int64 and set(got.tolist()) == set(np.flatnonzero(mask).tolist())
    sc = cleanlab_scores(noisy.labels, probs)
    assert np.all(np.diff(sc[got]) >= 0)  # most suspect (lowest self-confidence) first
    assert noisy.is_noisy[got].mean() > 0.95
