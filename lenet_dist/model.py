"""LeNet5, and the mirror-averaged reading of a model. Pure torch.nn: no distributed code, no I/O, no
logging, no device- or dtype-specific paths."""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    """conv 6@5x5 pad 2 → ReLU → max-pool → conv 16@5x5 → ReLU → max-pool → fc 120 → fc 84 → fc classes
    (61,706 parameters for 10 classes), ReLU after every layer but the last."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def model_args(self) -> dict[str, int]:
        """The constructor's arguments: stored in checkpoints so inference rebuilds the model
        without the training config."""
        return {"in_channels": self.in_channels, "num_classes": self.num_classes}


class MirrorAveraged(nn.Module):
    """A model read twice, as the image is and mirrored left-right, its two class probabilities
    averaged (test-time augmentation, for classes that survive a mirror). Returns log-probabilities:
    softmax and cross-entropy take them as they take logits. No parameters of its own."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.model(torch.cat([x, x.flip(-1)])).float().log_softmax(dim=1)
        plain, mirrored = both.chunk(2)
        top = torch.maximum(plain, mirrored)  # log((p + q) / 2) without underflow; plain ops, so ONNX takes it
        return top + torch.log((torch.exp(plain - top) + torch.exp(mirrored - top)) / 2)


def for_inference(model: nn.Module, mirror_average: bool) -> nn.Module:
    """The model as evaluation and prediction read it (see CheckpointMeta.mirror_average)."""
    return MirrorAveraged(model).eval() if mirror_average else model
