"""How a run ends: the final model checkpoint, summary.json (a RunSummary), report.png, the last
W&B entries and the final table; or a divergence, caught before anything is saved from it."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from lenet_dist import PROCESS_START
from lenet_dist.checkpoint import save_checkpoint, versions
from lenet_dist.config import Config
from lenet_dist.errors import DivergedError
from lenet_dist.records import CheckpointMeta, RunSummary, TrackingInfo
from lenet_dist.tracking.report import write_report
from lenet_dist.training import attempts
from lenet_dist.training.distributed import Processes, slurm_info
from lenet_dist.training.evaluation import EvalResult, misclassified
from lenet_dist.training.metrics import eval_line

if TYPE_CHECKING:
    from lenet_dist.training.loop import TrainLoop


def run_config(cfg: Config, procs: Processes) -> dict[str, Any]:
    """What W&B records as the run's config."""
    return {**cfg.model_dump(mode="json"), "world_size": procs.world, "device": procs.device.type,
            "versions": versions(), **slurm_info()}


def run_summary(loop: TrainLoop, final: EvalResult | None, status: str, stop_signal: str | None = None,
                ) -> RunSummary:
    cfg, procs, p = loop.cfg, loop.procs, loop.progress
    return RunSummary(
        status=status, run_name=loop.run_dir.name, run_dir=str(loop.run_dir), dataset=loop.data.spec.name,
        world_size=procs.world, rank_nodes=procs.rank_nodes, device=procs.device.type,
        mixed_precision=procs.acc.mixed_precision, epochs=cfg.train.epochs, epochs_completed=p.epoch,
        global_step=p.global_step, global_batch_size=cfg.train.batch_size,
        per_process_batch_size=cfg.train.batch_size // procs.world,
        test_accuracy=final.accuracy if final else None, test_loss=final.loss if final else None,
        test_samples=final.samples if final else None,
        per_class_accuracy=final.per_class_accuracy if final else None,
        confusion_matrix=final.confusion_matrix if final else None,
        best_test_accuracy=max((h.test_accuracy for h in loop.history), default=None),
        train_images_per_second=p.train_images / p.train_seconds if p.train_seconds else None,
        wall_time_seconds=p.elapsed_before + time.time() - PROCESS_START,
        resumed=loop.resumed_from is not None, resumed_from=str(loop.resumed_from) if loop.resumed_from else None,
        restarts=p.restarts, history=loop.history, checkpoint=str(loop.run_dir / "model") if final else None,
        tracking=TrackingInfo(mode=loop.tracker.mode, run_id=loop.tracker.run_id), slurm=slurm_info(),
        attempts=attempts.summary(attempts.read(loop.run_dir)) if loop.procs.is_main else [], stop_signal=stop_signal,
        started_at=PROCESS_START, startup_seconds=loop.timeline.marks)


def checkpoint_meta(loop: TrainLoop, result: EvalResult | None) -> CheckpointMeta:
    spec, p = loop.data.spec, loop.progress
    return CheckpointMeta(
        dataset=spec.name, classes=list(spec.classes), normalization=spec.normalization, epoch=p.epoch,
        step_in_epoch=p.step_in_epoch, global_step=p.global_step, steps_per_epoch=loop.data.steps_per_epoch,
        total_steps=loop.data.total_steps, world_size=loop.procs.world, run_name=loop.run_dir.name,
        metrics=result.metrics() if result is not None else None)


def finish(loop: TrainLoop, final: EvalResult) -> RunSummary:
    """Save the final model, write the summary and report; every rank returns the summary."""
    model_dir = loop.run_dir / "model"
    model = loop.procs.unwrap(loop.model)
    if loop.procs.is_main:
        save_checkpoint(model_dir, model, checkpoint_meta(loop, final))
    loop.end_attempt("completed")
    summary = run_summary(loop, final, status="completed")
    if loop.procs.is_main:
        summary.write(loop.run_dir)
        write_report(loop.run_dir)
        n = loop.cfg.tracking.misclassified_images
        if loop.tracker.mode != "disabled" and n:
            wrong = misclassified(model, loop.data.test, loop.data.spec, n, loop.memory_format)
            loop.tracker.log_misclassified(*wrong, step=loop.progress.global_step)
        if loop.cfg.tracking.log_model:
            loop.tracker.log_model(model_dir, loop.run_dir.name)
    loop.procs.wait_for_everyone()
    loop.reporter.final_table(loop.history, summary)
    loop.tracker.summary(summary.to_dict())
    return summary


def check_finite(loop: TrainLoop, value: float, what: str) -> None:
    if math.isfinite(value):
        return
    step = loop.progress.global_step
    loop.end_attempt("diverged")
    if loop.procs.is_main:
        run_summary(loop, None, status="diverged").write(loop.run_dir)
    raise DivergedError(f"training diverged at step {step}: the {what} is {value}; no model was saved from "
                        f"this run. Lower optim.lr (now {loop.cfg.optim.lr:g}) or check the data and config")


def evaluate_resumed_end(loop: TrainLoop) -> EvalResult:
    """Resumed from the last step's checkpoint: no epoch ran here, so evaluate the model once and
    log it as the last epoch's result, which this run's metrics.jsonl (and report) needs."""
    result = loop._evaluate()
    if loop.history:
        loop.tracker.log(eval_line(loop.history[-1], result), loop.progress.global_step,
                         class_names=list(loop.data.spec.classes))
    return result
