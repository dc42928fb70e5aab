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
# # 07 · Data map: which training labels are likely wrong?
#
# One ordinary training run already holds what the published detectors of
# mislabelled examples need: how each example's probability of its *given*
# label moves over the epochs. `grlib.scores` turns those records into one
# score per example, with no extra training:
#
# * **confidence**: the mean of `p` over the epochs (data maps; for a GR run this
#   is "GR's mean p"); **variability**: its standard deviation; **correctness**:
#   the share of epochs in which the model predicted the given label;
# * **aum** (Area Under the Margin): the mean of the given label's logit minus
#   the largest other logit;
# * **forgetting**: correct-to-wrong flips; **final_p**; **small_loss**: the
#   mean rank of `-log p` within each epoch; **mean_weight**: the loss's emphasis.
#
# `grlib.find_label_issues(result)` ranks the examples by one of them (most
# suspect first) and flags a number it chooses without knowing the noise rate:
# a two-component mixture on the score, or, when the run trained with AUM's
# *threshold samples* (examples deliberately moved to a fake extra class), a
# percentile of their scores.
#
# **What to look for.**
# * The data map (confidence against variability): clean examples sit at the
#   top left (*easy-to-learn*: always confident), mislabelled ones gather at
#   the bottom left (*hard-to-learn*: the model keeps disagreeing with their
#   label); the *ambiguous* ones in between, with high variability, are
#   learnt late or flip.
# * The score's distribution: two groups with a gap between them, and the cut
#   in the gap. A cut in the middle of one group means the count is unreliable.
# * The ROC curves (when the noise mask is known): how well each score ranks
#   the clean above the mislabelled; curves close to the top left corner.
# * The top suspects' images: their given label against what the model
#   predicts. On real data, these are the examples to check first.
#
# **Where it fails.** A network that memorises the wrong labels (CE trained
# long at a high learning rate, without augmentation) learns them late but
# learns them: a score over *all* epochs then separates less, and the mixture
# may find no group to flag (it says so). Use an early epoch window
# (`first_k`, e.g. the epochs before the first learning-rate drop). Pair
# noise (class k always flipped to k+1) is harder: the model learns the
# flipped pairs as a rule, and every score separates worse.
#
# **Your own runs.** Set `run_dir` to a saved run folder (`result.save(folder)`,
# or a `grlib.Recorder`'s `path`) to analyse it instead of training here (the
# training parameters are then ignored). A saved run holds no inputs: the
# images are shown when its settings name one of grlib's image data sets and
# the training split rebuilt from them lines up with the run's labels;
# otherwise the suspects are listed by index and label. A run on real data has
# no noise mask: the views that need it (ROC curves, precision) are skipped.

# %% tags=["parameters"]
run_dir: str = ""  # a saved run folder to analyse instead of training; empty: train one here
dataset: str = "digits"  # digits | moons | fashion_mnist (fashion_mnist needs the cache: `grlib data fetch`)
n_train: int = 0  # stratified training subset size; 0 keeps the whole training split
noise: str = "symmetric"  # none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in [0, 1)
loss: str = "gr"  # the loss of the run trained here: gr | ce | gce | sce | mae | nce+rce
lam: float = 1.0  # GR emphasis mode: weights peak at p of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread: 0 weights every example equally
protocol: str = "paper"  # paper (lr 0.1, step schedule, BatchNorm, augmentation) | none (grlib's quick setting)
epochs: int = 60  # training epochs of the run trained here
batch_size: int = 128  # examples per SGD step
lr: float = 0.0  # learning rate; 0 keeps the protocol's (paper 0.1, none 0.05)
seed: int = 0  # label noise, initialisation, shuffling, augmentation, threshold samples
threshold_fraction: float = 0.0  # share of examples moved to a fake class as AUM threshold samples (run trained here); 0 for none
threshold_class: int = -1  # the fake class of a saved run's threshold samples; -1 for none
threshold_percentile: float = 0.0  # percentile of the threshold samples' scores that sets the cut; 0 for grlib's default
score: str = "confidence"  # the score that ranks and flags: confidence | aum | correctness | final_p | forgetting | small_loss
first_k: int = 0  # only the first k epochs (before memorisation); 0 uses every epoch
n_show: int = 16  # suspects in the table and in the image grid
figures_dir: str = ""  # where the figures go (PNG and PDF); empty: the repository's figures/
metrics_path: str = ""  # JSON file for the key numbers; empty: <figures_dir>/<figure stem>.json
progress: bool = False  # a progress bar over epochs

