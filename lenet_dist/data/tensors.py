"""Datasets as tensors in memory (on the training device), seeded epoch order, rank shards.

No per-sample PIL/ToTensor and no DataLoader: 60k 28x28 images are 188 MB as float32, so the
whole split lives on the device and a batch is one index_select.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lenet_dist.data.datasets import DatasetSpec
from lenet_dist.errors import DataError
from lenet_dist.records import Normalization

IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # labels, images


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file as a uint8 array. Not torchvision's read_image_file/read_label_file: importing
    torchvision.datasets costs seconds at every job start, and a wrong file fails there with a bare
    AssertionError (a traceback) instead of a DataError the user can act on."""
    raw = Path(path).read_bytes()
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_MAGIC[ndim]:
        raise DataError(f"{path} is not an IDX file with {ndim} dimension(s)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@dataclass
class Split:
    """images: float32 [N, 1, 28, 28] in [0, 1], or the model's inputs ((x - mean) / std) once
    `normalized`; labels: int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    normalized: bool = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def normalize_(self, norm: Normalization) -> Split:
        """In place (no second copy of the split): the same values `norm.apply` gives, bit for bit."""
        if not self.normalized:
            self.images.sub_(norm.mean).div_(norm.std)
            self.normalized = True
        return self


def load_split(spec: DatasetSpec, data_dir: Path, split: str, subset: int | None = None,
               device: torch.device | str = "cpu") -> Split:
    """Read one split (already verified by fetch.ensure_dataset); the first `subset` samples."""
    image_file, label_file = spec.files[split]
    raw = spec.raw_dir(data_dir)
    images = read_idx(raw / image_file.name, 3)[:subset]
    labels = read_idx(raw / label_file.name, 1)[:subset]
    x = torch.from_numpy(images.copy()).unsqueeze(1).to(device=device, dtype=torch.float32).div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    return Split(x, y)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of one epoch: a function of (seed, epoch) alone, so a resumed run and
    every rank derive the same order without communicating or storing it."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=gen)


def steps_per_epoch(n: int, global_batch: int) -> int:
    return n // global_batch  # last partial batch dropped: every rank must take the same steps


def rank_span(global_batch: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of this rank's slice of a global batch: contiguous, disjoint, covering, and as
    even as can be (sizes differ by at most one: 128 over 3 ranks is 43, 43, 42)."""
    base, extra = divmod(global_batch, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def rank_batch(order: torch.Tensor, step: int, global_batch: int, rank: int, world: int) -> torch.Tensor:
    """Indices of this rank's part of global batch `step`: the global batch is the same for any
    world size, and ranks take disjoint contiguous slices of it (rank_span)."""
    start, stop = rank_span(global_batch, rank, world)
    return order[step * global_batch + start: step * global_batch + stop]


def eval_shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous share of n samples: disjoint, covering, no padding."""
    bounds = torch.linspace(0, n, world + 1).round().long().tolist()
    return bounds[rank], bounds[rank + 1]
