"""What a run writes as it goes and when it ends: training checkpoints, the final model,
summary.json, report.png, the attempt log's end line and W&B's last entries. The loop computes;
this records. Only the main process writes; every rank keeps the same bookkeeping."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from lenet_dist import PROCESS_START
from lenet_dist.checkpoint import save_checkpoint
from lenet_dist.config import Config
from lenet_dist.errors import DiskFullError, DivergedError, UserError
from lenet_dist.faults import disk_fill_point
from lenet_dist.records import (
    AttemptEnd,
    CheckpointMeta,
    EpochRecord,
    Progress,
    RunSummary,
    TrackingInfo,
    TrainingState,
)
from lenet_dist.tracking.console import ProgressReporter
from lenet_dist.tracking.report import write_report
from lenet_dist.tracking.tracker import Tracker
from lenet_dist.training import attempts
from lenet_dist.training.checkpointing import Checkpointer
from lenet_dist.training.data import TrainingData
from lenet_dist.training.distributed import Processes
from lenet_dist.training.evaluation import EvalResult, misclassified
from lenet_dist.training.summary import checkpoint_meta, divergence_message, run_summary
from lenet_dist.training.timeline import Timeline


@dataclass
class RunOutputs:
    cfg: Config
    procs: Processes
    data: TrainingData
    run_dir: Path
    checkpointer: Checkpointer
    tracker: Tracker
    reporter: ProgressReporter
    timeline: Timeline
    attempt: int
    resumed_from: Path | None

    def meta(self, progress: Progress, result: EvalResult | None) -> CheckpointMeta:
        return checkpoint_meta(self.data.spec, progress, steps_per_epoch=self.data.steps_per_epoch,
                               total_steps=self.data.total_steps, world=self.procs.world,
                               run_name=self.run_dir.name, result=result, mirror_average=self.data.mirror_average)

    def summary(self, progress: Progress, history: list[EpochRecord], final: EvalResult | None, status: str,
                stop_signal: str | None = None) -> RunSummary:
        return run_summary(
            self.cfg, self.procs, self.run_dir, self.data.spec.name, progress, history, final, status,
            tracking=TrackingInfo(mode=self.tracker.mode, run_id=self.tracker.run_id),
            attempts=attempts.summary(attempts.read(self.run_dir)) if self.procs.is_main else [],
            resumed_from=self.resumed_from, startup=self.timeline.marks, stop_signal=stop_signal)

    def end_attempt(self, status: str) -> None:
        if self.procs.is_main:
            attempts.append(self.run_dir, AttemptEnd(attempt=self.attempt, status=status))

    def save_training_state(self, progress: Progress, history: list[EpochRecord], model, optimizer, scheduler,
                            result: EvalResult | None) -> Path:
        """A training checkpoint at this step (main process writes; every rank waits for it)."""
        scaler = self.procs.acc.scaler
        elapsed = progress.elapsed_before + time.time() - PROCESS_START
        state = TrainingState(
            progress=progress.model_copy(update={"elapsed_before": elapsed}), history=history,
            optimizer=optimizer.state_dict(), tracking_run_id=self.tracker.run_id,
            scheduler=scheduler.state_dict() if scheduler is not None else None,
            scaler=scaler.state_dict() if scaler is not None else None)
        path = self.checkpointer.save(progress.global_step, model, self.meta(progress, result), state)
        self.procs.wait_for_everyone()
        return path

    def stopped(self, progress: Progress, history: list[EpochRecord], stop_signal: str) -> None:
        self.end_attempt("stopped")
        if self.procs.is_main:
            self.summary(progress, history, None, "stopped", stop_signal=stop_signal).write(self.run_dir)

    def diverged(self, progress: Progress, history: list[EpochRecord], what: str, value: float) -> DivergedError:
        """Record the divergence (nothing is saved from it) and return the error to raise."""
        self.end_attempt("diverged")
        if self.procs.is_main:
            self.summary(progress, history, None, "diverged").write(self.run_dir)
        return DivergedError(divergence_message(progress.global_step, what, value, self.cfg.optim.lr))

    def failed(self, progress: Progress, history: list[EpochRecord], error: UserError) -> None:
        """The run ends on a user error (a full disk, say): summary.json says so, if there is room for it."""
        with contextlib.suppress(UserError, OSError):
            self.end_attempt("failed")
        if self.procs.is_main:
            summary = self.summary(progress, history, None, "failed")
            with contextlib.suppress(UserError, OSError):
                summary.model_copy(update={"error": str(error), "exit_code": error.exit_code}).write(self.run_dir)

    def _final_files(self, progress: Progress, model, final: EvalResult) -> str | None:
        """Main process: the final model, then report.png; the line to end with if the disk is full."""
        try:
            save_checkpoint(self.run_dir / "model", model, self.meta(progress, final))
        except DiskFullError as exc:
            return str(exc)
        disk_fill_point("report", self.run_dir)
        try:
            write_report(self.run_dir)
        except DiskFullError as exc:
            return (f"{exc}; the model is saved in {self.run_dir / 'model'}: once there is room, draw the report "
                    f"with `lenet-dist report {self.run_dir}`")
        return None

    def finish(self, progress: Progress, history: list[EpochRecord], model, final: EvalResult) -> RunSummary:
        """Save the final model, draw the report, then write the summary (last, so a summary that says
        "completed" means everything else is on disk); every rank returns the summary."""
        no_space = self._final_files(progress, model, final) if self.procs.is_main else None
        if (no_space := self.procs.broadcast(no_space)) is not None:  # every rank ends the same way
            raise DiskFullError(no_space)
        self.end_attempt("completed")
        summary = self.summary(progress, history, final, "completed")
        if self.procs.is_main:
            summary.write(self.run_dir)
            n = self.cfg.tracking.misclassified_images
            if self.tracker.mode != "disabled" and n:
                wrong = misclassified(model, self.data.test, self.data.spec, n, self.data.memory_format)
                self.tracker.log_misclassified(*wrong, step=progress.global_step)
            if self.cfg.tracking.log_model:
                self.tracker.log_model(self.run_dir / "model", self.run_dir.name)
        self.procs.wait_for_everyone()
        self.reporter.final_table(history, summary)
        self.tracker.summary(summary.to_dict())
        return summary
