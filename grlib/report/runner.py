"""Run a spec's notebooks: cached, resumable, in parallel (threads or a Dask cluster), then build the report.

Layout of ``<output>/<name>/`` (``reports/<name>/`` by default)::

    index.html                   the report (see grlib.report.html)
    spec.yaml                    the spec as given
    runs.csv                     one row per run: parameters, status, metrics (grlib.report.stats)
    figures/                     the report's figures (PNG and PDF)
    runs/<run-id>.ipynb          the executed notebook (with its traceback if it failed)
    runs/<run-id>.html           the same, rendered for the browser
    runs/<run-id>.metrics.json   the notebook's key numbers (its metrics_path)
    runs/<run-id>.history.csv    per-epoch history (its history_path, when the notebook declares one)
    runs/<run-id>.figures/       the notebook's figures (its figures_dir), if it draws any
    runs/<run-id>.manifest.json  written last: status, cache key, timing, error, sha256 of every file

Several runs can share one kernel (the spec's ``runs_per_kernel``, for a
notebook that declares a ``runs`` parameter): the kernel start and the imports
are paid once for the group, whose executed notebook is
``runs/<first-run-id>__group-<hash>.ipynb``; each run keeps its own metrics,
history and manifest.

A group executes in a private temporary folder (``runs/.tmp/``, the kernel's
working directory) and its files are moved into place when it ends; each
manifest is written last, atomically, and a run counts as finished only when
its manifest exists.  A rerun first deletes the old manifests, so a run that is
killed half-way is never taken for finished.  A run is *cached* (not run
again) when its manifest says it succeeded with the same cache key (the
notebook's content, the parameters and grlib's version and source) and every
file it lists still has the sha256 the manifest recorded: a damaged or
truncated file makes the run execute again.  Failed runs are run again by the
next invocation.

No file of the report folder holds an absolute path or the host name
(:mod:`grlib.report.portable`): the folder can be sent as it is.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text, sha256_file
from .spec import Run, load_spec

__all__ = ["run_report", "ReportSummary", "RunTask", "KernelTask", "execute_run", "execute_group",
           "grlib_fingerprint", "ReportError", "ReportBusyError", "ReportFolderError", "SchedulerError",
           "check_scheduler_address", "connect_scheduler", "MANIFEST_SUFFIX", "run_files", "read_manifest",
           "verify_manifest", "DEFAULT_CONNECT_TIMEOUT"]

MANIFEST_SUFFIX = ".manifest.json"

#: Seconds ``--scheduler`` waits for the scheduler to answer.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: grlib modules whose source does not change what a notebook computes (left out of the cache key).
_PAGE_ONLY = {"cli.py", "report/__init__.py", "report/__main__.py", "report/cli.py", "report/html.py",
              "report/runner.py", "report/spec.py", "report/stats.py", "report/portable.py", "report/plots.py"}


class ReportError(RuntimeError):
    """A report could not start or write; the message says why.  Nothing was overwritten."""


class ReportBusyError(ReportError):
    """Another ``grlib report`` process holds the report folder."""


class ReportFolderError(ReportError):
    """The report folder cannot be used: a file stands where it should be, or it cannot be written."""


class SchedulerError(ReportError):
    """``--scheduler`` is not a valid address, or no Dask scheduler answers there."""


def grlib_fingerprint() -> str:
    """grlib's version plus a digest of its source (an editable install changes without a new version).

    The modules that only build the page or drive the runs (``cli.py`` and
    most of ``report/``) are left out: they do not change what a notebook
    computes.  ``report/kernel.py`` (the training helpers notebooks call) is in.
    """
    import grlib

    root = Path(grlib.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel in _PAGE_ONLY:
            continue
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{grlib.__version__}+src.{h.hexdigest()[:12]}"


# -- files and manifests ---------------------------------------------------------------------------
def run_files(run_id: str) -> dict[str, str]:
    """The file names of a run inside ``runs/`` (``notebook`` and ``html`` may be shared by a group)."""
    return {"notebook": f"{run_id}.ipynb", "html": f"{run_id}.html", "metrics": f"{run_id}.metrics.json",
            "history": f"{run_id}.history.csv", "figures": f"{run_id}.figures", "manifest": f"{run_id}{MANIFEST_SUFFIX}"}


def _checksums(runs_dir: Path, files: dict[str, str]) -> dict[str, str]:
    """sha256 of every file a run lists (a figures folder: each file in it), by name relative to ``runs/``."""
    out = {}
    for name in files.values():
        p = runs_dir / name
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file():
                    out[q.relative_to(runs_dir).as_posix()] = sha256_file(q)
        elif p.is_file():
            out[name] = sha256_file(p)
    return out


def read_manifest(runs_dir: Path, run_id: str) -> dict | None:
    """A run's manifest, or None if it has none (or an unreadable one)."""
    path = Path(runs_dir) / run_files(run_id)["manifest"]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verify_manifest(runs_dir: Path, manifest: dict) -> str | None:
    """None if every file the manifest lists is there with its recorded sha256, else what is wrong."""
    sums = manifest.get("checksums")
    if not isinstance(sums, dict) or not sums:
        return "the manifest records no checksums (written by an older grlib)"
    for name, digest in sums.items():
        p = Path(runs_dir) / name
        if not p.is_file():
            return f"{name} is missing"
        try:
            if sha256_file(p) != digest:
                return f"{name} changed since the run finished (sha256 differs)"
        except OSError as exc:
            return f"{name} cannot be read: {exc.strerror}"
    return None


