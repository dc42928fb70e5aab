"""Batch-report specs: a YAML file -> a validated, expanded list of notebook runs.

A spec names the notebook(s) to run, the parameters every run shares
(``base``), the grid to expand and the seeds.  Everything is checked *before*
anything runs; a bad spec raises :class:`SpecError` with a message naming the
problem.  Example (``grlib/specs/default.yaml`` is the full one)::

    name: digits-noise                # report folder: <output>/<name>/
    title: GR vs CE and GCE on digits
    notebooks: [05_training_run]      # grlib's notebooks/ (or paths relative to this file)
    base:                             # parameters every run shares
      dataset: digits
      epochs: 100
    grid:                             # cartesian product of the lists
      noise_rate: [0.0, 0.2, 0.4]
    methods:                          # alternative sub-grids, one per method
      ce: {loss: ce}
      gce: {loss: gce, q: 0.7}
      gr:                             # a list of sub-grids: their union
        - {loss: gr, lam: 0.5, beta: 8}
        - {loss: gr, lam: [1, 2], beta: 12}
    seeds: [0, 1]                     # or a count: 2 means [0, 1]

Runs = notebooks x (union of the method sub-grids) x (the grid, or the union of
its alternatives when ``grid`` is a list) x seeds.  In a grid, a list gives the
alternatives of an axis and a scalar a fixed value (to pass a list *value*,
wrap it: ``hidden: [[256, 256]]``).  Every parameter must be declared in each
notebook's cell tagged ``parameters`` (papermill's ``inspect_notebook``) and
match its annotated type (an int is accepted, and converted, where a float is
declared).  ``metrics_path`` and ``figures_dir`` are set by the runner for
every run, and ``history_path`` for a notebook that declares it; ``progress``
defaults to False.  ``runs_per_kernel: 3`` executes three consecutive runs
(in spec order: a setting's seeds) in one kernel, for a notebook with a
``runs`` parameter (notebook 05): the kernel start and imports are paid once.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .._checks import literal_value

__all__ = ["SpecError", "ReportSpec", "NotebookRef", "Run", "load_spec", "parse_spec", "run_id_for",
           "RUNNER_PARAMETERS", "OPTIONAL_RUNNER_PARAMETERS", "SPEC_KEYS", "builtin_specs"]

#: Parameters the runner sets for every run (each report notebook must declare them).
RUNNER_PARAMETERS = ("metrics_path", "figures_dir")

#: Parameters the runner sets when a notebook declares them: ``history_path`` (a per-epoch CSV the
#: report draws curves from) and ``runs`` (several runs in one kernel, see ``runs_per_kernel``).
OPTIONAL_RUNNER_PARAMETERS = ("history_path", "runs")

#: Top-level keys of a spec and what they mean.
SPEC_KEYS = {
    "name": "report folder name (default: the spec file's stem)",
    "title": "a heading for the report",
    "description": "a paragraph for the report",
    "notebooks": "notebook name(s) in grlib's notebooks/ or paths relative to the spec",
    "base": "parameters shared by every run",
    "grid": "axes to expand (a mapping), or a list of such mappings (their union)",
    "methods": "method name -> sub-grid (a mapping) or list of sub-grids",
    "seeds": "list of seeds, or a count n meaning 0..n-1 (default [0])",
    "output": "folder that holds the report folder (default: reports, relative to the working directory)",
    "timeout": "per-cell execution timeout in seconds (default 1800; null: none)",
    "runs_per_kernel": "runs executed in one kernel, consecutive in spec order (default 1; more needs a notebook "
                       "with a 'runs' parameter): the kernel start and imports are paid once per group",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_RUN_ID = 120


class SpecError(ValueError):
    """The spec is invalid; the message names the problem (and the spec file)."""


@dataclass(frozen=True)
class NotebookRef:
    """A notebook a spec runs: its name (file stem), path, declared parameters and content digest."""

    name: str
    path: Path
    parameters: Mapping[str, dict]
    digest: str  # sha256 of the cells' types and sources and the kernel name (outputs and metadata ignored)


@dataclass(frozen=True)
class Run:
    """One notebook execution of a sweep."""

    run_id: str
    notebook: NotebookRef
    method: str                 # the method's name in the spec ("" without methods)
    variant: dict               # the method sub-grid's values for this run (e.g. loss, lam, beta)
    point: dict                 # the grid's values for this run (e.g. noise_rate)
    seed: int | None
    parameters: dict            # everything passed to the notebook except the runner's paths

    @property
    def label(self) -> str:
        """The method variant, e.g. ``gr(lam=1, beta=12)``: the method name and its own values but ``loss``."""
        inner = {k: v for k, v in self.variant.items() if not (k == "loss" and v == self.method)}
        name = self.method or self.notebook.name
        if not inner:
            return name
        return f"{name}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in inner.items()) + ")"

    def cache_key(self, grlib_fingerprint: str) -> str:
        """Changes when the notebook's content, the parameters or grlib change."""
        payload = {"notebook": self.notebook.digest, "parameters": self.parameters, "grlib": grlib_fingerprint}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ReportSpec:
    """A validated spec.  :meth:`runs` gives the expanded runs (checked when the spec was parsed)."""

    name: str
    title: str
    description: str
    notebooks: tuple[NotebookRef, ...]
    base: dict
    grid: tuple[dict, ...]                  # alternatives; each maps axis -> list of values
    methods: dict                           # name -> tuple of sub-grids (axis -> list of values)
    seeds: tuple[int, ...] | None           # None: the notebooks have no seed parameter and none was given
    output: Path
    timeout: float | None
    text: str                               # the spec as written (YAML)
    runs_per_kernel: int = 1
    source: Path | None = None
    _runs: tuple[Run, ...] = field(default=(), repr=False)

    def runs(self) -> list[Run]:
        return list(self._runs)

    @property
    def grid_axes(self) -> list[str]:
        """The grid's parameter names, in spec order."""
        return list(dict.fromkeys(k for g in self.grid for k in g))

    @property
    def varying(self) -> list[str]:
        """Grid axes that take more than one value over the sweep."""
        vals: dict[str, set] = {}
        for r in self._runs:
            for k in self.grid_axes:
                vals.setdefault(k, set()).add(json.dumps(r.parameters.get(k), sort_keys=True))
        return [k for k in self.grid_axes if len(vals.get(k, ())) > 1]

    def report_dir(self, out=None) -> Path:
        return Path(out if out is not None else self.output) / self.name


