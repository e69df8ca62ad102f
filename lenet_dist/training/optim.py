"""Optimizer and learning-rate schedule, from the config."""

from __future__ import annotations

import torch

from lenet_dist.config import Config


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return _eager(torch.optim.SGD)(model.parameters(), lr=o.lr, momentum=o.momentum,
                                       weight_decay=o.weight_decay, nesterov=o.momentum > 0)
    cls = _eager(torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam)
    # fused: one kernel for all ten parameter tensors instead of a loop of small ops (~10% of a
    # LeNet5 step on CPU)
    return cls(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, fused=True)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    s = cfg.schedule
    if s.name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, total_steps=total_steps,
                                                   pct_start=s.warmup_fraction)
    if s.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


def _eager(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`cls` with its methods called without their torch.compile guards. torch.optim wraps step,
    zero_grad, add_param_group and (load_)state_dict in wrappers that import torch._dynamo on first
    use: 1.1 s of pure-Python imports, a third of a 2-core job's start, for a guard this eager job
    never needs (it does not compile the optimizer). Same kernels, same state_dict format, same
    weights bit for bit (tests/unit/test_optim.py). Where a torch release drops a wrapper
    (no __wrapped__), its method is used as it is."""
    def raw(method):
        return getattr(method, "__wrapped__", method)

    unguarded_step = raw(cls.step)

    def step(self, closure=None):
        with torch.no_grad():  # what the step wrapper does for a non-differentiable optimizer
            return unguarded_step(self, closure)

    methods = {name: raw(getattr(torch.optim.Optimizer, name))
               for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict")}
    return type(cls.__name__, (cls,), {**methods, "step": step, "__doc__": cls.__doc__})
