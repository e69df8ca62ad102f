"""LeNet5. Pure torch: no distributed code, no I/O, no logging."""

from __future__ import annotations

import torch
from torch import nn

from lenet_dist import first_layer


class MaxPool2x2(nn.MaxPool2d):
    """nn.MaxPool2d(2), with a faster forward where no gradient is wanted (evaluation, predict) on
    channels-last CPU tensors: two elementwise maxima over views instead of the pooling kernel,
    whose channels-last CPU path is slow for 6 channels (3.1 ms vs 0.4 ms for 256 images in
    bf16). The values are the same, bit for bit; training keeps the kernel (and its indices), but for
    the first pool in bf16 CPU training, which first_layer does."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.MaxPool2d's name: traces match)
        if torch.jit.is_tracing():  # export: the plain op, and no second name for the tensor in this frame
            return super().forward(input)
        x = input
        if x.dim() != 4 or (x.requires_grad and torch.is_grad_enabled()) or x.device.type != "cpu" \
                or x.shape[2] % 2 or x.shape[3] % 2 or x.is_contiguous() \
                or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).unflatten(1, (h // 2, 2))  # the NHWC memory as n, h/2, 2, w, c
        pairs = torch.maximum(rows[:, :, 0], rows[:, :, 1]).unflatten(2, (w // 2, 2))  # n, h/2, w/2, 2, c
        return torch.maximum(pairs[:, :, :, 0], pairs[:, :, :, 1]).permute(0, 3, 1, 2)


class LeNet5(nn.Module):
    """conv 6@5x5 pad 2 → pool → conv 16@5x5 → pool → fc 120 → fc 84 → fc classes (61,706
    parameters for 10 classes), ReLU after every layer but the last, max pooling.

    Each conv's ReLU comes after its pool: ReLU is monotone, so relu(pool(x)) = pool(relu(x)) bit
    for bit, and the gradients match too (where the window's max is positive both send it to the
    same first maximum; where it is not, both send zero). On a quarter of the elements: ~3% of a
    training step on CPU. The conv layers keep their state_dict keys (features.0, features.3)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            MaxPool2x2(),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 16, kernel_size=5),
            MaxPool2x2(),
            nn.ReLU(inplace=True),
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
        conv1, conv2 = self.features[0], self.features[3]
        if first_layer.applies(conv1, x):  # bf16 training on CPU: conv1, its pool and ReLU as one product
            y = first_layer.second_conv(first_layer.conv_pool_relu(x, conv1), conv2)
            return self.classifier(self.features[4:](y))
        return self.classifier(self.features(x))

    def model_args(self) -> dict[str, int]:
        """The constructor's arguments: stored in checkpoints so inference rebuilds the model
        without the training config."""
        return {"in_channels": self.in_channels, "num_classes": self.num_classes}
