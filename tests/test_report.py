"""Batch reports (grlib.report): spec validation, run ids and cache keys, the report's numbers, the
runner's refusals (bad scheduler, bad report folder), and real sweeps.

The slow tests execute notebooks through papermill: the tiny spec with the real
05 notebook (end to end, grouped kernels, histories, checksums, then cached, then
a truncated file re-executed), learning-rate selection in notebook 05, a small
failing notebook, a runner killed mid-sweep by a signal and resumed, a light
spec on a Dask LocalCluster, and a read-only report folder.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import grlib
from grlib.notebook import execute_notebook, notebooks_dir
from grlib.report import (ReportFolderError, SchedulerError, SpecError, builtin_specs, check_scheduler_address,
                          load_spec, run_report, stats)
from grlib.report.cli import main as report_main
from grlib.report.html import build_report, external_urls
from grlib.report.kernel import choose_by_validation, expand_runs, run_config
from grlib.report.portable import Scrubber, absolute_paths_in
from grlib.report.runner import read_manifest, verify_manifest
from grlib.report.spec import run_id_for

TINY = builtin_specs()["tiny"]
NB05 = notebooks_dir() / "05_training_run.ipynb"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """TMPDIR and Jupyter/IPython/matplotlib state in a temporary folder (kernels and Dask inherit them)."""
    root = tmp_path_factory.mktemp("report-env")
    env = {"TMPDIR": root / "tmp", "JUPYTER_CONFIG_DIR": root / "jupyter" / "config",
           "JUPYTER_DATA_DIR": root / "jupyter" / "data", "JUPYTER_RUNTIME_DIR": root / "jupyter" / "runtime",
           "IPYTHONDIR": root / "ipython"}
    mp = pytest.MonkeyPatch()
    for var, path in env.items():
        path.mkdir(parents=True, exist_ok=True)
        mp.setenv(var, str(path))
    # one matplotlib cache for the module (a fresh one costs a font scan); keep the Makefile's if set
    mp.setenv("MPLCONFIGDIR", os.environ.get("MPLCONFIGDIR") or str(root / "matplotlib"))
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.setattr(tempfile, "tempdir", str(env["TMPDIR"]))
    yield root
    mp.undo()


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def light_notebook(path: Path, body: str) -> Path:
    """A notebook with the standard report parameters whose work is ``body`` (no torch: fast to run)."""
    params = textwrap.dedent("""\
        dataset: str = "digits"  # data set
        noise: str = "symmetric"  # noise kind
        noise_rate: float = 0.4  # noise rate
        epochs: int = 1  # epochs
        seed: int = 0  # seed
        figures_dir: str = "figures"  # figures folder
        metrics_path: str = ""  # metrics file
        progress: bool = False  # progress bar""")
    write = textwrap.dedent("""\
        import json, os
        os.makedirs(figures_dir, exist_ok=True)
        open(os.path.join(figures_dir, "note.txt"), "w").write("a figure would go here")
        acc = 0.5 + seed / 100
        json.dump({"final_acc": acc, "best_acc": acc + 0.01, "epoch_of_best": 1}, open(metrics_path, "w"))""")
    nb = new_notebook(cells=[new_markdown_cell("# a test notebook"),
                             new_code_cell(params, metadata={"tags": ["parameters"]}),
                             new_code_cell(textwrap.dedent(body)), new_code_cell(write)],
                      metadata={"kernelspec": KERNELSPEC})
    nbformat.write(nb, str(path))
    return path


def manifests(report: Path) -> dict[str, dict]:
    return {p.name[: -len(".manifest.json")]: json.loads(p.read_text())
            for p in (report / "runs").glob("*.manifest.json")}


# -- specs: refused before anything runs (fast) -------------------------------------------------
GOOD = """\
name: t
notebooks: [05_training_run]
base: {epochs: 1}
grid: {noise_rate: [0.0, 0.4]}
methods:
  ce: {loss: ce}
  gr: [{loss: gr, lam: 0.5, beta: 8}, {loss: gr, lam: [1, 2], beta: 12}]
seeds: [0, 1]
"""

