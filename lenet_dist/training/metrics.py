"""What the loop measures as it goes: the on-device loss window and the per-epoch metrics line."""

from __future__ import annotations

import time
from typing import Any

import torch

from lenet_dist.records import EpochRecord
from lenet_dist.training.evaluation import EvalResult


class LossWindow:
    """Per-step losses summed on the device: read (a host sync) only when flushed."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.reset()

    def add(self, loss: torch.Tensor) -> None:
        self.loss += loss
        self.steps += 1

    def reset(self) -> None:
        self.loss.zero_()
        self.steps = 0
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def eval_line(record: EpochRecord, result: EvalResult) -> dict[str, Any]:
    """An evaluation line of metrics.jsonl (records.EvalLine without the step the tracker adds)."""
    return {"kind": "eval", **record.model_dump(), "per_class_accuracy": result.per_class_accuracy,
            "confusion_matrix": result.confusion_matrix}
