"""Emphasis functions: how much weight a loss gives an example, as a function of p.

``p`` is always the probability the model gives to the *labelled* class of an
example (``p = softmax(z)[y]``, in [0, 1]).  Every function here is pure and
elementwise (tensor in, tensor out, same shape), so it can be evaluated on a
grid of ``p`` for plotting or on a batch of examples.  A ``p`` outside
[0, 1] (or NaN) raises ``ValueError``; a keyword a function does not take
raises ``TypeError`` naming it (``emphasis_mode("gr", lamda=3)`` is refused,
not silently answered for the default ``lam``).  These checks read the values
on the host (one sync for a CUDA tensor): the functions are for analysis and
plotting; the losses do not call them per step.

The emphasis of a loss is the L1 norm of its per-example gradient with respect
to the logits (method.md, "Every loss already weights examples"):

==========  ==============================  ===================
loss        magnitude ``||dL/dz||_1``       emphasis mode
==========  ==============================  ===================
CE          ``2 (1 - p)``                   ``p = 0`` (hardest)
MAE         ``4 p (1 - p)``                 ``p = 0.5``
MSE         ``4 p (1 - p)^2 (1 + kappa)``   ``p = 1/3``
GCE(q)      ``2 p^q (1 - p)``               ``p = q / (1 + q)``
GR          ``exp(beta p^lam (1 - p))``     ``p = lam / (1 + lam)``
==========  ==============================  ===================

MSE depends on the whole probability vector, not only on ``p``; the form here
(the "p_y-only form") assumes the remaining mass ``1 - p`` is spread evenly
over the other ``num_classes - 1`` classes, so ``sum_{j != y} p_j^2 = kappa
(1 - p)^2`` with ``kappa = 1 / (num_classes - 1)``.  It is exactly twice the
magnitude of the labelled-class component ``|dL/dz_y|``; for ``num_classes=2``
it is the exact L1 norm.  Its shape ``p (1 - p)^2`` (mode 1/3) does not depend
on ``kappa``.

GR's emphasis density function (EDF) is ``exp(beta * p**lam * (1 - p))``
(Wang et al., arXiv 1905.11233, the EDF of "emphasis regularisation"); its
normalised form over a batch is a softmax of ``beta * p**lam * (1 - p)``.
"""
from __future__ import annotations

import difflib

import torch

from ._checks import check_int, check_real

__all__ = [
    "ce_emphasis", "mae_emphasis", "mse_emphasis", "gce_emphasis", "gr_emphasis", "gr_score",
    "gr_mode", "gce_mode", "emphasis_mode", "emphasis_curve", "normalise_over_p", "normalise_over_batch",
    "EMPHASIS_FUNCTIONS", "EMPHASIS_PARAMETERS",
]


def _as_tensor(name: str, values) -> torch.Tensor:
    """``values`` as a real floating tensor (integers become the default float dtype)."""
    try:
        t = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be real numbers (a number, array or tensor), got {type(values).__name__}: "
                        f"{exc}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    return t


def _as_p(p) -> torch.Tensor:
    """``p`` as a floating tensor, refused unless every entry lies in [0, 1] (NaN included)."""
    p = _as_tensor("p", p)
    if p.numel():
        bad = ~((p >= 0) & (p <= 1))  # also True for NaN
        n_bad = int(bad.sum())
        if n_bad:
            n_nan = int(torch.isnan(p).sum())
            finite = p[~torch.isnan(p)]
            found = (f"values found in [{finite.min().item():.6g}, {finite.max().item():.6g}]" if finite.numel()
                     else "no value other than NaN")
            raise ValueError(f"p must lie in [0, 1] (the probability of the labelled class); {n_bad} of "
                             f"{p.numel()} entries do not" + (f" ({n_nan} NaN)" if n_nan else "") + f"; {found}")
    return p


def check_gr_params(lam, beta) -> tuple[float, float]:
    lam = check_real("lam", lam, low=0.0)
    beta = check_real("beta", beta, low=0.0)
    return lam, beta


