"""Widget-driven emphasis tuning: move GR's ``lam`` and ``beta`` and see which examples it would emphasise.

The widget app (:class:`EmphasisTuner`) is a thin layer over pure functions that
the headless notebooks and the tests call directly:

* :func:`curve_data`: the emphasis of the selected loss and of the baselines
  over a grid of ``p`` (each a density over ``p``, :func:`grlib.emphasis_curve`
  and :func:`grlib.normalise_over_p`), with the emphasis mode
  (:func:`grlib.emphasis_mode`) and the grid's argmax.
* :func:`reference_batch`: a fixed batch of ``digits`` training examples and the
  logits of a model trained briefly with CE on noisy labels (the model "as it
  is early in training", when clean examples already have a high ``p`` and
  mislabelled ones a low one).
* :func:`batch_weights`: the weight each example of that batch would get under
  a loss, from ``get_loss(...).details(logits, labels)`` (normalised over the
  batch, sums to 1; higher means emphasised more), with the clean/mislabelled
  mask next to it.

``p`` is always the probability the model gives to the *labelled* (possibly
wrong) class, in [0, 1].  GR's emphasis peaks at ``p* = lam / (1 + lam)``
(method.md, "The emphasis density function of GR").

``grlib tune`` (:func:`register_cli`) serves the tuning notebook
``notebooks/04_emphasis_tuning.ipynb`` with Voila on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ._checks import check_choice, check_int, check_real
from .config import RunConfig
from .data import Dataset, load_dataset
from .emphasis import emphasis_curve, emphasis_mode, normalise_over_p
from .losses import get_loss
from .noise import NOISE_KINDS
from .results import RunResult
from .train import train

__all__ = [
    "TUNER_LOSSES", "RANGES", "TunerSettings", "CurveData", "ReferenceBatch", "BatchWeights", "curve_data",
    "reference_batch", "batch_weights", "draw_emphasis", "draw_runs", "EmphasisTuner", "TUNING_NOTEBOOK",
    "tuning_notebook", "voila_command", "free_port", "register_cli", "main",
]

#: Losses the tuner offers (name -> button label).
TUNER_LOSSES = {"ce": "CE", "mae": "MAE", "gce": "GCE", "gr": "GR"}

#: Ranges of the controls: ``name -> (min, max, step)``.  The sliders clamp to
#: them; the tuner's methods refuse values outside them with a ValueError.
RANGES = {
    "lam": (0.0, 10.0, 0.1),
    "beta": (0.0, 30.0, 0.5),
    "q": (0.05, 1.0, 0.05),
    "noise_rate": (0.0, 0.8, 0.05),
    "epochs": (1, 200, 1),
}

#: The notebook that ``grlib tune`` serves (in the repository's ``notebooks/``).
TUNING_NOTEBOOK = "04_emphasis_tuning.ipynb"

_GRID_POINTS = 1001


# -- settings ---------------------------------------------------------------------
@dataclass(frozen=True)
class TunerSettings:
    """The values of the tuner's controls, validated against :data:`RANGES`.

    lam:        GR emphasis mode, in [0, 10]; the EDF peaks at ``lam / (1 + lam)``.
    beta:       GR emphasis spread, in [0, 30]; 0 gives every example the same weight.
    loss:       ``ce``, ``mae``, ``gce`` or ``gr``.
    q:          GCE's exponent, in [0.05, 1]; mode ``q / (1 + q)``.
    noise:      ``none``, ``symmetric`` or ``pair`` label noise on ``digits``.
    noise_rate: share of corrupted training labels, in [0, 0.8].
    epochs:     epochs of the "Train" run, in [1, 200].
    seed:       noise, initialisation and shuffling seed (>= 0).
    """

    lam: float = 1.0
    beta: float = 8.0
    loss: str = "gr"
    q: float = 0.7
    noise: str = "symmetric"
    noise_rate: float = 0.4
    epochs: int = 20
    seed: int = 0

    def __post_init__(self):
        for name in ("lam", "beta", "q", "noise_rate"):
            lo, hi, _ = RANGES[name]
            object.__setattr__(self, name, check_real(name, getattr(self, name), low=lo, high=hi))
        check_choice("loss", self.loss, TUNER_LOSSES)
        check_choice("noise", self.noise, NOISE_KINDS)
        lo, hi, _ = RANGES["epochs"]
        object.__setattr__(self, "epochs", check_int("epochs", self.epochs, low=lo, high=hi))
        object.__setattr__(self, "seed", check_int("seed", self.seed, low=0))

    @property
    def loss_params(self) -> dict:
        """The selected loss's parameters for :func:`grlib.get_loss` / :func:`grlib.emphasis_curve`."""
        return _loss_params(self.loss, self)

    @property
    def label(self) -> str:
        """e.g. ``gr(lam=1, beta=8)``."""
        from .plotting import method_label

        return method_label(self.loss, self.loss_params)

    @property
    def mode(self) -> float:
        """The selected loss's emphasis mode ``p*`` (:func:`grlib.emphasis_mode`)."""
        return emphasis_mode(self.loss, **self.loss_params)

    def run_config(self, **overrides) -> RunConfig:
        """The :class:`RunConfig` of the "Train" run: ``digits``, the chosen noise, loss and epochs."""
        cfg = RunConfig(dataset="digits", noise=self.noise, noise_rate=self.noise_rate, loss=self.loss,
                        loss_params=self.loss_params, epochs=self.epochs, seed=self.seed, record=True,
                        eval_train=False)
        return cfg.replace(**overrides) if overrides else cfg

    def replace(self, **changes) -> "TunerSettings":
        """A copy with ``changes`` (validated); unknown names raise TypeError listing the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise TypeError(f"unknown tuner setting(s) {unknown}; allowed: {allowed}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _loss_params(loss: str, s) -> dict:
    if loss == "gr":
        return {"lam": float(s.lam), "beta": float(s.beta)}
    if loss == "gce":
        return {"q": float(s.q)}
    return {}


# -- pure functions -------------------------------------------------------------------
@dataclass(frozen=True)
class CurveData:
    """Emphasis curves over ``p``, each normalised to a density (integrates to 1 over [0, 1]).

    p:         the grid, float64 ``[G]`` from 0 to 1.
    curves:    ``name -> float64 [G]`` for ``ce``, ``mae``, ``gce`` and ``gr`` (at the given parameters).
    params:    ``name -> the parameters`` each curve was drawn with.
    selected:  the selected loss's name (a key of ``curves``).
    mode:      the selected loss's emphasis mode ``p*`` (theory, :func:`grlib.emphasis_mode`).
    peak:      the grid point where the selected curve is largest (``mode`` up to the grid step,
               except for flat curves: GR with ``beta = 0``).
    flat:      True when the selected curve is constant (GR with ``beta = 0``: uniform weights).
    """

    p: np.ndarray
    curves: dict
    params: dict
    selected: str
    mode: float
    peak: float
    flat: bool

    @property
    def values(self) -> np.ndarray:
        """The selected loss's curve."""
        return self.curves[self.selected]


