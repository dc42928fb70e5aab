"""The detection benchmark driver in its tiny mode: end to end, then cached, a failing unit, then --no-run."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grlib

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "detection_benchmark.py"
pytestmark = pytest.mark.slow


def _driver():
    spec = importlib.util.spec_from_file_location("detection_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def drv():
    return _driver()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, drv):
    """One tiny benchmark run, shared: its paths and exit code."""
    base = tmp_path_factory.mktemp("detbench")
    paths = {"cache": base / "cache", "results": base / "out" / "det.csv", "docs": base / "docs" / "detection.md"}
    args = ["--tiny", "--quiet"] + [x for k, v in paths.items() for x in (f"--{k}", str(v))]
    code = drv.main(args)
    return paths, args, code


def _unit_files(cache):
    return sorted(cache.rglob("*.json"))


def test_tiny_end_to_end(tiny, drv):
    paths, _, code = tiny
    assert code == 0
    units = _unit_files(paths["cache"])
    # digits x (20%, 40% symmetric, 40% pair) x seed 0 x (gr, ce, gr-ts, cleanlab)
    assert len(units) == 12 and all(p.parent.parent.name == "tiny" for p in units)
    df = pd.read_csv(paths["results"])
    assert list(df.columns) == drv.CSV_COLUMNS
    assert set(df.dataset) == {"digits"} and set(df.seed) == {0}
    assert set(zip(df.noise, df.noise_rate)) == {("symmetric", 0.2), ("symmetric", 0.4), ("pair", 0.4)}
    assert set(df.detector) == set(drv.DETECTORS)
    one = df[df.detector == "gr"]
    # every score of grlib.scores, over every epoch and over the first half (tiny: 4 epochs -> first 2)
    assert set(one.score) == set(grlib.scores.SCORES) and set(one.window) == {"all", "early"}
    assert set(df[df.detector == "cleanlab"].score) == set(drv.CLEANLAB_METHODS)
    for col in ("roc_auc", "average_precision", "precision_at_rate", "flag_precision", "flag_recall"):
        v = df[col].dropna()
        assert ((v >= 0) & (v <= 1)).all(), col
    # only directed scores (and cleanlab's own filter) get an automatic count
    counted = df[df.count_method.notna()]
    assert not set(counted.score) & {"variability", "mean_weight"}
    assert set(counted.count_method) >= {"mixture", "cleanlab prune_by_noise_rate"}
    assert any(m.startswith("threshold samples (q=95.9)") for m in counted.count_method)
    assert (counted.n_true > 0).all()
    assert np.allclose(counted.flagged_over_true, counted.n_flagged / counted.n_true)
    # the unit records: settings of the tiny regime, what a user pays (<= the unit's whole wall time)
    rec = json.loads(next(p for p in units if p.name.endswith("__gr.json")).read_text())
    assert rec["config"]["protocol"] == "paper" and rec["config"]["epochs"] == 4 and rec["config"]["loss"] == "gr"
    assert 0 < rec["seconds_train"] <= rec["seconds"] <= rec["wall_seconds"]
    cl = json.loads(next(p for p in units if p.name.endswith("__cleanlab.json")).read_text())
    assert cl["folds"] == 3 and cl["config"]["loss"] == "ce"
    # the page: its sections, nothing partial, no absolute path
    text = paths["docs"].read_text()
    for section in ("## Setup", "## digits", "### ROC AUC", "### Average precision", "### Precision at the true",
                    "### Automatic flag count", "### Compute", "## The issue's numbers", "Regime `tiny`"):
        assert section in text, section
    assert "Partial results" not in text
    assert str(paths["cache"].parent) not in text and "/tmp" not in text and str(ROOT) not in text


def test_one_run_scores_in_the_csv_are_the_librarys(tiny):
    """The CSV's numbers for one unit equal grlib's, recomputed from a run trained again with the same settings."""
    paths, _, _ = tiny
    df = pd.read_csv(paths["results"])
    rec = json.loads(next(p for p in _unit_files(paths["cache"]) if p.name == "digits__symmetric-0.4__seed-0__ce.json")
                     .read_text())
    cfg = grlib.RunConfig.from_dict(rec["config"])
    result = grlib.train(cfg, progress=False)
    conf = grlib.scores.confidence(result)
    row = df[(df.detector == "ce") & (df.noise_rate == 0.4) & (df.noise == "symmetric") & (df.score == "confidence")
             & (df.window == "all")].iloc[0]
    assert row.roc_auc == pytest.approx(grlib.separation_auc(conf, result.is_noisy), abs=1e-12)
    assert row.precision_at_rate == pytest.approx(grlib.precision_at_rate(conf, result.is_noisy), abs=1e-12)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = grlib.find_label_issues(result)
    assert row.n_flagged == flagged.size and row.n_true == result.is_noisy.sum()


def test_a_rerun_uses_the_cache(tiny, drv, monkeypatch):
    paths, args, _ = tiny
    before = {p: p.stat().st_mtime_ns for p in _unit_files(paths["cache"])}
    csv = paths["results"].read_text()

    def no_training(*a, **k):
        raise AssertionError("a finished unit was run again")

    monkeypatch.setattr(drv, "run_unit", no_training)
    assert drv.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in _unit_files(paths["cache"])} == before
    assert paths["results"].read_text() == csv


def test_a_failing_unit_leaves_the_others_and_no_run_rebuilds(tiny, drv, monkeypatch):
    paths, args, _ = tiny
    units = _unit_files(paths["cache"])
    victim = next(p for p in units if p.name == "digits__pair-0.4__seed-0__gr.json")
    kept = victim.read_text()
    victim.unlink()
    real = drv.run_unit

    def fails_for_one(unit, *a, **k):
        if unit.name == "digits__pair-0.4__seed-0__gr":
            raise RuntimeError("out of luck")
        raise AssertionError(f"{unit.name} was finished and ran again")

    monkeypatch.setattr(drv, "run_unit", fails_for_one)
    assert drv.main(args) == 1
    err = victim.with_name("digits__pair-0.4__seed-0__gr.error.txt")
    assert "RuntimeError: out of luck" in err.read_text()
    assert len(_unit_files(paths["cache"])) == 11
    text = paths["docs"].read_text()
    assert "Partial results: 11 of 12 units finished, 1 failed (digits__pair-0.4__seed-0__gr)" in text
    assert "need about" in text
    df = pd.read_csv(paths["results"])
    assert df[(df.noise == "pair") & (df.detector == "gr")].empty and not df[df.detector == "ce"].empty

    # --no-run: nothing is trained; the page and the CSV come from the finished units (still partial)
    monkeypatch.setattr(drv, "run_unit", lambda *a, **k: pytest.fail("--no-run trained"))
    assert drv.main(args + ["--no-run"]) == 1
    assert "Partial results: 11 of 12" in paths["docs"].read_text()

    # the unit finishes on a later run; the error file goes
    monkeypatch.setattr(drv, "run_unit", real)
    assert drv.main(args) == 0
    assert victim.is_file() and not err.exists()
    # same seed, same numbers: the rerun unit equals the first one (timings aside)
    a, b = json.loads(kept), json.loads(victim.read_text())
    assert a["rows"] == b["rows"]
    assert "Partial results" not in paths["docs"].read_text()


def test_regimes(drv, tmp_path):
    paper = drv.regime_settings("paper", "digits")
    assert paper["protocol"] == "paper" and paper["batch_size"] == 128 and 60 <= paper["epochs"] <= 150
    cfg = grlib.RunConfig(**paper)
    assert cfg.lr == 0.1 and cfg.schedule == "step" and cfg.batchnorm and cfg.augment
    # fashion-spec: Fashion-MNIST as the Fashion-MNIST benchmark's paper spec trains it: its base's run settings,
    # without the validation split and the notebook's own options (a spec written here, in its format)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "fashion_mnist_paper.yaml").write_text(
        "name: x\nnotebooks: [05_training_run]\nbase:\n  dataset: fashion_mnist\n  n_train: 10000\n"
        "  val_fraction: 0.1\n  protocol: paper\n  aug_shift: 1\n  aug_flip: false\n  epochs: 60\n"
        "  batch_size: 128\n  lrs: [0.03, 0.1]\n  figures: false\nmethods:\n  ce: {loss: ce}\n")
    spec = drv.regime_settings("fashion-spec", "fashion_mnist", root=tmp_path)
    assert spec == {"dataset": "fashion_mnist", "n_train": 10000, "protocol": "paper", "aug_shift": 1,
                    "aug_flip": False, "epochs": 60, "batch_size": 128}
    assert grlib.RunConfig(**spec).lr == 0.1
    with pytest.raises(SystemExit, match="fashion_mnist_paper.yaml, which does not exist"):
        drv.regime_settings("fashion-spec", "fashion_mnist", root=tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="--regime 'fast' is not one of"):
        drv.regime_settings("fast", "digits")
    with pytest.raises(SystemExit, match="regime 'tiny' has no settings for dataset 'fashion_mnist'"):
        drv.regime_settings("tiny", "fashion_mnist")
    # a changed regime never reuses the units of another
    a = drv.cache_folder(tmp_path, "paper", "digits", paper, 5)
    b = drv.cache_folder(tmp_path, "paper", "digits", {**paper, "epochs": paper["epochs"] + 1}, 5)
    c = drv.cache_folder(tmp_path, "paper", "digits", paper, 3)
    assert len({a, b, c}) == 3


def test_the_command_line_with_two_workers(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--workers", "2", "--settings", "symmetric:0.4",
                          "--detectors", "gr", "cleanlab", "--cache", str(tmp_path / "c"), "--results",
                          str(tmp_path / "r.csv"), "--docs", str(tmp_path / "d.md")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "running 2" in out.stdout and "wrote" in out.stdout
    df = pd.read_csv(tmp_path / "r.csv")
    assert set(df.detector) == {"gr", "cleanlab"} and set(df.noise_rate) == {0.4}
