"""The gloo gradient exchanges (shared memory; all-gather + local sum) against DDP's own all-reduce, in
real gloo groups of real processes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow  # spawns real process groups


def _shared_buffers() -> set[Path]:
    return set(Path("/dev/shm").glob("lenet-dist-grads-*"))


def _worker(rank: int, world: int, store: str, out: str, exchange: str) -> None:
    import os

    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from lenet_dist.model import LeNet5
    from lenet_dist.training.gradient_sync import gather_gradients_on_gloo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = LeNet5().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(100 + rank)  # every rank its own batch
    x = torch.randn(16, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,), generator=g)
    grads = {}
    for hooked in (False, True):
        ddp = DistributedDataParallel(copy.deepcopy(model))
        if hooked:
            assert gather_gradients_on_gloo(ddp, shared_memory=exchange == "shared memory") == exchange
        for _ in range(2):  # the second step runs on DDP's rebuilt buckets
            ddp.zero_grad(set_to_none=True)
            F.cross_entropy(ddp(x), y).backward()
        grads[hooked] = [p.grad.clone() for p in ddp.module.parameters()]
    torch.save(grads, Path(out) / f"rank{rank}.pt")
    del ddp  # its reducer holds the group
    dist.destroy_process_group()
    # two DDP models alive at interpreter exit can abort it ("terminate called without an active
    # exception": 3 in 70 runs of jobs/exchange_probe.py, which has two; 0 in 100 with one): saved, done
    os._exit(0)


@pytest.mark.parametrize("exchange", ["shared memory", "all-gather"])
@pytest.mark.parametrize("world", [2, 3])
def test_gloo_ranks_average_gradients_like_ddps_all_reduce(world: int, exchange: str, tmp_path: Path):
    left_before = _shared_buffers()
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), str(tmp_path), exchange), nprocs=world, join=True)
    assert _shared_buffers() <= left_before, "the shared buffer is unlinked"
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for r in ranks[1:]:  # every rank holds the same bits: the same rows summed in the same order
        assert all(torch.equal(a, b) for a, b in zip(ranks[0][True], r[True], strict=True))
    for hooked, plain in zip(ranks[0][True], ranks[0][False], strict=True):
        if world == 2:  # g0/2 + g1/2: one addition, so the all-reduce's bits exactly
            assert torch.equal(hooked, plain)
        else:  # 3 terms: the ring's summation order may differ in the last bit
            torch.testing.assert_close(hooked, plain, rtol=1e-6, atol=1e-9)
    assert any(p.abs().sum() > 0 for p in ranks[0][True]), "gradients flowed"


def _refusing_worker(rank: int, store: str, out: str) -> None:
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from lenet_dist.model import LeNet5
    from lenet_dist.training import shared_memory_sync
    from lenet_dist.training.gradient_sync import gather_gradients_on_gloo

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    if rank == 1:  # e.g. another machine, or a /dev/shm it cannot open
        shared_memory_sync._map = lambda *args, **kwargs: None
    (Path(out) / f"rank{rank}.txt").write_text(str(gather_gradients_on_gloo(DistributedDataParallel(LeNet5()))))
    dist.destroy_process_group()
    os._exit(0)


def test_when_one_rank_cannot_share_the_buffer_every_rank_uses_the_all_gather(tmp_path: Path):
    left_before = _shared_buffers()
    mp.spawn(_refusing_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)] == ["all-gather", "all-gather"]
    assert _shared_buffers() <= left_before, "rank 0's file is unlinked"


def _dying_worker(rank: int, store: str, out: str) -> None:
    import os
    import signal
    import time

    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from lenet_dist.model import LeNet5
    from lenet_dist.training.distributed import is_peer_failure
    from lenet_dist.training.gradient_sync import gather_gradients_on_gloo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    ddp = DistributedDataParallel(LeNet5())
    assert gather_gradients_on_gloo(ddp, timeout_s=60.0) == "shared memory"
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for _ in range(2):  # together; DDP's second forward rebuilds its buckets (a gloo broadcast)
        F.cross_entropy(ddp(x), y).backward()
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    start = time.monotonic()
    try:
        F.cross_entropy(ddp(x), y).backward()
        verdict = "no error"
    except RuntimeError as exc:
        verdict = f"{is_peer_failure(exc)} {time.monotonic() - start:.2f} {str(exc).splitlines()[0]}"
    (Path(out) / "rank0.txt").write_text(verdict)
    os._exit(0)  # the group's peer is gone: no teardown


def test_a_killed_peer_ends_the_exchange_with_a_peer_failure_in_well_under_the_hang_timeout(tmp_path: Path):
    ctx = mp.start_processes(_dying_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    ctx.processes[0].join(120)
    for p in ctx.processes:
        p.kill()
    is_peer, seconds, message = (tmp_path / "rank0.txt").read_text().split(" ", 2)
    assert is_peer == "True" and "peer rank 1" in message and "has exited" in message
    assert float(seconds) < 5.0  # the hang timeout is 60 s: noticed by the liveness check, not by waiting