def curve_data(loss: str = "gr", *, lam: float = 1.0, beta: float = 8.0, q: float = 0.7,
               points: int = _GRID_POINTS) -> CurveData:
    """Emphasis densities over ``p`` of CE, MAE, GCE(q) and GR(lam, beta), and the selected loss's mode.

    Each curve is the loss's logit-gradient magnitude as a function of ``p``
    (GR: its EDF ``exp(beta p^lam (1-p))``), scaled to integrate to 1 over
    ``p`` in [0, 1] (the paper's derivative normalisation), so curves of
    different losses compare as densities.
    """
    s = TunerSettings(lam=lam, beta=beta, loss=loss, q=q)
    points = check_int("points", points, low=3)
    grid = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    curves, params = {}, {}
    for name in TUNER_LOSSES:
        params[name] = _loss_params(name, s)
        values = emphasis_curve(name, grid, **params[name]).to(torch.float64)
        curves[name] = normalise_over_p(values, grid).numpy()
    sel = curves[s.loss]
    flat = bool(np.ptp(sel) <= 1e-12 * max(1.0, float(np.abs(sel).max())))
    return CurveData(p=grid.numpy(), curves=curves, params=params, selected=s.loss, mode=s.mode,
                     peak=float(grid[int(np.argmax(sel))]), flat=flat)


