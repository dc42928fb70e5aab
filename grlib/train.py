"""The training loop: trains one model and records every example at every epoch."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from ._checks import check_choice
from .config import RunConfig
from .data import Dataset, load_dataset
from .losses import EmphasisLoss, get_loss
from .models import get_model, resolve_device
from .noise import NoisyLabels, add_label_noise
from .results import RunResult

__all__ = ["train", "prepare", "NonFiniteLossError", "evaluate", "predict_proba"]

Callback = Callable[[int, RunResult], "bool | None"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss.  ``.result`` holds the records up to that step."""

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
    if data is None:
        data = load_dataset(config.dataset, val_fraction=config.val_fraction, n_train=config.n_train,
                            split_seed=config.split_seed)
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
    x = torch.as_tensor(x, dtype=torch.float32)
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


def _make_optimizer(config: RunConfig, params):
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _make_schedule(config: RunConfig, opt):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    if config.schedule == "step":
        milestones = sorted({max(1, int(config.epochs * 0.5)), max(1, int(config.epochs * 0.75))})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    return None


def train(config: RunConfig | None = None, *, data: Dataset | None = None, noisy: NoisyLabels | None = None,
          callbacks: Iterable[Callback] = (), progress: bool = True, on_nonfinite: str = "raise",
          **overrides) -> RunResult:
    """Train one model and record every training example at every epoch.

    Parameters
    ----------
    config : RunConfig, optional
        Run settings (defaults: :class:`RunConfig`).  Keyword ``overrides``
        replace single settings, e.g. ``train(loss="ce", loss_params={})``.
    data, noisy : optional
        A pre-loaded :class:`Dataset` and/or pre-made :class:`NoisyLabels` for
        its training split (else made from the config).
    callbacks : callables ``cb(epoch, result) -> bool | None``
        Called after each epoch (1-based) with the result so far; returning
        True stops training (``result.stopped`` says so).
    progress : bool
        A ``tqdm.auto`` progress bar over epochs.
    on_nonfinite : "raise" or "stop"
        What a NaN/inf loss does: raise :class:`NonFiniteLossError` (its
        ``.result`` keeps the records so far) or stop and return the result.

    Returns
    -------
    RunResult
        History per epoch and per-example records ``[epochs, n_train]``.
    """
    check_choice("on_nonfinite", on_nonfinite, ("raise", "stop"))
    config = config or RunConfig()
    if overrides:
        config = config.replace(**overrides)
    if data is None or noisy is None:
        data, made_noisy, val_labels = prepare(config, data)
        noisy = noisy or made_noisy
    else:
        val_labels = None
        if len(data.y_val):
            val_labels = add_label_noise(data.y_val, data.num_classes, config.noise, config.noise_rate,
                                         seed=config.seed + 1).labels
    n = len(noisy.labels)
    if len(noisy.labels) and (noisy.labels.min() < 0 or noisy.labels.max() >= data.num_classes):
        raise ValueError(f"training labels must lie in [0, {data.num_classes - 1}]; got values in "
                         f"[{noisy.labels.min()}, {noisy.labels.max()}]")
    if n == 0:
        raise ValueError("the training split is empty; nothing to train on")
    if n != len(data.y_train):
        raise ValueError(f"noisy labels ({n}) do not match the training split ({len(data.y_train)})")

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = get_model(config.model, in_features=data.num_features, num_classes=data.num_classes,
                      image_shape=data.image_shape, hidden=config.hidden).to(device)
    loss_fn: EmphasisLoss = get_loss(config.loss, **config.loss_params)
    opt = _make_optimizer(config, model.parameters())
    sched = _make_schedule(config, opt)

    x = torch.as_tensor(data.x_train, device=device)
    y = torch.as_tensor(noisy.labels, device=device)
    y_true_t = torch.as_tensor(noisy.true_labels, device=device)
    noisy_t = torch.as_tensor(noisy.is_noisy, device=device)
    x_test = torch.as_tensor(data.x_test, device=device)
    y_test = torch.as_tensor(data.y_test, device=device)
    x_val = torch.as_tensor(data.x_val, device=device) if val_labels is not None else None
    y_val = torch.as_tensor(val_labels, device=device) if val_labels is not None else None

    E = config.epochs
    history = {k: np.full(E, np.nan) for k in ("train_loss", "test_acc", "val_acc", "train_acc", "clean_acc",
                                                 "noisy_fit", "noisy_true_acc", "lr")}
    records: dict[str, np.ndarray] = {}
    if config.record:
        for k in ("p", "weight", "log_emphasis", "loss"):
            records[k] = np.full((E, n), np.nan, np.float32)
        records["pred"] = np.full((E, n), -1, np.int16)
    if config.eval_train:
        records["eval_p"] = np.full((E, n), np.nan, np.float32)
        records["eval_pred"] = np.full((E, n), -1, np.int16)
    result = RunResult(config=config.to_dict(), y_given=noisy.labels, y_true=noisy.true_labels,
                       is_noisy=noisy.is_noisy, num_classes=data.num_classes, history=history, records=records,
                       model=model, model_inputs={"in_features": data.num_features,
                                                  "image_shape": list(data.image_shape) if data.image_shape else None})
    if config.record:
        buf = {k: torch.empty(n, device=device) for k in ("p", "weight", "log_emphasis", "loss")}
    # predictions from the training forward passes (cheap; the training-set metrics without an eval pass)
    buf_pred = torch.empty(n, dtype=torch.long, device=device)

    from tqdm.auto import tqdm

    bar = tqdm(range(1, E + 1), desc=config.label, unit="epoch", disable=not progress, leave=False)
    model.train()
    n_batches = -(-n // config.batch_size)
    for epoch in bar:
        lr_now = opt.param_groups[0]["lr"]
        perm = torch.randperm(n, generator=gen).to(device)
        if config.record:  # unseen examples of a partial epoch (non-finite stop) stay NaN
            for b in buf.values():
                b.fill_(float("nan"))
        total, seen = torch.zeros((), device=device), 0
        # ceil(n / B) batches of near-equal size (no short last batch), so weights normalised
        # within a batch are comparable across batches
        for step, idx in enumerate(torch.tensor_split(perm, n_batches), 1):
            logits = model(x[idx])
            yb = y[idx]
            if config.record:
                out = loss_fn.details(logits, yb, validate=False)
                loss = loss_fn.reduce(out.values)
            else:
                loss = loss_fn.unchecked(logits, yb)
            if not torch.isfinite(loss):
                msg = (f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step} with {config.label}, "
                       f"lr={lr_now:g}; the records up to this step are kept in .result")
                result.epochs_completed = epoch - 1
                result.stopped = f"non-finite loss at epoch {epoch}, step {step}"
                if config.record:  # keep the partial epoch too
                    result.epochs_completed = epoch
                    for k in buf:
                        records[k][epoch - 1] = buf[k].cpu().numpy()
                if on_nonfinite == "raise":
                    raise NonFiniteLossError(msg, epoch=epoch, step=step, result=result)
                bar.close()
                return result
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                buf_pred[idx] = logits.detach().argmax(1)
                if config.record:
                    buf["p"][idx] = out.p
                    buf["weight"][idx] = out.weight
                    buf["log_emphasis"][idx] = out.log_emphasis
                    buf["loss"][idx] = out.values.detach()
            total += loss.detach() * idx.numel()
            seen += idx.numel()
        if sched is not None:
            sched.step()

        # -- end of epoch: history and records ---------------------------------
        history["train_loss"][epoch - 1] = float(total) / seen
        history["lr"][epoch - 1] = lr_now
        _, pred_test = evaluate(model, x_test)
        history["test_acc"][epoch - 1] = float((pred_test == y_test).float().mean())
        if x_val is not None:
            _, pred_val = evaluate(model, x_val)
            history["val_acc"][epoch - 1] = float((pred_val == y_val).float().mean())
        if config.record:
            for k in buf:
                records[k][epoch - 1] = buf[k].cpu().numpy()
            records["pred"][epoch - 1] = buf_pred.cpu().numpy()
        if config.eval_train:
            p_eval, pred_train = evaluate(model, x, y)
            records["eval_p"][epoch - 1] = p_eval.cpu().numpy()
            records["eval_pred"][epoch - 1] = pred_train.cpu().numpy()
        else:
            pred_train = buf_pred
        _train_metrics(history, epoch, pred_train, y, y_true_t, noisy_t)
        result.epochs_completed = epoch
        if progress:
            bar.set_postfix(test_acc=f"{history['test_acc'][epoch - 1]:.3f}",
                            noisy_fit=f"{history['noisy_fit'][epoch - 1]:.2f}", refresh=False)
        stop = False
        for cb in callbacks:
            stop = bool(cb(epoch, result)) or stop
        if stop:
            result.stopped = f"stopped by a callback after epoch {epoch}"
            break
    bar.close()
    model.eval()
    return result


def _train_metrics(history, epoch, pred, y_given, y_true, is_noisy):
    correct_given = pred == y_given
    clean = ~is_noisy
    history["train_acc"][epoch - 1] = float(correct_given.float().mean())
    history["clean_acc"][epoch - 1] = float(correct_given[clean].float().mean()) if bool(clean.any()) else np.nan
    if bool(is_noisy.any()):
        history["noisy_fit"][epoch - 1] = float(correct_given[is_noisy].float().mean())
        history["noisy_true_acc"][epoch - 1] = float((pred == y_true)[is_noisy].float().mean())
    else:
        history["noisy_fit"][epoch - 1] = np.nan
        history["noisy_true_acc"][epoch - 1] = np.nan
