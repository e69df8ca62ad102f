"""The job's optimizers and schedules are torch.optim's, as shipped."""

from __future__ import annotations

import pytest
import torch

from lenet_dist.config import Config
from lenet_dist.model import LeNet5
from lenet_dist.training.optim import build_optimizer, build_scheduler

TORCH_CLASSES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_optimizer_is_torch_optims_own_class_with_the_configured_settings(name: str):
    cfg = Config.model_validate({"optim": {"name": name, "lr": 0.01, "weight_decay": 1e-4}})
    optimizer = build_optimizer(cfg, LeNet5())
    assert type(optimizer) is TORCH_CLASSES[name]
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 1e-4
    assert type(optimizer).step is TORCH_CLASSES[name].step


@pytest.mark.parametrize(("name", "cls"), [("onecycle", torch.optim.lr_scheduler.OneCycleLR),
                                           ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
                                           ("constant", type(None))])
def test_the_schedule_is_torchs_and_stepped_per_optimizer_step(name: str, cls: type):
    cfg = Config.model_validate({"schedule": {"name": name}})
    scheduler = build_scheduler(cfg, build_optimizer(cfg, LeNet5()), total_steps=10)
    assert type(scheduler) is cls
