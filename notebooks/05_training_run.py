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
# small JSON file and its per-epoch history in a small CSV for `grlib report`,
# which runs this notebook over a grid of methods, settings and seeds (see
# `grlib/specs/default.yaml`).
#
# * `final_acc` is the test accuracy after the **last** epoch; `best_acc` is the
#   **best** test accuracy seen during training (what the paper's tables report;
#   picked on the test set, so optimistic). Under label noise a memorising loss
#   ends far below its best.
# * `noisy_fit` is the share of mislabelled training examples the model predicts
#   as their given, wrong label (memorisation; lower is better). The history
#   CSV has it per epoch, with test and validation accuracy, the clean
#   examples' accuracy and the learning rate.
# * `auc_p` is the ROC AUC of `p_i` (the probability of the labelled class, from
#   an evaluation pass after the last epoch) separating clean from mislabelled
#   training examples: 1 separates them perfectly, 0.5 not at all.
# * `protocol="paper"` trains as the paper's authors did: SGD with lr 0.1,
#   momentum 0.9, weight decay 5e-4, the learning rate divided by 10 at 50% and
#   75% of the epochs, BatchNorm and data augmentation. Any setting given here
#   overrides the preset; a setting left at `None` takes the protocol's value.
# * `lrs` trains once per learning rate and keeps the one with the best final
#   accuracy on the **noisy validation split** (`val_fraction`), never on test.
#
# With `runs` (set by `grlib report` when a spec asks for `runs_per_kernel`)
# one kernel trains several runs, each with its own settings and files.

# %%
from typing import Optional  # the type of the parameters that default to None (the protocol's value)

# %% tags=["parameters"]
dataset: str = "digits"  # digits | moons | fashion_mnist
noise: str = "symmetric"  # none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in [0, 1)
loss: str = "gr"  # ce | mae | mse | gce | sce | nce+rce | gr
lam: float = 1.0  # GR emphasis mode (GR only): the weights peak at p of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread (GR only): 0 weights every example equally
q: float = 0.7  # GCE exponent (GCE only), in (0, 1]
protocol: str = "none"  # none | paper (lr 0.1, momentum 0.9, wd 5e-4, step schedule, BatchNorm, augmentation)
epochs: int = 100  # training epochs
lr: Optional[float] = None  # learning rate; None: the protocol's (paper 0.1, else 0.05)
lrs: list = []  # learning rates to choose from on the noisy validation split (needs val_fraction > 0)
batch_size: int = 64  # examples per SGD step
optimizer: Optional[str] = None  # sgd | adam | adamw; None: the protocol's (sgd)
schedule: Optional[str] = None  # constant | cosine | step; None: the protocol's (paper step, else constant)
weight_decay: Optional[float] = None  # L2 penalty; None: the protocol's (5e-4)
batchnorm: Optional[bool] = None  # BatchNorm layers; None: the protocol's (paper on, else off)
augment: Optional[bool] = None  # augmentation on the training pass; None: the protocol's (paper on, else off)
aug_shift: Optional[int] = None  # random shift in pixels; None: the data set's default
aug_flip: Optional[bool] = None  # random horizontal flips; None: the data set's default
aug_noise: Optional[float] = None  # Gaussian input noise (std); None: the data set's default
model: str = "mlp"  # mlp | cnn
hidden: list = []  # MLP hidden widths, e.g. [512, 512]; empty: the default (256, 256)
n_train: int = 0  # stratified subset of the training split; 0 keeps all of it
outlier_fraction: float = 0.0  # share of training inputs replaced by out-of-distribution inputs (labels kept)
outlier_source: str = "auto"  # auto | fashion_mnist | digits | noise | gaussian
corruption_fraction: float = 0.0  # share of training inputs with heavy perceptual noise (labels kept)
corruption_kind: str = "mixed"  # gaussian | blur | occlusion | mixed
val_fraction: float = 0.0  # held-out share of the training split: a noisy validation split
seed: int = 0  # label noise, initialisation and shuffling
figures: bool = True  # draw this notebook's figures (grlib report draws its own from the history CSV)
figures_dir: str = ""  # where the figures go (PNG and PDF); empty: the repository's figures/
metrics_path: str = ""  # JSON file for the key numbers; empty: <figures_dir>/<figure stem>.json
history_path: str = ""  # CSV file for the per-epoch history; empty: not written
runs: list = []  # several runs in this kernel (set by grlib report): per-run overrides of these parameters
progress: bool = False  # a progress bar over epochs

# %%
from pathlib import Path

import grlib
from grlib.figures import default_figures_dir, figure_name
from grlib.io import atomic_write_text
from grlib.report.kernel import config_digest, expand_runs, run_config, train_run

