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
# # 01 · Emphasis density: which examples does a loss push on?
#
# Every loss weights its examples. The gradient of a loss with respect to the
# logits of example `i` has an L1 magnitude that depends (almost) only on
# `p_i`, the probability the model gives to the example's **labelled** class.
# That magnitude is the example's *emphasis*: how hard training pushes on it.
#
# | loss | emphasis `‖dL/dz_i‖_1` | emphasis mode (peak) |
# |---|---|---|
# | CE | `2 (1 - p)` | `p = 0`: the hardest examples |
# | MAE | `4 p (1 - p)` | `p = 0.5` |
# | MSE | `≥ 4 p (1 - p)^2 (1 + 1/(C-1))` (depends on all of `p`, derived below) | `p = 1/3` |
# | GCE(q) | `2 p^q (1 - p)` | `p = q / (1 + q)` |
# | GR(λ, β) | `exp(β p^λ (1 - p))`, normalised over the batch | `p = λ / (1 + λ)` |
#
# **What to look for.** CE puts the most weight on the examples the model finds
# hardest (`p → 0`). Under label noise those are mostly the *mislabelled* ones:
# the model is pushed hardest to memorise exactly the labels that are wrong.
# GR makes the emphasis an explicit, tunable curve: `λ` moves its peak (the
# emphasis mode) to easier examples, `β` sets how selective it is (the spread).
#
# The curves are compared as densities over `p` (each integrates to 1 over
# `[0, 1]`, the paper's "derivative normalisation", `grlib.normalise_over_p`),
# so a loss with a larger gradient scale does not look more selective.
# The second half checks the analytic curves against the weights a real model
# gives a real batch, and derives the emphasis of MSE, which is not a function
# of `p` alone.

# %% tags=["parameters"]
dataset: str = "digits"  # digits | moons | fashion_mnist (fashion_mnist needs the cache: `grlib data fetch`)
n_train: int = 0  # stratified training subset size; 0 keeps the whole training split
noise: str = "symmetric"  # none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in [0, 1)
epochs: int = 20  # epochs of the brief CE run whose batch shows real weights
seed: int = 0  # label noise, initialisation, shuffling and the batch drawn
lam: float = 1.0  # GR emphasis mode of the reference curve: weights peak at p of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread of the reference curve: 0 weights every example equally
lams: list = [0.0, 0.5, 1.0, 2.0, 4.0]  # GR emphasis modes compared (at spread beta), each non-negative
betas: list = [0.0, 2.0, 4.0, 8.0, 12.0, 20.0]  # GR emphasis spreads compared (at mode lam), each non-negative
gce_qs: list = [0.3, 0.7, 1.0]  # GCE exponents compared, each in (0, 1]
batch_size: int = 256  # examples in the real batch, at least 2
grid_points: int = 2001  # points of the p grid on [0, 1]; modes are checked to within one grid step
figures_dir: str = ""  # where the figures go (PNG and PDF); empty: the repository's figures/
metrics_path: str = ""  # JSON file for the key numbers; empty: <figures_dir>/<figure stem>.json
progress: bool = False  # a progress bar over epochs

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import grlib
from grlib.figures import default_figures_dir, figure_name, save_figure, use_style
from grlib.plotting import method_label, plot_emphasis_curves, plot_empirical_emphasis, plot_group_histogram
from grlib.views import relative_weights

use_style()

STEM = "01_emphasis_density"
for _name, _values in (("lams", lams), ("betas", betas), ("gce_qs", gce_qs)):
    if not isinstance(_values, (list, tuple)) or not _values:
        raise ValueError(f"{_name} must be a non-empty list of numbers, got {_values!r}")
if not isinstance(grid_points, int) or grid_points < 3:
    raise ValueError(f"grid_points={grid_points!r} must be an integer >= 3")
if not isinstance(batch_size, int) or batch_size < 2:
    raise ValueError(f"batch_size={batch_size!r} must be an integer >= 2")
