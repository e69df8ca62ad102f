"""What counts as a lost peer, on gloo and on NCCL, and the NCCL setting that makes a survivor see it."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from lenet_dist.training.peer_failure import NCCL_ERROR_HANDLING, is_peer_failure, surface_nccl_errors


@pytest.mark.parametrize("exc", [
    dist.DistBackendError("NCCL communicator was aborted on rank 1"),
    RuntimeError("[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=12, OpType=ALLREDUCE) "
                 "ran for 60000 milliseconds before timing out."),
    RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited or there was a network error, "
                 "NCCL version 2.21.5 ncclRemoteError: A call failed possibly due to a network error or a remote "
                 "process exiting prematurely."),
    RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"),
    RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 60000ms"),
])
def test_gloo_and_nccl_losses_are_peer_failures(exc):
    assert is_peer_failure(exc)


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                 ValueError("shapes do not match"), KeyError("optimizer")])
def test_a_bug_or_resource_error_is_not(exc):
    assert not is_peer_failure(exc)


def test_nccl_errors_are_set_to_surface_in_the_loop_unless_the_user_chose():
    env: dict[str, str] = {}
    surface_nccl_errors(env)
    assert env == {NCCL_ERROR_HANDLING: "2"}
    chosen = {NCCL_ERROR_HANDLING: "1"}
    surface_nccl_errors(chosen)
    assert chosen == {NCCL_ERROR_HANDLING: "1"}
