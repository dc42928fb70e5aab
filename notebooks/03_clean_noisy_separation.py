# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# # 03 · Clean vs mislabelled: how well do `p_i` and the weight separate them?
#
# We know which training labels were corrupted (`result.is_noisy`), so we can
# ask of any per-example score: does it rank clean examples above mislabelled
# ones? The ROC AUC of "a higher score says clean" (`grlib.separation_auc`)
# answers with one number: 1 separates perfectly, 0.5 not at all, below 0.5
# the score ranks the *mislabelled* examples higher.
#
# Two scores, for a model trained with CE and one trained with GR:
#
# * `p_i`, the probability of the given label (evaluation pass after each
#   epoch). A model that has not memorised the wrong labels gives mislabelled
#   examples a low `p_i`, so `p_i` separates them. Once it memorises, it does not.
# * the weight the loss gives the example. CE's weight `2 (1 - p_i)` is largest
#   for the mislabelled examples (AUC far below 0.5): **CE emphasises exactly the
#   examples whose labels are wrong.** Weights are compared through the
#   unnormalised emphasis (`log_emphasis`), which, unlike the batch-normalised
#   weight, does not depend on which batch an example fell in.
#
# **What to look for.** Early in training both models separate clean from
# mislabelled examples well; CE loses the separation as it memorises the wrong
# labels, GR keeps more of it.
#
# **An honest note on the default length.** The default is 50 epochs: on
# `digits` CE has then fitted every mislabelled example, and GR's `p_i` still
# separates the groups clearly better (AUC about 0.87-0.94 against CE's
# 0.76-0.80 over seeds 0-5). Trained on to 100 epochs, GR slowly fits more of
# the mislabelled examples too, while CE's AUC creeps back up (its mislabelled
# examples stay slightly less confident), and the two AUCs end within a few
# hundredths of each other, CE ahead for some seeds. Run with `epochs=100` to
# see it; the middle panel of the ROC figure shows the whole course.

# %% tags=["parameters"]
dataset: str = "digits"  # digits | moons | fashion_mnist (fashion_mnist needs the cache: `grlib data fetch`)
n_train: int = 0  # stratified training subset size; 0 keeps the whole training split
noise: str = "symmetric"  # none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in (0, 1)
epochs: int = 50  # training epochs of each run (by 50 CE has fitted all mislabelled digits; see the note on 100)
seed: int = 0  # label noise, initialisation and shuffling
lr: float = 0.05  # SGD learning rate, momentum 0.9, batch 64, weight decay 5e-4; for fashion_mnist try 0.01 (GR underfits at 0.05)
lam: float = 1.0  # GR emphasis mode: weights peak at p of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread: 0 weights every example equally
snapshot_epochs: list = [5, 20, -1]  # epochs whose distributions are drawn, 1-based; -1 is the last epoch
n_show: int = 12  # examples in the top/bottom tables and in each image row
figures_dir: str = "../figures"  # where the figures go (PNG and PDF)
metrics_path: str = ""  # JSON file for the key numbers; empty: <figures_dir>/<figure stem>.json
progress: bool = False  # a progress bar over epochs

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

import grlib
from grlib.figures import METHOD_COLORS, figure_name, save_figure, use_style
from grlib.plotting import plot_image_grid, plot_roc, plot_separation_auc, shades

use_style()

STEM = "03_clean_noisy_separation"
if not isinstance(n_train, int) or n_train < 0:
    raise ValueError(f"n_train={n_train!r} must be an integer >= 0 (0 = the whole training split)")
if not isinstance(n_show, int) or n_show < 1:
    raise ValueError(f"n_show={n_show!r} must be a positive integer")
if noise == "none" or noise_rate <= 0:
    raise ValueError("this notebook compares clean and mislabelled examples: it needs noise != 'none' and "
                     f"noise_rate > 0 (got noise={noise!r}, noise_rate={noise_rate})")
if not isinstance(snapshot_epochs, (list, tuple)) or not snapshot_epochs:
    raise ValueError(f"snapshot_epochs must be a non-empty list of epochs, got {snapshot_epochs!r}")
