"""`mixed_precision: auto` picks bf16 only where the GPU (or CPU) computes it natively, asked of this
rank's own GPU after it is made current."""

from __future__ import annotations

import pytest
import torch

from lenet_dist.training import distributed, precision


@pytest.mark.parametrize(("capability", "expected"), [((7, 0), "no"), ((7, 5), "no"), ((8, 0), "bf16"),
                                                      ((8, 6), "bf16"), ((9, 0), "bf16")])
def test_auto_is_bf16_from_compute_capability_8_0_on(monkeypatch, capability, expected):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation: not asked
    assert precision.resolve("auto", torch.device("cuda", 3)) == expected
    assert asked == [torch.device("cuda", 3)]


def test_an_explicit_choice_is_kept():
    assert precision.resolve("fp16", torch.device("cuda", 0)) == "fp16"
    assert precision.resolve("no", torch.device("cpu")) == "no"


def test_each_rank_sets_its_own_gpu_before_asking_about_it(monkeypatch):
    calls = []
    monkeypatch.setenv("LOCAL_RANK", "5")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set", d)))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: calls.append(("ask", d)) or (7, 0))
    assert precision.resolve("auto", distributed.local_cuda_device()) == "no"
    assert calls == [("set", torch.device("cuda", 5)), ("ask", torch.device("cuda", 5))]
