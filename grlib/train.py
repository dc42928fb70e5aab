"""The training loop: trains one model (grlib's or yours) and records every example through a :class:`~grlib.Recorder`.

``train()`` takes grlib's data sets by name or your own data (a
:class:`grlib.Dataset`, numpy arrays / tensors ``(X, y)``, or any map-style
``torch.utils.data.Dataset``), grlib's models or your ``torch.nn.Module`` (or
a factory), an optimizer by name, a ``torch.optim`` class or a factory, and
any ``torch.optim.lr_scheduler`` (by factory).  Two data paths:

* **in memory** (the fast default for arrays): the training set lives on the
  device as one tensor; batches are index slices; grlib's built-in
  augmentation (:class:`grlib.augment.Augment`) is applied batch-wise on the
  device.
* **DataLoader** (a torch ``Dataset``, a per-example ``transform`` of your
  own, or ``num_workers > 0``): a ``DataLoader`` over
  :class:`grlib.IndexedDataset` with :class:`grlib.EqualBatchSampler`.  The
  transform draws from one random stream per (seed, epoch, example), so the
  same seed gives the same records whatever ``num_workers`` is.

Both use the same batches: ``ceil(n / batch_size)`` near-equal batches per
epoch in the order of :class:`grlib.EqualBatchSampler` (GR normalises its
weights over a batch, so no short last batch).

**No host sync per step.**  The loss, the records and the finiteness guard
stay on the device; the host reads them once per epoch (and a 0-d flag every
``check_every`` steps).  The guard: after each backward pass, one fused check
(``torch._amp_foreach_non_finite_check_and_unscale_``, the op behind
``GradScaler``) flags a non-finite loss or gradient on the device; the flag is
sticky, and the optimizer step is skipped *on the device* while it is set
(fused SGD / Adam / AdamW take it as ``found_inf``; other optimizers get
their parameters and state restored by ``torch.where``), so no non-finite
update ever reaches the weights, momentum or weight decay included.  The
exact step that failed is kept (a device-side step count) and training
stops there, with the records up to and including that step.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from typing import Callable, Iterable

import numpy as np
import torch

from ._checks import check_choice, check_int
from .config import RunConfig
from .data import Dataset, dataset_names, load_dataset
from .loader import EqualBatchSampler, IndexedDataset
from .losses import EmphasisLoss, get_loss
from .models import get_model, resolve_device
from .noise import NoisyLabels, add_label_noise
from .recorder import Recorder
from .results import RunResult

__all__ = ["train", "prepare", "NonFiniteLossError", "evaluate", "predict_proba"]

Callback = Callable[[int, RunResult], "bool | None"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or gradient.  ``.result`` holds the records up to that step."""

    def __init__(self, message: str, *, epoch: int, step: int, result: RunResult):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.result = result


def prepare(config: RunConfig, data: Dataset | None = None) -> tuple[Dataset, NoisyLabels, np.ndarray | None]:
    """Load the data and corrupt the training (and validation) labels as the config says.

    Returns ``(data, noisy_train, noisy_val_labels)``.  The validation labels
    are corrupted with the same kind and rate (seed ``seed + 1``): model
    selection sees only noisy labels, as in practice.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a grlib.RunConfig, got {type(config).__name__}")
    if data is None:
        if config.dataset not in dataset_names():
            raise ValueError(f"dataset={config.dataset!r} is not one of grlib's data sets ({', '.join(dataset_names())}); "
                             "to train on your own data pass it: train(config, data=(X, y)) or data=your Dataset")
        data = load_dataset(config.dataset, val_fraction=config.val_fraction, n_train=config.n_train,
                            split_seed=config.split_seed)
    if config.outlier_fraction > 0 or config.corruption_fraction > 0:  # inputs damaged too (issue 14)
        src = _Source(name=data.name, num_classes=data.num_classes, y_true=np.asarray(data.y_train),
                      image_shape=data.image_shape, x=data.x_train, builtin=data.name in dataset_names())
        noisy, masks = _corrupt(config, src)
        noisy.masks.update(masks)
        object.__setattr__(noisy, "outlier_source_used", src.outlier_source_used)
        data = dataclasses.replace(data, x_train=src.x)
    else:
        noisy = add_label_noise(data.y_train, data.num_classes, config.noise, config.noise_rate, seed=config.seed)
    val_labels = None
    if len(data.y_val):
        val_labels = add_label_noise(data.y_val, data.num_classes, config.noise, config.noise_rate,
                                     seed=config.seed + 1).labels
    return data, noisy, val_labels


@torch.no_grad()
def predict_proba(model: torch.nn.Module, x, *, device=None, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities ``[N, C]`` for features ``x`` (numpy or tensor), in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x,
                        dtype=torch.float32)
    out = []
    for i in range(0, x.shape[0], batch_size):
        out.append(torch.softmax(model(x[i:i + batch_size].to(device)), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 4096):
    """(probability of label y, predictions) for tensors already on the model's device."""
    was_training = model.training
    model.eval()
    ps, preds = [], []
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i:i + batch_size])
        preds.append(logits.argmax(1))
        if y is not None:
            logp = torch.log_softmax(logits, 1).gather(1, y[i:i + batch_size, None]).squeeze(1)
            ps.append(torch.exp(logp))
    model.train(was_training)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=x.device)
    p = torch.cat(ps) if ps else None
    return p, pred