if not isinstance(n_train, int) or n_train < 0:
    raise ValueError(f"n_train={n_train!r} must be an integer >= 0 (0 = the whole training split)")

curve_key = {"lam": lam, "beta": beta}  # the analytic figures depend on these only
data_key = {"dataset": dataset, "noise": noise, "noise_rate": noise_rate, "epochs": epochs, "seed": seed,
            "lam": lam, "beta": beta, **({"n_train": n_train} if n_train else {})}
out_dir = Path(figures_dir) if figures_dir else default_figures_dir()  # not the kernel's working directory
metrics_file = Path(metrics_path) if metrics_path else out_dir / f"{figure_name(STEM, **data_key)}.json"
p_grid = torch.linspace(0.0, 1.0, grid_points, dtype=torch.float64)
step = 1.0 / (grid_points - 1)
gr_ref = ("gr", {"lam": lam, "beta": beta})

# %% [markdown]
# ## 1. The baseline losses and GR, as densities over `p`
#
# Left: each curve integrates to 1 over `p`. Right: the same curves scaled to
# peak at 1, to compare shapes. Dotted lines mark each curve's emphasis mode.
# CE's density is largest at `p = 0`; MAE is symmetric about 0.5; GCE slides
# from CE-like (small `q`) to MAE-like (`q = 1`); MSE peaks at 1/3.

# %%
probe = grlib.load_dataset(dataset, n_train=n_train or None)  # only for the number of classes
num_classes = probe.num_classes
baselines = ([("ce", {}), ("mae", {}), ("mse", {"num_classes": num_classes})]
             + [("gce", {"q": float(q)}) for q in gce_qs] + [gr_ref])
fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
for ax, norm in zip(axes, ("p", "max")):
    plot_emphasis_curves(ax, methods=[m for m in baselines if m[0] != "mae"], p=p_grid, normalise=norm)
    # MAE dashed on top: as a density it coincides with GCE(q=1) (GCE with q=1 is MAE / 2)
    plot_emphasis_curves(ax, methods=[("mae", {})], p=p_grid, normalise=norm, ls="--", lw=2.2)
    ax.get_legend().remove()
axes[0].set_ylim(0, None)
axes[0].set_title("emphasis density over p (each integrates to 1)")
axes[1].set_title("the same curves, scaled to peak at 1")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4)
save_figure(fig, figure_name(f"{STEM}-baselines", **curve_key), out_dir);

# %% [markdown]
# ## 2. GR: `λ` moves the emphasis mode, `β` sets the spread
#
# Left: GR at spread `β` for several `λ`; the peak sits at `λ / (1 + λ)`:
# `λ = 0` behaves like CE (hardest examples first), `λ = 1` peaks at 0.5 like
# MAE, larger `λ` focuses on easier examples (the paper: the noisier the labels,
# the easier the examples GR should focus on). Right: GR at mode `λ` for several
# `β`; `β = 0` is flat (every example weighted equally), larger `β` concentrates
# the emphasis around the mode. Each panel has its own y axis: `λ = 0` peaks
# far higher than the rest, and would flatten the `β` curves if they shared one.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_emphasis_curves(axes[0], methods=[("gr", {"lam": float(v), "beta": beta}) for v in lams], p=p_grid)
plot_emphasis_curves(axes[1], methods=[("gr", {"lam": lam, "beta": float(b)}) for b in betas], p=p_grid)
axes[0].set_title(f"emphasis mode: lam varies (beta = {beta:g})")
axes[1].set_title(f"emphasis spread: beta varies (lam = {lam:g})")
save_figure(fig, figure_name(f"{STEM}-gr-grid", **curve_key), out_dir);

# %% [markdown]
# The numbers behind the picture, over the whole grid `lams × betas`: where
# each curve actually peaks on the grid (against `λ / (1 + λ)`), and its spread,
# the standard deviation of `p` under the normalised density (uniform: 0.289).

