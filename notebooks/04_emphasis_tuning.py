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
# # 04 Emphasis tuning
#
# Move GR's `lam` (emphasis mode) and `beta` (emphasis spread), or pick a baseline loss, and see at once
# which examples would be emphasised:
#
# * **left**: the emphasis of the selected loss as a density over `p` (the probability of the labelled
#   class), its mode `p*` marked (GR: `p* = lam / (1 + lam)`), with CE, MAE, GCE and GR as dashed
#   reference lines; the ticks at the bottom are the examples of a fixed batch (green: clean, red:
#   mislabelled), as a model trained 5 epochs with CE on the noisy labels sees them;
# * **right**: how the selected loss weights that batch, clean vs mislabelled.
#
# **Train** runs a short training on `digits` with the chosen settings and shows test accuracy per epoch,
# memorisation (share of mislabelled examples fitted) and the weight histogram, next to the previous run.
#
# All the logic lives in `grlib.tuning` (tested there); this notebook only builds the app.
# Open it as an app with `grlib tune` (Voila). A headless run (`headless=True`, e.g. through papermill)
# trains once and saves the figures and a JSON of the key numbers.

# %% tags=["parameters"]
lam: float = 1.0  # GR emphasis mode, in [0, 10]: the weight peaks at p* of lam / (1 + lam)
beta: float = 12.0  # GR emphasis spread, in [0, 30]: 0 gives every example the same weight
loss: str = "gr"  # loss selected at start: ce | mae | gce | gr
q: float = 0.7  # GCE's q, in [0.05, 1]: its emphasis peaks at q / (1 + q)
noise: str = "symmetric"  # label noise on digits: none | symmetric | pair
noise_rate: float = 0.4  # share of corrupted training labels, in [0, 0.8]
epochs: int = 20  # epochs of a "Train" run
seed: int = 0  # seed of the noise, the initialisation and the shuffling
figures_dir: str = ""  # where a headless run saves its figures (PNG and PDF); empty: the repository's figures/
metrics_path: str = ""  # JSON of the key numbers of a headless run; empty: <figures_dir>/<figure stem>.json
headless: bool = False  # True: train once, save figures and metrics; False: only build the app

# %%
from pathlib import Path

import numpy as np
from IPython.display import display

import grlib
import grlib.figures
from grlib.tuning import EmphasisTuner, curve_data

tuner = EmphasisTuner(lam=lam, beta=beta, loss=loss, q=q, noise=noise, noise_rate=noise_rate, epochs=epochs,
                      seed=seed)
display(tuner.widget)

# %% [markdown]
# ## Headless run
# With `headless=True` the notebook presses "Train" once and saves both views and the key numbers.

# %%
STEM = "04_emphasis_tuning"
out_dir = Path(figures_dir) if figures_dir else grlib.figures.default_figures_dir()
if headless:
    result = tuner.run_training()
    summary = result.summary()
    # every setting the figures depend on is in their names (the baseline curves use lam, beta and q too)
    fig_params = dict(loss=loss, lam=lam, beta=beta, q=q, epochs=epochs, noise=noise, noise_rate=noise_rate,
                      seed=seed)
    saved = grlib.figures.save_figure(
        tuner.curve_figure, grlib.figures.figure_name(STEM, view="emphasis", **fig_params), out_dir)
    saved += grlib.figures.save_figure(
        tuner.train_figure, grlib.figures.figure_name(STEM, view="training", **fig_params), out_dir)
    metrics = {
        "settings": tuner.settings.to_dict(),
        "mode": tuner.curve.mode,
        "curve_peak": tuner.curve.peak,
        "batch_noisy_share": tuner.batch.noisy_share,
        "batch_noisy_weight_share": tuner.batch.noisy_weight_share,
        "final_acc": summary["final_acc"],
        "best_acc": summary["best_acc"],
        "epoch_of_best": summary["epoch_of_best"],
        "noisy_fit": summary["noisy_fit"],
        "test_acc": result.history["test_acc"][: result.epochs_completed],
        "figures": [p.name for p in saved],
    }
    default_json = out_dir / f"{grlib.figures.figure_name(STEM, **fig_params)}.json"
    metrics_file = grlib.write_metrics(metrics, metrics_path or default_json)
    print(tuner.status_text)
    print("saved:", ", ".join(p.name for p in saved), "and", metrics_file)

# %% [markdown]
# ## Check
# The GR curve peaks at its emphasis mode `lam / (1 + lam)` (it is flat when `beta = 0`); a headless run
# trained to a finite accuracy well above chance (1/10 on `digits`).

# %%
gr_curve = curve_data("gr", lam=lam, beta=beta, q=q)
step = float(gr_curve.p[1] - gr_curve.p[0])
if beta > 0:
    assert abs(gr_curve.peak - lam / (1 + lam)) <= step, (gr_curve.peak, lam / (1 + lam))
else:
    assert gr_curve.flat
expected_mode = {"ce": 0.0, "mae": 0.5, "gce": q / (1 + q), "gr": lam / (1 + lam)}[loss]  # method.md
assert abs(tuner.curve.mode - expected_mode) < 1e-12, (tuner.curve.mode, expected_mode)
if headless:
    acc = result.history["test_acc"][: result.epochs_completed]
    assert np.isfinite(acc).all() and acc.size == epochs, acc
    assert acc.max() > 2 / 10, f"best test accuracy {acc.max():.3f} is not above chance (0.1)"
