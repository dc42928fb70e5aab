"""Data plumbing for a user's own loop: example indices through a ``DataLoader``, equal-size batches, seeded transforms.

Three small pieces, each usable on its own with any PyTorch loop:

* :class:`IndexedDataset` wraps any map-style ``torch.utils.data.Dataset``
  returning ``(x, y)`` so that it returns ``(x, y, index)``: the index a
  :class:`~grlib.Recorder` needs.  It can replace the labels (noisy labels) and
  apply a per-example ``transform`` (augmentation) with **one random stream per
  (seed, epoch, example)**, so the augmented inputs, and so the records, are
  the same whatever ``num_workers`` is.
* :class:`EqualBatchSampler` yields ``ceil(n / batch_size)`` batches of near-equal
  size (sizes differ by at most one) in a seeded random order per epoch.  GR's
  weights are a softmax over the batch, so a short last batch (3 examples
  after 21 batches of 64 on digits) gives each of its examples ~20x the
  average weight; near-equal batches avoid that without dropping data.
* :func:`seed_for` is the seed of one example's transform in one epoch.

Call ``set_epoch(epoch)`` on both (as with ``DistributedSampler``) before each
epoch.  Keep ``persistent_workers=False`` (the default) so workers see the new
epoch.
"""
from __future__ import annotations

import hashlib
import random
from typing import Callable

import numpy as np
import torch

from ._checks import check_int

__all__ = ["IndexedDataset", "EqualBatchSampler", "seed_for", "as_index_tensor"]


def seed_for(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one example's random transform in one epoch (stable across processes and runs)."""
    h = hashlib.blake2b(f"{int(seed)}:{int(epoch)}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class IndexedDataset(torch.utils.data.Dataset):
    """``dataset[i] -> (x, y, i)``, with optional label replacement and a seeded per-example transform.

    Parameters
    ----------
    dataset : map-style Dataset or tuple of tensors/arrays ``(X, y)``
        ``dataset[i]`` must return ``(x, y)`` (extra items are dropped).
    labels : array-like of int, optional
        Labels to return instead of the dataset's own (e.g. noisy labels), by index.
    transform : callable ``x -> x``, optional
        Applied to ``x`` on every access (the training pass).  It may use
        torch's, numpy's legacy and Python's global random generators: before
        each call they are seeded with :func:`seed_for` ``(seed, epoch, i)``
        and restored afterwards, so the caller's random state is left
        untouched and the result does not depend on the worker that ran it.
    seed : int
        The run's seed (mixed into every example's transform seed).
    """

    def __init__(self, dataset, *, labels=None, transform: Callable | None = None, seed: int = 0):
        if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
            dataset = _TupleDataset(*dataset)
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a map-style torch Dataset (with __getitem__ and __len__) or a pair "
                            f"(X, y); got {type(dataset).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (x -> x), got {type(transform).__name__}")
        self.dataset = dataset
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if self.labels is not None and len(self.labels) != len(dataset):
            raise ValueError(f"labels has {len(self.labels)} entries but the dataset has {len(dataset)} examples")
        self.transform = transform
        self.seed = check_int("seed", seed, low=0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose random streams the transform uses (call before iterating)."""
        self.epoch = check_int("epoch", epoch, low=0)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        i = int(i)
        item = self.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"dataset[{i}] must return (x, y); got {type(item).__name__}")
        x, y = item[0], item[1]
        if self.labels is not None:
            y = self.labels[i]
        if self.transform is not None:
            s = seed_for(self.seed, self.epoch, i)
            state = torch.get_rng_state()  # the caller's stream is restored afterwards
            torch.default_generator.manual_seed(s)  # (torch.manual_seed also queues every accelerator: slow)
            try:
                if isinstance(self.transform, _TorchOnly):  # grlib's Augment draws from torch only
                    x = self.transform(x)
                else:
                    py_state, np_state = random.getstate(), np.random.get_state()
                    random.seed(s)
                    np.random.seed(s & 0xFFFFFFFF)
                    try:
                        x = self.transform(x)
                    finally:
                        random.setstate(py_state)
                        np.random.set_state(np_state)
            finally:
                torch.set_rng_state(state)
        return x, y, i


def _torch_only_types() -> tuple:
    from .augment import Augment

    return (Augment,)


class _TorchOnlyMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, _torch_only_types())


class _TorchOnly(metaclass=_TorchOnlyMeta):
    """isinstance(t, _TorchOnly): a transform known to draw only from torch's generator."""


class _TupleDataset(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        self.y = torch.as_tensor(np.asarray(y)) if not isinstance(y, torch.Tensor) else y
        if len(self.x) != len(self.y):
            raise ValueError(f"X has {len(self.x)} rows but y has {len(self.y)} labels")

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class EqualBatchSampler(torch.utils.data.Sampler):
    """Seeded random batches of near-equal size: ``ceil(n / batch_size)`` batches per epoch.

    Pass it as ``DataLoader(dataset, batch_sampler=EqualBatchSampler(n, 64, seed=0))``
    and call ``set_epoch(e)`` before each epoch.  The order of epoch ``e`` is a
    permutation drawn from a generator seeded with ``(seed, e)``, so it does not
    depend on how many epochs ran before (resumable) nor on the workers.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, shuffle: bool = True):
        self.n = check_int("n", n, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.seed = check_int("seed", seed, low=0)
        self.shuffle = bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` for the next iteration (without calls, iterations use epochs 0, 1, 2, ...)."""
        self.epoch = check_int("epoch", epoch, low=0)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def permutation(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(seed_for(self.seed, self.epoch, -1))
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        perm = self.permutation()
        # a loop that never calls set_epoch (e.g. Lightning, which does not for batch samplers) still gets a
        # new order every epoch: the next iteration uses the next epoch
        self.epoch += 1
        for part in torch.tensor_split(perm, len(self)):
            yield part.tolist()


def as_index_tensor(index, name: str = "index") -> torch.Tensor:
    """An index batch as a 1-D integer tensor (lists, numpy arrays and tensors accepted)."""
    if isinstance(index, torch.Tensor):
        t = index
    else:
        t = torch.as_tensor(np.asarray(index))
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one position per example of the batch), got shape {tuple(t.shape)}")
    if torch.is_floating_point(t) or t.dtype == torch.bool or torch.is_complex(t):
        raise TypeError(f"{name} must hold integer positions in the training set, got dtype {t.dtype}")
    return t