BAD_SPECS = {
    "bad-yaml": ("name: t\nnotebooks: [05_training_run\n", r"bad YAML"),
    "not-a-mapping": ("- 05_training_run\n- 1\n", r"a spec is a YAML mapping"),
    "unknown-top-key": (GOOD + "grids: {epochs: [1]}\n", r"unknown key\(s\) \['grids'\]"),
    "unknown-notebook": (GOOD.replace("[05_training_run]", "[05_trainig_run]"),
                         r"unknown notebook '05_trainig_run'.*available: .*05_training_run"),
    "no-notebooks": (GOOD.replace("notebooks: [05_training_run]\n", ""), r"no notebooks"),
    "unknown-parameter-base": (GOOD.replace("{epochs: 1}", "{epochz: 1}"),
                               r"unknown parameter\(s\) \['epochz'\] in base for notebook '05_training_run'"),
    "unknown-parameter-method": (GOOD.replace("{loss: ce}", "{loss: ce, gamma: 2}"),
                                 r"unknown parameter\(s\) \['gamma'\] in methods"),
    "empty-axis": (GOOD.replace("[0.0, 0.4]", "[]"), r"axis 'noise_rate' is an empty list"),
    "empty-grid": (GOOD.replace("{noise_rate: [0.0, 0.4]}", "{}"), r"grid is empty"),
    "empty-grid-list": (GOOD.replace("{noise_rate: [0.0, 0.4]}", "[]"), r"grid is an empty list"),
    "empty-methods": (GOOD.split("methods:")[0] + "methods: {}\nseeds: [0]\n", r"methods must be a non-empty"),
    "empty-seeds": (GOOD.replace("seeds: [0, 1]", "seeds: []"), r"seeds must be a non-empty list"),
    "wrong-type-int": (GOOD.replace("{epochs: 1}", "{epochs: three}"),
                       r"parameter 'epochs' of notebook '05_training_run' is declared int, got 'three'"),
    "wrong-type-float": (GOOD.replace("[0.0, 0.4]", "[0.0, '0.4']"),
                         r"'noise_rate' .* declared float, got '0.4' \(str\).*without quotes"),
    "yaml-bool-for-str": (GOOD.replace("{epochs: 1}", "{epochs: 1, noise: off}"),
                          r"'noise' .* declared str, got False \(bool\).*quote"),
    "seed-in-grid": (GOOD.replace("{noise_rate: [0.0, 0.4]}", "{noise_rate: [0.4], seed: [3]}"),
                     r"'seed' is set in grid"),
    "runner-parameter": (GOOD.replace("{epochs: 1}", "{epochs: 1, metrics_path: m.json}"),
                         r"\['metrics_path'\] in base are set by the runner"),
    "set-twice": (GOOD.replace("{epochs: 1}", "{epochs: 1, noise_rate: 0.2}"),
                  r"\['noise_rate'\] set both in base and in grid"),
    "duplicate-runs": (GOOD.replace("gr: [", "ce2: {loss: ce}\n  gr: ["), r"same id '05_training_run__loss-ce__"),
    "bad-name": (GOOD.replace("name: t", "name: ../t"), r"name='../t' must be a folder name"),
    "runs-per-kernel-zero": (GOOD + "runs_per_kernel: 0\n", r"runs_per_kernel=0 must be an integer >= 1"),
    "runs-set-by-user": (GOOD.replace("{epochs: 1}", "{epochs: 1, runs: [[]]}"), r"\['runs'\] in base are set by the runner"),
    "history-set-by-user": (GOOD.replace("{epochs: 1}", "{epochs: 1, history_path: h.csv}"),
                            r"\['history_path'\] in base are set by the runner"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_refused_with_a_message_naming_the_problem(case, tmp_path):
    text, message = BAD_SPECS[case]
    path = write_yaml(tmp_path / f"{case}.yaml", text)
    with pytest.raises(SpecError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)  # the message says which spec
    out = tmp_path / "out"
    with pytest.raises(SpecError, match=message):
        run_report(path, out=out, progress=False)
    assert not out.exists(), "a refused spec must not create or run anything"


def test_cli_refuses_a_bad_spec_with_exit_code_2(tmp_path, capsys):
    path = write_yaml(tmp_path / "bad.yaml", BAD_SPECS["unknown-parameter-base"][0])
    assert report_main([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "grlib report: error:" in err and "epochz" in err
    assert not (tmp_path / "out").exists()


def test_a_notebook_without_the_report_parameters_is_refused(tmp_path):
    nb = new_notebook(cells=[new_code_cell("seed: int = 0  # seed", metadata={"tags": ["parameters"]})],
                      metadata={"kernelspec": KERNELSPEC})
    nbformat.write(nb, str(tmp_path / "plain.ipynb"))
    path = write_yaml(tmp_path / "s.yaml", "notebooks: [plain]\n")
    with pytest.raises(SpecError, match=r"does not declare \['metrics_path', 'figures_dir'\]"):
        load_spec(path)


# -- expansion, run ids, cache keys (fast) -----------------------------------------------------------
def test_expansion_run_ids_and_types(tmp_path):
    spec = load_spec(write_yaml(tmp_path / "good.yaml", GOOD))
    runs = spec.runs()
    assert len(runs) == (1 + 3) * 2 * 2  # (ce + 3 GR variants) x 2 noise rates x 2 seeds
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids)
    assert "05_training_run__loss-gr__lam-1__beta-12__noise_rate-0.4__seed-0" in ids
    assert "05_training_run__loss-ce__noise_rate-0__seed-1" in ids
    gr = next(r for r in runs if r.run_id == "05_training_run__loss-gr__lam-1__beta-12__noise_rate-0.4__seed-0")
    # YAML ints become floats where the notebook declares float; progress defaults to False
    assert gr.parameters == {"epochs": 1, "loss": "gr", "lam": 1.0, "beta": 12.0, "noise_rate": 0.4, "seed": 0,
                             "progress": False}
    assert isinstance(gr.parameters["lam"], float) and gr.label == "gr(lam=1, beta=12)" and gr.method == "gr"
    assert [r.run_id for r in load_spec(tmp_path / "good.yaml").runs()] == ids  # stable
    # the same spec as a dict gives the same runs
    import yaml

    assert [r.run_id for r in load_spec(yaml.safe_load(GOOD)).runs()] == ids
    assert spec.grid_axes == ["noise_rate"] and spec.varying == ["noise_rate"]


def test_method_names_are_free_text_and_run_ids_stay_file_names(tmp_path):
    spec = load_spec(write_yaml(tmp_path / "s.yaml", """\
        notebooks: [05_training_run]
        methods:
          nce+rce: {loss: nce+rce}
          "GR (paper)": {loss: gr, lam: 1, beta: 12}
        """))
    runs = spec.runs()
    assert [r.label for r in runs] == ["nce+rce", "GR (paper)(loss=gr, lam=1, beta=12)"]
    assert [r.run_id for r in runs] == ["05_training_run__loss-nce+rce__seed-0",
                                        "05_training_run__loss-gr__lam-1__beta-12__seed-0"]


def test_long_run_ids_are_cut_with_a_hash():
    items = [(f"parameter_{i}", "value" * 3) for i in range(12)]
    a = run_id_for("05_training_run", items)
    b = run_id_for("05_training_run", items[:-1] + [("parameter_11", "other")])
    assert len(a) <= 120 and len(b) <= 120 and a != b
    assert a.startswith("05_training_run__parameter_0-valuevaluevalue")


def test_cache_key_follows_notebook_parameters_and_grlib(tmp_path):
    spec = load_spec(write_yaml(tmp_path / "good.yaml", GOOD))
    run = spec.runs()[0]
    key = run.cache_key("0.1.0+src.a")
    assert run.cache_key("0.1.0+src.a") == key
    assert run.cache_key("0.1.0+src.b") != key                       # grlib changed
    other = load_spec(write_yaml(tmp_path / "g2.yaml", GOOD.replace("{epochs: 1}", "{epochs: 2}"))).runs()[0]
    assert other.run_id == run.run_id and other.cache_key("0.1.0+src.a") != key  # a parameter changed
    # the notebook's content changed (a copy next to the spec, with one cell edited)
    nb = nbformat.read(str(NB05), as_version=4)
    nbformat.write(nb, str(tmp_path / "05_training_run.ipynb"))
    copy = load_spec(tmp_path / "good.yaml").runs()[0]
    assert copy.notebook.path == (tmp_path / "05_training_run.ipynb").resolve()
    assert copy.cache_key("0.1.0+src.a") == key                      # same content, same key
    nb.cells[-1].source += "\n# edited"
    nbformat.write(nb, str(tmp_path / "05_training_run.ipynb"))
    assert load_spec(tmp_path / "good.yaml").runs()[0].cache_key("0.1.0+src.a") != key


def test_grlib_fingerprint_covers_the_protocol_presets_and_the_kernel_helpers(monkeypatch):
    """A change to config.py (the protocol's preset values) or report/kernel.py re-executes every run;
    a change to the page code (report/html.py) does not."""
    from grlib.report.runner import grlib_fingerprint

    base = grlib_fingerprint()
    real = Path.read_bytes
    for name, changes in (("config.py", True), ("kernel.py", True), ("train.py", True), ("html.py", False),
                          ("stats.py", False)):
        monkeypatch.setattr(Path, "read_bytes", lambda self, n=name: real(self) + (b"#" if self.name == n else b""))
        assert (grlib_fingerprint() != base) is changes, name
    monkeypatch.setattr(Path, "read_bytes", real)
    assert grlib_fingerprint() == base


def test_external_url_check_catches_cdn_assets():
    page = ('<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" href="//cdn.example.org/s.css">'
            '<style>@import "https://fonts.example.org/f.css"; a {background: url(https://x.org/i.png)}</style>'
            '<a href="https://arxiv.org/abs/1905.11233">paper</a><img src="figures/a.png">')
    assert external_urls(page) == ["//cdn.example.org/s.css", "https://cdn.example.org/x.js",
                                   "https://fonts.example.org/f.css", "https://x.org/i.png"]




def test_runs_per_kernel_needs_a_notebook_with_a_runs_parameter(tmp_path):
    light_notebook(tmp_path / "plain.ipynb", "pass")
    path = write_yaml(tmp_path / "s.yaml", "notebooks: [plain.ipynb]\nseeds: 2\nruns_per_kernel: 2\n")
    with pytest.raises(SpecError, match=r"runs_per_kernel=2 needs notebooks that take a 'runs' parameter.*'plain'"):
        load_spec(path)
    assert load_spec(builtin_specs()["tiny"]).runs_per_kernel == 2


# -- the report's numbers (fast) ------------------------------------------------------------------
def test_t_interval_and_paired_difference_follow_the_t_distribution():
    from scipy import stats as st

    x = np.array([0.90, 0.92, 0.97])
    iv = stats.t_interval(x)
    half = st.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert iv.mean == pytest.approx(x.mean()) and iv.half == pytest.approx(half) and iv.n == 3
    one = stats.t_interval([0.5, float("nan")])
    assert one.n == 1 and math.isnan(one.half) and not one.excludes_zero()
    # paired by seed: a constant per-seed difference is certain even when the seeds vary a lot
    a = pd.Series([0.70, 0.90, 0.80], index=[0, 1, 2])
    b = pd.Series([0.68, 0.88, 0.78], index=[2, 1, 0]).sort_index()  # aligned by seed, not by position
    b = pd.Series([0.68, 0.88, 0.78], index=[0, 1, 2])
    d = stats.paired_difference(a, b)
    assert d.mean == pytest.approx(0.02) and d.half == pytest.approx(0.0, abs=1e-12) and d.excludes_zero()
    shuffled = stats.paired_difference(a, pd.Series([0.78, 0.88, 0.68], index=[2, 1, 0]))
    assert shuffled.mean == pytest.approx(0.02)  # same pairs whatever the order
    # unpaired, the same numbers would be inside seed noise
    assert not stats.t_interval(a.to_numpy() - b.to_numpy()[[1, 2, 0]]).excludes_zero()


def _runs_frame(values: dict, metric="final_acc"):
    """A runs table: {variant: [value per seed]} at one setting (loss = the variant's name before '(')."""
    rows = []
    for v, vals in values.items():
        for seed, x in enumerate(vals):
            rows.append({"run_id": f"{v}-{seed}", "notebook": "nb", "method": v.split("(")[0], "variant": v,
                         "loss": v.split("(")[0], "noise_rate": 0.4, "seed": seed,
                         "status": "ok" if x is not None else "failed", metric: x})
    return pd.DataFrame(rows)


def test_bold_only_when_the_paired_interval_excludes_zero():
    # GR ahead of GCE by 2 points on every seed: bold
    clear = _runs_frame({"ce": [0.70, 0.75, 0.72], "gce": [0.90, 0.93, 0.91], "gr": [0.92, 0.95, 0.93]})
    st = stats.cell_stats(clear, "final_acc", ["variant"], []).set_index("variant")
    assert st["bold"].tolist() == [False, False, True]
    assert st.loc["gr", "lead"].mean == pytest.approx(0.02)
    # the same means, but GR is ahead on two seeds and behind on one: a tie within seed noise, not bold
    noisy = _runs_frame({"ce": [0.70, 0.75, 0.72], "gce": [0.90, 0.93, 0.91], "gr": [0.97, 0.98, 0.85]})
    st = stats.cell_stats(noisy, "final_acc", ["variant"], []).set_index("variant")
    assert st.loc["gr", "mean"] > st.loc["gce", "mean"] and not st["bold"].any()
    # an exact tie is never bold
    tie = _runs_frame({"a": [0.9, 0.8, 0.7], "b": [0.9, 0.8, 0.7]})
    assert not stats.cell_stats(tie, "final_acc", ["variant"], [])["bold"].any()
    # lower is better: the lowest memorisation is bold when clearly lowest
    mem = _runs_frame({"ce": [0.9, 0.8, 0.85], "gr": [0.05, 0.06, 0.04]}, metric="noisy_fit")
    st = stats.cell_stats(mem, "noisy_fit", ["variant"], []).set_index("variant")
    assert st["bold"].tolist() == [False, True]
    # one seed: no interval, nothing bold
    single = _runs_frame({"ce": [0.5], "gr": [0.9]})
    assert not stats.cell_stats(single, "final_acc", ["variant"], [])["bold"].any()


def _data(df, histories=None):
    return stats.ReportData(runs=df, histories=histories or {}, keys=["variant"], axes=["noise_rate"],
                            base={"noise": "symmetric"})


def test_summary_paragraph_follows_the_numbers():
    df = _runs_frame({"ce": [0.70, 0.75, 0.72], "gce(q=0.7)": [0.90, 0.93, 0.91], "gr(lam=1, beta=12)": [0.92, 0.95, 0.93]})
    df["mem_delay"] = [40.0, 50.0, 45.0] + [math.inf] * 6
    df["noisy_fit"] = [0.9, 0.8, 0.85, 0.1, 0.1, 0.1, 0.05, 0.06, 0.04]
    df["epochs"] = 150
    text = stats.setting_summary(_data(df), {"noise_rate": 0.4})
    gr = stats.t_interval([0.92, 0.95, 0.93])
    assert text.startswith(f"At 40% symmetric noise, gr(lam=1, beta=12) ends highest ({100 * gr.mean:.1f} ± "
                           f"{100 * gr.half:.1f}%")
    assert "its lead over gce(q=0.7) (91.3%) is 2.0 points (95% interval" in text and "within seed noise" not in text
    assert "GR ends 21.0 points above CE" in text
    assert "CE fits half of the mislabelled examples by epoch 45 on average" in text
    assert "GR does not fit half of the mislabelled examples within 150 epochs (at the end: 5%)" in text
    # swap the numbers: the paragraph follows (CE ahead, GR below, and a lead inside seed noise says so)
    df2 = _runs_frame({"ce": [0.97, 0.99, 0.86], "gr(lam=1, beta=12)": [0.92, 0.95, 0.93]})
    text2 = stats.setting_summary(_data(df2), {"noise_rate": 0.4})
    assert text2.startswith("At 40% symmetric noise, ce ends highest") and "within seed noise" in text2
    assert "GR ends 0.7 points below CE" in text2
    # an exact tie: nobody ends highest
    tie = stats.setting_summary(_data(_runs_frame({"ce": [0.9, 0.8], "gr": [0.8, 0.9]})), {"noise_rate": 0.4})
    assert "ce and gr end level at 85.0%" in tie and "highest" not in tie and "GR ends 0.0 points above CE" in tie
    # augmentation as a grid axis is put in words
    assert stats.describe_point({"augment": True, "noise_rate": 0.2}) == "with augmentation, at 20% symmetric noise"
    assert stats.describe_point({"augment": False, "noise_rate": 0.0}) == "without augmentation, without label noise"


def test_memorisation_delay_and_curve_band():
    h = pd.DataFrame({"epoch": [1, 2, 3, 4], "noisy_fit": [0.1, 0.3, 0.5, 0.9]})
    assert stats.memorisation_delay(h) == 3.0
    assert stats.memorisation_delay(h.assign(noisy_fit=[0.1, 0.2, 0.2, 0.3])) == math.inf
    assert math.isnan(stats.memorisation_delay(h.assign(noisy_fit=np.nan)))
    assert stats.delay_text([math.inf, math.inf], 150) == "not reached in 150 epochs"
    assert stats.delay_text([40.0, math.inf, 50.0]) == "2 of 3 seeds: 45 ± 64"
    hs = [pd.DataFrame({"epoch": [1, 2], "test_acc": [0.5, 0.9]}), pd.DataFrame({"epoch": [1, 2], "test_acc": [0.7, 1.0]})]
    band = stats.curve_band(hs, "test_acc")
    assert band["mean"].tolist() == pytest.approx([0.6, 0.95])
    assert (band["low"] >= 0).all() and (band["high"] <= 1).all() and band["high"].iloc[1] == 1.0  # clipped


@pytest.mark.parametrize("content, reason", [
    ("epoch,test_acc\n1,0.5\n2,0.", None),                   # a truncated last line still parses: 0.
    ("", "is not a readable CSV"),
    ("epoch,test_acc\n1,0.5\n2,abc\n", "holds non-numbers"),
    ("test_acc\n0.5\n", "has no 'epoch' column"),
    ("epoch,test_acc\n2,0.5\n1,0.6\n", "epochs must count up from 1"),
    ("epoch,test_acc\n", "has no epochs"),
])
def test_history_reader_refuses_damaged_files_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "run.history.csv"
    path.write_text(content)
    if reason is None:
        assert len(stats.read_history(path)) == 2
    else:
        with pytest.raises(stats.HistoryError, match=reason):
            stats.read_history(path)


def test_reading_damaged_outputs_marks_the_run_never_raises(tmp_path):
    rec = {"status": "ok", "files": {"metrics": "r.metrics.json", "history": "r.history.csv"}}
    (tmp_path / "r.history.csv").write_text("epoch,test_acc,noisy_fit\n1,0.5,0.1\n")
    for text, reason in (('{"final_acc": 0.9', "not valid JSON"), ("[1, 2]", "holds a list"),
                         ('{"final_acc": 7}', "not an accuracy in \\[0, 1\\]"), ("", "not valid JSON")):
        (tmp_path / "r.metrics.json").write_text(text)
        out = stats.read_outputs(tmp_path, rec)
        assert out.problem and re.search(reason, out.problem), (text, out.problem)
    (tmp_path / "r.metrics.json").write_text('{"final_acc": 0.9, "best_acc": 0.95, "parameters": {"a": 1}}')
    out = stats.read_outputs(tmp_path, rec)
    assert out.problem is None and out.metrics == {"final_acc": 0.9, "best_acc": 0.95} and len(out.history) == 1
    (tmp_path / "r.history.csv").write_bytes(b"\x00\xff garbage")
    assert "r.history.csv" in stats.read_outputs(tmp_path, rec).problem
    assert stats.read_outputs(tmp_path, {"status": "failed", "files": {}}).problem is None


def test_selection_keeps_the_validation_choice_when_test_disagrees():
    def fake(val, test):
        n = 4
        return grlib.RunResult(config={}, y_given=np.zeros(n, int), y_true=np.zeros(n, int),
                               is_noisy=np.zeros(n, bool), num_classes=2, epochs_completed=2,
                               history={"val_acc": np.array([0.5, val]), "test_acc": np.array([0.5, test])})

    # lr 0.1 has the best test accuracy, lr 0.03 the best (noisy) validation accuracy: 0.03 is kept
    candidates = {0.01: fake(0.60, 0.80), 0.03: fake(0.75, 0.70), 0.1: fake(0.70, 0.95)}
    assert choose_by_validation(candidates) == 0.03
    assert choose_by_validation({0.3: fake(0.7, 0.1), 0.1: fake(0.7, 0.9)}) == 0.1  # a tie: the smaller lr
    with pytest.raises(ValueError, match="set val_fraction > 0"):
        choose_by_validation({0.1: fake(float("nan"), 0.9)})


def test_kernel_settings_and_run_overrides():
    settings = {"dataset": "digits", "loss": "gce", "lam": 1.0, "beta": 12.0, "q": 0.5, "epochs": 2, "lr": None,
                "protocol": "none", "n_train": 0, "hidden": [], "seed": 0}
    cfg = run_config(**settings)
    assert cfg.loss_params == {"q": 0.5} and cfg.lr == grlib.RunConfig().lr and cfg.n_train is None
    jobs = expand_runs(settings, {"metrics_path": "", "history_path": ""},
                       [{"seed": 1, "metrics_path": "a.json"}, {"seed": 2, "metrics_path": "b.json"}])
    assert [(s["seed"], o["metrics_path"]) for s, o in jobs] == [(1, "a.json"), (2, "b.json")]
    with pytest.raises(ValueError, match=r"runs\[0\] sets unknown parameter\(s\) \['sede'\]"):
        expand_runs(settings, {}, [{"sede": 1}])
    if "protocol" not in grlib.RunConfig.__dataclass_fields__:
        with pytest.raises(ValueError, match=r"\['protocol'\] are not run settings"):
            run_config(**{**settings, "protocol": "paper"})


def test_notebook_05_figure_names_differ_for_runs_that_differ_in_any_setting():
    from grlib.figures import figure_name
    from grlib.report.kernel import config_digest

    base = {"dataset": "digits", "loss": "gr", "lam": 1.0, "beta": 12.0, "noise_rate": 0.4, "seed": 0}
    variants = [{}, {"epochs": 50}, {"lr": 0.01}, {"noise": "pair"}, {"batch_size": 128}, {"protocol": "paper"},
                {"augment": True}, {"protocol": "paper", "augment": False}, {"aug_shift": 2, "augment": True}]
    names = set()
    for v in variants:
        cfg = run_config(**{**base, **v})
        names.add(figure_name("05_training_run", dataset=cfg.dataset, noise=cfg.noise, noise_rate=cfg.noise_rate,
                              method=cfg.label, seed=cfg.seed, settings=config_digest(cfg)))
    assert len(names) == len(variants)
    assert config_digest(run_config(**base)) == config_digest(run_config(**base))  # stable


def test_scrubber_removes_places_and_host():
    import grlib as g

    root = str(Path(g.__file__).resolve().parents[1])
    text = (f'File "{sys.prefix}/lib/python3.11/site-packages/torch/nn/x.py", line 3\n'
            f"{root}/grlib/train.py warned; data in {tempfile.gettempdir()}/abc; host myhost.example ok")
    out = Scrubber({"/srv/report/runs": "."}, host="myhost.example")(text + " /srv/report/runs/a.csv")
    assert "<python>/lib/python3.11/site-packages/torch" in out and "<grlib>/grlib/train.py" in out
    assert "<host>" in out and "myhost.example" not in out and "./a.csv" in out
    assert absolute_paths_in(out) == []


def test_figures_come_from_the_histories_and_are_redrawn_only_when_their_numbers_change(tmp_path):
    from grlib.report.plots import make_figures

    rows, histories = [], {}
    for v, loss in (("ce", "ce"), ("gr(lam=1, beta=12)", "gr")):
        for rate in (0.0, 0.2, 0.4):
            for seed in (0, 1):
                rid = f"{loss}-{rate}-{seed}"
                fit = np.linspace(0, rate * (2.0 if loss == "ce" else 0.5), 5)
                histories[rid] = pd.DataFrame({"epoch": np.arange(1, 6), "test_acc": np.linspace(0.5, 0.9, 5),
                                               "noisy_fit": fit if rate else np.nan})
                rows.append({"run_id": rid, "notebook": "nb", "method": loss, "variant": v, "loss": loss,
                             "noise_rate": rate, "seed": seed, "status": "ok", "final_acc": 0.9 - rate / 2,
                             "best_acc": 0.92 - rate / 3, "noisy_fit": fit[-1] if rate else np.nan})
    data = stats.ReportData(pd.DataFrame(rows), histories, ["variant"], ["noise_rate"], {})
    figs = make_figures(data, tmp_path / "figures")
    names = sorted(f["name"] for f in figs)
    assert names == ["accuracy_vs_noise_rate", "curves__noise_rate-0", "curves__noise_rate-0.2",
                     "curves__noise_rate-0.4", "memorisation_vs_noise_rate"]
    files = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert len(files) == 2 * len(names) + 1  # PNG + PDF each, and the digests
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "figures").glob("*.png")}
    make_figures(data, tmp_path / "figures")  # same numbers: nothing redrawn
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "figures").glob("*.png")} == mtimes
    histories["ce-0.4-0"] = histories["ce-0.4-0"].assign(test_acc=0.1)  # one curve changed: only its figure
    make_figures(data, tmp_path / "figures")
    changed = {p.name for p in mtimes if p.stat().st_mtime_ns != mtimes[p]}
    assert changed == {"curves__noise_rate-0.4.png"}
    # fewer settings: the figures no longer shown are removed
    make_figures(stats.ReportData(data.runs[data.runs.noise_rate > 0], histories, ["variant"], ["noise_rate"], {}),
                 tmp_path / "figures")
    assert not (tmp_path / "figures" / "curves__noise_rate-0.png").exists()
    assert not (tmp_path / "figures" / "accuracy_vs_noise_rate.png").exists()  # two rates: no axis figure


