"""How DDP averages gradients over gloo (CPU): through shared memory when every rank runs on this
machine (shared_memory_sync), else one all-gather and a local sum instead of gloo's ring all-reduce.

A LeNet5's gradients are one 247 KB bucket, so the exchange is all latency: a ring all-reduce is a
reduce-scatter plus an all-gather, twice the message rounds of a single all-gather. Between two
processes on a 2-core machine an all-gather of the bucket took 0.7-1.1 ms against 1.0-2.7 ms for the
all-reduce, and 2-process training gained 6% (jobs/benchmark.py's 2-process row). Every rank then
sums the same rows in rank order, so all ranks hold the same bits, and for 2 ranks those bits are the
all-reduce's (g0/2 + g1/2: one addition commutes). Each rank receives world x 247 KB: nothing for
the few CPU processes gloo jobs use. NCCL (GPU) keeps DDP's own all-reduce."""

from __future__ import annotations

from typing import Any

import torch


def gather_gradients_on_gloo(model: Any, timeout_s: float = 600.0, shared_memory: bool = True) -> str | None:
    """On a DDP model whose process group is gloo, register the exchange: through shared memory when
    every rank is on this machine (shared_memory_sync), else the all-gather. Returns which ("shared
    memory", "all-gather"), or None for any other model (NCCL keeps DDP's all-reduce)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from lenet_dist.training import shared_memory_sync

    if not (isinstance(model, DistributedDataParallel) and dist.get_backend(model.process_group) == "gloo"):
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    exchange = None
    if shared_memory and {(p.device.type, p.dtype) for p in params} == {("cpu", params[0].dtype)}:
        # DDP's buckets then hold one dtype, in CPU memory, at most every gradient
        exchange = shared_memory_sync.open_exchange(model.process_group, sum(p.numel() for p in params),
                                                    params[0].dtype, timeout_s)
    if exchange is None:
        model.register_comm_hook(model.process_group, _all_gather_mean)
        return "all-gather"
    model.register_comm_hook(exchange, _shared_memory_mean)
    return "shared memory"


def _shared_memory_mean(exchange, bucket):  # unannotated, as below
    mean = torch.futures.Future()
    mean.set_result(exchange.mean(bucket.buffer()))
    return mean


def _all_gather_mean(group, bucket):  # unannotated: DDP checks the annotations' objects (GradBucket, Future)
    """The DDP comm hook: the mean of every rank's bucket, summed in rank order, as a completed Future.

    The exchange waits here rather than in a callback chained on gloo's future: the one bucket is
    ready only at the end of backward, so there is nothing to overlap, and a Python callback run and
    released on gloo's worker thread is what can abort a process that exits right after its last
    collective. A peer's failure (timeout, closed connection) raises here, inside backward.
    """
    import torch.distributed as dist

    grads = bucket.buffer()
    world = dist.get_world_size(group)
    gathered = torch.empty(world * grads.numel(), dtype=grads.dtype, device=grads.device)  # gloo: flat
    dist.all_gather_single(gathered, grads, group=group)
    mean = torch.futures.Future()
    mean.set_result(gathered.view(world, -1).div_(world).sum(0))  # divided first, as DDP's all-reduce does
    return mean
