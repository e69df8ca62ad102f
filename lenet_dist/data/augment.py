"""Batched on-device augmentation: one small random affine per sample, whole batch at once
(affine_grid + grid_sample), no per-sample PIL. Images are in [0, 1] with a 0 background, so
zero padding matches the background."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lenet_dist.config import AugmentConfig


def batch_generator(device: torch.device, seed: int, epoch: int, step: int) -> torch.Generator:
    """The augmentation randomness of one batch is a function of where it is in training, so a
    resumed run draws exactly what the uninterrupted run drew, with no RNG state to store."""
    key = (seed * 1_000_003 + epoch) * 1_000_003 + step
    return torch.Generator(device=device).manual_seed(key % (2**63))


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator, start: int = 0,
                  total: int | None = None, mirror_safe: bool = False) -> torch.Tensor:
    """The random affine, then (each only when switched on, so the draws of a recipe without them
    stay what they were) a left-right mirror of half the images and random erasing. mirror_safe:
    the dataset's classes survive a mirror (what augment.mirror=auto asks)."""
    total = x.shape[0] if total is None else total
    x = random_affine(x, cfg, generator, start, total)
    if mirrors(cfg.mirror, mirror_safe):
        x = _mirror(x, _draws(generator, x, start, total, 1)[:, 0])
    if cfg.erase:
        x = _erase(x, cfg.erase, _draws(generator, x, start, total, 5))
    return x


def mirrors(setting: bool | str, mirror_safe: bool) -> bool:
    """What augment.mirror and augment.test_mirror mean for a dataset: true always; auto only where
    every class survives a mirror (a shoe stays a shoe, a 3 does not stay a 3)."""
    return setting is True or (setting == "auto" and mirror_safe)


def _draws(generator: torch.Generator, x: torch.Tensor, start: int, total: int, k: int) -> torch.Tensor:
    """k uniform draws in [0, 1) per image of the global batch; this rank's rows."""
    return torch.rand(total, k, generator=generator, device=x.device, dtype=x.dtype)[start:start + x.shape[0]]


def _mirror(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.where((u < 0.5).view(-1, 1, 1, 1), x.flip(-1), x)


def _erase(x: torch.Tensor, p: float, u: torch.Tensor) -> torch.Tensor:
    """With probability p, blank (to the background) a rectangle of 2-25% of the image with an
    aspect ratio within 1/3..3, anywhere inside it."""
    height, width = x.shape[-2:]
    area = (0.02 + u[:, 1] * 0.23) * height * width
    ratio = torch.exp((u[:, 2] * 2 - 1) * math.log(3.0))
    h = (area * ratio).sqrt().clamp(1, height)
    w = (area / ratio).sqrt().clamp(1, width)
    top = (u[:, 3] * (height - h)).view(-1, 1, 1)
    left = (u[:, 4] * (width - w)).view(-1, 1, 1)
    rows = torch.arange(height, device=x.device, dtype=x.dtype).view(1, -1, 1)
    cols = torch.arange(width, device=x.device, dtype=x.dtype).view(1, 1, -1)
    inside = ((rows >= top) & (rows < top + h.view(-1, 1, 1)) & (cols >= left) & (cols < left + w.view(-1, 1, 1)))
    blank = inside & (u[:, 0] < p).view(-1, 1, 1)
    return x.masked_fill(blank.unsqueeze(1), 0.0)


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
                  start: int = 0, total: int | None = None) -> torch.Tensor:
    """Rotate by up to ±degrees, zoom by up to ±scale, shift by up to ±translate of the size.
    The draws are made for the whole global batch of `total` images and this rank takes the rows of
    its images, [start, start + len(x)), so the result does not depend on the world size."""
    n = x.shape[0]
    total = n if total is None else total
    u = torch.rand(total, 4, generator=generator, device=x.device, dtype=x.dtype)
    u = u[start:start + n] * 2 - 1
    angle = u[:, 0] * math.radians(cfg.degrees)
    zoom = 1 + u[:, 1] * cfg.scale
    # affine_grid maps output to input coordinates, so the inverse transform; the image spans 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, u[:, 2] * cfg.translate * 2], 1),
         torch.stack([sin, cos, u[:, 3] * cfg.translate * 2], 1)],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.stroke or cfg.contrast:  # drawn after the affine's numbers, so those stay what they were
        x = _stroke_and_contrast(x, cfg, generator, start, total)
    return x


def pen_width(x: torch.Tensor, amount: torch.Tensor | float) -> torch.Tensor:
    """Strokes as a thicker (amount > 0) or thinner (amount < 0) pen would draw them: a blend by |amount|
    towards a 3x3 max (or min) filter of the image."""
    amount = torch.as_tensor(amount, dtype=x.dtype, device=x.device)
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
    return torch.where(amount > 0, x + amount * (thick - x), x - amount * (thin - x))


def _stroke_and_contrast(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator, start: int,
                         total: int) -> torch.Tensor:
    """Thicker or thinner strokes (a blend towards a 3x3 max or min filter) and a gamma on the ink."""
    n = x.shape[0]
    u = torch.rand(total, 2, generator=generator, device=x.device, dtype=x.dtype)[start:start + n]
    u = (u * 2 - 1).view(n, 2, 1, 1)
    x = pen_width(x, u[:, 0:1] * cfg.stroke)
    gamma = torch.exp(u[:, 1:2] * math.log1p(cfg.contrast))
    return x.clamp(0, 1).pow(gamma)
