"""A report folder to send a colleague: no absolute path or host name in any of its files.

The runner passes every file it writes through these helpers:

* :func:`scrub_text` replaces the machine's own places (the report folder,
  the run's temporary folder, grlib's source tree, the Python installation,
  the home and temporary folders) by short placeholders such as ``<grlib>``
  or ``<python>``, and the host name by ``<host>``.  Tracebacks and warnings
  in an executed notebook stay readable (``<python>/site-packages/torch/...``)
  without telling where the run happened.
* :func:`portable_notebook` rewrites an executed notebook in place:
  papermill's ``input_path``/``output_path`` (absolute when papermill ran
  it) become the notebook's file names, and every text output is scrubbed.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
from pathlib import Path

__all__ = ["Scrubber", "scrub_text", "portable_notebook", "absolute_paths_in"]


class Scrubber:
    """Replaces absolute places by placeholders (longest first) and the host name by ``<host>``.

    ``places`` maps an absolute folder to its placeholder; the machine's
    standard places (grlib's source tree, ``sys.prefix``, the temporary and
    home folders) are added after them.
    """

    def __init__(self, places: dict | None = None, *, host: str | None = None):
        import grlib

        pairs: dict[str, str] = {}
        for folder, name in (places or {}).items():
            if folder:
                pairs.setdefault(str(folder), name)
        standard = [(Path(grlib.__file__).resolve().parents[1], "<grlib>"), (sys.prefix, "<python>"),
                    (sys.base_prefix, "<python-base>"), (sys.exec_prefix, "<python>"),
                    (tempfile.gettempdir(), "<tmp>"), (Path.home(), "~")]
        for folder, name in standard:
            pairs.setdefault(str(folder), name)
        # the same folder through symlinks (e.g. /tmp -> /private/tmp) too
        for folder, name in list(pairs.items()):
            try:
                real = os.path.realpath(folder)
            except OSError:  # pragma: no cover
                continue
            pairs.setdefault(real, name)
        # "/" or "" would replace every slash; a placeholder-free root is never a place
        self._pairs = sorted(((k.rstrip("/"), v) for k, v in pairs.items() if len(k.rstrip("/")) > 1),
                             key=lambda kv: -len(kv[0]))
        host = socket.gethostname() if host is None else host
        self._host = re.compile(rf"(?<![\w.-]){re.escape(host)}(?![\w-])") if host and len(host) >= 3 else None

    def __call__(self, text: str) -> str:
        if not isinstance(text, str) or not text:
            return text
        for folder, name in self._pairs:
            if folder in text:
                text = re.sub(rf"{re.escape(folder)}(?=/|\b|$)", lambda _m, n=name: n, text)
        if self._host is not None:
            text = self._host.sub("<host>", text)
        return text


def scrub_text(text: str, places: dict | None = None) -> str:
    """``text`` with absolute places replaced (see :class:`Scrubber`)."""
    return Scrubber(places)(text)


def _scrub_output(out: dict, scrub: Scrubber) -> None:
    kind = out.get("output_type")
    if kind == "stream":
        out["text"] = scrub("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
    elif kind == "error":
        out["evalue"] = scrub(out.get("evalue", ""))
        out["traceback"] = [scrub(line) for line in out.get("traceback", [])]
    elif kind in ("execute_result", "display_data"):
        data = out.get("data", {})
        for mime in list(data):
            if mime.startswith("text/") or mime in ("application/json",):
                value = data[mime]
                if isinstance(value, list):
                    data[mime] = [scrub(v) for v in value]
                elif isinstance(value, str):
                    data[mime] = scrub(value)


def portable_notebook(path, *, input_name: str, output_name: str, scrub: Scrubber) -> None:
    """Rewrite an executed notebook in place: relative papermill paths, scrubbed outputs (atomically)."""
    import nbformat

    from ..io import atomic_write_text

    nb = nbformat.read(str(path), as_version=4)
    pm = nb.metadata.get("papermill")
    if pm is not None:
        pm["input_path"] = input_name
        pm["output_path"] = output_name
        if pm.get("exception") and isinstance(pm.get("exception"), str):
            pm["exception"] = scrub(pm["exception"])
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            _scrub_output(out, scrub)
    atomic_write_text(path, nbformat.writes(nb))


_ABS_RE = re.compile(r"(?<![\w.:/<>~-])/(?:home|root|tmp|work|usr|opt|var|private|Users|mnt|srv|data|scratch)"
                     r"(?:/[\w.+-]+)+")


def absolute_paths_in(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Absolute-looking paths in ``text`` (for tests and checks), plus any of ``extra`` found verbatim."""
    found = _ABS_RE.findall(text)
    found += [e for e in extra if e and e in text]
    return sorted(set(found))
