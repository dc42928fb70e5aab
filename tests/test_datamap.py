"""grlib.datamap: the figures and tables of notebook 07, checked on what they draw."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import grlib  # noqa: E402
from grlib.datamap import (REGIONS, THRESHOLD_COLOR, plot_data_map, plot_score_distribution,  # noqa: E402
                           plot_score_rocs, suspect_titles, top_suspects)
from grlib.figures import METHOD_COLORS  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _map_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < 0.3
    conf = np.where(noisy, rng.uniform(0, 0.3, n), rng.uniform(0.6, 1, n))
    var = rng.uniform(0, 0.4, n)
    corr = np.clip(conf + rng.normal(0, 0.05, n), 0, 1)
    return conf, var, corr, noisy


def _offsets(ax, gid):
    (coll,) = [c for c in ax.collections if c.get_gid() == gid]
    return coll.get_offsets()


def test_data_map_by_correctness_draws_every_seen_example_at_its_place():
    conf, var, corr, _ = _map_data()
    conf[3] = np.nan  # never seen: left out
    ax = plot_data_map(conf, var, correctness=corr)
    xy = _offsets(ax, "correctness")
    assert len(xy) == conf.size - 1
    # (variability, confidence) pairs, as cartography draws them; the colours are the correctness
    got = {(round(float(x), 9), round(float(y), 9)) for x, y in xy}
    want = {(round(v, 9), round(c, 9)) for v, c in zip(var, conf) if np.isfinite(c)}
    assert got == want
    (coll,) = [c for c in ax.collections if c.get_gid() == "correctness"]
    np.testing.assert_allclose(np.sort(coll.get_array()), np.sort(corr[np.isfinite(conf)]))
    assert coll.get_clim() == (0.0, 1.0)
    assert {t.get_text() for t in ax.texts} == set(REGIONS)
    assert "variability" in ax.get_xlabel() and "confidence" in ax.get_ylabel()


def test_data_map_by_mask_colours_the_groups():
    conf, var, corr, noisy = _map_data()
    ax = plot_data_map(conf, var, is_noisy=noisy, colour_by="is_noisy", regions=False)
    assert len(_offsets(ax, "clean")) == (~noisy).sum() and len(_offsets(ax, "mislabelled")) == noisy.sum()
    (bad,) = [c for c in ax.collections if c.get_gid() == "mislabelled"]
    np.testing.assert_allclose(bad.get_facecolor()[0][:3], matplotlib.colors.to_rgb(METHOD_COLORS["noisy"]))
    np.testing.assert_allclose(np.sort(_offsets(ax, "mislabelled")[:, 1]), np.sort(conf[noisy]))
    assert not ax.texts


def test_data_map_subsamples_big_runs_reproducibly():
    conf, var, corr, _ = _map_data(n=3000)
    a = _offsets(plot_data_map(conf, var, correctness=corr, max_points=500, seed=4), "correctness")
    b = _offsets(plot_data_map(conf, var, correctness=corr, max_points=500, seed=4), "correctness")
    assert len(a) == 500 and np.array_equal(np.asarray(a), np.asarray(b))
    ax = plot_data_map(conf, var, correctness=corr, max_points=500)
    assert "500 of 3,000" in ax.get_title()


def test_data_map_bad_input():
    conf, var, corr, noisy = _map_data(n=20)
    with pytest.raises(ValueError, match="colour_by='size' is not one of"):
        plot_data_map(conf, var, correctness=corr, colour_by="size")
    with pytest.raises(ValueError, match="needs correctness="):
        plot_data_map(conf, var)
    with pytest.raises(ValueError, match="needs the noise mask, and is_noisy is None"):
        plot_data_map(conf, var, colour_by="is_noisy")
    with pytest.raises(ValueError, match="variability has 19 values for 20 examples"):
        plot_data_map(conf, var[:-1], correctness=corr)
    with pytest.raises(ValueError, match="no example has a finite confidence"):
        plot_data_map(np.full(20, np.nan), var, correctness=corr)


def test_score_distribution_with_threshold_samples_and_the_cut():
    rng = np.random.default_rng(1)
    n = 300
    noisy = rng.random(n) < 0.3
    ts = np.zeros(n, bool)
    ts[:30] = True
    values = np.where(noisy | ts, rng.normal(-5, 1, n), rng.normal(4, 1, n))
    th = grlib.scores.FlagThreshold(value=-2.5, count=77, method="threshold_samples", percentile=95.9, score="aum",
                                    direction=grlib.scores.CLEAN_HIGH)
    ax = plot_score_distribution(values, threshold=th, is_noisy=noisy, threshold_samples=ts, name="aum")
    heights = {}
    for p in ax.patches:
        heights.setdefault(p.get_gid(), []).append(p)
    assert {"clean", "mislabelled", "threshold samples"} <= set(heights)
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "threshold"]
    assert line.get_xdata()[0] == -2.5 and line.get_color() == THRESHOLD_COLOR
    labels = ax.get_legend_handles_labels()[1]
    assert "cut -2.5 (95.9th percentile of the threshold samples): 77 flagged" in labels
    assert any(t.startswith("threshold samples (n=30)") for t in labels)
    # the groups leave the threshold samples out: 30 of the 300 are theirs
    assert any(t.startswith(f"clean (n={int((~noisy & ~ts).sum())})") for t in labels)


def test_score_distribution_without_mask_and_without_a_cut():
    values = np.r_[np.linspace(0, 1, 50), np.nan]
    ax = plot_score_distribution(values, threshold=float("nan"), name="confidence")
    assert not [ln for ln in ax.lines if ln.get_gid() == "threshold"]
    assert "1 not finite" in ax.get_xlabel()
    labels = ax.get_legend_handles_labels()[1]
    assert any(t.startswith("all examples") or t.startswith("all") for t in labels)
    with pytest.raises(ValueError, match="no finite confidence value"):
        plot_score_distribution(np.full(4, np.nan), name="confidence")
    with pytest.raises(ValueError, match="is_noisy has 3 values for 51 examples"):
        plot_score_distribution(values, is_noisy=np.zeros(3, bool))


def test_score_rocs_legend_ranks_by_auc():
    rng = np.random.default_rng(2)
    noisy = rng.random(500) < 0.4
    good = np.where(noisy, 0.0, 1.0) + rng.normal(0, 0.3, 500)
    weak = np.where(noisy, 0.0, 1.0) + rng.normal(0, 3.0, 500)
    ax = plot_score_rocs({"weak": weak, "good": good}, noisy)
    lines = [ln for ln in ax.lines if ln.get_gid() == "roc"]
    assert [ln.get_label().split(" ")[0] for ln in lines] == ["good", "weak"]
    assert f"AUC {grlib.separation_auc(good, noisy):.2f}" in lines[0].get_label()
    with pytest.raises(ValueError, match="need the noise mask"):
        plot_score_rocs({"good": good}, None)
    with pytest.raises(ValueError, match="scores is empty"):
        plot_score_rocs({}, noisy)


def _frame():
    return pd.DataFrame({"given_label": [0, 1, 2, 1, 0], "predicted_label": [1, 1, 0, -1, 0],
                         "label_score": [0.1, 0.9, 0.05, np.nan, 0.7], "rank": [2, 4, 1, 0, 3],
                         "is_label_issue": [True, False, True, False, False],
                         "true_label": [1, 1, 0, 1, 0], "is_noisy": [True, False, True, False, False]})


def test_top_suspects_and_titles():
    t = top_suspects(_frame(), 3, class_names=("zero", "one", "two"))
    assert t["index"].tolist() == [2, 0, 4] and t["rank"].tolist() == [1, 2, 3]
    assert t["given"].tolist() == ["two", "zero", "zero"] and t["predicted"].tolist() == ["zero", "one", "zero"]
    assert t["true"].tolist() == ["zero", "one", "zero"] and t["mislabelled"].tolist() == [True, True, False]
    assert suspect_titles(t) == ["given two / pred zero x", "given zero / pred one x", "given zero / pred zero"]
    # unranked examples never appear; without names the labels stay numbers; -1: no prediction recorded
    all_ranked = top_suspects(_frame(), 10)
    assert 3 not in all_ranked["index"].tolist() and len(all_ranked) == 4
    bare = top_suspects(_frame().drop(columns=["true_label", "is_noisy"]), 2)
    assert "mislabelled" not in bare and suspect_titles(bare) == ["given 2 / pred 0", "given 0 / pred 1"]
    with pytest.raises(KeyError, match="no column 'rank'"):
        top_suspects(_frame().drop(columns="rank"))
    with pytest.raises(ValueError, match="n=0 is too small"):
        top_suspects(_frame(), 0)


def test_on_a_real_label_issues_frame():
    # the frame of a hand-made three-epoch run goes straight in
    p = np.array([[0.2, 0.5, 0.9, 0.1], [0.6, 0.4, 0.8, 0.1], [0.7, 0.3, 0.3, 0.2]])
    pred = np.array([[1, 1, 2, 0], [0, 0, 2, 1], [0, 1, 1, 2]], dtype=np.int16)
    r = grlib.RunResult(config={}, y_given=np.array([0, 1, 2, 0]), records={"p": p, "pred": pred}, num_classes=3,
                        epochs_completed=3)
    frame = grlib.label_issues_frame(r, num_issues=1)
    t = top_suspects(frame, 2)
    assert t["index"].tolist() == [3, 1] and t["flagged"].tolist() == [True, False]
    ax = plot_data_map(frame["confidence"], frame["variability"], correctness=frame["correctness"])
    assert len(_offsets(ax, "correctness")) == 4
