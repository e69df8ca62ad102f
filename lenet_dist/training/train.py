"""train(cfg) -> RunSummary: the whole training job, top to bottom.

The global batch is the same for any world size: each epoch has one seeded order, global batch
k is order[k*B:(k+1)*B], and rank r trains on its contiguous slice. So a 2-process run takes the
same optimizer steps as a 1-process run, and a resume (even onto another world size) continues
the exact sequence: the data order and the augmentation draws are functions of (seed, epoch,
step), and the checkpoint holds model, optimizer, scheduler and scaler.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lenet_dist.config import Config
from lenet_dist.errors import PeerLost
from lenet_dist.faults import crash_point
from lenet_dist.fileio import write_text_atomic
from lenet_dist.model import LeNet5
from lenet_dist.records import RunSummary
from lenet_dist.tracking.tracker import Tracker
from lenet_dist.training import attempts, cpu_speedups
from lenet_dist.training.batching import for_world
from lenet_dist.training.checkpointing import Checkpointer, Restored, latest_valid, restore_training_state
from lenet_dist.training.data import TrainingData, load_data
from lenet_dist.training.distributed import (
    Processes,
    elastic_restart,
    env_world_size,
    node_name,
    start_processes,
    usable_cpus,
)
from lenet_dist.training.exit_watch import stuck_local_peers
from lenet_dist.training.loop import TrainLoop
from lenet_dist.training.optim import build_optimizer, build_scheduler
from lenet_dist.training.run_dir import claimed_run_dir
from lenet_dist.training.summary import run_config
from lenet_dist.training.timeline import Timeline

log = logging.getLogger("lenet_dist.train")


def train(cfg: Config, resume: str | None = None) -> RunSummary:
    """Run the training job; return the summary (also written to <run_dir>/summary.json)."""
    timeline = Timeline()
    timeline.mark("imports")
    for_world(cfg, env_world_size())  # a batch no split can serve fails before joining the group
    procs = start_processes(cfg.train.mixed_precision, cfg.train.grad_accum_steps, cfg.checkpoint.hang_timeout_s)
    cfg = for_world(cfg, procs.world)
    if elastic_restart() and resume != "auto":  # the launcher restarted us after a crash: continue the run
        resume = "auto"
    timeline.mark("process_group")
    data = load_data(cfg, procs)
    timeline.mark("data")
    with claimed_run_dir(cfg, procs, resume) as run_dir:
        torch.manual_seed(cfg.train.seed)
        model = LeNet5(1, len(data.spec.classes)).to(procs.device, memory_format=data.memory_format)
        if cfg.train.init_from is not None:
            start_from_weights(model, cfg.train.init_from, data.spec.classes)
        model = cpu_speedups.enable(model, cfg.train.cpu_speedups, procs.device)
        optimizer = build_optimizer(cfg, model)
        scheduler = build_scheduler(cfg, optimizer, data.total_steps)
        timeline.mark("model_and_optimizer")
        start = restore(run_dir, resume, model, optimizer, scheduler, procs, data)
        attempt = begin_attempt(run_dir, start, cfg, procs)
        if procs.is_main:  # only once a resume has loaded: a failed one changes nothing
            write_text_atomic(run_dir / "config.yaml", cfg.to_yaml())
        model, optimizer = prepare(procs, model, optimizer)

        checkpointer = Checkpointer(run_dir, cfg.checkpoint, procs.is_main,
                                    last_saved_step=start.progress.global_step if start.checkpoint else None)
        tracker = Tracker(run_dir if procs.is_main else None, cfg.tracking, run_name=run_dir.name,
                          config=run_config(cfg, procs), run_id=start.tracking_run_id)
        if procs.is_main:
            log.info("run %s: %s, %d process(es) on %s, precision %s, W&B %s, %d torch thread(s) per process of "
                     "%d CPU(s) usable", run_dir, data.spec.name, procs.world, procs.device.type,
                     procs.acc.mixed_precision, tracker.mode, torch.get_num_threads(), usable_cpus())
            if data.held_out == "validation":
                log.info("evaluating on a validation split of %d training images; the test set is not read",
                         len(data.test))
        timeline.mark("run_setup")  # run dir, resume, accelerate prepare, tracker
        loop = TrainLoop(cfg, procs, data, run_dir, model, optimizer, scheduler, checkpointer, tracker, start,
                         attempt, timeline)
        summary = loop.run()
    # the DDP model holds the process group: freed now, while the interpreter is whole, its gloo
    # threads are joined cleanly; left to interpreter shutdown they can abort a finished worker
    del loop, model, optimizer
    procs.release_models()
    crash_point("hang-when-finished")
    if stuck := stuck_local_peers(cfg.checkpoint.hang_timeout_s):  # see exit_watch: not 0 while one is stuck
        raise PeerLost(f"rank {procs.rank} on {node_name()}: the run finished, but worker(s) {stuck} beside it have "
                       f"not exited {cfg.checkpoint.hang_timeout_s:g} s later; ending this attempt so the launcher "
                       "stops them and the restart finds the run finished")
    return summary


def prepare(procs: Processes, model: LeNet5, optimizer: torch.optim.Optimizer):
    """The model and optimizer as the loop uses them, through accelerate's own prepare: the model
    wrapped for autocast and DDP (its stock all-reduce on gloo or NCCL), the optimizer wrapped for
    fp16 loss scaling."""
    return procs.acc.prepare(model, optimizer)


def begin_attempt(run_dir: Path, start: Restored, cfg: Config, procs: Processes) -> int:
    """This attempt's number, recorded by the main process; every rank gives up together when
    restarting again would only repeat a crash."""
    decided = (0, None)
    if procs.is_main:
        step = start.progress.global_step if start.checkpoint else 0
        try:
            decided = (attempts.begin(run_dir, step, cfg.checkpoint.max_restarts, elastic_restart()), None)
        except attempts.GaveUp as exc:
            decided = (0, str(exc))
    attempt, why = procs.broadcast(decided)
    if why:
        raise attempts.GaveUp(why)
    return attempt


def restore(run_dir: Path, resume: str | None, model: LeNet5, optimizer, scheduler, procs: Processes,
            data: TrainingData) -> Restored:
    """The state to start from: a checkpoint named by --resume, the run's latest one, or scratch."""
    if resume is None:
        return Restored()
    if resume == "auto":  # one choice for all: ranks on other hosts may list a shared directory differently
        chosen = latest_valid(run_dir) if procs.is_main else None
        ckpt = procs.broadcast(str(chosen) if chosen else None)
        ckpt = Path(ckpt) if ckpt else None
    else:
        ckpt = Path(resume)
    if ckpt is None:
        log.warning("resume: no checkpoint in %s yet; starting fresh (--resume auto continues the run "
                    "named by --run-name)", run_dir)
        return Restored()
    start = restore_training_state(ckpt, model=model, optimizer=optimizer, scheduler=scheduler,
                                   scaler=procs.acc.scaler, dataset=data.spec.name,
                                   steps_per_epoch=data.steps_per_epoch, total_steps=data.total_steps)
    if procs.is_main:
        log.info("resume: continuing %s from %s (epoch %d, step %d of %d)", run_dir.name, ckpt,
                 start.progress.epoch + 1, start.progress.step_in_epoch, data.steps_per_epoch)
    return start


def start_from_weights(model: LeNet5, path: Path, classes: tuple[str, ...]) -> None:
    """Fine-tuning: the weights of a trained model of the same classes (a resume loads over them)."""
    from lenet_dist.checkpoint import load_model
    from lenet_dist.errors import ConfigError

    trained, meta = load_model(path)
    if tuple(meta.classes) != classes:
        raise ConfigError(f"train.init_from: {path} was trained on {meta.dataset}, whose classes differ from "
                          "this run's dataset; fine-tune on the dataset it was trained on")
    model.load_state_dict(trained.state_dict())