# -- building the parts ---------------------------------------------------------------------------------------
class _Source:
    """The training data in one of two forms: in-memory arrays, or a torch Dataset."""

    def __init__(self, *, name, num_classes, y_true, image_shape=None, class_names=(), x=None, dataset=None,
                 x_test=None, y_test=None, x_val=None, y_val=None, test_dataset=None, builtin=False,
                 num_features=None, x_shape=None):
        self.name, self.num_classes, self.y_true = name, num_classes, y_true
        self.image_shape, self.class_names = image_shape, class_names
        self.x, self.dataset, self.builtin = x, dataset, builtin
        self.x_test, self.y_test, self.x_val, self.y_val = x_test, y_test, x_val, y_val
        self.test_dataset = test_dataset
        self.x_shape = x_shape  # per-example shape a user's model receives (None: flat features)
        self.num_features = num_features if num_features is not None else (None if x is None else int(x.shape[1]))

    @property
    def n(self) -> int:
        return int(len(self.y_true))


def _dataset_labels(ds) -> np.ndarray:
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) == len(ds):
        return np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets).astype(np.int64)
    out = np.empty(len(ds), np.int64)
    for i in range(len(ds)):  # one pass over the data: the labels are needed up front
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"data[{i}] must return (x, y); got {type(item).__name__}")
        out[i] = int(item[1])
    return out


def _as_source(config: RunConfig, data, test_data, data_name) -> tuple[_Source, np.ndarray | None]:
    """The training source and the noisy validation labels (builtin data with val_fraction)."""
    if data is None:
        if config.dataset not in dataset_names():
            raise ValueError(f"dataset={config.dataset!r} is not one of grlib's data sets "
                             f"({', '.join(dataset_names())}); to train on your own data pass it: "
                             "train(config, data=(X, y)) or data=a grlib.Dataset or a torch Dataset")
        data = load_dataset(config.dataset, val_fraction=config.val_fraction, n_train=config.n_train,
                            split_seed=config.split_seed)
        builtin = True
    else:
        builtin = False
    if isinstance(data, Dataset):
        return _Source(name=data_name or data.name, num_classes=data.num_classes, y_true=np.asarray(data.y_train),
                       image_shape=data.image_shape, class_names=data.class_names, x=data.x_train,
                       x_test=data.x_test, y_test=data.y_test, x_val=data.x_val, y_val=data.y_val,
                       builtin=data.name in dataset_names()), None
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data=(X, y) must be a pair of arrays; got a {type(data).__name__} of {len(data)} items")
        x, y = (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a) for a in data)
        if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32, copy=False)
        if x.ndim < 2:
            raise ValueError(f"X must have one row per example ([N, D] or [N, C, H, W]); got shape {x.shape}")
        image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None
        x = x.reshape(len(x), -1)
        kwargs = {}
        if test_data is not None:
            if not isinstance(test_data, (tuple, list)) or len(test_data) != 2:
                raise TypeError("test_data must be a pair (X_test, y_test) when data is a pair of arrays")
            xt, yt = (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a) for a in test_data)
            kwargs = {"x_test": xt.reshape(len(xt), -1), "y_test": yt}
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
        num_classes = int(max(y.max(initial=0), kwargs.get("y_test", np.zeros(1, int)).max(initial=0)) + 1)
        ds = Dataset(name=data_name or "arrays", x_train=x, y_train=y,
                     x_test=kwargs.get("x_test", np.zeros((0, x.shape[1]), np.float32)),
                     y_test=kwargs.get("y_test", np.zeros(0, np.int64)), num_classes=max(num_classes, 2),
                     image_shape=image_shape)
        src, _ = _as_source(config, ds, None, data_name)
        src.x_shape = tuple(data[0].shape[1:]) if len(data[0].shape) > 2 else None
        return src, None
    if isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        if isinstance(data, torch.utils.data.IterableDataset):
            raise TypeError("data must be a map-style Dataset (with __getitem__ and __len__): an IterableDataset "
                            "cannot give each example's position in the training set")
        if len(data) == 0:
            raise ValueError("data is empty; nothing to train on")
        y = _dataset_labels(data)
        first = data[0][0]
        num_classes = int(getattr(data, "num_classes", 0) or 0) or int(y.max() + 1)
        test_ds = None
        if test_data is not None:
            test_ds = test_data if not isinstance(test_data, (tuple, list)) else IndexedDataset(test_data).dataset
        return _Source(name=data_name or type(data).__name__, num_classes=max(num_classes, 2), y_true=y,
                       dataset=data, test_dataset=test_ds,
                       num_features=int(np.prod(getattr(first, "shape", (0,)))) or None,
                       image_shape=tuple(first.shape) if getattr(first, "ndim", 0) == 3 else None), None
    raise TypeError(f"data must be None (the config's data set), a grlib.Dataset, a pair (X, y) or a map-style "
                    f"torch Dataset; got {type(data).__name__}")


