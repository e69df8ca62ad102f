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


def test_the_mirror_averaged_reading_is_the_mean_of_both_probabilities_and_adds_no_parameters():
    from lenet_dist.model import MirrorAveraged, for_inference

    torch.manual_seed(0)
    model = LeNet5().eval()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        got = MirrorAveraged(model)(x)
        want = ((model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2).log()
        huge = MirrorAveraged(model)(x * 1e4)  # probabilities that underflow float32 stay finite logs
    assert torch.allclose(got, want, atol=1e-5) and torch.isfinite(huge).all()
    assert sum(p.numel() for p in MirrorAveraged(model).parameters()) == 61_706
    assert for_inference(model, False) is model
    symmetric = torch.randn(2, 1, 28, 14)
    symmetric = torch.cat([symmetric, symmetric.flip(-1)], -1)  # its own mirror: the reading is the plain one
    with torch.no_grad():
        assert torch.allclose(MirrorAveraged(model)(symmetric), model(symmetric).log_softmax(1), atol=1e-5)
