"""Which torch device a command runs on (training picks its own through accelerate)."""

from __future__ import annotations

from lenet_dist.errors import ConfigError


def pick_device(name: str = "auto"):
    """'auto' → cuda when present, else cpu; an explicit device must exist."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"device '{name}' is not one of auto, cpu, cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)