# -- the runner's refusals (fast: nothing runs) -------------------------------------------------------
@pytest.mark.parametrize("address", ["garbage", "tcp://host", "tcp://:8786", "host:99999", "http://h:1", ""])
def test_bad_scheduler_address_is_refused_with_the_form(address):
    with pytest.raises(SchedulerError, match=r"tcp://HOST:PORT"):
        check_scheduler_address(address)
    assert check_scheduler_address("127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert check_scheduler_address("tls://[::1]:8786") == "tls://[::1]:8786"


def _cli(args, **kw):
    """``grlib report ARGS`` in a subprocess: (returncode, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "grlib.report.cli", *args], capture_output=True, text=True,
                       timeout=kw.pop("timeout", 300), **kw)
    return p.returncode, p.stdout, p.stderr


def _one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines and lines[-1].startswith("grlib report: error:"), stderr
    return lines[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_garbage_and_closed_port_exit_2_before_any_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert report_main(["tiny", "--out", str(out), "--scheduler", "garbage"]) == 2
    assert "tcp://HOST:PORT" in _one_line_error(capsys.readouterr().err)
    port = _free_port()  # nothing listens there
    code, _, err = _cli(["tiny", "--out", str(out), "--scheduler", f"tcp://127.0.0.1:{port}", "--quiet"])
    line = _one_line_error(err)
    assert code == 2 and "connection refused" in line and str(port) in line
    assert not out.exists(), "a refused scheduler must not create the report folder"


def test_scheduler_port_that_accepts_but_never_answers_times_out_clearly(tmp_path):
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(SchedulerError, match="did not answer as a Dask scheduler within 1 s"):
            run_report("tiny", scheduler=address, out=tmp_path / "out", progress=False, connect_timeout=1)
        code, _, err = _cli(["tiny", "--out", str(tmp_path / "out"), "--scheduler", address, "--connect-timeout", "2",
                             "--quiet"], timeout=120)
        assert code == 2 and "did not answer as a Dask scheduler" in _one_line_error(err)
    assert not (tmp_path / "out").exists()


def test_sigterm_during_the_scheduler_connection_exits_promptly(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        proc = subprocess.Popen([sys.executable, "-m", "grlib.report.cli", "tiny", "--out", str(tmp_path / "out"),
                                 "--scheduler", address, "--connect-timeout", "600", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()  # printed just before connecting
            assert "connecting to the Dask scheduler" in line, line
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)  # far below the 600 s connection timeout
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_report_folder_refusals_overwrite_nothing(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert report_main(["tiny", "--out", str(afile), "--quiet"]) == 2  # F10: --out is a file
    assert "is a file, not a folder" in _one_line_error(capsys.readouterr().err) and afile.read_text() == "keep me"
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny").write_text("not a folder")  # F11: a file where the report folder should be
    assert report_main(["tiny", "--out", str(out), "--quiet"]) == 2
    assert "is a file where the report folder should be" in _one_line_error(capsys.readouterr().err)
    assert (out / "tiny").read_text() == "not a folder"
    with pytest.raises(ReportFolderError, match="is a file, not a folder"):
        run_report("tiny", out=afile / "deeper", progress=False)


# -- real sweeps (slow) -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_execute_notebook_from_threads_keeps_each_kernel_in_its_cwd(tmp_path, scratch):
    """Two notebooks at once from threads: each kernel runs in its own cwd, the process's cwd is untouched."""
    nb = new_notebook(cells=[new_code_cell('out = ""  # file', metadata={"tags": ["parameters"]}),
                             new_code_cell("import os, time\ntime.sleep(1.5)\nopen(out, 'w').write(os.getcwd())")],
                      metadata={"kernelspec": KERNELSPEC})
    nbformat.write(nb, str(tmp_path / "cwd.ipynb"))
    cwd0 = os.getcwd()
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    threads = [threading.Thread(target=execute_notebook, args=(tmp_path / "cwd.ipynb", d / "out.ipynb",
                                                               {"out": "where.txt"}), kwargs={"cwd": d})
               for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(d / "where.txt").read_text() for d in dirs] == [str(d) for d in dirs]
    assert os.getcwd() == cwd0


def _text_files(folder: Path):
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".html", ".ipynb", ".json", ".csv", ".yaml", ".txt") or p.name == ".lock":
            yield p