# -- loading -----------------------------------------------------------------------
def builtin_specs() -> dict[str, Path]:
    """The specs shipped with grlib (``grlib/specs/*.yaml``) by name."""
    folder = Path(__file__).resolve().parents[1] / "specs"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_spec(spec, *, base_dir=None) -> ReportSpec:
    """Load and validate a spec from a YAML file path, a built-in spec name or a dict.

    Relative notebook paths resolve against the spec file's folder (``base_dir``
    or the working directory for a dict), then grlib's ``notebooks/`` folder.
    Raises :class:`SpecError` naming the problem.
    """
    import yaml

    if isinstance(spec, ReportSpec):
        return spec
    if isinstance(spec, Mapping):
        text = yaml.safe_dump(dict(spec), sort_keys=False)
        return parse_spec(dict(spec), text=text, source=None, base_dir=Path(base_dir or Path.cwd()))
    if not isinstance(spec, (str, Path)):
        raise SpecError(f"a spec is a YAML file path or a dict, got {type(spec).__name__}")
    path = Path(spec)
    if not path.is_file() and str(spec) in builtin_specs():
        path = builtin_specs()[str(spec)]
    if not path.is_file():
        raise SpecError(f"spec file {str(spec)!r} not found (built-in specs: {', '.join(builtin_specs())})")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: bad YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping (name:, notebooks:, base:, grid:, ...), "
                        f"got {type(data).__name__}")
    try:
        return parse_spec(data, text=text, source=path, base_dir=Path(base_dir or path.parent))
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def parse_spec(data: dict, *, text: str, source: Path | None, base_dir: Path) -> ReportSpec:
    """Validate a spec mapping and expand its runs (see :func:`load_spec`)."""
    unknown = sorted(set(map(str, data)) - set(SPEC_KEYS))
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} at the top of the spec; allowed: {sorted(SPEC_KEYS)}")

    name = data.get("name", source.stem if source is not None else None)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SpecError(f"name={name!r} must be a folder name of letters, digits, '.', '_' or '-'")
    title = _text_field(data, "title", default=name)
    description = _text_field(data, "description", default="")
    output = data.get("output", "reports")
    if not isinstance(output, str) or not output.strip():
        raise SpecError(f"output={output!r} must be a folder path")
    timeout = data.get("timeout", 1800)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise SpecError(f"timeout={timeout!r} must be a positive number of seconds or null")

    per_kernel = data.get("runs_per_kernel", 1)
    if isinstance(per_kernel, bool) or not isinstance(per_kernel, int) or per_kernel < 1:
        raise SpecError(f"runs_per_kernel={per_kernel!r} must be an integer >= 1")

    notebooks = _notebooks(data.get("notebooks"), base_dir)
    base = data.get("base", {}) or {}
    if not isinstance(base, dict):
        raise SpecError(f"base must be a mapping of parameter: value, got {type(base).__name__}")
    grid = _grid_alternatives(data["grid"], "grid") if "grid" in data else ({},)
    methods = _methods(data["methods"]) if "methods" in data else None
    seeds = _seeds(data["seeds"]) if "seeds" in data else None

    # where each parameter is set: no parameter in two places
    places = {"base": set(base)}
    places["grid"] = {k for g in grid for k in g}
    places["methods"] = {k for subs in (methods or {}).values() for g in subs for k in g}
    for a, b in itertools.combinations(places, 2):
        both = sorted(places[a] & places[b])
        if both:
            raise SpecError(f"parameter(s) {both} set both in {a} and in {b}; set each in one place")
    for where, keys in places.items():
        if "seed" in keys:
            raise SpecError(f"'seed' is set in {where}; give seeds with the top-level 'seeds:' key")
        runner = sorted(keys & set(RUNNER_PARAMETERS + OPTIONAL_RUNNER_PARAMETERS))
        if runner:
            raise SpecError(f"{runner} in {where} are set by the runner for every run (each run's files "
                            f"go to <report>/runs/); remove them from the spec")
    if per_kernel > 1:
        for nb in notebooks:
            if "runs" not in nb.parameters:
                raise SpecError(f"runs_per_kernel={per_kernel} needs notebooks that take a 'runs' parameter (a list "
                                f"of per-run settings); notebook {nb.name!r} has none")

    for nb in notebooks:
        missing = [p for p in RUNNER_PARAMETERS if p not in nb.parameters]
        if missing:
            raise SpecError(f"notebook {nb.name!r} ({nb.path}) does not declare {missing} in its parameters "
                            f"cell; a report notebook must take metrics_path and figures_dir")
    if seeds is None and all("seed" in nb.parameters for nb in notebooks):
        seeds = (0,)
    if seeds is not None:
        for nb in notebooks:
            if "seed" not in nb.parameters:
                raise SpecError(f"seeds are given but notebook {nb.name!r} has no 'seed' parameter")

    runs = _expand(notebooks, base, grid, methods, seeds)
    if not runs:  # pragma: no cover - every empty axis is refused above
        raise SpecError("the spec expands to no runs")
    return ReportSpec(name=name, title=title, description=description, notebooks=tuple(notebooks), base=base,
                      grid=tuple(grid), methods=dict(methods or {}), seeds=seeds, output=Path(output),
                      timeout=None if timeout is None else float(timeout), text=text, source=source,
                      runs_per_kernel=per_kernel, _runs=tuple(runs))


