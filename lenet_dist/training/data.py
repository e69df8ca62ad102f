"""The training and test splits on the training device, and the step counts they imply."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lenet_dist.config import Config
from lenet_dist.data.datasets import DatasetSpec
from lenet_dist.data.fetch import ensure_dataset
from lenet_dist.data.tensors import Split, load_split, steps_per_epoch
from lenet_dist.errors import ConfigError
from lenet_dist.training.distributed import Processes

DATA_FETCHED = "LENET_DIST_DATA_FETCHED"  # set by a job script that fetched the data before starting the ranks


@dataclass
class TrainingData:
    spec: DatasetSpec
    train: Split
    test: Split
    steps_per_epoch: int
    total_steps: int
    memory_format: torch.memory_format = torch.contiguous_format  # how batches are laid out for the model


def load_data(cfg: Config, procs: Processes) -> TrainingData:
    # every rank asks; the fetch lock makes one per machine fetch while the others wait on the lock,
    # not in a collective (a slow download must not look like a hung rank). Where the job script
    # fetched once before starting the ranks (slurm/train.sh), they only verify.
    fetched = os.environ.get(DATA_FETCHED) == "1"
    spec = ensure_dataset(cfg.data.dataset, cfg.data.data_dir, fetch=not fetched)
    train_set = load_split(spec, cfg.data.data_dir, "train", cfg.data.train_subset, procs.device)
    if not cfg.augment.enabled:  # augmentation needs the pixels; else normalise once, not every step
        train_set.normalize_(spec.normalization)
    test_set = load_split(spec, cfg.data.data_dir, "test", cfg.data.test_subset, procs.device)
    steps = steps_per_epoch(len(train_set), cfg.train.batch_size)
    if steps == 0:
        raise ConfigError(f"train.batch_size ({cfg.train.batch_size}) is larger than the training set "
                          f"({len(train_set)} images)")
    return TrainingData(spec, train_set, test_set, steps, steps * cfg.train.epochs, memory_format(cfg))


def memory_format(cfg: Config) -> torch.memory_format:
    return torch.channels_last if cfg.train.channels_last else torch.contiguous_format