# %%
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import grlib
from grlib import scores as S
from grlib.datamap import plot_data_map, plot_score_distribution, plot_score_rocs, suspect_titles, top_suspects
from grlib.detection import flag_metrics, run_scores, separation_metrics
from grlib.figures import default_figures_dir, figure_name, save_figure, use_style
from grlib.plotting import plot_image_grid
from grlib.views import has_mask, run_images

use_style()

STEM = "07_data_map"
trained = not run_dir.strip()
if not isinstance(n_show, int) or n_show < 1:
    raise ValueError(f"n_show={n_show!r} must be a positive integer")
if not isinstance(first_k, int) or first_k < 0:
    raise ValueError(f"first_k={first_k!r} must be an integer >= 0 (0: every epoch)")
if not 0.0 <= threshold_fraction < 1.0:
    raise ValueError(f"threshold_fraction={threshold_fraction!r} must lie in [0, 1) (0: no threshold samples)")
if not 0.0 <= threshold_percentile <= 100.0:
    raise ValueError(f"threshold_percentile={threshold_percentile!r} must lie in [0, 100] (0: grlib's default)")
if not isinstance(threshold_class, int) or threshold_class < -1:
    raise ValueError(f"threshold_class={threshold_class!r} must be a class index >= 0, or -1 for none")
if trained and threshold_class != -1:
    raise ValueError(f"threshold_class={threshold_class} names the threshold samples of a saved run (run_dir); a run "
                     "trained here makes its own with threshold_fraction")
if not trained and threshold_fraction > 0:
    raise ValueError(f"threshold_fraction={threshold_fraction} makes threshold samples for a run trained here; for a "
                     "saved run (run_dir) give the fake class they carry with threshold_class")
if score not in S.score_names(ranked=True):
    raise ValueError(f"score={score!r} cannot rank examples; allowed: {', '.join(S.score_names(ranked=True))} "
                     "(variability and mean_weight have no clear direction: they are shown, not ranked by)")
out_dir = Path(figures_dir) if figures_dir else default_figures_dir()  # not the kernel's working directory
if trained:
    config = grlib.RunConfig(dataset=dataset, n_train=n_train or None, noise=noise, noise_rate=noise_rate, loss=loss,
                             loss_params={"lam": lam, "beta": beta} if loss == "gr" else {}, protocol=protocol,
                             epochs=epochs, batch_size=batch_size, lr=lr or None, seed=seed)
    key = {"dataset": dataset, "noise": noise, "noise_rate": noise_rate, "loss": loss, "epochs": epochs,
           "protocol": protocol, "seed": seed, **({"lam": lam, "beta": beta} if loss == "gr" else {}),
           **({"n_train": n_train} if n_train else {}), **({"ts": threshold_fraction} if threshold_fraction else {})}
else:
    key = {"run": Path(run_dir.strip()).name}
key.update({**({"score": score} if score != S.DEFAULT_SCORE else {}), **({"first_k": first_k} if first_k else {})})
metrics_file = Path(metrics_path) if metrics_path else out_dir / f"{figure_name(STEM, **key)}.json"
window = {"first_k": first_k or None}
percentile = threshold_percentile or None

# %% [markdown]
# ## The run: trained here, or loaded
#
# Trained here with `threshold_fraction > 0`, a share of the examples is moved
# to a fake class `C` (`grlib.scores.with_threshold_samples`) and the model gets
# `C + 1` outputs: every threshold sample is mislabelled by construction, so
# their scores show where the mislabelled examples of the real classes lie.
# They are not scored themselves.

