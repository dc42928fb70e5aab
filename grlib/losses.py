"""Losses with per-example values and per-example emphasis, selectable by name.

Every loss is a ``torch.nn.Module`` called as ``loss(logits, targets)`` with
``logits`` of shape ``[B, C]`` (float) and ``targets`` of shape ``[B]``
(integer class indices in ``[0, C)``).  ``loss.details(logits, targets)``
returns a :class:`LossOutput` with the per-example values (attached to the
graph) and the per-example diagnostics (detached): the probability of the
labelled class, the gradient magnitude each example receives, and the
emphasis weight normalised over the batch.

Reductions (``reduction=`` on every loss):

* ``"none"``: the per-example values, shape ``[B]``.
* ``"mean"`` (default): their mean.  For CE this is PyTorch's usual mean.
* ``"sum"``: their sum.

For GR the per-example value is ``B * w_i * c_i * s / 2 * m_i`` (see
:class:`GRLoss`), so that ``"mean"`` is the paper's objective: the logit
gradient magnitudes ``||dL/dz_i||_1 = w_i * c_i * s`` sum to ``s`` (1 by
default) over the batch, whatever the batch size.  ``"sum"`` is ``B`` times
that.  With ``GRLoss(normalize="global")`` under DistributedDataParallel, and
inside :meth:`GRLoss.accumulate`, "the batch" is the whole batch (every rank's
shard, every micro-batch) and the reductions are scaled so that the gradient
DDP averages (and accumulates) is that of the whole batch (see :class:`GRLoss`).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_real
from .distributed import GRNormalizer, gather_statistics, merge_statistics, process_group_size, score_statistics
from .emphasis import check_gr_params, check_q

__all__ = [
    "LossOutput", "EmphasisLoss", "CELoss", "MAELoss", "MSELoss", "GCELoss", "SCELoss", "NCERCELoss",
    "GRLoss", "LOSSES", "get_loss", "loss_names", "check_logits_targets", "REDUCTIONS", "GRBatchWarning",
    "GR_NORMALIZE",
]


class GRBatchWarning(UserWarning):
    """A GR batch much smaller than the previous ones: its examples get inflated weights."""

REDUCTIONS = ("mean", "sum", "none")
_RCE_A = -math.log(1e-4)  # reverse CE: log of the clamped one-hot (1e-4), as in the SCE and APL papers' code


@dataclass(frozen=True)
class LossOutput:
    """Per-example results of one loss evaluation on a batch (all shape ``[B]``).

    values:       per-example loss values, attached to the autograd graph; the
                  reduction of these is the loss.
    p:            probability of the labelled class, in [0, 1] (detached).
    magnitude:    L1 norm of the gradient of ``values[i]`` w.r.t. ``logits[i]``
                  (detached): the emphasis the example actually receives, in the
                  scale of the per-example values.
    log_emphasis: log of the unnormalised emphasis (detached).  GR:
                  ``beta * p**lam * (1 - p)``; other losses: ``log(magnitude)``.
                  Stored in log form because ``exp`` overflows for large beta.
    weight:       emphasis normalised over the batch, sums to 1 (detached).  GR:
                  the EDF softmax ``w_i`` of the paper; other losses:
                  ``magnitude / magnitude.sum()``.  Higher means emphasised more.
    """

    values: torch.Tensor
    p: torch.Tensor
    magnitude: torch.Tensor
    log_emphasis: torch.Tensor
    weight: torch.Tensor

    @property
    def emphasis(self) -> torch.Tensor:
        """Unnormalised emphasis ``exp(log_emphasis)`` (may overflow for huge beta)."""
        return torch.exp(self.log_emphasis)


def check_logits_targets(logits, targets) -> torch.Tensor:
    """Validate a ``(logits, targets)`` pair; raise TypeError/ValueError naming the problem.

    Returns the targets as ``torch.long`` (any integer dtype is accepted).  The
    checks that need *values* (targets in ``[0, C)``, finite logits) run here
    only for CPU tensors, where they cost no device synchronisation; for
    tensors on a GPU they are left to the device (see :meth:`EmphasisLoss.details`):
    an out-of-range target makes that example's value NaN instead of a host sync
    on every call.
    """
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        raise TypeError(f"logits must be a floating-point torch.Tensor of shape [B, C], got "
                        f"{type(logits).__name__}{'' if not isinstance(logits, torch.Tensor) else ' ' + str(logits.dtype)}")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [B, C], got shape {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(f"logits must have at least 2 classes (C >= 2), got C={logits.shape[1]}")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor of integer class indices, got {type(targets).__name__}")
    if torch.is_floating_point(targets) or torch.is_complex(targets) or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class indices (e.g. torch.long), got dtype {targets.dtype}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must have shape [B] matching logits [B, C]; got targets {tuple(targets.shape)} "
                         f"and logits {tuple(logits.shape)}")
    if targets.numel() == 0:
        raise ValueError("logits and targets are empty (B=0); a loss needs at least one example")
    if targets.device != logits.device:
        raise ValueError(f"targets are on {targets.device} but logits on {logits.device}; move them to one device")
    if targets.dtype != torch.long:
        targets = targets.long()
    if _on_host(targets):
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(f"targets must lie in [0, {logits.shape[1] - 1}] (C={logits.shape[1]} classes); "
                             f"got values in [{lo}, {hi}]")
        finite = torch.isfinite(logits.detach())
        if not bool(finite.all()):
            rows = torch.nonzero(~finite.all(dim=1)).flatten()[:5].tolist()
            raise ValueError(f"logits hold NaN or infinite values (rows {rows}...): the model has diverged (lower "
                             "the learning rate, or check its inputs); a loss of non-finite logits has no finite "
                             "gradient")
    return targets


def _on_host(t: torch.Tensor) -> bool:
    """Whether value checks on ``t`` are free (a CPU tensor: no device to synchronise with)."""
    return t.device.type == "cpu"


def _validated(logits: torch.Tensor, targets: torch.Tensor):
    """Checked targets (long) and, for targets on a GPU, the mask of out-of-range rows (no host sync)."""
    targets = check_logits_targets(logits, targets)
    if _on_host(targets):
        return targets, None
    bad = (targets < 0) | (targets >= logits.shape[1])
    return targets.clamp(0, logits.shape[1] - 1), bad


def _poison(values: torch.Tensor, bad):
    """NaN for the rows whose target was out of range (device-side validation)."""
    if bad is None:
        return values
    return torch.where(bad, torch.full_like(values, float("nan")), values)


class _Parts:
    """Shared log-space quantities of a batch, each computed once, on first use."""

    def __init__(self, logits: torch.Tensor, targets: torch.Tensor):
        self.logits = logits
        self.targets = targets
        self.lse = torch.logsumexp(logits, dim=1)
        self.z_y = logits.gather(1, targets[:, None]).squeeze(1)
        self.logp_y = self.z_y - self.lse
        self._onehot = None
        self._lse_other = None

    @property
    def onehot(self) -> torch.Tensor:
        if self._onehot is None:
            self._onehot = torch.zeros_like(self.logits, dtype=torch.bool).scatter_(1, self.targets[:, None], True)
        return self._onehot

    @property
    def lse_other(self) -> torch.Tensor:
        """logsumexp over the classes other than the labelled one."""
        if self._lse_other is None:
            # cached, so build it with autograd on even if first asked for inside no_grad
            with torch.set_grad_enabled(self.logits.requires_grad):
                others = self.logits.scatter(1, self.targets[:, None], float("-inf"))
                self._lse_other = torch.logsumexp(others, dim=1)
        return self._lse_other

    @property
    def log1mp(self) -> torch.Tensor:
        """log(1 - p_y) in log space: never 1 - softmax (method.md)."""
        return self.lse_other - self.lse

    def one_minus_p(self) -> torch.Tensor:
        return torch.exp(self.log1mp)

    def one_minus_p_fast(self) -> torch.Tensor:
        """``-expm1(log p_y)``: accurate except within float eps of p_y = 1 (diagnostics only)."""
        return -torch.expm1(self.logp_y)


class EmphasisLoss(nn.Module):
    """Base class: a loss made of per-example values, reduced last.

    Subclasses implement ``_values(parts)`` (attached) and
    ``_magnitude(parts)`` (detached L1 norm of the per-example logit gradient).
    """

    name = "base"

    def __init__(self, *, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)

    # -- public API ---------------------------------------------------------
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets, bad = _validated(logits, targets)
        values = self._values(_Parts(logits, targets))
        return self._reduce(_poison(values, bad))

    def details(self, logits: torch.Tensor, targets: torch.Tensor, *, validate: bool = True) -> LossOutput:
        """Per-example values and diagnostics (see :class:`LossOutput`).

        ``validate=False`` skips the argument checks (for a training loop that
        validated its labels once).  With ``validate=True`` no call
        synchronises a GPU with the host: on a GPU an out-of-range target gives
        that example a NaN value (caught by :func:`grlib.train`'s finiteness
        guard) rather than a device assert.
        """
        targets, bad = _validated(logits, targets) if validate else (targets, None)
        parts = _Parts(logits, targets)
        values = _poison(self._values(parts), bad)
        with torch.no_grad():
            p = torch.exp(parts.logp_y.detach())
            magnitude, log_emph, weight = self._diagnostics(parts)
        return LossOutput(values=values, p=p, magnitude=magnitude, log_emphasis=log_emph, weight=weight)

    def unchecked(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The reduced loss without argument checks (for loops that validated their labels once)."""
        return self._reduce(self._values(_Parts(logits, targets)))

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Apply this loss's reduction to per-example values."""
        return self._reduce(values)

    def extra_repr(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{params}, reduction={self.reduction!r}" if params else f"reduction={self.reduction!r}"

    def params(self) -> dict:
        """The loss's own parameters (without reduction), JSON-serialisable."""
        return {}

    # -- internals ----------------------------------------------------------
    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return values.mean()
        if self.reduction == "sum":
            return values.sum()
        return values

    def _values(self, parts: _Parts) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _magnitude(self, parts: _Parts) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _diagnostics(self, parts: _Parts):
        magnitude = self._magnitude(parts)
        total = magnitude.sum()
        # no host sync: a batch whose magnitudes are all 0 gets uniform weights
        weight = torch.where(total > 0, magnitude / total, torch.full_like(magnitude, 1.0 / magnitude.numel()))
        return magnitude, torch.log(magnitude), weight

    @staticmethod
    def _probs(parts: _Parts) -> torch.Tensor:
        return torch.exp(parts.logits.detach() - parts.lse.detach()[:, None])

    @staticmethod
    def _l1_of_softmax_grad(parts: _Parts, grad_wrt_p: torch.Tensor) -> torch.Tensor:
        """L1 norm of ``J^T a`` where ``J`` is the softmax Jacobian: ``g = p * (a - <p, a>)``."""
        p = EmphasisLoss._probs(parts)
        g = p * (grad_wrt_p - (p * grad_wrt_p).sum(dim=1, keepdim=True))
        return g.abs().sum(dim=1)


class CELoss(EmphasisLoss):
    """Categorical cross entropy ``-log p``; emphasis ``2 (1 - p)``."""

    name = "ce"

    def _values(self, parts):
        return -parts.logp_y

    def _magnitude(self, parts):
        return 2.0 * parts.one_minus_p_fast().detach()

    def details(self, logits, targets, *, validate: bool = True) -> LossOutput:
        targets, bad = _validated(logits, targets) if validate else (targets, None)
        values, p, magnitude, log_emph, weight = _CEFused.apply(logits, targets)
        return LossOutput(values=_poison(values, bad), p=p, magnitude=magnitude, log_emphasis=log_emph, weight=weight)

    def unchecked(self, logits, targets):
        return self._reduce(_CEFused.apply(logits, targets)[0])


class _CEFused(torch.autograd.Function):
    """CE's per-example values and diagnostics in one node, with the closed-form backward ``softmax - onehot``.

    The same numbers as the generic path (``-log p_y`` in log space, magnitude
    ``2 (1 - p)``, weight ``magnitude / sum``), in far fewer small tensor ops:
    on a 64-example batch the per-op dispatch, not the arithmetic, is the cost.
    Returns ``(values, p, magnitude, log_emphasis, weight)``; only ``values`` is differentiable.
    """

    @staticmethod
    def forward(ctx, logits, targets):
        z = logits.detach()
        lse = torch.logsumexp(z, dim=1, keepdim=True)
        logp_y = (z.gather(1, targets.view(-1, 1)) - lse).view(-1)
        magnitude = -2.0 * torch.expm1(logp_y)
        # a batch fitted so well that every 1 - p rounds to 0 gets weight 0 (CE's gradient there is 0 too)
        weight = magnitude / magnitude.sum().clamp_min(torch.finfo(magnitude.dtype).tiny)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(z, lse, targets)
        outs = (-logp_y, torch.exp(logp_y), magnitude, torch.log(magnitude), weight)
        ctx.mark_non_differentiable(*outs[1:])
        return outs

    @staticmethod
    def backward(ctx, grad_values, *unused):
        if grad_values is None:
            return None, None
        z, lse, targets = ctx.saved_tensors
        g = torch.exp(z - lse)                               # softmax
        g.scatter_add_(1, targets.view(-1, 1), torch.full_like(lse, -1.0))
        return g * grad_values.view(-1, 1), None


class MAELoss(EmphasisLoss):
    """Mean absolute error ``||onehot - p||_1 = 2 (1 - p)``; emphasis ``4 p (1 - p)``."""

    name = "mae"

    def _values(self, parts):
        return 2.0 * parts.one_minus_p()

    def _magnitude(self, parts):
        p = torch.exp(parts.logp_y.detach())
        return 4.0 * p * parts.one_minus_p().detach()


class MSELoss(EmphasisLoss):
    """Mean squared error ``||onehot - p||_2^2``; its emphasis depends on all of p."""

    name = "mse"

    def _values(self, parts):
        p = torch.exp(parts.logits - parts.lse[:, None])
        others = (p * p).masked_fill(parts.onehot, 0.0).sum(dim=1)
        return parts.one_minus_p() ** 2 + others

    def _magnitude(self, parts):
        p = self._probs(parts)
        a = 2.0 * (p - parts.onehot.to(p.dtype))
        return self._l1_of_softmax_grad(parts, a)


class GCELoss(EmphasisLoss):
    """Generalised cross entropy ``(1 - p^q) / q`` (Zhang & Sabuncu 2018); emphasis ``2 p^q (1 - p)``.

    ``q`` in (0, 1]: ``q -> 0`` is CE, ``q = 1`` is MAE / 2.
    """

    name = "gce"

    def __init__(self, *, q: float = 0.7, reduction: str = "mean"):
        super().__init__(reduction=reduction)
        self.q = check_q(q)

    def params(self):
        return {"q": self.q}

    def _values(self, parts):
        return -torch.expm1(self.q * parts.logp_y) / self.q

    def _magnitude(self, parts):
        return 2.0 * torch.exp(self.q * parts.logp_y.detach()) * parts.one_minus_p().detach()


class _TwoTermLoss(EmphasisLoss):
    """An active term weighted by ``alpha`` plus reverse CE weighted by ``beta`` (SCE, NCE+RCE)."""

    default_alpha = 1.0

    def __init__(self, *, alpha: float | None = None, beta: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction=reduction)
        self.alpha = check_real("alpha", self.default_alpha if alpha is None else alpha, low=0.0)
        self.beta = check_real("beta", beta, low=0.0)

    def params(self):
        return {"alpha": self.alpha, "beta": self.beta}


class SCELoss(_TwoTermLoss):
    """Symmetric cross entropy ``alpha * CE + beta * RCE`` (Wang et al., ICCV 2019).

    RCE, the reverse CE with the one-hot clamped at 1e-4, equals
    ``-log(1e-4) * (1 - p)``.  Emphasis ``(alpha + beta * A * p) * 2 (1 - p)``
    with ``A = -log(1e-4)``.  Defaults are the paper's CIFAR-10 values.
    """

    name = "sce"

    default_alpha = 0.1

    def _values(self, parts):
        return self.alpha * (-parts.logp_y) + self.beta * _RCE_A * parts.one_minus_p()

    def _magnitude(self, parts):
        p = torch.exp(parts.logp_y.detach())
        return (self.alpha + self.beta * _RCE_A * p) * 2.0 * parts.one_minus_p().detach()


class NCERCELoss(_TwoTermLoss):
    """Active-passive loss NCE+RCE (Ma et al., ICML 2020): ``alpha * NCE + beta * RCE``.

    ``NCE = log p_y / sum_k log p_k`` (normalised CE, in [0, 1]); RCE as in
    :class:`SCELoss`.  Defaults are the paper's CIFAR-10 values.
    """

    name = "nce+rce"

    default_alpha = 1.0

    def _values(self, parts):
        logp = parts.logits - parts.lse[:, None]
        nce = parts.logp_y / logp.sum(dim=1)
        return self.alpha * nce + self.beta * _RCE_A * parts.one_minus_p()

    def _magnitude(self, parts):
        logits = parts.logits.detach()
        u = logits - parts.lse.detach()[:, None]            # log p, [B, C]
        p = torch.exp(u)
        s = u.sum(dim=1, keepdim=True)                      # sum_k log p_k < 0
        u_y = parts.logp_y.detach()[:, None]
        onehot = parts.onehot.to(u.dtype)
        b = onehot / s - u_y / s**2                         # d NCE / d log p
        g_nce = b - p * b.sum(dim=1, keepdim=True)          # d NCE / d z
        p_y = torch.exp(u_y)
        g_rce = _RCE_A * p_y * (p - onehot)                 # d RCE / d z
        return (self.alpha * g_nce + self.beta * g_rce).abs().sum(dim=1)


GR_SCALES = ("unit", "ce")
#: What GR's weights are normalised over: the batch the loss is given, or the global batch of every rank.
GR_NORMALIZE = ("batch", "global")


class GRLoss(EmphasisLoss):
    """Emphasis regularisation by gradient rescaling (Wang et al., arXiv 1905.11233).

    Weights (the emphasis density function, EDF), over the mini-batch::

        w_i = softmax_i( beta * p_i**lam * (1 - p_i) )          (no gradient)

    GR keeps the CE gradient's direction and sets its magnitude to ``w_i``::

        dL/dz_i = w_i * (p_i_vec - onehot(y_i)) / (2 (1 - p_i))

    computed exactly through the surrogate ``m_i = logsumexp_{j != y_i} z_ij -
    z_iy_i``, whose logit gradient is ``(p - onehot) / (1 - p_y)`` with no
    division, so it is finite for any logits.  The rescale factor
    ``1 / (2 (1 - p_i))`` is bounded by the cap (method.md): the per-example
    value is ::

        value_i = B * w_i * c_i * s / 2 * m_i,   c_i = min(1, 2 (1 - p_i) / cap)

    with ``w_i``, ``c_i`` and ``s`` constants.  Wherever ``2 (1 - p_i) >= cap``
    the gradient equals the paper's formula (times ``s``); beyond, it fades like
    CE's.  ``reduction="mean"`` gives per-batch gradient magnitudes summing to
    ``s`` (the paper's convention for ``s = 1``).

    **The batch.** The weights are normalised over the batch this loss is
    given, nothing else: a batch much smaller than the others (a short last
    batch of a ``DataLoader``) gives each of its examples a much larger
    weight, and this loss warns once (:class:`GRBatchWarning`); use
    ``drop_last=True`` or :class:`grlib.EqualBatchSampler`.

    **Several processes** (``DistributedDataParallel``).  With the default
    ``normalize="batch"`` each process normalises over its own shard: the
    weights are relative to the shard only (noisier than the paper's weights
    for the global batch).  ``normalize="global"`` normalises over the
    concatenation of every rank's shard: per call, one ``all_gather`` of four
    numbers per rank (the shard's largest score, its sum of exponentials, its
    size and its sum of ``1 - p``; detached, see :mod:`grlib.distributed`).
    ``B`` above is then the global batch size, ``details().weight`` sums to 1
    over the global batch, ``scale="ce"`` uses the global batch mean, the
    per-example values equal those a single process computes on the
    concatenated batch, and the reductions are scaled for DDP, which averages
    the ranks' gradients:

    * ``"mean"``: each rank returns ``world_size / B * sum of its values``; the
      ranks' mean is the mean over the global batch, and the gradient DDP
      averages is exactly the single-process gradient of the concatenated
      batch, for any split (equal or not).
    * ``"sum"``: each rank returns ``world_size * sum of its values``; the
      ranks' mean is the sum over the global batch.
    * ``"none"``: the values; reduce them with :meth:`reduce` (which applies
      the scaling above).  ``values.mean()`` on each rank is exact only when
      every rank has the same number of examples.

    In this mode every call is a collective: every rank of ``group`` must call
    the loss (``forward``, ``details`` or ``unchecked``) the same number of times
    in the same order, as DDP's forward requires.  Without an initialised
    process group, or with a single process, ``"global"`` is exactly
    ``"batch"``.  The short-batch warning then looks at the global batch.

    **Gradient accumulation.** Each call normalises over the micro-batch it
    gets; to normalise over the whole accumulated batch, run the micro-batches
    inside :meth:`accumulate` (or :meth:`normalize_over`).

    Parameters
    ----------
    lam : float >= 0
        Emphasis mode: the EDF peaks at ``p = lam / (1 + lam)``.  0 emphasises
        the hardest examples (like CE); 1 is IMAE (peak at 0.5); larger values
        focus on easier examples, which the paper finds best at higher noise.
        Default 1 (with ``beta=12``), grlib's one default GR setting: lambda 1
        is the paper's best at 40% noise on CIFAR-10 and beta 12 is in its
        grid for lambda 1.
    beta : float >= 0
        Emphasis spread: 0 gives every example the same weight; larger values
        make the weighting more selective.  Default 12.
    cap : float in (0, 2]
        Bound of the rescale factor (``delta`` in method.md).  Default 1e-3: the
        exact, uncapped gradient keeps magnitude ``w_i`` for examples already
        fitted and blew up a ReLU network in tests; the authors' float32 Caffe
        layer only survived because ``1 - p`` rounds to 0.  With ``cap=1e-3``
        the factor is exact for every example with ``p <= 0.9995``.
    scale : "unit", "ce" or float > 0
        Total gradient magnitude per batch.  ``"unit"`` (default, the paper):
        magnitudes sum to 1.  ``"ce"``: they sum to the batch mean of ``2 (1 -
        p_i)``, the total that mean-reduced CE gives the same batch, so GR and
        CE can be compared at one learning rate.  A number multiplies "unit".
    normalize : "batch" or "global"
        ``"batch"`` (default): over the batch given to this process.
        ``"global"``: over every rank's batch when ``torch.distributed`` is
        initialised (see above).
    group : torch.distributed.ProcessGroup, optional
        With ``normalize="global"``: the group to normalise over, the one
        whose gradients DDP averages (DDP's ``process_group``); default: the
        default group.
    """

    name = "gr"

    def __init__(self, *, lam: float = 1.0, beta: float = 12.0, cap: float = 1e-3, scale="unit",
                 normalize: str = "batch", group=None, reduction: str = "mean"):
        super().__init__(reduction=reduction)
        self._largest_batch = 0
        self._warned_small_batch = False
        self.lam, self.beta = check_gr_params(lam, beta)
        self.cap = check_real("cap", cap, low=0.0, high=2.0, low_open=True)
        if isinstance(scale, str):
            check_choice("scale", scale, GR_SCALES)
        else:
            scale = check_real("scale", scale, low=0.0, low_open=True)
        self.scale = scale
        self.normalize = check_choice("normalize", normalize, GR_NORMALIZE)
        if group is not None:
            if normalize != "global":
                raise ValueError(f"group={group!r} is only used with normalize='global' (got normalize={normalize!r})")
            import torch.distributed as dist

            if not (dist.is_available() and isinstance(group, dist.ProcessGroup)):
                raise TypeError(f"group must be a torch.distributed.ProcessGroup (or None for the default group), "
                                f"got {type(group).__name__}")
        self.group = group
        self._fixed = None          # the GRNormalizer of an accumulate()/normalize_over() block
        self._block_expected = 0    # examples (this rank) of the block's statistics pass
        self._block_seen = 0        # examples (this rank) given to the loss inside the block
        self._pending_count = None  # (pinned host tensor, CUDA event): a global batch size on its way to the host

    def params(self):
        out = {"lam": self.lam, "beta": self.beta, "cap": self.cap, "scale": self.scale}
        if self.normalize != "batch":
            out["normalize"] = self.normalize
        return out

    def _normalizer(self):
        """None (normalise over the batch given) or the GRNormalizer of this call."""
        if self._fixed is not None:
            return self._fixed
        if self.normalize == "batch":
            return None
        world, _ = process_group_size(self.group)
        return GRNormalizer(group=self.group, world=world) if world > 1 else None

    def _forward(self, logits, targets):
        norm = None if (self._fixed is None and self.normalize == "batch") else self._normalizer()
        if norm is None:
            self._check_batch_size(logits.shape[0])
        scale = self.scale if not isinstance(self.scale, str) else (1.0 if self.scale == "unit" else -1.0)
        outs = _GRSurrogate.apply(logits, targets, self.lam, self.beta, self.cap, scale, norm)
        if norm is not None:
            if norm is self._fixed:
                self._block_seen += logits.shape[0]
            else:
                self._check_global_batch(norm.count)
        return outs, norm

    def _check_batch_size(self, b: int) -> None:
        """Warn once when a batch is much smaller than the largest seen (the short-last-batch trap)."""
        if b > self._largest_batch:
            self._largest_batch = b
        elif 2 * b <= self._largest_batch and not self._warned_small_batch:
            self._warned_small_batch = True
            where = ("" if self.normalize == "batch" else
                     " (the global batch: every rank's examples)")
            warnings.warn(
                f"GRLoss got a batch of {b} examples{where} after batches of {self._largest_batch}. GR's weights are "
                f"normalised over the batch it is given, so each example of this batch gets about "
                f"{self._largest_batch / b:.0f}x the weight of an example in a full batch (the short-last-batch "
                "trap). Use DataLoader(..., drop_last=True), or near-equal batches: "
                "DataLoader(ds, batch_sampler=grlib.EqualBatchSampler(len(ds), batch_size, seed=...)). "
                "This warning is shown once per loss object.", GRBatchWarning, stacklevel=4)

    def _check_global_batch(self, count: torch.Tensor) -> None:
        """The short-batch check on a global batch size held in a 0-d tensor, without a host sync on a GPU.

        The size comes with the statistics' collective.  On the CPU it is read
        at once; on a GPU it is copied to pinned host memory without blocking
        and checked at the next call, once the copy has landed.
        """
        if self._warned_small_batch:
            return
        if count.device.type == "cpu":
            self._check_batch_size(int(count.item()))
            return
        pending = self._pending_count
        if pending is not None and pending[1].query():
            self._pending_count = None
            self._check_batch_size(int(pending[0].item()))
        if self._pending_count is None and count.device.type == "cuda":
            host = torch.empty((), dtype=count.dtype, pin_memory=True)
            host.copy_(count, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending_count = (host, event)

    def _reduce_gr(self, values: torch.Tensor, norm) -> torch.Tensor:
        """The reduction; scaled for the whole batch when the weights were normalised beyond this call's batch."""
        if norm is None or self.reduction == "none":
            return self._reduce(values)
        if self.reduction == "mean":
            return values.sum() * (norm.world / norm.count.to(values.dtype))
        return values.sum() * norm.world

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Apply the reduction to per-example values from :meth:`details` (scaled as :meth:`forward` scales it)."""
        return self._reduce_gr(values, values.__dict__.get("_grlib_norm"))

    def forward(self, logits, targets):
        targets, bad = _validated(logits, targets)
        outs, norm = self._forward(logits, targets)
        return self._reduce_gr(_poison(outs[0], bad), norm)

    def unchecked(self, logits, targets):
        outs, norm = self._forward(logits, targets)
        return self._reduce_gr(outs[0], norm)

    def details(self, logits, targets, *, validate: bool = True) -> LossOutput:
        targets, bad = _validated(logits, targets) if validate else (targets, None)
        (values, logp_y, score, w, coef), norm = self._forward(logits, targets)
        values = _poison(values, bad)
        if norm is not None:  # for reduce(out.values): the whole batch's size and the world size
            values._grlib_norm = _NormInfo(norm.world, norm.count)
        return LossOutput(values=values, p=torch.exp(logp_y), magnitude=2.0 * coef, log_emphasis=score, weight=w)

    # -- gradient accumulation ------------------------------------------------------------------------------
    def accumulate(self, model, inputs, targets, *, replay_rng: bool = True):
        """A ``with`` block in which GR normalises over every micro-batch of an accumulated batch.

        ::

            xs, ys = x.chunk(4), y.chunk(4)                  # one batch in 4 micro-batches
            with loss_fn.accumulate(model, xs, ys):          # no-grad pass over all of them first
                for xm, ym in zip(xs, ys):
                    loss_fn(model(xm), ym).backward()       # NOT divided by the number of micro-batches
            opt.step(); opt.zero_grad()

        The block first runs ``model(x)`` on every micro-batch without
        gradients and computes the statistics of their GR scores (with
        ``normalize="global"`` under DDP: over every rank's micro-batches, one
        collective per accumulated batch instead of one per call).  Inside
        the block every call of this loss normalises with them: the weights
        (``details().weight``) sum to 1 over the whole accumulated batch, and
        the reductions are scaled so that the gradients accumulated over the
        micro-batches (and averaged by DDP) are exactly the gradient of the
        whole batch (float64: equal to ~1e-12).  So do not divide the loss by
        the number of micro-batches.  Under DDP, wrap all but the last
        micro-batch's backward in ``model.no_sync()`` as usual.

        Exactness needs the second forward of each micro-batch to give the
        logits of the first: the block saves and restores the model's buffers
        (BatchNorm statistics are updated once) and, with ``replay_rng=True``,
        the random state (CPU and the current CUDA device), so dropout draws
        the same masks, provided the loop draws no other random numbers
        between the forwards.  The price is one extra forward pass (no
        backward) per micro-batch.  If the logits are at hand already, use
        :meth:`normalize_over`.

        Parameters
        ----------
        model : callable
            ``model(x) -> logits [B_k, C]`` (an ``nn.Module``, DDP-wrapped or not).
        inputs : sequence
            The micro-batches' inputs, each passed as ``model(x)``.
        targets : sequence of [B_k] int tensors
            The micro-batches' labels, in the same order.
        replay_rng : bool
            Restore the random state after the statistics pass (see above).
        """
        if not callable(model):
            raise TypeError(f"model must be callable (x -> logits), got {type(model).__name__}")
        inputs, targets = list(inputs), list(targets)
        if len(inputs) != len(targets) or not inputs:
            raise ValueError(f"inputs and targets must be non-empty sequences of the same length (one entry per "
                             f"micro-batch), got {len(inputs)} inputs and {len(targets)} targets")
        buffers = list(model.buffers()) if isinstance(model, nn.Module) else []
        saved = [b.detach().clone() for b in buffers]
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices, enabled=bool(replay_rng)):
                logits = [model(x) for x in inputs]
        finally:
            with torch.no_grad():
                for b, v in zip(buffers, saved):
                    b.copy_(v)
        return self.normalize_over(logits, targets)

    def normalize_over(self, logits, targets):
        """A ``with`` block in which GR normalises with the statistics of these batches (logits at hand).

        ``logits``: a sequence of ``[B_k, C]`` tensors (detached or not; no
        gradient is taken); ``targets``: the matching ``[B_k]`` labels.  The
        loss calls inside the block must be given the same examples (in any
        grouping); see :meth:`accumulate`, which computes the logits itself.
        With ``normalize="global"`` under DDP this is a collective (every rank
        enters its block).  Blocks do not nest.
        """
        logits, targets = list(logits), list(targets)
        if len(logits) != len(targets) or not logits:
            raise ValueError(f"logits and targets must be non-empty sequences of the same length (one entry per "
                             f"micro-batch), got {len(logits)} logits and {len(targets)} targets")
        if self._fixed is not None:
            raise RuntimeError("GRLoss.accumulate()/normalize_over() blocks do not nest")
        parts = []
        with torch.no_grad():
            for z, t in zip(logits, targets):
                t = check_logits_targets(z, t)
                score, log1mp = _gr_score(z.detach(), t, self.lam, self.beta)[4:]
                parts.append(score_statistics(score, torch.exp(log1mp)))
            dt = parts[0].dtype
            local = merge_statistics(torch.stack([p.to(dt) for p in parts]))
            world = 1
            stats = local
            if self.normalize == "global":
                world, _ = process_group_size(self.group)
                if world > 1:
                    stats = gather_statistics(local, self.group)
        return self._block(GRNormalizer(world=world, fixed=stats), sum(int(z.shape[0]) for z in logits))

    @contextlib.contextmanager
    def _block(self, norm, expected: int):
        self._check_global_batch(norm.fixed[2])
        self._fixed, self._block_expected, self._block_seen = norm, expected, 0
        try:
            yield
        finally:
            self._fixed = None
        if self._block_seen != expected:
            warnings.warn(f"GRLoss.accumulate()/normalize_over(): the loss was given {self._block_seen} examples "
                          f"inside the block but its statistics came from {expected}; the weights do not sum to 1 over "
                          "what was trained (give the loss exactly the micro-batches of the statistics pass, once "
                          "each)", RuntimeWarning, stacklevel=3)


class _NormInfo:
    """What :meth:`GRLoss.reduce` needs of a call normalised beyond its batch (attached to ``details().values``)."""

    __slots__ = ("world", "count")

    def __init__(self, world: int, count: torch.Tensor):
        self.world = world
        self.count = count


def _gr_score(z: torch.Tensor, targets: torch.Tensor, lam: float, beta: float):
    """GR's per-example quantities from detached logits, in log space.

    Returns ``(others, lse_other, z_y, logp_y, score, log1mp)``: the logits with
    the labelled class masked, logsumexp over the other classes, the labelled
    logit, ``log p_y``, the score ``beta p^lam (1 - p)`` and ``log(1 - p_y)``.
    """
    idx = targets[:, None]
    lse = torch.logsumexp(z, dim=1)
    z_y = z.gather(1, idx).squeeze(1)
    others = z.scatter(1, idx, float("-inf"))
    lse_other = torch.logsumexp(others, dim=1)
    logp_y = z_y - lse
    log1mp = lse_other - lse
    score = beta * torch.exp(lam * logp_y + log1mp)
    return others, lse_other, z_y, logp_y, score, log1mp


class _GRSurrogate(torch.autograd.Function):
    """GR's per-example values with a closed-form backward (one fused node instead of ~20).

    Forward (all in log space)::

        m_i    = logsumexp_{j != y} z_ij - z_iy                 (the surrogate margin)
        score  = beta * exp(lam * log p_y + log(1 - p_y))       (= beta p^lam (1 - p))
        w      = softmax over the batch of score
        c      = min(1, 2 (1 - p_y) / cap)
        coef   = B * w * c * s / 2,   values = coef * m

    With a normaliser (``norm``, see :class:`grlib.distributed.GRNormalizer`)
    the softmax's maximum and sum, ``B`` and the batch mean of ``2 (1 - p)``
    (``scale="ce"``) come from the whole batch (every rank's, or every
    micro-batch's) instead of this one: ``w = exp(score - M) / S``.

    Backward: ``dvalues_i/dz_i = coef_i * (q_i - onehot(y_i))`` where ``q`` is
    the softmax over the classes other than ``y`` (``w``, ``c``, ``s`` are
    constants, as the method prescribes).  ``scale < 0`` means "ce".
    Returns ``(values, log p_y, score, w, coef)``; only ``values`` is differentiable.
    """

    @staticmethod
    def forward(ctx, logits, targets, lam, beta, cap, scale, norm):
        others, lse_other, z_y, logp_y, score, log1mp = _gr_score(logits.detach(), targets, lam, beta)
        if norm is None:
            w = torch.softmax(score, dim=0)
            omp = torch.exp(log1mp)
            c = torch.clamp(omp * (2.0 / cap), max=1.0)
            s = (2.0 * omp).mean() if scale < 0 else scale
            coef = w * c * (s * 0.5 * w.numel())
        else:
            omp = torch.exp(log1mp)
            m, total, n, sum_omp = norm(score, omp)    # in the scores' dtype, at least float32
            w = torch.exp(score.to(m.dtype) - m) / total
            c = torch.clamp(omp * (2.0 / cap), max=1.0)
            s = 2.0 * sum_omp / n if scale < 0 else scale
            coef = (w * c.to(m.dtype) * (s * 0.5 * n)).to(score.dtype)
            w = w.to(score.dtype)
        values = coef * (lse_other - z_y)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(others, lse_other, coef, targets)
        ctx.mark_non_differentiable(logp_y, score, w, coef)
        return values, logp_y, score, w, coef

    @staticmethod
    def backward(ctx, grad_values, *unused):
        if grad_values is None:
            return None, None, None, None, None, None, None
        others, lse_other, coef, targets = ctx.saved_tensors
        q = torch.exp(others - lse_other[:, None])          # 0 at the labelled class
        direction = q.scatter(1, targets[:, None], -1.0)    # (p - onehot) / (1 - p_y), division-free
        return direction * (grad_values * coef)[:, None], None, None, None, None, None, None


LOSSES: dict[str, type[EmphasisLoss]] = {
    cls.name: cls for cls in (CELoss, MAELoss, MSELoss, GCELoss, SCELoss, NCERCELoss, GRLoss)
}


def loss_names() -> list[str]:
    """The names :func:`get_loss` accepts."""
    return list(LOSSES)


def get_loss(name: str, **params) -> EmphasisLoss:
    """Build a loss by name: ``"ce"``, ``"mae"``, ``"mse"``, ``"gce"``, ``"sce"``, ``"nce+rce"``, ``"gr"``.

    ``params`` go to the loss's constructor (e.g. ``q`` for GCE; ``lam``,
    ``beta``, ``cap``, ``scale`` for GR; ``reduction`` for all).
    """
    if not isinstance(name, str) or name.lower() not in LOSSES:
        raise ValueError(f"loss name={name!r} is unknown; valid names: {', '.join(LOSSES)}")
    cls = LOSSES[name.lower()]
    import inspect

    allowed = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(f"loss {name!r} got unknown parameter(s) {unknown}; allowed: {allowed}")
    return cls(**params)
