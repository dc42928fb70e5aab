"""The notebooks: stored clean and paired with their text twins; executed headless through papermill.

The slow tests run notebooks 01-03 for real (kernel, training, figures) with
small parameters and check what they leave behind: no errored cell, the
injected parameters recorded in the output's metadata, every figure as PNG and
PDF, and a JSON file of sane key numbers.
"""
import json
import math
import os
from pathlib import Path

import nbformat
import pytest

import grlib
from grlib.figures import figure_name
from grlib.notebook import execute_notebook, notebook_parameters, notebooks_dir

NB_DIR = notebooks_dir()
ALL_NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
GENERIC_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

#: The notebooks of this file's section; each: small parameters for the test run, the figure parts it saves.
OURS = {
    "01_emphasis_density": {
        "params": {"epochs": 4, "lams": [0.0, 1.0, 3.0], "betas": [0.0, 4.0, 12.0], "gce_qs": [0.5],
                   "grid_points": 401, "batch_size": 128, "seed": 1},
        "figures": ["baselines", "gr-grid", "batch", "mse"],
    },
    "02_weight_trajectories": {
        "params": {"epochs": 12, "n_per_group": 3, "seed": 1},
        "figures": ["trajectories", "history"],
    },
    "03_clean_noisy_separation": {
        "params": {"epochs": 12, "snapshot_epochs": [2, -1], "n_show": 5, "seed": 1},
        "figures": ["p", "weight", "roc", "images"],
    },
}
#: Parameters every notebook of this section has (the batch-report runner relies on the names), with their types.
COMMON = {"dataset": "str", "noise": "str", "noise_rate": "float", "epochs": "int", "seed": "int",
          "figures_dir": "str", "metrics_path": "str", "progress": "bool"}


