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
#   epoch; runs without one use the training pass's `p`). A model that has not
#   memorised the wrong labels gives mislabelled examples a low `p_i`, so `p_i`
#   separates them. Once it memorises, it does not.
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
#
# **Noise beyond labels.** With `outlier_fraction > 0` (out-of-distribution
# inputs that keep an in-distribution label) or `corruption_fraction > 0`
# (inputs with heavy perceptual noise, labels kept), every view is drawn by
# kind (clean, mislabelled, outlier, corrupted), and the separation views
# compare each touched kind with the *clean* examples, one curve per kind:
# "is `p_i` lower for outliers than for clean examples?" (the other kinds are
# left out of each comparison). Saved runs that keep these masks are shown
# the same way.
#
# **Your own runs.** Set `run_dir` to a saved run folder (`result.save(folder)`,
# or a `grlib.Recorder`'s `path`), or to two separated by a comma, to analyse
# those runs instead of training (the training parameters are then ignored).
# A run on real data has no noise mask: the separation views are skipped, and
# what remains (distributions, the examples each loss weights least, the
# lowest `p_i`) lists the candidates for a look at their labels.

# %% tags=["parameters"]
run_dir: str = ""  # saved run folder(s) to analyse instead of training, two separated by a comma; empty: train here
dataset: str = "digits"  # digits | moons | fashion_mnist (fashion_mnist needs the cache: `grlib data fetch`)
n_train: int = 0  # stratified training subset size; 0 keeps the whole training split
noise: str = "symmetric"  # none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in (0, 1)
outlier_fraction: float = 0.0  # share of training inputs replaced by out-of-distribution inputs (labels kept)
outlier_source: str = "auto"  # auto | fashion_mnist | digits | noise | gaussian (auto: see grlib.corruption)
corruption_fraction: float = 0.0  # share of training inputs with heavy perceptual noise (labels kept)
corruption_kind: str = "mixed"  # gaussian | blur | occlusion | mixed
epochs: int = 50  # training epochs of each run (by 50 CE has fitted all mislabelled digits; see the note on 100)
seed: int = 0  # label noise, initialisation and shuffling
lr: float = 0.05  # SGD learning rate, momentum 0.9, batch 64, weight decay 5e-4; for fashion_mnist try 0.01 (GR underfits at 0.05)
lam: float = 1.0  # GR emphasis mode: weights peak at p of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread: 0 weights every example equally
snapshot_epochs: list = [5, 20, -1]  # epochs whose distributions are drawn, 1-based; -1 is the last epoch
n_show: int = 12  # examples in the top/bottom tables and in each image row
figures_dir: str = ""  # where the figures go (PNG and PDF); empty: the repository's figures/
metrics_path: str = ""  # JSON file for the key numbers; empty: <figures_dir>/<figure stem>.json
progress: bool = False  # a progress bar over epochs

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import grlib
from grlib.figures import default_figures_dir, figure_name, save_figure, use_style
from grlib.plotting import plot_distribution_grid, plot_image_grid, plot_separation_by_kind
from grlib.views import (example_titles, group_masks, has_kinds, has_mask, kind_shares, load_runs, ranked_examples,
                         record_row, resolve_epochs, run_images, separation_by_epoch, touched_kinds, train_runs)

use_style()

STEM = "03_clean_noisy_separation"
if not isinstance(n_train, int) or n_train < 0:
    raise ValueError(f"n_train={n_train!r} must be an integer >= 0 (0 = the whole training split)")
if not isinstance(n_show, int) or n_show < 1:
    raise ValueError(f"n_show={n_show!r} must be a positive integer")
if not isinstance(snapshot_epochs, (list, tuple)) or not snapshot_epochs:
    raise ValueError(f"snapshot_epochs must be a non-empty list of epochs, got {snapshot_epochs!r}")
trained = not run_dir.strip()
inputs_touched = outlier_fraction > 0 or corruption_fraction > 0
if trained and (noise == "none" or noise_rate <= 0) and not inputs_touched:
    raise ValueError("this notebook compares clean and touched examples: training here needs noise != 'none' "
                     f"and noise_rate > 0 (got noise={noise!r}, noise_rate={noise_rate}), or outlier_fraction > 0 "
                     "or corruption_fraction > 0 (both 0); or analyse saved runs with run_dir")
