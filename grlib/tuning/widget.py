"""The tuning app: :class:`EmphasisTuner`, ipywidgets over the pure computations of :mod:`grlib.tuning.compute`."""
from __future__ import annotations

import contextlib
import html
import re
from typing import Callable, Iterable

from .._checks import check_int
from ..data import load_dataset
from ..noise import NOISE_KINDS
from ..results import RunResult
from ..train import train
from .compute import BatchWeights, CurveData, ReferenceBatch, batch_weights, curve_data, reference_batch
from .drawing import draw_emphasis, draw_runs, new_figure, png_bytes
from .settings import RANGES, TUNER_LOSSES, TunerSettings

__all__ = ["EmphasisTuner"]


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

    def __init__(self, *, lam: float = TunerSettings.lam, beta: float = TunerSettings.beta,
                 loss: str = TunerSettings.loss, q: float = TunerSettings.q, noise: str = TunerSettings.noise,
                 noise_rate: float = TunerSettings.noise_rate, epochs: int = TunerSettings.epochs,
                 seed: int = TunerSettings.seed,
                 reference_epochs: int = 5, batch_size: int = 256, callbacks: Iterable[Callable] = ()):
        import ipywidgets as W

        from ..figures import use_style

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
        fig = new_figure((10, 4.2))
        draw_emphasis(fig, curve, batch)
        self.curve, self.batch, self.curve_figure = curve, batch, fig
        self.curve_image.value = png_bytes(fig)
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
        fig = new_figure((10, 6.4))
        draw_runs(fig, result, self.previous_result, labels=labels)
        self.train_figure = fig
        self.train_image.value = png_bytes(fig)
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
        from ..views import run_label

        return run_label(result)

    def _status(self, text: str) -> None:
        self.train_status.value = _span("grlib-train-status", text)

    # -- display -------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"EmphasisTuner({self.settings}, runs={len(self.runs)})"


def _strip_span(value: str) -> str:
    m = re.search(r'<span class="grlib-[a-z-]+">(.*?)</span>', value)
    return html.unescape(m.group(1)) if m else ""


