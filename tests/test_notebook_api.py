"""grlib.notebook: parameters checked against the notebook before a kernel starts; one real run."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grlib.notebook import check_parameters, execute_notebook, notebook_parameters, notebooks_dir

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
NB05 = notebooks_dir() / "05_training_run.ipynb"

PARAMETERS_CELL = '''lam: float = 1.0  # GR's emphasis mode
epochs: int = 2  # epochs
label: str = "run"  # a name
tag: str | None = None  # papermill's parser skips this line; the name is declared all the same
kind: Literal["a", "b"] = "a"  # one of two
sizes: list = [1]  # widths
flag: bool = False  # a switch
extra = None  # no annotation: any value
out: str = "seen.json"  # where the last cell writes what it saw
'''
REPORT_CELL = '''import json
json.dump({k: [repr(v), type(v).__name__] for k, v in
           dict(lam=lam, epochs=epochs, label=label, tag=tag, kind=kind, sizes=sizes, flag=flag, extra=extra).items()},
          open(out, "w"))
'''


def _notebook(path: Path, parameters_cell: str | None = PARAMETERS_CELL) -> Path:
    cells = [new_code_cell("from typing import Literal")]
    if parameters_cell is not None:
        cells.append(new_code_cell(parameters_cell, metadata={"tags": ["parameters"]}))
    cells.append(new_code_cell(REPORT_CELL if parameters_cell is not None else "x = 1"))
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC}), str(path))
    return path


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if papermill is ever asked to execute (so a refusal provably comes before any kernel)."""
    import papermill

    def refuse(*args, **kwargs):
        raise AssertionError("papermill.execute_notebook was called: a kernel would have started")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


# -- B09: a mistyped parameter ---------------------------------------------------------------------
def test_B09_unknown_parameter_refused_before_a_kernel_starts(tmp_path, no_kernel):
    """`lamda=5` for notebook 05 used to run every cell on the defaults with only a log warning."""
    out = tmp_path / "out.ipynb"
    with pytest.raises(ValueError) as info:
        execute_notebook(NB05, out, {"lamda": 5, "epochs": 1})
    msg = str(info.value)
    assert msg.startswith("notebook '05_training_run.ipynb' does not declare the parameter(s) 'lamda' "
                          "(did you mean 'lam'?); its parameters cell declares: ")
    declared = msg.split("declares: ")[1].split(", ")
    assert declared == sorted(notebook_parameters(NB05)) and "lam" in declared and "epochs" in declared
    assert not out.exists()  # papermill writes the output notebook before it starts the kernel


def test_several_unknown_parameters_and_no_close_match(tmp_path, no_kernel):
    nb = _notebook(tmp_path / "nb.ipynb")
    with pytest.raises(ValueError, match=r"does not declare the parameter\(s\) 'epoch' \(did you mean 'epochs'\?\), "
                                         r"'zzz'; its parameters cell declares: epochs, extra, flag, kind, label, "
                                         r"lam, out, sizes, tag$"):
        execute_notebook(nb, tmp_path / "o.ipynb", {"epoch": 3, "zzz": 1, "lam": 2.0})


def test_notebook_without_parameters_cell_takes_none(tmp_path, no_kernel):
    nb = _notebook(tmp_path / "plain.ipynb", parameters_cell=None)
    with pytest.raises(ValueError, match=r"notebook 'plain.ipynb' has no cell tagged 'parameters', so it takes no "
                                         r"parameters; got 'lam'"):
        execute_notebook(nb, tmp_path / "o.ipynb", {"lam": 1.0})
    assert check_parameters(nb, None) == {} == check_parameters(nb, {})


# -- values against the declared annotations -------------------------------------------------------
@pytest.mark.parametrize("params,match", [
    ({"epochs": "3"}, r"parameter 'epochs' of notebook 'nb.ipynb' is declared int, got '3' \(str\) \(write the number "
                      r"without quotes\)"),
    ({"epochs": 3.0}, r"'epochs' .* is declared int, got 3.0 \(float\) \(pass 3\)"),
    ({"epochs": True}, r"'epochs' .* is declared int, got True \(bool\)"),
    ({"lam": "0.5"}, r"'lam' .* is declared float, got '0.5' \(str\) \(write the number without quotes\)"),
    ({"lam": None}, r"'lam' .* is declared float, got None"),
    ({"flag": 1}, r"'flag' .* is declared bool, got 1 \(int\)"),
    ({"label": 3}, r"'label' .* is declared str, got 3 \(int\)"),
    ({"tag": 3}, r"'tag' .* is declared str \| None, got 3 \(int\)"),
    ({"kind": "c"}, r"'kind' .* is one of \['a', 'b'\], got 'c' \(str\)"),
    ({"sizes": 3}, r"'sizes' .* is declared list, got 3 \(int\)"),
])
def test_value_of_the_wrong_type_refused_before_a_kernel_starts(tmp_path, no_kernel, params, match):
    nb = _notebook(tmp_path / "nb.ipynb")
    with pytest.raises(TypeError, match=match):
        execute_notebook(nb, tmp_path / "o.ipynb", params)


