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
# # 02 · Per-example weight trajectories: CE vs GR under label noise
#
# The same model, data, noisy labels, initialisation and batch order, trained
# twice: once with cross entropy (CE) and once with gradient rescaling (GR).
# Every training example is recorded at every epoch, so we can follow each one
# through training:
#
# * `p_i`: the probability the model gives to the example's **given** label
#   (which is wrong for the mislabelled examples), from an evaluation pass at the
#   end of each epoch (`eval_p`; runs without one use `p` from the training
#   pass). High `p_i` on a mislabelled example means the model has memorised the
#   wrong label.
# * the example's **weight**: its emphasis normalised within its batch, shown
#   times the batch size, so 1 is "the batch average" (the unit of every weight
#   figure in grlib).
#
# **What to look for.** CE starts by pushing hardest on the mislabelled examples
# (their `p_i` is low and CE emphasises low `p_i`), and keeps pushing until it
# has fitted them: the share of mislabelled examples with `p_i > 0.5` climbs to
# 1. GR with its emphasis mode away from 0 gives the examples it cannot fit less
# weight, so most mislabelled examples stay unfitted for much longer.
#
# **Noise beyond labels.** With `outlier_fraction > 0` (out-of-distribution
# inputs that keep an in-distribution label) or `corruption_fraction > 0`
# (inputs with heavy perceptual noise, labels kept), every view groups the
# examples by kind: clean, mislabelled, outlier, corrupted (the kinds are
# disjoint). A saved run that keeps these masks is shown by kind too.
#
# **Your own runs.** Set `run_dir` to a saved run folder (`result.save(folder)`,
# or a `grlib.Recorder`'s `path`), or to two folders separated by a comma, and
# the notebook analyses those runs instead of training: the training parameters
# below are then ignored. Views that need the noise mask (which examples are
# mislabelled) are skipped for runs that do not have one.

# %% tags=["parameters"]
run_dir: str = ""  # saved run folder(s) to analyse instead of training, two separated by a comma; empty: train here
dataset: str = "digits"  # digits | moons | fashion_mnist (fashion_mnist needs the cache: `grlib data fetch`)
n_train: int = 0  # stratified training subset size; 0 keeps the whole training split
noise: str = "symmetric"  # none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in [0, 1)
outlier_fraction: float = 0.0  # share of training inputs replaced by out-of-distribution inputs (labels kept)
outlier_source: str = "auto"  # auto | fashion_mnist | digits | noise | gaussian (auto: see grlib.corruption)
corruption_fraction: float = 0.0  # share of training inputs with heavy perceptual noise (labels kept)
corruption_kind: str = "mixed"  # gaussian | blur | occlusion | mixed
epochs: int = 100  # training epochs of each run
seed: int = 0  # label noise, initialisation, shuffling and the sampled examples
lr: float = 0.05  # SGD learning rate, momentum 0.9, batch 64, weight decay 5e-4; for fashion_mnist try 0.01 (GR underfits at 0.05)
lam: float = 1.0  # GR emphasis mode: weights peak at p of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread: 0 weights every example equally
n_per_group: int = 10  # thin weight lines drawn per group (clean, mislabelled) and run
figures_dir: str = ""  # where the figures go (PNG and PDF); empty: the repository's figures/
metrics_path: str = ""  # JSON file for the key numbers; empty: <figures_dir>/<figure stem>.json
progress: bool = False  # a progress bar over epochs

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import grlib
from grlib.figures import METHOD_COLORS, default_figures_dir, figure_name, save_figure, use_style
from grlib.plotting import (GROUP_LABELS, plot_history, plot_p_heatmap, plot_share_above, plot_trajectories,
                            plot_weight_share)
from grlib.views import (group_masks, group_medians, has_kinds, has_mask, iter_record_rows, load_runs, p_field,
                         recorded_epochs, share_above, touched_kinds, train_runs, weight_share_noisy, weight_shares)

use_style()

STEM = "02_weight_trajectories"
if not isinstance(n_train, int) or n_train < 0:
    raise ValueError(f"n_train={n_train!r} must be an integer >= 0 (0 = the whole training split)")