@dataclass(frozen=True)
class ReferenceBatch:
    """A fixed batch of training examples as seen by a model trained on noisy labels.

    indices:     int64 ``[B]``, positions in the ``digits`` training split (the same for every noise setting
                 with one seed).
    logits:      float32 ``[B, C]``, the reference model's logits (eval mode, no gradient).
    labels:      int64 ``[B]``, the given (possibly corrupted) labels.
    true_labels: int64 ``[B]``.
    is_noisy:    bool ``[B]``, True where the given label is wrong.
    noise, noise_rate, seed, epochs: how the reference model was made (CE, SGD, ``epochs`` epochs).
    test_acc:    the reference model's test accuracy.
    """

    indices: np.ndarray
    logits: torch.Tensor
    labels: torch.Tensor
    true_labels: np.ndarray
    is_noisy: np.ndarray
    noise: str
    noise_rate: float
    seed: int
    epochs: int
    test_acc: float


def reference_batch(noise: str = "symmetric", noise_rate: float = 0.4, *, seed: int = 0, epochs: int = 5,
                    batch_size: int = 256, data: Dataset | None = None) -> ReferenceBatch:
    """Train CE briefly on noisy ``digits`` labels and return a fixed batch's logits and labels.

    The batch (``batch_size`` training examples drawn with ``seed``) is the
    same for every noise setting; only the labels and the model change.
    A few epochs (default 5, well under a second on a CPU) give a model that
    fits the clean examples but has not yet memorised the mislabelled ones,
    which is when the choice of emphasis matters most.
    """
    check_choice("noise", noise, NOISE_KINDS)
    lo, hi, _ = RANGES["noise_rate"]
    noise_rate = check_real("noise_rate", noise_rate, low=lo, high=hi)
    seed = check_int("seed", seed, low=0)
    epochs = check_int("epochs", epochs, low=1)
    batch_size = check_int("batch_size", batch_size, low=2)
    if data is None:
        data = load_dataset("digits")
    cfg = RunConfig(dataset="digits", noise=noise, noise_rate=noise_rate, loss="ce", loss_params={}, epochs=epochs,
                    seed=seed, record=False, eval_train=False)
    res = train(cfg, data=data, progress=False)
    n = len(res.y_given)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(batch_size, n), replace=False))
    model = res.model
    device = next(model.parameters()).device
    with torch.no_grad():
        model.eval()
        logits = model(torch.as_tensor(data.x_train[idx], device=device)).float().cpu()
    return ReferenceBatch(indices=idx, logits=logits, labels=torch.as_tensor(res.y_given[idx]),
                          true_labels=np.asarray(res.y_true[idx]), is_noisy=np.asarray(res.is_noisy[idx], bool),
                          noise=noise, noise_rate=noise_rate, seed=seed, epochs=epochs,
                          test_acc=float(res.history["test_acc"][-1]))


@dataclass(frozen=True)
class BatchWeights:
    """What a loss would do with a :class:`ReferenceBatch` (all ``[B]``).

    p:        probability of the given label, in [0, 1].
    weight:   emphasis normalised over the batch (sums to 1); higher = emphasised more.
    is_noisy: the ground-truth mask of mislabelled examples.
    loss, params: the loss it was computed with.
    """

    p: np.ndarray
    weight: np.ndarray
    is_noisy: np.ndarray
    loss: str
    params: dict

    @property
    def noisy_share(self) -> float:
        """Share of the batch that is mislabelled."""
        return float(self.is_noisy.mean())

    @property
    def noisy_weight_share(self) -> float:
        """Share of the total weight that goes to mislabelled examples (compare with :attr:`noisy_share`)."""
        return float(self.weight[self.is_noisy].sum() / self.weight.sum())

    def as_result(self) -> RunResult:
        """The batch as a one-epoch :class:`RunResult` (records ``weight`` and ``p``), for the plot helpers."""
        from .plotting import method_label

        n = self.weight.size
        return RunResult(config={"loss": method_label(self.loss, self.params)}, y_given=np.zeros(n, np.int64),
                         y_true=np.zeros(n, np.int64), is_noisy=self.is_noisy, num_classes=2,
                         records={"weight": self.weight[None, :].astype(np.float32),
                                  "p": self.p[None, :].astype(np.float32)}, epochs_completed=1)


def batch_weights(batch: ReferenceBatch, loss: str, **params) -> BatchWeights:
    """The per-example weights ``get_loss(loss, **params).details(logits, labels).weight`` on ``batch``."""
    out = get_loss(loss, **params).details(batch.logits, batch.labels)
    return BatchWeights(p=out.p.double().numpy(), weight=out.weight.double().numpy(), is_noisy=batch.is_noisy,
                        loss=loss, params=dict(params))