def assert_portable(report: Path, *extra: str):
    """No file of the report folder names an absolute path of this machine or its host name."""
    import grlib as g

    places = {str(Path(g.__file__).resolve().parents[1]), sys.prefix, str(Path.home()), *extra}
    host = socket.gethostname()
    for p in sorted(report.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        for place in places:
            assert place.encode() not in data, f"{p.relative_to(report)} names {place}"
        if p in set(_text_files(report)):
            text = data.decode("utf-8", errors="replace")
            assert absolute_paths_in(text) == [], f"{p.relative_to(report)}: {absolute_paths_in(text)[:3]}"
            assert not re.search(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", text), f"{p.name} names the host"


@pytest.mark.slow
def test_tiny_spec_end_to_end_then_cached_then_a_damaged_run_reruns(tmp_path, scratch):
    out = tmp_path / "reports"
    summary = run_report(TINY, workers=2, out=out, progress=False)
    report = out / "tiny"
    spec = load_spec(TINY)
    ids = [r.run_id for r in spec.runs()]
    assert summary.ok and summary.exit_code == 0, summary.format()
    assert (summary.n_runs, summary.n_executed, summary.n_cached) == (len(ids), len(ids), 0)
    assert summary.kernels == len(ids) // 2  # runs_per_kernel: 2

    for run in spec.runs():
        base = report / "runs" / run.run_id
        m = read_manifest(report / "runs", run.run_id)
        assert m["kernel"]["runs"] == 2 and verify_manifest(report / "runs", m) is None
        assert set(m["checksums"]) >= {m["files"][k] for k in ("notebook", "html", "metrics", "history")}
        assert "host" not in m
        nb = nbformat.read(str(report / "runs" / m["files"]["notebook"]), as_version=4)
        pm = nb.metadata.papermill
        assert pm.input_path == "05_training_run.ipynb" and pm.output_path == m["files"]["notebook"]
        own = [r for r in pm.parameters["runs"] if r["metrics_path"] == f"{run.run_id}.metrics.json"]
        assert own == [{"seed": run.seed, "metrics_path": f"{run.run_id}.metrics.json",
                        "history_path": f"{run.run_id}.history.csv", "figures_dir": f"{run.run_id}.figures"}]
        assert not pm.exception
        metrics = json.loads(Path(str(base) + ".metrics.json").read_text())
        assert 0 <= metrics["final_acc"] <= metrics["best_acc"] <= 1 and metrics["parameters"]["seed"] == run.seed
        assert metrics["method"] == run.label and metrics["train_seconds"] > 0
        history = pd.read_csv(str(base) + ".history.csv")
        assert list(history["epoch"]) == [1, 2, 3]
        assert history["test_acc"].iloc[-1] == pytest.approx(metrics["final_acc"])
        assert history["test_acc"].max() == pytest.approx(metrics["best_acc"])
        if run.parameters["noise_rate"] > 0:
            assert history["noisy_fit"].iloc[-1] == pytest.approx(metrics["noisy_fit"])
        assert not Path(str(base) + ".figures").exists()  # figures: false in the spec
        page = (report / "runs" / m["files"]["html"]).read_text()
        assert "Train" in page and external_urls(page) == []
    assert not list((report / "runs" / ".tmp").glob("*")), "temporary run folders left behind"

    # the page: findings with a paragraph per setting, curves drawn from the histories, sortable tables, offline
    index = (report / "index.html").read_text()
    assert external_urls(index) == []
    for section in ("Findings", "At 40% symmetric noise", "Without label noise", "Across settings",
                    "Final test accuracy (%, after the last epoch)", "Runs", "Spec", "95% Student-t interval"):
        assert section in index, section
    for rid in ids:
        assert f'href="runs/{rid}.history.csv"' in index and f'href="runs/{rid}.metrics.json"' in index
    for fig in ("curves__noise_rate-0.4", "curves__noise_rate-0"):
        assert f'src="figures/{fig}.png"' in index and (report / "figures" / f"{fig}.pdf").is_file()
    assert "accuracy_vs_noise_rate" not in index  # two noise rates: the tables say it all
    assert index.count('<table class="sortable') >= 5 and "<script>" in index
    table = pd.read_csv(report / "runs.csv")
    assert len(table) == len(ids) and set(table["status"]) == {"ok"} and table["train_seconds"].gt(0).all()
    ce = table[(table["variant"] == "ce") & (table["noise_rate"] == 0.4)]["final_acc"]
    iv = stats.t_interval(ce)
    assert f"{100 * iv.mean:.1f} ± {100 * iv.half:.1f}" in index  # the tables show mean ± 95% t-interval
    assert_portable(report, str(tmp_path), str(scratch))

    # second invocation: everything cached (checksums verified), nothing executed again
    before = {rid: m["finished"] for rid, m in manifests(report).items()}
    mtimes = {p: p.stat().st_mtime_ns for p in (report / "runs").glob("*.ipynb")}
    again = run_report(TINY, workers=2, out=out, progress=False)
    assert (again.n_executed, again.n_cached, again.n_failed) == (0, len(ids), 0), (
        "grlib's source changed between the two invocations?", {m["grlib"] for m in manifests(report).values()})
    assert {rid: m["finished"] for rid, m in manifests(report).items()} == before
    assert {p: p.stat().st_mtime_ns for p in (report / "runs").glob("*.ipynb")} == mtimes

    # F03: a finished run's metrics truncated -> not trusted: that run (only) is executed again, whole
    victim = ids[2]
    metrics_file = report / "runs" / f"{victim}.metrics.json"
    metrics_file.write_text(metrics_file.read_text()[:40])
    # the page built from the damaged folder (no rerun) marks the run damaged instead of crashing
    records = [{**read_manifest(report / "runs", r.run_id), "cached": True} for r in spec.runs()]
    build_report(spec, report, spec.runs(), records, context={"workers": 1, "elapsed_s": 0.0})
    damaged = pd.read_csv(report / "runs.csv").set_index("run_id").loc[victim]
    assert damaged["status"] == "damaged" and "not valid JSON" in damaged["error"]
    assert "1 run(s) failed or are damaged" in (report / "index.html").read_text()
    fixed = run_report(TINY, workers=2, out=out, progress=False)
    assert (fixed.n_executed, fixed.n_cached, fixed.n_failed) == (1, len(ids) - 1, 0)
    assert [r["run_id"] for r in fixed.records if not r["cached"]] == [victim]
    assert json.loads(metrics_file.read_text())["final_acc"] > 0
    assert set(pd.read_csv(report / "runs.csv")["status"]) == {"ok"}
    # a damaged history is caught the same way
    hist = report / "runs" / f"{ids[5]}.history.csv"
    hist.write_text(hist.read_text().replace("\n2,", "\nx,"))
    again = run_report(TINY, out=out, progress=False)
    assert [r["run_id"] for r in again.records if not r["cached"]] == [ids[5]] and again.ok


@pytest.mark.slow
def test_notebook_05_chooses_the_learning_rate_on_noisy_validation(tmp_path, scratch):
    params = {"epochs": 2, "loss": "ce", "lrs": [0.001, 0.1], "val_fraction": 0.3, "figures": False,
              "metrics_path": "m.json", "history_path": "h.csv", "figures_dir": "figs"}
    execute_notebook(NB05, tmp_path / "out.ipynb", params, cwd=tmp_path)
    m = json.loads((tmp_path / "m.json").read_text())
    sel = m["lr_selection"]
    assert [s["lr"] for s in sel] == [0.001, 0.1]
    best = max(sel, key=lambda s: (s["val_acc"], -s["lr"]))
    assert m["lr"] == best["lr"] and [s["chosen"] for s in sel] == [s is best for s in sel]
    assert m["val_acc"] == pytest.approx(best["val_acc"]) and "test_acc" not in json.dumps(sel)
    assert m["config"]["lr"] == best["lr"] and m["train_seconds"] > 0
    h = pd.read_csv(tmp_path / "h.csv")
    assert h["lr"].eq(best["lr"]).all() and h["val_acc"].notna().all()
    with pytest.raises(Exception, match="needs a noisy validation split"):
        execute_notebook(NB05, tmp_path / "out2.ipynb", {**params, "val_fraction": 0.0}, cwd=tmp_path)


@pytest.mark.slow
def test_a_diverging_candidate_learning_rate_cannot_be_chosen():
    from grlib.report.kernel import train_run

    run = train_run(run_config(dataset="digits", epochs=2, loss="ce", val_fraction=0.2), lrs=[0.05, 1e6])
    assert run.config.lr == 0.05 and run.result.epochs_completed == 2
    assert [s["lr"] for s in run.selection] == [0.05, 1e6] and "non-finite" in run.selection[1]["stopped"]
    with pytest.raises(FloatingPointError, match="every candidate learning rate"):
        train_run(run_config(dataset="digits", epochs=2, loss="ce", val_fraction=0.2), lrs=[1e6])


@pytest.mark.slow
def test_failing_notebook_is_isolated_and_reported(tmp_path, scratch, capsys):
    light_notebook(tmp_path / "flaky.ipynb", """\
        if seed == 1:
            raise RuntimeError(f"deliberate failure for seed {seed}")""")
    spec = write_yaml(tmp_path / "flaky.yaml", """\
        name: flaky
        notebooks: [flaky.ipynb]
        grid: {noise_rate: [0.2, 0.4]}
        seeds: [0, 1, 2]
        """)
    out = tmp_path / "reports"
    code = report_main([str(spec), "--workers", "2", "--out", str(out), "--quiet"])
    assert code == 1
    stdout = capsys.readouterr().out
    failed_ids = [f"flaky__noise_rate-{r}__seed-1" for r in ("0.2", "0.4")]
    assert "6 runs: 6 executed, 0 cached, 2 failed" in stdout
    for rid in failed_ids:
        assert f"FAILED {rid}: RuntimeError: deliberate failure for seed 1" in stdout

    report = out / "flaky"
    ms = manifests(report)
    assert len(ms) == 6
    for rid, m in ms.items():
        assert m["status"] == ("failed" if rid in failed_ids else "ok"), rid
    for rid in failed_ids:
        # the executed notebook is kept with the traceback, rendered too; no metrics for a failed run
        nb = nbformat.read(str(report / "runs" / f"{rid}.ipynb"), as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert errors and errors[0]["evalue"] == "deliberate failure for seed 1"
        assert "deliberate failure" in (report / "runs" / f"{rid}.html").read_text()
        assert not (report / "runs" / f"{rid}.metrics.json").exists()
    index = (report / "index.html").read_text()
    assert index.count('<tr id="run-') == 6
    assert len(re.findall(r'<tr id="run-\d+" class="failed">', index)) == 2  # the runs table's failed rows
    assert "(1 of 3 failed)" in index                      # in the summary tables, per noise rate
    assert "2 run(s) failed or are damaged" in index
    assert_portable(report, str(tmp_path))                  # tracebacks too
    table = pd.read_csv(report / "runs.csv")
    assert list(table.sort_values("run_id")["status"]) == ["ok", "failed", "ok", "ok", "failed", "ok"]

    # next invocation: the failed runs are tried again, the others are cached
    again = run_report(spec, out=out, progress=False)
    assert (again.n_cached, again.n_executed, again.n_failed) == (4, 2, 2)
    # fixing the notebook changes its content: every run executes again and succeeds
    light_notebook(tmp_path / "flaky.ipynb", "pass")
    fixed = run_report(spec, workers=2, out=out, progress=False)
    assert (fixed.n_executed, fixed.n_failed) == (6, 0) and fixed.exit_code == 0
    assert "failed" not in pd.read_csv(report / "runs.csv")["status"].tolist()
    assert run_report(spec, out=out, progress=False).n_cached == 6
    forced = run_report(spec, workers=2, out=out, force=True, progress=False)   # --force reruns everything
    assert (forced.n_executed, forced.n_cached, forced.n_failed) == (6, 0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_sweep_resumes_with_only_the_missing_runs(sig, tmp_path, scratch):
    light_notebook(tmp_path / "slow.ipynb", """\
        import pathlib, time
        pathlib.Path(f"started-{seed}").write_text("x")   # in the run's working folder, runs/.tmp/<run>/
        time.sleep(2)""")
    spec = write_yaml(tmp_path / "slow.yaml", """\
        name: slow
        notebooks: [slow.ipynb]
        seeds: 4
        """)
    out = tmp_path / "reports"
    runs_dir = out / "slow" / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "grlib.report.cli", str(spec), "--workers", "1", "--out",
                             str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        # kill on a condition: a run has finished and the next one has started its notebook
        while not (list(runs_dir.glob("*.manifest.json")) and list(runs_dir.glob(".tmp/*/started-*"))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # stop starting runs, let the running one finish, say how to resume
        assert proc.returncode == 130 and "interrupted" in err
    done = {rid for rid, m in manifests(out / "slow").items() if m["status"] == "ok"}
    assert 1 <= len(done) < 4, done
    if sig == signal.SIGKILL:  # a run was under way: its files are in runs/.tmp and it has no manifest
        assert list((runs_dir / ".tmp").iterdir())
    assert not (out / "slow" / "index.html").exists()

    summary = run_report(spec, out=out, progress=False)
    assert summary.ok
    assert (summary.n_cached, summary.n_executed) == (len(done), 4 - len(done))
    assert {r["run_id"] for r in summary.records if r["cached"]} == done
    assert len(manifests(out / "slow")) == 4 and not list((runs_dir / ".tmp").glob("*"))
    index = (out / "slow" / "index.html").read_text()
    assert index.count('<tr id="run-') == 4
    assert set(pd.read_csv(out / "slow" / "runs.csv")["status"]) == {"ok"}


@pytest.mark.slow
def test_a_spec_on_a_dask_cluster(tmp_path, scratch):
    from distributed import LocalCluster

    light_notebook(tmp_path / "light.ipynb", "pass")
    spec = write_yaml(tmp_path / "light.yaml", """\
        name: light
        notebooks: [light.ipynb]
        grid: {noise_rate: [0.2, 0.4]}
        seeds: 2
        """)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      local_directory=str(scratch / "tmp")) as cluster:
        summary = run_report(spec, scheduler=cluster.scheduler_address, out=tmp_path / "reports", progress=False)
        # a Dask worker's address is not a scheduler's: refused clearly
        worker = next(iter(cluster.scheduler_info["workers"]))
        with pytest.raises(SchedulerError, match="not a Dask scheduler"):
            run_report(spec, scheduler=worker, out=tmp_path / "other", progress=False, connect_timeout=5)
    assert summary.ok, summary.format()
    assert summary.n_executed == summary.n_runs == 4
    report = tmp_path / "reports" / "light"
    ms = manifests(report)
    assert len(ms) == summary.n_runs and {m["status"] for m in ms.values()} == {"ok"}
    assert os.getpid() not in {m["pid"] for m in ms.values()}  # executed in the Dask worker processes
    index = (report / "index.html").read_text()
    assert index.count('<tr id="run-') == summary.n_runs and external_urls(index) == []
    assert "a Dask cluster" in index and cluster.scheduler_address not in index


@pytest.mark.slow
def test_read_only_report_folder_is_one_clear_line(tmp_path, scratch):
    """F12: all runs cached, the report folder read-only: exit 2 with one line, nothing changed.

    Read-only means mode 0555/0444 for a normal user; root writes through modes, so as root the
    folder is made immutable (chattr +i) instead.
    """
    light_notebook(tmp_path / "light.ipynb", "pass")
    spec = write_yaml(tmp_path / "light.yaml", "name: light\nnotebooks: [light.ipynb]\nseeds: 2\n")
    out = tmp_path / "out"
    assert run_report(spec, out=out, progress=False).ok
    paths = [out / "light", *(out / "light").rglob("*")]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in paths}
    as_root = os.geteuid() == 0
    if as_root:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "-R", "+i", str(out / "light")]).returncode:
            pytest.skip("running as root on a file system without immutable files (chattr)")
    else:
        for p in paths:
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
    try:
        code, _, err = _cli([str(spec), "--out", str(out), "--quiet"])
        line = _one_line_error(err)
        assert code == 2 and re.search(r"is not writable|cannot write the report folder", line), line
    finally:
        if as_root:
            subprocess.run(["chattr", "-R", "-i", str(out / "light")], check=True)
        else:
            for p in paths:
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in paths} == before