def _corrupt(config: RunConfig, src: _Source):
    """Label noise plus outliers and corrupted inputs (grlib.corruption); replaces the source's training inputs."""
    from .corruption import add_data_noise, input_scale

    if src.x is None:
        raise ValueError("outlier_fraction / corruption_fraction need in-memory data (a grlib data set, a "
                         "grlib.Dataset or (X, y) arrays), not a torch Dataset; corrupt your inputs with "
                         "grlib.corruption.add_data_noise first")
    scale = None
    if src.builtin:  # corrupt in pixel units, then standardise as load_dataset did
        scale = input_scale(src.name, val_fraction=config.val_fraction, n_train=config.n_train,
                            split_seed=config.split_seed)
    nd = add_data_noise(src.x, src.y_true, src.num_classes, noise=config.noise, noise_rate=config.noise_rate,
                        outlier_fraction=config.outlier_fraction, outlier_source=config.outlier_source,
                        corruption_fraction=config.corruption_fraction, corruption_kind=config.corruption_kind,
                        severity=config.corruption_severity, image_shape=src.image_shape, scale=scale,
                        dataset=src.name if src.builtin else None, seed=config.seed)
    src.x = np.ascontiguousarray(nd.x, dtype=np.float32)
    noisy = NoisyLabels(labels=nd.labels, true_labels=nd.true_labels, is_noisy=nd.is_noisy,
                        transition=nd.label_noise.transition, kind=nd.label_noise.kind, rate=nd.label_noise.rate)
    src.outlier_source_used = nd.outlier_source
    return noisy, {"is_outlier": nd.is_outlier, "is_corrupted": nd.is_corrupted}


def _build_model(config: RunConfig, model, src: _Source):
    if model is None:
        if config.model not in ("mlp", "cnn"):
            raise ValueError(f"model={config.model!r} is not one of grlib's models ('mlp', 'cnn'); pass your own "
                             "with train(model=...)")
        if src.num_features is None:
            raise ValueError("grlib's models need flat features; pass your own model for this data (model=...)")
        kwargs = {"batchnorm": True} if config.batchnorm else {}
        return get_model(config.model, in_features=src.num_features, num_classes=src.num_classes,
                         image_shape=src.image_shape, hidden=config.hidden, **kwargs), config.model
    if isinstance(model, torch.nn.Module):
        return model, f"user:{type(model).__name__}"
    if callable(model):
        built = model()
        if not isinstance(built, torch.nn.Module):
            raise TypeError(f"model factory returned {type(built).__name__}, not a torch.nn.Module")
        return built, f"user:{type(built).__name__}"
    raise TypeError(f"model must be None (the config's model), a torch.nn.Module or a factory returning one; got "
                    f"{type(model).__name__}")


