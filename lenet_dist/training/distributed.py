"""The only module that builds the Accelerator or reads rank / launcher / SLURM variables."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lenet_dist.errors import ConfigError, PeerLost
from lenet_dist.training.peer_failure import is_peer_failure, surface_nccl_errors


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def slurm_info() -> dict[str, str]:
    """The SLURM job's identity, for the run's metadata (empty outside SLURM)."""
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT",
            "SLURM_JOB_NAME", "SLURM_JOB_NODELIST", "SLURM_NNODES")
    return {k.lower(): os.environ[k] for k in keys if k in os.environ}


def local_cuda_device():
    """This rank's GPU, made current before CUDA is asked anything (each rank's context on its own GPU)."""
    import torch

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count()))
    torch.cuda.set_device(device)
    return device


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity (what a cgroup or task binding allows), and no
    more than SLURM allocated to the task, where SLURM did not bind it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cores


def cpu_threads_per_process() -> int:
    """Launchers set OMP_NUM_THREADS=1; a job instead splits the CPUs it may use between the
    processes on this machine."""
    cores = usable_cpus()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, cores // max(1, local_world))


def make_accelerator(mixed_precision: str, grad_accum_steps: int = 1, timeout_s: float = 600.0):
    """An Accelerator that really runs DDP for any launch.

    Trap: on a machine without GPUs, `accelerate launch --multi_gpu --num_processes 2` and
    `torchrun --nproc_per_node 2` start 2 processes, but accelerate reports no distribution (each
    trains on all data) unless it is told to use the CPU; then it builds a gloo process group.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from lenet_dist.training import precision

    use_cpu = not torch.cuda.is_available()
    if not use_cpu:
        surface_nccl_errors()
    mixed_precision = precision.resolve(mixed_precision, torch.device("cpu") if use_cpu else local_cuda_device())
    torch.set_num_threads(cpu_threads_per_process())  # GPU ranks too: their host work shares the node's CPUs
    if use_cpu and mixed_precision == "fp16":
        raise ConfigError("train.mixed_precision 'fp16' needs a GPU; use 'bf16' or 'no' on CPU")
    # a rank that dies or hangs leaves its peers waiting in a collective: they give up after timeout_s
    # (checkpoint.hang_timeout_s for training) instead of the default 30 minutes
    pg = InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s))
    if use_cpu and env_world_size() > 1:
        _join_gloo_group(timedelta(seconds=timeout_s))
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=mixed_precision, kwargs_handlers=[pg],
                              gradient_accumulation_steps=grad_accum_steps)
    atexit.register(_close_gloo_at_exit)
    return accelerator


def _join_gloo_group(timeout: timedelta) -> None:
    """Join the CPU (gloo) group under a key prefix of this launcher attempt.

    Trap: after torchrun's elastic agent restarted a group, gloo's full-mesh connect sometimes read
    a peer address the previous attempt left in the store: "Connection refused", or both ranks
    waiting for each other to connect until the join timeout (seen here: 10 minutes). Keys under
    `attempt-<TORCHELASTIC_RESTART_COUNT>/` cannot be stale. accelerate uses the joined group."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    store = dist.PrefixStore(f"lenet-dist/attempt-{elastic_restart()}", store)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)


@dataclass
class Processes:
    """This process's place in the job, and the job's collectives. Training code asks this object
    (rank, world, is_main, device; `reduce_*`, `any_rank`) and never the launcher's environment."""

    acc: Any  # accelerate.Accelerator
    rank: int
    world: int
    is_main: bool
    device: Any  # torch.device
    rank_nodes: list[str]

    def reduce_sum(self, t):
        return self.acc.reduce(t, "sum")

    def reduce_mean(self, t):
        return self.acc.reduce(t, "mean")

    def any_rank(self, *flags: bool) -> list[bool]:
        """Per flag, True on every rank when any rank says so: one small all-reduce for them all."""
        import torch

        votes = torch.tensor(flags, dtype=torch.float32, device=self.device)
        return list(flags) if self.world == 1 else [v > 0 for v in self.reduce_sum(votes).tolist()]

    def broadcast(self, obj: Any) -> Any:
        """The main process's `obj`, on every rank."""
        if self.world == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def wait_for_everyone(self) -> None:
        self.acc.wait_for_everyone()

    def release_models(self) -> None:
        """Drop accelerate's references to the prepared model and optimizer, and collect them."""
        self.acc.free_memory()

    def unwrap(self, model):
        return self.acc.unwrap_model(model)


def start_processes(mixed_precision: str, grad_accum_steps: int, hang_timeout_s: float = 600.0) -> Processes:
    """Join the job's process group. Joining may take minutes (a slow node, a restart after a
    crash); once joined, a collective that waits longer than hang_timeout_s means a peer is dead or hung."""
    try:
        # every worker of a group is spawned after the launchers met, so joining takes seconds; a
        # join stuck this long (a peer that never came up) ends the attempt instead of waiting 10 min
        acc = make_accelerator(mixed_precision, grad_accum_steps, timeout_s=max(120.0, hang_timeout_s))
    except RuntimeError as exc:  # e.g. a restarted group whose peers are not up yet: the launcher tries again
        if not is_peer_failure(exc):
            raise
        raise PeerLost(f"could not connect to the other ranks ({str(exc).splitlines()[0][:160]}); ending this "
                       "attempt so the launcher restarts it") from None
    world = acc.num_processes
    from accelerate.utils import gather_object

    nodes = gather_object([node_name()]) if world > 1 else [node_name()]
    if world > 1:
        import torch.distributed as dist

        set_timeout = getattr(dist, "set_timeout", None) or dist.distributed_c10d._set_pg_timeout  # torch < 2.10
        set_timeout(timedelta(seconds=hang_timeout_s))
    return Processes(acc, acc.process_index, world, acc.is_main_process, acc.device, nodes)


def under_elastic_agent() -> bool:
    return "TORCHELASTIC_RESTART_COUNT" in os.environ  # torchrun, and accelerate launch's multi-process path


def elastic_restart() -> int:
    """How many times torchrun's elastic agent has restarted this worker group (0: first start)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def job_key() -> str:
    """What stays the same across the restarts of one launch: the elastic run id, else the agent's
    pid (the parent of every local worker, alive across restarts)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return run_id if run_id != "none" else f"agent-{os.getppid()}"


def close_distributed(synchronize: bool = True) -> None:
    """Tear the process group down while the interpreter is still alive.

    Trap: a process that leaves it to interpreter shutdown can die of SIGABRT ("terminate called
    without an active exception") when gloo's worker threads are destroyed mid-finalisation, which
    turns a finished job into a failed one for the launcher. `synchronize` waits for the peers
    first; only paths where every rank is known to be alive and here may ask for it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def _close_gloo_at_exit() -> None:
    """Error paths (success paths call close_distributed themselves): close a gloo group without
    waiting for peers. Not NCCL: destroying it while a peer is mid-collective can hang."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo":
        dist.destroy_process_group()


def node_name() -> str:
    """This process's node: SLURM's name for it when under SLURM (several slurmd can share a host)."""
    import socket

    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()