for e in snapshot_epochs:
    if isinstance(e, bool) or not isinstance(e, int) or not (e == -1 or 1 <= e <= epochs):
        raise ValueError(f"snapshot_epochs holds {e!r}: each must be an integer in 1..epochs={epochs} or -1 (last)")
snapshots = sorted({epochs if e == -1 else e for e in snapshot_epochs})

key = {"dataset": dataset, "noise": noise, "noise_rate": noise_rate, "epochs": epochs, "seed": seed, "lr": lr,
       "lam": lam, "beta": beta, **({"n_train": n_train} if n_train else {})}
metrics_file = Path(metrics_path) if metrics_path else Path(figures_dir) / f"{figure_name(STEM, **key)}.json"
base = grlib.RunConfig(dataset=dataset, n_train=n_train or None, noise=noise, noise_rate=noise_rate, epochs=epochs,
                       lr=lr, seed=seed, loss="ce", loss_params={})
configs = {"ce": base, "gr": base.replace(loss="gr", loss_params={"lam": lam, "beta": beta})}
labels = {k: c.label for k, c in configs.items()}
GROUP_COLORS = {"clean": METHOD_COLORS["clean"], "mislabelled": METHOD_COLORS["noisy"]}

# %% [markdown]
# ## Train CE and GR on the same noisy data

# %%
data, noisy, _ = grlib.prepare(base)
results = {k: grlib.train(c, data=data, noisy=noisy, progress=progress) for k, c in configs.items()}
for res in results.values():
    if res.epochs_completed != epochs:
        raise RuntimeError(f"{res!r} stopped early: {res.stopped}")
is_noisy = noisy.is_noisy
pd.DataFrame({labels[k]: r.summary() for k, r in results.items()}).T[
    ["final_acc", "best_acc", "epoch_of_best", "final_noisy_fit", "noise_rate_realised"]]

# %% [markdown]
# Separation AUC of each score at every epoch (`grlib.separation_table`; a
# higher score says clean). `eval_p`: `p_i` from the evaluation pass after the
# epoch; `p`: `p_i` seen by the training pass; `weight` / `log_emphasis`: the
# loss's weight (batch-normalised / unnormalised).

# %%
FIELDS = ("eval_p", "p", "weight", "log_emphasis")
tables = {labels[k]: grlib.separation_table(r, fields=FIELDS) for k, r in results.items()}
pd.concat({label: t.set_index("epoch").loc[snapshots] for label, t in tables.items()}, axis=1).round(3)

# %% [markdown]
# ## Distributions of `p_i` and of the weight, clean vs mislabelled
#
# One tidy table per run (`RunResult.to_frame`: one row per example and epoch,
# with its ground-truth `is_noisy` flag), drawn with seaborn. Densities are per
# group (each integrates to 1), so the smaller mislabelled group is not hidden.

# %%
frames = []
for k, res in results.items():
    df = res.to_frame(fields=["eval_p", "weight", "log_emphasis"], epochs=snapshots)
    df["method"] = labels[k]
    df["group"] = np.where(df["is_noisy"], "mislabelled", "clean")
    df["weight x batch size"] = df["weight"] * res.config["batch_size"]
    frames.append(df)
tidy = pd.concat(frames, ignore_index=True)


def distribution_grid(column, *, xlabel, log_scale=False, bins=30):
    fig, axes = plt.subplots(len(results), len(snapshots), figsize=(3.6 * len(snapshots), 3.0 * len(results)),
                             squeeze=False, sharex=True)
    for row, label in enumerate(labels.values()):
        for col, e in enumerate(snapshots):
            ax = axes[row, col]
            sub = tidy[(tidy["method"] == label) & (tidy["epoch"] == e)]
            sns.histplot(data=sub, x=column, hue="group", hue_order=["clean", "mislabelled"], palette=GROUP_COLORS,
                         stat="density", common_norm=False, element="step", bins=bins, log_scale=log_scale,
                         ax=ax, legend=(row == 0 and col == 0))
            auc = tables[label].set_index("epoch").loc[e, "auc_eval_p" if column == "eval_p" else "auc_log_emphasis"]
            ax.set_title(f"{label}, epoch {e}: AUC {auc:.2f}")
            ax.set_ylabel("density" if col == 0 else "")
            ax.set_xlabel(xlabel)
    return fig


