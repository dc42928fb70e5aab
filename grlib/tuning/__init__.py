"""Widget-driven emphasis tuning: move GR's ``lam`` and ``beta`` and see which examples it would emphasise.

A small package in four layers, each usable without the ones after it:

* :mod:`grlib.tuning.settings`: the controls (:class:`TunerSettings`, validated
  against :data:`RANGES`; the losses offered, :data:`TUNER_LOSSES`).
* :mod:`grlib.tuning.compute`: pure computations the headless notebooks and the
  tests call directly (:func:`curve_data`, :func:`reference_batch`,
  :func:`batch_weights`).
* :mod:`grlib.tuning.drawing`: the two views drawn on a Figure
  (:func:`draw_emphasis`, :func:`draw_runs`).
* :mod:`grlib.tuning.widget`: the app, :class:`EmphasisTuner` (ipywidgets).

``p`` is always the probability the model gives to the *labelled* (possibly
wrong) class, in [0, 1].  GR's emphasis peaks at ``p* = lam / (1 + lam)``
(method.md, "The emphasis density function of GR").  The default GR setting is
the project's one default, ``(lam, beta) = (1, 12)`` (:class:`TunerSettings`).

``grlib tune`` (:mod:`grlib.cli`) serves ``notebooks/04_emphasis_tuning.ipynb``,
which builds the app, with Voila on 127.0.0.1; ``python -m grlib.tuning tune``
is the same command.
"""
from .compute import (GRID_POINTS, BatchWeights, CurveData, ReferenceBatch, batch_weights, curve_data,
                      reference_batch)
from .drawing import draw_emphasis, draw_runs
from .settings import RANGES, TUNER_LOSSES, TunerSettings
from .widget import EmphasisTuner

__all__ = [
    "TUNER_LOSSES", "RANGES", "GRID_POINTS", "TunerSettings", "CurveData", "ReferenceBatch", "BatchWeights",
    "curve_data", "reference_batch", "batch_weights", "draw_emphasis", "draw_runs", "EmphasisTuner",
]
