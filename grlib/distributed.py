"""GR and the Recorder beyond one process: global-batch normalisation under DDP, gradient accumulation.

GR's weights are a softmax over a batch.  Under PyTorch
``DistributedDataParallel`` (DDP) every process sees only its shard of the
batch, and with gradient accumulation every backward sees only one
micro-batch.  This module holds what grlib needs to normalise over the whole
batch in both cases; users reach it through:

* ``GRLoss(normalize="global")``: when ``torch.distributed`` is initialised,
  the weights are normalised over every rank's examples (one small collective
  per loss call: each rank contributes four numbers, see
  :func:`gather_statistics`), and the per-rank loss is scaled so that DDP's
  mean of the ranks' gradients is exactly the gradient of the loss on the
  concatenated batch.  Without a process group (or with one process) it is
  exactly ``normalize="batch"``.
* ``GRLoss.accumulate(model, inputs, targets)``: a ``with`` block in which
  the loss normalises over every micro-batch of an accumulated batch (a
  no-grad pass computes their statistics first; see
  :meth:`grlib.GRLoss.accumulate`).
* ``Recorder(..., distributed=True)``: every rank records the examples it
  sees; the epochs are merged across ranks at each ``end_epoch`` (see
  :class:`grlib.Recorder`).

The statistics of a batch of GR scores ``u_i = beta p_i^lam (1 - p_i)`` are
four numbers ``(m, s, n, o)``: the largest score ``m``, the sum of
``exp(u_i - m)``, the number of examples ``n`` and the sum of ``1 - p_i``
(for ``scale="ce"``).  Statistics of disjoint parts merge exactly
(:func:`merge_statistics`), like the running maximum and sum of an online
softmax, so one ``all_gather`` of four numbers per rank replaces the
all-reduce of the maximum (MAX) followed by that of the sum of exponentials
and of the count (SUM): one collective per step instead of two.
"""
from __future__ import annotations

import torch

__all__ = ["process_group_size", "process_group_ready", "is_distributed", "score_statistics", "merge_statistics",
           "gather_statistics", "GRNormalizer", "collective_device"]


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def process_group_size(group=None) -> tuple[int, int]:
    """``(world_size, rank)`` of ``group`` (default: the default group); ``(1, 0)`` without torch.distributed."""
    dist = _dist()
    if dist is None:
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


def process_group_ready() -> bool:
    """Whether ``torch.distributed`` is available and initialised (whatever the number of processes)."""
    return _dist() is not None


def is_distributed(group=None) -> bool:
    """Whether ``torch.distributed`` is initialised with more than one process in ``group``."""
    return process_group_size(group)[0] > 1


def collective_device(group=None) -> torch.device:
    """The device whose tensors ``group``'s backend reduces: CUDA for NCCL, else CPU."""
    dist = _dist()
    if dist is not None and "nccl" in str(dist.get_backend(group)).lower() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def score_statistics(score: torch.Tensor, one_minus_p: torch.Tensor) -> torch.Tensor:
    """The statistics ``[m, s, n, o]`` of one batch of GR scores (see the module docstring), shape ``[4]``.

    ``score``: ``[B]`` GR scores ``beta p^lam (1 - p)``; ``one_minus_p``: ``[B]``.
    Computed in the scores' dtype, at least float32.  An empty batch gives
    ``[-inf, 0, 0, 0]`` (the neutral element of :func:`merge_statistics`).
    """
    dt = torch.promote_types(score.dtype, torch.float32)
    u = score.to(dt)
    if u.numel() == 0:
        return torch.tensor([float("-inf"), 0.0, 0.0, 0.0], dtype=dt, device=score.device)
    m = u.max()
    return torch.stack([m, torch.exp(u - m).sum(), torch.full_like(m, u.numel()), one_minus_p.to(dt).sum()])


def merge_statistics(stats: torch.Tensor) -> torch.Tensor:
    """Merge the statistics ``[K, 4]`` of K disjoint parts of a batch into those of the whole, ``[4]``.

    ``m = max_k m_k``, ``s = sum_k s_k exp(m_k - m)``, ``n = sum_k n_k``,
    ``o = sum_k o_k``: exact (up to rounding) whatever the split.
    """
    m_k, s_k = stats[:, 0], stats[:, 1]
    m = m_k.max()
    # parts without examples have m_k = -inf and s_k = 0: exp(-inf) = 0, and 0 * 0 stays 0
    scale = torch.where(s_k > 0, torch.exp(m_k - m), torch.zeros_like(s_k))
    return torch.stack([m, (s_k * scale).sum(), stats[:, 2].sum(), stats[:, 3].sum()])


def gather_statistics(local: torch.Tensor, group=None) -> torch.Tensor:
    """Every rank's statistics ``[4]`` merged over ``group``: one ``all_gather`` of four numbers per rank.

    The tensors are constants (no autograd through the collective: GR's
    weights are detached by definition).  Every rank of ``group`` must call
    this the same number of times, in the same order (it is a collective).
    """
    dist = _dist()
    world = dist.get_world_size(group)
    out = torch.empty(world * local.numel(), dtype=local.dtype, device=local.device)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, local.contiguous(), group=group)
    return merge_statistics(out.view(world, local.numel()))


class GRNormalizer:
    """How one GR loss call normalises its weights: over the ranks of a group, or by fixed statistics.

    Called by :class:`grlib.losses._GRSurrogate` with the batch's scores and
    ``1 - p``; returns ``(m, s, n, o)`` as 0-d tensors.  ``world`` is the
    number of ranks whose gradients DDP averages (the reduction multiplies by
    it so that the mean over ranks is the loss of the whole batch); ``count``
    holds the whole batch's size after the call (a 0-d tensor).
    """

    __slots__ = ("group", "world", "fixed", "count")

    def __init__(self, *, group=None, world: int = 1, fixed: torch.Tensor | None = None):
        self.group = group
        self.world = int(world)
        self.fixed = fixed
        self.count = None

    def __call__(self, score: torch.Tensor, one_minus_p: torch.Tensor):
        if self.fixed is not None:
            st = self.fixed.to(device=score.device)
        else:
            st = gather_statistics(score_statistics(score, one_minus_p), self.group)
        self.count = st[2]
        return st[0], st[1], st[2], st[3]