# -- drawing --------------------------------------------------------------------------
def _new_figure(size):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def draw_emphasis(fig, curve: CurveData, weights: BatchWeights | None = None):
    """Left: the selected loss's emphasis density (thick, mode marked) over the baselines (dashed), with
    the batch's examples as a rug on the p axis; right: the batch's weight distribution, clean vs
    mislabelled.  Returns the two axes."""
    from .plotting import method_color, method_label, plot_emphasis_curves, plot_weight_histogram

    ax_c, ax_w = fig.subplots(1, 2, width_ratios=[3, 2])
    sel = curve.selected
    baselines = [(n, curve.params[n]) for n in TUNER_LOSSES if n != sel]
    plot_emphasis_curves(ax_c, methods=baselines, p=curve.p, normalise="p", mark_modes=False, lw=1.2, ls="--",
                         alpha=0.75)
    plot_emphasis_curves(ax_c, methods=[(sel, curve.params[sel])], p=curve.p, normalise="p", mark_modes=True,
                         lw=2.8)
    colour = method_color(sel)
    label = method_label(sel, curve.params[sel])
    if not curve.flat:
        y = float(np.interp(curve.mode, curve.p, curve.values))
        ax_c.plot([curve.mode], [y], "o", color=colour, ms=8, clip_on=False, label="_mode marker")
    if weights is not None:
        trans = ax_c.get_xaxis_transform()
        for group, mask, yy in (("clean", ~weights.is_noisy, 0.025), ("noisy", weights.is_noisy, 0.07)):
            if mask.any():
                name = "clean" if group == "clean" else "mislabelled"
                ax_c.plot(weights.p[mask], np.full(int(mask.sum()), yy), "|", transform=trans, ms=9, alpha=0.5,
                          color=method_color(group), label=f"batch: {name}")
    ax_c.set_title(f"{label}: emphasis over p" + (" (uniform: beta = 0)" if curve.flat else
                                                  f", mode p* = {curve.mode:.3f}"))
    ax_c.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, frameon=False)
    if weights is not None:
        plot_weight_histogram(weights.as_result(), ax=ax_w, bins=30)
        ax_w.set_title(f"fixed batch ({weights.weight.size}): mislabelled get {weights.noisy_weight_share:.0%} "
                       f"of the weight\n(they are {weights.noisy_share:.0%} of the batch)")
    else:
        ax_w.set_axis_off()
    return ax_c, ax_w


def draw_runs(fig, current: RunResult, previous: RunResult | None = None, labels=("current", "previous")):
    """Top: test accuracy and memorisation (``noisy_fit``) per epoch, previous run vs current run;
    bottom: the clean-vs-mislabelled weight histogram (last epoch) of each.  Returns the axes [2, 2]."""
    from .plotting import plot_history, plot_weight_histogram

    axes = fig.subplots(2, 2)
    runs = {}
    if previous is not None:
        runs[labels[1]] = previous
    runs[labels[0]] = current
    plot_history(runs, fields=("test_acc", "noisy_fit"), axes=axes[0])
    axes[0, 0].set_title("test accuracy per epoch")
    axes[0, 1].set_title("memorisation: mislabelled examples fitted")
    for ax, (label, res) in zip(axes[1], [(labels[0], current), (labels[1], previous)]):
        if res is None:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "the previous run shows here\nafter a second training", ha="center",
                    va="center", transform=ax.transAxes, color="0.4")
            continue
        # log bins: weights span orders of magnitude (and the short last batch of an epoch has large ones)
        plot_weight_histogram(res, ax=ax, bins=40, log=True)
        _plain_log_ticks(ax.xaxis)
        ax.set_title(f"{label}: weights at epoch {res.epochs_completed}", fontsize="small")
    return axes


def _plain_log_ticks(axis) -> None:
    """Readable ticks on a log axis: 1-2-5 steps within two decades, decades beyond; no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    narrow = lo > 0 and hi / lo < 100
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,), numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


# -- the widget app -------------------------------------------------------------------------
def _span(cls: str, text: str) -> str:
    return f'<span class="{cls}">{html.escape(text)}</span>'


class _SettingProperty:
    """``tuner.lam`` reads the control; ``tuner.lam = v`` is ``tuner.set(lam=v)`` (validated)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(obj.settings, self.name)

    def __set__(self, obj, value):
        obj.set(**{self.name: value})