# -- pieces --------------------------------------------------------------------------
def _text_field(data, key, default):
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise SpecError(f"{key} must be text, got {value!r}")
    return value.strip()


def _notebook_digest(path: Path) -> str:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    content = [[c.cell_type, c.source] for c in nb.cells]
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    return hashlib.sha256(json.dumps([kernel, content]).encode()).hexdigest()


def _available_notebooks() -> list[str]:
    from ..notebook import notebooks_dir

    return sorted(p.stem for p in notebooks_dir().glob("*.ipynb"))


def _resolve_notebook(entry: str, base_dir: Path) -> Path | None:
    from ..notebook import notebooks_dir

    p = Path(entry).expanduser()
    names = [p] if p.suffix == ".ipynb" else [p.with_name(p.name + ".ipynb")]
    roots = [Path()] if p.is_absolute() else [base_dir, notebooks_dir()]
    for root in roots:
        for n in names:
            if (root / n).is_file():
                return (root / n).resolve()
    return None


def _notebooks(value, base_dir: Path) -> list[NotebookRef]:
    if value is None:
        raise SpecError("no notebooks: give 'notebooks: [name, ...]' (available: "
                        f"{', '.join(_available_notebooks()) or 'none'})")
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"notebooks must be a name or a non-empty list of names, got {value!r}")
    refs, seen = [], set()
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise SpecError(f"notebook entries are names or paths, got {entry!r}")
        path = _resolve_notebook(entry, base_dir)
        if path is None:
            raise SpecError(f"unknown notebook {entry!r}: not found next to the spec ({base_dir}) nor in grlib's "
                            f"notebooks (available: {', '.join(_available_notebooks()) or 'none'})")
        if path.stem in seen:
            raise SpecError(f"notebook {path.stem!r} is listed twice")
        seen.add(path.stem)
        from ..notebook import notebook_parameters

        try:
            params = notebook_parameters(path)
        except Exception as exc:  # a broken notebook file
            raise SpecError(f"notebook {entry!r} ({path}) cannot be read: {exc}") from None
        if not params:
            raise SpecError(f"notebook {entry!r} ({path}) has no cell tagged 'parameters' (or it declares nothing)")
        refs.append(NotebookRef(name=path.stem, path=path, parameters=params, digest=_notebook_digest(path)))
    return refs


