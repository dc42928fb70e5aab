"""Running grlib's notebooks headless through papermill (one wrapper for tests, reports and users)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["execute_notebook", "notebook_parameters", "notebooks_dir", "NOTEBOOK_KERNEL"]

NOTEBOOK_KERNEL = "python3"


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (editable install / source checkout)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def notebook_parameters(path) -> dict:
    """The notebook's ``parameters`` cell as papermill reads it: ``{name: {default, inferred_type_name, help}}``."""
    import papermill as pm

    return dict(pm.inspect_notebook(str(path)))


def execute_notebook(path, output, parameters: dict | None = None, *, cwd=None, timeout: float | None = 1800,
                     log_output: bool = False, threads: int | None = 1):
    """Execute ``path`` with ``parameters`` into ``output`` through papermill; return the executed notebook.

    Uses papermill's API with ``shutdown_kernel="immediate"`` (graceful shutdown
    intermittently costs seconds) and no progress bar.  ``threads`` sets
    ``OMP_NUM_THREADS`` for the kernel (1 by default, so parallel kernels on a
    small machine do not oversubscribe the cores; None leaves it alone).
    ``cwd`` (default: the notebook's folder) is given to the kernel alone, not
    through papermill's ``cwd``, which changes the whole process's working
    directory and so breaks notebooks run from several threads at once.  A failing cell raises
    ``papermill.PapermillExecutionError``; the output notebook (with the
    traceback) is still written.
    """
    import papermill as pm

    path = Path(path)
    old = os.environ.get("OMP_NUM_THREADS")
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        return pm.execute_notebook(
            str(path), str(output), parameters=dict(parameters or {}), kernel_name=NOTEBOOK_KERNEL,
            cwd=None, resources={"metadata": {"path": str(cwd or path.parent)}},  # nbclient: the kernel's cwd
            progress_bar=False, log_output=log_output,
            execution_timeout=timeout, start_timeout=120, shutdown_kernel="immediate",
        )
    finally:
        if threads is not None:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old