for e in snapshot_epochs:
    if isinstance(e, bool) or not isinstance(e, int) or not (e == -1 or e >= 1) or (trained and e > epochs):
        raise ValueError(f"snapshot_epochs holds {e!r}: each must be an integer in 1..epochs={epochs} or -1 (last)"
                         if trained else f"snapshot_epochs holds {e!r}: each must be a positive integer or -1 (last)")
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
else:
    key = {"runs": "+".join(Path(part.strip()).name for part in run_dir.split(",") if part.strip())}
metrics_file = Path(metrics_path) if metrics_path else out_dir / f"{figure_name(STEM, **key)}.json"

# %% [markdown]
# ## Train CE and GR on the same noisy data (or load the saved runs)
#
# With outliers or corrupted inputs, `grlib.prepare` damages the inputs once
# (keeping the masks), and both runs train on them.

# %%
results = train_runs(configs, progress=progress) if trained else load_runs(run_dir)
run_keys = dict(zip(results, ["ce", "gr"] if trained else [f"run{k}" for k in range(1, len(results) + 1)]))
PF = "eval_p" if all("eval_p" in r.records for r in results.values()) else "p"  # one p field for every run
snapshots = {}
for label, res in results.items():
    try:
        snapshots[label] = resolve_epochs(res, PF, snapshot_epochs)
    except ValueError as exc:
        raise ValueError(f"snapshot_epochs={snapshot_epochs!r} does not fit run {label!r}: {exc}") from None
masked = {label: res for label, res in results.items() if has_mask(res)}
kinds_shown = any(has_kinds(res) for res in masked.values())  # outliers / corrupted inputs: views by kind
for label, res in results.items():
    if label not in masked:
        print(f"{label}: no noise mask (is_noisy is None): the separation views are skipped for it")
    if has_kinds(res):
        print(f"{label}: examples by kind:", ", ".join(f"{g} {int(m.sum())}" for g, m in group_masks(res)))
pd.DataFrame({label: r.summary() for label, r in results.items()}).T[
    ["epochs", "final_acc", "best_acc", "epoch_of_best", "noisy_fit", "noise_rate_realised"]]

# %% [markdown]
# Separation AUC of each score at every epoch (`grlib.views.separation_by_epoch`; a
# higher score says clean). `eval_p`: `p_i` from the evaluation pass after the
# epoch; `p`: `p_i` seen by the training pass; `weight` / `log_emphasis`: the
# loss's weight (batch-normalised / unnormalised). Runs with the noise mask only;
# with outliers or corrupted inputs, one column block per kind, each against
# the clean examples.

# %%
FIELDS = ("eval_p", "p", "weight", "log_emphasis")
kind_tables = {label: {kind: separation_by_epoch(res, FIELDS, kind=kind) for kind in touched_kinds(res)}
               for label, res in masked.items()}
tables = {label: by_kind["mislabelled"] for label, by_kind in kind_tables.items() if "mislabelled" in by_kind}
if kinds_shown and any(kind_tables.values()):
    display_table = pd.concat({(label, kind): t.set_index("epoch").loc[snapshots[label]]
                               for label, by_kind in kind_tables.items() for kind, t in by_kind.items()},
                              axis=1, names=["run", "kind"]).round(3)
elif tables:
    display_table = pd.concat({label: t.set_index("epoch").loc[snapshots[label]] for label, t in tables.items()},
                              axis=1).round(3)
else:
    display_table = "no run has a noise mask and touched examples: nothing to separate"
display_table

# %% [markdown]
# ## Distributions of `p_i` and of the weight, clean vs mislabelled
#
# One row per run, one column per snapshot epoch, drawn from the per-example
# records (`grlib.plotting.plot_distribution_grid`). Bars are the share of each
# group per bin (each group sums to 1), so the smaller mislabelled group is not
# hidden. With outliers or corrupted inputs every kind is drawn, and each title
# gives the AUC of each kind against the clean examples (misl.: mislabelled,
# outl.: outlier, corr.: corrupted). Each run has its own x axis: CE's and GR's weights live on scales
# orders of magnitude apart.

