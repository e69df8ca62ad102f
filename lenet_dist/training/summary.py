"""The records a run writes about itself, built from plain values: summary.json (RunSummary), each
checkpoint's meta.json (CheckpointMeta) and what W&B records as the run's config. Pure functions:
no I/O, and nothing here knows the training loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lenet_dist import PROCESS_START
from lenet_dist.checkpoint import versions
from lenet_dist.config import Config
from lenet_dist.data.datasets import DatasetSpec
from lenet_dist.records import AttemptSummary, CheckpointMeta, EpochRecord, Progress, RunSummary, TrackingInfo
from lenet_dist.training.distributed import Processes, slurm_info
from lenet_dist.training.evaluation import EvalResult


def run_config(cfg: Config, procs: Processes) -> dict[str, Any]:
    """What W&B records as the run's config."""
    return {**cfg.model_dump(mode="json"), "world_size": procs.world, "device": procs.device.type,
            "versions": versions(), **slurm_info()}


def run_summary(cfg: Config, procs: Processes, run_dir: Path, dataset: str, progress: Progress,
                history: list[EpochRecord], final: EvalResult | None, status: str, *, tracking: TrackingInfo,
                attempts: list[AttemptSummary], resumed_from: Path | None, startup: dict[str, float],
                stop_signal: str | None = None) -> RunSummary:
    p = progress
    return RunSummary(
        status=status, run_name=run_dir.name, run_dir=str(run_dir), dataset=dataset,
        world_size=procs.world, rank_nodes=procs.rank_nodes, device=procs.device.type,
        mixed_precision=procs.acc.mixed_precision, epochs=cfg.train.epochs, epochs_completed=p.epoch,
        global_step=p.global_step, global_batch_size=cfg.train.batch_size,
        per_process_batch_size=cfg.train.batch_size // procs.world,
        test_accuracy=final.accuracy if final else None, test_loss=final.loss if final else None,
        test_samples=final.samples if final else None,
        per_class_accuracy=final.per_class_accuracy if final else None,
        confusion_matrix=final.confusion_matrix if final else None,
        best_test_accuracy=max((h.test_accuracy for h in history), default=None),
        train_images_per_second=p.train_images / p.train_seconds if p.train_seconds else None,
        wall_time_seconds=p.elapsed_before + time.time() - PROCESS_START,
        resumed=resumed_from is not None, resumed_from=str(resumed_from) if resumed_from else None,
        restarts=p.restarts, history=history, checkpoint=str(run_dir / "model") if final else None,
        tracking=tracking, slurm=slurm_info(), attempts=attempts, stop_signal=stop_signal,
        started_at=PROCESS_START, startup_seconds=startup,
        evaluated_on="validation" if cfg.data.validation_size else "test")


def checkpoint_meta(spec: DatasetSpec, progress: Progress, *, steps_per_epoch: int, total_steps: int, world: int,
                    run_name: str, result: EvalResult | None, mirror_average: bool = False) -> CheckpointMeta:
    p = progress
    return CheckpointMeta(
        dataset=spec.name, classes=list(spec.classes), normalization=spec.normalization, epoch=p.epoch,
        step_in_epoch=p.step_in_epoch, global_step=p.global_step, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, world_size=world, run_name=run_name,
        metrics=result.metrics() if result is not None else None, mirror_average=mirror_average)


def divergence_message(step: int, what: str, value: float, lr: float) -> str:
    return (f"training diverged at step {step}: the {what} is {value}; no model was saved from this run. "
            f"Lower optim.lr (now {lr:g}) or check the data and config")