# %%
threshold_mask = None
if trained:
    data, noisy, _ = grlib.prepare(config)
    if threshold_fraction > 0:
        data, noisy, threshold_samples = S.with_threshold_samples(data, noisy, fraction=threshold_fraction,
                                                                  seed=seed + 1000)
        threshold_mask = threshold_samples.mask
    result = grlib.train(config, data=data, noisy=noisy, progress=progress)
    if result.epochs_completed != epochs:
        raise RuntimeError(f"the run stopped early: {result.stopped}")
else:
    result = grlib.RunResult.load(Path(run_dir.strip()).expanduser())
    if threshold_class >= 0:
        threshold_mask = np.asarray(result.y_given) == threshold_class
        if not threshold_mask.any():
            raise ValueError(f"threshold_class={threshold_class}: no example of the saved run carries that label "
                             f"(labels present: {np.unique(result.y_given).tolist()})")
known = has_mask(result)
# the mask of the real examples' noise (threshold samples are mislabelled by construction, and left out)
real = np.ones(result.n_train, bool) if threshold_mask is None else ~threshold_mask
is_noisy = np.asarray(result.is_noisy, bool) & real if known else None
if not known:
    print("this run has no noise mask (is_noisy is None): the ROC curves and the precision of the flags are "
          "skipped; the ranking and the flags need no mask")
summary = result.summary()
pd.Series({"examples": result.n_train, "epochs": summary["epochs"], "final test accuracy": summary["final_acc"],
           "mislabelled examples fitted": summary["noisy_fit"], "noise rate realised": summary["noise_rate_realised"],
           "threshold samples": 0 if threshold_mask is None else int(threshold_mask.sum()),
           "records kept": ", ".join(sorted(result.records))}, name="run")

# %% [markdown]
# ## Every example's scores, and the flags
#
# `grlib.label_issues_frame` gives one row per example: its scores (each in its
# own direction: see `grlib.scores.SCORES`), the given and predicted labels,
# `label_score` (the chosen score turned so that higher says clean), the rank
# (1 = most suspect) and whether it is flagged.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    frame = grlib.label_issues_frame(result, score=score, threshold_samples=threshold_mask,
                                     threshold_percentile=percentile, **window)
for w in caught:
    print(f"note: {w.message}")
threshold = frame.attrs["flag_threshold"]
flagged = np.flatnonzero(frame["is_label_issue"].to_numpy())
print(f"{threshold.count} of {int(real.sum())} examples flagged by {score!r} ({threshold.method}"
      + (f", {threshold.percentile:.3g}th percentile of the threshold samples" if threshold.method == "threshold_samples"
         else "") + ")")
frame.head()

# %% [markdown]
# ## The data map
#
# Each example at its variability (x) and confidence (y). Left: coloured by
# correctness. Right (when the noise mask is known): clean green, mislabelled
# red. Expect the red ones at the bottom left, where the model kept
# disagreeing with their label; red ones at the top left are mislabelled
# examples the network memorised early, which no score of this run can find.

# %%
panels = 2 if known else 1
fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.8), squeeze=False)
map_conf, map_var = frame["confidence"].to_numpy(), frame["variability"].to_numpy()
map_conf = np.where(real, map_conf, np.nan)  # threshold samples are not part of the map
plot_data_map(map_conf, map_var, correctness=frame["correctness"].to_numpy(), colour_by="correctness", ax=axes[0, 0],
              seed=seed)
if known:
    plot_data_map(map_conf, map_var, is_noisy=is_noisy, colour_by="is_noisy", ax=axes[0, 1], seed=seed)
fig.suptitle("data map" + (f" (first {first_k} epochs)" if first_k else " (every epoch)"))
save_figure(fig, figure_name(f"{STEM}-map", **key), out_dir);

# %% [markdown]
# ## Where the cut falls
#
# Left: the AUM of every example (when the run recorded the margin), with the
# cut `find_label_issues(score="aum")` flags below: the threshold samples'
# percentile when the run has them (orange: their own AUM), else the mixture
# cut. Right: the same for the score chosen to rank (`score`), when it is not
# AUM. With the noise mask, clean and mislabelled are drawn apart.

