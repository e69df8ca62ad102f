"""Gradient averaging through shared memory, for DDP ranks that all run on one machine (CPU, gloo).

Why: between 2 ranks on a 2-core machine, gloo's all-gather took 1.1-2.1 ms on average after the
last rank had arrived (median 0.5-1.1 ms, p90 3.7-5.3 ms), even for one number: the message crosses
a TCP socket and four thread wake-ups on cores that are busy training. That was a fifth of a
fast.yaml step and why 2 processes trained at ~0.76x of 1. Here each rank copies its bucket into its
row of a shared /dev/shm buffer, publishes a counter and polls its peers' counters: 0.2 ms after the
last arrival, p90 0.25 ms, and a step 1.32x faster (jobs/exchange_probe.py). Every rank then sums
the same rows in rank order: the all-gather hook's bits (gradient_sync), so the same seed gives the
same weights.

Used only when every rank can open one file in /dev/shm, see every peer's process in /proc (to notice
a dead peer) and runs on x86-64, whose stores become visible in program order (a counter is published
after its row). Else, and across machines, the all-gather over gloo does the exchange.

A peer that exits (SIGKILL, a crash) is noticed within 50 ms; one that is alive but silent (hung,
SIGSTOPped) after checkpoint.hang_timeout_s, as gloo's timeout would. Both raise an error that
distributed.is_peer_failure knows, inside backward, so the attempt ends and the launcher restarts it.
"""

from __future__ import annotations

import mmap
import os
import platform
import secrets
import time
from pathlib import Path

import torch

from lenet_dist.training.exit_watch import proc_fields

HEADER = 64  # bytes per rank: its counter, pid and start time, one cache line each
SPIN_S = 0.002  # poll, yielding the core, this long (the peer is usually < 0.1 ms behind), then nap
NAP_S = 50e-6
LIVENESS_EVERY_S = 0.05


class SharedMemoryExchange:
    """The mean over ranks of each DDP bucket, for `register_comm_hook(exchange, shared_memory_mean)`."""

    def __init__(self, mm: mmap.mmap, rank: int, world: int, capacity: int, dtype: torch.dtype, timeout_s: float):
        self.rank, self.world, self.timeout_s, self.seq = rank, world, timeout_s, 0
        self._mm = mm  # the tensors below are views of it
        self.counters = memoryview(mm)[: HEADER * world].cast("q")  # 8 words a rank: seq, pid, start time
        self.slots = torch.frombuffer(mm, dtype=dtype, offset=HEADER * world,
                                      count=2 * world * capacity).view(2, world * capacity)
        self.peers = [r for r in range(world) if r != rank]
        self.counters[8 * rank + 1], self.counters[8 * rank + 2] = os.getpid(), _start_time(os.getpid())

    def mean(self, grads: torch.Tensor) -> torch.Tensor:
        n, self.seq = grads.numel(), self.seq + 1
        rows = self.slots[self.seq % 2, : self.world * n].view(self.world, n)  # a peer reads the other slot
        rows[self.rank].copy_(grads)
        self.counters[8 * self.rank] = self.seq  # x86-64: after the row's stores, to every core
        self._wait_for_peers()
        return rows.div(self.world).sum(0)  # not in place: the peers read these rows too

    def _wait_for_peers(self) -> None:
        waiting = [r for r in self.peers if self.counters[8 * r] < self.seq]
        start = time.monotonic()
        check_at, polls = start + LIVENESS_EVERY_S, 0
        while waiting:
            waiting = [r for r in waiting if self.counters[8 * r] < self.seq]
            polls += 1
            if not waiting or polls % 64:
                continue
            now = time.monotonic()
            if now >= check_at:
                self._check_alive(waiting)
                check_at = now + LIVENESS_EVERY_S
                if now - start >= self.timeout_s:
                    raise RuntimeError(f"gradient exchange timed out: rank(s) {waiting} sent nothing for "
                                       f"{self.timeout_s:g} s (checkpoint.hang_timeout_s)")
            if now - start >= SPIN_S:
                time.sleep(NAP_S)
            else:  # anything else runnable here (W&B's process, gloo's threads) goes first
                os.sched_yield()

    def _check_alive(self, ranks: list[int]) -> None:
        for r in ranks:
            if not _same_process_alive(self.counters[8 * r + 1], self.counters[8 * r + 2]):
                raise RuntimeError(f"gradient exchange: peer rank {r} (pid {self.counters[8 * r + 1]}) has exited")


def open_exchange(group, capacity: int, dtype: torch.dtype, timeout_s: float) -> SharedMemoryExchange | None:
    """Collective (every rank of `group` calls it): a shared buffer for buckets of up to `capacity`
    elements, or None on every rank when any rank cannot use one."""
    import torch.distributed as dist

    rank, world = dist.get_rank(group), dist.get_world_size(group)
    size = buffer_bytes(world, capacity, dtype)
    usable = platform.machine().lower() in ("x86_64", "amd64") and Path("/dev/shm").is_dir() and Path("/proc").is_dir()
    token, mm = torch.zeros(16, dtype=torch.uint8), None
    if rank == 0 and usable:  # created and sized before any peer looks for it
        name = secrets.token_bytes(16)
        mm = _map(_path(name), size, create=True)
        if mm is not None:
            token = torch.tensor(list(name), dtype=torch.uint8)
    dist.broadcast(token, 0, group=group)
    path = _path(bytes(token.tolist()))
    if rank != 0 and usable and token.any():
        mm = _map(path, size, create=False)
    exchange = SharedMemoryExchange(mm, rank, world, capacity, dtype, timeout_s) if mm is not None else None
    if not _all(group, exchange is not None):  # also: every rank has written its pid
        _unlink(path, rank)
        return None
    peers_seen = all(_same_process_alive(exchange.counters[8 * r + 1], exchange.counters[8 * r + 2])
                     for r in exchange.peers)  # other pid namespaces: no way to notice a dead peer
    agreed = _all(group, peers_seen)
    _unlink(path, rank)  # every rank has it mapped: nothing is left in /dev/shm, whatever happens next
    return exchange if agreed else None


def buffer_bytes(world: int, capacity: int, dtype: torch.dtype) -> int:
    """The header, then two slots of `world` rows of `capacity` elements."""
    return HEADER * world + 2 * world * capacity * dtype.itemsize


def _path(name: bytes) -> Path:
    return Path("/dev/shm") / f"lenet-dist-grads-{name.hex()}"


def _map(path: Path, size: int, create: bool) -> mmap.mmap | None:
    try:
        fd = os.open(path, (os.O_RDWR | os.O_CREAT | os.O_EXCL) if create else os.O_RDWR, 0o600)
    except OSError:
        return None
    try:
        if create:  # the pages themselves, not a sparse file: a full /dev/shm fails here, not as SIGBUS later
            os.posix_fallocate(fd, 0, size)
        return mmap.mmap(fd, size) if os.fstat(fd).st_size == size else None
    except OSError:
        if create:
            path.unlink(missing_ok=True)
        return None
    finally:
        os.close(fd)


def _all(group, ok: bool) -> bool:
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=group)
    return bool(flag.item())


def _unlink(path: Path, rank: int) -> None:
    if rank == 0:
        path.unlink(missing_ok=True)


def _start_time(pid: int) -> int:
    return int(proc_fields(pid)[19])  # field 22 of /proc/<pid>/stat: tells a reused pid apart


def _same_process_alive(pid: int, start_time: int) -> bool:
    try:
        fields = proc_fields(pid)
    except (OSError, ValueError, IndexError):
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == start_time
