"""Private argument checks shared by the public functions.

Every check raises ``ValueError`` (bad value) or ``TypeError`` (bad type) with
a message that names the parameter, the value it got and what is allowed.
"""
from __future__ import annotations

import ast
import math
import threading
from numbers import Integral, Real
from typing import Iterable


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is not one of the allowed values: {', '.join(map(repr, choices))}")
    return value


def check_real(name: str, value, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within [low, high] (or open ends)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    allowed = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite; allowed range {allowed}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name}={value!r} is outside the allowed range {allowed}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name}={value!r} is outside the allowed range {allowed}")
    return value


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name}={value} is too small; allowed: integers >= {low}"
                         + (f" and <= {high}" if high is not None else ""))
    if high is not None and value > high:
        raise ValueError(f"{name}={value} is too large; allowed: integers <= {high}"
                         + (f" and >= {low}" if low is not None else ""))
    return value


def as_array(name: str, values):
    """``values`` as a numpy array (a torch tensor on any device is copied to the host); ragged input is a
    ValueError naming ``name``."""
    import numpy as np

    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, on any device
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None


#: One lock for every syntax tree grlib builds: CPython 3.11 keeps the AST constructor's recursion depth in
#: interpreter-wide state, so two threads building trees at once can fail with "SystemError: AST constructor
#: recursion depth mismatch" (python/cpython#106905). The report runner checks notebooks in several threads.
_AST_LOCK = threading.RLock()


def parse_python(source: str, mode: str = "exec") -> ast.AST:
    """``ast.parse`` under grlib's process-wide AST lock (safe from several threads)."""
    with _AST_LOCK:
        return ast.parse(source, mode=mode)


def literal_value(text: str):
    """``ast.literal_eval`` under grlib's process-wide AST lock (safe from several threads)."""
    with _AST_LOCK:
        return ast.literal_eval(text)