def _fused_ok(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


def _build_optimizer(config: RunConfig, optimizer, params, device):
    params = list(params)
    if optimizer is None or isinstance(optimizer, str):
        name = check_choice("optimizer", optimizer or config.optimizer, ("sgd", "adam", "adamw"))
        kw = {"fused": True} if _fused_ok(device) else {}
        try:
            if name == "sgd":
                return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                       weight_decay=config.weight_decay, **kw), name
            cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
            return cls(params, lr=config.lr, weight_decay=config.weight_decay, **kw), name
        except (RuntimeError, TypeError, ValueError):  # an older torch without fused kernels for this device
            return _build_optimizer(config, _PLAIN[name], params, torch.device("meta"))
    if inspect.isclass(optimizer) and issubclass(optimizer, torch.optim.Optimizer):
        sig = inspect.signature(optimizer.__init__).parameters
        kw = {"lr": config.lr}
        if "weight_decay" in sig:
            kw["weight_decay"] = config.weight_decay
        if "momentum" in sig:
            kw["momentum"] = config.momentum
        builtin = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}.get(optimizer)
        return optimizer(params, **kw), builtin or f"user:{optimizer.__name__}"
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer factory returned {type(opt).__name__}, not a torch.optim.Optimizer")
        return opt, f"user:{type(opt).__name__}"
    raise TypeError(f"optimizer must be a name ('sgd', 'adam', 'adamw'), a torch.optim.Optimizer class or a factory "
                    f"params -> optimizer; got {type(optimizer).__name__}")


_PLAIN = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _build_scheduler(config: RunConfig, scheduler, opt, interval):
    if interval is not None:
        check_choice("scheduler_interval", interval, ("epoch", "step"))
    if scheduler is None:
        if config.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs), "epoch", config.schedule
        if config.schedule == "step":
            milestones = sorted({max(1, int(config.epochs * 0.5)), max(1, int(config.epochs * 0.75))})
            return (torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1), "epoch",
                    config.schedule)
        return None, "epoch", config.schedule
    if not callable(scheduler):
        raise TypeError(f"scheduler must be a factory optimizer -> torch.optim.lr_scheduler object, got "
                        f"{type(scheduler).__name__}")
    sched = scheduler(opt)
    if not hasattr(sched, "step"):
        raise TypeError(f"scheduler factory returned {type(sched).__name__}, which has no step()")
    if interval is None:
        per_step = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)
        interval = "step" if isinstance(sched, per_step) else "epoch"
    return sched, interval, f"user:{type(sched).__name__}"


class _StepGuard:
    """Device-side finiteness guard: skip every update from the first non-finite loss/gradient on, no host sync."""

    def __init__(self, opt: torch.optim.Optimizer, device: torch.device):
        self.opt = opt
        self.failed = torch.zeros((), device=device)          # sticky 0/1 flag (float: found_inf's dtype)
        self.after = torch.zeros((), device=device)           # steps taken while failed (to locate the first)
        self.one = torch.ones((), device=device)
        self.fused = bool(getattr(opt, "_step_supports_amp_scaling", False)) and all(
            g.get("fused") for g in opt.param_groups)
        self.params = [p for g in opt.param_groups for p in g["params"]]

    def ok_mask(self) -> torch.Tensor:
        return self.failed == 0

    def step(self, loss: torch.Tensor) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        # sets failed to 1 if any value is non-finite, and never back to 0 (multiplies by one: no change)
        torch._amp_foreach_non_finite_check_and_unscale_(grads + [loss.detach().reshape(1)], self.failed, self.one)
        self.after.add_(self.failed)
        if self.fused:
            self.opt.grad_scale = None
            self.opt.found_inf = self.failed
            self.opt.step()
            del self.opt.found_inf, self.opt.grad_scale
        else:  # any optimizer: step, then put parameters and state back where the flag is set
            before = [p.detach().clone() for p in self.params]
            state = [(t, t.detach().clone()) for s in self.opt.state.values() for t in s.values()
                     if isinstance(t, torch.Tensor)]
            self.opt.step()
            keep = self.failed > 0
            with torch.no_grad():
                for p, b in zip(self.params, before):
                    p.copy_(torch.where(keep, b, p))
                for t, b in state:
                    t.copy_(torch.where(keep, b, t))

    def has_failed(self) -> bool:
        return bool(self.failed.item())