# %%
shown_scores = (["aum"] if "aum" in frame else []) + ([score] if score != "aum" else [])
fig, axes = plt.subplots(1, len(shown_scores), figsize=(6.2 * len(shown_scores), 4.2), squeeze=False)
cuts = {}
for ax, name in zip(axes[0], shown_scores):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes were printed above for the chosen score
        cuts[name] = threshold if name == score else S.flag_threshold(
            result, score=name, threshold_samples=threshold_mask, threshold_percentile=percentile, **window)
    plot_score_distribution(frame[name].to_numpy(), threshold=cuts[name], is_noisy=is_noisy, threshold_samples=threshold_mask,
                            name=f"{name} ({S.SCORES[name].direction})", ax=ax)
    ax.set_title(f"{name}: {cuts[name].count} flagged")
save_figure(fig, figure_name(f"{STEM}-threshold", **key), out_dir);

# %% [markdown]
# ## How well each score separates clean from mislabelled (noise mask known)
#
# ROC curves of every score, each turned so that a higher score says clean
# (`grlib.detection.run_scores`); best first in the legend. Below, per score:
# ROC AUC, average precision of finding the mislabelled by the lowest scores
# (a random ranking scores the noise rate), precision at the true noise rate,
# and the quality of the score's automatic flag count: flagged / true count
# (1 is right), precision and recall of the flagged set.

# %%
quality = None
if known:
    oriented = {k: np.where(real, v, np.nan) for k, v in run_scores(result, **window).items()}
    fig, ax = plt.subplots(figsize=(6.5, 5.2))
    plot_score_rocs(oriented, is_noisy, ax=ax)
    ax.set_title("ROC of every score (clean is positive)")
    save_figure(fig, figure_name(f"{STEM}-roc", **key), out_dir);
    rows = {}
    for name, values in oriented.items():
        rows[name] = separation_metrics(values[real], is_noisy[real])
        if S.SCORES[name].direction != S.NO_DIRECTION:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flags = grlib.find_label_issues(result, score=name, threshold_samples=threshold_mask,
                                                threshold_percentile=percentile, **window)
            rows[name].update(flag_metrics(flags, is_noisy, candidates=real))
    quality = pd.DataFrame(rows).T
    display_quality = quality.round(3)
else:
    display_quality = "no noise mask: no ROC curves, no precision"
display_quality

# %% [markdown]
# ## The top suspects
#
# The `n_show` most suspect examples by `score`: given label, the label the
# model predicted at the last recorded epoch, whether each is flagged, and
# (when known) the true label.

# %%
images = run_images(result)
names = None
if images is not None:
    names = tuple(images[2]) + (("threshold",) if threshold_mask is not None else ())
suspects = top_suspects(frame, n_show, class_names=names)
suspects

# %% [markdown]
# Their images, when the run's training split can be rebuilt (titles: given /
# predicted label; `x` marks an example known to be mislabelled).

# %%
if images is None:
    print("no images for this run (a user's own data, a data set without images, or a training split that does "
          "not line up with the run's labels): the suspects are listed by index and label above")
else:
    fig = plot_image_grid(images[0][suspects["index"].to_numpy()], titles=suspect_titles(suspects),
                          image_shape=images[1], ncols=min(8, n_show))
    share = f", {suspects['mislabelled'].mean():.0%} mislabelled" if "mislabelled" in suspects else ""
    fig.suptitle(f"the {len(suspects)} most suspect examples by {score}{share}", fontsize="small")
    save_figure(fig, figure_name(f"{STEM}-suspects", **key), out_dir);

# %% [markdown]
# ## Key numbers
#
# Written as a small JSON file (`grlib.write_metrics`).

