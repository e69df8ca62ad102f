"""Opt-in CPU speed-ups for training (`train.cpu_speedups`, off by default, on in configs/fast.yaml).

Everything here is a trick for one kind of machine: the job stays correct without it, it never
touches model.py, it does nothing on CUDA, and deleting this file and the config key leaves a
trainer whose other tests pass. Measured in docs/benchmarks.md with the command that reproduces it.

What it does: in bf16 training on CPU, LeNet5's first stage, relu(max_pool2d(conv1(x), 2)), runs as
one matrix product and three maxima. There both stock kernels run a scalar inner loop over the 6
channels (oneDNN's convolution with one input channel, and the channels-last pooling kernel).

How: the padded image is rearranged space-to-depth (2x2 pixel blocks become 4 channels), so each of
the four positions of a pooling window is its own set of 6 output rows of one 5x5 conv written as a
3x3 conv over the blocks: one (24 x 36) @ (36 x pixels) product with the batch innermost. The pool is
the maximum of four contiguous blocks; its backward sends each window's gradient to the window's
first maximum in raster order, like max_pool2d's (ties included). The bias is added after the pool
and the ReLU after that (relu∘pool = pool∘relu). The parameters stay conv1's own, so state_dict keys
and checkpoints do not change. Values match the stock layers to rounding (the sums run in another
order). conv2 then runs on the NCHW result, where oneDNN's bf16 kernel is faster than channels-last.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn


def applies_to(device: torch.device) -> bool:
    """Only the CPU: on CUDA the stock cuDNN kernels are the fast path."""
    return torch.device(device).type == "cpu"


def enable(model: nn.Module, enabled: bool, device: torch.device) -> nn.Module:
    """`model` (a LeNet5) with its feature stack swapped for one that takes the fused first stage in
    bf16 CPU training, when `enabled` and on CPU; else `model` untouched. Same modules, same
    parameters and state_dict keys: the swap only changes which kernels the forward calls."""
    if enabled and applies_to(device) and not isinstance(model.features, FusedFirstStage):
        model.features = FusedFirstStage(*model.features)
    return model


class FusedFirstStage(nn.Sequential):
    """LeNet5's `features` (conv, ReLU, pool, conv, ReLU, pool), taking the fused first stage where
    `fused_stage_applies`; the stock layers everywhere else (fp32, evaluation, predict, tracing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, conv2 = self[0], self[3]
        if not fused_stage_applies(conv1, x):
            return super().forward(x)
        y = second_conv(conv_pool_relu(x, conv1), conv2)
        return self[5](self[4](y))


def fused_stage_applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """bf16 autocast training on CPU (gradients on), a conv of LeNet5's first kind (one input channel,
    5x5, padding 2, stride 1), even-sized images, outside tracing. Not in fp32, where the stock pool
    is fast enough that the two came out even; not without gradients, so predictions stay the stock
    layers' bit for bit."""
    return (x.device.type == "cpu" and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and x.dim() == 4 and x.shape[1] == 1 and x.shape[2] % 2 == 0
            and x.shape[3] % 2 == 0 and conv.in_channels == 1 and conv.kernel_size == (5, 5)
            and conv.padding == (2, 2) and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and conv.bias is not None and not torch.jit.is_tracing())


def conv_pool_relu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """relu(max_pool2d(conv(x), 2)) for x of shape (n, 1, h, w); returns (n, C, h/2, w/2), contiguous."""
    n, _, h, w = x.shape
    ho, wo = h // 2, w // 2
    c = conv.out_channels
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    pixels = x.reshape(n, h * w).t().to(dtype)  # (h*w, n): the batch innermost
    blocks = pixels.new_zeros(2, 2, ho + 2, wo + 2, n)  # (row, column) in the 2x2 block, block row, column
    blocks[:, :, 1:ho + 1, 1:wo + 1] = pixels.view(ho, 2, wo, 2, n).permute(1, 3, 0, 2, 4)  # padding 2 = 1 block
    row, plane = (wo + 2) * n, (ho + 2) * (wo + 2) * n
    cols = blocks.as_strided((4, 3, 3, ho, wo, n), (plane, row, n, row, n, 1)).reshape(36, ho * wo * n)
    taps = torch.cat((conv.weight.reshape(c, 25), conv.weight.new_zeros(c, 1)), 1)[:, _tap_index()]
    weight = taps.permute(1, 2, 0, 3, 4, 5).reshape(4 * c, 36).to(dtype)  # rows: window position, channel
    pooled = _FirstMaxOf4.apply(torch.mm(weight, cols).view(4, c, ho * wo * n))
    out = (pooled + conv.bias.to(dtype).view(c, 1)).relu_()
    return out.view(c, ho, wo, n).permute(3, 0, 1, 2).contiguous()


def second_conv(a: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(a) on the first stage's contiguous (NCHW) output, returned in the conv weight's memory
    format (channels-last for the pool after it)."""
    fmt = torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    y = nn.functional.conv2d(a, conv.weight.contiguous(), conv.bias, conv.stride, conv.padding, conv.dilation,
                             conv.groups)
    return y.contiguous(memory_format=fmt)


@cache
def _tap_index() -> torch.Tensor:
    """(2, 2, 4, 3, 3): for output position (dy, dx) in the pooling window, block channel (sy, sx) and
    block offset (a, b), the 5x5 tap ki*5+kj it multiplies, or 25 (a zero) where it falls outside."""
    index = torch.full((2, 2, 4, 3, 3), 25, dtype=torch.long)
    for dy, dx, sy, sx, a, b in ((dy, dx, sy, sx, a, b) for dy in range(2) for dx in range(2) for sy in range(2)
                                 for sx in range(2) for a in range(3) for b in range(3)):
        ki, kj = 2 * a + sy - dy, 2 * b + sx - dx
        if 0 <= ki < 5 and 0 <= kj < 5:
            index[dy, dx, sy * 2 + sx, a, b] = ki * 5 + kj
    return index


class _FirstMaxOf4(torch.autograd.Function):
    """The maximum over dim 0 of a (4, ...) tensor whose rows are a pooling window's positions in raster
    order; the gradient goes to the first maximum, as max_pool2d's does. The 0/1 masks are kept in the
    input's dtype: comparisons into bf16 are vectorised on CPU, into bool they are not."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        p00, p01, p10, p11 = y
        top, bottom = torch.maximum(p00, p01), torch.maximum(p10, p11)
        masks = y.new_empty(3, *p00.shape)
        torch.ge(top, bottom, out=masks[0])  # the top row holds the first maximum
        torch.ge(p00, p01, out=masks[1])  # within the top row, the left one does
        torch.ge(p10, p11, out=masks[2])  # within the bottom row, the left one does
        ctx.save_for_backward(masks)
        return torch.maximum(top, bottom)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        in_top, left_top, left_bottom = ctx.saved_tensors[0]
        out = grad.new_empty(4, *grad.shape)
        top = grad * in_top
        bottom = grad - top
        torch.mul(top, left_top, out=out[0])
        torch.sub(top, out[0], out=out[1])
        torch.mul(bottom, left_bottom, out=out[2])
        torch.sub(bottom, out[2], out=out[3])
        return out