SETTINGS = {"dataset": dataset, "noise": noise, "noise_rate": noise_rate, "loss": loss, "lam": lam, "beta": beta,
            "q": q, "protocol": protocol, "epochs": epochs, "lr": lr, "batch_size": batch_size,
            "optimizer": optimizer, "schedule": schedule, "weight_decay": weight_decay, "batchnorm": batchnorm,
            "augment": augment, "aug_shift": aug_shift, "aug_flip": aug_flip, "aug_noise": aug_noise,
            "model": model, "hidden": hidden, "n_train": n_train, "val_fraction": val_fraction, "seed": seed,
            "outlier_fraction": outlier_fraction, "outlier_source": outlier_source,
            "corruption_fraction": corruption_fraction, "corruption_kind": corruption_kind}
OUTPUTS = {"figures_dir": figures_dir or str(default_figures_dir()), "metrics_path": metrics_path, "history_path": history_path}
jobs = expand_runs(SETTINGS, OUTPUTS, runs)
configs = [run_config(**settings) for settings, _ in jobs]  # every run's settings checked before any training
for config, (settings, _) in zip(configs, jobs):
    print(f"{config.label} | {settings['dataset']}, {settings['noise']} noise at rate {settings['noise_rate']:g}, "
          f"{settings['epochs']} epochs, protocol {settings['protocol']}, seed {settings['seed']}")

# %% [markdown]
# ## Train
#
# Each run trains (once per learning rate of `lrs`, keeping the best on the
# noisy validation split), checks what this notebook exists to show (every
# epoch trained, accuracies are proper fractions, better than chance, and for
# GR under noise `p_i` ranks clean examples above mislabelled ones), and only
# then writes its history CSV and, last, its metrics JSON.

# %%
trained = []
for config, (settings, outputs) in zip(configs, jobs):
    run = train_run(config, lrs=lrs, progress=progress)
    result, metrics = run.result, run.metrics(settings)
    assert result.epochs_completed == config.epochs, result.stopped
    assert 0.0 <= metrics["final_acc"] <= metrics["best_acc"] <= 1.0, metrics
    assert metrics["best_acc"] > 1.0 / result.num_classes, f"no better than chance: {metrics['best_acc']:.3f}"
    if config.noise_rate > 0 and config.loss == "gr":
        assert metrics["auc_p"] > 0.5, f"GR does not separate clean from mislabelled examples: {metrics['auc_p']}"
    stem = figure_name("05_training_run", dataset=config.dataset, noise=config.noise,
                       noise_rate=config.noise_rate, method=config.label, seed=config.seed,
                       settings=config_digest(config))
    if outputs["history_path"]:
        atomic_write_text(outputs["history_path"], run.history().to_csv(index=False))
    grlib.write_metrics(metrics, outputs["metrics_path"] or Path(outputs["figures_dir"]) / f"{stem}.json")
    trained.append((run, stem, outputs))
    print(f"{config.label}, seed {config.seed}: final {metrics['final_acc']:.3f}, best {metrics['best_acc']:.3f}, "
          f"mislabelled fitted {metrics['noisy_fit']:.2f}, lr {metrics['lr']:g}, {metrics['train_seconds']:.1f} s")

# %% [markdown]
# ## History and clean vs mislabelled examples (with `figures=True`)
#
# Left: test accuracy per epoch (true labels). Middle: the share of mislabelled
# training examples fitted to their wrong label. Right: the distribution of
# `p_i` (evaluation pass after the last epoch), clean examples against
# mislabelled ones; a method that resists the noise keeps `p_i` of mislabelled
# examples low. Figure names carry the method, noise, seed and a digest of
# every other setting, so runs never overwrite each other's figures.

# %%
if figures:
    import matplotlib.pyplot as plt

    from grlib.figures import save_figure, use_style
    from grlib.plotting import plot_history, plot_weight_histogram

    use_style()
    for run, stem, outputs in trained:
        fig, axes = plt.subplots(1, 3, figsize=(12.6, 3.4))
        fields = ("test_acc", "noisy_fit") if run.config.noise_rate > 0 else ("test_acc", "train_acc")
        plot_history({run.config.label: run.result}, fields=fields, axes=axes[:2])
        plot_weight_histogram(run.result, field="eval_p", ax=axes[2])
        fig.suptitle(f"{run.config.label}: {run.config.dataset}, {run.config.noise} noise "
                     f"{run.config.noise_rate:.0%}, seed {run.config.seed}")
        save_figure(fig, stem, outputs["figures_dir"])
        plt.show()

# %% [markdown]
# ## Check
#
# Every run of this kernel trained, passed its checks and left its key numbers.

# %%
assert len(trained) == len(jobs)
for run, stem, outputs in trained:
    assert Path(outputs["metrics_path"] or Path(outputs["figures_dir"]) / f"{stem}.json").is_file()
    assert not outputs["history_path"] or Path(outputs["history_path"]).is_file()
