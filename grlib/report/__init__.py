"""Batch reports: run grids of parameterised notebooks headless and build an HTML report.

``grlib report SPEC.yaml [--workers N] [--scheduler ADDRESS] [--force] [--out DIR]``
or, from Python::

    from grlib.report import run_report
    summary = run_report("grlib/specs/default.yaml", workers=2)
    print(summary)            # counts and failures; summary.index is the report's index.html

See :mod:`grlib.report.spec` for the YAML format, :mod:`grlib.report.runner`
for caching, resuming and parallel runs (threads or a Dask cluster) and
:mod:`grlib.report.html` for what the report shows.
"""
from .runner import ReportBusyError, ReportSummary, execute_run, grlib_fingerprint, run_report
from .spec import NotebookRef, ReportSpec, Run, SpecError, builtin_specs, load_spec

__all__ = ["run_report", "ReportSummary", "ReportBusyError", "load_spec", "ReportSpec", "Run", "NotebookRef",
           "SpecError", "builtin_specs", "execute_run", "grlib_fingerprint"]
