"""LeNet5's first stage, relu(max_pool2d(conv1(x), 2)), as one matrix product and three maxima, for
bf16 training on CPU.

Why: there the first stage was over half of a training step (batch 256, 2 cores: conv1 ~1.9 ms, its
max-pool ~3.4 ms, their backward ~1.6 ms, of ~11 ms). Both kernels run a scalar inner loop over
the 6 channels: oneDNN's convolution with one input channel, and the channels-last pooling kernel
(with 16 channels, the second pool, it is 30x faster per element).

How: the padded image is rearranged space-to-depth (2x2 pixel blocks become 4 channels), so each of the
four positions of a pooling window is its own set of 6 output rows of one 5x5 conv written as a 3x3
conv over the blocks: a (24 x 36) @ (36 x pixels) product, with the batch innermost so every step is
a long contiguous run. The pool is then the maximum of four contiguous blocks, and its backward sends
each window's gradient to the window's first maximum in raster order, exactly like max_pool2d's
(ties included). The bias is added after the pool (the same for all four positions) and the ReLU
after that (relu∘pool = pool∘relu). The parameters are conv1's own (`weight`, `bias`): checkpoints
do not change. Values match the convolution to rounding (the sums run in another order), gradients
likewise; the same seed still gives the same weights. `second_conv` then runs conv2 on the result
in NCHW, where oneDNN's bf16 kernel is faster than its channels-last one.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn


def applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Training in bf16 on CPU (autocast, gradients on), LeNet5's conv1 (one input channel, 5x5,
    padding 2, stride 1), a batch of even-sized images, outside tracing (`lenet-dist export` records
    the plain layers). Not in fp32: there the pooling kernel is twice as fast and the product slower,
    and the two came out even (default config, batch 128). Not without gradients (evaluation,
    predict): MaxPool2x2's two maxima already make that pool cheap, and predictions stay the plain
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
    format (channels-last for the pool after it). oneDNN's NCHW bf16 kernel is faster here than its
    channels-last one: forward + backward of conv2 for 128 images on one thread 1.84 vs 2.66 ms
    (its input gradient has the same 6 channels), fast.yaml +5-11% on 2 processes, alternated."""
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
    input's dtype: comparisons into bf16 are vectorised on CPU, into bool they are ~6x slower."""

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
