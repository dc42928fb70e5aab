"""Notebook 06 (a user's own model, data and loop with GR and the Recorder), executed for real.

The slow tests run the notebook headless through papermill (a real kernel,
real training of its small CNN) with a few epochs and check what it leaves
behind: no errored cell, the figures as PNG and PDF, a JSON of sane key
numbers, and a run folder that :meth:`grlib.RunResult.load` reads back with
the numbers the JSON reports.  The fast tests check its stored form (flat,
typed, commented parameters; no functions) and the promise its first cell
makes: deleting the lines marked ``# synthetic noise`` turns the loop into
the one for real data (no noise mask), which still records every example.
(tests/test_notebooks.py checks every notebook's outputs are stripped, its
kernelspec generic and its jupytext twin in sync.)
"""
import ast
import json
import math
import os
import re

import numpy as np
import pytest
import torch

import grlib
from grlib.figures import figure_name
from grlib.notebook import execute_notebook, notebook_parameters, notebooks_dir

STEM = "06_own_loop"
NB = notebooks_dir() / f"{STEM}.ipynb"
TWIN = NB.with_suffix(".py")
MARK = "# synthetic noise"
PARAMS = {"epochs": "int", "batch_size": "int", "lr": "float", "lam": "float", "beta": "float", "batchnorm": "bool",
          "shift": "int", "noise_rate": "float", "seed": "int", "run_dir": "str", "figures_dir": "str",
          "metrics_path": "str", "progress": "bool"}
FIGURES = ("trajectories", "weights", "separation")
#: Epochs of the executed test run: enough for the notebook's own check (mean-p AUC bound) on digits.
TEST_EPOCHS = 12
#: The figure-name settings of the test run (the defaults, with TEST_EPOCHS and seed 1).
KEY = {"noise_rate": 0.4, "epochs": TEST_EPOCHS, "seed": 1, "lr": 0.05, "batch_size": 64, "lam": 1.0, "beta": 12.0,
       "shift": 1}


