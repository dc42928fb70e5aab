"""The emphasis tuner: pure functions, widget callbacks, the Train button, validation, ``grlib tune``, the notebook."""
import argparse
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import grlib
from grlib import cli
from grlib.tuning import EmphasisTuner, TunerSettings, batch_weights, curve_data, reference_batch

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "04_emphasis_tuning.ipynb"


@pytest.fixture
def jupyter_env(monkeypatch):
    """Keep Jupyter/IPython/matplotlib state out of ~ (the Makefile's folders, unless already set)."""
    scratch = REPO / ".scratch"
    for var, sub in (("JUPYTER_CONFIG_DIR", "jupyter/config"), ("JUPYTER_DATA_DIR", "jupyter/data"),
                     ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "matplotlib")):
        if not os.environ.get(var):
            (scratch / sub).mkdir(parents=True, exist_ok=True)
            monkeypatch.setenv(var, str(scratch / sub))


@pytest.fixture
def tuner():
    return EmphasisTuner(epochs=3, batch_size=200)


# -- pure functions ------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 3.0, 9.0])
def test_gr_curve_peaks_at_its_mode_and_matches_the_edf(lam):
    c = curve_data("gr", lam=lam, beta=8.0)
    step = c.p[1] - c.p[0]
    assert c.mode == pytest.approx(lam / (1 + lam))
    assert abs(c.peak - lam / (1 + lam)) <= step
    # slow, obvious reference: exp(beta p^lam (1-p)), scaled to integrate to 1 over p (0**0 = 1)
    p = np.linspace(0, 1, c.p.size)
    ref = np.exp(8.0 * np.power(p, lam) * (1 - p))
    ref /= np.sum((ref[1:] + ref[:-1]) / 2 * np.diff(p))
    np.testing.assert_allclose(c.values, ref, rtol=1e-10)
    assert not c.flat


def test_curves_are_densities_and_baseline_modes():
    c = curve_data("gce", lam=2.0, beta=5.0, q=0.4)
    for name, values in c.curves.items():
        assert np.trapezoid(values, c.p) == pytest.approx(1.0), name
    assert c.selected == "gce" and c.mode == pytest.approx(0.4 / 1.4)
    assert abs(c.peak - 0.4 / 1.4) <= c.p[1] - c.p[0]
    assert curve_data("ce").peak == 0.0 and curve_data("ce").mode == 0.0
    assert curve_data("mae").peak == pytest.approx(0.5)
    np.testing.assert_allclose(c.curves["ce"], 2 * (1 - c.p), rtol=1e-5)  # trapezoid-normalised
    np.testing.assert_allclose(c.curves["mae"], 6 * c.p * (1 - c.p), rtol=1e-5)
    flat = curve_data("gr", lam=1.0, beta=0.0)
    assert flat.flat and np.allclose(flat.values, 1.0)