# %%
fig = plot_distribution_grid(results, PF, snapshot_epochs, auc_field=PF)
fig.suptitle("p of the given label by kind (AUC: p says clean, each kind vs the clean examples)" if kinds_shown else
             "p of the given label, clean vs mislabelled (AUC: p says clean)")
save_figure(fig, figure_name(f"{STEM}-p", **key), out_dir);

# %% [markdown]
# By the last epoch CE has pushed almost every example to `p ≈ 1`; what
# separation is left comes from the mislabelled examples being slightly less
# confident, too small to see on this scale. GR keeps most mislabelled examples
# at `p ≈ 0`, but a share of them sits at `p ≈ 1` with the clean ones.
#
# The weights (weight x batch size, log-spaced bins): CE gives the mislabelled
# examples more weight than the clean ones at every snapshot. GR's weights are
# nearly the same for both groups: with its mode at `p = lam / (1 + lam)`, it
# weights examples at `p ≈ 0` and at `p ≈ 1` alike, and the few examples in
# between get the most.

# %%
if all("weight" in r.records for r in results.values()):
    emphasis_field = "log_emphasis" if all("log_emphasis" in r.records for r in results.values()) else "weight"
    fig = plot_distribution_grid(results, "weight", snapshot_epochs, log=True, auc_field=emphasis_field)
    fig.suptitle("weight x batch size (1 = batch average) by kind (AUC: emphasis says clean, vs clean)"
                 if kinds_shown else
                 "weight x batch size (1 = batch average), clean vs mislabelled (AUC: emphasis says clean)")
    save_figure(fig, figure_name(f"{STEM}-weight", **key), out_dir);
else:
    print("a run kept no weights (its loop recorded without the loss's details): no weight distributions")

# %% [markdown]
# ## ROC curves and AUC per epoch, CE vs GR
#
# Left: ROC curves of `p_i` ("higher says clean") at the snapshot epochs (darker
# = later). Middle: the AUC of `p_i` at every epoch. Right: the AUC of the
# loss's own emphasis; below 0.5 means the loss puts *more* weight on the
# mislabelled examples than on the clean ones. Runs with the noise mask only.
# With outliers or corrupted inputs: one row per kind, each against the clean
# examples (`grlib.plotting.plot_separation_by_kind`).

# %%
if any(kind_tables.values()):
    emphasis_field = "log_emphasis" if all("log_emphasis" in r.records for r in masked.values()) else "weight"
    fig = plot_separation_by_kind(masked, PF, snapshots, emphasis_field=emphasis_field, tables=kind_tables)
    fig.suptitle(f"{dataset}, {noise} noise {noise_rate:.0%}{touched_text}, seed {seed}" if trained else "saved runs")
    save_figure(fig, figure_name(f"{STEM}-roc", **key), out_dir);
else:
    print("no run has a noise mask and touched examples: no ROC curves")

# %% [markdown]
# ## The examples each loss weights most and least (last epoch)
#
# Ranked by the unnormalised emphasis (the weight before normalising within a
# batch; runs without it: the weight x batch size). `given` is the label
# trained on, `true` the original label (when known). The weight was set by
# `p` as the training pass saw it; `p (after epoch)` is from the evaluation
# pass at the end of the epoch: under GR some examples swing between the two
# extremes within one epoch. On real data, the examples weighted least and
# those with the lowest `p` are the ones to look at first.

# %%
images = {label: run_images(res) for label, res in results.items()}
names = next((found[2] for found in images.values() if found is not None), None)
if names is None and trained:  # a data set without images (moons): the class names from the data set itself
    names = grlib.load_dataset(dataset).class_names or None
rank_tables = {(label, "most"): ranked_examples(res, top=True, n=n_show, class_names=names)
               for label, res in results.items()}
rank_tables.update({(label, "least"): ranked_examples(res, top=False, n=n_show, class_names=names)
                    for label, res in results.items()})
