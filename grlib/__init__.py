"""grlib: emphasis regularisation by gradient rescaling (GR) and the tools to see what a loss emphasises.

Public names are re-exported here; see the submodules for details:
:mod:`grlib.emphasis`, :mod:`grlib.losses`, :mod:`grlib.noise`, :mod:`grlib.data`,
:mod:`grlib.models`, :mod:`grlib.config`, :mod:`grlib.train`, :mod:`grlib.results`,
:mod:`grlib.metrics`, :mod:`grlib.io`, :mod:`grlib.recorder`, :mod:`grlib.loader`,
:mod:`grlib.augment`, :mod:`grlib.scores`, :mod:`grlib.corruption`, :mod:`grlib.views` (what the notebooks show, for any saved run), :mod:`grlib.distributed` (GR over the
global batch under DDP), :mod:`grlib.lightning` (needs lightning).
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("grlib")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

from .augment import Augment, augment_for
from .config import RunConfig
from .corruption import NoisyData, add_data_noise, add_outliers, corrupt_inputs
from .data import DataNotAvailableError, Dataset, data_dir, dataset_names, fetch_fashion_mnist, load_dataset
from .emphasis import (emphasis_curve, emphasis_mode, gce_emphasis, gr_emphasis, gr_mode, gr_score,
                       mae_emphasis, ce_emphasis, mse_emphasis, normalise_over_batch, normalise_over_p)
from .io import read_metrics, write_metrics
from .loader import EqualBatchSampler, IndexedDataset
from .losses import LOSSES, EmphasisLoss, GRBatchWarning, GRLoss, LossOutput, get_loss, loss_names
from .metrics import precision_at_rate, separation_auc, separation_table
from .models import get_model, model_names, resolve_device
from .noise import NoisyLabels, add_label_noise, pair_noise, symmetric_noise, transition_noise
from .recorder import Recorder
from .scores import (SCORES, FlagThreshold, ThresholdSamples, find_label_issues, flag_threshold, label_issues_frame,
                     make_threshold_samples, with_threshold_samples)
from .results import RECORD_FIELDS, RunLoadError, RunResult
from .views import load_runs, relative_weights
from .train import NonFiniteLossError, evaluate, predict_proba, prepare, train

__all__ = [
    "__version__", "RunConfig", "Dataset", "DataNotAvailableError", "data_dir", "dataset_names",
    "fetch_fashion_mnist", "load_dataset", "emphasis_curve", "emphasis_mode", "ce_emphasis", "mae_emphasis",
    "mse_emphasis", "gce_emphasis", "gr_emphasis", "gr_score", "gr_mode", "normalise_over_p",
    "normalise_over_batch", "read_metrics", "write_metrics", "LOSSES", "EmphasisLoss", "GRLoss", "LossOutput",
    "get_loss", "loss_names", "precision_at_rate", "separation_auc", "separation_table", "get_model", "model_names", "resolve_device",
    "NoisyLabels", "add_label_noise", "pair_noise", "symmetric_noise", "transition_noise", "RunResult",
    "NonFiniteLossError", "evaluate", "predict_proba", "prepare", "train", "Recorder", "RECORD_FIELDS",
    "RunLoadError", "EqualBatchSampler", "IndexedDataset", "GRBatchWarning", "Augment", "augment_for",
    "load_runs", "relative_weights", "FlagThreshold", "flag_threshold", "with_threshold_samples", "NoisyData", "add_data_noise", "add_outliers", "corrupt_inputs", "SCORES", "ThresholdSamples", "find_label_issues", "label_issues_frame", "make_threshold_samples",
]