# -- the loop ---------------------------------------------------------------------------------------------------
def train(config: RunConfig | None = None, *, data=None, noisy: NoisyLabels | None = None, model=None,
          optimizer=None, scheduler=None, scheduler_interval: str | None = None, transform=None, test_data=None,
          data_name: str | None = None, num_workers: int = 0, record_path=None, record_fields=None,
          record_dtype: str = "float32", record_every: int = 1, overwrite: bool = False,
          callbacks: Iterable[Callback] = (), progress: bool = True, on_nonfinite: str = "raise",
          check_every: int = 50, **overrides) -> RunResult:
    """Train one model and record every training example at every epoch.

    Parameters
    ----------
    config : RunConfig, optional
        Run settings (defaults: :class:`RunConfig`).  Keyword ``overrides``
        replace single settings, e.g. ``train(loss="ce", loss_params={})``.
    data : optional
        None (the config's data set), a :class:`grlib.Dataset`, a pair
        ``(X, y)`` of arrays / tensors (X ``[N, D]`` or images ``[N, C, H, W]``,
        any float dtype; y integer labels), or any map-style
        ``torch.utils.data.Dataset`` returning ``(x, y)`` (its labels are read
        from ``.targets`` when present, else by one pass over it).  The config's
        label noise is added to these labels (pass ``noise="none"`` to train
        on your labels as they are: then the noise mask is unknown, None).
    noisy : NoisyLabels, optional
        Pre-made noisy labels for the training split (else made from the config).
    model : torch.nn.Module or factory, optional
        Your model (used as given) or a no-argument factory (called after
        seeding, so the initialisation follows ``seed``).  Default: the
        config's ``mlp`` / ``cnn``.
    optimizer : str, torch.optim.Optimizer class, or factory ``params -> optimizer``
        A class gets ``lr``, ``weight_decay`` (and ``momentum`` if it takes
        one) from the config.  Default: the config's (``sgd``, ``adam`` or
        ``adamw``; fused kernels where available).
    scheduler : factory ``optimizer -> scheduler``, optional
        Any ``torch.optim.lr_scheduler``; stepped per epoch, or per step for
        OneCycleLR / CyclicLR (``scheduler_interval`` forces either).  Default:
        the config's ``schedule``.
    transform : callable ``x -> x``, optional
        A per-example transform on the training pass (your augmentation); it
        selects the DataLoader path.  Default: grlib's augmentation when
        ``config.augment`` (batch-wise, in memory).
    test_data : optional
        Test examples for user data: ``(X, y)`` or a torch Dataset.
    data_name : str, optional
        Your name for the data, saved with the run (default: the data set's
        name, ``"arrays"`` or the Dataset's class name).
    num_workers : int
        DataLoader workers (> 0 selects the DataLoader path).
    record_path : path, optional
        Record to disk (a :class:`grlib.Recorder` folder; the returned result
        reads it memory-mapped).  ``record_fields``, ``record_dtype``,
        ``record_every``, ``overwrite`` go to the Recorder.
    callbacks : callables ``cb(epoch, result) -> bool | None``
        Called after each epoch (1-based) with a result holding the history so
        far (no records); returning True stops training.
    progress : bool
        A ``tqdm.auto`` progress bar over epochs.
    on_nonfinite : "raise" or "stop"
        What a NaN/inf loss or gradient does: raise :class:`NonFiniteLossError`
        (its ``.result`` keeps the records up to the failing step) or stop and
        return the result.  Either way no non-finite update reaches the weights.
    check_every : int
        Steps between host reads of the device-side finiteness flag (it is
        also read at every epoch's end).

    Returns
    -------
    RunResult
        History per epoch and per-example records ``[epochs, n_train]``.
    """
    if config is not None and not isinstance(config, RunConfig):
        raise TypeError(f"config must be a grlib.RunConfig or None, got {type(config).__name__} {config!r}; "
                        "for a built-in data set by name use train(dataset='digits'), for your own data "
                        "train(data=(X, y))")
    check_choice("on_nonfinite", on_nonfinite, ("raise", "stop"))
    check_int("num_workers", num_workers, low=0)
    check_int("check_every", check_every, low=1)
    config = config or RunConfig()
    if isinstance(model, str):  # a RunConfig setting ("mlp" / "cnn"), not a user model
        overrides["model"], model = model, None
    if isinstance(optimizer, str):
        overrides["optimizer"], optimizer = optimizer, None
    if overrides:
        config = config.replace(**overrides)
    t_start = time.perf_counter()

    src, _ = _as_source(config, data, test_data, data_name)
    if src.name != config.dataset:
        config = config.replace(dataset=src.name)
    extra_masks = {}
    if noisy is None and (config.outlier_fraction > 0 or config.corruption_fraction > 0):
        noisy, extra_masks = _corrupt(config, src)
        mask_known = True
    elif noisy is None:
        if not src.builtin and config.noise != "none":
            warnings.warn(f"train(): adding {config.noise} synthetic label noise at rate {config.noise_rate:g} to "
                          "your data (the config's setting); pass noise='none' to train on your labels as they are",
                          UserWarning, stacklevel=2)
        noisy = add_label_noise(src.y_true, src.num_classes, config.noise, config.noise_rate, seed=config.seed)
        mask_known = src.builtin or config.noise != "none"
    else:
        if not isinstance(noisy, NoisyLabels):
            raise TypeError(f"noisy must be a grlib.NoisyLabels, got {type(noisy).__name__}")
        mask_known = True
        extra_masks = dict(getattr(noisy, "masks", {}) or {})
    n = len(noisy.labels)
    if n == 0:
        raise ValueError("the training split is empty; nothing to train on")
    if n != src.n:
        raise ValueError(f"noisy labels ({n}) do not match the training split ({src.n})")
    if noisy.labels.min() < 0 or noisy.labels.max() >= src.num_classes:
        raise ValueError(f"training labels must lie in [0, {src.num_classes - 1}]; got values in "
                         f"[{noisy.labels.min()}, {noisy.labels.max()}]")
    val_labels = None
    if src.y_val is not None and len(src.y_val):
        val_labels = add_label_noise(src.y_val, src.num_classes, config.noise, config.noise_rate,
                                     seed=config.seed + 1).labels

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    net, model_name = _build_model(config, model, src)
    net = net.to(device)
    loss_fn: EmphasisLoss = get_loss(config.loss, **config.loss_params)
    opt, opt_name = _build_optimizer(config, optimizer, net.parameters(), device)
    sched, interval, sched_name = _build_scheduler(config, scheduler, opt, scheduler_interval)

    aug = None
    if transform is None and config.augment:
        from .augment import augment_for

        aug = augment_for(src.name, src.image_shape, shift=config.aug_shift, flip=config.aug_flip,
                          noise=config.aug_noise)
    elif transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable (x -> x), got {type(transform).__name__}")
    use_loader = src.x is None or num_workers > 0 or (transform is not None and not hasattr(transform, "batch"))
    if transform is not None and hasattr(transform, "batch") and not use_loader:
        aug = transform

    settings = config.to_dict()
    settings.update(model=model_name, optimizer=opt_name, schedule=sched_name, dataset=src.name)
    if model is not None:
        settings["hidden"] = None
    keep = record_fields
    if keep is None:
        keep = (("p", "pred", "margin", "loss", "weight", "log_emphasis") if config.record else ()) + \
               (("eval_p", "eval_pred") if config.eval_train else ())
    rec = Recorder(n, record_path, fields=keep, dtype=record_dtype, every=record_every, overwrite=overwrite,
                   metadata={"data_name": src.name, "config": settings})
    rec.set_labels(noisy.labels)
    rec._trusted = True  # indices from our own sampler, labels checked above

    y_dev = torch.as_tensor(noisy.labels, device=device)
    y_true_dev = torch.as_tensor(noisy.true_labels, device=device) if mask_known else None
    noisy_dev = torch.as_tensor(noisy.is_noisy, device=device) if mask_known else None
    clean_dev = None  # with outliers / corrupted inputs, "clean" means untouched, not merely correctly labelled
    if extra_masks:
        clean_dev = torch.as_tensor(~(noisy.is_noisy | extra_masks["is_outlier"] | extra_masks["is_corrupted"]),
                                    device=device)
    sampler = EqualBatchSampler(n, config.batch_size, seed=config.seed)
    shape = src.x_shape if (model is not None and src.x_shape is not None) else None
    test = _Evaluator(src, device, num_workers, shape)
    val = None
    if val_labels is not None:
        xv = torch.as_tensor(src.x_val, device=device)
        val = (xv.view(len(xv), *shape) if shape else xv, torch.as_tensor(val_labels, device=device))

    if use_loader:
        if src.dataset is not None:
            ds = src.dataset
        else:
            xt = torch.as_tensor(src.x)
            if model is not None and src.x_shape is not None:
                xt = xt.view(n, *src.x_shape)
            ds = (xt, torch.as_tensor(src.y_true))
        train_ds = IndexedDataset(ds, labels=noisy.labels, transform=transform, seed=config.seed)
        loader = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler, num_workers=num_workers,
                                             pin_memory=device.type == "cuda")
        eval_ds = IndexedDataset(ds, labels=noisy.labels, transform=None, seed=config.seed)
        eval_loader = torch.utils.data.DataLoader(eval_ds, batch_size=1024, shuffle=False, num_workers=num_workers)
        x_dev = None
    else:
        x_dev = torch.as_tensor(src.x, device=device)
        if model is not None and src.x_shape is not None:  # your model gets the examples in the shape you gave
            x_dev = x_dev.view(n, *src.x_shape)
        train_ds = loader = eval_loader = None
    aug_gen = None
    if aug is not None:
        aug_gen = torch.Generator(device=device).manual_seed(config.seed)

    from tqdm.auto import tqdm

    result_so_far = lambda: RunResult(config=settings, y_given=noisy.labels,  # noqa: E731
                                      y_true=noisy.true_labels if mask_known else None,
                                      is_noisy=noisy.is_noisy if mask_known else None, num_classes=src.num_classes,
                                      history=rec.history(), model=net, summaries=rec.summaries)
    guard = _StepGuard(opt, device)
    total_steps = 0
    E = config.epochs
    bar = tqdm(range(1, E + 1), desc=config.label, unit="epoch", disable=not progress, leave=False)
    net.train()
    stopped = None
    failure = None
    train_seconds = 0.0
    for epoch in bar:
        t_epoch = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        sampler.set_epoch(epoch)
        epoch_start_step = total_steps
        loss_sum = torch.zeros((), device=device)
        batches = _batches(loader, train_ds, sampler, x_dev, y_dev, device, epoch)
        for step, (xb, yb, idx) in enumerate(batches, 1):
            if aug is not None:
                xb = aug.batch(xb.reshape(xb.shape[0], -1), generator=aug_gen).view_as(xb)
            logits = net(xb)
            if config.record:
                out = loss_fn.details(logits, yb, validate=False)
                loss = loss_fn.reduce(out.values)
            else:
                out = None
                loss = loss_fn.unchecked(logits, yb)
                loss_sum += loss.detach() * yb.shape[0]
            rec.update(idx, logits, yb, out, mask=guard.ok_mask())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            guard.step(loss)
            total_steps += 1
            if interval == "step" and sched is not None:
                sched.step()
            if total_steps % check_every == 0 and guard.has_failed():
                break
        if guard.has_failed():
            first = total_steps - int(guard.after.item()) + 1
            f_epoch, f_step = epoch, first - epoch_start_step
            failure = (f_epoch, f_step)
            rec.end_epoch(partial=True)
            break
        if interval == "epoch" and sched is not None:
            sched.step()
        train_seconds += time.perf_counter() - t_epoch

        # -- end of epoch: evaluation and history (one host sync here) ----------------------------------------
        if config.eval_train:
            _eval_pass(net, rec, x_dev, y_dev, eval_loader, device)
        hist = {"lr": lr_now}
        if config.record:
            lv = rec.current("loss")
            hist["train_loss"] = float(torch.nanmean(lv).item()) if lv is not None else math.nan
        else:
            hist["train_loss"] = float(loss_sum.item()) / n
        hist["test_acc"] = test.accuracy(net)
        if val is not None:
            _, pv = evaluate(net, val[0])
            hist["val_acc"] = float((pv == val[1]).float().mean())
        pred = rec.current("eval_pred" if config.eval_train else "pred")
        hist.update(_train_metrics(pred, y_dev, y_true_dev, noisy_dev, clean_dev))
        rec.end_epoch(**hist)
        if progress:
            bar.set_postfix(test_acc=f"{hist['test_acc']:.3f}", noisy_fit=f"{hist.get('noisy_fit', math.nan):.2f}",
                            refresh=False)
        stop = False
        if callbacks:
            so_far = result_so_far()
            for cb in callbacks:
                stop = bool(cb(epoch, so_far)) or stop
        if stop:
            stopped = f"stopped by a callback after epoch {epoch}"
            break
    bar.close()
    net.eval()
    msg = None
    if failure is not None:
        f_epoch, f_step = failure
        msg = (f"non-finite loss or gradient at epoch {f_epoch}, step {f_step} with {config.label}, lr={lr_now:g}; "
               "that update and every later one were skipped (the weights are from before it); the records up to "
               "and including that step are kept in .result")
        stopped = f"non-finite loss or gradient at epoch {f_epoch}, step {f_step}"
    result = rec.result(y_true=noisy.true_labels if mask_known else None,
                        is_noisy=noisy.is_noisy if mask_known else None, model=net, config=settings,
                        stopped=stopped, model_inputs={"in_features": src.num_features,
                                                       "image_shape": list(src.image_shape) if src.image_shape else None},
                        data_name=src.name, step_seconds=round(train_seconds, 3),
                        seconds=round(time.perf_counter() - t_start, 3))
    if result.model is None:
        result.model = net
    if extra_masks:
        result.masks.update(extra_masks)
        result.metadata["outlier_source_used"] = getattr(src, "outlier_source_used", None) or \
            getattr(noisy, "outlier_source_used", None)
        if record_path is not None:
            result.save(record_path)
    if failure is not None and on_nonfinite == "raise":
        raise NonFiniteLossError(msg, epoch=failure[0], step=failure[1], result=result)
    return result