if not isinstance(n_per_group, int) or n_per_group < 0:
    raise ValueError(f"n_per_group={n_per_group!r} must be an integer >= 0")
trained = not run_dir.strip()
out_dir = Path(figures_dir) if figures_dir else default_figures_dir()  # not the kernel's working directory
if trained:
    key = {"dataset": dataset, "noise": noise, "noise_rate": noise_rate, "epochs": epochs, "seed": seed, "lr": lr,
           "lam": lam, "beta": beta, **({"n_train": n_train} if n_train else {}),
           **({"outlier_fraction": outlier_fraction} if outlier_fraction else {}),
           **({"outlier_source": outlier_source} if outlier_fraction and outlier_source != "auto" else {}),
           **({"corruption_fraction": corruption_fraction} if corruption_fraction else {}),
           **({"corruption_kind": corruption_kind} if corruption_fraction and corruption_kind != "mixed" else {})}
    base = grlib.RunConfig(dataset=dataset, n_train=n_train or None, noise=noise, noise_rate=noise_rate,
                           outlier_fraction=outlier_fraction, outlier_source=outlier_source,
                           corruption_fraction=corruption_fraction, corruption_kind=corruption_kind,
                           epochs=epochs, lr=lr, seed=seed, loss="ce", loss_params={})
    configs = {"ce": base, "gr": base.replace(loss="gr", loss_params={"lam": lam, "beta": beta})}
    touched_text = "".join(f", {share:.0%} {what}" for share, what in
                           ((outlier_fraction, "outliers"), (corruption_fraction, "corrupted inputs")) if share)
    print(" vs ".join(c.label for c in configs.values()), f"| {dataset}, {noise} noise at rate {noise_rate:g}"
          f"{touched_text}, {epochs} epochs, lr {lr:g}, seed {seed}")
else:
    key = {"runs": "+".join(Path(part.strip()).name for part in run_dir.split(",") if part.strip())}
    print(f"analysing saved runs: {run_dir}")
metrics_file = Path(metrics_path) if metrics_path else out_dir / f"{figure_name(STEM, **key)}.json"

# %% [markdown]
# ## Train both (or load the saved runs)
#
# One call to `grlib.prepare` makes the data and the noisy labels; both runs
# share them (and the seed, hence the initialisation and the batch order).
# With outliers or corrupted inputs, `grlib.prepare` damages the inputs once
# (keeping the masks), so both runs train on the same damaged inputs.

# %%
results = train_runs(configs, progress=progress) if trained else load_runs(run_dir)
run_keys = dict(zip(results, ["ce", "gr"] if trained else [f"run{k}" for k in range(1, len(results) + 1)]))
masked = [label for label, res in results.items() if has_mask(res)]
for label, res in results.items():
    if not has_mask(res):
        print(f"{label}: no noise mask (is_noisy is None): clean and mislabelled examples are drawn as one group, "
              "and the views that need the mask are skipped")
    if has_kinds(res):
        print(f"{label}: examples by kind:", ", ".join(f"{g} {int(m.sum())}" for g, m in group_masks(res)))
pd.DataFrame({label: res.summary() for label, res in results.items()}).T[
    ["epochs", "final_acc", "best_acc", "epoch_of_best", "noisy_fit", "clean_acc", "noise_rate_realised"]]

# %% [markdown]
# `final_acc` is the test accuracy after the **last** epoch, `best_acc` the best
# seen during training (what the paper's tables report; picking it needs clean
# test labels, which a noisy-label practitioner does not have). `noisy_fit`:
# the share of mislabelled examples fitted (predicted as their wrong label).

# %% [markdown]
# ## Trajectories of `p_i` and of the weight
#
# Under GR the mislabelled examples do not spread out evenly: each sits near
# `p_i = 0` (not fitted) or near `p_i = 1` (fitted), and some flip between the
# two. A median with a quantile band would read as "spread everywhere", so `p_i`
# is shown as two views that keep the two modes apart:
#
# * top: the share of each group with `p_i > 0.5` per epoch (for the
#   mislabelled group: the share the model believes in their wrong label);
# * middle: heat maps of `p_i` against the epoch, one per group; the colour is
#   the share of the group in each `p` bin (each column sums to 1).
#
# Bottom: the weight x batch size (log scale; 1 = the batch average), thin lines
# for `n_per_group` sampled examples per group, the group medians and their
# 10%-90% bands.
#
# With outliers or corrupted inputs each kind gets its own line, heat map and
# weight band (outlier purple, corrupted orange).

