"""How a global batch is shared by any number of processes.

Global batch k of an epoch is the same images for any world size; rank r trains on its contiguous
slice, as even as can be (data/tensors.py's rank_span: 128 over 3 ranks is 43, 43, 42), split again
into train.grad_accum_steps micro-batches. DDP averages the ranks' gradients (sum / world), so
each micro-batch's mean loss is weighted by its share of the global batch: its size x world x
accumulation steps / global batch (accelerate divides by the accumulation steps again). The
update then equals the one-process update on the same global batch, up to the order floating-point
sums run in. Where every micro-batch is the same size the weight is exactly 1 and is not applied:
the same bits as an unweighted mean.

With train.batch_size_per_process set (for clusters: the batch grows with the GPUs), the global
batch is that times the processes, and optim.lr follows it from train.batch_size, the batch the
recipe was tuned at: x (global / train.batch_size) for optim.lr_scaling linear (SGD), its square
root for sqrt (Adam-family optimizers).
"""

from __future__ import annotations

import math

from lenet_dist.config import Config
from lenet_dist.errors import ConfigError


def for_world(cfg: Config, world: int) -> Config:
    """The config as `world` processes run it; ConfigError if they cannot (every micro-batch of
    every rank needs at least one image)."""
    t = cfg.train
    if t.batch_size_per_process is not None:
        global_batch = t.batch_size_per_process * world
        ratio = global_batch / t.batch_size
        lr = cfg.optim.lr * (ratio if cfg.optim.lr_scaling == "linear" else math.sqrt(ratio))
        cfg = cfg.model_copy(update={"train": t.model_copy(update={"batch_size": global_batch}),
                                     "optim": cfg.optim.model_copy(update={"lr": lr})})
    if cfg.train.batch_size < world * cfg.train.grad_accum_steps:
        raise ConfigError(f"train.batch_size ({cfg.train.batch_size}) is smaller than processes x "
                          f"train.grad_accum_steps ({world} x {cfg.train.grad_accum_steps}): some micro-batch would "
                          "be empty; raise the batch or use train.batch_size_per_process")
    return cfg


def micro_batch_weight(micro: int, world: int, accum_steps: int, global_batch: int) -> float:
    """What a micro-batch's mean loss is multiplied by so that the averaged update is the global
    batch's mean: exactly 1.0 when every micro-batch has global_batch / (world x accum_steps) images."""
    return micro * world * accum_steps / global_batch