def _batches(loader, train_ds, sampler, x_dev, y_dev, device, epoch):
    """(x, y, index) batches of one epoch, on the device (index stays where it is cheapest)."""
    if loader is not None:
        train_ds.set_epoch(epoch)
        for xb, yb, idx in loader:
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True), idx
        return
    perm = sampler.permutation().to(device)
    for idx in torch.tensor_split(perm, len(sampler)):
        yield x_dev[idx], y_dev[idx], idx


@torch.no_grad()
def _eval_pass(net, rec: Recorder, x_dev, y_dev, eval_loader, device, batch_size: int = 4096) -> None:
    was = net.training
    net.eval()
    if x_dev is not None:
        n = x_dev.shape[0]
        for s in range(0, n, batch_size):
            idx = torch.arange(s, min(n, s + batch_size), device=device)
            rec.update_eval(idx, net(x_dev[s:s + batch_size]), y_dev[s:s + batch_size])
    else:
        for xb, yb, idx in eval_loader:
            rec.update_eval(idx, net(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True))
    net.train(was)


class _Evaluator:
    """Test accuracy per epoch, from in-memory test arrays or a test Dataset."""

    def __init__(self, src: _Source, device, num_workers: int, shape=None):
        self.x = self.y = self.loader = None
        if src.x_test is not None and len(src.x_test):
            self.x = torch.as_tensor(np.asarray(src.x_test, np.float32), device=device)
            if shape:
                self.x = self.x.view(len(self.x), *shape)
            self.y = torch.as_tensor(np.asarray(src.y_test), device=device)
        elif src.test_dataset is not None and len(src.test_dataset):
            self.loader = torch.utils.data.DataLoader(src.test_dataset, batch_size=1024, shuffle=False,
                                                      num_workers=num_workers)
        self.device = device

    @torch.no_grad()
    def accuracy(self, net) -> float:
        if self.x is not None:
            _, pred = evaluate(net, self.x)
            return float((pred == self.y).float().mean())
        if self.loader is None:
            return math.nan
        was = net.training
        net.eval()
        correct = torch.zeros((), device=self.device)
        total = 0
        for item in self.loader:
            xb, yb = item[0].to(self.device), item[1].to(self.device)
            correct += (net(xb).argmax(1) == yb).sum()
            total += len(yb)
        net.train(was)
        return float(correct.item()) / max(total, 1)


def _train_metrics(pred, y_given, y_true, is_noisy, is_clean=None) -> dict:
    """Training-set metrics of one epoch from the predictions (device tensors; one sync)."""
    if pred is None:
        return {}
    seen = pred >= 0
    correct = (pred == y_given) & seen
    nan = torch.full((), float("nan"), device=pred.device)

    def share(hits, of):
        k = of.sum()
        return torch.where(k > 0, (hits & of).sum() / k.clamp(min=1), nan)

    out = {"train_acc": share(correct, seen)}
    if is_noisy is not None:
        out["clean_acc"] = share(correct, (~is_noisy if is_clean is None else is_clean) & seen)
        out["noisy_fit"] = share(correct, is_noisy & seen)
        out["noisy_true_acc"] = share(pred == y_true, is_noisy & seen)
    vals = torch.stack([v.float() for v in out.values()]).cpu().tolist()
    return dict(zip(out, vals))
