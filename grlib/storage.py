"""Row-appendable ``.npy`` files: per-example records written epoch by epoch, read back memory-mapped.

A record field of a run is one standard ``.npy`` file of shape ``[rows, n]``
(one row per recorded epoch).  :class:`NpyRows` appends rows with plain file
writes (no memory map is held open while training, so the writer's resident
memory does not grow with the file: measured, a memmap kept open while 100
epochs x 1M float32 values are written grows RSS by ~392 MiB per field) and
rewrites the header's row count in place after each append; the header is
padded to a fixed size so that it never moves.  Any numpy reads the file
(``np.load(path, mmap_mode="r")``).  Rows beyond the count a run's progress
file states are ignored by :func:`grlib.RunResult.load` (a crash between the
append and the progress update leaves at most one unconfirmed row).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["NpyRows", "HEADER_BYTES", "load_rows"]

HEADER_BYTES = 256  # magic + version + length + dict, padded with spaces: room for any [rows, n] shape
_MAGIC = b"\x93NUMPY\x01\x00"


def _header(dtype: np.dtype, rows: int, n: int) -> bytes:
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (int(rows), int(n))}
    text = repr(d).encode("latin1")
    body_len = HEADER_BYTES - len(_MAGIC) - 2
    if len(text) + 1 > body_len:  # pragma: no cover - only for absurd shapes
        raise ValueError(f"npy header too long for shape {(rows, n)}")
    text = text + b" " * (body_len - len(text) - 1) + b"\n"
    return _MAGIC + int(body_len).to_bytes(2, "little") + text


class NpyRows:
    """Append rows of ``n`` values to a ``.npy`` file ``[rows, n]`` of a fixed dtype.

    ``NpyRows.create(path, dtype, n)`` starts an empty file (0 rows);
    ``NpyRows.open(path)`` continues an existing one.  Each :meth:`append`
    opens the file, writes the row at the end, updates the header and closes
    it (``fsync=True`` also forces both to disk).
    """

    def __init__(self, path: Path, dtype: np.dtype, n: int, rows: int):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.n = int(n)
        self.rows = int(rows)

    @classmethod
    def create(cls, path, dtype, n: int) -> "NpyRows":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(_header(dtype, 0, n))
        return cls(path, dtype, n, 0)

    @classmethod
    def open(cls, path) -> "NpyRows":
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 2:
            raise ValueError(f"{path} is not a [rows, n] record file (shape {arr.shape})")
        out = cls(path, arr.dtype, arr.shape[1], arr.shape[0])
        del arr
        return out

    def append(self, row: np.ndarray, *, fsync: bool = False) -> None:
        row = np.ascontiguousarray(row, dtype=self.dtype)
        if row.shape != (self.n,):
            raise ValueError(f"row of shape {row.shape} does not fit {self.path.name} rows of length {self.n}")
        with open(self.path, "r+b") as f:
            f.seek(HEADER_BYTES + self.rows * self.n * self.dtype.itemsize)
            f.write(row.tobytes())
            f.seek(0)
            f.write(_header(self.dtype, self.rows + 1, self.n))
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        self.rows += 1


def load_rows(path, rows: int | None = None, *, mmap: bool = True) -> np.ndarray:
    """A record file as ``[rows, n]`` (read-only memory map by default), cut to ``rows`` if given."""
    arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    if arr.ndim != 2:
        raise ValueError(f"{path} holds shape {arr.shape}, not a [rows, n] record array")
    if rows is not None:
        if rows > arr.shape[0]:
            raise ValueError(f"{path} holds {arr.shape[0]} rows but the run says {rows} were written")
        arr = arr[:rows]
    return arr
