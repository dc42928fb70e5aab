"""Train several losses on the same noisy data and tabulate the result (the quick main job)."""
from __future__ import annotations

import pandas as pd

from .config import RunConfig
from .metrics import separation_auc
from .train import prepare, train
from .views import p_field, record_row

__all__ = ["compare_losses", "DEFAULT_METHODS"]

#: (loss, params) pairs compared by default: CE, GCE(q=0.7) and GR at the project's default setting
#: (lam, beta) = (1, 12), the default of grlib.GRLoss() and grlib.RunConfig(): lam 1 is the paper's best
#: at 40% noise on CIFAR-10, beta 12 is in its grid for lam 1.
DEFAULT_METHODS = (("ce", {}), ("gce", {"q": 0.7}), ("gr", {"lam": 1.0, "beta": 12.0}))


def compare_losses(methods=DEFAULT_METHODS, config: RunConfig | None = None, *, progress: bool = True,
                   **overrides) -> pd.DataFrame:
    """Train each ``(loss, params)`` on one noisy data set; one row per method.

    Columns: ``method``, ``final_acc`` (test accuracy after the last epoch),
    ``best_acc`` and ``epoch_of_best`` (the best test accuracy seen, as the
    paper's tables report), ``noisy_fit`` (fraction of mislabelled training
    examples predicted as their wrong label at the end), ``auc_p`` (ROC AUC of
    the labelled-class probability separating clean from mislabelled).
    """
    config = (config or RunConfig()).replace(**overrides) if overrides else (config or RunConfig())
    data, noisy, _ = prepare(config)
    rows = []
    for loss, params in methods:
        cfg = config.replace(loss=loss, loss_params=dict(params))
        r = train(cfg, data=data, noisy=noisy, progress=progress)
        s = r.summary()
        p = record_row(r, p_field(r), -1)
        rows.append({"method": cfg.label, "final_acc": s["final_acc"], "best_acc": s["best_acc"],
                     "epoch_of_best": s["epoch_of_best"], "noisy_fit": s["noisy_fit"],
                     "auc_p": separation_auc(p, r.is_noisy)})
    return pd.DataFrame(rows)