def _kernel_env(monkeypatch, folder):
    """Headless matplotlib in the kernel; Jupyter/IPython state kept out of ~ unless the Makefile set it."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for var, sub in (("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "matplotlib")):
        if var not in os.environ:
            monkeypatch.setenv(var, str(folder / sub))


@pytest.fixture
def kernel_env(monkeypatch, tmp_path):
    _kernel_env(monkeypatch, tmp_path)


def _assert_no_errors(nb, name):
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}: cell {i} raised {out.get('ename')}: {out.get('evalue')}"


# -- stored form ----------------------------------------------------------------------------
def test_parameters_are_flat_typed_commented_with_the_documented_defaults():
    import nbformat

    params = notebook_parameters(NB)
    assert {k: v["inferred_type_name"] for k, v in params.items()} == PARAMS
    (cell,) = [c for c in nbformat.read(NB, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == len(params), f"papermill parsed {sorted(params)} from {len(lines)} lines"
    for name, info in params.items():
        assert info["help"].strip(), f"parameter {name} has no comment"
    defaults = {k: v["default"] for k, v in params.items()}
    assert defaults["run_dir"] == defaults["figures_dir"] == defaults["metrics_path"] == '""'
    assert defaults["lam"] == "1.0" and defaults["beta"] == "12.0"  # grlib's one GR default
    assert defaults["noise_rate"] == "0.4" and defaults["progress"] == "False" and defaults["batchnorm"] == "False"


def test_notebook_defines_no_functions_and_uses_the_users_own_pieces():
    source = TWIN.read_text()
    tree = ast.parse(source)
    defined = [type(n).__name__ for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))]
    assert not defined, f"{STEM} defines {defined}"
    # the user's path: own nn.Sequential, own Dataset in IndexedDataset, a plain DataLoader with grlib's sampler
    for needle in ("nn.Sequential(", "TensorDataset(", "grlib.IndexedDataset(", "DataLoader(",
                   "batch_sampler=sampler", "grlib.EqualBatchSampler(", 'grlib.get_loss("gr"', "grlib.Recorder(",
                   "rec.update(index, logits, y, out)", "rec.end_epoch(", "rec.result(", "grlib.RunResult.load("):
        assert needle in source, f"{STEM} no longer shows {needle!r}"
    assert "grlib.train(" not in source and "get_model(" not in source, "the model and loop must be the user's own"


def _cells_up_to_the_loop(source: str) -> list[str]:
    import jupytext

    cells = [c.source for c in jupytext.reads(source, fmt="py:percent").cells if c.cell_type == "code"]
    end = next(i for i, c in enumerate(cells) if "rec.result(" in c)
    return cells[: end + 1]


def test_deleting_the_marked_lines_gives_the_loop_for_real_data(tmp_path, monkeypatch):
    """The first cell's promise: delete the lines marked '# synthetic noise' and the loop runs without a mask."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    source = TWIN.read_text()
    marked = [ln for ln in source.splitlines() if ln.rstrip().endswith(MARK)]
    assert any("add_label_noise" in ln for ln in marked) and any("is_noisy=" in ln for ln in marked)
    assert any("labels=labels" in ln for ln in marked)
    real = "\n".join(ln for ln in source.splitlines() if not ln.rstrip().endswith(MARK))
    cells = _cells_up_to_the_loop(real)
    used = re.findall(r"\b(noisy|labels)\b", "\n".join(cells[1:]))
    assert not used, f"unmarked lines before the loop still use the synthetic noise: {used}"
    scope: dict = {}
    exec(compile(cells[0], "parameters", "exec"), scope)  # the parameters cell, then the test's overrides
    scope.update(epochs=2, seed=3, batchnorm=True, figures_dir=str(tmp_path / "figs"),
                 run_dir=str(tmp_path / "real-run"))
    for k, cell in enumerate(cells[1:], start=1):
        exec(compile(cell, f"cell {k}", "exec"), scope)
    result = scope["result"]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in scope["model"]) == 2  # batchnorm=True: the user's BN CNN
    assert result.is_noisy is None and result.y_true is None and not result.has_mask
    assert np.array_equal(result.y_given, grlib.load_dataset("digits").y_train), "real data keeps its own labels"
    assert "noise_rate" not in result.config
    loaded = grlib.RunResult.load(tmp_path / "real-run")
    assert loaded.is_noisy is None and loaded.epochs_completed == 2
    assert np.all(loaded.summaries["n_seen"] == 2) and np.isfinite(np.asarray(loaded.records["p"])).all()
    assert math.isnan(loaded.summary()["noise_rate_realised"])


# -- executed ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Notebook 06 run once with a few epochs; run_dir left empty (the run goes under figures_dir/runs)."""
    folder = tmp_path_factory.mktemp("nb06")
    figures = folder / "figs"
    params = {"epochs": TEST_EPOCHS, "seed": 1, "figures_dir": str(figures)}
    with pytest.MonkeyPatch.context() as mp:
        _kernel_env(mp, folder)
        nb = execute_notebook(NB, folder / "out.ipynb", params, cwd=folder)
    return nb, figures


