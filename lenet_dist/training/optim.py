"""Optimizer and learning-rate schedule, from the config: torch.optim as shipped."""

from __future__ import annotations

import torch

from lenet_dist.config import Config


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.momentum > 0)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    # fused: torch's own single-kernel Adam over all parameter tensors, on CPU and CUDA alike
    return cls(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, fused=True)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    s = cfg.schedule
    if s.name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, total_steps=total_steps,
                                                   pct_start=s.warmup_fraction)
    if s.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None
