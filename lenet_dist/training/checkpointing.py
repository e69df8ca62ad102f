"""Checkpoint policy: when to save, what to keep, which checkpoint a resume starts from, and
whether a checkpoint may continue this run. The on-disk format is lenet_dist/checkpoint.py.

The loop asks `due(step)` at every step boundary and this class decides (torchtitan's shape).
Custom rather than accelerate's save_state/ProjectConfiguration(total_limit): keep-best needs
the held-out accuracy in each checkpoint's meta.json, `latest` must skip a checkpoint whose
sha256 fails, and saves must be atomic; accelerate does none of the three.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lenet_dist.checkpoint import (
    best_checkpoint,
    list_training_checkpoints,
    load_training_state,
    read_meta,
    save_checkpoint,
    step_dir,
)
from lenet_dist.config import CheckpointConfig
from lenet_dist.errors import CheckpointError
from lenet_dist.fileio import TMP_MARK
from lenet_dist.model import LeNet5
from lenet_dist.records import CheckpointMeta, EpochRecord, Progress, TrainingState

log = logging.getLogger("lenet_dist.checkpoint")


def latest_valid(run_dir: Path) -> Path | None:
    """The newest intact training checkpoint of a run; corrupt ones are skipped with a warning."""
    for ckpt in reversed(list_training_checkpoints(run_dir)):
        try:
            read_meta(ckpt)
        except CheckpointError as exc:
            log.warning("resume: skipping %s", exc)
            continue
        return ckpt
    return None


@dataclass
class Restored:
    """Where a run starts: from scratch, or from what a training checkpoint recorded."""

    progress: Progress = field(default_factory=Progress)
    history: list[EpochRecord] = field(default_factory=list)
    checkpoint: Path | None = None
    tracking_run_id: str | None = None


def restore_training_state(ckpt: Path, *, model: LeNet5, optimizer, scheduler, scaler, dataset: str,
                           steps_per_epoch: int, total_steps: int) -> Restored:
    """Load a training checkpoint into this run's objects, after checking that it belongs to the same
    data, batch settings and schedule."""
    saved, meta, state = load_training_state(ckpt)
    if meta.dataset != dataset or meta.steps_per_epoch != steps_per_epoch:
        raise CheckpointError(f"{ckpt} was trained on {meta.dataset} with {meta.steps_per_epoch} "
                              f"steps per epoch; this run has {dataset} with {steps_per_epoch}: "
                              "resume with the same data and batch settings")
    if meta.total_steps != total_steps and scheduler is not None:
        raise CheckpointError(f"{ckpt} was planned for {meta.total_steps} steps, this run for {total_steps}: "
                              "the learning-rate schedule depends on it; keep train.epochs")
    model.load_state_dict(saved.state_dict())
    optimizer.load_state_dict(state.optimizer)
    if scheduler is not None and state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    if scaler is not None and state.scaler is not None:
        scaler.load_state_dict(state.scaler)
    progress = state.progress.model_copy(update={"restarts": state.progress.restarts + 1})
    return Restored(progress, list(state.history), Path(ckpt), state.tracking_run_id)


class Checkpointer:
    def __init__(self, run_dir: Path, cfg: CheckpointConfig, is_main: bool, last_saved_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.is_main = is_main
        self.last_saved_step = last_saved_step  # a resumed run need not save the step it resumed at
        if is_main:
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """A save killed mid-write leaves a hidden temporary directory; a run has one writer, so at
        start any such directory is garbage."""
        root = self.run_dir / "checkpoints"
        for tmp in root.glob(f".*{TMP_MARK}*") if root.is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True)

    def due(self, global_step: int, end_of_epoch: bool) -> bool:
        if global_step == self.last_saved_step:
            return False
        if end_of_epoch and self.cfg.every_epoch:
            return True
        return bool(self.cfg.every_steps) and global_step % self.cfg.every_steps == 0

    def save(self, global_step: int, model: LeNet5, meta: CheckpointMeta, state: TrainingState) -> Path:
        """Main process writes; every rank records the step so `due` stays in agreement."""
        dest = step_dir(self.run_dir, global_step)
        if self.is_main:
            save_checkpoint(dest, model, meta, training=state)
            self._prune()
        self.last_saved_step = global_step
        return dest

    def _prune(self) -> None:
        ckpts = list_training_checkpoints(self.run_dir)
        keep = set(ckpts[-self.cfg.keep_last:])
        if self.cfg.keep_best:
            best = best_checkpoint(self.run_dir)
            if best is not None:
                keep.add(best)
        for ckpt in ckpts:
            if ckpt not in keep:
                shutil.rmtree(ckpt, ignore_errors=True)
