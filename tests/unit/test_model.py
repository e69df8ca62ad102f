import pytest
import torch

from lenet_dist.model import LeNet5


def test_lenet5_has_61706_parameters_and_10_logits():
    model = LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_fully_connected_layers_have_activations_between_them():
    kinds = [type(m).__name__ for m in LeNet5().classifier]
    assert kinds == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_the_model_is_stock_torch_nn_layers_in_lenet5_order():
    kinds = [type(m) for m in LeNet5().features]
    nn = torch.nn
    assert kinds == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d]
    assert type(LeNet5()).forward.__code__.co_names == ("classifier", "features")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace's deprecation notice
def test_export_tracing_sees_the_same_graph_every_time():
    """`lenet-dist export` traces the model and checks a second trace against the first."""
    model = LeNet5().eval()
    for _ in range(3):
        torch.jit.trace(model, torch.randn(4, 1, 28, 28))  # raises TracingCheckError when they differ
