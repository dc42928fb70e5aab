"""The Fashion-MNIST benchmark driver on its tiny spec (the CI version of issue 6's benchmark)."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grlib

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (grlib.data_dir() / "fashion_mnist.npz").is_file(),
                       reason="Fashion-MNIST cache not built (make data)"),
]


def _driver():
    spec = importlib.util.spec_from_file_location("fashion_benchmark", ROOT / "benchmarks" / "fashion_benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_benchmark_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    drv = _driver()
    out = tmp_path / "reports"
    csv, doc = tmp_path / "results.csv", tmp_path / "docs" / "benchmarks.md"
    code = drv.main(["--spec", str(ROOT / "benchmarks" / "fashion_mnist_tiny.yaml"), "--seeds", "0", "1",
                     "--out", str(out), "--results", str(csv), "--docs", str(doc), "--folds", "2",
                     "--cv-epochs", "2", "--quiet"])
    assert code == 0
    df = pd.read_csv(csv)
    assert list(df.columns) == drv.CSV_COLUMNS
    # 3 methods x 2 noise settings x 2 seeds, each method at one selected setting per noise setting
    assert len(df) == 12 and set(df.seed) == {0, 1}
    assert df[["noise", "noise_rate", "method", "lr", "beta"]].drop_duplicates().shape[0] == 6
    assert ((df.final_acc > 0) & (df.final_acc <= df.best_acc + 1e-9) & (df.best_acc <= 1)).all()

    # selection used the noisy validation accuracy of stage 1 only: recompute it from the stage-1 runs
    import json

    runs = out / "fashion-mnist-tiny-select" / "runs"
    rows = [json.loads(p.read_text()) for p in runs.glob("*.metrics.json")]
    assert len(rows) == 10
    s1 = pd.DataFrame([{**r["parameters"], "val_acc": r["val_acc"]} for r in rows])
    s1["method"] = [drv.method_key(loss, lam) for loss, lam in zip(s1["loss"], s1["lam"])]
    for (noise, rate, method), g in s1.groupby(["noise", "noise_rate", "method"]):
        best = g.sort_values(["val_acc", "lr"], ascending=[False, True]).iloc[0]
        kept = df[(df.noise == noise) & np.isclose(df.noise_rate, rate) & (df.method == method) & (df.seed == 0)]
        assert len(kept) == 1 and kept.lr.iloc[0] == best.lr
        if method.startswith("gr"):
            assert kept.beta.iloc[0] == best.beta

    text = doc.read_text()
    for section in ("## Final test accuracy (%)", "## Best test accuracy during training (%)",
                    "## Mislabelled training examples fitted at the end (%)", "## Which lam is best",
                    "## Clean-vs-mislabelled detection", "## Goals", "cleanlab self_confidence, 2-fold"):
        assert section in text, section
    for fig in ("fashion-mnist-tiny_accuracy.png", "fashion-mnist-tiny_best_lam.png"):
        assert (doc.parent / "figures" / fig).is_file()

    # a second invocation is served from the batch runner's cache: no run is executed again
    before = {p.name: json.loads(p.read_text())["finished"] for p in runs.glob("*.manifest.json")}
    code = drv.main(["--spec", str(ROOT / "benchmarks" / "fashion_mnist_tiny.yaml"), "--seeds", "0", "1",
                     "--out", str(out), "--results", str(csv), "--docs", str(doc), "--no-detection", "--quiet"])
    assert code == 0
    after = {p.name: json.loads(p.read_text())["finished"] for p in runs.glob("*.manifest.json")}
    assert len(before) == 10 and after == before

    # --no-run rebuilds the CSV and the page from the finished runs and the saved detection table
    first_csv = csv.read_text()
    doc.unlink()
    code = drv.main(["--spec", str(ROOT / "benchmarks" / "fashion_mnist_tiny.yaml"), "--seeds", "0", "1",
                     "--out", str(out), "--results", str(csv), "--docs", str(doc), "--no-run", "--quiet"])
    assert code == 0 and csv.read_text() == first_csv
    assert "## Clean-vs-mislabelled detection" in doc.read_text()
    assert (csv.parent / "results_detection.csv").is_file()


def test_tiny_paper_protocol_benchmark_chooses_on_validation_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    drv = _driver()
    spec = ROOT / "benchmarks" / "fashion_mnist_paper_tiny.yaml"
    out = tmp_path / "reports"
    csv, doc = tmp_path / "paper.csv", tmp_path / "docs" / "paper.md"
    args = ["--spec", str(spec), "--out", str(out), "--results", str(csv), "--docs", str(doc), "--quiet"]
    assert drv.main(args + ["--workers", "2"]) == 0
    df = pd.read_csv(csv)
    assert list(df.columns) == drv.PAPER_CSV_COLUMNS
    # ce and gr(lam=1) (one beta kept) x 2 seeds; every run chose its own learning rate
    assert sorted(df.method.unique()) == ["ce", "gr(lam=1)"] and len(df) == 4
    assert set(df.protocol) == {"paper"} and set(df.lr_candidates) == {"0.03 0.1"}
    assert ((df.final_acc > 0) & (df.final_acc <= df.best_acc + 1e-9) & (df.train_seconds > 0)).all()

    import json

    runs = out / "fashion-mnist-paper-tiny" / "runs"
    metrics = {p.name[: -len(".metrics.json")]: json.loads(p.read_text()) for p in runs.glob("*.metrics.json")}
    assert len(metrics) == 6
    for m in metrics.values():  # the learning rate kept is the validation choice, never a test-set one
        sel = m["lr_selection"]
        best = max(sel, key=lambda s: (s["val_acc"], -s["lr"]))
        assert m["lr"] == best["lr"] and {s["lr"] for s in sel} == {0.03, 0.1}
    # GR's beta: the one with the best mean noisy-validation accuracy over the seeds
    gr = pd.DataFrame([{**m["parameters"], "val_acc": m["val_acc"]} for m in metrics.values()
                       if m["parameters"]["loss"] == "gr"])
    means = gr.groupby("beta")["val_acc"].mean()
    best_beta = means[means == means.max()].index.min()
    assert set(df[df.method == "gr(lam=1)"].beta) == {best_beta}

    text = doc.read_text()
    for part in ("## Setup", "Protocol `paper`", "At 40% symmetric noise", "best − final (points)",
                 "Learning rate chosen on the noisy validation split, per seed", "GR's beta chosen",
                 "ends highest", "The test split is never used to choose"):
        assert part in text, part
    figure = doc.parent / "figures" / "fashion-mnist-paper-tiny_curves__noise_rate-0.4.png"
    assert figure.is_file() and f"(figures/{figure.name})" in text

    # resumable: a second invocation executes nothing; --no-run rebuilds the same CSV from the finished runs
    before = {p.name: json.loads(p.read_text())["finished"] for p in runs.glob("*.manifest.json")}
    first = csv.read_text()
    assert drv.main(args) == 0
    assert {p.name: json.loads(p.read_text())["finished"] for p in runs.glob("*.manifest.json")} == before
    doc.unlink()
    assert drv.main(args + ["--no-run"]) == 0 and csv.read_text() == first and doc.is_file()


def test_only_some_settings_keeps_the_run_ids_and_cache_keys():
    from grlib.report import load_spec

    drv = _driver()
    path = ROOT / "benchmarks" / "fashion_mnist_paper.yaml"
    full = {r.run_id: r.cache_key("x") for r in load_spec(path).runs()}
    first = load_spec(drv.restrict(str(path), ["symmetric 0.4"]), base_dir=path.parent)
    assert first.name == "fashion-mnist-paper" and len(first.runs()) == len(full) // 4
    assert {r.run_id: r.cache_key("x") for r in first.runs()}.items() <= full.items()
    assert {r.parameters["noise_rate"] for r in first.runs()} == {0.4}
    with pytest.raises(SystemExit, match="not a noise setting"):
        drv.restrict(str(path), ["symmetric 0.3"])


def test_only_some_methods_keeps_the_run_ids_and_cache_keys():
    from grlib.report import load_spec

    drv = _driver()
    path = ROOT / "benchmarks" / "fashion_mnist_paper.yaml"
    full = {r.run_id: r.cache_key("x") for r in load_spec(path).runs()}
    data = drv.restrict_methods(drv.restrict(str(path), ["symmetric 0.4"]), ["ce", "gr:lam=1"], str(path))
    spec = load_spec(data, base_dir=path.parent)
    runs = spec.runs()
    assert {r.run_id: r.cache_key("x") for r in runs}.items() <= full.items()
    assert len(runs) == 2 * 3                                   # two methods (one GR variant) x three seeds
    assert {(r.parameters["loss"], r.parameters.get("lam")) for r in runs} == {("ce", None), ("gr", 1)}
    with pytest.raises(SystemExit, match="'focal' is not a method"):
        drv.restrict_methods(data, ["focal"], str(path))
    with pytest.raises(SystemExit, match="no variant of 'gr' has lam = 3"):
        drv.restrict_methods(drv.restrict(str(path), ["symmetric 0.4"]), ["gr:lam=3"], str(path))
