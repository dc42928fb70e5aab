"""Batch reports (grlib.report): spec validation, run ids and cache keys, and real sweeps.

The slow tests execute notebooks through papermill: the tiny spec with the real
05 notebook (end to end, then cached), a small failing notebook, a runner killed
mid-sweep by a signal and resumed, and the same tiny spec on a Dask LocalCluster.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grlib.notebook import execute_notebook, notebooks_dir
from grlib.report import SpecError, builtin_specs, load_spec, run_report
from grlib.report.cli import main as report_main
from grlib.report.html import external_urls
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


def test_external_url_check_catches_cdn_assets():
    page = ('<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" href="//cdn.example.org/s.css">'
            '<style>@import "https://fonts.example.org/f.css"; a {background: url(https://x.org/i.png)}</style>'
            '<a href="https://arxiv.org/abs/1905.11233">paper</a><img src="figures/a.png">')
    assert external_urls(page) == ["//cdn.example.org/s.css", "https://cdn.example.org/x.js",
                                   "https://fonts.example.org/f.css", "https://x.org/i.png"]


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


@pytest.mark.slow
def test_tiny_spec_end_to_end_then_cached(tmp_path, scratch):
    out = tmp_path / "reports"
    summary = run_report(TINY, workers=2, out=out, progress=False)
    report = out / "tiny"
    spec = load_spec(TINY)
    ids = [r.run_id for r in spec.runs()]
    assert summary.ok and summary.exit_code == 0, summary.format()
    assert (summary.n_runs, summary.n_executed, summary.n_cached) == (len(ids), len(ids), 0)

    for run in spec.runs():
        base = report / "runs" / run.run_id
        nb = nbformat.read(str(base) + ".ipynb", as_version=4)
        # the executed notebook records its parameters; files are named relative to runs/
        assert nb.metadata.papermill.parameters == {**run.parameters, "metrics_path": f"{run.run_id}.metrics.json",
                                                    "figures_dir": f"{run.run_id}.figures"}
        assert not nb.metadata.papermill.exception
        m = json.loads(Path(str(base) + ".metrics.json").read_text())
        assert 0 <= m["final_acc"] <= m["best_acc"] <= 1 and m["parameters"]["seed"] == run.seed
        assert m["method"] == run.label
        figs = sorted(p.suffix for p in Path(str(base) + ".figures").iterdir())
        assert figs.count(".png") == 2 and figs.count(".pdf") == 2
        page = Path(str(base) + ".html").read_text()
        assert "Key numbers for the batch report" in page and external_urls(page) == []
    assert not list((report / "runs" / ".tmp").glob("*")), "temporary run folders left behind"

    # the report: every run, both accuracies, the figures, links, offline
    index = (report / "index.html").read_text()
    assert external_urls(index) == []
    for section in ("Final test accuracy (after the last epoch)", "Best test accuracy (highest over the epochs)",
                    "Best settings per grid point", "Figures", "Runs", "Spec"):
        assert section in index
    for rid in ids:
        assert f'href="runs/{rid}.html"' in index and f'href="runs/{rid}.ipynb"' in index
    for fig in ("accuracy_vs_noise_rate", "memorisation_vs_noise_rate"):
        assert f'src="figures/{fig}.png"' in index and (report / "figures" / f"{fig}.pdf").is_file()
    table = pd.read_csv(report / "runs.csv")
    assert len(table) == len(ids) and set(table["status"]) == {"ok"}
    # the summary tables are the mean and std over the two seeds
    ce = table[(table["variant"] == "ce") & (table["noise_rate"] == 0.4)]["final_acc"]
    assert f"{ce.mean():.3f} ± {ce.std():.3f}" in index
    assert "gr(lam=1, beta=12)" in index and "tiny" in (report / "spec.yaml").read_text()

    # second invocation: everything cached, nothing executed again
    before = {rid: m["finished"] for rid, m in manifests(report).items()}
    mtimes = {p: p.stat().st_mtime_ns for p in (report / "runs").glob("*.ipynb")}
    again = run_report(TINY, workers=2, out=out, progress=False)
    assert (again.n_executed, again.n_cached, again.n_failed) == (0, len(ids), 0)
    assert {rid: m["finished"] for rid, m in manifests(report).items()} == before
    assert {p: p.stat().st_mtime_ns for p in (report / "runs").glob("*.ipynb")} == mtimes
    assert (report / "index.html").is_file()


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
    assert "2 run(s) failed" in index
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
    light_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(2)")
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
        deadline = time.monotonic() + 120
        while not list(runs_dir.glob("*.manifest.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.1)
        time.sleep(0.8)  # the next run is under way
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
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
def test_tiny_spec_on_a_dask_cluster(tmp_path, scratch):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      local_directory=str(scratch / "tmp")) as cluster:
        summary = run_report(TINY, scheduler=cluster.scheduler_address, out=tmp_path / "reports", progress=False)
    assert summary.ok, summary.format()
    assert summary.n_executed == summary.n_runs == len(load_spec(TINY).runs())
    report = tmp_path / "reports" / "tiny"
    ms = manifests(report)
    assert len(ms) == summary.n_runs and {m["status"] for m in ms.values()} == {"ok"}
    assert os.getpid() not in {m["pid"] for m in ms.values()}  # executed in the Dask worker processes
    index = (report / "index.html").read_text()
    assert index.count('<tr id="run-') == summary.n_runs and external_urls(index) == []
