"""When a collective failed because another rank died, hung or went away, on gloo or NCCL.

NCCL needs one setting for that to be seen at all. torch's watchdog thread checks every NCCL
collective; what it does on an error or a timeout is TORCH_NCCL_ASYNC_ERROR_HANDLING
(torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp, `ErrorHandlingMode`): 0 nothing, 1 abort the
communicators and tear the process down, 2 abort the communicators only (`CleanUpOnly`), 3 tear
the process down without aborting (`SkipCleanUp`, torch's default). With 1 or 3 a surviving rank is
killed from the watchdog thread (SIGABRT): no Python exception, so no peer-lost record, and two
such losses between checkpoints would read as the same crash twice (exit 70). With 2 the watchdog
aborts the communicators and the survivor's next wait on that collective raises
`torch.distributed.DistBackendError` in the training loop, which records the loss and ends the
attempt with exit 76 like gloo's errors do. So the job sets 2, unless the user set a value.
"""

from __future__ import annotations

import os

NCCL_ERROR_HANDLING = "TORCH_NCCL_ASYNC_ERROR_HANDLING"
CLEAN_UP_ONLY = "2"
# what gloo's and NCCL's errors say when a peer is gone or silent
PEER_WORDS = ("timed out", "timeout", "timing out", "connection closed", "connection reset", "broken pipe", "peer",
              "remote process", "network error", "communicator was aborted", "ncclremoteerror", "nccl error")


def surface_nccl_errors(environ: dict[str, str] = os.environ) -> None:
    """Before the process group exists: a lost peer raises in the loop instead of killing this rank."""
    environ.setdefault(NCCL_ERROR_HANDLING, CLEAN_UP_ONLY)


def is_peer_failure(exc: BaseException) -> bool:
    """A collective that failed because another rank died, hung or went away (gloo/NCCL errors)."""
    import torch.distributed as dist

    return isinstance(exc, getattr(dist, "DistError", ())) or (
        isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in PEER_WORDS))
