"""Fixtures for the fast tier: small real checkpoints and runs written in-process, in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lenet_dist.checkpoint import save_checkpoint, step_dir
from lenet_dist.data.datasets import MNIST
from lenet_dist.model import LeNet5
from lenet_dist.records import CheckpointMeta, EvalMetrics, Progress, TrainingState


def make_meta(global_step: int = 10, accuracy: float | None = None, steps_per_epoch: int = 10,
              total_steps: int = 20, dataset: str = "mnist") -> CheckpointMeta:
    metrics = EvalMetrics(test_accuracy=accuracy, test_loss=0.1, test_samples=100) if accuracy is not None else None
    return CheckpointMeta(dataset=dataset, classes=list(MNIST.classes), normalization=MNIST.normalization,
                          epoch=global_step // steps_per_epoch, step_in_epoch=global_step % steps_per_epoch,
                          global_step=global_step, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                          run_name="r", metrics=metrics)


def training_objects(total_steps: int = 20):
    torch.manual_seed(0)
    model = LeNet5()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=total_steps)
    return model, optimizer, scheduler


def save_training_checkpoint(run_dir: Path, global_step: int, accuracy: float | None = None, **meta_args) -> Path:
    model, optimizer, scheduler = training_objects(meta_args.get("total_steps", 20))
    state = TrainingState(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                          progress=Progress(global_step=global_step, epoch=1), tracking_run_id="abc123")
    return save_checkpoint(step_dir(run_dir, global_step), model, make_meta(global_step, accuracy, **meta_args),
                           training=state)


@pytest.fixture
def model_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "model", LeNet5(), make_meta(20, accuracy=0.5))