# %%
rows = []
for lv in lams:
    for bv in betas:
        dens = grlib.normalise_over_p(grlib.emphasis_curve("gr", p_grid, lam=float(lv), beta=float(bv)), p_grid)
        mean = torch.trapezoid(dens * p_grid, p_grid)
        std = torch.sqrt(torch.trapezoid(dens * (p_grid - mean) ** 2, p_grid))
        rows.append({"lam": float(lv), "beta": float(bv), "expected_mode": grlib.gr_mode(float(lv)),
                     "grid_argmax": float(p_grid[int(torch.argmax(dens))]) if bv > 0 else float("nan"),
                     "spread_std": float(std)})
gr_table = pd.DataFrame(rows)
gr_table["mode_error"] = (gr_table["grid_argmax"] - gr_table["expected_mode"]).abs()
gr_table.pivot(index="lam", columns="beta", values="spread_std").round(3)

# %%
gr_table[gr_table["beta"] > 0].pivot(index="lam", columns="beta", values="grid_argmax").round(4)

# %% [markdown]
# ## 3. Real weights in a real batch
#
# A model trained briefly with CE on noisy labels gives every training example a
# `p_i`. Below, one random batch of the training set is passed through it, and
# each loss's own `details(logits, targets)` gives the weight it would put on
# each example (emphasis normalised over the batch, times the batch size, so 1
# is the batch average: the unit of every weight figure in grlib). The dashed
# line is the analytic curve for the same batch; the points must lie on it
# (MSE excepted: its emphasis depends on the whole probability vector, section
# 4). Bottom: the distribution of those weights, clean vs mislabelled, as
# counts per log-spaced bin (each panel its own range).

# %%
config = grlib.RunConfig(dataset=dataset, n_train=n_train or None, noise=noise, noise_rate=noise_rate, loss="ce",
                         loss_params={}, epochs=epochs, seed=seed)
data, noisy, _ = grlib.prepare(config)
result = grlib.train(config, data=data, noisy=noisy, progress=progress)
if batch_size > result.n_train:
    raise ValueError(f"batch_size={batch_size} exceeds the {result.n_train} training examples")
summary = result.summary()
print(f"brief CE run: {epochs} epochs, test accuracy {summary['final_acc']:.3f}, "
      f"mislabelled examples fitted {summary['noisy_fit']:.0%}")

rng = np.random.default_rng(seed)
batch = np.sort(rng.choice(result.n_train, size=batch_size, replace=False))
with torch.no_grad():
    model = result.model.eval()
    all_logits = model(torch.as_tensor(data.x_train)).double()
    all_targets = torch.as_tensor(noisy.labels)
logits, targets = all_logits[batch], all_targets[batch]
batch_noisy = noisy.is_noisy[batch]

