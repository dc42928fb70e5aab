"""``grlib report SPEC.yaml``: run a spec's notebooks and build its HTML report.

Wire it into a parent parser with :func:`register`; ``python -m grlib.report``
(or ``python -m grlib.report.cli``) runs it on its own.

Exit status: 0 every run succeeded; 1 some run failed (the report is still
built, with the failures in it); 2 the spec, the report folder or the
scheduler was refused, or the folder is busy (one line on stderr; nothing ran
and nothing was overwritten); 130 interrupted.
"""
from __future__ import annotations

import argparse
import signal
import sys

__all__ = ["register", "build_parser", "main"]

_DESCRIPTION = ("Run the notebook grid of a YAML spec headless (cached, resumable, in parallel or on a Dask "
                "cluster) and build an HTML report in <out>/<name>/index.html.")

_EPILOG = """\
examples:
  grlib report grlib/specs/default.yaml --workers 2     the default report (reports/default/index.html)
  grlib report default --dry-run                        list the runs of a built-in spec
  grlib report my.yaml --scheduler tcp://host:8786      run on an existing Dask cluster
A run is cached when its notebook, parameters and grlib are unchanged and its files are
whole (sha256 in its manifest); a killed sweep resumes where it stopped.
Exit status: 0 ok, 1 some run failed, 2 refused (bad spec, folder or scheduler), 130 interrupted.
"""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    from .spec import builtin_specs

    p.add_argument("spec", help="a YAML spec file, or the name of a built-in spec "
                                f"({', '.join(builtin_specs()) or 'none'})")
    p.add_argument("--workers", "-j", type=int, default=1, metavar="N",
                   help="notebooks run at once on this machine (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="address of a running Dask distributed scheduler to send the runs to, tcp://HOST:PORT "
                        "(e.g. tcp://127.0.0.1:8786); its workers must share the report folder")
    p.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                   help="seconds to wait for the scheduler to answer (default 10)")
    p.add_argument("--force", action="store_true", help="rerun every run, cached or not")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder that holds the report folder (default: the spec's output, reports)")
    p.add_argument("--dry-run", action="store_true", help="check the spec and list its runs; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to a parent parser's subparsers; returns the new parser."""
    p = subparsers.add_parser("report", help="run a YAML spec's notebook grid (cached, parallel) and build an HTML "
                                             "report", description=_DESCRIPTION,
                              epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=_cmd_report)
    return p


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _skip_iri_checker() -> None:
    """Keep jsonschema from importing its optional IRI format checker in this command's process.

    nbformat (through papermill) imports jsonschema, whose format module imports
    ``rfc3987_syntax`` when installed (jupyter-events pulls it in); that import
    builds 38 Earley parsers and costs 3.6 s on a quiet 2-core machine (over 10 s
    on a busy one) at every ``grlib report``, for a check (the ``iri`` format)
    that no notebook schema uses.  jsonschema imports it inside
    ``suppress(ImportError)``, so marking it absent only drops that check.
    Nothing is changed when jsonschema is already imported.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)


def _cmd_report(args) -> int:
    from .runner import DEFAULT_CONNECT_TIMEOUT, ReportError, check_scheduler_address, run_report
    from .spec import SpecError, load_spec

    _skip_iri_checker()

    try:
        spec = load_spec(args.spec)
        if args.dry_run:
            runs = spec.runs()
            for run in runs:
                print(run.run_id)
            print(f"{len(runs)} runs -> {spec.report_dir(args.out)}/", file=sys.stderr)
            return 0
        if args.workers < 1:
            raise SpecError(f"--workers must be at least 1, got {args.workers}")
        timeout = DEFAULT_CONNECT_TIMEOUT if args.connect_timeout is None else args.connect_timeout
        if not timeout > 0:
            raise SpecError(f"--connect-timeout must be a positive number of seconds, got {args.connect_timeout}")
        if args.scheduler is not None:
            check_scheduler_address(args.scheduler)
        old = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
        try:
            summary = run_report(spec, workers=args.workers, scheduler=args.scheduler, force=args.force,
                                 out=args.out, progress=not args.quiet, connect_timeout=timeout)
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)
    except (SpecError, ReportError) as exc:
        print(f"grlib report: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grlib report: interrupted; finished runs are kept, run the same command again to resume",
              file=sys.stderr)
        return 130
    print(summary.format())
    return summary.exit_code


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grlib report", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return parser


def main(argv=None) -> int:
    """``grlib report`` on its own: ``python -m grlib.report.cli SPEC.yaml [...]``."""
    args = build_parser().parse_args(argv)
    return _cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