def test_reference_batch_is_fixed_and_batch_weights_use_the_loss_details():
    a = reference_batch("symmetric", 0.4, seed=0, epochs=3, batch_size=200)
    b = reference_batch("pair", 0.2, seed=0, epochs=3, batch_size=200)
    np.testing.assert_array_equal(a.indices, b.indices)  # same examples, other labels and model
    assert a.logits.shape == (200, 10) and a.labels.dtype == torch.int64
    np.testing.assert_array_equal(a.is_noisy, a.labels.numpy() != a.true_labels)
    assert 0.25 < a.is_noisy.mean() < 0.55
    w = batch_weights(a, "gr", lam=2.0, beta=10.0)
    out = grlib.get_loss("gr", lam=2.0, beta=10.0).details(a.logits, a.labels)
    np.testing.assert_allclose(w.weight, out.weight.double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(w.p, out.p.double().numpy(), rtol=1e-6)
    assert w.weight.sum() == pytest.approx(1.0)
    # GR's weight is a function of p only: the order of weights follows the EDF of p
    score = 10.0 * w.p ** 2 * (1 - w.p)
    assert np.corrcoef(np.argsort(np.argsort(score)), np.argsort(np.argsort(w.weight)))[0, 1] > 0.999


def test_ce_emphasises_the_mislabelled_and_gr_with_a_high_mode_does_not():
    batch = reference_batch("symmetric", 0.4, seed=0, epochs=5, batch_size=256)
    ce = batch_weights(batch, "ce")
    gr = batch_weights(batch, "gr", lam=3.0, beta=12.0)
    assert ce.noisy_weight_share > ce.noisy_share + 0.1
    assert gr.noisy_weight_share < gr.noisy_share - 0.1


def test_settings_validation_names_the_control():
    with pytest.raises(ValueError, match="lam"):
        TunerSettings(lam=-1)
    with pytest.raises(ValueError, match="beta"):
        TunerSettings(beta=float("nan"))
    with pytest.raises(ValueError, match="noise_rate"):
        TunerSettings(noise_rate=0.95)
    with pytest.raises(ValueError, match="loss.*'ce', 'mae', 'gce', 'gr'"):
        TunerSettings(loss="focal")
    with pytest.raises(ValueError, match="epochs"):
        TunerSettings(epochs=0)
    with pytest.raises(TypeError, match="lam"):
        TunerSettings(lam="1")
    with pytest.raises(TypeError, match="unknown tuner setting"):
        TunerSettings().replace(gamma=1)
    s = TunerSettings(loss="gce", q=0.5)
    assert s.loss_params == {"q": 0.5} and s.mode == pytest.approx(1 / 3)
    cfg = TunerSettings(lam=2, beta=4, epochs=7, noise="pair", noise_rate=0.3).run_config()
    assert (cfg.loss, cfg.loss_params, cfg.epochs, cfg.noise, cfg.noise_rate, cfg.dataset) == (
        "gr", {"lam": 2.0, "beta": 4.0}, 7, "pair", 0.3, "digits")


# -- the widget object ------------------------------------------------------------------------
def test_moving_lam_redraws_curve_readout_and_batch(tuner):
    assert tuner.mode_text == "mode p*=0.500"
    assert 'class="grlib-mode"' in tuner.mode_readout.value
    before = (tuner.redraw_count, tuner.curve, tuner.batch, tuner.curve_image.value, tuner.curve_figure)
    assert before[3][:8] == b"\x89PNG\r\n\x1a\n"
    refs = tuner.reference_count

    tuner.lam_slider.value = 3.0  # what the browser does on release
    assert tuner.redraw_count == before[0] + 1
    assert tuner.mode_text == "mode p*=0.750"
    assert tuner.curve.peak == pytest.approx(0.75, abs=1e-3)
    assert not np.allclose(tuner.curve.values, before[1].values)
    assert not np.allclose(tuner.batch.weight, before[2].weight)
    assert tuner.curve_image.value != before[3] and tuner.curve_figure is not before[4]
    # the selected curve in the figure is the new one
    ax = tuner.curve_figure.axes[0]
    line = next(ln for ln in ax.lines if ln.get_gid() == "curve:gr(lam=3, beta=12)")
    np.testing.assert_allclose(line.get_ydata(), tuner.curve.values)
    assert tuner.reference_count == refs  # no retraining for an emphasis change
    assert tuner.lam_slider.continuous_update is False and tuner.beta_slider.continuous_update is False


def test_loss_selector_switches_curve_and_enables_its_controls(tuner):
    tuner.loss_buttons.value = "gce"
    assert tuner.q_slider.disabled is False and tuner.lam_slider.disabled and tuner.beta_slider.disabled
    assert tuner.mode_text == f"mode p*={0.7 / 1.7:.3f}"
    n = tuner.redraw_count
    tuner.q_slider.value = 1.0
    assert tuner.redraw_count == n + 1 and tuner.mode_text == "mode p*=0.500"
    assert tuner.batch.loss == "gce" and tuner.batch.params == {"q": 1.0}
    tuner.loss_buttons.value = "ce"
    assert tuner.mode_text == "mode p*=0.000" and tuner.q_slider.disabled
    # CE puts more of the batch's weight on the mislabelled than their share
    assert tuner.batch.noisy_weight_share > tuner.batch.noisy_share
    assert f"{tuner.batch.noisy_weight_share:.0%} of the weight" in tuner.batch_readout.value


def test_noise_change_retrains_the_reference_once_and_caches_it(tuner):
    first = tuner.batch
    assert tuner.reference_count == 1
    tuner.rate_slider.value = 0.2
    assert tuner.reference_count == 2
    assert tuner.batch.noisy_share < first.noisy_share
    tuner.noise_buttons.value = "none"
    assert tuner.reference_count == 3 and tuner.batch.noisy_share == 0.0 and tuner.rate_slider.disabled
    tuner.set(noise="symmetric", noise_rate=0.4)
    assert tuner.reference_count == 3  # cached
    np.testing.assert_array_equal(tuner.batch.weight, first.weight)


def test_set_validates_everything_first_and_redraws_once(tuner):
    n = tuner.redraw_count
    tuner.set(lam=2.0, beta=4.0)
    assert tuner.redraw_count == n + 1 and (tuner.lam, tuner.beta) == (2.0, 4.0)
    assert tuner.mode_text == f"mode p*={2 / 3:.3f}"
    with pytest.raises(ValueError, match=r"lam=-1.0 is outside the allowed range \[0.0, 10.0\]"):
        tuner.set(beta=1.0, lam=-1)
    assert (tuner.lam, tuner.beta) == (2.0, 4.0) and tuner.redraw_count == n + 1  # nothing changed
    with pytest.raises(ValueError, match="lam"):
        tuner.lam = -1
    with pytest.raises(ValueError, match="beta"):
        tuner.beta = 31
    with pytest.raises(ValueError, match="loss"):
        tuner.loss = "focal"
    with pytest.raises(TypeError, match="unknown tuner setting"):
        tuner.set(temperature=2)
    with pytest.raises(ValueError, match="noise_rate"):
        EmphasisTuner(noise_rate=0.95)
    tuner.lam = 4
    assert tuner.lam_slider.value == 4.0 and tuner.mode_text == "mode p*=0.800"


def test_sliders_clamp_out_of_range_values(tuner):
    tuner.lam_slider.value = -1
    assert tuner.lam_slider.value == 0.0 and tuner.mode_text == "mode p*=0.000"
    tuner.lam_slider.value = 99
    assert tuner.lam_slider.value == 10.0 and tuner.mode_text == f"mode p*={10 / 11:.3f}"
    tuner.rate_slider.value = 2
    assert tuner.rate_slider.value == 0.8
    tuner.beta_slider.value = 0
    assert tuner.curve.flat and "uniform" in tuner.mode_readout.value
    np.testing.assert_allclose(tuner.batch.weight, 1 / tuner.batch.weight.size)


def test_train_button_runs_training_and_keeps_the_previous_run():
    tuner = EmphasisTuner(epochs=3)
    seen = []
    tuner.callbacks.append(lambda e, r: seen.append((e, tuner.train_button.disabled, tuner.progress.value)))
    assert tuner.status_text.startswith("not trained yet") and tuner.train_image.value == b""

    tuner.train_button.click()
    assert tuner.last_error is None
    assert seen == [(1, True, 1), (2, True, 2), (3, True, 3)]  # disabled while running, progress moves
    assert tuner.train_button.disabled is False and tuner.progress.value == 3
    assert len(tuner.runs) == 1 and tuner.previous_result is None
    r1 = tuner.last_result
    assert r1.epochs_completed == 3 and r1.config["loss"] == "gr" and r1.config["noise_rate"] == 0.4
    final = r1.history["test_acc"][-1]
    assert np.isfinite(final) and final > 0.2
    assert tuner.status_text.startswith(f"done: final test acc {final:.3f}")
    assert 'class="grlib-train-status"' in tuner.train_status.value
    img1 = tuner.train_image.value
    assert img1[:8] == b"\x89PNG\r\n\x1a\n"

    tuner.loss_buttons.value = "ce"
    tuner.train_button.click()
    assert len(tuner.runs) == 2 and tuner.previous_result is r1
    r2 = tuner.last_result
    assert r2.config["loss"] == "ce" and "run 2: ce" in tuner.status_text
    assert tuner.train_image.value != img1
    gids = {ln.get_gid() for ax in tuner.train_figure.axes for ln in ax.lines}
    assert {"run 1: gr(lam=1, beta=12):test_acc", "run 2: ce:test_acc", "run 1: gr(lam=1, beta=12):noisy_fit",
            "run 2: ce:noisy_fit"} <= gids
    line = next(ln for ax in tuner.train_figure.axes for ln in ax.lines if ln.get_gid() == "run 2: ce:noisy_fit")
    np.testing.assert_allclose(line.get_ydata(), r2.history["noisy_fit"])
    hist_titles = [ax.get_title() for ax in tuner.train_figure.axes[2:]]
    assert hist_titles[0].startswith("run 2: ce") and hist_titles[1].startswith("run 1: gr")


def test_training_errors_are_shown_and_the_button_recovers():
    def boom(epoch, result):
        raise RuntimeError("boom at epoch %d" % epoch)

    tuner = EmphasisTuner(epochs=2, callbacks=[boom])
    tuner.train_button.click()  # a widget callback must not lose the error
    assert tuner.status_text == "failed: RuntimeError: boom at epoch 1"
    assert "boom" in tuner.last_error and "boom" in tuner.error_readout.value
    assert tuner.train_button.disabled is False and tuner.runs == []
    with pytest.raises(RuntimeError, match="boom"):
        tuner.run_training()  # headless: it raises
    with pytest.raises(ValueError, match="epochs"):
        tuner.run_training(epochs=0)


def test_run_training_headless_with_changes():
    tuner = EmphasisTuner(epochs=2)
    r = tuner.run_training(loss="gce", q=0.5, noise="pair", noise_rate=0.3)
    assert r.config["loss"] == "gce" and r.config["loss_params"] == {"q": 0.5}
    assert r.config["noise"] == "pair" and r.is_noisy.mean() == pytest.approx(0.3, abs=0.05)
    assert tuner.loss_buttons.value == "gce" and tuner.mode_text == "mode p*=0.333"


# -- serving: grlib tune ------------------------------------------------------------------------
def test_cli_owns_tune_and_tuning_does_not_import_cli():
    args = cli.build_parser().parse_args(["tune", "--port", "0"])
    assert args.port == 0 and args.func is cli._cmd_tune and args.notebook is None
    assert cli.tuning_notebook() == NOTEBOOK
    # no cli <-> tuning cycle: the library modules never import the command line, nor the reverse
    for path in (REPO / "grlib" / "tuning").glob("*.py"):
        if path.name != "__main__.py":  # python -m grlib.tuning: the entry point, imported by nothing
            assert not {m for m in _imports(path) if m.endswith("cli")}, f"{path.name} imports the CLI"
    assert not {m for m in _imports(REPO / "grlib" / "cli.py") if "tuning" in m}


def _imports(path):
    """Every module name a file imports (relative ones with their dots), at any depth."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_voila_command_and_busy_port(capsys):
    port = cli.free_port()  # only written into the command line here; nothing listens on it
    cmd = cli.voila_command(NOTEBOOK, port=port, python="/x/python")
    assert cmd[:4] == ["/x/python", "-m", "voila", str(NOTEBOOK)]
    assert {"--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}", "--Voila.port_retries=0"} <= set(cmd)
    with pytest.raises(ValueError, match="port"):
        cli.voila_command(NOTEBOOK, port=70000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert cli.main(["tune", "--port", str(busy)]) == 2
    assert f"port {busy} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert cli.main(["tune", "--notebook", "/nonexistent/nb.ipynb"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["tune", "--port", "-3"]) == 2
    assert "port=-3 is too small" in capsys.readouterr().err


def test_python_m_grlib_tuning_is_grlib_tune():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "grlib.tuning", "--help"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "--port" in out.stdout and "Voila" in out.stdout


# -- the notebook --------------------------------------------------------------------------------
def test_notebook_is_stored_clean_with_typed_parameters():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec == {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                      "language": "python"}
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    params = grlib.notebook.notebook_parameters(NOTEBOOK)
    assert {k: v["inferred_type_name"] for k, v in params.items()} == {
        "lam": "float", "beta": "float", "loss": "str", "q": "float", "noise": "str", "noise_rate": "float",
        "epochs": "int", "seed": "int", "figures_dir": "str", "metrics_path": "str", "headless": "bool"}
    assert all(v["help"] for v in params.values())
    src = "\n".join(c.source for c in nb.cells)
    assert "sys.path" not in src
    # the jupytext twin holds the same code
    twin = (NOTEBOOK.with_suffix(".py")).read_text()
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.source in twin


@pytest.mark.slow
def test_notebook_runs_headless(tmp_path, jupyter_env):
    from grlib.notebook import execute_notebook

    figs = tmp_path / "figs"
    params = {"headless": True, "epochs": 2, "lam": 2.0, "noise_rate": 0.3, "figures_dir": str(figs)}
    nb = execute_notebook(NOTEBOOK, tmp_path / "out.ipynb", parameters=params, cwd=tmp_path)
    assert nb.metadata.papermill.parameters == params
    assert not nb.metadata.papermill.get("exception")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    stem = "04_emphasis_tuning"  # figure_name keeps the notebook stem as it is
    names = {}
    for view in ("emphasis", "training"):
        # every setting the figure depends on is in its name
        names[view] = grlib.figures.figure_name(stem, view=view, loss="gr", lam=2.0, beta=12.0, q=0.7, epochs=2,
                                                noise="symmetric", noise_rate=0.3, seed=0)
        assert "lam-2__" in names[view] and "beta-12__" in names[view] and "epochs-2__" in names[view]
        for ext in ("png", "pdf"):
            assert (figs / f"{names[view]}.{ext}").stat().st_size > 1000
    (json_path,) = figs.glob("*.json")
    assert json_path.name == grlib.figures.figure_name(stem, loss="gr", lam=2.0, beta=12.0, q=0.7, epochs=2,
                                                       noise="symmetric", noise_rate=0.3, seed=0) + ".json"
    metrics = json.loads(json_path.read_text())
    assert metrics["mode"] == pytest.approx(2 / 3) and metrics["curve_peak"] == pytest.approx(2 / 3, abs=1e-3)
    assert metrics["settings"]["lam"] == 2.0 and metrics["settings"]["epochs"] == 2
    assert len(metrics["test_acc"]) == 2 and metrics["final_acc"] > 0.2 and 0 <= metrics["noisy_fit"] <= 1
    # an explicit metrics_path wins over the default
    out2 = tmp_path / "m" / "metrics.json"
    execute_notebook(NOTEBOOK, tmp_path / "out2.ipynb", cwd=tmp_path,
                     parameters={"headless": True, "epochs": 1, "figures_dir": str(figs), "metrics_path": str(out2)})
    assert json.loads(out2.read_text())["settings"]["epochs"] == 1


# -- one set of defaults ---------------------------------------------------------------------------
def test_one_default_gr_setting_in_the_tuner_compare_and_the_notebooks():
    """(lam, beta) = (1, 12) everywhere this part of grlib sets a GR default."""
    from grlib.compare import DEFAULT_METHODS
    from grlib.notebook import notebook_parameters, notebooks_dir

    default = {"lam": 1.0, "beta": 12.0}
    s = TunerSettings()
    assert (s.lam, s.beta) == (1.0, 12.0) and s.label == "gr(lam=1, beta=12)"
    assert {k: v for k, v in curve_data().params["gr"].items()} == default
    assert [params for name, params in DEFAULT_METHODS if name == "gr"] == [default]
    for stem in ("01_emphasis_density", "02_weight_trajectories", "03_clean_noisy_separation",
                 "04_emphasis_tuning"):
        params = notebook_parameters(notebooks_dir() / f"{stem}.ipynb")
        assert (float(params["lam"]["default"]), float(params["beta"]["default"])) == (1.0, 12.0), stem


def test_the_library_defaults_are_the_same_gr_setting():
    loss = grlib.GRLoss()
    assert (loss.lam, loss.beta) == (TunerSettings().lam, TunerSettings().beta)
    assert grlib.RunConfig().loss_params == {"lam": TunerSettings().lam, "beta": TunerSettings().beta}