# %%
kinds = [k for k in ("mislabelled", "outlier", "corrupted") if any(k in touched_kinds(r) for r in results.values())]
heat_groups = kinds + ["clean"] if masked else ["all"]
with_weight = [label for label, res in results.items() if "weight" in res.records]
n_rows = 1 + len(heat_groups) + (1 if with_weight else 0)
fig, axes = plt.subplots(n_rows, len(results), figsize=(5.8 * len(results), 3.0 * n_rows), squeeze=False,
                         sharex="col")
for col, (label, res) in enumerate(results.items()):
    pf = p_field(res)
    plot_share_above(res, pf, ax=axes[0, col])
    axes[0, col].set_title(label)
    for row, group in enumerate(heat_groups, start=1):
        if group != "all" and group not in dict(group_masks(res)):
            axes[row, col].set_axis_off()
            axes[row, col].text(0.5, 0.5, "no noise mask in this run" if not has_mask(res) else
                                f"no {GROUP_LABELS[group]} examples in this run", ha="center", va="center",
                                transform=axes[row, col].transAxes, color="0.4")
            continue
        plot_p_heatmap(res, pf, group=group, ax=axes[row, col], vmax=1.0,
                       colorbar=(col == len(results) - 1))  # one colour scale per row, 0 to 1
        axes[row, col].set_title(f"p of the {'examples' if group == 'all' else group + ' examples'}",
                                 fontsize="small")
    if with_weight:
        if label in with_weight:
            plot_trajectories(res, "weight", ax=axes[-1, col], n_per_group=n_per_group, seed=seed, log=True)
        else:
            axes[-1, col].set_axis_off()
    if col:
        for ax in (axes[0, col], axes[-1, col]):
            if ax.get_legend():
                ax.get_legend().remove()
for ax in axes[:-1].ravel():
    ax.set_xlabel("")
title = (f"{dataset}, {noise} noise {noise_rate:.0%}{touched_text}" if trained else "saved runs")
fig.suptitle(f"{title}: p of the given label (share above 0.5, heat maps) and weight x batch size (bottom)")
save_figure(fig, figure_name(f"{STEM}-trajectories", **key), out_dir);

# %% [markdown]
# **Reading it.** Under CE the mislabelled examples' `p_i` climbs to 1: the
# wrong labels get memorised, and throughout, CE gives a mislabelled example
# several times the weight of a clean one. Under GR the clean examples are
# fitted within a few epochs while most mislabelled examples stay near
# `p_i = 0`; a minority sits near `p_i = 1`, and individual examples flip
# between the two from one epoch to the next: GR with `lam = 1` gives an
# example at `p ≈ 0` about the same weight as one at `p ≈ 1`, so it still
# pushes mislabelled examples towards their wrong label, just no harder than
# the clean ones.
#
# How the groups' medians evolve, at a few epochs: `p_i` of each group, the
# median weight x batch size, and (with the noise mask) the median weight of a
# mislabelled example relative to a clean one (above 1: the loss pushes harder
# on the mislabelled); with outliers or corrupted inputs, the same ratio for
# each kind.