fig = distribution_grid("eval_p", xlabel="p (probability of the given label)")
fig.suptitle("p of the given label, clean vs mislabelled (AUC: p says clean)")
save_figure(fig, figure_name(f"{STEM}-p", **key), figures_dir);

# %% [markdown]
# By the last epoch CE has pushed almost every example to `p ≈ 1`; what
# separation is left comes from the mislabelled examples being slightly less
# confident, too small to see on this scale. GR keeps most mislabelled examples
# at `p ≈ 0`, but a share of them sits at `p ≈ 1` with the clean ones.
#
# The weights: CE gives the mislabelled examples more weight than the clean
# ones at every snapshot. GR's weights are nearly the same for both groups:
# with its mode at `p = lam / (1 + lam)`, it weights examples at `p ≈ 0` and
# at `p ≈ 1` alike, and the few examples in between get the most.

# %%
fig = distribution_grid("weight x batch size", xlabel="weight x batch size", log_scale=True)
fig.suptitle("weight x batch size (1 = batch average), clean vs mislabelled (AUC: emphasis says clean)")
save_figure(fig, figure_name(f"{STEM}-weight", **key), figures_dir);

# %% [markdown]
# ## ROC curves and AUC per epoch, CE vs GR
#
# Left: ROC curves of `p_i` ("higher says clean") at the snapshot epochs (darker
# = later). Middle: the AUC of `p_i` at every epoch. Right: the AUC of the
# loss's own emphasis; below 0.5 means the loss puts *more* weight on the
# mislabelled examples than on the clean ones.

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
for k, res in results.items():
    for e, colour in zip(snapshots, shades(METHOD_COLORS[k], len(snapshots))):
        plot_roc(res.record("eval_p", e), is_noisy, ax=axes[0], label=f"{labels[k]}, epoch {e}", color=colour)
plot_separation_auc(tables, "auc_eval_p", ax=axes[1])
plot_separation_auc(tables, "auc_log_emphasis", ax=axes[2])
axes[0].set_title("ROC of p (clean is positive)")
axes[1].set_title("separation by p, per epoch")
axes[2].set_title("separation by the loss's emphasis, per epoch")
for ax in axes[1:]:
    ax.set_ylim(0, 1)
fig.suptitle(f"{dataset}, {noise} noise {noise_rate:.0%}, seed {seed}")
save_figure(fig, figure_name(f"{STEM}-roc", **key), figures_dir);

# %% [markdown]
# ## The examples each loss weights most and least (last epoch)
#
# Ranked by the unnormalised emphasis (the weight before normalising within a
# batch). `given` is the label trained on, `true` the original label. The
# weight was set by `p` as the training pass saw it; `p (after epoch)` is from
# the evaluation pass at the end of the epoch: under GR some examples swing
# between the two extremes within one epoch.

# %%
names = data.class_names or tuple(str(c) for c in range(data.num_classes))


def ranked(res, *, top):
    last = res.to_frame(fields=["p", "eval_p", "log_emphasis"], epochs=[res.epochs_completed])
    last = last.sort_values("log_emphasis", ascending=not top, kind="stable").head(n_show)
    return pd.DataFrame({"index": last["index"], "given": [names[c] for c in last["given"]],
                         "true": [names[c] for c in last["true"]], "mislabelled": last["is_noisy"],
                         "p (train pass)": last["p"].round(4), "p (after epoch)": last["eval_p"].round(4),
                         "log emphasis": last["log_emphasis"].round(3)})


rank_tables = {(labels[k], "most"): ranked(r, top=True) for k, r in results.items()}
rank_tables.update({(labels[k], "least"): ranked(r, top=False) for k, r in results.items()})
shares = pd.Series({f"{m}, weighted {w}": t["mislabelled"].mean() for (m, w), t in rank_tables.items()},
                   name=f"share mislabelled among {n_show} examples")
shares

# %%
rank_tables[(labels["gr"], "most")]

# %%
rank_tables[(labels["gr"], "least")]

# %%
rank_tables[(labels["ce"], "most")]