def _is_cached(manifest: dict | None, key: str, runs_dir: Path, required=("notebook", "metrics")) -> bool:
    if not manifest or manifest.get("status") != "ok" or manifest.get("cache_key") != key:
        return False
    files = manifest.get("files") or {}
    if any(k not in files for k in required):
        return False
    return verify_manifest(runs_dir, manifest) is None


# -- one kernel: one run or a group of runs ---------------------------------------------------------
@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run; plain and picklable."""

    run_id: str
    notebook_path: str
    parameters: dict
    runs_dir: str
    cache_key: str
    timeout: float | None
    meta: dict = field(default_factory=dict)   # method, variant, point, seed, notebook: copied to the manifest
    history: bool = False                      # the notebook declares history_path


@dataclass(frozen=True)
class KernelTask:
    """Runs executed in one kernel (one notebook execution); plain and picklable.

    With one run, the notebook gets that run's parameters.  With several, it
    gets the parameters they share plus ``runs``: one dict per run with the
    parameters that differ and its own ``metrics_path``/``history_path``/``figures_dir``.
    """

    runs: tuple[RunTask, ...]

    @property
    def name(self) -> str:
        if len(self.runs) == 1:
            return self.runs[0].run_id
        digest = hashlib.sha1("\0".join(r.run_id for r in self.runs).encode()).hexdigest()[:8]
        return f"{self.runs[0].run_id}__group-{digest}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _kernel_parameters(task: KernelTask) -> dict:
    """The parameters of one notebook execution (paths relative to the kernel's working directory)."""
    def own(r: RunTask) -> dict:
        names = run_files(r.run_id)
        out = {"metrics_path": names["metrics"], "figures_dir": names["figures"]}
        if r.history:
            out["history_path"] = names["history"]
        return out

    if len(task.runs) == 1:
        r = task.runs[0]
        return {**r.parameters, **own(r)}
    keys = list(dict.fromkeys(k for r in task.runs for k in r.parameters))
    shared = {k: task.runs[0].parameters[k] for k in keys
              if all(k in r.parameters and r.parameters[k] == task.runs[0].parameters[k] for r in task.runs)}
    runs = [{**{k: v for k, v in r.parameters.items() if k not in shared}, **own(r)} for r in task.runs]
    return {**shared, "runs": runs}


def _check_outputs(tmp: Path, r: RunTask) -> dict | None:
    """An error dict if the run's metrics (and history) are missing or unreadable, else None."""
    names = run_files(r.run_id)
    metrics = tmp / names["metrics"]
    if not metrics.is_file():
        return {"ename": "MissingMetrics", "cell": None,
                "evalue": f"the notebook wrote no metrics file for this run (metrics_path={names['metrics']!r})"}
    try:
        data = json.loads(metrics.read_text())
    except (OSError, ValueError) as exc:
        return {"ename": "BadMetrics", "evalue": f"the metrics file is not JSON: {exc}", "cell": None}
    if not isinstance(data, dict):
        return {"ename": "BadMetrics", "cell": None,
                "evalue": f"the metrics file holds a {type(data).__name__}, not a mapping of name: value"}
    if r.history:
        from .stats import HistoryError, read_history

        try:
            read_history(tmp / names["history"])
        except HistoryError as exc:
            return {"ename": "BadHistory", "evalue": str(exc), "cell": None}
    return None


def execute_group(task: KernelTask) -> list[dict]:
    """Execute one kernel's runs and move their files into ``runs/``; return their manifests (in order).

    Never raises for a failing notebook: the manifests say ``status: failed``
    with the error, and the executed notebook (with the traceback) is kept.
    In a group, a run whose files were complete before a later run failed
    still counts as finished.
    """
    from ..notebook import execute_notebook
    from .html import render_notebook_html
    from .portable import Scrubber, portable_notebook

    first = task.runs[0]
    runs = Path(first.runs_dir)
    for r in task.runs:  # from now on these runs are not finished
        (runs / run_files(r.run_id)["manifest"]).unlink(missing_ok=True)
    (runs / ".tmp").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{task.name[:60]}.", dir=runs / ".tmp"))
    nb_name, html_name = f"{task.name}.ipynb", f"{task.name}.html"
    params = _kernel_parameters(task)
    started, t0 = _now(), time.perf_counter()
    scrub = Scrubber({tmp: ".", runs: ".", runs.parent: "<report>"})
    error = None
    try:
        execute_notebook(first.notebook_path, tmp / nb_name, params, cwd=tmp, timeout=first.timeout, threads=1)
    except Exception as exc:  # papermill.PapermillExecutionError for a failing cell; kernel deaths, timeouts
        error = {"ename": getattr(exc, "ename", type(exc).__name__),
                 "evalue": scrub(str(getattr(exc, "evalue", exc)))[:2000],
                 "cell": getattr(exc, "exec_count", None)}
    duration = time.perf_counter() - t0
    # each run's own verdict: its files, and the notebook's error unless a later run of the group failed
    problems = [_check_outputs(tmp, r) for r in task.runs]
    errors = []
    for i, r in enumerate(task.runs):
        if problems[i] is not None:
            errors.append(error or problems[i])
        elif error is not None and (len(task.runs) == 1 or all(p is None for p in problems[i + 1:])):
            errors.append(error)  # the failure came after this run's files: its checks did not pass
        else:
            errors.append(None)
    html_error = None
    if (tmp / nb_name).is_file():
        try:
            portable_notebook(tmp / nb_name, input_name=Path(first.notebook_path).name, output_name=nb_name,
                              scrub=scrub)
            render_notebook_html(tmp / nb_name, tmp / html_name)
        except Exception as exc:  # the run's result does not depend on its rendering
            html_error = scrub(f"{type(exc).__name__}: {exc}")
    # move into place (the old manifests are gone, so a crash in here leaves unfinished runs)
    for name in (nb_name, html_name):
        if (tmp / name).is_file():
            os.replace(tmp / name, runs / name)
        else:
            (runs / name).unlink(missing_ok=True)
    manifests = []
    for r, err in zip(task.runs, errors):
        names = run_files(r.run_id)
        for key in ("metrics", "history"):
            src, dst = tmp / names[key], runs / names[key]
            if src.is_file() and err is None:
                os.replace(src, dst)
            else:
                dst.unlink(missing_ok=True)
        fig_dst = runs / names["figures"]
        if fig_dst.exists():
            shutil.rmtree(fig_dst)
        if (tmp / names["figures"]).is_dir() and any((tmp / names["figures"]).iterdir()):
            os.replace(tmp / names["figures"], fig_dst)
        files = {"notebook": nb_name, "html": html_name, **{k: names[k] for k in ("metrics", "history", "figures")}}
        files = {k: v for k, v in files.items() if (runs / v).exists()}
        manifest = {
            "run_id": r.run_id, "status": "ok" if err is None else "failed", "error": err,
            "cache_key": r.cache_key, "parameters": r.parameters, **r.meta, "files": files,
            "kernel": {"notebook": nb_name, "runs": len(task.runs), "duration_s": round(duration, 3)},
            "html_error": html_error, "started": started, "finished": _now(),
            "duration_s": round(duration / len(task.runs), 3), "pid": os.getpid(),
            "checksums": _checksums(runs, files),
        }
        atomic_write_json(runs / names["manifest"], manifest)
        manifests.append(manifest)
    shutil.rmtree(tmp, ignore_errors=True)
    return manifests


def execute_run(task: RunTask) -> dict:
    """Execute one notebook run (its own kernel) and move its files into ``runs/``; return its manifest."""
    return execute_group(KernelTask((task,)))[0]


def _failed_outside(task: RunTask, exc: BaseException) -> dict:
    """A manifest for a run whose worker failed outside the notebook (e.g. a Dask worker died)."""
    from .portable import Scrubber

    runs = Path(task.runs_dir)
    manifest = {
        "run_id": task.run_id, "status": "failed", "cache_key": task.cache_key, "parameters": task.parameters,
        **task.meta, "error": {"ename": type(exc).__name__, "cell": None,
                               "evalue": Scrubber({runs: ".", runs.parent: "<report>"})(str(exc))[:2000]},
        "files": {}, "html_error": None, "started": None, "finished": _now(), "duration_s": None,
        "pid": os.getpid(), "checksums": {},
    }
    atomic_write_json(runs / run_files(task.run_id)["manifest"], manifest)
    return manifest


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
    kernels: int = 0

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


def _check_report_folder(report_dir: Path, out) -> None:
    """Refuse a report folder that cannot be one, before anything is created (nothing is overwritten)."""
    if report_dir.exists() and not report_dir.is_dir():
        raise ReportFolderError(f"{str(report_dir)!r} is a file where the report folder should be; move it away "
                                "or give another --out (nothing was changed)")
    for parent in reversed(report_dir.parents):
        if parent.exists() and not parent.is_dir():
            what = "--out" if out is not None and Path(out) == parent else "the report folder's path"
            raise ReportFolderError(f"{what} {str(parent)!r} is a file, not a folder; give a folder "
                                    f"(the report goes to <out>/{report_dir.name}/; nothing was changed)")
    if report_dir.is_dir() and not os.access(report_dir, os.W_OK | os.X_OK):
        raise ReportFolderError(f"the report folder {str(report_dir)!r} is not writable (permission denied); "
                                "give another folder with --out")


@contextlib.contextmanager
def _report_lock(report_dir: Path):
    """One ``grlib report`` per report folder at a time (an OS lock: released even on SIGKILL)."""
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        f = open(report_dir / ".lock", "a+")
    except OSError as exc:
        raise ReportFolderError(f"cannot write the report folder {str(report_dir)!r}: "
                                f"{exc.strerror or exc} ({exc.filename or report_dir}); give another folder with --out") from None
    with f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
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
    """OMP_NUM_THREADS=1 in this process's environment for the sweep (kernels inherit it)."""
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


def _run_local(groups, workers: int, on_result):
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grlib-report")
    try:
        futures = {pool.submit(execute_group, g): g for g in groups}
        for fut in as_completed(futures):
            g = futures[fut]
            try:
                manifests = fut.result()
            except Exception as exc:  # a bug or an I/O error outside the notebook
                manifests = [_failed_outside(t, exc) for t in g.runs]
            for t, m in zip(g.runs, manifests):
                on_result(t, m)
    except BaseException:
        # interrupted: start nothing new; running notebooks finish in their threads and are kept
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# -- Dask --------------------------------------------------------------------------------------------
_ADDRESS_RE = re.compile(r"^(?:(?P<scheme>tcp|tls)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*"
                         r"[A-Za-z0-9])?):(?P<port>[0-9]{1,5})$")


def check_scheduler_address(address) -> str:
    """``address`` as ``scheme://host:port`` (``tcp`` when no scheme is given); a clear error if malformed."""
    if not isinstance(address, str):
        raise SchedulerError(f"scheduler must be an address text such as tcp://127.0.0.1:8786, "
                             f"got {type(address).__name__} {address!r}")
    m = _ADDRESS_RE.match(address.strip())
    port = int(m.group("port")) if m else 0
    if not m or not 1 <= port <= 65535:
        raise SchedulerError(f"scheduler address {address!r} is not of the form tcp://HOST:PORT "
                             "(e.g. tcp://127.0.0.1:8786, the address `dask scheduler` prints; port 1-65535)")
    return f"{m.group('scheme') or 'tcp'}://{m.group('host')}:{port}"


def _probe_scheduler(address: str, timeout: float) -> dict:
    """Open a connection and ask for the peer's identity, all within ``timeout`` seconds."""
    import asyncio
    import socket

    m = _ADDRESS_RE.match(address)
    host, port = m.group("host").strip("[]"), int(m.group("port"))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        raise SchedulerError(f"no Dask scheduler at {address}: nothing listens on port {port} (connection "
                             "refused); start one with `dask scheduler` and pass the address it prints") from None
    except socket.gaierror as exc:
        raise SchedulerError(f"no Dask scheduler at {address}: host {host!r} is unknown ({exc.strerror})") from None
    except (socket.timeout, TimeoutError):
        raise SchedulerError(f"no Dask scheduler at {address}: the connection was not accepted within "
                             f"{timeout:g} s") from None
    except OSError as exc:
        raise SchedulerError(f"no Dask scheduler at {address}: {exc.strerror or exc}") from None

    async def identity():
        from distributed.comm import connect

        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    # in a daemon thread with its own event loop: the main thread only waits (a signal interrupts the wait
    # at once, and nothing of the half-open connection is left to clean up on the way out)
    outcome: dict = {}

    def probe():
        try:
            outcome["reply"] = asyncio.run(asyncio.wait_for(identity(), timeout))
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="grlib-scheduler-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if thread.is_alive():
        outcome["error"] = TimeoutError()
    try:
        if "error" in outcome:
            raise outcome["error"]
        reply = outcome["reply"]
    except (asyncio.TimeoutError, TimeoutError):
        raise SchedulerError(f"{address} accepted the connection but did not answer as a Dask scheduler within "
                             f"{timeout:g} s; is it a scheduler's address (tcp://HOST:PORT printed by "
                             "`dask scheduler`)?") from None
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise SchedulerError(f"{address} did not answer as a Dask scheduler: {type(exc).__name__}: {exc}") from None
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise SchedulerError(f"{address} answered, but as a {kind or 'non-Dask peer'}, not a Dask scheduler; give "
                             "the scheduler's address")
    return reply


def connect_scheduler(address: str, *, timeout: float = DEFAULT_CONNECT_TIMEOUT):
    """A ``distributed.Client`` for the scheduler at ``address``, or :class:`SchedulerError` within ``timeout`` s.

    The peer is first asked for its identity with a bounded wait, so a port
    that accepts connections but never answers (or a Dask worker's address)
    gives a clear error instead of a hang.
    """
    address = check_scheduler_address(address)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"connect_timeout must be a positive number of seconds, got {timeout!r}")
    reply = _probe_scheduler(address, float(timeout))
    from distributed import Client

    try:
        client = Client(address, timeout=float(timeout), set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"the Dask scheduler at {address} answered but the client could not connect: "
                             f"{exc}") from None
    client._grlib_identity = reply  # noqa: SLF001 (kept for the report's context)
    return client