if kinds_shown:  # the share of each kind among them
    shares = pd.DataFrame({f"{m}, weighted {w}": kind_shares(results[m], t["index"])
                           for (m, w), t in rank_tables.items() if has_mask(results[m])}
                          ).T.rename_axis(f"share among {n_show} examples")
elif masked:
    shares = pd.Series({f"{m}, weighted {w}": t["mislabelled"].mean() for (m, w), t in rank_tables.items()
                        if "mislabelled" in t}, name=f"share mislabelled among {n_show} examples")
else:
    shares = "no noise mask: the share of mislabelled examples among them is unknown"
shares

# %%
rank_tables[(list(results)[-1], "most")]

# %%
rank_tables[(list(results)[-1], "least")]

# %%
rank_tables[(list(results)[0], "most")]

# %% [markdown]
# ## Images: what each model weights least, and what the last run finds least plausible
#
# Rows: the `n_show` examples each run weights least, and the examples with the
# lowest `p_i` under the last run (GR when trained here: its best guesses at
# mislabelled examples). Titles: given label / true label (when known); a cross
# marks a mislabelled one, "outlier" and "corrupted" the other kinds (their
# images as the model saw them). Saved runs show images when their settings
# name one of grlib's image data sets and the split lines up with the run.

# %%
last = list(results)[-1]
if images[last] is None or any(images[label] is None for label in results):
    print("no images for these runs (a data set without images, a user's own data, or a split that does not "
          "line up with the run): skipping the image grid")
else:
    rows = {f"{label}: weighted least": (label, rank_tables[(label, "least")]["index"].to_numpy()) for label in results}
    lowest = record_row(results[last], PF, -1)
    order = np.argsort(np.where(np.isfinite(lowest), lowest, np.inf), kind="stable")  # unseen examples last
    rows[f"{last}: lowest p"] = (last, order[:n_show])
    fig = plt.figure(figsize=(1.3 * n_show, 1.9 * len(rows)))
    for sub, (title, (label, idx)) in zip(fig.subfigures(len(rows), 1), rows.items()):
        res, (x_raw, image_shape, _) = results[label], images[label]
        titles = example_titles(res, idx, names)
        plot_image_grid(x_raw[idx], titles=titles, image_shape=image_shape, ncols=n_show, fig=sub)
        share = (" (" + ", ".join(f"{v:.0%} {k}" for k, v in kind_shares(res, idx).items()) + ")"
                 if has_mask(res) and touched_kinds(res) else "")
        sub.suptitle(f"{title}{share}", fontsize="small")
    save_figure(fig, figure_name(f"{STEM}-images", **key), out_dir);

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
                   "seed": seed, "lr": lr, "lam": lam, "beta": beta, "snapshot_epochs": list(snapshot_epochs)},
    "source": "trained" if trained else "run_dir",
    "runs": {},
}
for label, res in results.items():
    s = res.summary()
    entry = {"label": label, "has_mask": has_mask(res), "p_field": PF, "snapshots": snapshots[label],
             "final_acc": s["final_acc"], "best_acc": s["best_acc"], "noisy_fit": s["noisy_fit"],
             "noise_rate_realised": s["noise_rate_realised"]}
    if label in tables:
        t = tables[label].set_index("epoch")
        entry.update({f"auc_{f}_last": float(t[f"auc_{f}"].iloc[-1]) for f in FIELDS if f"auc_{f}" in t})
        entry.update({f"auc_{PF}_best": float(t[f"auc_{PF}"].max()), "epoch_of_best_auc": int(t[f"auc_{PF}"].idxmax()),
                      f"auc_{PF}_at": {int(e): float(t.loc[e, f"auc_{PF}"]) for e in snapshots[label]},
                      "precision_lowest_p_at_noise_rate": grlib.precision_at_rate(record_row(res, PF, -1),
                                                                                 res.is_noisy),
                      "share_mislabelled_weighted_most": float(rank_tables[(label, "most")]["mislabelled"].mean()),
                      "share_mislabelled_weighted_least": float(rank_tables[(label, "least")]["mislabelled"].mean())})
    if has_kinds(res):  # outliers / corrupted inputs: each touched kind against the clean examples
        entry["kind_counts"] = {g: int(m.sum()) for g, m in group_masks(res)}
        entry["auc_by_kind"] = {}
        for kind, t in kind_tables.get(label, {}).items():
            t = t.set_index("epoch")
            entry["auc_by_kind"][kind] = {
                **{f"auc_{f}_last": float(t[f"auc_{f}"].iloc[-1]) for f in FIELDS if f"auc_{f}" in t},
                f"auc_{PF}_best": float(t[f"auc_{PF}"].max()),
                f"auc_{PF}_at": {int(e): float(t.loc[e, f"auc_{PF}"]) for e in snapshots[label]}}
        if touched_kinds(res):
            entry["precision_lowest_p_at_touched_rate"] = grlib.precision_at_rate(record_row(res, PF, -1),
                                                                                 res.mask("touched"))
            for w in ("most", "least"):
                entry[f"kind_shares_weighted_{w}"] = kind_shares(res, rank_tables[(label, w)]["index"])
    metrics["runs"][run_keys[label]] = entry