# %%
medians = {}
for label, res in results.items():
    kept = recorded_epochs(res, p_field(res))
    picks = {int(kept[i]) for i in (0, min(4, kept.size - 1), kept.size // 4, kept.size // 2, kept.size - 1)}
    medians[label] = group_medians(res, sorted(picks))
pd.concat(medians, names=["run"]).round(3)

# %% [markdown]
# ## Memorisation and test accuracy, CE vs GR
#
# Left to right: test accuracy (dots: the best epoch), the share of mislabelled
# examples predicted as their (wrong) given label, accuracy on the clean training
# examples, and the share of all the weight in an epoch that goes to mislabelled
# examples (dotted: their share of the training set, what uniform weights give;
# with outliers or corrupted inputs, one such panel per kind).
# A run that did not record a history field leaves its panel empty; the weight
# share needs the noise mask.

# %%
fields = [f for f in ("test_acc", "noisy_fit", "clean_acc") if any(f in r.history for r in results.values())]
share_runs = [label for label in masked if "weight" in results[label].records]
share_kinds = [k for k in kinds if any(k in touched_kinds(results[label]) for label in share_runs)]
fig, axes = plt.subplots(1, len(fields) + len(share_kinds),
                         figsize=(4.3 * (len(fields) + len(share_kinds)), 3.8), squeeze=False)
axes = axes[0]
if fields:
    plot_history(results, fields=fields, axes=axes[:len(fields)])
for label, res in results.items():
    s = res.summary()
    colour = METHOD_COLORS.get(str(res.config.get("loss", "")), "0.3")
    if "test_acc" in fields and np.isfinite(s["best_acc"]):
        axes[0].plot(s["epoch_of_best"], s["best_acc"], "o", color=colour, ms=6)
for ax, kind in zip(axes[len(fields):], share_kinds):
    plot_weight_share({label: results[label] for label in share_runs}, kind, ax=ax)
for ax, field in zip(axes, fields):
    if field in ("noisy_fit", "clean_acc"):
        ax.set_ylim(-0.02, 1.02)
fig.suptitle(f"{dataset}, {noise} noise {noise_rate:.0%}{touched_text}, seed {seed}" if trained else "saved runs")
save_figure(fig, figure_name(f"{STEM}-history", **key), out_dir);

# %% [markdown]
# **Reading the result honestly.** CE fits every mislabelled example and its
# test accuracy falls far below its early best. GR fits far fewer mislabelled
# examples, but on this small MLP without the paper's training protocol its
# test accuracy also decays after an early peak: it does *not* hold its best
# accuracy as well as the paper's logs suggest. The final numbers are in the
# table at the top and in the JSON below.
#
# On `fashion_mnist` (e.g. `n_train=5000`) GR at the default `lr=0.05`
# underfits: its accuracy on the *clean* training examples stays near 0.6.
# With `lr=0.01` it trains properly (about 0.75 final and 0.81 best test
# accuracy after 40 epochs, a quarter of the mislabelled examples fitted).

# %% [markdown]
# ## Key numbers
#
# Written as a small JSON file (`grlib.write_metrics`) for a batch runner to
# collect. (Papermill's companion *scrapbook* would do this inside the notebook,
# but it is unmaintained, so grlib writes a plain JSON sidecar instead.)

# %%
metrics = {
    "parameters": {"run_dir": run_dir, "dataset": dataset, "n_train": n_train, "noise": noise,
                   "noise_rate": noise_rate, "outlier_fraction": outlier_fraction, "outlier_source": outlier_source,
                   "corruption_fraction": corruption_fraction, "corruption_kind": corruption_kind, "epochs": epochs,
                   "seed": seed, "lr": lr, "lam": lam, "beta": beta},
    "source": "trained" if trained else "run_dir",
    "runs": {},
}
for label, res in results.items():
    s = res.summary()
    final = group_medians(res, [-1]).iloc[-1]
    above = share_above(res, p_field(res)).iloc[-1]
    metrics["runs"][run_keys[label]] = {
        "label": label, "has_mask": has_mask(res), "epochs": s["epochs"], "final_acc": s["final_acc"],
        "best_acc": s["best_acc"], "epoch_of_best": s["epoch_of_best"], "noisy_fit": s["noisy_fit"],
        "clean_acc": s["clean_acc"], "noise_rate_realised": s["noise_rate_realised"],
        **{f"final_median_{name.replace(' ', '_').replace('/', '_per_')}": float(v) for name, v in final.items()},
        **{f"final_share_p_above_half_{g}": float(above[g]) for g in above.index if g != "epoch"},
        "final_weight_share_noisy": (float(weight_share_noisy(res).iloc[-1]) if label in share_runs else None),
    }
    if has_kinds(res):  # runs with outliers or corrupted inputs: the counts and weight shares of every kind
        metrics["runs"][run_keys[label]]["kind_counts"] = {g: int(m.sum()) for g, m in group_masks(res)}
        if "weight" in res.records:
            last_shares = weight_shares(res).iloc[-1]
            metrics["runs"][run_keys[label]].update(
                {f"final_weight_share_{g}": float(v) for g, v in last_shares.items()})
metrics["grlib_version"] = grlib.__version__
grlib.write_metrics(metrics, metrics_file)
pd.DataFrame(metrics["runs"]).T

# %% [markdown]
# ## Check: what this notebook exists to show
#
# Trained here with label noise: after the last epoch CE has fitted a larger
# share of the mislabelled examples (predicts their wrong given label) than GR.
# For every run: `p` lies in [0, 1]; the recorded weights are non-negative and
# normalised within each batch (when the run's settings give its batch size and
# every example was seen, an epoch's weights sum to its number of batches); the
# shares drawn lie in [0, 1]. Outliers and corrupted inputs: their numbers are
# finite, shares in [0, 1] and the weight shares of the kinds sum to 1 (no
# direction is asserted: how CE and GR weight them is what the run measures).

# %%
for label, res in results.items():
    for epoch, row in iter_record_rows(res, p_field(res)):
        seen = row[np.isfinite(row)]
        assert seen.size and seen.min() >= 0 and seen.max() <= 1, f"{label}: p outside [0, 1] at epoch {epoch}"
    if "weight" in res.records:
        batch_size = res.config.get("batch_size")
        for epoch, row in iter_record_rows(res, "weight"):
            seen = row[np.isfinite(row)]
            assert (seen >= 0).all(), f"{label}: negative weights at epoch {epoch}"
            if batch_size and seen.size == row.size:
                assert abs(seen.sum() - np.ceil(row.size / batch_size)) < 1e-3 * np.ceil(row.size / batch_size), (
                    f"{label}: epoch {epoch}'s weights sum to {seen.sum():.4f}, not one per batch "
                    f"({int(np.ceil(row.size / batch_size))} batches of about {batch_size})")
    shares = share_above(res, p_field(res)).drop(columns="epoch").to_numpy()
    assert np.all((shares[np.isfinite(shares)] >= 0) & (shares[np.isfinite(shares)] <= 1))
    if has_kinds(res):
        entry = metrics["runs"][run_keys[label]]
        assert sum(entry["kind_counts"].values()) == res.n_train, f"{label}: the kinds do not cover every example"
        for kind in touched_kinds(res):
            assert 0 <= entry[f"final_share_p_above_half_{kind}"] <= 1, f"{label}: {kind} share outside [0, 1]"
            if "weight" in res.records:
                assert 0 <= entry[f"final_weight_share_{kind}"] <= 1, f"{label}: {kind} weight share outside [0, 1]"
                ratio = entry[f"final_median_weight_ratio_{kind}_per_clean"]
                assert np.isfinite(ratio) and ratio >= 0, f"{label}: {kind}'s median weight ratio is {ratio}"
        if "weight" in res.records:
            total = sum(entry[f"final_weight_share_{g}"] for g in entry["kind_counts"])
            assert abs(total - 1) < 1e-6, f"{label}: the kinds' weight shares sum to {total}, not 1"
if trained and noise != "none" and noise_rate > 0 and results[configs["ce"].label].is_noisy.any():
    fit_ce, fit_gr = metrics["runs"]["ce"]["noisy_fit"], metrics["runs"]["gr"]["noisy_fit"]
    assert fit_ce > fit_gr, (f"after {epochs} epochs CE fitted {fit_ce:.1%} of the mislabelled examples and "
                             f"{configs['gr'].label} {fit_gr:.1%}: expected CE > GR")
    print(f"CE fitted {fit_ce:.0%} of the mislabelled examples, {configs['gr'].label} {fit_gr:.0%}")
else:
    print(f"checked {len(results)} run(s): p in [0, 1], weights normalised per batch, shares in [0, 1]")