def check_q(q) -> float:
    return check_real("q", q, low=0.0, high=1.0, low_open=True)


def ce_emphasis(p) -> torch.Tensor:
    """CE: ``2 (1 - p)``; largest for the hardest examples (p -> 0)."""
    p = _as_p(p)
    return 2.0 * (1.0 - p)


def mae_emphasis(p) -> torch.Tensor:
    """MAE (``||onehot - p||_1 = 2(1 - p)``): ``4 p (1 - p)``, mode at 0.5."""
    p = _as_p(p)
    return 4.0 * p * (1.0 - p)


def mse_emphasis(p, num_classes: int = 2) -> torch.Tensor:
    """MSE (``||onehot - p||_2^2``), p_y-only form: ``4 p (1-p)^2 (1 + 1/(C-1))``.

    Exact L1 logit-gradient norm for ``num_classes=2``; for more classes it is
    twice the labelled-class component with the rest spread evenly (see the
    module docstring).  Mode at ``p = 1/3`` for any ``num_classes``.
    """
    num_classes = check_int("num_classes", num_classes, low=2)
    p = _as_p(p)
    kappa = 1.0 / (num_classes - 1)
    return 4.0 * p * (1.0 - p) ** 2 * (1.0 + kappa)


def gce_emphasis(p, q: float = 0.7) -> torch.Tensor:
    """GCE (``(1 - p^q)/q``, Zhang & Sabuncu 2018): ``2 p^q (1 - p)``, mode ``q/(1+q)``."""
    q = check_q(q)
    p = _as_p(p)
    return 2.0 * p.pow(q) * (1.0 - p)


def gr_score(p, lam: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """The exponent of GR's EDF: ``beta * p**lam * (1 - p)`` (``0**0 = 1``)."""
    lam, beta = check_gr_params(lam, beta)
    p = _as_p(p)
    return beta * p.pow(lam) * (1.0 - p)


def gr_emphasis(p, lam: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """GR's unnormalised emphasis ``exp(beta * p**lam * (1 - p))``.

    ``lam >= 0`` is the emphasis mode (peak at ``lam/(1+lam)``: 0 focuses on
    the hardest examples like CE, 1 on p = 0.5 like MAE/IMAE, larger on easier
    examples); ``beta >= 0`` is the emphasis spread (0 = uniform weights).
    """
    return torch.exp(gr_score(p, lam, beta))


def gr_mode(lam: float) -> float:
    """Where GR's emphasis peaks: ``lam / (1 + lam)`` (for any ``beta > 0``)."""
    lam = check_real("lam", lam, low=0.0)
    return lam / (1.0 + lam)


def gce_mode(q: float) -> float:
    """Where GCE's emphasis peaks: ``q / (1 + q)``."""
    q = check_q(q)
    return q / (1.0 + q)


def emphasis_mode(name: str, **params) -> float:
    """The p at which a loss's emphasis peaks (its emphasis mode).

    ``params`` are the loss's own emphasis parameters, the same keywords as
    :func:`emphasis_curve` (``gr``: lam, beta; ``gce``: q; ``mse``:
    num_classes; ``ce``/``mae``: none); any other keyword raises ``TypeError``
    naming it and the allowed ones.  They are validated even where the mode
    does not depend on them (GR's beta, MSE's num_classes).
    """
    name = _check_name(name)
    _check_params(name, params)
    if name == "ce":
        return 0.0
    if name == "mae":
        return 0.5
    if name == "mse":
        check_int("num_classes", params.get("num_classes", 2), low=2)
        return 1.0 / 3.0
    if name == "gce":
        return gce_mode(params.get("q", 0.7))
    check_gr_params(params.get("lam", 1.0), params.get("beta", 1.0))
    return gr_mode(params.get("lam", 1.0))


EMPHASIS_FUNCTIONS = {
    "ce": ce_emphasis,
    "mae": mae_emphasis,
    "mse": mse_emphasis,
    "gce": gce_emphasis,
    "gr": gr_emphasis,
}


#: The keyword parameters each named emphasis function takes.
EMPHASIS_PARAMETERS = {"ce": (), "mae": (), "mse": ("num_classes",), "gce": ("q",), "gr": ("lam", "beta")}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in EMPHASIS_FUNCTIONS:
        raise ValueError(f"emphasis name={name!r} is unknown; valid names: {sorted(EMPHASIS_FUNCTIONS)}")
    return name


def _check_params(name: str, params: dict) -> None:
    """Refuse keywords that the named emphasis function does not take (a typo would be silently ignored)."""
    allowed = EMPHASIS_PARAMETERS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, allowed, n=1))
                 else repr(k) for k in unknown]
        raise TypeError(f"emphasis {name!r} got unknown parameter(s) {', '.join(hints)}; allowed: "
                        + (", ".join(allowed) if allowed else f"none ({name} has no parameters)"))