def _run_dask(groups, client, on_result):
    from distributed import as_completed

    futures = {client.submit(execute_group, g, key=f"grlib-report-{g.name}-{uuid.uuid4().hex[:8]}",
                             pure=False): g for g in groups}
    try:
        for fut in as_completed(list(futures), loop=client.loop):
            g = futures[fut]
            try:
                manifests = fut.result()
            except Exception as exc:  # e.g. KilledWorker
                manifests = [_failed_outside(t, exc) for t in g.runs]
            for t, m in zip(g.runs, manifests):
                if read_manifest(Path(t.runs_dir), t.run_id) is None:
                    m = _failed_outside(t, RuntimeError(
                        "a Dask worker wrote this run where this machine cannot see it: the report folder must "
                        "be on a file system every Dask worker shares"))
                on_result(t, m)
    except BaseException:
        client.cancel(list(futures))
        raise


def _groups(tasks: list[RunTask], size: int) -> list[KernelTask]:
    """Consecutive runs of one notebook, ``size`` at a time (spec order keeps a setting's seeds together)."""
    groups, current = [], []
    for t in tasks:
        if current and (len(current) >= size or current[0].notebook_path != t.notebook_path):
            groups.append(KernelTask(tuple(current)))
            current = []
        current.append(t)
    if current:
        groups.append(KernelTask(tuple(current)))
    return groups


