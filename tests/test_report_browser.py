"""A batch report's page in a real browser: headless Debian chromium opens ``index.html`` from disk.

The report is built by the real runner from a light notebook (no torch: each
kernel takes about a second) whose numbers are known, so the order a sorted
column must take is known too.  The browser works offline: DNS maps every host
to nothing and the context aborts every request that is not for a local file;
the test asserts that no request was attempted and no console error appeared.
"""
import os
import re
import tempfile
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grlib.report import run_report

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND"]
PAGE_MS = 60_000  # loading a local page and running its few lines of JS; generous for a busy machine

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent (apt-get install chromium); the browser test needs it"),
]

#: final accuracy per (method, seed): the runs table's "final acc (%)" column must sort by these.
FINAL = {("ce", 0): 0.61, ("ce", 1): 0.72, ("ce", 2): 0.65, ("gr", 0): 0.93, ("gr", 1): 0.88, ("gr", 2): 0.90}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-report")
    for var in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        os.environ.setdefault(var, str(root / var.lower()))
    params = textwrap.dedent("""\
        loss: str = "ce"  # method
        noise_rate: float = 0.4  # noise rate
        seed: int = 0  # seed
        figures_dir: str = "figures"  # figures folder
        metrics_path: str = ""  # metrics file
        history_path: str = ""  # history file""")
    body = textwrap.dedent(f"""\
        import json
        final = {{("ce", 0): 0.61, ("ce", 1): 0.72, ("ce", 2): 0.65, ("gr", 0): 0.93, ("gr", 1): 0.88,
                 ("gr", 2): 0.90}}[(loss, seed)]
        rows = ["epoch,test_acc,noisy_fit"] + [f"{{e}},{{final * e / 3:.4f}},{{0.3 * e / 3:.4f}}" for e in (1, 2, 3)]
        open(history_path, "w").write("\\n".join(rows) + "\\n")
        json.dump({{"final_acc": final, "best_acc": final, "noisy_fit": 0.3, "train_seconds": 1.0}},
                  open(metrics_path, "w"))""")
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(body)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                               "language": "python"}})
    nbformat.write(nb, str(root / "light.ipynb"))
    (root / "spec.yaml").write_text(textwrap.dedent("""\
        name: sortable
        notebooks: [light.ipynb]
        methods:
          ce: {loss: ce}
          gr: {loss: gr}
        seeds: 3
        """))
    old = tempfile.tempdir
    tempfile.tempdir = str(root)
    try:
        summary = run_report(root / "spec.yaml", workers=2, out=root / "out", progress=False)
    finally:
        tempfile.tempdir = old
    assert summary.ok, summary.format()
    return root / "out" / "sortable" / "index.html"


def _column(page, table, header: str) -> list[str]:
    heads = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    col = next(i for i, h in enumerate(heads) if h.rstrip(" ▲▼") == header)
    return [c.strip() for c in table.locator(f"tbody tr > :nth-child({col + 1})").all_inner_texts()]


def test_report_tables_sort_offline_in_a_real_browser(report, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1200, "height": 900})
            ctx.route(re.compile(r"^(?!file:|data:|about:|blob:)"), lambda r: (requests.append(r.request.url),
                                                                              r.abort()))
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri(), timeout=PAGE_MS, wait_until="load")
            runs = page.locator("table.runs")
            expect(runs).to_be_visible(timeout=PAGE_MS)
            spec_order = _column(page, runs, "final acc (%)")
            assert spec_order == [f"{100 * FINAL[k]:.1f}" for k in FINAL]  # spec order: ce 0-2, gr 0-2

            header = runs.locator("thead th", has_text="final acc (%)")
            header.click()
            expect(header).to_have_attribute("aria-sort", "ascending", timeout=PAGE_MS)
            ascending = sorted(FINAL.values())
            assert _column(page, runs, "final acc (%)") == [f"{100 * v:.1f}" for v in ascending]
            # rows move whole: each run's id stays beside its number
            ids = _column(page, runs, "run (rendered notebook)")
            by_value = {f"{100 * v:.1f}": k for k, v in FINAL.items()}
            for rid, value in zip(ids, _column(page, runs, "final acc (%)")):
                loss, seed = by_value[value]
                assert f"loss-{loss}" in rid and rid.endswith(f"seed-{seed}")
            header.click()
            expect(header).to_have_attribute("aria-sort", "descending", timeout=PAGE_MS)
            assert _column(page, runs, "final acc (%)") == [f"{100 * v:.1f}" for v in sorted(ascending, reverse=True)]

            # a text column sorts as text; the summary table sorts by the mean, not by its text
            method = runs.locator("thead th", has_text="method")
            method.click()
            assert _column(page, runs, "method")[:3] == ["ce"] * 3
            summary = page.locator("table.setting").first
            col = summary.locator("thead th", has_text="final test acc (%)")
            col.click()
            col.click()
            assert _column(page, summary, "method") == ["gr", "ce"]
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [], f"the page tried to load from the network: {requests}"
    assert errors == [], f"console errors: {errors}"
