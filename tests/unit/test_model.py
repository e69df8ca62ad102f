import pytest
import torch

from lenet_dist.model import LeNet5, MaxPool2x2


def test_lenet5_has_61706_parameters_and_10_logits():
    model = LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_fully_connected_layers_have_activations_between_them():
    kinds = [type(m).__name__ for m in LeNet5().classifier]
    assert kinds == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]




@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7, 6, 28, 28), (7, 16, 10, 10), (3, 1, 28, 28)])
def test_the_pool_without_gradients_gives_max_pool2d_values_bit_for_bit(dtype, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-4, 4, shape, generator=g).to(dtype)  # many ties
    x[0, 0, 0, 0] = float("nan")
    x = x + torch.randn(shape, generator=g).to(dtype) * (torch.arange(shape[0]) % 2).view(-1, 1, 1, 1)
    pool = MaxPool2x2()
    assert torch.equal(pool(x[1]), torch.nn.functional.max_pool2d(x[1], 2)), "an unbatched C, H, W input too"
    for fmt in (torch.channels_last, torch.contiguous_format):
        xf = x.contiguous(memory_format=fmt)
        with torch.no_grad():
            assert torch.equal(pool(xf).nan_to_num(7), torch.nn.functional.max_pool2d(xf, 2).nan_to_num(7))
    ours, kernel = (x.contiguous(memory_format=torch.channels_last).requires_grad_() for _ in range(2))
    pool(ours).sum().backward()  # training: the pooling kernel, with its gradient
    torch.nn.functional.max_pool2d(kernel, 2).sum().backward()
    assert torch.equal(ours.grad, kernel.grad)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace's deprecation notice
def test_export_tracing_sees_the_same_graph_every_time():
    """`lenet-dist export` traces the model and checks a second trace against the first."""
    model = LeNet5().eval()
    for _ in range(3):
        torch.jit.trace(model, torch.randn(4, 1, 28, 28))  # raises TracingCheckError when they differ