def emphasis_curve(name: str, p, **params) -> torch.Tensor:
    """Evaluate the named emphasis function (``ce``, ``mae``, ``mse``, ``gce``, ``gr``) at ``p``.

    ``p`` in [0, 1] (anything else raises ``ValueError``); ``params`` are the
    function's own keywords (:data:`EMPHASIS_PARAMETERS`); any other keyword
    raises ``TypeError`` naming it and the allowed ones.
    """
    name = _check_name(name)
    _check_params(name, params)
    return EMPHASIS_FUNCTIONS[name](p, **params)


def normalise_over_p(values, p) -> torch.Tensor:
    """Scale ``values`` sampled on the grid ``p`` so they integrate to 1 over p.

    This is the paper's "derivative normalisation": it makes the emphasis
    curves of different losses comparable as densities over ``p in [0, 1]``.
    Uses the trapezoid rule on the given (sorted) grid.
    """
    values = _check_weights("values", values)
    p = _as_p(p).to(values.dtype)
    if p.ndim != 1 or values.ndim == 0 or values.shape[-1] != p.shape[0]:
        raise ValueError(f"p must be a 1-D grid matching values' last dimension; got p {tuple(p.shape)}, "
                         f"values {tuple(values.shape)}")
    if p.numel() < 2 or not bool(torch.all(p[1:] > p[:-1])):
        raise ValueError(f"p must be a strictly increasing grid of at least 2 points in [0, 1]; got {p.numel()} "
                         "points" + ("" if p.numel() < 2 else " that are not increasing (sort them first)"))
    area = torch.trapezoid(values, p, dim=-1)
    if torch.any(area <= 0):
        raise ValueError("values integrate to zero over p (all zero on the grid); nothing to normalise")
    return values / area.unsqueeze(-1)


def normalise_over_batch(values) -> torch.Tensor:
    """Weights that sum to 1 over the (last) batch dimension: ``values / sum(values)``."""
    values = _check_weights("values", values)
    if values.ndim == 0 or values.shape[-1] == 0:
        raise ValueError(f"values must have a non-empty last (batch) dimension, got shape {tuple(values.shape)}")
    total = values.sum(dim=-1, keepdim=True)
    if torch.any(total <= 0):
        raise ValueError("values sum to zero over the batch (all zero); nothing to normalise")
    if not bool(torch.isfinite(total).all()):
        raise ValueError("values overflow when summed over the batch (the sum is inf); normalise in log space "
                         "instead: torch.softmax(log_values, dim=-1), e.g. of gr_score(p, lam, beta)")
    return values / total


def _check_weights(name: str, values) -> torch.Tensor:
    """A floating tensor of finite, non-negative emphasis values."""
    values = _as_tensor(name, values)
    if values.numel():
        n_nonfinite = int((~torch.isfinite(values)).sum())
        if n_nonfinite:
            raise ValueError(f"{name} must be finite; got {n_nonfinite} non-finite entries (NaN or inf) of "
                             f"{values.numel()}" + (" (an overflowing exp: normalise in log space with "
                                                   "torch.softmax)" if bool(torch.isposinf(values).any()) else ""))
        if bool((values < 0).any()):
            raise ValueError(f"{name} must be non-negative (emphasis values); got a minimum of "
                             f"{values.min().item():.6g}")
    return values
