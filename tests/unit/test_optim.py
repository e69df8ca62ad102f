"""The job's optimizers skip torch.optim's torch.compile guards (they import torch._dynamo, 1.1 s of
a job's start): same steps, same state_dict, bit for bit, and no torch._dynamo import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lenet_dist.config import Config
from lenet_dist.model import LeNet5
from lenet_dist.training.optim import build_optimizer, build_scheduler

TORCH_CLASSES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def _train(cfg: Config, optimizer_of, steps: int = 6, resume_from: dict | None = None):
    torch.manual_seed(0)
    model = LeNet5()
    optimizer = optimizer_of(model)
    scheduler = build_scheduler(cfg, optimizer, total_steps=2 * steps)
    if resume_from is not None:
        optimizer.load_state_dict(resume_from)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    return model, optimizer


def _torch_optimizer(cfg: Config):
    o = cfg.optim

    def build(model):
        if o.name == "sgd":
            return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                   nesterov=o.momentum > 0)
        return TORCH_CLASSES[o.name](model.parameters(), lr=o.lr, weight_decay=o.weight_decay, fused=True)
    return build


def _same_state(a: dict, b: dict) -> bool:
    return a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys() and all(
        torch.equal(a["state"][k][n], b["state"][k][n]) for k in a["state"] for n in a["state"][k])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_jobs_optimizer_steps_exactly_like_torch_optim(name: str):
    cfg = Config.model_validate({"optim": {"name": name, "lr": 0.01, "weight_decay": 1e-4}})
    ours_model, ours = _train(cfg, lambda m: build_optimizer(cfg, m))
    torch_model, theirs = _train(cfg, _torch_optimizer(cfg))
    assert isinstance(ours, TORCH_CLASSES[name])
    assert all(torch.equal(a, b) for a, b in zip(ours_model.state_dict().values(),
                                                  torch_model.state_dict().values(), strict=True))
    assert _same_state(ours.state_dict(), theirs.state_dict()), "the checkpoint's optimizer state is unchanged"
    # a state saved by either loads into the other and continues identically
    _, continued_ours = _train(cfg, lambda m: build_optimizer(cfg, m), resume_from=theirs.state_dict())
    _, continued_theirs = _train(cfg, _torch_optimizer(cfg), resume_from=ours.state_dict())
    assert _same_state(continued_ours.state_dict(), continued_theirs.state_dict())


def test_training_steps_do_not_import_torch_dynamo():
    code = """
import sys, torch
from lenet_dist.config import Config
from lenet_dist.model import LeNet5
from lenet_dist.training.optim import build_optimizer, build_scheduler
cfg = Config()
model = LeNet5()
opt = build_optimizer(cfg, model)
sched = build_scheduler(cfg, opt, 10)
for _ in range(2):
    model(torch.randn(4, 1, 28, 28)).sum().backward(); opt.step(); opt.zero_grad(); sched.step()
opt.load_state_dict(opt.state_dict())
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