methods = [("ce", {}), ("gce", {"q": float(gce_qs[len(gce_qs) // 2])}), ("mae", {}),
           ("mse", {"num_classes": num_classes}), gr_ref]
outputs = {}
for name, params in methods:
    loss_params = {k: v for k, v in params.items() if k != "num_classes"}
    outputs[method_label(name, params)] = grlib.get_loss(name, **loss_params).details(logits, targets)

fig, axes = plt.subplots(2, len(methods), figsize=(3.3 * len(methods), 6.4))
for k, ((name, params), (label, out)) in enumerate(zip(methods, outputs.items())):
    rel = relative_weights(out.weight.numpy())  # weight x batch size: 1 = the batch average
    ax = plot_empirical_emphasis(out.p, rel, name=name, params=params, curve_scale="batch_mean", ax=axes[0, k],
                                 is_noisy=batch_noisy, s=10)
    ax.set_title(label)
    ax.set_ylabel("weight x batch size" if k == 0 else "")
    if k:
        ax.get_legend().remove()
    plot_group_histogram(rel, batch_noisy, bins=30, log=True, ax=axes[1, k], xlabel="weight x batch size")
    if k:
        axes[1, k].set_ylabel("")
fig.suptitle(f"one batch of {batch_size} from {dataset} ({noise} noise {noise_rate:.0%}), "
             f"model after {epochs} epochs of CE")
save_figure(fig, figure_name(f"{STEM}-batch", **data_key), out_dir);

# %% [markdown]
# How much of each loss's total weight in this batch goes to mislabelled
# examples (their share of the batch is printed first). CE gives them far
# more than their share; a GR curve whose mode sits away from `p ≈ 0` gives
# them less.

# %%
noisy_share = float(batch_noisy.mean())
weight_share = {label: float(out.weight[torch.as_tensor(batch_noisy)].sum()) for label, out in outputs.items()}
print(f"mislabelled share of the batch: {noisy_share:.2f}")
pd.Series(weight_share, name="share of the batch's weight on mislabelled examples").round(3)

# %% [markdown]
# ## 4. MSE: the emphasis depends on the whole probability vector
#
# For `L = ‖onehot(y) - p‖²` the derivative with respect to `p` is
# `a = 2 (p - onehot(y))`, and through the softmax the logit gradient is
# `g_j = p_j (a_j - ⟨p, a⟩)`. With `S = Σ_j p_j²` and `R = Σ_{j≠y} p_j²`:
#
# * `g_y = -2 p_y (1 - 2 p_y + S) = -2 p_y ((1 - p_y)² + R)`.
# * The components of a softmax gradient sum to zero, so the other components
#   together have L1 norm at least `|g_y|`, and `‖g‖_1 ≥ 2 |g_y| = 4 p_y ((1 - p_y)² + R)`,
#   with equality when no other component is negative.
# * For fixed `p_y`, `R` is smallest when the remaining mass `1 - p_y` is spread
#   evenly over the `C - 1` other classes (`R = (1 - p_y)² / (C - 1)`, Cauchy–Schwarz):
#   **`‖g‖_1 ≥ 4 p_y (1 - p_y)² (1 + 1/(C - 1))`**, which is `grlib.mse_emphasis(p, C)`,
#   the "p_y-only" curve. It is a lower envelope, reached with an even spread.
# * When the remaining mass sits on one rival class, `R = (1 - p_y)²` and
#   `‖g‖_1 = 8 p_y (1 - p_y)²` (= `mse_emphasis(p, 2)`, the two-class case);
#   unequal spreads over several classes can exceed it.
#
# Below, the exact magnitude (`get_loss("mse").details(...).magnitude`) of every
# training example under the trained model, against both curves.

# %%
mse_out = grlib.get_loss("mse").details(all_logits, all_targets)
mse_p, mse_mag = mse_out.p.numpy(), mse_out.magnitude.numpy()
lower = grlib.mse_emphasis(mse_out.p, num_classes=num_classes).numpy()
bound_ratio = mse_mag / np.maximum(lower, 1e-300)
fig, ax = plt.subplots(figsize=(6.5, 4.2))
plot_empirical_emphasis(mse_p, mse_mag, name="mse", params={"num_classes": num_classes}, curve_scale=1.0, ax=ax,
                        is_noisy=noisy.is_noisy, s=6)
ax.plot(p_grid.numpy(), grlib.mse_emphasis(p_grid, num_classes=2).numpy(), color="0.3", lw=1.2, ls="-.",
        label="one rival class: 8 p (1-p)^2")
for line in ax.lines:
    if line.get_gid() == "analytic":
        line.set_label("p_y-only curve, even spread: the lower bound")
ax.set_ylabel("MSE logit-gradient L1 norm")
ax.set_title(f"MSE emphasis of all {result.n_train} training examples ({num_classes} classes)")
ax.legend(loc="upper right")
save_figure(fig, figure_name(f"{STEM}-mse", **data_key), out_dir);
print(f"magnitude / p_y-only curve: min {bound_ratio[lower > 1e-12].min():.4f}, "
      f"median {np.median(bound_ratio[lower > 1e-12]):.3f}, max {bound_ratio[lower > 1e-12].max():.3f}")

# %% [markdown]
# Every point sits on or above the p_y-only curve, as derived. Points near it
# are examples whose remaining probability is spread fairly evenly. Many
# mislabelled examples with small `p_y` lie far above it, even above the
# one-rival curve: the model puts most of their mass on the true class and a
# little on the others, and pushing those small components *down* adds
# magnitude. So MSE pushes harder on confidently "wrong" (often mislabelled)
# examples than its p_y-only curve suggests; a p_y-only curve is only the floor.

# %% [markdown]
# ## Key numbers
#
# Written as a small JSON file (`grlib.write_metrics`) for a batch runner to
# collect. (Papermill's companion *scrapbook* would do this inside the notebook,
# but it is unmaintained, so grlib writes a plain JSON sidecar instead.)

# %%
gr_checked = gr_table[gr_table["beta"] > 0]
max_mode_error = float(gr_checked["mode_error"].max())
gr_weights = outputs[method_label(*gr_ref)]
analytic_gr = grlib.normalise_over_batch(grlib.gr_emphasis(gr_weights.p, lam=lam, beta=beta))
metrics = {
    "parameters": {"dataset": dataset, "n_train": n_train, "noise": noise, "noise_rate": noise_rate,
                   "epochs": epochs, "seed": seed, "lam": lam, "beta": beta, "lams": lams, "betas": betas,
                   "gce_qs": gce_qs, "batch_size": batch_size, "grid_points": grid_points},
    "gr_modes": gr_checked[["lam", "beta", "expected_mode", "grid_argmax"]].to_dict("records"),
    "max_mode_error": max_mode_error,
    "grid_step": step,
    "brief_run_final_acc": summary["final_acc"],
    "brief_run_noisy_fit": summary["noisy_fit"],
    "batch_noisy_share": noisy_share,
    "batch_weight_share_noisy": weight_share,
    "gr_weight_max_abs_error": float((gr_weights.weight - analytic_gr).abs().max()),
    "mse_min_ratio_to_lower_bound": float(bound_ratio[lower > 1e-12].min()),
    "grlib_version": grlib.__version__,
}
grlib.write_metrics(metrics, metrics_file)
{k: v for k, v in metrics.items() if k not in ("parameters", "gr_modes")}

# %% [markdown]
# ## Check: what this notebook exists to show
#
# 1. Every GR curve (`β > 0`) peaks at `λ / (1 + λ)`, to within one grid step.
# 2. For each `λ`, a larger `β` never widens the emphasis (spread falls with `β`).
# 3. The weights GR gives a real batch are its analytic curve, normalised over the batch.
# 4. The exact MSE emphasis never falls below the p_y-only curve (the lower envelope derived above).
# 5. In the real batch, CE puts a larger share of its weight on mislabelled
#    examples than GR(`λ`, `β`) does (when the batch has mislabelled examples and `λ > 0`).

# %%
bad = gr_checked[gr_checked["mode_error"] > step + 1e-12]
assert bad.empty, f"GR curves peak away from lam/(1+lam) by more than one grid step ({step:g}):\n{bad}"
for lv, grp in gr_table.groupby("lam"):
    spreads = grp.sort_values("beta")["spread_std"].to_numpy()
    assert np.all(np.diff(spreads) <= 1e-12), f"lam={lv}: the spread does not fall as beta grows: {spreads}"
assert metrics["gr_weight_max_abs_error"] < 1e-9, (
    f"GR's batch weights differ from its analytic EDF by {metrics['gr_weight_max_abs_error']:.2e}")
assert metrics["mse_min_ratio_to_lower_bound"] >= 1 - 1e-6, (
    f"an MSE magnitude fell below the derived lower bound (ratio {metrics['mse_min_ratio_to_lower_bound']:.6f})")
if batch_noisy.any() and (~batch_noisy).any() and lam > 0:
    ce_share, gr_share = weight_share["ce"], weight_share[method_label(*gr_ref)]
    assert ce_share > gr_share, (f"CE put {ce_share:.2f} of the batch weight on mislabelled examples, "
                                 f"GR {gr_share:.2f}: expected CE > GR")
print("all checks passed")
