"""The shared-memory gradient exchange (lenet_dist/training/shared_memory_sync.py) between two ranks
played by two threads of this process on one real mapping: the mean, and the two ways a peer fails.
Real process groups and real training runs over it: tests/e2e/test_gradient_sync.py, test_recovery.py."""

from __future__ import annotations

import mmap
import subprocess
import threading
import time

import pytest
import torch

from lenet_dist.training.distributed import is_peer_failure
from lenet_dist.training.exit_watch import proc_fields
from lenet_dist.training.shared_memory_sync import SharedMemoryExchange, buffer_bytes

CAPACITY = 1000


def _pair(timeout_s: float = 30.0) -> tuple[SharedMemoryExchange, SharedMemoryExchange]:
    mm = mmap.mmap(-1, buffer_bytes(2, CAPACITY, torch.float32))
    return tuple(SharedMemoryExchange(mm, rank, 2, CAPACITY, torch.float32, timeout_s) for rank in (0, 1))


def test_both_ranks_get_the_all_gathers_mean_bit_for_bit_bucket_after_bucket():
    ranks = _pair()
    g = torch.Generator().manual_seed(0)
    for n in (CAPACITY, 7, 640, CAPACITY):  # both slots, several bucket sizes, reused rows
        grads = [torch.randn(n, generator=g) for _ in ranks]
        out = [None, None]

        def run(r, grads=grads, out=out):
            out[r] = ranks[r].mean(grads[r].clone())

        peer = threading.Thread(target=run, args=(1,))
        peer.start()
        run(0)
        peer.join(10)
        expected = torch.stack(grads).div(2).sum(0)  # gradient_sync's all-gather: divide, then sum in rank order
        assert torch.equal(out[0], expected) and torch.equal(out[1], expected)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # exited and reaped: its pid is free
    return proc.pid


def test_a_peer_that_has_exited_is_noticed_within_a_fraction_of_a_second():
    me, peer = _pair(timeout_s=30.0)
    me.counters[8 * 1 + 1] = _dead_pid()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="peer rank 1 .* has exited") as exc:
        me.mean(torch.ones(10))
    assert time.monotonic() - start < 1.0
    assert is_peer_failure(exc.value)  # so the loop ends the attempt and the launcher restarts it


def test_a_reused_pid_is_not_taken_for_the_peer():
    me, peer = _pair(timeout_s=30.0)
    me.counters[8 * 1 + 2] -= 1  # its pid (this process) is alive, but started at another time than recorded
    assert int(proc_fields(me.counters[8 * 1 + 1])[19]) != me.counters[8 * 1 + 2]
    with pytest.raises(RuntimeError, match="has exited"):
        me.mean(torch.ones(10))


def test_a_live_but_silent_peer_times_out_after_the_hang_timeout():
    me, _silent = _pair(timeout_s=0.3)  # alive (this process), never publishes
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"timed out: rank\(s\) \[1\] sent nothing for 0.3 s") as exc:
        me.mean(torch.ones(10))
    assert 0.3 <= time.monotonic() - start < 1.5
    assert is_peer_failure(exc.value)


def test_a_buffer_the_file_system_cannot_hold_is_refused_and_removed(tmp_path):
    from lenet_dist.training.shared_memory_sync import _map

    path = tmp_path / "grads"
    assert _map(path, 1 << 60, create=True) is None  # no space for it: no mapping that could SIGBUS later
    assert not path.exists()
    assert _map(tmp_path / "absent", 4096, create=False) is None
