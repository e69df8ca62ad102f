"""Exact held-out evaluation: each rank scores a disjoint contiguous share of the test set (no
padding, no duplicated samples), then counts are summed across ranks, so 1, 2 or 3 processes
count every one of the 10000 test images exactly once and agree with a single process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from lenet_dist.data.datasets import DatasetSpec
from lenet_dist.data.tensors import Split, eval_shard
from lenet_dist.model import for_inference
from lenet_dist.records import EvalMetrics


@dataclass
class EvalResult:
    samples: int
    loss: float
    accuracy: float
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class

    def to_dict(self) -> dict:
        return asdict(self)

    def metrics(self) -> EvalMetrics:
        return EvalMetrics(test_accuracy=self.accuracy, test_loss=self.loss, test_samples=self.samples)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: Split, spec: DatasetSpec, *, rank: int = 0, world: int = 1,
             batch_size: int = 1000, reduce_sum: Callable[[torch.Tensor], torch.Tensor] = _identity,
             memory_format: torch.memory_format = torch.contiguous_format, mirror_average: bool = False) -> EvalResult:
    """Evaluate this rank's share, then sum the counts with `reduce_sum` (an all-reduce);
    mirror_average: each image read as it is and mirrored, averaged (model.MirrorAveraged)."""
    was_training, model = model.training, for_inference(model, mirror_average)
    model.eval()
    classes = len(spec.classes)
    device = split.images.device
    confusion = torch.zeros(classes * classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    start, stop = eval_shard(len(split), rank, world)
    for i in range(start, stop, batch_size):
        j = min(i + batch_size, stop)
        x = spec.normalization.apply(split.images[i:j]).contiguous(memory_format=memory_format)
        y = split.labels[i:j]
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        confusion += torch.bincount(y * classes + logits.argmax(1), minlength=classes * classes)
    model.train(was_training)
    confusion = reduce_sum(confusion).view(classes, classes).cpu()
    loss_sum = float(reduce_sum(loss_sum))  # the one host sync of an evaluation
    total = int(confusion.sum())
    per_class = (confusion.diag().double() / confusion.sum(1).clamp(min=1).double()).tolist()
    return EvalResult(
        samples=total,
        loss=loss_sum / max(total, 1),
        accuracy=int(confusion.diag().sum()) / max(total, 1),
        per_class_accuracy=per_class,
        confusion_matrix=confusion.tolist(),
    )


@torch.inference_mode()
def misclassified(model: torch.nn.Module, split: Split, spec: DatasetSpec, limit: int,
                  memory_format: torch.memory_format = torch.contiguous_format):
    """Up to `limit` held-out images the model gets wrong: (uint8 HxW arrays, true names, predicted names)."""
    model.eval()
    images, true, predicted = [], [], []
    for i in range(0, len(split), 5000):
        x = split.images[i:i + 5000]
        pred = model(spec.normalization.apply(x).contiguous(memory_format=memory_format)).argmax(1)
        wrong = (pred != split.labels[i:i + 5000]).nonzero().flatten()[: limit - len(images)]
        for j in wrong.tolist():
            images.append((x[j, 0] * 255).round().byte().cpu().numpy())
            true.append(spec.classes[int(split.labels[i + j])])
            predicted.append(spec.classes[int(pred[j])])
        if len(images) >= limit:
            break
    return images, true, predicted
