"""grlib.views: the per-run numbers behind notebooks 02 and 03, checked against plain numpy on known records."""
import numpy as np
import pandas as pd
import pytest

import grlib
from grlib import views


def _result(*, n=12, epochs=4, mask=True, eval_p=True, seed=0):
    """Two batches of n/2 per epoch; weights sum to 1 per batch; p and log_emphasis known."""
    rng = np.random.default_rng(seed)
    is_noisy = np.zeros(n, bool)
    is_noisy[: n // 3] = True
    p = rng.uniform(0.01, 0.99, (epochs, n))
    raw = rng.uniform(0.5, 2.0, (epochs, n))
    weight = np.concatenate([raw[:, : n // 2] / raw[:, : n // 2].sum(1, keepdims=True),
                             raw[:, n // 2:] / raw[:, n // 2:].sum(1, keepdims=True)], axis=1)
    records = {"p": p.astype(np.float32), "weight": weight.astype(np.float32),
               "log_emphasis": np.log(raw).astype(np.float32)}
    if eval_p:
        records["eval_p"] = np.clip(p + 0.05, 0, 1).astype(np.float32)
    y_true = rng.integers(0, 3, n)
    y_given = np.where(is_noisy, (y_true + 1) % 3, y_true)
    return grlib.RunResult(config={"loss": "gr", "loss_params": {"lam": 1.0, "beta": 12.0}, "batch_size": n // 2},
                           y_given=y_given, y_true=y_true if mask else None, is_noisy=is_noisy if mask else None,
                           num_classes=3, history={"test_acc": np.linspace(0.5, 0.9, epochs),
                                                   "noisy_fit": np.linspace(0, 0.3, epochs),
                                                   "clean_acc": np.linspace(0.6, 0.9, epochs)},
                           records=records, epochs_completed=epochs)


def test_relative_weights_is_weight_times_batch_size():
    res = _result()
    rel = views.relative_weights(res.records["weight"][0])
    np.testing.assert_allclose(rel, res.records["weight"][0] * 6, rtol=1e-6)  # two equal batches of 6
    assert rel.mean() == pytest.approx(1.0)
    one_batch = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(views.relative_weights(one_batch), one_batch * 4)
    # unseen examples (NaN) are left out of the batch count and stay NaN
    row = np.array([0.25, 0.25, np.nan, 0.5])
    np.testing.assert_allclose(views.relative_weights(row), [0.75, 0.75, np.nan, 1.5])
    np.testing.assert_allclose(views.relative_weights(np.stack([one_batch, one_batch])), [one_batch * 4] * 2)
    with pytest.raises(ValueError, match="shape"):
        views.relative_weights(np.zeros((2, 2, 2)))


def test_relative_weights_of_a_real_run_average_one_per_epoch():
    res = grlib.train(grlib.RunConfig(epochs=2, n_train=300, batch_size=64, seed=3), progress=False)
    for epoch, row in views.iter_record_rows(res, "weight"):
        rel = views.relative_weights(row)
        assert np.nanmean(rel) == pytest.approx(1.0, rel=1e-5), epoch
        # near-equal batches (300 = 60 x 5): the inferred batch size is exact
        np.testing.assert_allclose(rel, row * 60, rtol=1e-5)


def test_epochs_rows_and_records_kept_every_k_epochs():
    res = _result(epochs=3)
    assert views.recorded_epochs(res, "p").tolist() == [1, 2, 3]
    np.testing.assert_array_equal(views.record_row(res, "p", -1), res.records["p"][2].astype(np.float64))
    res.record_epochs = np.array([2, 4, 6])  # a run that kept records every 2 epochs
    res.epochs_completed = 6
    assert views.recorded_epochs(res, "p").tolist() == [2, 4, 6]
    np.testing.assert_array_equal(views.record_row(res, "p", 4), res.records["p"][1].astype(np.float64))
    assert [e for e, _ in views.iter_record_rows(res, "p")] == [2, 4, 6]
    assert views.resolve_epochs(res, "p", [6, -1, 2]) == [2, 6]
    with pytest.raises(ValueError, match=r"epoch 3 of record 'p' was not recorded; recorded epochs: \[2, 4, 6\]"):
        views.record_row(res, "p", 3)
    with pytest.raises(TypeError, match="integer"):
        views.resolve_epochs(res, "p", [1.5])
    with pytest.raises(KeyError, match="margin"):
        views.record_row(res, "margin")
    res.epochs_completed = 3  # a run stopped early: rows past the last complete epoch are not shown
    assert views.recorded_epochs(res, "p").tolist() == [2]


def test_p_field_and_groups_without_mask_or_eval_pass():
    res = _result(mask=False, eval_p=False)
    assert views.p_field(res) == "p" and not views.has_mask(res)
    (group,) = views.group_masks(res)
    assert group[0] == "all" and group[1].all()
    assert views.p_field(_result()) == "eval_p"
    assert [g for g, _ in views.group_masks(_result())] == ["clean", "mislabelled"]
    with pytest.raises(ValueError, match="noise mask"):
        views.weight_share_noisy(res)
    empty = _result()
    empty.records = {}
    with pytest.raises(KeyError, match="neither"):
        views.p_field(empty)


def test_share_above_and_p_by_epoch_against_numpy():
    res = _result()
    p = res.records["eval_p"].astype(np.float64)
    p[1, 0] = np.nan  # one example not seen in epoch 2
    res.records["eval_p"] = p
    table = views.share_above(res)
    assert list(table.columns) == ["epoch", "clean", "mislabelled"]
    noisy = res.is_noisy
    for k in range(4):
        seen = np.isfinite(p[k])
        assert table["mislabelled"][k] == pytest.approx((p[k][noisy & seen] > 0.5).mean())
        assert table["clean"][k] == pytest.approx((p[k][~noisy & seen] > 0.5).mean())
    epochs, edges, shares = views.p_by_epoch(res, group="clean", bins=4)
    assert epochs.tolist() == [1, 2, 3, 4] and edges.tolist() == [0, 0.25, 0.5, 0.75, 1]
    np.testing.assert_allclose(shares.sum(axis=0), 1.0)
    np.testing.assert_allclose(shares[:, 0], np.histogram(p[0][~noisy], bins=edges)[0] / (~noisy).sum())
    with pytest.raises(ValueError, match="group='weird'"):
        views.p_by_epoch(res, group="weird")
    with pytest.raises(ValueError, match="threshold"):
        views.share_above(res, threshold=float("nan"))


def test_group_medians_and_weight_share_against_numpy():
    res = _result()
    table = views.group_medians(res, [1, -1])
    assert table.index.tolist() == [1, 4]
    rel = res.records["weight"][3] * 6
    noisy = res.is_noisy
    assert table.loc[4, "p mislabelled"] == pytest.approx(np.median(res.records["eval_p"][3][noisy]))
    assert table.loc[4, "weight x batch size clean"] == pytest.approx(np.median(rel[~noisy]), rel=1e-5)
    assert table.loc[4, "weight ratio mislabelled/clean"] == pytest.approx(
        np.median(rel[noisy]) / np.median(rel[~noisy]), rel=1e-5)
    share = views.weight_share_noisy(res)
    assert share.index.tolist() == [1, 2, 3, 4]
    w = res.records["weight"].astype(np.float64)
    np.testing.assert_allclose(share.to_numpy(), w[:, noisy].sum(1) / w.sum(1), rtol=1e-6)
    no_mask = views.group_medians(_result(mask=False))
    assert list(no_mask.columns) == ["p all", "weight x batch size all"]


def test_ranked_examples_by_emphasis():
    res = _result()
    top = views.ranked_examples(res, top=True, n=3, class_names=("a", "b", "c"))
    le = res.records["log_emphasis"][-1]
    assert top["index"].tolist() == np.argsort(-le, kind="stable")[:3].tolist()
    assert list(top.columns) == ["index", "given", "true", "mislabelled", "p (train pass)", "p (after epoch)",
                                 "log emphasis"]
    assert set(top["given"]) <= {"a", "b", "c"}
    least = views.ranked_examples(res, top=False, n=2, by="weight", epoch=1)
    rel = res.records["weight"][0] * 6
    assert least["index"].tolist() == np.argsort(rel, kind="stable")[:2].tolist()
    assert least["weight x batch size"].to_numpy() == pytest.approx(np.sort(rel)[:2], rel=1e-5)
    plain = views.ranked_examples(_result(mask=False, eval_p=False), n=2)
    assert list(plain.columns) == ["index", "given", "p (train pass)", "log emphasis"]
    with pytest.raises(ValueError, match="n=0"):
        views.ranked_examples(res, n=0)


def test_load_runs_labels_and_errors(tmp_path):
    a, b = _result(), _result(seed=1)
    b.config = {"loss": "ce", "loss_params": {}}
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    runs = views.load_runs(f"{tmp_path / 'a'}, {tmp_path / 'b'}")
    assert list(runs) == ["gr(lam=1, beta=12)", "ce"]
    np.testing.assert_array_equal(runs["ce"].y_given, b.y_given)
    (tmp_path / "x").mkdir()
    a.save(tmp_path / "x" / "a")
    same = views.load_runs(f"{tmp_path / 'a'},{tmp_path / 'x' / 'a'}")  # one label, one folder name
    assert list(same) == ["gr(lam=1, beta=12) [a] [1]", "gr(lam=1, beta=12) [a] [2]"]
    c = _result()
    c.config = {"note": "a user's own run"}
    c.save(tmp_path / "mine")
    assert list(views.load_runs(str(tmp_path / "mine"))) == ["mine"]  # no loss in its settings: the folder name
    with pytest.raises(ValueError, match="one saved run folder, or two"):
        views.load_runs(" , ")
    with pytest.raises(ValueError, match="one saved run folder, or two"):
        views.load_runs("a,b,c")
    with pytest.raises(FileNotFoundError, match="run_dir=.*nope.*is not a folder"):
        views.load_runs(str(tmp_path / "nope"))
    with pytest.raises(TypeError, match="run_dir"):
        views.load_runs(["a"])


def test_run_images_line_up_with_the_run_or_are_none():
    res = grlib.train(grlib.RunConfig(epochs=1, n_train=200, seed=2), progress=False)
    images, shape, names = views.run_images(res)
    raw = grlib.load_dataset("digits", n_train=200, standardize=False)
    np.testing.assert_array_equal(images, raw.x_train)
    assert shape == (1, 8, 8) and len(names) == 10
    res.y_true = np.roll(res.y_true, 1)  # rows that do not line up: no images rather than wrong ones
    assert views.run_images(res) is None
    assert views.run_images(_result()) is None  # settings without a data set name
    moons = grlib.train(grlib.RunConfig(dataset="moons", epochs=1, n_train=100), progress=False)
    assert views.run_images(moons) is None  # no images


def test_ranked_and_medians_leave_out_unseen_examples():
    res = _result()
    le = res.records["log_emphasis"].astype(np.float64)
    le[-1, :3] = np.nan  # not seen in the last epoch (drop_last, a shard of a distributed run)
    res.records["log_emphasis"] = le
    table = views.ranked_examples(res, top=False, n=20)
    assert len(table) == 9 and not set(table["index"]) & {0, 1, 2}
    w = res.records["weight"].astype(np.float64)
    w[-1, 0] = np.nan
    res.records["weight"] = w
    assert np.isfinite(views.group_medians(res).to_numpy()).all()
    assert isinstance(views.share_above(res), pd.DataFrame)


def test_separation_by_epoch_matches_separation_table_and_keeps_real_epochs():
    res = _result(n=30)
    table = views.separation_by_epoch(res)
    reference = grlib.separation_table(res, fields=("eval_p", "p", "weight", "log_emphasis"))
    pd.testing.assert_frame_equal(table, reference, check_dtype=False)
    res.record_epochs = np.array([3, 6, 9, 12])
    res.epochs_completed = 12
    assert views.separation_by_epoch(res, fields=("p", "margin"))["epoch"].tolist() == [3, 6, 9, 12]
    assert list(views.separation_by_epoch(res, fields=("p", "margin")).columns) == ["epoch", "auc_p"]
    with pytest.raises(ValueError, match="noise mask"):
        views.separation_by_epoch(_result(mask=False))


# -- kinds: outliers and corrupted inputs (issue 14) -------------------------------------------------
def _kinds_result(*, n=40, epochs=4, seed=0, outliers=True, corrupted=True):
    """Examples 0..9 mislabelled, 10..17 outliers, 18..23 corrupted, the rest clean (disjoint, as grlib.train)."""
    res = _result(n=n, epochs=epochs, seed=seed)
    is_noisy = np.zeros(n, bool)
    is_noisy[:10] = True
    res.is_noisy = is_noisy
    res.y_given = np.where(is_noisy, (res.y_true + 1) % 3, res.y_true)
    masks = {}
    if outliers:
        masks["is_outlier"] = (np.arange(n) >= 10) & (np.arange(n) < 18)
    if corrupted:
        masks["is_corrupted"] = (np.arange(n) >= 18) & (np.arange(n) < 24)
    res.masks = masks
    return res


def test_group_masks_by_kind_and_without_extra_masks():
    res = _kinds_result()
    groups = dict(views.group_masks(res))
    assert list(groups) == ["clean", "mislabelled", "outlier", "corrupted"]
    assert groups["mislabelled"].sum() == 10 and groups["outlier"].sum() == 8 and groups["corrupted"].sum() == 6
    assert groups["clean"].sum() == 16 and not groups["clean"][:24].any()
    assert sum(m.astype(int) for m in groups.values()).tolist() == [1] * 40  # disjoint, every example once
    np.testing.assert_array_equal(  # the codes of RunResult.example_kind
        sum(k * groups[g] for k, g in enumerate(views.KINDS)), res.example_kind)
    assert views.has_kinds(res) and views.touched_kinds(res) == ["mislabelled", "outlier", "corrupted"]
    # an outlier mask that touches nothing: kept as a mask (has_kinds), no group, no touched kind
    none_touched = _kinds_result(corrupted=False)
    none_touched.masks["is_outlier"][:] = False
    assert views.has_kinds(none_touched) and views.touched_kinds(none_touched) == ["mislabelled"]
    assert [g for g, _ in views.group_masks(none_touched)] == ["clean", "mislabelled"]
    # only the noise mask: exactly the two groups of before
    plain = _result()
    assert not views.has_kinds(plain) and views.touched_kinds(plain) == ["mislabelled"]
    assert [g for g, _ in views.group_masks(plain)] == ["clean", "mislabelled"]
    # no mask at all: one group, nothing touched
    assert views.touched_kinds(_result(mask=False)) == [] and not views.has_kinds(_result(mask=False))
    # extra masks but no noise mask (labels unchecked): the rest is "other", and separation needs the mask
    unchecked = _kinds_result()
    unchecked.is_noisy, unchecked.y_true = None, None
    assert [g for g, _ in views.group_masks(unchecked)] == ["other", "outlier", "corrupted"]
    assert views.touched_kinds(unchecked) == []
    with pytest.raises(ValueError, match="noise mask"):
        views.kind_selection(unchecked, "outlier")
    bad = _kinds_result()
    bad.masks["is_outlier"] = np.zeros(5, bool)
    with pytest.raises(ValueError, match="is_outlier"):
        views.group_masks(bad)


def test_kind_selection_and_separation_against_sklearn():
    from sklearn.metrics import roc_auc_score

    res = _kinds_result()
    selected, is_kind = views.kind_selection(res, "outlier")
    assert selected.sum() == 16 + 8 and is_kind.sum() == 8
    table = views.separation_by_epoch(res, ("eval_p", "p", "log_emphasis"), kind="outlier")
    clean, outlier = np.arange(24, 40), np.arange(10, 18)
    for k, epoch in enumerate(table["epoch"]):
        p = res.records["p"][k].astype(np.float64)
        expected = roc_auc_score(np.r_[np.ones(16), np.zeros(8)], np.r_[p[clean], p[outlier]])
        assert table.loc[k, "auc_p"] == pytest.approx(expected, abs=1e-12)
    # the default kind compares mislabelled with the clean examples only (not with outliers and corrupted)
    mis = views.separation_by_epoch(res, ("p",))
    p = res.records["p"][-1].astype(np.float64)
    expected = roc_auc_score(np.r_[np.ones(16), np.zeros(10)], np.r_[p[clean], p[:10]])
    assert mis["auc_p"].iloc[-1] == pytest.approx(expected, abs=1e-12)
    # a run with only the noise mask: what it was before, separation_table against is_noisy
    plain = _result(n=30)
    pd.testing.assert_frame_equal(views.separation_by_epoch(plain, ("p",), kind="mislabelled"),
                                  grlib.separation_table(plain, fields=("p",)), check_dtype=False)
    with pytest.raises(ValueError, match="kind='noise'.*mislabelled.*outlier.*corrupted"):
        views.separation_by_epoch(res, kind="noise")
    with pytest.raises(ValueError, match="'is_corrupted' mask"):
        views.separation_by_epoch(_kinds_result(corrupted=False), kind="corrupted")
    with pytest.raises(ValueError, match="noise mask"):
        views.separation_by_epoch(_result(mask=False), kind="outlier")


def test_medians_shares_and_weight_shares_by_kind_against_numpy():
    res = _kinds_result()
    groups = dict(views.group_masks(res))
    table = views.group_medians(res, [-1])
    rel = res.records["weight"][-1].astype(np.float64) * 20  # two batches of 20
    for g, m in groups.items():
        assert table.loc[4, f"p {g}"] == pytest.approx(np.median(res.records["eval_p"][-1][m]))
        assert table.loc[4, f"weight x batch size {g}"] == pytest.approx(np.median(rel[m]), rel=1e-5)
    for kind in ("mislabelled", "outlier", "corrupted"):
        assert table.loc[4, f"weight ratio {kind}/clean"] == pytest.approx(
            np.median(rel[groups[kind]]) / np.median(rel[groups["clean"]]), rel=1e-5)
    shares = views.weight_shares(res)
    assert list(shares.columns) == ["clean", "mislabelled", "outlier", "corrupted"]
    w = res.records["weight"].astype(np.float64)
    for g, m in groups.items():
        np.testing.assert_allclose(shares[g].to_numpy(), w[:, m].sum(1) / w.sum(1), rtol=1e-6)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    np.testing.assert_allclose(shares["mislabelled"], views.weight_share_noisy(res))
    above = views.share_above(res)
    assert list(above.columns) == ["epoch", "clean", "mislabelled", "outlier", "corrupted"]
    p = res.records["eval_p"][0]
    assert above["outlier"][0] == pytest.approx((p[groups["outlier"]] > 0.5).mean())
    epochs, edges, heat = views.p_by_epoch(res, group="corrupted", bins=5)
    np.testing.assert_allclose(heat[:, 0], np.histogram(p[groups["corrupted"]], bins=edges)[0] / 6)
    with pytest.raises(ValueError, match="'is_outlier' mask"):
        views.p_by_epoch(_result(), group="outlier")
    with pytest.raises(ValueError, match="has no example"):
        views.p_by_epoch(_kinds_result(corrupted=False), group="other")
    # a run without weights: no weight columns, and weight_shares says what is missing
    no_weight = _kinds_result()
    del no_weight.records["weight"]
    assert not any(c.startswith("weight") for c in views.group_medians(no_weight).columns)
    with pytest.raises(KeyError, match="weight"):
        views.weight_shares(no_weight)


def test_ranked_examples_titles_and_kind_shares():
    res = _kinds_result()
    table = views.ranked_examples(res, top=False, n=40, by="p")
    assert "kind" in table.columns and list(table.columns).index("kind") == list(table.columns).index("mislabelled") + 1
    names, codes = np.array(views.KINDS), res.example_kind
    assert table["kind"].tolist() == names[codes[table["index"].to_numpy()]].tolist()
    assert "kind" not in views.ranked_examples(_result(), n=3).columns  # only the noise mask: no kind column
    idx = np.array([0, 10, 18, 30])
    titles = views.example_titles(res, idx, class_names=("a", "b", "c"))
    y_given, y_true = res.y_given, res.y_true
    assert titles[0] == f"{'abc'[y_given[0]]}/{'abc'[y_true[0]]} x"
    assert titles[1].endswith(" outlier") and titles[2].endswith(" corrupted") and titles[3] == (
        f"{'abc'[y_given[30]]}/{'abc'[y_true[30]]}")
    plain = views.example_titles(_result(mask=False), [0])
    assert plain == [str(_result(mask=False).y_given[0])]  # no true label, no kind
    assert views.kind_shares(res, idx) == {"mislabelled": 0.25, "outlier": 0.25, "corrupted": 0.25}
    assert views.kind_shares(_result(), [0, 11]) == {"mislabelled": 0.5}  # examples 0..3 mislabelled
    assert views.kind_shares(_result(mask=False), [0]) == {}


def test_kinds_survive_save_and_load(tmp_path):
    res = _kinds_result()
    res.save(tmp_path / "kinds")
    (loaded,) = views.load_runs(str(tmp_path / "kinds")).values()
    assert [(g, m.tolist()) for g, m in views.group_masks(loaded)] == [
        (g, m.tolist()) for g, m in views.group_masks(res)]
    pd.testing.assert_frame_equal(views.separation_by_epoch(loaded, kind="outlier"),
                                  views.separation_by_epoch(res, kind="outlier"))


def test_run_images_of_a_corrupted_run_are_what_the_model_saw():
    cfg = grlib.RunConfig(epochs=1, n_train=300, seed=4, noise_rate=0.2, outlier_fraction=0.1,
                          outlier_source="noise", corruption_fraction=0.1, corruption_kind="occlusion")
    res = grlib.train(cfg, progress=False)
    images, shape, _ = views.run_images(res)
    raw = grlib.load_dataset("digits", n_train=300, standardize=False).x_train
    touched = res.mask("is_outlier") | res.mask("is_corrupted")
    # untouched rows: the data set's pixels (up to the float32 round trip of standardising); touched rows differ
    np.testing.assert_allclose(images[~touched], raw[~touched], atol=1e-4)
    assert (np.abs(images[touched] - raw[touched]).max(axis=1) > 1).all()
    # an occluded square is blanked to the lowest pixel value (digits: 0)
    corrupted = res.mask("is_corrupted")
    assert ((np.abs(images[corrupted]) < 1e-4).sum(axis=1) > (np.abs(raw[corrupted]) < 1e-4).sum(axis=1)).all()
    # the model's own inputs, rebuilt the way grlib.train builds them
    data = grlib.load_dataset("digits", n_train=300)
    nd = grlib.corruption.add_data_noise(
        data.x_train, data.y_train, 10, noise="symmetric", noise_rate=0.2, outlier_fraction=0.1,
        outlier_source="noise", corruption_fraction=0.1, corruption_kind="occlusion", image_shape=data.image_shape,
        scale=grlib.corruption.input_scale("digits", n_train=300), dataset="digits", seed=4)
    np.testing.assert_allclose(images, grlib.corruption.input_scale("digits", n_train=300).to_raw(nd.x), atol=1e-9)
    assert shape == (1, 8, 8)
    # rows that do not line up (another mask): no images rather than wrong ones
    res.masks["is_outlier"] = np.roll(res.masks["is_outlier"], 1)
    assert views.run_images(res) is None