@pytest.mark.slow
def test_notebook_executes_and_leaves_a_reloadable_run(executed):
    nb, figures = executed
    _assert_no_errors(nb, STEM)
    assert nb.metadata.papermill.parameters["epochs"] == TEST_EPOCHS
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "assert" in last.source and last.execution_count is not None

    for part in FIGURES:
        for ext in ("png", "pdf"):
            path = figures / f"{figure_name(f'{STEM}-{part}', **KEY)}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, f"missing or empty figure {path.name}"
    m = _metrics(figures)
    n = 1347
    assert m["parameters"]["epochs"] == TEST_EPOCHS and m["parameters"]["seed"] == 1
    assert m["n_examples"] == n and m["epochs_recorded"] == TEST_EPOCHS and m["unseen_examples"] == 0
    assert m["batches_per_epoch"] == math.ceil(n / 64)
    assert {"p", "pred", "margin", "loss", "weight", "log_emphasis"} <= set(m["records"])
    assert 0 <= m["final_acc"] <= m["best_acc"] <= 1 and m["best_acc"] > 0.5, m
    assert 1 <= m["epoch_of_best"] <= TEST_EPOCHS
    assert abs(m["noise_rate_realised"] - 0.4) < 0.05
    for k in ("auc_mean_p", "auc_last_p", "auc_p_best_epoch", "auc_log_emphasis_last", "label_issues_precision",
              "label_issues_recall", "share_p_above_half_clean", "share_p_above_half_mislabelled",
              "weight_share_mislabelled_last"):
        assert 0 <= m[k] <= 1, f"{k}={m[k]}"
    assert m["share_p_above_half_clean"] > m["share_p_above_half_mislabelled"]

    # the run folder: the default, under figures_dir/runs, reloads memory-mapped with the numbers reported
    run = figures / "runs" / m["run_folder"]
    res = grlib.RunResult.load(run)
    assert res.epochs_completed == TEST_EPOCHS and isinstance(res.records["p"], np.memmap)
    assert res.records["p"].shape == (TEST_EPOCHS, n) and np.all(res.summaries["n_seen"] == TEST_EPOCHS)
    assert res.config["loss"] == "gr" and res.metadata.get("data_name") == "digits-8x8"
    mean_p = res.summaries["p_sum"] / res.summaries["n_seen"]
    assert m["auc_mean_p"] == pytest.approx(grlib.separation_auc(mean_p, res.is_noisy), abs=1e-12)
    assert m["auc_last_p"] == pytest.approx(grlib.separation_auc(np.asarray(res.records["p"][-1]), res.is_noisy),
                                            abs=1e-12)
    assert m["final_acc"] == pytest.approx(float(res.history["test_acc"][-1]))
    # each epoch's GR weights sum to 1 per batch
    weights = np.asarray(res.records["weight"], dtype=np.float64)
    np.testing.assert_allclose(weights.sum(axis=1), m["batches_per_epoch"], rtol=1e-4)
    # the given labels are the noisy ones of the notebook's seed
    noisy = grlib.add_label_noise(grlib.load_dataset("digits").y_train, 10, "symmetric", 0.4, seed=1)
    assert np.array_equal(res.y_given, noisy.labels) and np.array_equal(res.is_noisy, noisy.is_noisy)


@pytest.mark.slow
def test_a_folder_that_is_not_a_run_is_refused_untouched(tmp_path, kernel_env):
    import papermill as pm

    mine = tmp_path / "my-results"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(pm.PapermillExecutionError, match="run_dir"):
        execute_notebook(NB, tmp_path / "out.ipynb", {"run_dir": str(mine), "figures_dir": str(tmp_path / "f")},
                         cwd=tmp_path)
    assert (mine / "thesis.tex").read_text() == "precious" and sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    assert not (tmp_path / "f").exists(), "nothing is trained or saved after a refused run_dir"


def _metrics(figures):
    return json.loads((figures / f"{figure_name(STEM, **KEY)}.json").read_text())


@pytest.mark.slow
def test_the_separation_notebook_analyses_the_run_folder(executed, tmp_path, kernel_env):
    """What notebook 06 tells its user: notebook 03 takes its run folder as run_dir, with the same numbers."""
    _, figures = executed
    m06 = _metrics(figures)
    run = figures / "runs" / m06["run_folder"]
    out_figs = tmp_path / "figs03"
    nb = execute_notebook(notebooks_dir() / "03_clean_noisy_separation.ipynb", tmp_path / "out03.ipynb",
                          {"run_dir": str(run), "snapshot_epochs": [1, -1], "figures_dir": str(out_figs)},
                          cwd=tmp_path)
    _assert_no_errors(nb, "03 on the run of 06")
    (json_path,) = out_figs.glob("*.json")
    m03 = json.loads(json_path.read_text())
    (r,) = m03["runs"].values()
    assert m03["source"] == "run_dir" and r["has_mask"] is True and r["label"] == "gr(lam=1, beta=12)"
    assert r["p_field"] == "p"  # the loop kept no evaluation pass: 03 reads the training pass's p
    assert r["auc_p_last"] == pytest.approx(m06["auc_last_p"], abs=1e-12)
    assert r["final_acc"] == pytest.approx(m06["final_acc"], abs=1e-12)
