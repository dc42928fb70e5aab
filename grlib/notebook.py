"""Running grlib's notebooks headless through papermill (one wrapper for tests, reports and users).

:func:`execute_notebook` checks the parameters against the notebook's
``parameters`` cell *before* a kernel starts (:func:`check_parameters`):
papermill itself only logs a warning for a name the notebook does not declare
(``lamda=5`` for ``lam``) and runs the whole notebook on the defaults.
"""
from __future__ import annotations

import ast
import difflib
import math
import os
from collections.abc import Mapping
from pathlib import Path

from ._checks import literal_value, parse_python

__all__ = ["execute_notebook", "notebook_parameters", "check_parameters", "notebooks_dir", "NOTEBOOK_KERNEL"]

NOTEBOOK_KERNEL = "python3"


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (editable install / source checkout)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def _notebook_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"notebook path must be a path (str or Path), got {path!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"notebook path={str(p)!r} " + ("is a folder, not a notebook file" if p.is_dir()
                                                                 else "does not exist"))
    return p


def _read_notebook(path: Path):
    """The notebook, or ``ValueError`` naming the file when it is not one (damaged JSON, another format)."""
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises NotJSONError, ValidationError, KeyError, UnicodeDecodeError, ...
        raise ValueError(f"notebook path={str(path)!r} cannot be read as a Jupyter notebook "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None


def notebook_parameters(path) -> dict:
    """The notebook's ``parameters`` cell as papermill reads it: ``{name: {default, inferred_type_name, help}}``."""
    import papermill as pm

    path = _notebook_path(path)
    _read_notebook(path)
    return dict(pm.inspect_notebook(str(path)))


def _declared(path: Path) -> tuple[dict, bool]:
    """``({name: info}, has_parameters_cell)``: papermill's view, plus names its line parser misses.

    papermill reads the parameters cell line by line with a regular
    expression and skips, for one, ``x: str | None = None``; such a name is
    still set by papermill's injected cell, so it is declared here too (from
    the cell's syntax tree, with its annotation).
    """
    declared = notebook_parameters(path)
    nb = _read_notebook(path)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return declared, False
    try:
        tree = parse_python(cells[0].source)
    except SyntaxError:  # magics and the like: papermill's view only
        return declared, True
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets, annotation = [node.target], ast.unparse(node.annotation)
        elif isinstance(node, ast.Assign):
            targets, annotation = [t for t in node.targets if isinstance(t, ast.Name)], "None"
        else:
            continue
        for t in targets:
            declared.setdefault(t.id, {"name": t.id, "inferred_type_name": annotation,
                                       "default": ast.unparse(node.value) if node.value is not None else "None",
                                       "help": ""})
    return declared, True


# -- annotations -> accepted values -------------------------------------------------------
_NONE = type(None)
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "List": list, "tuple": list,
          "Tuple": list, "Sequence": list, "dict": dict, "Dict": dict, "Mapping": dict, "None": _NONE,
          "NoneType": _NONE}


class _Unchecked(Exception):
    """An annotation this module does not interpret (a class of the user's, ``Any``): the value is not checked."""


