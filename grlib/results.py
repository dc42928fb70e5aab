"""The plain results object of a training run: history, per-example records, save/load."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_write_bytes, atomic_write_json

__all__ = ["RunResult", "RECORD_FIELDS", "HISTORY_FIELDS"]

#: Per-example records, each ``[epochs, n_train]``.  From the training forward
#: passes (the model as it was when the example's batch was seen):
#:   p            probability of the *given* (possibly wrong) label, [0, 1]
#:   weight       emphasis normalised within the example's batch (sums to 1 per batch)
#:   log_emphasis log of the unnormalised emphasis (GR: beta * p**lam * (1 - p))
#:   loss         the loss's per-example value (for GR a surrogate; see grlib.losses)
#:   pred         predicted class (int16)
#: From the optional evaluation pass at the end of each epoch (eval_train=True):
#:   eval_p       probability of the given label
#:   eval_pred    predicted class (int16)
RECORD_FIELDS = ("p", "weight", "log_emphasis", "loss", "pred", "eval_p", "eval_pred")

#: Per-epoch history (arrays of length ``epochs``):
#:   train_loss       mean training loss over the epoch's batches
#:   test_acc         accuracy on the test split (true labels)
#:   val_acc          accuracy on the validation split against its *noisy* labels (NaN without one)
#:   train_acc        training accuracy against the given labels
#:   clean_acc        accuracy on the clean training examples
#:   noisy_fit        fraction of mislabelled examples predicted as their given, wrong label (memorisation)
#:   noisy_true_acc   fraction of mislabelled examples predicted as their true label
#:   lr               learning rate used in the epoch
#: The training-set metrics come from the evaluation pass when eval_train=True,
#: else from the training forward passes.
HISTORY_FIELDS = ("train_loss", "test_acc", "val_acc", "train_acc", "clean_acc", "noisy_fit", "noisy_true_acc", "lr")


@dataclass
class RunResult:
    """Everything a run produced.  Plain numpy arrays; ``to_frame()`` gives a tidy table."""

    config: dict
    y_given: np.ndarray
    y_true: np.ndarray
    is_noisy: np.ndarray
    num_classes: int
    history: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)
    epochs_completed: int = 0
    stopped: str | None = None
    model: object = None  # the trained torch module (not saved by save(); its state_dict is)
    model_inputs: dict = field(default_factory=dict)  # {"in_features": D, "image_shape": [C, H, W] | None}

    # -- views --------------------------------------------------------------
    @property
    def n_train(self) -> int:
        return int(self.y_given.size)

    def history_frame(self) -> pd.DataFrame:
        """One row per completed epoch (``epoch`` starts at 1)."""
        e = self.epochs_completed
        df = pd.DataFrame({k: np.asarray(v)[:e] for k, v in self.history.items()})
        df.insert(0, "epoch", np.arange(1, e + 1))
        return df

    def record(self, name: str, epoch: int | None = None) -> np.ndarray:
        """A record array ``[epochs, n]`` or, with ``epoch`` (1-based; -1 = last), one row ``[n]``."""
        if name not in self.records:
            raise KeyError(f"record {name!r} was not kept in this run; available: {sorted(self.records)}")
        arr = self.records[name][: max(self.epochs_completed, 1)]
        if epoch is None:
            return arr
        if epoch == -1:
            epoch = self.epochs_completed
        if not 1 <= epoch <= arr.shape[0]:
            raise ValueError(f"epoch={epoch} is outside 1..{arr.shape[0]}")
        return arr[epoch - 1]

    def to_frame(self, fields=None, epochs=None) -> pd.DataFrame:
        """Tidy per-example table: one row per example and epoch.

        Columns: ``epoch`` (1-based), ``index`` (example index in the training
        split), ``given``, ``true``, ``is_noisy``, then one column per record
        field (default: all kept) and ``correct`` (prediction == given label)
        when ``pred`` is kept.
        """
        fields = [f for f in (fields or RECORD_FIELDS) if f in self.records]
        e = self.epochs_completed
        ep = np.arange(1, e + 1) if epochs is None else np.asarray(list(epochs))
        n = self.n_train
        cols = {
            "epoch": np.repeat(ep, n).astype(np.int32),
            "index": np.tile(np.arange(n), ep.size).astype(np.int32),
            "given": np.tile(self.y_given, ep.size),
            "true": np.tile(self.y_true, ep.size),
            "is_noisy": np.tile(self.is_noisy, ep.size),
        }
        for f in fields:
            cols[f] = self.records[f][ep - 1].reshape(-1)
        if "pred" in cols:
            cols["correct"] = cols["pred"] == cols["given"]
        return pd.DataFrame(cols)

    def summary(self) -> dict:
        """Headline numbers: final and best test accuracy (and where), final memorisation."""
        h = self.history_frame()
        if h.empty:
            return {"epochs": 0}
        best = int(h["test_acc"].to_numpy().argmax())
        return {
            "epochs": int(self.epochs_completed),
            "final_acc": float(h["test_acc"].iloc[-1]),
            "best_acc": float(h["test_acc"].iloc[best]),
            "epoch_of_best": int(h["epoch"].iloc[best]),
            "final_noisy_fit": float(h["noisy_fit"].iloc[-1]),
            "final_clean_acc": float(h["clean_acc"].iloc[-1]),
            "noise_rate_realised": float(self.is_noisy.mean()),
            "stopped": self.stopped,
        }

    # -- persistence -----------------------------------------------------------
    def save(self, folder) -> Path:
        """Save to ``folder``: ``run.json`` (settings, summary, metadata), ``arrays.npz``, ``model.pt``.

        Each file is written atomically; ``run.json`` is written last, so a
        folder with a ``run.json`` is a complete run.
        """
        import io

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        arrays = {"y_given": self.y_given, "y_true": self.y_true, "is_noisy": self.is_noisy}
        arrays.update({f"history__{k}": np.asarray(v) for k, v in self.history.items()})
        arrays.update({f"records__{k}": v for k, v in self.records.items()})
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(folder / "arrays.npz", buf.getvalue())
        if self.model is not None:
            import torch

            mbuf = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, mbuf)
            atomic_write_bytes(folder / "model.pt", mbuf.getvalue())
        from . import __version__

        atomic_write_json(folder / "run.json", {
            "config": self.config, "num_classes": self.num_classes, "epochs_completed": self.epochs_completed,
            "stopped": self.stopped, "summary": self.summary(), "grlib_version": __version__,
            "model_inputs": self.model_inputs,
        })
        return folder

    @classmethod
    def load(cls, folder, *, with_model: bool = False) -> "RunResult":
        """Load a run saved by :meth:`save` (``with_model=True`` rebuilds the model on CPU)."""
        folder = Path(folder)
        meta_path = folder / "run.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} holds no complete run (no run.json)")
        meta = json.loads(meta_path.read_text())
        with np.load(folder / "arrays.npz") as z:
            arrays = {k: z[k] for k in z.files}
        res = cls(
            config=meta["config"], y_given=arrays["y_given"], y_true=arrays["y_true"], is_noisy=arrays["is_noisy"],
            num_classes=int(meta["num_classes"]),
            history={k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("history__")},
            records={k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("records__")},
            epochs_completed=int(meta["epochs_completed"]), stopped=meta.get("stopped"),
            model_inputs=meta.get("model_inputs") or {},
        )
        if with_model and (folder / "model.pt").is_file():
            import torch

            from .config import RunConfig
            from .models import get_model

            cfg = RunConfig.from_dict(meta["config"])
            state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
            if "in_features" not in res.model_inputs:
                raise ValueError(f"{folder}/run.json does not record the model's inputs; cannot rebuild the model")
            shape = res.model_inputs.get("image_shape")
            model = get_model(cfg.model, in_features=int(res.model_inputs["in_features"]), num_classes=res.num_classes,
                              image_shape=tuple(shape) if shape else None, hidden=cfg.hidden)
            model.load_state_dict(state)
            res.model = model.eval()
        return res

    def __repr__(self) -> str:
        s = self.summary()
        acc = f", final_acc={s['final_acc']:.4f}, best_acc={s['best_acc']:.4f}" if s.get("epochs") else ""
        return (f"RunResult({self.config.get('loss')}, n_train={self.n_train}, "
                f"epochs={self.epochs_completed}{acc})")

