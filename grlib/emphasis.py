"""Emphasis functions: how much weight a loss gives an example, as a function of p.

``p`` is always the probability the model gives to the *labelled* class of an
example (``p = softmax(z)[y]``, in [0, 1]).  Every function here is pure and
elementwise (tensor in, tensor out, same shape), so it can be evaluated on a
grid of ``p`` for plotting or on a batch of examples.

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

import torch

from ._checks import check_int, check_real

__all__ = [
    "ce_emphasis", "mae_emphasis", "mse_emphasis", "gce_emphasis", "gr_emphasis", "gr_score",
    "gr_mode", "gce_mode", "emphasis_mode", "emphasis_curve", "normalise_over_p", "normalise_over_batch",
    "EMPHASIS_FUNCTIONS",
]


def _as_p(p) -> torch.Tensor:
    p = torch.as_tensor(p)
    if not torch.is_floating_point(p):
        p = p.to(torch.get_default_dtype())
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
    """The p at which a loss's emphasis peaks (its emphasis mode)."""
    name = _check_name(name)
    if name == "ce":
        return 0.0
    if name == "mae":
        return 0.5
    if name == "mse":
        return 1.0 / 3.0
    if name == "gce":
        return gce_mode(params.get("q", 0.7))
    return gr_mode(params.get("lam", 1.0))


EMPHASIS_FUNCTIONS = {
    "ce": ce_emphasis,
    "mae": mae_emphasis,
    "mse": mse_emphasis,
    "gce": gce_emphasis,
    "gr": gr_emphasis,
}


def _check_name(name: str) -> str:
    if name not in EMPHASIS_FUNCTIONS:
        raise ValueError(f"emphasis name={name!r} is unknown; valid names: {sorted(EMPHASIS_FUNCTIONS)}")
    return name


def emphasis_curve(name: str, p, **params) -> torch.Tensor:
    """Evaluate the named emphasis function (``ce``, ``mae``, ``mse``, ``gce``, ``gr``) at ``p``."""
    return EMPHASIS_FUNCTIONS[_check_name(name)](p, **params)


def normalise_over_p(values, p) -> torch.Tensor:
    """Scale ``values`` sampled on the grid ``p`` so they integrate to 1 over p.

    This is the paper's "derivative normalisation": it makes the emphasis
    curves of different losses comparable as densities over ``p in [0, 1]``.
    Uses the trapezoid rule on the given (sorted) grid.
    """
    values = _as_p(values)
    p = _as_p(p).to(values.dtype)
    if p.ndim != 1 or values.shape[-1] != p.shape[0]:
        raise ValueError(f"p must be a 1-D grid matching values' last dimension; got p {tuple(p.shape)}, "
                         f"values {tuple(values.shape)}")
    area = torch.trapezoid(values, p, dim=-1)
    if torch.any(area <= 0):
        raise ValueError("values integrate to zero or less over p; nothing to normalise")
    return values / area.unsqueeze(-1)


def normalise_over_batch(values) -> torch.Tensor:
    """Weights that sum to 1 over the (last) batch dimension: ``values / sum(values)``."""
    values = _as_p(values)
    total = values.sum(dim=-1, keepdim=True)
    if torch.any(total <= 0):
        raise ValueError("values sum to zero or less over the batch; nothing to normalise")
    return values / total
