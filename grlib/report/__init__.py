"""Batch reports: run grids of parameterised notebooks headless and build an HTML report.

``grlib report SPEC.yaml [--workers N] [--scheduler tcp://HOST:PORT] [--force] [--out DIR]``
or, from Python::

    from grlib.report import run_report
    summary = run_report("grlib/specs/default.yaml", workers=2)
    print(summary)            # counts and failures; summary.index is the report's index.html

See :mod:`grlib.report.spec` for the YAML format, :mod:`grlib.report.runner`
for caching (with checksums), resuming and parallel runs (threads or a Dask
cluster), :mod:`grlib.report.stats` for every number the report shows (also
read by the benchmarks), :mod:`grlib.report.plots` and
:mod:`grlib.report.html` for the figures and the page, and
:mod:`grlib.report.kernel` for what notebook 05 runs in its kernel (training
with a learning rate chosen on the noisy validation split).
"""
from .runner import (ReportBusyError, ReportError, ReportFolderError, ReportSummary, SchedulerError,
                     check_scheduler_address, connect_scheduler, execute_group, execute_run, grlib_fingerprint,
                     run_report)
from .spec import NotebookRef, ReportSpec, Run, SpecError, builtin_specs, load_spec

__all__ = ["run_report", "ReportSummary", "ReportError", "ReportBusyError", "ReportFolderError", "SchedulerError",
           "load_spec", "ReportSpec", "Run", "NotebookRef", "SpecError", "builtin_specs", "execute_run",
           "execute_group", "grlib_fingerprint", "check_scheduler_address", "connect_scheduler"]
