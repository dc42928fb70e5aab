"""Packaging: environment.yml in step with pyproject.toml, the torch pin inside the declared range, the CLI."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name_spec(req: str):
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", req)
    return m.group(1).lower(), m.group(2) or "", m.group(3).strip()


def _pyproject_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in ("notebooks", "dev"):
        reqs += meta["optional-dependencies"][extra]
    out = {}
    for r in reqs:
        name, extras, spec = _name_spec(r)
        if name == "dask" and "distributed" in extras:
            out["distributed"] = spec
        out[name] = spec
    return out


def _environment_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-e") or item in ("python=3.11", "pip", "nodejs"):
                continue
            name, _, spec = _name_spec(item)
            out[name] = spec
    return out


def test_environment_yml_matches_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_torch_pin_lies_in_declared_range():
    pin = re.search(r"^torch==([\d.]+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    spec = _pyproject_requirements()["torch"]
    low = re.match(r">=([\d.]+)", spec).group(1)
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(pin) >= as_tuple(low)


def test_cli_help_and_bad_input():
    out = subprocess.run([sys.executable, "-m", "grlib.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "compare" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "grlib.cli", "compare", "--noise-rate", "1.5", "--epochs", "1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "noise_rate=1.5 is outside the allowed range" in bad.stderr


def test_cli_wires_report_and_tune(tmp_path):
    dry = subprocess.run([sys.executable, "-m", "grlib.cli", "report", "tiny", "--dry-run", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "05_training_run" in dry.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnotebooks: [no_such_notebook]\n")
    out = subprocess.run([sys.executable, "-m", "grlib.cli", "report", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and "no_such_notebook" in out.stderr
    tune = subprocess.run([sys.executable, "-m", "grlib.cli", "tune", "--help"], capture_output=True, text=True)
    assert tune.returncode == 0 and "--port" in tune.stdout
