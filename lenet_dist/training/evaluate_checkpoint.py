"""`lenet-dist evaluate`: a model checkpoint on its dataset's full test split, on any device;
under a multi-process launcher the test set is sharded and the counts summed."""

from __future__ import annotations

import functools
from pathlib import Path

from lenet_dist.checkpoint import load_model
from lenet_dist.data.fetch import ensure_dataset
from lenet_dist.data.tensors import load_split
from lenet_dist.device import pick_device
from lenet_dist.records import CheckpointMeta
from lenet_dist.training.distributed import close_distributed, env_world_size, make_accelerator
from lenet_dist.training.evaluation import EvalResult, evaluate


def evaluate_checkpoint(path: Path, data_dir: Path, device: str = "auto",
                        ) -> tuple[EvalResult, CheckpointMeta, bool]:
    """Load a model checkpoint on any device and evaluate it on its dataset's full test split.
    Under a multi-process launcher the test set is sharded and the counts summed. Returns the
    result, the checkpoint metadata, and whether this process is the one to report."""
    model, meta = load_model(path)
    dev, shard = pick_device(device), {}
    if env_world_size() > 1:
        acc = make_accelerator("no")
        dev = acc.device
        shard = {"rank": acc.process_index, "world": acc.num_processes,
                 "reduce_sum": functools.partial(acc.reduce, reduction="sum")}
    spec = ensure_dataset(meta.dataset, data_dir)
    split = load_split(spec, data_dir, "test", device=dev)
    result = evaluate(model.to(dev), split, spec, mirror_average=meta.mirror_average, **shard)
    close_distributed()
    return result, meta, shard.get("rank", 0) == 0
