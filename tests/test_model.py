import ast
from pathlib import Path

import torch

from lenet_dist.model import LeNet5


def test_lenet5_has_61706_parameters_and_10_logits():
    model = LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_fully_connected_layers_have_activations_between_them():
    kinds = [type(m).__name__ for m in LeNet5().classifier]
    assert kinds == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_model_module_is_pure_torch():
    import lenet_dist.model as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m.split(".")[0] for m in imported} & {"accelerate", "wandb", "os", "pathlib"}
