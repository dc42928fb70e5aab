"""The tuning app in a real browser: Voila serves the notebook, headless Debian chromium drives it.

The server is started through ``python -m grlib.tuning tune --port 0`` (the same
command as ``grlib tune``): the OS picks a free port on 127.0.0.1 and the test
reads the URL the command prints.  It serves a copy of the notebook; Jupyter
and IPython state live under the test's tmp_path.  Chromium never leaves the
machine: DNS maps every host but 127.0.0.1 to nothing, and the browser
context aborts every request that is not for localhost.  Screenshots are saved
in the test's tmp_path.

Every wait is on a condition, with a generous bound tied to the work behind it
(a busy CI machine can be several times slower than a quiet one): the first
page load starts a kernel and trains the small reference model; "Train" runs
as many epochs as the notebook's ``epochs`` default says.  No wait relies on
Playwright's 5 s default.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from grlib.notebook import notebook_parameters

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "04_emphasis_tuning.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
NOT_LOCAL = re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/]|data:|blob:|about:)")

# Bounds for waits on real work, in seconds, generous for a machine busy with other jobs.
SERVER_START_S = 180  # the Voila process starts and listens
KERNEL_START_S = 120  # a kernel starts and imports grlib (torch, matplotlib, ipywidgets)
REFERENCE_S = 120  # the app trains its reference model (5 CE epochs on digits) and draws both views
REDRAW_S = 60  # an emphasis change: curves and batch weights recomputed, one figure drawn (no training)
EPOCH_S = 10  # one training epoch on digits (about 0.1-0.3 s on a quiet machine), with its per-epoch redraw
TRAIN_EPOCHS = int(notebook_parameters(NOTEBOOK)["epochs"]["default"])  # what one press of Train runs
PAGE_LOAD_MS = 1000 * (KERNEL_START_S + REFERENCE_S)
REDRAW_MS = 1000 * REDRAW_S
TRAIN_MS = 1000 * (REDRAW_S + EPOCH_S * TRAIN_EPOCHS)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent (apt-get install chromium); the browser test needs it"),
]


@dataclass
class App:
    url: str
    proc: subprocess.Popen
    log: Path

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def processes(self):
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


SERVING = re.compile(r"serving (\S+) with Voila at (http://127\.0\.0\.1:(\d+)/)")


def _wait_for_server(proc: subprocess.Popen, log: Path, timeout: float = SERVER_START_S) -> tuple[str, int]:
    """Wait until the command has printed its URL and the port accepts connections; return (url, port)."""
    deadline = time.monotonic() + timeout
    url = port = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        if url is None:
            found = SERVING.search(log.read_text(errors="replace"))
            if found:
                url, port = found.group(2), int(found.group(3))
        if port is not None:
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return url, port
        time.sleep(0.2)  # polling a condition, bounded by the deadline
    raise TimeoutError(f"the server did not print its URL and listen within {timeout:.0f} s:\n"
                       f"{log.read_text(errors='replace')[-4000:]}")


def _stop(app: App) -> list:
    """Stop the server's process group, then any kernel that outlived it; return the survivors (none)."""
    import psutil

    children = app.processes()  # kernels run in sessions of their own: remember them by pid
    try:
        os.killpg(app.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        app.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(app.proc.pid, signal.SIGKILL)
        app.proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    return alive


@pytest.fixture
def voila_app(tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    nb = app_dir / NOTEBOOK.name
    shutil.copy(NOTEBOOK, nb)  # serve a copy, never the tracked file
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "jupyter/config"), ("JUPYTER_DATA_DIR", "jupyter/data"),
                     ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"), ("IPYTHONDIR", "ipython")):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp_path / sub)
    if not env.get("MPLCONFIGDIR"):  # a shared font cache (a fresh one costs a rebuild per test)
        env["MPLCONFIGDIR"] = str(REPO / ".scratch" / "matplotlib")
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")  # Voila's and the kernels' connection files
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    log = tmp_path / "voila.log"
    with open(log, "wb") as fh:  # --port 0: the OS picks a free port; the command prints the URL
        proc = subprocess.Popen([sys.executable, "-m", "grlib.tuning", "tune", "--port", "0", "--notebook",
                                 str(nb)], cwd=app_dir, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    app = App(url="", proc=proc, log=log)
    try:
        app.url, _ = _wait_for_server(proc, log)
        assert f"serving {nb.name} with Voila at {app.url}" in app.log_tail(100_000)
        yield app
    finally:
        survivors = _stop(app)
    assert not survivors, f"processes left behind: {survivors}"


def _open(page, url) -> int:
    """Load the app (one retry: Voila pages occasionally stall); return the attempt that worked."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in (1, 2):
        try:  # Voila runs the notebook before it sends the page: kernel start + reference model + figures
            page.goto(url, wait_until="domcontentloaded", timeout=PAGE_LOAD_MS)
            page.wait_for_selector("span.grlib-mode", timeout=PAGE_LOAD_MS)
            page.wait_for_selector("img.grlib-curve[src^='blob:'], img.grlib-curve[src^='data:']",
                                   timeout=PAGE_LOAD_MS)
            return attempt
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _wait_src_change(page, selector: str, old: str | None, timeout_ms: float) -> str:
    page.wait_for_function("([sel, old]) => { const e = document.querySelector(sel);"
                           " return e && e.src && e.src !== old && e.complete && e.naturalWidth > 0; }",
                           arg=[selector, old or ""], timeout=timeout_ms)
    return page.get_attribute(selector, "src")


def test_tuning_app_in_chromium(voila_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    t0 = time.monotonic()
    stages = []

    def stage(name):
        stages.append(f"{name} {time.monotonic() - t0:.1f}s")

    shots = tmp_path / "screenshots"
    shots.mkdir()
    blocked, console_errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1200, "height": 2100})
            ctx.set_default_timeout(REDRAW_MS)  # clicks and reads; waits on work set their own bounds
            ctx.route(NOT_LOCAL, lambda route: (blocked.append(route.request.url), route.abort()))
            page = ctx.new_page()
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

            stage("browser up")
            attempt = _open(page, voila_app.url)
            stage("app loaded")
            mode = page.locator("span.grlib-mode")
            expect(mode).to_have_text("mode p*=0.500", timeout=REDRAW_MS)
            assert page.get_by_text("Traceback").count() == 0
            # the kernel is the venv's python (jupyter_client maps the spec's "python" to the server's sys.executable)
            kernels = [p for p in voila_app.processes() if "ipykernel_launcher" in " ".join(p.cmdline())]
            assert kernels, f"no kernel process under the server: {voila_app.processes()}"
            assert {p.cmdline()[0] for p in kernels} == {sys.executable}
            src0 = page.get_attribute("img.grlib-curve", "src")
            page.screenshot(path=shots / "01_loaded.png", full_page=True)

            # one keyboard step on the lam slider's handle: 1.0 -> 1.1
            page.locator(".grlib-lam .noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")
            expect(mode).to_have_text(f"mode p*={1.1 / 2.1:.3f}", timeout=REDRAW_MS)
            src1 = _wait_src_change(page, "img.grlib-curve", src0, REDRAW_MS)

            # type a value into the slider's readout: lam = 3
            readout = page.locator(".grlib-lam .widget-readout").first
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("3")
            page.keyboard.press("Enter")
            expect(mode).to_have_text("mode p*=0.750", timeout=REDRAW_MS)
            _wait_src_change(page, "img.grlib-curve", src1, REDRAW_MS)
            expect(page.locator("span.grlib-batch")).to_contain_text("of the weight", timeout=REDRAW_MS)
            stage("lam moved twice")
            page.locator("img.grlib-curve").screenshot(path=shots / "02_curve_lam3.png")
            page.screenshot(path=shots / "02_lam3.png", full_page=True)

            # Train: the status readout reports the run, the results image appears, the button comes back
            status = page.locator("span.grlib-train-status")
            expect(status).to_have_text(re.compile(r"^not trained yet"), timeout=REDRAW_MS)
            button = page.locator("button.grlib-train")
            button.click()
            # training: TRAIN_EPOCHS epochs, each with a progress update, then the results figure
            expect(status).to_have_text(re.compile(r"^done: final test acc 0\.\d{3}.*run 1: gr\(lam=3, beta=12\)"),
                                        timeout=TRAIN_MS)
            acc = float(re.search(r"final test acc (\d\.\d+)", status.inner_text()).group(1))
            assert 0.2 < acc <= 1.0
            assert f"{TRAIN_EPOCHS} epochs" in status.inner_text()
            train_src1 = _wait_src_change(page, "img.grlib-train-plot", None, REDRAW_MS)
            stage("trained once")
            expect(button).to_be_enabled(timeout=REDRAW_MS)
            expect(page.locator(".grlib-progress")).to_be_visible(timeout=REDRAW_MS)

            # switch to CE and train again: the new run is shown next to the previous one
            page.locator(".grlib-loss button", has_text=re.compile(r"^\s*CE\s*$")).click()
            expect(mode).to_have_text("mode p*=0.000", timeout=REDRAW_MS)
            button.click()
            expect(status).to_have_text(re.compile(r"^done: final test acc 0\.\d{3}.*run 2: ce"), timeout=TRAIN_MS)
            _wait_src_change(page, "img.grlib-train-plot", train_src1, REDRAW_MS)
            assert page.locator(".grlib-error").count() == 0
            stage("trained twice")
            page.screenshot(path=shots / "03_trained.png", full_page=True)
            page.locator("img.grlib-train-plot").screenshot(path=shots / "03_training_plot.png")
        finally:
            browser.close()
    hosts = {re.sub(r"^\w+://([^/:]+).*$", r"\1", u) for u in blocked}
    # only Voila's lab template reaches off-box (FontAwesome CSS on a CDN); it was aborted locally
    assert hosts <= {"cdn.jsdelivr.net"}, blocked
    print(f"\nbrowser test: {time.monotonic() - t0:.1f} s ({', '.join(stages)}; page load attempt {attempt}); "
          f"screenshots in {shots}; console errors: {console_errors[:4]}")
