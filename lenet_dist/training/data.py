"""The training and test splits on the training device, and the step counts they imply."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lenet_dist.config import Config
from lenet_dist.data.augment import mirrors
from lenet_dist.data.datasets import DatasetSpec
from lenet_dist.data.fetch import ensure_dataset
from lenet_dist.data.folder import load_folder
from lenet_dist.data.tensors import Split, load_split, steps_per_epoch
from lenet_dist.errors import ConfigError
from lenet_dist.training.distributed import Processes

DATA_FETCHED = "LENET_DIST_DATA_FETCHED"  # set by a job script that fetched the data before starting the ranks


@dataclass
class TrainingData:
    spec: DatasetSpec
    train: Split
    test: Split  # the held-out split every epoch is evaluated on (see held_out)
    steps_per_epoch: int
    total_steps: int
    memory_format: torch.memory_format = torch.contiguous_format  # how batches are laid out for the model
    held_out: str = "test"  # what `test` holds: the test set, or a validation split carved from training
    mirror_average: bool = False  # evaluate (and have predict read) each image averaged with its mirror


def load_data(cfg: Config, procs: Processes) -> TrainingData:
    # every rank asks; the fetch lock makes one per machine fetch while the others wait on the lock,
    # not in a collective (a slow download must not look like a hung rank). Where the job script
    # fetched once before starting the ranks (slurm/train.sh), they only verify.
    fetched = os.environ.get(DATA_FETCHED) == "1"
    spec = ensure_dataset(cfg.data.dataset, cfg.data.data_dir, fetch=not fetched)
    train_set = load_split(spec, cfg.data.data_dir, "train", cfg.data.train_subset, procs.device)
    if cfg.data.validation_size:
        train_set, held_out = carve_validation(train_set, cfg.data.validation_size)
    else:
        held_out = load_split(spec, cfg.data.data_dir, "test", cfg.data.test_subset, procs.device)
    if cfg.data.extra_folder is not None:
        train_set = with_extra(train_set, load_folder(cfg.data.extra_folder, spec.classes), cfg.data.extra_repeat)
    if not cfg.augment.enabled:  # augmentation needs the pixels; else normalise once, not every step
        train_set.normalize_(spec.normalization)
    steps = steps_per_epoch(len(train_set), cfg.train.batch_size)
    if steps == 0:
        raise ConfigError(f"train.batch_size ({cfg.train.batch_size}) is larger than the training set "
                          f"({len(train_set)} images)")
    return TrainingData(spec, train_set, held_out, steps, steps * cfg.train.epochs, memory_format(cfg),
                        "validation" if cfg.data.validation_size else "test",
                        mirrors(cfg.augment.test_mirror, spec.mirror_safe))


def with_extra(train: Split, extra: Split, repeat: int) -> Split:
    """The training split followed by `repeat` copies of the extra images (the epoch order mixes them)."""
    device = train.labels.device
    return Split(torch.cat([train.images, extra.images.to(device).repeat(repeat, 1, 1, 1)]),
                 torch.cat([train.labels, extra.labels.to(device).repeat(repeat)]))


VALIDATION_SEED = 20_261_206  # one fixed carve: every seed and recipe is compared on the same images


def carve_validation(train: Split, size: int) -> tuple[Split, Split]:
    """(the rest, the validation split): `size` training images picked by a fixed seeded
    permutation (classes and writers mixed as in the whole set), the rest kept in file order."""
    if size >= len(train):
        raise ConfigError(f"data.validation_size ({size}) must leave training images: the training set has "
                          f"{len(train)}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    keep = order[:-size].sort().values.to(train.labels.device)
    held = order[-size:].sort().values.to(train.labels.device)
    return (Split(train.images[keep], train.labels[keep]), Split(train.images[held], train.labels[held]))


def memory_format(cfg: Config) -> torch.memory_format:
    return torch.channels_last if cfg.train.channels_last else torch.contiguous_format