# %% [markdown]
# ## Images: what each model weights least, and what GR finds least plausible
#
# Rows: the `n_show` examples CE weights least, those GR weights least, and the
# examples with the lowest `p_i` under GR (its best guesses at mislabelled
# examples). Titles: given label / true label; a cross marks a mislabelled one.

# %%
if data.image_shape is None:
    print(f"{dataset} has no images: skipping the image grid")
else:
    raw = grlib.load_dataset(dataset, n_train=n_train or None, standardize=False)
    if not np.array_equal(raw.y_train, noisy.true_labels):
        raise RuntimeError("the unstandardised data set does not line up with the training split")
    rows = {f"{labels['ce']}: weighted least": rank_tables[(labels["ce"], "least")]["index"].to_numpy(),
            f"{labels['gr']}: weighted least": rank_tables[(labels["gr"], "least")]["index"].to_numpy(),
            f"{labels['gr']}: lowest p": np.argsort(results["gr"].record("eval_p", -1), kind="stable")[:n_show]}
    fig = plt.figure(figsize=(1.3 * n_show, 1.9 * len(rows)))
    for sub, (title, idx) in zip(fig.subfigures(len(rows), 1), rows.items()):
        titles = [f"{names[noisy.labels[i]]}/{names[noisy.true_labels[i]]}{' x' if is_noisy[i] else ''}"
                  for i in idx]
        plot_image_grid(raw.x_train[idx], titles=titles, image_shape=raw.image_shape, ncols=n_show, fig=sub)
        sub.suptitle(f"{title} ({is_noisy[idx].mean():.0%} mislabelled)", fontsize="small")
    save_figure(fig, figure_name(f"{STEM}-images", **key), figures_dir);

# %% [markdown]
# ## Key numbers
#
# Written as a small JSON file (`grlib.write_metrics`) for a batch runner to
# collect. (Papermill's companion *scrapbook* would do this inside the notebook,
# but it is unmaintained, so grlib writes a plain JSON sidecar instead.)

# %%
metrics = {
    "parameters": {"dataset": dataset, "n_train": n_train, "noise": noise, "noise_rate": noise_rate,
                   "epochs": epochs, "seed": seed, "lr": lr, "lam": lam, "beta": beta, "snapshots": snapshots},
    "noise_rate_realised": float(is_noisy.mean()),
}
for k, res in results.items():
    t = tables[labels[k]].set_index("epoch")
    s = res.summary()
    metrics[k] = {
        "label": labels[k], "final_acc": s["final_acc"], "best_acc": s["best_acc"],
        "final_noisy_fit": s["final_noisy_fit"],
        **{f"auc_{f}_last": float(t[f"auc_{f}"].iloc[-1]) for f in FIELDS},
        "auc_eval_p_best": float(t["auc_eval_p"].max()), "epoch_of_best_auc": int(t["auc_eval_p"].idxmax()),
        "auc_eval_p_at": {int(e): float(t.loc[e, "auc_eval_p"]) for e in snapshots},
        "precision_lowest_p_at_noise_rate": grlib.metrics.precision_at_rate(res.record("eval_p", -1), is_noisy),
        "share_mislabelled_weighted_most": float(rank_tables[(labels[k], "most")]["mislabelled"].mean()),
        "share_mislabelled_weighted_least": float(rank_tables[(labels[k], "least")]["mislabelled"].mean()),
    }
metrics["grlib_version"] = grlib.__version__
grlib.write_metrics(metrics, metrics_file)
pd.DataFrame({k: {m: v for m, v in metrics[k].items() if m != "auc_eval_p_at"} for k in results}).T

# %% [markdown]
# ## Check: what this notebook exists to show
#
# After the last epoch, `p_i` separates clean from mislabelled examples better
# for GR than for CE (higher ROC AUC of "`p_i` says clean").

# %%
auc_ce, auc_gr = metrics["ce"]["auc_eval_p_last"], metrics["gr"]["auc_eval_p_last"]
assert auc_gr > auc_ce, (f"after {epochs} epochs the separation AUC of p is {auc_gr:.3f} for {labels['gr']} and "
                         f"{auc_ce:.3f} for CE: expected GR > CE")
print(f"separation AUC of p after epoch {epochs}: CE {auc_ce:.3f}, {labels['gr']} {auc_gr:.3f}")
