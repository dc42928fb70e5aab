# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · One training run (the unit of a batch report)
#
# Trains **one** method on one noisy data set and leaves its key numbers in a
# small JSON file for `grlib report`, which runs this notebook over a grid of
# methods, noise rates and seeds (see `grlib/specs/default.yaml`).
#
# * `final_acc` is the test accuracy after the **last** epoch; `best_acc` is the
#   **best** test accuracy seen during training (what the paper's tables report).
#   Under label noise CE's final accuracy falls below its best (it memorises the
#   wrong labels); GR's should barely drop.
# * `noisy_fit` is the share of mislabelled training examples the model predicts
#   as their given, wrong label at the end (memorisation; lower is better).
# * `auc_p` is the ROC AUC of `p_i` (the probability of the labelled class, from
#   an evaluation pass after the last epoch) separating clean from mislabelled
#   training examples: 1 separates them perfectly, 0.5 not at all.

# %% tags=["parameters"]
dataset: str = "digits"  # digits | moons | fashion_mnist
noise: str = "symmetric"  # none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in [0, 1)
loss: str = "gr"  # ce | mae | mse | gce | sce | nce+rce | gr
lam: float = 1.0  # GR emphasis mode (GR only): the weights peak at p of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread (GR only): 0 weights every example equally
q: float = 0.7  # GCE exponent (GCE only), in (0, 1]
epochs: int = 100  # training epochs
lr: float = 0.05  # SGD learning rate
batch_size: int = 64  # examples per SGD step
n_train: int = 0  # stratified subset of the training split; 0 keeps all of it
val_fraction: float = 0.0  # held-out share of the training split: a noisy validation split
seed: int = 0  # label noise, initialisation and shuffling
figures_dir: str = "../figures"  # where the figures go (PNG and PDF)
metrics_path: str = ""  # JSON file for the key numbers; empty: <figures_dir>/<stem>.json
progress: bool = False  # a progress bar over epochs

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import grlib
from grlib.figures import figure_name, save_figure, use_style
from grlib.plotting import plot_history, plot_weight_histogram

use_style()

# the loss's own parameters: only the ones of the chosen method reach the loss
LOSS_PARAMS = {"gr": {"lam": lam, "beta": beta}, "gce": {"q": q}}
loss_params = LOSS_PARAMS.get(loss, {})
config = grlib.RunConfig(dataset=dataset, noise=noise, noise_rate=noise_rate, loss=loss, loss_params=loss_params,
                         epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, n_train=n_train or None,
                         val_fraction=val_fraction)
stem = figure_name("05_training_run", dataset=dataset, noise=noise, noise_rate=noise_rate, loss=loss,
                   **loss_params, epochs=epochs, seed=seed)
metrics_file = Path(metrics_path) if metrics_path else Path(figures_dir) / f"{stem}.json"
print(config.label, "|", f"{dataset}, {noise} noise at rate {noise_rate:g}, {epochs} epochs, seed {seed}")

# %% [markdown]
# ## Train

# %%
result = grlib.train(config, progress=progress)
summary = result.summary()
history = result.history_frame()
history.tail()

# %% [markdown]
# ## History: test accuracy and memorisation
#
# Left: test accuracy per epoch (true labels). Right: the share of mislabelled
# training examples fitted to their wrong label.

# %%
fields = ("test_acc", "noisy_fit") if noise_rate > 0 else ("test_acc", "train_acc")
fig = plot_history({config.label: result}, fields=fields)
fig.suptitle(f"{config.label}: {dataset}, {noise} noise {noise_rate:.0%}, seed {seed}")
paths = save_figure(fig, figure_name("05_history", dataset=dataset, noise_rate=noise_rate, method=config.label,
                                     seed=seed), figures_dir)

# %% [markdown]
# ## Clean vs mislabelled examples after the last epoch
#
# The distributions of `p_i` (evaluation pass) and of the emphasis weight (last
# training pass), clean examples against mislabelled ones. A method that resists
# the noise keeps `p_i` of mislabelled examples low and gives them little weight.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
plot_weight_histogram(result, field="eval_p", ax=axes[0])
plot_weight_histogram(result, field="weight", ax=axes[1], log=True)
fig.suptitle(f"{config.label}: clean vs mislabelled, epoch {result.epochs_completed}")
paths = save_figure(fig, figure_name("05_weights", dataset=dataset, noise_rate=noise_rate, method=config.label,
                                     seed=seed), figures_dir)

# %% [markdown]
# ## Key numbers for the batch report

# %%
auc_p = grlib.separation_auc(result.record("eval_p", -1), result.is_noisy)  # NaN without mislabelled examples
metrics = {
    "method": config.label,
    "loss": loss,
    "loss_params": loss_params,
    "parameters": {"dataset": dataset, "noise": noise, "noise_rate": noise_rate, "loss": loss, "lam": lam,
                   "beta": beta, "q": q, "epochs": epochs, "lr": lr, "seed": seed, "batch_size": batch_size,
                   "n_train": n_train, "val_fraction": val_fraction},
    "epochs_completed": result.epochs_completed,
    "final_acc": summary["final_acc"],
    "best_acc": summary["best_acc"],
    "epoch_of_best": summary["epoch_of_best"],
    "noisy_fit": summary["final_noisy_fit"],
    "clean_acc": summary["final_clean_acc"],
    "noise_rate_realised": summary["noise_rate_realised"],
    "auc_p": auc_p,
    # accuracy on the noisy validation split (None without one): the only score used to choose settings
    "val_acc": float(history["val_acc"].iloc[-1]) if val_fraction > 0 else None,
    "val_best_acc": float(history["val_acc"].max()) if val_fraction > 0 else None,
    "grlib_version": grlib.__version__,
}
grlib.write_metrics(metrics, metrics_file)
{k: metrics[k] for k in ("method", "final_acc", "best_acc", "epoch_of_best", "noisy_fit", "auc_p")}

# %% [markdown]
# ## Check: what this notebook exists to show
#
# The run trained for every epoch, its accuracies are proper fractions, the best
# accuracy is at least the final one, the model beats chance, and under label
# noise `p_i` ranks clean examples above mislabelled ones (AUC > 0.5) for GR.

# %%
assert result.epochs_completed == epochs, result.stopped
assert 0.0 <= metrics["final_acc"] <= 1.0 and 0.0 <= metrics["best_acc"] <= 1.0, metrics
assert metrics["best_acc"] >= metrics["final_acc"], metrics
assert metrics["best_acc"] > 1.0 / result.num_classes, f"no better than chance: {metrics['best_acc']:.3f}"
if noise_rate > 0 and loss == "gr":
    assert auc_p > 0.5, f"GR does not separate clean from mislabelled examples: AUC {auc_p:.3f}"
assert metrics_file.is_file()
