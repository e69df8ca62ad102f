"""Checkpoint policy: when to save, what to keep, which checkpoint a resume starts from.

The training loop asks `due(...)` at every step boundary; this class decides. `latest` is found
by reading the directory (newest step whose files all pass their sha256), never via a symlink.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from lenet_dist.checkpoint import (
    list_training_checkpoints,
    load_training_state,
    read_meta,
    save_checkpoint,
    step_dir,
)
from lenet_dist.config import CheckpointConfig
from lenet_dist.errors import CheckpointError
from lenet_dist.model import LeNet5

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


def best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of a run with the highest held-out accuracy (final model included)."""
    candidates = list_training_checkpoints(run_dir) + [Path(run_dir) / "model"]
    scored = []
    for ckpt in candidates:
        try:
            _, meta = read_meta(ckpt)
        except CheckpointError:
            continue
        accuracy = (meta.get("metrics") or {}).get("test_accuracy")
        if accuracy is not None:
            scored.append((accuracy, meta.get("global_step", 0), ckpt))
    return max(scored, key=lambda t: (t[0], t[1]))[2] if scored else None


def restore_training_state(ckpt: Path, *, model: LeNet5, optimizer, scheduler, scaler, dataset: str,
                           steps_per_epoch: int, total_steps: int) -> dict[str, Any]:
    """Load a training checkpoint into this run's objects, after checking that it belongs to the same
    data, batch settings and schedule; return the rest of its state (progress, history, run id)."""
    saved, meta, state = load_training_state(ckpt)
    if meta.get("dataset") != dataset or meta.get("steps_per_epoch") != steps_per_epoch:
        raise CheckpointError(f"{ckpt} was trained on {meta.get('dataset')} with {meta.get('steps_per_epoch')} "
                              f"steps per epoch; this run has {dataset} with {steps_per_epoch}: "
                              "resume with the same data and batch settings")
    if meta.get("total_steps", total_steps) != total_steps and scheduler is not None:
        raise CheckpointError(f"{ckpt} was planned for {meta['total_steps']} steps, this run for {total_steps}: "
                              "the learning-rate schedule depends on it; keep train.epochs")
    model.load_state_dict(saved.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    return state


class Checkpointer:
    def __init__(self, run_dir: Path, cfg: CheckpointConfig, is_main: bool):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.is_main = is_main
        self.last_saved_step: int | None = None
        if is_main:
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """A save killed mid-write leaves a hidden .tmp directory; a run has one writer, so at
        start any such directory is garbage."""
        root = self.run_dir / "checkpoints"
        for tmp in root.glob(".*.tmp-*") if root.is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True)

    def due(self, global_step: int, end_of_epoch: bool) -> bool:
        if global_step == self.last_saved_step:
            return False
        if end_of_epoch and self.cfg.every_epoch:
            return True
        return bool(self.cfg.every_steps) and global_step % self.cfg.every_steps == 0

    def save(self, global_step: int, model: LeNet5, meta: dict[str, Any], state: dict[str, Any]) -> Path:
        """Main process writes; every rank records the step so `due` stays in agreement."""
        dest = step_dir(self.run_dir, global_step)
        if self.is_main:
            save_checkpoint(dest, model, {**meta, "global_step": global_step}, training_state=state)
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