metrics["grlib_version"] = grlib.__version__
grlib.write_metrics(metrics, metrics_file)
pd.DataFrame({k: {m: v for m, v in r.items() if not isinstance(v, (dict, list))}
              for k, r in metrics["runs"].items()}).T

# %% [markdown]
# ## Check: what this notebook exists to show
#
# Trained here with label noise: after the last epoch, `p_i` separates clean
# from mislabelled examples better for GR than for CE (higher ROC AUC of "`p_i`
# says clean"). For every run: the examples ranked "most" are ordered from the
# most emphasised down, those ranked "least" from the least up, and the most
# emphasised is weighted at least as much as the least; with the noise mask,
# every AUC and precision lies in [0, 1]. Outliers and corrupted inputs: their
# last AUCs are finite and in [0, 1] (no direction is asserted: whether `p_i`
# or the emphasis finds them is what the run measures).

# %%
for label, res in results.items():
    most, least = rank_tables[(label, "most")].iloc[:, -1], rank_tables[(label, "least")].iloc[:, -1]
    assert 1 <= len(least) <= n_show and 1 <= len(most) <= n_show, f"{label}: empty or long rankings"
    assert most.is_monotonic_decreasing and least.is_monotonic_increasing, f"{label}: rankings out of order"
    assert most.iloc[0] >= least.iloc[0], f"{label}: the most emphasised example weighs less than the least"
    for kind, t in kind_tables.get(label, {}).items():
        aucs = t.drop(columns="epoch").to_numpy()
        assert np.all((aucs[np.isfinite(aucs)] >= 0) & (aucs[np.isfinite(aucs)] <= 1)), f"{label}: AUC outside [0, 1]"
        assert np.isfinite(aucs[-1]).all(), f"{label}: the last AUCs of {kind} against clean are not finite"
    if label in tables:
        assert 0 <= metrics["runs"][run_keys[label]]["precision_lowest_p_at_noise_rate"] <= 1
    if "precision_lowest_p_at_touched_rate" in metrics["runs"][run_keys[label]]:
        assert 0 <= metrics["runs"][run_keys[label]]["precision_lowest_p_at_touched_rate"] <= 1
if trained and "ce" in metrics["runs"] and f"auc_{PF}_last" in metrics["runs"]["ce"]:
    auc_ce, auc_gr = metrics["runs"]["ce"][f"auc_{PF}_last"], metrics["runs"]["gr"][f"auc_{PF}_last"]
    assert auc_gr > auc_ce, (f"after {epochs} epochs the separation AUC of p is {auc_gr:.3f} for "
                             f"{configs['gr'].label} and {auc_ce:.3f} for CE: expected GR > CE")
    print(f"separation AUC of p after epoch {epochs}: CE {auc_ce:.3f}, {configs['gr'].label} {auc_gr:.3f}")
else:
    print(f"checked {len(results)} run(s) ({len(masked)} with a noise mask)")