def _accepts(node) -> tuple[set, list]:
    """The types an annotation node accepts and, for ``Literal[...]``, the values (``(types, literals)``)."""
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {_NONE}, []
        if isinstance(node.value, str):  # a quoted annotation: "float"
            return _accepts(parse_python(node.value, mode="eval").body)
        raise _Unchecked
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
        (ta, la), (tb, lb) = _accepts(node.left), _accepts(node.right)
        return ta | tb, la + lb
    if isinstance(node, ast.Subscript):
        base = _name(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            types, lits = _accepts(args[0])
            return types | {_NONE}, lits
        if base == "Union":
            types, lits = set(), []
            for a in args:
                t, lit = _accepts(a)
                types |= t
                lits += lit
            return types, lits
        if base == "Literal":
            values = [literal_value(a) for a in args]
            return set(), values
        if base in _TYPES:  # list[int], dict[str, float]: the container is checked, not its items
            return {_TYPES[base]}, []
        raise _Unchecked
    name = _name(node)
    if name in _TYPES:
        return {_TYPES[name]}, []
    raise _Unchecked


def _name(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.Optional
        return node.attr
    return None


def _declared_accepts(annotation: str):
    """``(types, literals)`` for a papermill ``inferred_type_name``; None when the value is not checked."""
    if not annotation or annotation == "None":  # papermill's "no annotation"
        return None
    try:
        return _accepts(parse_python(annotation, mode="eval").body)
    except (_Unchecked, SyntaxError, ValueError):
        return None


def _plain(name: str, value):
    """``value`` as the literal papermill will write: numpy scalars -> Python, tuples -> lists, paths -> str.

    papermill writes any other object as the text of its ``str()``: refused.
    """
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"parameter {name}: dict keys must be strings (papermill writes every key as text), "
                            f"got {bad[0]!r}")
        return {k: _plain(f"{name}[{k!r}]", v) for k, v in value.items()}
    hint = " (convert it with .tolist())" if isinstance(value, np.ndarray) else ""
    raise TypeError(f"parameter {name}={value!r} of type {type(value).__name__} cannot be passed to a notebook: "
                    f"papermill writes parameters as Python literals (None, bool, int, float, str, list, dict){hint}")


def _check_type(notebook: str, key: str, value, info: dict):
    accepts = _declared_accepts(str(info.get("inferred_type_name") or "None"))
    if accepts is None:
        return value
    types, literals = accepts
    declared = info.get("inferred_type_name")
    if literals and any(type(value) is type(lit) and value == lit for lit in literals):
        return value
    if value is None:
        if _NONE in types:
            return value
    elif isinstance(value, bool):
        if bool in types:
            return value
    elif isinstance(value, int):
        if int in types:
            return value
        if float in types:  # an int where a float is declared: accepted as that float
            return float(value)
    elif type(value) in types:  # float, str, list, dict
        return value
    hint = ""
    if isinstance(value, str) and (int in types or float in types):
        try:
            float(value)
            hint = " (write the number without quotes)"
        except ValueError:
            pass
    elif isinstance(value, float) and int in types and math.isfinite(value) and value == int(value):
        hint = f" (pass {int(value)})"
    allowed = f"one of {literals!r}" if literals and not types else f"declared {declared}"
    raise TypeError(f"parameter {key!r} of notebook {notebook!r} is {allowed}, got {value!r} "
                    f"({type(value).__name__}){hint}")


def check_parameters(path, parameters: Mapping | None) -> dict:
    """Check ``parameters`` against the notebook's ``parameters`` cell; return them as papermill will get them.

    * Every name must be declared in the cell (as papermill's
      ``inspect_notebook`` reads it, plus annotated names its parser skips);
      an unknown name raises ``ValueError`` naming it, the closest declared
      name and every declared one.  A notebook without a ``parameters`` cell
      takes none.
    * A value must fit the name's annotation (``int``, ``float``, ``str``,
      ``bool``, ``list``, ``dict``, ``Optional[...]``, ``X | None``,
      ``Literal[...]``), else ``TypeError``: an int is accepted (as a float)
      where ``float`` is declared; a bool is not an int.  Names without an
      annotation, or with one naming another class, are not type-checked.
    * Values are made plain first: numpy scalars become Python numbers,
      tuples lists, paths strings; any other object (an array, a set) raises
      ``TypeError``, since papermill would pass the text of its ``str()``.
    """
    path = _notebook_path(path)
    if parameters is None or (isinstance(parameters, Mapping) and not parameters):
        _read_notebook(path)
        return {}
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict of name: value, got {type(parameters).__name__}")
    bad = [k for k in parameters if not isinstance(k, str)]
    if bad:
        raise TypeError(f"parameter names must be strings, got {bad[0]!r}")
    declared, has_cell = _declared(path)
    unknown = [k for k in parameters if k not in declared]
    if unknown:
        if not has_cell:
            raise ValueError(f"notebook {path.name!r} has no cell tagged 'parameters', so it takes no parameters; "
                             f"got {', '.join(map(repr, unknown))}")
        names = sorted(declared)
        parts = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1, cutoff=0.6)
            parts.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
        raise ValueError(f"notebook {path.name!r} does not declare the parameter(s) {', '.join(parts)}; its "
                         f"parameters cell declares: {', '.join(names) if names else 'nothing'}")
    return {k: _check_type(path.name, k, _plain(k, v), declared[k]) for k, v in parameters.items()}


def execute_notebook(path, output, parameters: dict | None = None, *, cwd=None, timeout: float | None = 1800,
                     log_output: bool = False, threads: int | None = 1):
    """Execute ``path`` with ``parameters`` into ``output`` through papermill; return the executed notebook.

    The parameters are checked by :func:`check_parameters` before a kernel
    starts (unknown names: ``ValueError``; values that disagree with the
    declared annotation: ``TypeError``).  Uses papermill's API with
    ``shutdown_kernel="immediate"`` (graceful shutdown intermittently costs
    seconds) and no progress bar.  ``timeout`` (seconds per cell, > 0, or
    None) bounds each cell.  ``threads`` sets ``OMP_NUM_THREADS`` for the
    kernel (1 by default, so parallel kernels on a small machine do not
    oversubscribe the cores; None leaves it alone).  ``cwd`` (default: the
    notebook's folder) is given to the kernel alone, not through papermill's
    ``cwd``, which changes the whole process's working directory and so breaks
    notebooks run from several threads at once.  A failing cell raises
    ``papermill.PapermillExecutionError``; the output notebook (with the
    traceback) is still written.
    """
    from ._checks import check_int, check_real

    path = _notebook_path(path)
    if not isinstance(output, (str, os.PathLike)):
        raise TypeError(f"output must be a path (str or Path) for the executed notebook, got {output!r}")
    out = Path(output)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output={str(out)!r}: its folder {str(out.parent)!r} does not exist")
    if out.is_dir():
        raise ValueError(f"output={str(out)!r} is a folder; give the path of the executed notebook file")
    if out.exists() and out.resolve() == path.resolve():
        raise ValueError(f"output={str(out)!r} is the input notebook itself; executing would overwrite it: give "
                         "another path")
    if cwd is not None:
        if not isinstance(cwd, (str, os.PathLike)):
            raise TypeError(f"cwd must be a folder path (str or Path) or None, got {cwd!r}")
        if not Path(cwd).is_dir():
            raise FileNotFoundError(f"cwd={str(cwd)!r} is not an existing folder (the kernel's working directory)")
    if timeout is not None:
        timeout = check_real("timeout", timeout, low=0.0, low_open=True)
    if threads is not None:
        threads = check_int("threads", threads, low=1)
    if not isinstance(log_output, bool):
        raise TypeError(f"log_output must be True or False, got {log_output!r}")
    params = check_parameters(path, parameters)

    import papermill as pm

    old = os.environ.get("OMP_NUM_THREADS")
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        return pm.execute_notebook(
            str(path), str(out), parameters=params, kernel_name=NOTEBOOK_KERNEL,
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
