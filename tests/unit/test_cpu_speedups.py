"""The opt-in CPU kernels (lenet_dist/training/cpu_speedups.py): they apply only on CPU, keep the
model's parameters and checkpoint keys, and compute LeNet5's first stage like the stock layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_dist.model import LeNet5
from lenet_dist.training import cpu_speedups
from lenet_dist.training.cpu_speedups import FusedFirstStage, conv_pool_relu, fused_stage_applies, second_conv


def _reference(x, conv):
    return F.max_pool2d(torch.relu(conv(x)), 2)


def test_a_cuda_device_is_left_stock_and_a_cpu_one_only_when_asked():
    assert not cpu_speedups.applies_to(torch.device("cuda", 0))
    assert isinstance(cpu_speedups.enable(LeNet5(), True, torch.device("cuda", 0)).features, nn.Sequential)
    assert type(cpu_speedups.enable(LeNet5(), True, torch.device("cuda")).features) is nn.Sequential
    assert type(cpu_speedups.enable(LeNet5(), False, torch.device("cpu")).features) is nn.Sequential
    assert type(cpu_speedups.enable(LeNet5(), True, torch.device("cpu")).features) is FusedFirstStage


def test_enabling_keeps_the_parameters_and_state_dict_keys():
    torch.manual_seed(0)
    plain = LeNet5()
    fast = cpu_speedups.enable(LeNet5(), True, torch.device("cpu"))
    fast.load_state_dict(plain.state_dict())
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(fast(x), plain(x)), "fp32 and evaluation: the stock layers, bit for bit"


def _integer_conv(g: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(1, 6, 5, padding=2).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-2, 3, conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randint(-3, 4, conv.bias.shape, generator=g))
    return conv


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (1, 1, 28, 28), (3, 1, 12, 20)])
def test_values_and_gradients_equal_the_layers_exactly_ties_included(shape):
    """Small integers in float64 make every sum exact, and they make ties everywhere (a flat
    background, like MNIST's): the gradient must go where max_pool2d sends it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, shape, generator=g).double()
    x[0, 0, : shape[2] // 2] = 0
    conv = _integer_conv(g)
    grad_out = torch.randint(-3, 4, (shape[0], 6, shape[2] // 2, shape[3] // 2), generator=g).double()
    ours = conv_pool_relu(x, conv)
    ours_grads = torch.autograd.grad(ours, (conv.weight, conv.bias), grad_out)
    reference = _reference(x, conv)
    reference_grads = torch.autograd.grad(reference, (conv.weight, conv.bias), grad_out)
    assert torch.equal(ours, reference)
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, reference_grads, strict=True))


def test_bf16_training_takes_the_fused_stage_within_rounding_of_the_stock_layers():
    model = cpu_speedups.enable(LeNet5(), True, torch.device("cpu")).to(memory_format=torch.channels_last)
    conv1, conv2 = model.features[0], model.features[3]
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert not fused_stage_applies(conv1, x), "fp32: the stock layers"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fused_stage_applies(conv1, x)
        assert not fused_stage_applies(conv1, x[:, :, :27]), "odd height"
        with torch.no_grad():
            assert not fused_stage_applies(conv1, x), "evaluation and predict: the stock layers"
            plain = nn.Sequential(*model.features)(x)
        y = second_conv(conv_pool_relu(x, conv1), conv2)
        fused = model.features(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert fused.dtype == plain.dtype and torch.allclose(fused.float(), plain.float(), atol=0.1, rtol=0.05)


def test_training_steps_give_the_same_weights_as_the_stock_layers():
    """A few Adam steps in float64 through the fused functions: the same network is trained."""
    def train(fused: bool) -> LeNet5:
        torch.manual_seed(0)
        model = LeNet5().double()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(2)
        for _ in range(3):
            x = torch.randn(16, 1, 28, 28, generator=g, dtype=torch.float64)
            y = torch.randint(0, 10, (16,), generator=g)
            f = model.features
            h = f[5](f[4](second_conv(conv_pool_relu(x, f[0]), f[3]))) if fused else f(x)
            F.cross_entropy(model.classifier(h), y).backward()
            optimizer.step()
            optimizer.zero_grad()
        return model

    for a, b in zip(train(True).parameters(), train(False).parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-9)
