"""Notebook 07 (data map): stored form, and real executions through papermill with small parameters.

Three runs of the notebook: a run trained in the kernel (paper protocol, AUM threshold samples),
a saved grlib run with its noise mask (images rebuilt from the data set), and a saved run on a
user's own arrays without a mask (threshold samples named by their fake class; no images, no ROC).
Each leaves its figures (PNG and PDF) and a JSON file of key numbers; the last cell asserts.
"""
import ast
import json
import math
import os

import nbformat
import numpy as np
import pytest

import grlib
from grlib.figures import figure_name
from grlib.notebook import execute_notebook, notebook_parameters, notebooks_dir

STEM = "07_data_map"
NB = notebooks_dir() / f"{STEM}.ipynb"
SLUG = figure_name(STEM)


@pytest.fixture
def kernel_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for var, sub in (("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "matplotlib")):
        if var not in os.environ:
            monkeypatch.setenv(var, str(tmp_path / sub))


# -- stored form --------------------------------------------------------------------------------------
def test_defines_no_functions():
    tree = ast.parse(NB.with_suffix(".py").read_text())
    defined = [type(n).__name__ for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))]
    assert not defined, f"{STEM} defines {defined}"


def test_parameters_cell_is_flat_typed_and_commented():
    params = notebook_parameters(NB)
    nb = nbformat.read(NB, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == len(params), f"papermill parsed {sorted(params)} from {len(lines)} lines"
    for ln in lines:
        assert "=" not in ln.split("#", 1)[1], f"an '=' in a comment breaks papermill's parser: {ln}"
    for name, info in params.items():
        assert info["inferred_type_name"] != "None", f"parameter {name} has no type annotation"
        assert info["help"].strip(), f"parameter {name} has no comment"
    expected = {"run_dir": ("str", '""'), "figures_dir": ("str", '""'), "metrics_path": ("str", '""'),
                "dataset": ("str", '"digits"'), "protocol": ("str", '"paper"'), "lam": ("float", "1.0"),
                "beta": ("float", "12.0"), "score": ("str", '"confidence"'), "progress": ("bool", "False"),
                "threshold_fraction": ("float", "0.0"), "threshold_class": ("int", "-1"), "first_k": ("int", "0")}
    for name, (typ, default) in expected.items():
        assert params[name]["inferred_type_name"] == typ and params[name]["default"] == default, (name, params[name])
    assert eval(params["score"]["default"]) == grlib.scores.DEFAULT_SCORE
    # the defaults are valid run settings
    grlib.RunConfig(dataset=eval(params["dataset"]["default"]), noise=eval(params["noise"]["default"]),
                    noise_rate=float(params["noise_rate"]["default"]), epochs=int(params["epochs"]["default"]),
                    protocol=eval(params["protocol"]["default"]))


# -- execution ----------------------------------------------------------------------------------------
def _run(tmp_path, params, name="out"):
    figures = tmp_path / "figs"
    out = tmp_path / f"{name}.ipynb"
    nb = execute_notebook(NB, out, {**params, "figures_dir": str(figures)}, cwd=tmp_path)
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            assert o.get("output_type") != "error", f"cell {i} raised {o.get('ename')}: {o.get('evalue')}"
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "assert" in last.source and last.execution_count is not None
    (json_path,) = figures.glob(f"{SLUG}__*.json")
    metrics = json.loads(json_path.read_text())
    stdout = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    return figures, metrics, stdout


def _figures(figures):
    parts = set()
    for path in figures.glob(f"{SLUG}-*.png"):
        assert path.with_suffix(".pdf").is_file() and path.stat().st_size > 1000, path
        parts.add(path.name[len(SLUG) + 1:].split("__")[0])
    return parts


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


@pytest.mark.slow
def test_trained_here_with_threshold_samples(tmp_path, kernel_env):
    figures, m, _ = _run(tmp_path, {"epochs": 16, "threshold_fraction": 0.09, "n_show": 8, "seed": 1})
    assert _figures(figures) == {"map", "threshold", "roc", "suspects"}
    assert m["source"] == "trained" and m["has_mask"] and m["has_images"]
    # digits' 1347 training examples, round(1347 * 0.09) of them threshold samples, never scored
    assert m["n_examples"] == 1347 and m["n_threshold_samples"] == round(1347 * 0.09)
    assert m["n_scored"] == m["n_examples"] - m["n_threshold_samples"]
    assert m["flag_method"] == "threshold_samples"
    assert m["cut_percentile"] == pytest.approx(100 * (1 - 5 / m["n_threshold_samples"]))
    assert 0.3 < m["true_noise_rate"] < 0.5
    assert m["roc_auc"] > 0.75 and m["flag_precision"] > m["true_noise_rate"]
    for name, row in m["per_score"].items():
        assert 0 <= row["roc_auc"] <= 1 and 0 <= row["average_precision"] <= 1, name
    assert {"confidence", "aum", "correctness", "forgetting", "final_p", "small_loss"} <= set(m["per_score"])


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A saved grlib run on digits (quick protocol), with its noise mask."""
    folder = tmp_path_factory.mktemp("saved") / "ce-run"
    cfg = grlib.RunConfig(dataset="digits", noise="symmetric", noise_rate=0.3, loss="ce", loss_params={}, epochs=12,
                          seed=2)
    grlib.train(cfg, progress=False).save(folder)
    return folder


@pytest.mark.slow
def test_a_saved_run_with_its_mask(tmp_path, kernel_env, saved_run):
    figures, m, _ = _run(tmp_path, {"run_dir": str(saved_run), "score": "aum", "first_k": 6, "n_show": 6})
    assert _figures(figures) == {"map", "threshold", "roc", "suspects"}
    assert m["source"] == "run_dir" and m["has_mask"] and m["has_images"] and m["n_threshold_samples"] == 0
    assert m["score"] == "aum" and m["flag_method"] in ("mixture", "none")
    run = grlib.RunResult.load(saved_run)
    # the notebook's numbers are the library's, for the same run, window and score
    flagged = grlib.find_label_issues(run, score="aum", first_k=6)
    assert m["n_flagged"] == flagged.size
    assert m["roc_auc"] == pytest.approx(grlib.separation_auc(grlib.scores.aum(run, first_k=6), run.is_noisy))
    assert m["true_noise_rate"] == pytest.approx(run.is_noisy.mean())
    assert all(math.isfinite(v) for v in _finite_numbers({k: v for k, v in m.items() if k != "parameters"}))


@pytest.mark.slow
def test_a_saved_run_on_own_data_without_a_mask(tmp_path, kernel_env):
    # a user's own arrays and labels (noise unknown), with AUM threshold samples in class 10
    data = grlib.load_dataset("digits")
    rng = np.random.default_rng(0)
    y = data.y_train.copy()
    flip = rng.random(y.size) < 0.25
    y[flip] = (y[flip] + rng.integers(1, 10, flip.sum())) % 10
    ts = grlib.make_threshold_samples(y, 10, seed=3)
    cfg = grlib.RunConfig(noise="none", loss="gr", epochs=12, seed=0)
    run = grlib.train(cfg, data=(data.x_train, ts.labels), data_name="my-digits", progress=False)
    assert run.is_noisy is None and run.num_classes == 11
    folder = tmp_path / "my-run"
    run.save(folder)
    figures, m, out = _run(tmp_path, {"run_dir": str(folder), "threshold_class": 10, "n_show": 6})
    assert _figures(figures) == {"map", "threshold"}  # no mask: no ROC; own data: no images
    assert "no noise mask" in out and "no images for this run" in out
    assert not m["has_mask"] and not m["has_images"] and "roc_auc" not in m
    assert m["n_threshold_samples"] == int(ts.mask.sum()) and m["flag_method"] == "threshold_samples"
    flagged = grlib.find_label_issues(folder, threshold_samples=ts.mask)
    assert m["n_flagged"] == flagged.size > 0
    # measured with the mask the notebook never saw: the flags are rich in the labels we corrupted
    real_flip = flip & ~ts.mask
    assert real_flip[flagged].mean() > 2 * real_flip[~ts.mask].mean()


@pytest.mark.slow
def test_bad_parameters_fail_before_training(tmp_path, kernel_env):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="score='variability' cannot rank examples"):
        execute_notebook(NB, tmp_path / "bad.ipynb", {"score": "variability", "figures_dir": str(tmp_path / "f")},
                         cwd=tmp_path)
    assert not (tmp_path / "f").exists(), "nothing is trained or saved after a bad parameter"
