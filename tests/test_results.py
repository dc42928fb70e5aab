"""RunResult: built by hand, partial, saved and loaded (format 2 and 1), and damaged folders answered clearly."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import grlib
from grlib.results import RunLoadError


def _hand_made(**kw):
    rng = np.random.default_rng(0)
    n = 6
    args = dict(config={"loss": "mine"}, y_given=np.array([0, 1, 2, 0, 1, 2]),
                records={"p": rng.random((3, n)).astype(np.float32), "pred": rng.integers(0, 3, (3, n)).astype(np.int16)},
                history={"test_acc": [0.5, 0.7, 0.6]})
    args.update(kw)
    return grlib.RunResult(**args)


def test_hand_built_result_infers_epochs_and_never_fails_on_missing_parts(tmp_path):
    r = _hand_made()
    assert r.epochs_completed == 3 and r.num_classes == 3 and r.is_noisy is None
    h = r.history_frame()
    assert list(h["epoch"]) == [1, 2, 3] and h["noisy_fit"].isna().all() and h["lr"].isna().all()
    s = r.summary()
    assert s["final_acc"] == 0.6 and s["best_acc"] == 0.7 and s["epoch_of_best"] == 2
    assert math.isnan(s["noisy_fit"]) and math.isnan(s["noise_rate_realised"]) and "final_noisy_fit" not in s
    assert "final_acc=0.6000" in repr(r)
    q = grlib.RunResult.load(r.save(tmp_path / "hand"))
    np.testing.assert_array_equal(np.asarray(q.records["p"]), r.records["p"])
    assert q.y_true is None and q.is_noisy is None and q.config == {"loss": "mine"}
    # a frame without a mask has no is_noisy column; with one it does
    assert "is_noisy" not in r.to_frame().columns
    assert "is_noisy" in _hand_made(y_true=np.array([0, 1, 2, 0, 1, 1])).to_frame().columns


def test_y_true_gives_the_mask_and_to_frame_selects():
    r = _hand_made(y_true=np.array([0, 1, 2, 1, 1, 0]))
    assert r.is_noisy.tolist() == [False, False, False, True, False, True] and r.has_mask
    f = r.to_frame(fields=["p", "pred"], epochs=[2, 3], index=[1, 3])
    assert list(f["epoch"]) == [2, 2, 3, 3] and list(f["index"]) == [1, 3, 1, 3]
    np.testing.assert_array_equal(f["p"].to_numpy(), r.records["p"][1:, [1, 3]].reshape(-1))
    assert list(f["correct"]) == list(f["pred"] == f["given"])


def test_summary_is_nan_aware_after_a_stop():
    r = _hand_made(history={"test_acc": [0.2, 0.2667, np.nan]}, stopped="non-finite loss")
    s = r.summary()
    assert s["best_acc"] == 0.2667 and s["epoch_of_best"] == 2 and s["final_acc"] == 0.2667


@pytest.mark.parametrize("kwargs,match", [
    (dict(records={"p": np.zeros((2, 5))}), r"record 'p' has shape \(2, 5\); records must be \[rows, n\] with n=6"),
    (dict(records={"p": np.zeros((2, 6)), "pred": np.zeros((3, 6))}), r"records disagree on the number of rows"),
    (dict(epochs_completed=1), r"epochs_completed=1 but records hold epoch 3"),
    (dict(y_true=np.zeros(5, int)), r"y_true must be an integer array of shape \(6,\)"),
    (dict(is_noisy=np.zeros(6, int)), r"is_noisy must be a boolean array"),
    (dict(record_epochs=[1, 1, 2]), r"record_epochs must be increasing"),
])
def test_inconsistent_hand_built_results_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _hand_made(**kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    r = grlib.train(epochs=2, n_train=100, progress=False)
    return r, r.save(root / "good")


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_save_load_round_trip(saved):
    r, folder = saved
    q = grlib.RunResult.load(folder, with_model=True)
    assert q.summary() == {**r.summary()}
    assert set(q.records) == set(r.records) and isinstance(q.records["p"], np.memmap)
    x = grlib.load_dataset("digits").x_test[:5]
    np.testing.assert_allclose(grlib.predict_proba(q.model, x), grlib.predict_proba(r.model, x), rtol=1e-6)
    meta = json.loads((folder / "run.json").read_text())
    assert meta["format_version"] == 2 and meta["summary"]["noisy_fit"] == r.summary()["noisy_fit"]


@pytest.mark.parametrize("damage,match", [
    ("run_json_truncated", r"run.json' is damaged \(not valid JSON"),
    ("run_json_empty", r"run.json' is damaged \(not valid JSON"),
    ("labels_truncated", r"labels.npz' is damaged \(not a readable .npz"),
    ("labels_random", r"labels.npz' is damaged \(not a readable .npz"),
    ("labels_missing", r"labels.npz' is missing"),
    ("newer_format", r"format_version 9: written by a newer grlib.*upgrade grlib"),
    ("record_wrong_shape", r"records/p.npy' in .* has 7 examples but the run has 100|records/p.npy.*damaged"),
    ("record_missing", r"record file .*p.npy' is missing"),
])
def test_damaged_folders_give_clear_errors(saved, tmp_path, damage, match):
    folder = _copy(saved[1], tmp_path / damage)
    if damage == "run_json_truncated":
        (folder / "run.json").write_text((folder / "run.json").read_text()[:100])
    elif damage == "run_json_empty":
        (folder / "run.json").write_text("")
    elif damage == "labels_truncated":
        data = (folder / "labels.npz").read_bytes()
        (folder / "labels.npz").write_bytes(data[: len(data) // 2])
    elif damage == "labels_random":
        (folder / "labels.npz").write_bytes(np.random.default_rng(0).bytes(500))
    elif damage == "labels_missing":
        (folder / "labels.npz").unlink()
    elif damage == "newer_format":
        meta = json.loads((folder / "run.json").read_text())
        meta["format_version"] = 9
        (folder / "run.json").write_text(json.dumps(meta))
    elif damage == "record_wrong_shape":
        np.save(folder / "records" / "p.npy", np.zeros((2, 7), np.float32))
    elif damage == "record_missing":
        (folder / "records" / "p.npy").unlink()
    with pytest.raises(RunLoadError, match=match) as ei:
        grlib.RunResult.load(folder)
    assert "allow_pickle" not in str(ei.value)


def test_model_pt_truncated_and_wrong_paths(saved, tmp_path):
    folder = _copy(saved[1], tmp_path / "m")
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[:100])
    grlib.RunResult.load(folder)  # the records load without the model
    with pytest.raises(RunLoadError, match=r"model.pt' is damaged and cannot be read as a model state_dict"):
        grlib.RunResult.load(folder, with_model=True)
    with pytest.raises(RunLoadError, match=r"is a file, not a run folder; pass its folder"):
        grlib.RunResult.load(saved[1] / "run.json")
    with pytest.raises(FileNotFoundError, match=r"no run folder at"):
        grlib.RunResult.load(tmp_path / "nowhere")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match=r"it is a file, not a folder"):
        saved[0].save(tmp_path / "afile")


def test_format_1_folders_still_load(tmp_path):
    """A run saved by grlib 0.1 (arrays.npz, records allocated for every planned epoch)."""
    n, planned, done = 5, 4, 2
    arrays = {"y_given": np.arange(n) % 3, "y_true": np.arange(n) % 3, "is_noisy": np.zeros(n, bool),
              "history__test_acc": np.array([0.4, 0.5, np.nan, np.nan]),
              "records__p": np.full((planned, n), np.nan, np.float32)}
    arrays["records__p"][:done] = 0.5
    folder = tmp_path / "v1"
    folder.mkdir()
    np.savez_compressed(folder / "arrays.npz", **arrays)
    (folder / "run.json").write_text(json.dumps({"config": {"loss": "ce"}, "num_classes": 3}))  # no epochs_completed
    r = grlib.RunResult.load(folder)
    assert r.epochs_completed == done and r.records["p"].shape == (done, n) and r.summary()["final_acc"] == 0.5


def test_separation_table_uses_recorded_epochs_and_any_mask():
    rng = np.random.default_rng(0)
    n = 40
    is_noisy = np.arange(n) < 10
    p = np.where(is_noisy, 0.2, 0.8)[None, :] + rng.normal(0, 0.01, (3, n))
    r = grlib.RunResult(config={}, y_given=np.zeros(n, int), is_noisy=is_noisy, records={"p": p.astype(np.float32)},
                        record_epochs=[1, 3, 5], masks={"is_outlier": np.arange(n) >= 35})
    t = grlib.separation_table(r, fields=("p", "eval_p"))
    assert list(t.columns) == ["epoch", "auc_p"] and list(t["epoch"]) == [1, 3, 5]
    assert (t["auc_p"] == 1.0).all()
    assert grlib.separation_table(r, fields=("p",), mask="is_outlier")["auc_p"].between(0, 1).all()
