import torch

from lenet_dist.model import LeNet5


def test_lenet5_has_61706_parameters_and_10_logits():
    model = LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_fully_connected_layers_have_activations_between_them():
    kinds = [type(m).__name__ for m in LeNet5().classifier]
    assert kinds == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]


