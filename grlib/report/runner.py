"""Run a spec's notebooks: cached, resumable, in parallel (threads or a Dask cluster), then build the report.

Layout of ``<output>/<name>/`` (``reports/<name>/`` by default)::

    index.html                   the report (see grlib.report.html)
    spec.yaml                    the spec as given
    runs.csv                     one row per run: parameters, status, metrics
    figures/                     the report's figures (PNG and PDF)
    runs/<run-id>.ipynb          the executed notebook (with its traceback if it failed)
    runs/<run-id>.html           the same, rendered for the browser
    runs/<run-id>.metrics.json   the notebook's key numbers (its metrics_path)
    runs/<run-id>.figures/       the notebook's figures (its figures_dir)
    runs/<run-id>.manifest.json  written last: status, cache key, timing, error

A run executes in a private temporary folder (``runs/.tmp/``, the kernel's
working directory) and its files are moved into place when it ends; the
manifest is written last, atomically, and a run counts as finished only when
its manifest exists.  A rerun first deletes the old manifest, so a run that is
killed half-way is never taken for finished.  A run is *cached* (not run
again) when its manifest says it succeeded with the same cache key: the
notebook's content (cells, not outputs), the parameters and grlib (version and
source digest) are unchanged.  Failed runs are run again by the next
invocation.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from .spec import Run, load_spec

__all__ = ["run_report", "ReportSummary", "RunTask", "execute_run", "grlib_fingerprint", "ReportBusyError",
           "MANIFEST_SUFFIX"]

MANIFEST_SUFFIX = ".manifest.json"


class ReportBusyError(RuntimeError):
    """Another ``grlib report`` process holds the report folder."""


def grlib_fingerprint() -> str:
    """grlib's version plus a digest of its source (an editable install changes without a new version).

    The report subpackage and the command line are left out: they do not change
    what a notebook computes.
    """
    import grlib

    root = Path(grlib.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("report/") or rel == "cli.py":
            continue
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{grlib.__version__}+src.{h.hexdigest()[:12]}"


# -- one run ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunTask:
    """Everything a worker (a thread here or a Dask worker elsewhere) needs for one run; plain and picklable."""

    run_id: str
    notebook_path: str
    parameters: dict
    runs_dir: str
    cache_key: str
    timeout: float | None
    meta: dict = field(default_factory=dict)   # method, variant, point, seed, notebook: copied to the manifest


def run_files(run_id: str) -> dict[str, str]:
    """The file names of a run inside ``runs/``."""
    return {"notebook": f"{run_id}.ipynb", "html": f"{run_id}.html", "metrics": f"{run_id}.metrics.json",
            "figures": f"{run_id}.figures", "manifest": f"{run_id}{MANIFEST_SUFFIX}"}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def execute_run(task: RunTask) -> dict:
    """Execute one notebook run and move its files into ``runs/``; return its manifest.

    Never raises for a failing notebook: the manifest says ``status: failed``
    with the error, and the executed notebook (with the traceback) is kept.
    """
    from ..notebook import execute_notebook
    from .html import render_notebook_html

    runs = Path(task.runs_dir)
    names = run_files(task.run_id)
    manifest_path = runs / names["manifest"]
    manifest_path.unlink(missing_ok=True)  # from now on this run is not finished
    (runs / ".tmp").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{task.run_id}.", dir=runs / ".tmp"))
    # paths relative to the kernel's working directory (tmp now, runs/ once moved): the executed
    # notebook shows the names its files have in the report
    params = {**task.parameters, "metrics_path": names["metrics"], "figures_dir": names["figures"]}
    started, t0 = _now(), time.perf_counter()
    error = None
    try:
        execute_notebook(task.notebook_path, tmp / names["notebook"], params, cwd=tmp, timeout=task.timeout,
                         threads=1)
    except Exception as exc:  # papermill.PapermillExecutionError for a failing cell; kernel deaths, timeouts
        error = {"ename": getattr(exc, "ename", type(exc).__name__),
                 "evalue": str(getattr(exc, "evalue", exc))[:2000],
                 "cell": getattr(exc, "exec_count", None)}
    duration = time.perf_counter() - t0
    metrics_tmp = tmp / names["metrics"]
    if error is None:
        if not metrics_tmp.is_file():
            error = {"ename": "MissingMetrics", "cell": None,
                     "evalue": f"the notebook finished but wrote no metrics file (metrics_path={names['metrics']!r})"}
        else:
            try:
                json.loads(metrics_tmp.read_text())
            except ValueError as exc:
                error = {"ename": "BadMetrics", "evalue": f"the metrics file is not JSON: {exc}", "cell": None}
    html_error = None
    if (tmp / names["notebook"]).is_file():
        try:
            render_notebook_html(tmp / names["notebook"], tmp / names["html"])
        except Exception as exc:  # the run's result does not depend on its rendering
            html_error = f"{type(exc).__name__}: {exc}"
    # move into place (the old manifest is gone, so a crash in here leaves an unfinished run)
    for key in ("notebook", "html", "metrics"):
        src, dst = tmp / names[key], runs / names[key]
        if src.is_file() and (key != "metrics" or error is None):
            os.replace(src, dst)
        else:
            dst.unlink(missing_ok=True)
    fig_dst = runs / names["figures"]
    if fig_dst.exists():
        shutil.rmtree(fig_dst)
    if (tmp / names["figures"]).is_dir():
        os.replace(tmp / names["figures"], fig_dst)
    manifest = {
        "run_id": task.run_id, "status": "ok" if error is None else "failed", "error": error,
        "cache_key": task.cache_key, "parameters": task.parameters, **task.meta,
        "files": {k: v for k, v in names.items() if k != "manifest" and (runs / v).exists()},
        "html_error": html_error, "started": started, "finished": _now(), "duration_s": round(duration, 3),
        "host": socket.gethostname(), "pid": os.getpid(),
    }
    atomic_write_json(manifest_path, manifest)
    shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _failed_outside(task: RunTask, exc: BaseException) -> dict:
    """A manifest for a run whose worker failed outside the notebook (e.g. a Dask worker died)."""
    runs = Path(task.runs_dir)
    names = run_files(task.run_id)
    manifest = {
        "run_id": task.run_id, "status": "failed", "cache_key": task.cache_key, "parameters": task.parameters,
        **task.meta, "error": {"ename": type(exc).__name__, "evalue": str(exc)[:2000], "cell": None},
        "files": {k: v for k, v in names.items() if k in ("notebook", "html") and (runs / v).exists()},
        "html_error": None, "started": None, "finished": _now(), "duration_s": None,
        "host": socket.gethostname(), "pid": os.getpid(),
    }
    atomic_write_json(runs / names["manifest"], manifest)
    return manifest


def read_manifest(runs_dir: Path, run_id: str) -> dict | None:
    path = Path(runs_dir) / run_files(run_id)["manifest"]
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _is_cached(manifest: dict | None, key: str, runs_dir: Path) -> bool:
    if not manifest or manifest.get("status") != "ok" or manifest.get("cache_key") != key:
        return False
    return all((runs_dir / manifest["files"].get(k, "\0")).is_file() for k in ("notebook", "metrics"))


# -- the sweep ---------------------------------------------------------------------------------
@dataclass
class ReportSummary:
    """What a :func:`run_report` call did.  ``records`` has one manifest per run of the spec, in spec order,
    each with ``cached`` (True: not executed this time)."""

    name: str
    report_dir: Path
    index: Path | None
    records: list[dict]
    elapsed_s: float
    workers: int
    scheduler: str | None

    @property
    def n_runs(self) -> int:
        return len(self.records)

    @property
    def n_cached(self) -> int:
        return sum(r["cached"] for r in self.records)

    @property
    def n_executed(self) -> int:
        return sum(not r["cached"] for r in self.records)

    @property
    def n_failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.records)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] != "ok"]

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def format(self) -> str:
        lines = [f"report {self.name}: {self.n_runs} runs: {self.n_executed} executed, {self.n_cached} cached, "
                 f"{self.n_failed} failed in {self.elapsed_s:.1f} s"]
        for r in self.failed:
            err = r.get("error") or {}
            where = Path(self.report_dir, "runs", r["files"]["notebook"]) if "notebook" in r.get("files", {}) else ""
            first = (str(err.get("evalue") or "").strip().splitlines() or [""])[0][:200]
            lines.append(f"  FAILED {r['run_id']}: {err.get('ename')}: {first}"
                         + (f"\n         see {where}" if where else ""))
        if self.index is not None:
            lines.append(f"report: {self.index}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


@contextlib.contextmanager
def _report_lock(report_dir: Path):
    """One ``grlib report`` per report folder at a time (an OS lock: released even on SIGKILL)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(report_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ReportBusyError(f"another grlib report (pid {f.read().strip() or '?'}) is writing {report_dir}; "
                                  "wait for it to finish or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _single_threaded_kernels():
    """OMP_NUM_THREADS=1 in this process's environment for the sweep (kernels inherit it).

    Set once here, before the worker threads start, so the per-call set/restore
    in :func:`grlib.notebook.execute_notebook` always restores the same value.
    """
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


def _run_local(tasks, workers: int, on_result):
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grlib-report")
    try:
        futures = {pool.submit(execute_run, t): t for t in tasks}
        for fut in as_completed(futures):
            t = futures[fut]
            try:
                manifest = fut.result()
            except Exception as exc:  # a bug or an I/O error outside the notebook
                manifest = _failed_outside(t, exc)
            on_result(t, manifest)
    except BaseException:
        # interrupted: start nothing new; running notebooks finish in their threads and are kept
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_dask(tasks, address: str, on_result):
    from distributed import Client, as_completed

    with Client(address, set_as_default=False) as client:
        futures = {client.submit(execute_run, t, key=f"grlib-report-{t.run_id}-{uuid.uuid4().hex[:8]}",
                                 pure=False): t for t in tasks}
        try:
            for fut in as_completed(list(futures), loop=client.loop):
                t = futures[fut]
                try:
                    manifest = fut.result()
                except Exception as exc:  # e.g. KilledWorker
                    manifest = _failed_outside(t, exc)
                if read_manifest(Path(t.runs_dir), t.run_id) is None:
                    manifest = _failed_outside(t, RuntimeError(
                        f"worker {manifest.get('host')} wrote this run where this machine cannot see it: the "
                        f"report folder ({t.runs_dir}) must be on a file system every Dask worker shares"))
                on_result(t, manifest)
        except BaseException:
            client.cancel(list(futures))
            raise


def run_report(spec, *, workers: int = 1, scheduler: str | None = None, force: bool = False, out=None,
               progress: bool = True, build: bool = True) -> ReportSummary:
    """Run every run of ``spec`` that is not cached, then build ``<out>/<name>/index.html``.

    Parameters
    ----------
    spec : path, built-in spec name, dict or ReportSpec
        Validated before anything runs (:class:`~grlib.report.spec.SpecError`).
    workers : int
        Notebooks run at once on this machine (a thread pool; each kernel with
        ``OMP_NUM_THREADS=1``).  Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask distributed scheduler (``tcp://host:8786``):
        the runs go to its workers, which must share the report folder's file
        system.
    force : bool
        Run everything again, cached or not.
    out : path, optional
        Folder holding the report folder (default: the spec's ``output``,
        ``reports``).
    progress : bool
        A progress bar over runs (stderr) with done / failed / cached counts.
    build : bool
        Build ``index.html`` at the end.

    Returns
    -------
    ReportSummary
        ``.ok`` is False if a run failed; ``.exit_code`` is 0 or 1.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    spec = load_spec(spec)
    runs = spec.runs()
    report_dir = spec.report_dir(out)
    runs_dir = report_dir / "runs"
    t0 = time.perf_counter()
    with _report_lock(report_dir):
        shutil.rmtree(runs_dir / ".tmp", ignore_errors=True)  # leftovers of a killed sweep
        runs_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(report_dir / "spec.yaml", spec.text)
        fingerprint = grlib_fingerprint()
        records: dict[str, dict] = {}
        tasks = []
        for run in runs:
            key = run.cache_key(fingerprint)
            manifest = read_manifest(runs_dir, run.run_id)
            if not force and _is_cached(manifest, key, runs_dir):
                records[run.run_id] = {**manifest, "cached": True}
            else:
                tasks.append(_task(run, key, runs_dir, spec.timeout))
        counts = {"done": 0, "failed": 0, "cached": len(records)}
        bar = _progress_bar(len(runs), len(records), spec.name, progress)
        bar.set_postfix(counts, refresh=False)

        def on_result(task, manifest):
            records[task.run_id] = {**manifest, "cached": False}
            counts["done" if manifest["status"] == "ok" else "failed"] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)

        try:
            if tasks:
                if scheduler:
                    _run_dask(tasks, scheduler, on_result)
                else:
                    with _single_threaded_kernels():
                        _run_local(tasks, workers, on_result)
        finally:
            bar.close()
        ordered = [records[r.run_id] for r in runs]
        index = None
        if build:
            from .html import build_report

            index = build_report(spec, report_dir, runs, ordered, context={
                "grlib": fingerprint, "elapsed_s": time.perf_counter() - t0, "workers": workers,
                "scheduler": scheduler, "executed": len(tasks), "forced": force,
                "python": platform.python_version(), "host": socket.gethostname()})
    return ReportSummary(name=spec.name, report_dir=report_dir, index=index, records=ordered,
                         elapsed_s=time.perf_counter() - t0, workers=workers, scheduler=scheduler)


def _task(run: Run, key: str, runs_dir: Path, timeout) -> RunTask:
    meta = {"notebook": run.notebook.name, "method": run.method, "label": run.label, "variant": run.variant,
            "point": run.point, "seed": run.seed}
    return RunTask(run_id=run.run_id, notebook_path=str(run.notebook.path), parameters=run.parameters,
                   runs_dir=str(runs_dir.resolve()), cache_key=key, timeout=timeout, meta=meta)


def _progress_bar(total: int, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"report {name}", unit="run", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