def test_notebook_05_reports_each_kind_of_damage(tmp_path):
    """Issue 14: outliers and corrupted inputs are grid axes of a report; notebook 05 reports each kind."""
    from grlib.notebook import execute_notebook, notebooks_dir

    params = {"epochs": 2, "n_train": 400, "noise_rate": 0.2, "outlier_fraction": 0.1, "outlier_source": "noise",
              "corruption_fraction": 0.1, "figures": False, "metrics_path": str(tmp_path / "m.json"),
              "figures_dir": str(tmp_path / "fig")}
    execute_notebook(notebooks_dir() / "05_training_run.ipynb", tmp_path / "out.ipynb", params, cwd=tmp_path)
    m = grlib.read_metrics(tmp_path / "m.json")
    for kind, share in (("mislabelled", None), ("outlier", 0.1), ("corrupted", 0.1)):
        for key in ("fitted", "auc_p", "auc_confidence", "weight_ratio", "weight_share"):
            assert 0.0 <= m[f"{kind}_{key}"] <= (1.0 if key != "weight_ratio" else 1e9), (kind, key)
        if share is not None:
            assert m[f"{kind}_data_share"] == pytest.approx(share)
    assert m["config"]["outlier_fraction"] == 0.1 and m["config"]["corruption_kind"] == "mixed"
