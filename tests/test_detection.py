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
