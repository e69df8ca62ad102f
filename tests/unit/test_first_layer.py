"""LeNet5's first stage on CPU (lenet_dist/first_layer.py) against conv2d → max_pool2d → relu."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_dist import first_layer
from lenet_dist.model import LeNet5


def _reference(x, conv):
    return torch.relu(F.max_pool2d(conv(x), 2))


def _integer_conv(g: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(1, 6, 5, padding=2).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-2, 3, conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randint(-3, 4, conv.bias.shape, generator=g))
    return conv


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (1, 1, 28, 28), (3, 1, 12, 20)])
def test_values_and_gradients_equal_the_layers_exactly_ties_included(shape):
    """Small integers in float64 make every sum exact, so any difference is a real one, and they make
    ties everywhere (a flat background, like MNIST's): the gradient must go where max_pool2d sends it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, shape, generator=g).double()
    x[0, 0, : shape[2] // 2] = 0  # a flat area: all four window positions tie
    conv = _integer_conv(g)
    grad_out = torch.randint(-3, 4, (shape[0], 6, shape[2] // 2, shape[3] // 2), generator=g).double()
    ours = first_layer.conv_pool_relu(x, conv)
    ours_grads = torch.autograd.grad(ours, (conv.weight, conv.bias), grad_out)
    reference = _reference(x, conv)
    reference_grads = torch.autograd.grad(reference, (conv.weight, conv.bias), grad_out)
    assert torch.equal(ours, reference)
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, reference_grads, strict=True))


def test_bf16_autocast_gives_bf16_within_rounding_of_the_layers_and_conv2_back_in_channels_last():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 28, 28, generator=g)
    model = LeNet5().to(memory_format=torch.channels_last)
    conv1, conv2 = model.features[0], model.features[3]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = first_layer.conv_pool_relu(x, conv1)
        y = first_layer.second_conv(ours, conv2)
        plain_y = conv2(_reference(x, conv1))
    assert ours.dtype == torch.bfloat16 and ours.is_contiguous()
    assert torch.allclose(ours.float(), _reference(x, conv1), atol=0.05, rtol=0.02)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y.float(), plain_y.float(), atol=0.1, rtol=0.05)


def test_the_model_uses_it_for_bf16_training_only():
    model = LeNet5()
    conv1 = model.features[0]
    x = torch.randn(4, 1, 28, 28)
    assert not first_layer.applies(conv1, x), "fp32: the plain layers"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert first_layer.applies(conv1, x)
        assert not first_layer.applies(conv1, x[:, :, :27]), "odd height"
        assert not first_layer.applies(LeNet5(in_channels=3).features[0], torch.zeros(2, 3, 28, 28))
        with torch.no_grad():
            assert not first_layer.applies(conv1, x), "evaluation and predict: the plain layers"
            plain = model.classifier(model.features(x))
        fused = model(x)
    assert fused.dtype == plain.dtype and torch.allclose(fused.float(), plain.float(), atol=0.05)


def test_training_steps_give_the_same_weights_as_the_plain_layers():
    """A few Adam steps in float64: the fused stage trains the same network."""
    def train(fused: bool) -> LeNet5:
        torch.manual_seed(0)
        model = LeNet5().double()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(2)
        for _ in range(3):
            x = torch.randn(16, 1, 28, 28, generator=g, dtype=torch.float64)
            y = torch.randint(0, 10, (16,), generator=g)
            conv1, conv2 = model.features[0], model.features[3]
            logits = model.classifier(model.features[4:](first_layer.second_conv(
                first_layer.conv_pool_relu(x, conv1), conv2)) if fused else model.features(x))
            F.cross_entropy(logits, y).backward()
            optimizer.step()
            optimizer.zero_grad()
        return model

    for a, b in zip(train(True).parameters(), train(False).parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-9)
