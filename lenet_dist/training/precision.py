"""What `train.mixed_precision: auto` means on this process's device: bf16 only where the hardware
computes it natively, else full precision."""

from __future__ import annotations

import torch

NATIVE_BF16_CUDA = (8, 0)  # Ampere and later; earlier cards (V100 7.0, T4 7.5) emulate bf16, slower than fp32


def resolve(mixed_precision: str, device: torch.device) -> str:
    """`mixed_precision` with "auto" replaced by "bf16" or "no" for `device` (set it as the current
    CUDA device first: asking before each rank has chosen its GPU opens a context on GPU 0)."""
    if mixed_precision != "auto":
        return mixed_precision
    return "bf16" if native_bf16(device) else "no"


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        # not torch.cuda.is_bf16_supported(): by default it counts emulated bf16 too
        return torch.cuda.get_device_capability(device) >= NATIVE_BF16_CUDA
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # AVX512-BF16 / AMX CPUs