def test_values_papermill_would_turn_into_text_are_refused_or_made_plain(tmp_path, no_kernel):
    nb = _notebook(tmp_path / "nb.ipynb")
    with pytest.raises(TypeError, match=r"parameter sizes=array\(\[1, 2\]\) of type ndarray cannot be passed to a "
                                        r"notebook: papermill writes parameters as Python literals .*\.tolist\(\)"):
        execute_notebook(nb, tmp_path / "o.ipynb", {"sizes": np.array([1, 2])})
    with pytest.raises(TypeError, match=r"parameter extra=\{1, 2\} of type set cannot be passed"):
        execute_notebook(nb, tmp_path / "o.ipynb", {"extra": {1, 2}})
    with pytest.raises(TypeError, match=r"parameter extra: dict keys must be strings .*got 1"):
        execute_notebook(nb, tmp_path / "o.ipynb", {"extra": {1: "a"}})
    with pytest.raises(TypeError, match=r"parameter names must be strings, got 1"):
        execute_notebook(nb, tmp_path / "o.ipynb", {1: 2})
    with pytest.raises(TypeError, match=r"parameters must be a dict of name: value, got list"):
        execute_notebook(nb, tmp_path / "o.ipynb", [("lam", 1.0)])
    plain = check_parameters(nb, {"lam": 2, "epochs": np.int64(3), "sizes": (4, (5, 6)), "label": tmp_path / "x",
                                  "flag": np.bool_(True), "extra": {"k": np.float32(0.5)}, "tag": "t", "kind": "b"})
    assert plain == {"lam": 2.0, "epochs": 3, "sizes": [4, [5, 6]], "label": str(tmp_path / "x"), "flag": True,
                     "extra": {"k": 0.5}, "tag": "t", "kind": "b"}
    assert [type(plain[k]) for k in ("lam", "epochs", "flag")] == [float, int, bool]


def test_paths_and_options_checked_before_a_kernel_starts(tmp_path, no_kernel):
    nb = _notebook(tmp_path / "nb.ipynb")
    with pytest.raises(FileNotFoundError, match=r"notebook path='.*missing.ipynb' does not exist"):
        execute_notebook(tmp_path / "missing.ipynb", tmp_path / "o.ipynb")
    with pytest.raises(FileNotFoundError, match=r"notebook path='.*' is a folder, not a notebook file"):
        execute_notebook(tmp_path, tmp_path / "o.ipynb")
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    with pytest.raises(ValueError, match=r"notebook path='.*broken.ipynb' cannot be read as a Jupyter notebook "
                                         r"\(NotJSONError"):
        execute_notebook(tmp_path / "broken.ipynb", tmp_path / "o.ipynb")
    with pytest.raises(FileNotFoundError, match=r"output='.*nowhere/o.ipynb': its folder '.*nowhere' does not exist"):
        execute_notebook(nb, tmp_path / "nowhere" / "o.ipynb")
    with pytest.raises(ValueError, match=r"output='.*' is a folder; give the path of the executed notebook file"):
        execute_notebook(nb, tmp_path)
    with pytest.raises(ValueError, match=r"output='.*nb.ipynb' is the input notebook itself"):
        execute_notebook(nb, tmp_path / "." / "nb.ipynb")
    with pytest.raises(FileNotFoundError, match=r"cwd='.*nodir' is not an existing folder"):
        execute_notebook(nb, tmp_path / "o.ipynb", cwd=tmp_path / "nodir")
    with pytest.raises(ValueError, match=r"timeout=0.0 is outside the allowed range \(0.0, inf\]"):
        execute_notebook(nb, tmp_path / "o.ipynb", timeout=0)
    with pytest.raises(ValueError, match=r"threads=0 is too small"):
        execute_notebook(nb, tmp_path / "o.ipynb", threads=0)
    with pytest.raises(TypeError, match=r"log_output must be True or False"):
        execute_notebook(nb, tmp_path / "o.ipynb", log_output="yes")
    assert not (tmp_path / "o.ipynb").exists()


# -- a real kernel ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_checked_parameters_reach_the_kernel_as_declared(tmp_path):
    """An int for a float arrives as a float; a name papermill's parser skips (``str | None``) still works."""
    nb = _notebook(tmp_path / "nb.ipynb")
    work = tmp_path / "work"
    work.mkdir()
    executed = execute_notebook(nb, tmp_path / "out.ipynb", {"lam": 3, "epochs": np.int64(4), "tag": "x",
                                                             "kind": "b", "sizes": (8, 16), "extra": [1, "two"]},
                                cwd=work)
    seen = json.loads((work / "seen.json").read_text())
    assert seen == {"lam": ["3.0", "float"], "epochs": ["4", "int"], "label": ["'run'", "str"],
                    "tag": ["'x'", "str"], "kind": ["'b'", "str"], "sizes": ["[8, 16]", "list"],
                    "flag": ["False", "bool"], "extra": ["[1, 'two']", "list"]}
    assert executed.metadata.papermill.parameters["lam"] == 3.0
    assert (tmp_path / "out.ipynb").is_file()


def test_syntax_trees_are_built_one_thread_at_a_time(monkeypatch):
    """The report runner checks notebooks in several threads; CPython 3.11 can fail two concurrent AST builds
    ("SystemError: AST constructor recursion depth mismatch", seen once in CI), so grlib builds them under a lock."""
    import ast
    import threading
    import time
    from pathlib import Path

    from grlib import _checks

    real_parse, state, lock = ast.parse, {"now": 0, "most": 0}, threading.Lock()

    def slow_parse(*args, **kwargs):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.01)
        try:
            return real_parse(*args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(ast, "parse", slow_parse)
    threads = [threading.Thread(target=lambda: [_checks.parse_python("x: int = 1") for _ in range(5)] +
                                [_checks.literal_value("[1, 2]") for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert state["most"] == 1
    # and no grlib module builds a tree outside the lock
    root = Path(_checks.__file__).parent
    offenders = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if p.name != "_checks.py"
                 and ("ast.parse(" in p.read_text() or "ast.literal_eval(" in p.read_text())]
    assert offenders == []