def _subgrid(value, where: str) -> dict:
    """A mapping axis -> non-empty list of values (a scalar is a one-value axis)."""
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a mapping of parameter: value or [values], got {value!r}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise SpecError(f"{where}: parameter names are text, got {k!r}")
        values = v if isinstance(v, list) else [v]
        if not values:
            raise SpecError(f"{where}: axis {k!r} is an empty list, so the grid would expand to no runs")
        out[k] = values
    return out


def _grid_alternatives(value, where: str) -> tuple[dict, ...]:
    if isinstance(value, list):
        if not value:
            raise SpecError(f"{where} is an empty list of alternatives, so it would expand to no runs")
        return tuple(_subgrid(g, f"{where}[{i}]") for i, g in enumerate(value))
    if value is None or value == {}:
        raise SpecError(f"{where} is empty; give at least one parameter (or leave '{where}' out)")
    return (_subgrid(value, where),)


def _methods(value) -> dict:
    if not isinstance(value, dict) or not value:
        raise SpecError(f"methods must be a non-empty mapping of method name: sub-grid, got {value!r}")
    out = {}
    for name, sub in value.items():
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"method names are non-empty text, got {name!r}")
        if sub is None or sub == {}:  # a method without parameters of its own
            out[name] = ({},)
        else:
            out[name] = _grid_alternatives(sub, f"methods.{name}")
    return out


def _seeds(value) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SpecError(f"seeds={value} must be a positive count or a list of seeds")
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise SpecError(f"seeds must be a non-empty list of integers or a count, got {value!r}")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SpecError(f"seeds must be integers >= 0, got {s!r}")
    if len(set(value)) != len(value):
        raise SpecError(f"seeds {value} repeat a seed")
    return tuple(value)


def _product(sub: dict) -> list[dict]:
    keys = list(sub)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sub[k] for k in keys))]


# -- parameter types ---------------------------------------------------------------------
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": list, "dict": dict,
               "none": type(None), "nonetype": type(None)}


def _declared_types(info: dict) -> set | None:
    """The Python types a notebook parameter accepts, from its annotation or default; None: unknown."""
    name = str(info.get("inferred_type_name") or "None").strip()
    if name == "None":  # no annotation: the type of the default literal
        try:
            default = literal_value(str(info.get("default")))
        except (ValueError, SyntaxError):
            return None
        if default is None:
            return None
        return {type(default) if not isinstance(default, tuple) else list}
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", name)
    parts = [m.group(1), "None"] if m else re.split(r"\s*\|\s*", name)
    types = set()
    for part in parts:
        base = re.split(r"\[", part.strip(), maxsplit=1)[0].strip().lower().replace("typing.", "")
        if base not in _TYPE_NAMES:
            return None
        types.add(_TYPE_NAMES[base])
    return types


