"""Models (an MLP and a small CNN) and device selection."""
from __future__ import annotations

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


class MLP(nn.Module):
    """Fully connected ReLU network ``in -> hidden... -> num_classes`` on flat features."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        in_features = check_int("in_features", in_features, low=1)
        num_classes = check_int("num_classes", num_classes, low=2)
        hidden = tuple(check_int("hidden width", h, low=1) for h in hidden)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head, for flat image features of shape ``(C, H, W)``."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, channels: tuple[int, int] = (32, 64),
                 hidden: int = 128):
        super().__init__()
        if image_shape is None or len(image_shape) != 3:
            raise ValueError(f"model 'cnn' needs an image data set with image_shape (C, H, W); got {image_shape!r}")
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        c1, c2 = channels
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


def get_model(name: str, *, in_features: int, num_classes: int, image_shape=None, hidden=(256, 256)) -> nn.Module:
    """Build ``"mlp"`` (``hidden`` widths) or ``"cnn"`` (needs ``image_shape``)."""
    if name not in _MODELS:
        raise ValueError(f"model name={name!r} is unknown; valid names: {', '.join(_MODELS)}")
    if name == "mlp":
        return MLP(in_features, num_classes, tuple(hidden))
    return SmallCNN(image_shape, num_classes)
