"""The README's own-loop example runs as written (in a temporary working directory)."""
import os
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _section_code(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block, f"no python block under '## {title}'"
    return block.group(1)


def test_own_loop_example_runs(tmp_path, capsys):
    code = _section_code("GR and the recorder in your own loop")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        env: dict = {}
        exec(compile(code, "README.md", "exec"), env)
    finally:
        os.chdir(old)
    result, confidence = env["result"], env["confidence"]
    assert result.epochs_completed == 20 and result.records["p"].shape == (20, len(confidence))
    assert (tmp_path / "runs" / "own-loop" / "run.json").is_file()
    assert np.isfinite(confidence).all() and 0 <= confidence.min() and confidence.max() <= 1
    # with clean digits the model fits nearly every example: mean p of the given label is high
    assert np.median(confidence) > 0.8
    assert "20 epochs recorded" in capsys.readouterr().out
