"""Models (an MLP and a small CNN) and device selection.

Both models take flat features ``[B, D]`` and return logits ``[B, num_classes]``.
``batchnorm=True`` inserts BatchNorm after every hidden layer (MLP:
``Linear -> BatchNorm1d -> ReLU``; CNN: ``Conv -> BatchNorm2d -> ReLU`` in both
conv blocks), as in the networks the paper trained (ResNets with BatchNorm);
the layer before a BatchNorm then has no bias (BatchNorm's shift replaces it).
With ``batchnorm=False`` (the default) the module layout, and so the
``state_dict`` keys of saved checkpoints, are exactly those of earlier grlib
versions.  A BatchNorm model behaves differently in ``train()`` mode (batch
statistics; a batch of one example is an error in ``BatchNorm1d``: use
``drop_last`` or equal-size batches) and ``eval()`` mode (running statistics).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._checks import check_int

__all__ = ["MLP", "SmallCNN", "get_model", "model_names", "resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None: CUDA if available, else CPU; otherwise the named device (``"cpu"``, ``"cuda:0"``...)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device; use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def _check_batchnorm(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"batchnorm must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


class MLP(nn.Module):
    """Fully connected ReLU network ``in -> hidden... -> num_classes`` on flat features.

    ``batchnorm=True``: each hidden layer is ``Linear(bias=False) -> BatchNorm1d -> ReLU``.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 256), *,
                 batchnorm: bool = False):
        super().__init__()
        in_features = check_int("in_features", in_features, low=1)
        num_classes = check_int("num_classes", num_classes, low=2)
        hidden = tuple(check_int("hidden width", h, low=1) for h in hidden)
        self.batchnorm = _check_batchnorm(batchnorm)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            if self.batchnorm:
                layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU()]
            else:
                layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head, for flat image features of shape ``(C, H, W)``.

    ``batchnorm=True``: each conv block is ``Conv2d(bias=False) -> BatchNorm2d -> ReLU -> MaxPool2d``
    (the head stays ``Linear -> ReLU -> Linear``, as a ResNet's single linear classifier has no BatchNorm).
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, channels: tuple[int, int] = (32, 64),
                 hidden: int = 128, *, batchnorm: bool = False):
        super().__init__()
        if image_shape is None or len(image_shape) != 3:
            raise ValueError(f"model 'cnn' needs an image data set with image_shape (C, H, W); got {image_shape!r}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.batchnorm = _check_batchnorm(batchnorm)
        c, h, w = self.image_shape
        c1, c2 = channels
        if self.batchnorm:
            self.features = nn.Sequential(
                nn.Conv2d(c, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            )
        else:
            self.features = nn.Sequential(
                nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            )
        flat = c2 * (h // 4) * (w // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(x.shape[0], *self.image_shape)))


_MODELS = ("mlp", "cnn")


def model_names() -> list[str]:
    return list(_MODELS)


def get_model(name: str, *, in_features: int, num_classes: int, image_shape=None, hidden=(256, 256),
              batchnorm: bool = False) -> nn.Module:
    """Build ``"mlp"`` (``hidden`` widths) or ``"cnn"`` (needs ``image_shape``).

    ``batchnorm``: BatchNorm after every hidden layer (see the module docstring);
    False keeps the layout, and the checkpoint keys, of models saved without it.
    """
    if name not in _MODELS:
        raise ValueError(f"model name={name!r} is unknown; valid names: {', '.join(_MODELS)}")
    batchnorm = _check_batchnorm(batchnorm)
    if name == "mlp":
        return MLP(in_features, num_classes, tuple(hidden), batchnorm=batchnorm)
    return SmallCNN(image_shape, num_classes, batchnorm=batchnorm)