def run_report(spec, *, workers: int = 1, scheduler: str | None = None, force: bool = False, out=None,
               progress: bool = True, build: bool = True,
               connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> ReportSummary:
    """Run every run of ``spec`` that is not cached, then build ``<out>/<name>/index.html``.

    Parameters
    ----------
    spec : path, built-in spec name, dict or ReportSpec
        Validated before anything runs (:class:`~grlib.report.spec.SpecError`).
    workers : int
        Kernels run at once on this machine (a thread pool; each kernel with
        ``OMP_NUM_THREADS=1``).  Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask distributed scheduler (``tcp://host:8786``):
        the runs go to its workers, which must share the report folder's file
        system.  Checked (form, then a bounded connection) before any folder
        is created: :class:`SchedulerError`.
    force : bool
        Run everything again, cached or not.
    out : path, optional
        Folder holding the report folder (default: the spec's ``output``,
        ``reports``).  A file there, or a folder that cannot be written, gives
        :class:`ReportFolderError` (nothing is overwritten).
    progress : bool
        A progress bar over runs (stderr) with done / failed / cached counts.
    build : bool
        Build ``index.html`` at the end.
    connect_timeout : float
        Seconds to wait for the scheduler to answer.

    Returns
    -------
    ReportSummary
        ``.ok`` is False if a run failed; ``.exit_code`` is 0 or 1.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    spec = load_spec(spec)
    address = check_scheduler_address(scheduler) if scheduler else None
    runs = spec.runs()
    report_dir = spec.report_dir(out)
    _check_report_folder(report_dir, out)
    t0 = time.perf_counter()
    client = None
    if address:
        print(f"grlib report: connecting to the Dask scheduler at {address} (up to {connect_timeout:g} s)",
              file=sys.stderr, flush=True)
        client = connect_scheduler(address, timeout=connect_timeout)
    try:
        with _report_lock(report_dir):
            try:
                return _sweep(spec, runs, report_dir, workers=workers, client=client, address=address, force=force,
                              progress=progress, build=build, t0=t0)
            except OSError as exc:  # the folder went read-only or full under us: say which file
                raise ReportFolderError(f"cannot write {exc.filename or report_dir}: {exc.strerror or exc}") from None
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)


def _sweep(spec, runs, report_dir: Path, *, workers, client, address, force, progress, build, t0) -> ReportSummary:
    runs_dir = report_dir / "runs"
    shutil.rmtree(runs_dir / ".tmp", ignore_errors=True)  # leftovers of a killed sweep
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not (report_dir / "spec.yaml").is_file() or (report_dir / "spec.yaml").read_text() != spec.text:
        atomic_write_text(report_dir / "spec.yaml", spec.text)
    fingerprint = grlib_fingerprint()
    records: dict[str, dict] = {}
    tasks = []
    for run in runs:
        key = run.cache_key(fingerprint)
        manifest = read_manifest(runs_dir, run.run_id)
        required = ("notebook", "metrics") + (("history",) if "history_path" in run.notebook.parameters else ())
        if not force and _is_cached(manifest, key, runs_dir, required):
            records[run.run_id] = {**manifest, "cached": True}
        else:
            tasks.append(_task(run, key, runs_dir, spec.timeout, fingerprint))
    groups = _groups(tasks, spec.runs_per_kernel)
    counts = {"done": 0, "failed": 0, "cached": len(records)}
    bar = _progress_bar(len(runs), len(records), spec.name, progress)
    bar.set_postfix(counts, refresh=False)

    def on_result(task, manifest):
        records[task.run_id] = {**manifest, "cached": False}
        counts["done" if manifest["status"] == "ok" else "failed"] += 1
        bar.set_postfix(counts, refresh=False)
        bar.update(1)

    t_runs = time.perf_counter()
    try:
        if groups:
            if client is not None:
                _run_dask(groups, client, on_result)
            else:
                with _single_threaded_kernels():
                    _run_local(groups, workers, on_result)
    finally:
        bar.close()
    runs_s = time.perf_counter() - t_runs
    ordered = [records[r.run_id] for r in runs]
    index = None
    if build:
        from .html import build_report

        index = build_report(spec, report_dir, runs, ordered, context={
            "grlib": fingerprint, "elapsed_s": time.perf_counter() - t0, "runs_s": runs_s, "workers": workers,
            "scheduler": "a Dask cluster" if address else None, "executed": len(tasks), "kernels": len(groups),
            "forced": force, "python": platform.python_version()})
    return ReportSummary(name=spec.name, report_dir=report_dir, index=index, records=ordered,
                         elapsed_s=time.perf_counter() - t0, workers=workers, scheduler=address, kernels=len(groups))


def _task(run: Run, key: str, runs_dir: Path, timeout, fingerprint: str = "") -> RunTask:
    meta = {"notebook": run.notebook.name, "method": run.method, "label": run.label, "variant": run.variant,
            "point": run.point, "seed": run.seed, "grlib": fingerprint}
    return RunTask(run_id=run.run_id, notebook_path=str(run.notebook.path), parameters=run.parameters,
                   runs_dir=str(runs_dir.resolve()), cache_key=key, timeout=timeout, meta=meta,
                   history="history_path" in run.notebook.parameters)


def _progress_bar(total: int, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"report {name}", unit="run", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