# %%
metrics = {
    "parameters": {"run_dir": run_dir, "dataset": dataset, "n_train": n_train, "noise": noise,
                   "noise_rate": noise_rate, "loss": loss, "lam": lam, "beta": beta, "protocol": protocol,
                   "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                   "threshold_fraction": threshold_fraction, "threshold_class": threshold_class,
                   "threshold_percentile": threshold_percentile, "score": score, "first_k": first_k},
    "source": "trained" if trained else "run_dir",
    "n_examples": int(result.n_train), "n_scored": int(real.sum()), "has_mask": known,
    "has_images": images is not None, "n_threshold_samples": 0 if threshold_mask is None else int(threshold_mask.sum()),
    "score": score, "n_flagged": int(threshold.count), "flag_method": threshold.method,
    "cut": threshold.value, "cut_percentile": threshold.percentile,
    "final_acc": summary["final_acc"],
}
if known:
    metrics["true_noise_rate"] = float(is_noisy[real].mean())
    metrics["per_score"] = {k: {m: float(v) for m, v in row.items()} for k, row in quality.iterrows()}
    metrics.update({f"{m}": float(quality.loc[score, m]) for m in ("roc_auc", "average_precision", "precision_at_rate",
                                                                   "flagged_over_true", "flag_precision",
                                                                   "flag_recall")})
metrics["grlib_version"] = grlib.__version__
grlib.write_metrics(metrics, metrics_file)
pd.Series({k: v for k, v in metrics.items() if not isinstance(v, dict)})

# %% [markdown]
# ## Check: what holds for this run
#
# For any run: every scored example is ranked once, threshold samples never;
# the flags are the top of the ranking, as many as the count says, and lie on
# the suspect side of the cut; the ranking runs from the least to the most
# clean-looking; data-map values lie in their ranges. With the noise mask:
# every AUC lies in [0, 1]. Trained here with label noise: the chosen score
# separates far better than chance (AUC above 0.75) and the flagged set holds
# more mislabelled examples than a random one (precision above the noise rate).

# %%
ranked = frame[frame["rank"] > 0].sort_values("rank")
scored = np.flatnonzero(real & ~np.isnan(frame["label_score"].to_numpy()))  # seen in the window, not a threshold sample
assert sorted(ranked.index) == scored.tolist(), "the ranking is not the scored examples, each once"
assert ranked["rank"].tolist() == list(range(1, len(scored) + 1)), "ranks are not 1, 2, ..."
assert threshold_mask is None or not frame["rank"].to_numpy()[threshold_mask].any(), "a threshold sample was ranked"
assert ranked["label_score"].is_monotonic_increasing, "the ranking is not from the least clean-looking up"
assert set(ranked.index[:threshold.count]) == set(flagged.tolist()), "the flags are not the top of the ranking"
assert len(flagged) == threshold.count == metrics["n_flagged"]
if len(flagged) and np.isfinite(threshold.value):
    suspect_side = frame[score].to_numpy()[flagged]
    assert (suspect_side <= threshold.value + 1e-12).all() if S.SCORES[score].direction == S.CLEAN_HIGH \
        else (suspect_side >= threshold.value - 1e-12).all(), "a flagged example lies on the clean side of the cut"
conf_values = frame["confidence"].dropna().to_numpy()
var_values = frame["variability"].dropna().to_numpy()
assert ((conf_values >= 0) & (conf_values <= 1)).all() and ((var_values >= 0) & (var_values <= 0.5 + 1e-12)).all()
if known:
    aucs = quality["roc_auc"].to_numpy(dtype=float)
    assert ((aucs[np.isfinite(aucs)] >= 0) & (aucs[np.isfinite(aucs)] <= 1)).all(), "an AUC outside [0, 1]"
if trained and known and noise != "none" and noise_rate > 0:
    auc = metrics["roc_auc"]
    assert auc > 0.75, f"{score} separates clean from mislabelled with AUC {auc:.3f} only, after {epochs} epochs"
    if len(flagged):
        assert metrics["flag_precision"] > metrics["true_noise_rate"], (
            f"the flagged set is no richer in mislabelled examples ({metrics['flag_precision']:.2f}) than the data "
            f"({metrics['true_noise_rate']:.2f})")
    print(f"{score}: AUC {auc:.3f}, {len(flagged)} flagged (true count {int(is_noisy.sum())}), "
          f"precision {metrics['flag_precision']:.2f}")
else:
    print(f"checked a {'saved' if not trained else 'clean'} run of {result.n_train} examples: {len(flagged)} flagged")