class EmphasisTuner:
    """Sliders for GR's ``lam`` and ``beta``, a loss selector, label noise, and a quick training run.

    Every change of a control redraws (once, on release: ``continuous_update=False``)
    the emphasis curves (:func:`curve_data`) and the weights of a fixed batch
    under the selected loss (:func:`batch_weights`); changing the noise also
    retrains the small reference model (:func:`reference_batch`, cached per
    noise setting).  "Train" runs :func:`grlib.train` on ``digits`` with the
    chosen settings and shows it next to the previous run.

    Headless use (tests, papermill): ``tuner.set(lam=2)`` or ``tuner.lam = 2``
    (validated: out-of-range values raise ValueError naming the control),
    ``tuner.run_training()``, then read ``tuner.curve``, ``tuner.batch``,
    ``tuner.runs``, ``tuner.curve_figure`` and ``tuner.train_figure``.
    Setting a slider's ``.value`` directly clamps it to the slider's range
    (ipywidgets' rule).

    Readouts with stable CSS classes (for browser tests): ``span.grlib-mode``
    (``"mode p*=0.500"``), ``span.grlib-batch``, ``span.grlib-train-status``
    (``"done: final test acc 0.712 ..."``); images ``img.grlib-curve`` and
    ``img.grlib-train-plot``; controls ``.grlib-lam``, ``.grlib-beta``,
    ``.grlib-q``, ``.grlib-loss``, ``.grlib-noise``, ``.grlib-noise-rate``,
    ``.grlib-epochs``, ``button.grlib-train``, ``.grlib-progress``.

    Parameters
    ----------
    lam, beta, loss, q, noise, noise_rate, epochs, seed :
        Initial values (:class:`TunerSettings`).
    reference_epochs : int
        Epochs of the CE reference model behind the fixed batch (default 5).
    batch_size : int
        Size of the fixed batch (default 256).
    callbacks : iterable of ``cb(epoch, result)``
        Extra per-epoch callbacks for the "Train" run (see :func:`grlib.train`).
    """

    lam = _SettingProperty()
    beta = _SettingProperty()
    loss = _SettingProperty()
    q = _SettingProperty()
    noise = _SettingProperty()
    noise_rate = _SettingProperty()
    epochs = _SettingProperty()
    seed = _SettingProperty()

    def __init__(self, *, lam: float = 1.0, beta: float = 8.0, loss: str = "gr", q: float = 0.7,
                 noise: str = "symmetric", noise_rate: float = 0.4, epochs: int = 20, seed: int = 0,
                 reference_epochs: int = 5, batch_size: int = 256, callbacks: Iterable[Callable] = ()):
        import ipywidgets as W

        from .figures import use_style

        s = TunerSettings(lam=lam, beta=beta, loss=loss, q=q, noise=noise, noise_rate=noise_rate, epochs=epochs,
                          seed=seed)
        self.reference_epochs = check_int("reference_epochs", reference_epochs, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=2)
        self.callbacks = list(callbacks)
        self._seed = s.seed
        use_style()
        self._data = load_dataset("digits")
        self._references: dict = {}
        self._hold = 0
        self._busy = False
        #: every finished "Train" run, oldest first
        self.runs: list[RunResult] = []
        #: how many times the emphasis view was redrawn / the reference model trained (for tests)
        self.redraw_count = 0
        self.reference_count = 0
        self.curve: CurveData | None = None
        self.batch: BatchWeights | None = None
        self.curve_figure = None
        self.train_figure = None
        self.last_error: str | None = None

        def slider(name, desc, value, fmt=".2f", kind=W.FloatSlider):
            cls = "grlib-" + name.replace("_", "-")
            lo, hi, step = RANGES[name]
            w = kind(value=value, min=lo, max=hi, step=step, description=desc, continuous_update=False,
                     readout_format=fmt if kind is W.FloatSlider else "d", style={"description_width": "90px"},
                     layout=W.Layout(width="360px"))
            w.add_class(cls)
            return w

        self.lam_slider = slider("lam", "lam (mode)", s.lam)
        self.beta_slider = slider("beta", "beta (spread)", s.beta, ".1f")
        self.q_slider = slider("q", "GCE q", s.q)
        self.loss_buttons = W.ToggleButtons(options=[(v, k) for k, v in TUNER_LOSSES.items()], value=s.loss,
                                            description="loss", style={"description_width": "90px",
                                                                       "button_width": "62px"})
        self.loss_buttons.add_class("grlib-loss")
        self.noise_buttons = W.ToggleButtons(options=list(NOISE_KINDS), value=s.noise, description="label noise",
                                             style={"description_width": "90px", "button_width": "96px"})
        self.noise_buttons.add_class("grlib-noise")
        self.rate_slider = slider("noise_rate", "noise rate", s.noise_rate)
        self.epochs_slider = slider("epochs", "epochs", s.epochs, kind=W.IntSlider)
        self.train_button = W.Button(description="Train", icon="play", button_style="primary",
                                     tooltip="train on digits with these settings (a few seconds)")
        self.train_button.add_class("grlib-train")
        self.progress = W.IntProgress(value=0, min=0, max=s.epochs, description="", bar_style="info",
                                      layout=W.Layout(width="260px", visibility="hidden"))
        self.progress.add_class("grlib-progress")
        self.mode_readout = W.HTML()
        self.batch_readout = W.HTML()
        self.train_status = W.HTML(_span("grlib-train-status", "not trained yet: press Train"))
        self.error_readout = W.HTML()
        self.curve_image = W.Image(format="png", layout=W.Layout(width="100%", max_width="1000px"))
        self.curve_image.add_class("grlib-curve")
        self.train_image = W.Image(format="png", layout=W.Layout(width="100%", max_width="1000px"))
        self.train_image.add_class("grlib-train-plot")

        title = W.HTML("<h3 style='margin:4px 0'>Emphasis tuning: which examples would each loss emphasise?</h3>"
                       "<div style='color:#555'>p = probability of the labelled class. GR weights an example by "
                       "exp(beta p<sup>lam</sup> (1 - p)), which peaks at p* = lam / (1 + lam); the fixed batch "
                       f"comes from a model trained {self.reference_epochs} epochs with CE on the noisy labels.</div>")
        emphasis_box = W.VBox([self.loss_buttons, self.lam_slider, self.beta_slider, self.q_slider])
        train_box = W.VBox([self.noise_buttons, self.rate_slider, self.epochs_slider,
                            W.HBox([self.train_button, self.progress])])
        self.widget = W.VBox([title, W.HBox([emphasis_box, train_box]),
                              W.HBox([self.mode_readout, self.batch_readout],
                                     layout=W.Layout(justify_content="space-between", width="100%",
                                                     max_width="1000px")),
                              self.error_readout, self.curve_image, self.train_status, self.train_image])
        self.widget.add_class("grlib-tuner")

        for w in (self.lam_slider, self.beta_slider, self.q_slider, self.loss_buttons, self.noise_buttons,
                  self.rate_slider):
            w.observe(self._on_change, names="value")
        self.epochs_slider.observe(self._on_epochs_change, names="value")
        self.train_button.on_click(self._on_train_click)
        self._update_enabled()
        self.redraw()

    # -- state --------------------------------------------------------------------
    @property
    def settings(self) -> TunerSettings:
        """The controls' current values."""
        return TunerSettings(lam=self.lam_slider.value, beta=self.beta_slider.value, loss=self.loss_buttons.value,
                             q=self.q_slider.value, noise=self.noise_buttons.value,
                             noise_rate=self.rate_slider.value, epochs=self.epochs_slider.value, seed=self._seed)

    @property
    def last_result(self) -> RunResult | None:
        return self.runs[-1] if self.runs else None

    @property
    def previous_result(self) -> RunResult | None:
        return self.runs[-2] if len(self.runs) > 1 else None

    @property
    def mode_text(self) -> str:
        """The text of ``span.grlib-mode``, e.g. ``"mode p*=0.500"``."""
        return _strip_span(self.mode_readout.value)

    @property
    def status_text(self) -> str:
        """The text of ``span.grlib-train-status``."""
        return _strip_span(self.train_status.value)

    def set(self, **changes) -> "EmphasisTuner":
        """Set several controls at once, validated first (nothing changes if one value is bad); redraws once.

        Raises ValueError naming the control for an out-of-range value (ranges:
        :data:`RANGES`), TypeError for an unknown name or a wrong type.
        """
        new = self.settings.replace(**changes)
        widgets_ = {"lam": self.lam_slider, "beta": self.beta_slider, "loss": self.loss_buttons,
                    "q": self.q_slider, "noise": self.noise_buttons, "noise_rate": self.rate_slider,
                    "epochs": self.epochs_slider}
        with self._held():
            self._seed = new.seed
            for name in changes:
                if name in widgets_:
                    widgets_[name].value = getattr(new, name)
        self._update_enabled()
        self.redraw()  # a new noise setting trains its reference model here (cached)
        return self

    @contextlib.contextmanager
    def _held(self):
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1

    # -- callbacks ------------------------------------------------------------------------
    def _guard(self, fn, *args):
        """Run ``fn``; show an exception in the error readout instead of losing it in the widget log."""
        try:
            fn(*args)
            if self.last_error is not None:
                self.last_error = None
                self.error_readout.value = ""
        except Exception as exc:  # noqa: BLE001 - shown to the user, the app keeps working
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.error_readout.value = (f'<span class="grlib-error" style="color:#b00">'
                                        f'{html.escape(self.last_error)}</span>')

    def _on_change(self, change=None):
        """Any emphasis or noise control: redraw (a new noise setting first trains its reference model)."""
        if self._hold:
            return
        self._update_enabled()
        self._guard(self.redraw)

    def _on_epochs_change(self, change=None):
        if not self._busy:
            self.progress.max = self.epochs_slider.value

    def _on_train_click(self, button=None):
        self._guard(self.run_training)

    def _update_enabled(self):
        loss = self.loss_buttons.value
        self.lam_slider.disabled = loss != "gr"
        self.beta_slider.disabled = loss != "gr"
        self.q_slider.disabled = loss != "gce"
        self.rate_slider.disabled = self.noise_buttons.value == "none"

    # -- the two actions ---------------------------------------------------------------------
    def reference(self) -> ReferenceBatch:
        """The fixed batch under the current noise settings (trained once per noise setting, then cached)."""
        s = self.settings
        rate = 0.0 if s.noise == "none" else s.noise_rate
        key = (s.noise, rate, s.seed)
        if key not in self._references:
            self._references[key] = reference_batch(s.noise, rate, seed=s.seed, epochs=self.reference_epochs,
                                                    batch_size=self.batch_size, data=self._data)
            self.reference_count += 1
        return self._references[key]

    def redraw(self) -> None:
        """Recompute the curves and the batch weights for the current controls and redraw the view."""
        s = self.settings
        curve = curve_data(s.loss, lam=s.lam, beta=s.beta, q=s.q)
        batch = batch_weights(self.reference(), s.loss, **s.loss_params)
        fig = _new_figure((10, 4.2))
        draw_emphasis(fig, curve, batch)
        self.curve, self.batch, self.curve_figure = curve, batch, fig
        self.curve_image.value = _png(fig)
        extra = " (beta=0: uniform weights)" if curve.flat else ""
        self.mode_readout.value = (f"<b>{html.escape(s.label)}</b>: {_span('grlib-mode', f'mode p*={curve.mode:.3f}')}"
                                   f"{html.escape(extra)}")
        self.batch_readout.value = _span("grlib-batch", f"mislabelled: {batch.noisy_share:.0%} of the batch, "
                                                        f"{batch.noisy_weight_share:.0%} of the weight")
        self.redraw_count += 1

    def run_training(self, **changes) -> RunResult:
        """Train on ``digits`` with the current settings (after ``set(**changes)``); show it next to the last run.

        Disables the Train button while it runs, drives the progress bar, and
        updates ``span.grlib-train-status``.  Returns the :class:`RunResult`
        (also appended to :attr:`runs`).  A non-finite loss stops the run early
        (the status says so); other errors propagate (the button shows them).
        """
        if changes:
            self.set(**changes)
        if self._busy:
            raise RuntimeError("a training run is already in progress")
        s = self.settings
        config = s.run_config()
        run_no = len(self.runs) + 1
        self._busy = True
        self.train_button.disabled = True
        self.progress.max, self.progress.value = s.epochs, 0
        self.progress.layout.visibility = "visible"
        self.progress.bar_style = "info"
        self._status(f"running: run {run_no}, {config.label}, epoch 0/{s.epochs}")

        def on_epoch(epoch, result):
            self.progress.value = epoch
            self._status(f"running: run {run_no}, {config.label}, epoch {epoch}/{s.epochs}, "
                         f"test acc {result.history['test_acc'][epoch - 1]:.3f}")

        try:
            result = train(config, data=self._data, progress=False, on_nonfinite="stop",
                           callbacks=[on_epoch, *self.callbacks])
        except BaseException as exc:
            self.progress.bar_style = "danger"
            self._status(f"failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._busy = False
            self.train_button.disabled = False
        self.runs.append(result)
        labels = (f"run {run_no}: {config.label}",
                  f"run {run_no - 1}: {self._label_of(self.previous_result)}" if self.previous_result else "")
        fig = _new_figure((10, 6.4))
        draw_runs(fig, result, self.previous_result, labels=labels)
        self.train_figure = fig
        self.train_image.value = _png(fig)
        summ = result.summary()
        self.progress.bar_style = "success" if result.stopped is None else "warning"
        noise = "no noise" if s.noise == "none" else f"{s.noise} noise {s.noise_rate:.0%}"
        what = "done" if result.stopped is None else f"stopped ({result.stopped})"
        self._status(f"{what}: final test acc {summ['final_acc']:.3f}, best {summ['best_acc']:.3f} at epoch "
                     f"{summ['epoch_of_best']} (run {run_no}: {config.label}, {noise}, {result.epochs_completed} "
                     f"epochs)")
        return result

    @staticmethod
    def _label_of(result: RunResult) -> str:
        return RunConfig.from_dict(result.config).label

    def _status(self, text: str) -> None:
        self.train_status.value = _span("grlib-train-status", text)

    # -- display -------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"EmphasisTuner({self.settings}, runs={len(self.runs)})"


def _strip_span(value: str) -> str:
    import re

    m = re.search(r'<span class="grlib-[a-z-]+">(.*?)</span>', value)
    return html.unescape(m.group(1)) if m else ""


# -- serving the app ------------------------------------------------------------------------
def tuning_notebook() -> Path:
    """The tuning notebook of the repository (editable install / source checkout)."""
    from .notebook import notebooks_dir

    path = notebooks_dir() / TUNING_NOTEBOOK
    if not path.is_file():
        raise FileNotFoundError(f"the tuning notebook {path} is missing; 'grlib tune' needs a source checkout "
                                "(pip install -e .), or pass --notebook PATH")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def voila_command(notebook, *, port: int, python: str | None = None) -> list[str]:
    """The Voila command line that serves ``notebook`` on 127.0.0.1:``port`` (no browser, no port hopping).

    ``--Voila.port_retries=0`` makes Voila fail on a busy port instead of
    silently moving to the next one; the jupytext lab extension is denied
    because it throws inside Voila's bundled JupyterLab.
    """
    port = check_int("port", port, low=1, high=65535)
    return [python or sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1",
            f"--port={port}", "--Voila.port_retries=0", "--VoilaConfiguration.show_tracebacks=True",
            "--VoilaConfiguration.extension_denylist=jupyterlab-jupytext"]


def _cmd_tune(args) -> int:
    notebook = Path(args.notebook) if args.notebook else tuning_notebook()
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    port = args.port if args.port else free_port()
    port = check_int("port", port, low=1, high=65535)
    if not _port_is_free(port):
        raise ValueError(f"port {port} on 127.0.0.1 is in use; pass --port N for another one, or --port 0 for "
                         "any free port")
    url = f"http://127.0.0.1:{port}/"
    print(f"grlib tune: serving {notebook.name} with Voila at {url}  (open it in a browser; Ctrl+C stops)",
          flush=True)
    proc = subprocess.Popen(voila_command(notebook, port=port))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0


def register_cli(subparsers):
    """Add ``tune`` to the ``grlib`` command line (``subparsers`` from ``add_subparsers``); returns its parser."""
    p = subparsers.add_parser("tune", help="open the emphasis tuning app (Voila on 127.0.0.1)",
                              description="Serve the emphasis tuning notebook as an app with Voila on 127.0.0.1 "
                                          "and print its URL. No browser is opened; Ctrl+C stops the server.")
    p.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866; 0: any free port)")
    p.add_argument("--notebook", default=None, help=f"notebook to serve (default: notebooks/{TUNING_NOTEBOOK})")
    p.set_defaults(func=_cmd_tune)
    return p


def main(argv=None) -> int:
    """``python -m grlib.tuning tune [--port N]``: the same as ``grlib tune``."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