@pytest.fixture
def kernel_env(monkeypatch, tmp_path):
    """Headless matplotlib in the kernel; Jupyter/IPython state kept out of ~ unless the Makefile set it."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for var, sub in (("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "matplotlib")):
        if var not in os.environ:
            monkeypatch.setenv(var, str(tmp_path / sub))


# -- stored form: fast checks over every notebook -----------------------------------------
def test_notebooks_exist():
    stems = {p.stem for p in ALL_NOTEBOOKS}
    assert set(OURS) <= stems, f"missing notebooks: {sorted(set(OURS) - stems)}"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec") == GENERIC_KERNELSPEC, f"{path.name}: kernelspec {nb.metadata.get('kernelspec')}"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.get("outputs") == [], f"{path.name}: cell {i} has outputs; strip them before committing"
            assert cell.get("execution_count") is None, f"{path.name}: cell {i} has an execution count"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: needs exactly one 'parameters' code cell"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_in_sync_with_py_twin(path):
    import jupytext

    twin = path.with_suffix(".py")
    assert twin.is_file(), f"{path.name} has no jupytext twin {twin.name}"
    a, b = jupytext.read(path), jupytext.read(twin)

    def cells(nb):
        return [(c.cell_type, c.source.strip()) for c in nb.cells]

    ca, cb = cells(a), cells(b)
    assert len(ca) == len(cb), f"{path.name}: {len(ca)} cells, {twin.name}: {len(cb)}; run jupytext --sync"
    for i, (x, y) in enumerate(zip(ca, cb)):
        assert x == y, f"{path.name} and {twin.name} differ at cell {i}; run jupytext --sync\n{x}\n---\n{y}"
    tags = [c.metadata.get("tags", []) for c in a.cells], [c.metadata.get("tags", []) for c in b.cells]
    assert tags[0] == tags[1], f"{path.name}: cell tags differ from the twin's"


@pytest.mark.parametrize("stem", sorted(OURS))
def test_parameters_cell_is_flat_typed_and_commented(stem):
    path = NB_DIR / f"{stem}.ipynb"
    params = notebook_parameters(path)
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    # every line is one parameter papermill could parse (an '=' in a comment, for one, breaks its parser)
    assert len(lines) == len(params), f"{stem}: papermill parsed {sorted(params)} from {len(lines)} lines"
    for name, info in params.items():
        assert info["inferred_type_name"] != "None", f"{stem}: parameter {name} has no type annotation"
        assert info["help"].strip(), f"{stem}: parameter {name} has no comment"
    for name, typ in COMMON.items():
        assert name in params, f"{stem}: missing the common parameter {name}"
        assert params[name]["inferred_type_name"] == typ, f"{stem}: {name} should be {typ}"
    assert params["figures_dir"]["default"] == '"../figures"'
    assert params["metrics_path"]["default"] == '""'
    assert params["progress"]["default"] == "False"
    assert params["dataset"]["default"] == '"digits"'
    # the defaults are valid run settings
    grlib.RunConfig(dataset=eval(params["dataset"]["default"]), noise=eval(params["noise"]["default"]),
                    noise_rate=float(params["noise_rate"]["default"]), epochs=int(params["epochs"]["default"]))


# -- execution: slow ----------------------------------------------------------------------
def _assert_no_errors(nb, name):
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}: cell {i} raised {out.get('ename')}: {out.get('evalue')}"
    assert not nb.metadata.papermill.get("exception"), f"{name}: papermill recorded an exception"


def _walk_numbers(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def _check_metrics(stem, m, params):
    for where, v in _walk_numbers({k: v for k, v in m.items() if k != "parameters"}):
        assert math.isfinite(v), f"{stem}: {where} is not finite"
    assert m["parameters"]["epochs"] == params["epochs"]
    assert m["parameters"]["seed"] == params["seed"]
    if stem == "01_emphasis_density":
        assert 0 <= m["max_mode_error"] <= m["grid_step"] == pytest.approx(1 / (params["grid_points"] - 1))
        expected = {(lv, bv) for lv in params["lams"] for bv in params["betas"] if bv > 0}
        assert {(r["lam"], r["beta"]) for r in m["gr_modes"]} == expected
        for r in m["gr_modes"]:
            assert r["expected_mode"] == pytest.approx(r["lam"] / (1 + r["lam"]))
        for v in m["batch_weight_share_noisy"].values():
            assert 0 <= v <= 1
        assert 0 < m["batch_noisy_share"] < 1 and 0 <= m["brief_run_final_acc"] <= 1
        assert m["mse_min_ratio_to_lower_bound"] >= 1 - 1e-6
    else:
        for k in ("ce", "gr"):
            r = m[k]
            for f in ("final_acc", "best_acc", "final_noisy_fit"):
                assert 0 <= r[f] <= 1, f"{stem}: {k}.{f}={r[f]}"
            assert r["best_acc"] >= r["final_acc"]
            assert r["best_acc"] > 0.2, f"{stem}: {k} never beat chance by much: {r['best_acc']}"
        assert m["ce"]["label"] == "ce" and m["gr"]["label"].startswith("gr(")
        if stem == "02_weight_trajectories":
            assert m["ce"]["final_noisy_fit"] > m["gr"]["final_noisy_fit"]
            for k in ("ce", "gr"):
                assert 0 <= m[k]["final_weight_share_noisy"] <= 1
        else:
            for k in ("ce", "gr"):
                for f in ("auc_eval_p_last", "auc_p_last", "auc_log_emphasis_last", "auc_eval_p_best",
                          "precision_lowest_p_at_noise_rate"):
                    assert 0 <= m[k][f] <= 1, f"{stem}: {k}.{f}={m[k][f]}"
                assert 1 <= m[k]["epoch_of_best_auc"] <= params["epochs"]
                assert set(m[k]["auc_eval_p_at"]) == {"2", str(params["epochs"])}
            assert m["gr"]["auc_eval_p_last"] > m["ce"]["auc_eval_p_last"]


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(OURS))
def test_notebook_executes(stem, tmp_path, kernel_env):
    spec = OURS[stem]
    figures = tmp_path / "figs"
    params = {**spec["params"], "figures_dir": str(figures)}
    explicit_json = stem == "02_weight_trajectories"  # one notebook writes its JSON where it is told
    if explicit_json:
        params["metrics_path"] = str(tmp_path / "elsewhere" / "numbers.json")
    out = tmp_path / f"{stem}.out.ipynb"
    nb = execute_notebook(NB_DIR / f"{stem}.ipynb", out, params, cwd=tmp_path)

    assert out.is_file()
    _assert_no_errors(nb, stem)
    recorded = nb.metadata.papermill.parameters
    for k, v in params.items():
        assert recorded[k] == v, f"{stem}: parameter {k} recorded as {recorded.get(k)!r}, injected {v!r}"
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    # the last code cell is the check, and it ran
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "assert" in last.source and last.execution_count is not None

    slug = figure_name(stem)  # the notebook stem as figure names spell it
    for part in spec["figures"]:
        for ext in ("png", "pdf"):
            found = list(figures.glob(f"{slug}-{part}__*.{ext}"))
            assert len(found) == 1, f"{stem}: expected one {part}.{ext} figure, found {found}"
            assert found[0].stat().st_size > 1000
    if explicit_json:
        json_path = Path(params["metrics_path"])
        assert not list(figures.glob("*.json")), "the JSON went to figures_dir although metrics_path was given"
    else:
        (json_path,) = figures.glob(f"{slug}__*.json")
        assert "dataset-digits" in json_path.name and f"seed-{params['seed']}" in json_path.name
    _check_metrics(stem, json.loads(json_path.read_text()), params)


@pytest.mark.slow
def test_bad_parameter_fails_with_a_clear_message(tmp_path, kernel_env):
    import papermill as pm

    out = tmp_path / "bad.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match="snapshot_epochs"):
        execute_notebook(NB_DIR / "03_clean_noisy_separation.ipynb", out,
                         {"epochs": 10, "snapshot_epochs": [50], "figures_dir": str(tmp_path / "f")}, cwd=tmp_path)
    assert not (tmp_path / "f").exists(), "nothing is trained or saved after a bad parameter"


@pytest.mark.slow
@pytest.mark.skipif(not (grlib.data_dir() / "fashion_mnist.npz").is_file(),
                    reason="Fashion-MNIST cache missing (make data)")
def test_trajectories_notebook_runs_on_fashion_mnist(tmp_path, kernel_env):
    params = {"dataset": "fashion_mnist", "n_train": 1000, "epochs": 6, "n_per_group": 2,
              "figures_dir": str(tmp_path / "figs")}
    nb = execute_notebook(NB_DIR / "02_weight_trajectories.ipynb", tmp_path / "out.ipynb", params, cwd=tmp_path)
    _assert_no_errors(nb, "02 on fashion_mnist")
    (json_path,) = (tmp_path / "figs").glob("*.json")
    m = json.loads(json_path.read_text())
    assert m["parameters"]["dataset"] == "fashion_mnist" and m["parameters"]["n_train"] == 1000
    assert 0 <= m["gr"]["final_acc"] <= 1 and len(list((tmp_path / "figs").glob("*.png"))) == 2