def _check_value(nb: NotebookRef, key: str, value, where: str):
    """Check ``value`` against the notebook's declared type; return it (an int becomes a float where declared)."""
    types = _declared_types(nb.parameters[key])
    if types is None:
        return value
    if value is None:
        if type(None) in types:
            return None
    elif isinstance(value, bool):
        if bool in types:
            return value
    elif isinstance(value, int) and int in types:
        return value
    elif isinstance(value, (int, float)) and float in types:
        return float(value)
    elif isinstance(value, str) and str in types:
        return value
    elif isinstance(value, list) and list in types:
        return value
    elif isinstance(value, dict) and dict in types:
        return value
    declared = nb.parameters[key].get("inferred_type_name")
    hint = ""
    if isinstance(value, bool) and str in types:
        hint = " (YAML reads yes/no/on/off/true/false as booleans: quote the text)"
    elif isinstance(value, str) and (int in types or float in types) and _is_number(value):
        hint = " (write the number without quotes)"
    elif isinstance(value, list):
        hint = " (a list in a grid gives an axis's alternatives; write a list value as [[...]])"
    raise SpecError(f"{where}: parameter {key!r} of notebook {nb.name!r} is declared {declared}, "
                    f"got {value!r} ({type(value).__name__}){hint}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- expansion -------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _slug(v) -> str:
    return re.sub(r"[^A-Za-z0-9.+]+", "-", _fmt(v)).strip("-") or "x"


def run_id_for(notebook: str, items: list[tuple[str, Any]]) -> str:
    """``<notebook>__k-v__...``; over 120 characters: cut, plus a hash of the whole id."""
    rid = "__".join([notebook] + [f"{k}-{_slug(v)}" for k, v in items])
    if len(rid) > _MAX_RUN_ID:
        digest = hashlib.sha1(rid.encode()).hexdigest()[:10]
        rid = rid[: _MAX_RUN_ID - 12].rstrip("_-") + "__" + digest
    return rid


def _expand(notebooks, base, grid, methods, seeds) -> list[Run]:
    method_variants = [("", {})] if methods is None else [
        (name, v) for name, subs in methods.items() for sub in subs for v in _product(sub)]
    points = [p for g in grid for p in _product(g)]
    runs, ids = [], {}
    for nb in notebooks:
        declared = set(nb.parameters)
        for where, keys in (("base", base), ("grid", {k for p in points for k in p}),
                            ("methods", {k for _, v in method_variants for k in v})):
            unknown = sorted(set(keys) - declared)
            if unknown:
                raise SpecError(f"unknown parameter(s) {unknown} in {where} for notebook {nb.name!r}; its "
                                f"parameters cell declares: {sorted(declared)}")
        base_checked = {k: _check_value(nb, k, v, "base") for k, v in base.items()}
        for method, variant in method_variants:
            where_m = f"methods.{method}" if method else "methods"
            v_checked = {k: _check_value(nb, k, v, where_m) for k, v in variant.items()}
            for point in points:
                p_checked = {k: _check_value(nb, k, v, "grid") for k, v in point.items()}
                for seed in (seeds if seeds is not None else (None,)):
                    params = {**base_checked, **v_checked, **p_checked}
                    items = list(v_checked.items()) + list(p_checked.items())
                    if seed is not None:
                        params["seed"] = _check_value(nb, "seed", seed, "seeds")
                        items.append(("seed", seed))
                    if "progress" in declared and "progress" not in params:
                        params["progress"] = False
                    rid = run_id_for(nb.name, items)
                    if rid in ids:
                        raise SpecError(f"two runs would get the same id {rid!r} (method {ids[rid] or '-'!r} and "
                                        f"{method or '-'!r}): the methods or grid alternatives overlap")
                    ids[rid] = method
                    runs.append(Run(run_id=rid, notebook=nb, method=method, variant=v_checked, point=p_checked,
                                    seed=seed, parameters=params))
    return runs
