"""Atomic writes and the metrics sidecar."""
import json
import math
import os

import numpy as np
import pytest

from grlib.io import atomic_write_json, read_metrics, write_metrics


def test_atomic_write_leaves_no_temp_and_normal_mode(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "n": np.int64(3), "bad": math.nan})
    assert json.loads(p.read_text()) == {"x": 0.5, "n": 3, "bad": None}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    p = atomic_write_json(tmp_path / "m.json", {"v": 1})

    def boom(src, dst):
        assert os.path.exists(src)  # the new content was fully written to a temp file first
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(p, {"v": 2})
    monkeypatch.undo()
    assert read_metrics(p) == {"v": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]


def test_write_metrics_none_path_and_type_check(tmp_path):
    assert write_metrics({"a": 1}, None) is None and write_metrics({"a": 1}, "") is None
    with pytest.raises(TypeError, match="metrics must be a dict"):
        write_metrics([1, 2], tmp_path / "m.json")


def test_figure_name_is_stable_and_keeps_stems():
    from grlib.figures import figure_name

    assert figure_name("02_trajectories", noise_rate=0.4, dataset="digits") == \
        "02_trajectories__dataset-digits__noise_rate-0.4"
    assert figure_name("x", loss="nce+rce", lam=1.0) == "x__lam-1__loss-nce+rce"
    assert figure_name("a b/c") == "a-b-c"
