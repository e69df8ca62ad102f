"""train(cfg) -> summary: the whole training job.

The global batch is the same for any world size: each epoch has one seeded order, global batch
k is order[k*B:(k+1)*B], and rank r trains on its contiguous slice. So a 2-process run takes the
same optimizer steps as a 1-process run, and a resume (even onto another world size) continues
the exact sequence: the data order and the augmentation draws are functions of (seed, epoch,
step), and the checkpoint holds model, optimizer, scheduler and scaler.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import gather_object

from lenet_dist import PROCESS_START
from lenet_dist.augment import batch_generator, random_affine
from lenet_dist.checkpoint import (
    save_checkpoint,
    versions,
    write_json_atomic,
    write_text_atomic,
)
from lenet_dist.checkpointer import Checkpointer, latest_valid, restore_training_state
from lenet_dist.config import Config
from lenet_dist.data import epoch_order, load_split, normalize, rank_batch, steps_per_epoch
from lenet_dist.distributed import close_distributed, make_accelerator, node_name, slurm_info
from lenet_dist.errors import ConfigError
from lenet_dist.evaluate import EvalResult, evaluate, misclassified
from lenet_dist.faults import crash_point
from lenet_dist.fetch import ensure_dataset
from lenet_dist.model import LeNet5
from lenet_dist.optim import LossWindow, build_optimizer, build_scheduler
from lenet_dist.preemption import StopRequest, TrainingStopped
from lenet_dist.progress import ProgressReporter
from lenet_dist.report import write_report
from lenet_dist.run_dir import prepare_run_dir
from lenet_dist.tracking import Tracker

log = logging.getLogger("lenet_dist.train")


class Trainer:
    def __init__(self, cfg: Config, resume: str | None = None):
        self.cfg = cfg
        self.acc = make_accelerator(cfg.train.mixed_precision)
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.is_main = self.acc.is_main_process
        self.device = self.acc.device
        self._check_batch_split()
        self.rank_nodes = gather_object([node_name()]) if self.world > 1 else [node_name()]
        with self.acc.local_main_process_first():  # one fetcher per machine (plus a file lock)
            self.spec = ensure_dataset(cfg.data.dataset, cfg.data.data_dir)
        self.train_set = load_split(self.spec, cfg.data.data_dir, "train", cfg.data.train_subset, self.device)
        self.test_set = load_split(self.spec, cfg.data.data_dir, "test", cfg.data.test_subset, self.device)
        self.steps_per_epoch = steps_per_epoch(len(self.train_set), cfg.train.batch_size)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"train.batch_size ({cfg.train.batch_size}) is larger than the training set "
                              f"({len(self.train_set)} images)")
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format

        self.run_dir = prepare_run_dir(cfg, self.acc, resume)
        torch.manual_seed(cfg.train.seed)
        model = LeNet5(1, len(self.spec.classes)).to(self.device, memory_format=self.memory_format)
        optimizer = build_optimizer(cfg, model)
        self.scheduler = build_scheduler(cfg, optimizer, self.total_steps)
        self.progress: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0,
                                         "train_seconds": 0.0, "train_images": 0, "elapsed_before": 0.0,
                                         "epoch_loss_sum": 0.0, "restarts": 0}
        self.history: list[dict[str, Any]] = []
        self.resumed_from: str | None = None
        run_id = self._maybe_resume(model, optimizer, resume)
        if self.is_main:  # only once a resume has loaded: a failed one changes nothing
            write_text_atomic(self.run_dir / "config.yaml", cfg.to_yaml())
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.checkpointer = Checkpointer(self.run_dir, cfg.checkpoint, self.is_main)
        self.checkpointer.last_saved_step = self.progress["global_step"] if self.resumed_from else None
        self.tracker = Tracker(self.run_dir if self.is_main else None, cfg.tracking, run_name=self.run_dir.name,
                               config=self._run_config(), run_id=run_id)
        self.reporter = ProgressReporter(self.is_main, cfg.train.epochs, self.steps_per_epoch)
        if self.is_main:
            log.info("run %s: %s, %d process(es) on %s, precision %s, W&B %s", self.run_dir, self.spec.name,
                     self.world, self.device.type, self.acc.mixed_precision, self.tracker.mode)

    def _check_batch_split(self) -> None:
        parts = self.world * self.cfg.train.grad_accum_steps
        if self.cfg.train.batch_size % parts:
            raise ConfigError(f"train.batch_size ({self.cfg.train.batch_size}) must be divisible by processes x "
                              f"train.grad_accum_steps ({self.world} x {self.cfg.train.grad_accum_steps})")

    def _run_config(self) -> dict[str, Any]:
        return {**self.cfg.model_dump(mode="json"), "world_size": self.world, "device": self.device.type,
                "versions": versions(), **slurm_info()}

    def _maybe_resume(self, model: LeNet5, optimizer: torch.optim.Optimizer, resume: str | None) -> str | None:
        if resume is None:
            return None
        ckpt = latest_valid(self.run_dir) if resume == "auto" else Path(resume)
        if ckpt is None:
            log.warning("resume: no checkpoint in %s yet; starting fresh (--resume auto continues the run "
                        "named by --run-name)", self.run_dir)
            return None
        state = restore_training_state(ckpt, model=model, optimizer=optimizer, scheduler=self.scheduler,
                                       scaler=self.acc.scaler, dataset=self.spec.name,
                                       steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps)
        self.progress = {**state["progress"], "restarts": state["progress"].get("restarts", 0) + 1}
        self.history = list(state["history"])
        self.resumed_from = str(ckpt)
        if self.is_main:
            log.info("resume: continuing %s from %s (epoch %d, step %d of %d)", self.run_dir.name, ckpt,
                     self.progress["epoch"] + 1, self.progress["step_in_epoch"], self.steps_per_epoch)
        return state.get("tracking_run_id")

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        stop = StopRequest(self.cfg.checkpoint.stop_signals, self.run_dir / "STOP")
        all_ranks_here = False
        try:
            final = None
            while self.progress["epoch"] < self.cfg.train.epochs:
                self._run_epoch(self.progress["epoch"], stop)
                final = self._end_epoch()
            summary = self._finish(final or self._evaluate())  # evaluate here only if resumed at the very end
            all_ranks_here = True
            return summary
        except TrainingStopped:
            all_ranks_here = True  # every rank agreed to stop and saved together
            raise
        finally:
            stop.restore()
            self.tracker.close()
            self.reporter.close()
            if all_ranks_here:  # error paths leave it to the at-exit fallback, which never waits
                close_distributed()

    def _run_epoch(self, epoch: int, stop: StopRequest) -> None:
        order = epoch_order(len(self.train_set), self.cfg.train.seed, epoch).to(self.device)
        self.model.train()
        self._epoch_t0 = time.perf_counter()
        window = LossWindow(self.device)
        for step in range(self.progress["step_in_epoch"], self.steps_per_epoch):
            window.add(self._run_batch(order, epoch, step))
            crash_point("after-step")
            self.progress.update(step_in_epoch=step + 1, global_step=self.progress["global_step"] + 1,
                                 train_images=self.progress["train_images"] + self.cfg.train.batch_size)
            g = self.progress["global_step"]
            self.reporter.step(epoch, step + 1)
            if g % self.cfg.train.log_every_steps == 0:  # a host sync: only every N steps
                steps, seconds = window.steps, window.seconds()
                mean = self._flush(window) / steps
                self.tracker.log({"kind": "train", "epoch": epoch + 1, "train_loss": mean,
                                  "lr": self.optimizer.param_groups[0]["lr"],
                                  "images_per_second": steps * self.cfg.train.batch_size / seconds}, g)
            if g % self.cfg.checkpoint.signal_check_steps == 0 and self._stop_agreed(stop):
                self._flush(window)
                self._add_train_time()
                self._stop(stop)
            if step + 1 < self.steps_per_epoch and self.checkpointer.due(g, end_of_epoch=False):
                self._flush(window)
                self._save_training_state(None)
        self._flush(window)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self._add_train_time()

    def _flush(self, window: LossWindow) -> float:
        """Sum of the window's per-step losses (mean over ranks), added to the epoch's; a sync."""
        total = float(self.acc.reduce(window.loss, "mean"))
        self.progress["epoch_loss_sum"] += total
        window.reset()
        return total

    def _add_train_time(self) -> None:
        self.progress["train_seconds"] += time.perf_counter() - self._epoch_t0
        self._epoch_t0 = time.perf_counter()

    def _run_batch(self, order: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        cfg = self.cfg.train
        idx = rank_batch(order, step, cfg.batch_size, self.rank, self.world)
        x = self.train_set.images[idx]
        y = self.train_set.labels[idx]
        if self.cfg.augment.enabled:
            x = random_affine(x, self.cfg.augment, batch_generator(self.device, cfg.seed, epoch, step),
                              rank=self.rank, world=self.world)
        x = normalize(x, self.spec).contiguous(memory_format=self.memory_format)
        total = torch.zeros((), device=self.device)
        micro = x.shape[0] // cfg.grad_accum_steps
        for i in range(cfg.grad_accum_steps):
            last = i == cfg.grad_accum_steps - 1
            with nullcontext() if last else self.acc.no_sync(self.model):
                logits = self.model(x[i * micro:(i + 1) * micro])
                loss = F.cross_entropy(logits.float(), y[i * micro:(i + 1) * micro],
                                       label_smoothing=cfg.label_smoothing) / cfg.grad_accum_steps
                self.acc.backward(loss)
            total += loss.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return total

    def _stop_agreed(self, stop: StopRequest) -> bool:
        if self.world == 1:
            return stop.requested
        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        return float(self.acc.reduce(flag, "sum")) > 0  # every rank learns any rank's signal

    def _end_epoch(self) -> EvalResult:
        epoch = self.progress["epoch"]
        train_seconds = self.progress["train_seconds"] - sum(h["train_seconds"] for h in self.history)
        result = self._evaluate()
        record = {
            "epoch": epoch + 1,
            "train_loss": self.progress["epoch_loss_sum"] / self.steps_per_epoch,
            "test_loss": result.loss,
            "test_accuracy": result.accuracy,
            "train_seconds": train_seconds,
            "epoch_seconds": train_seconds + time.perf_counter() - self._epoch_t0,  # + evaluation
            "elapsed_seconds": self.progress["elapsed_before"] + time.time() - PROCESS_START,
        }
        self.history.append(record)
        self.progress.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss_sum=0.0)
        self.tracker.log({"kind": "eval", **record, "per_class_accuracy": result.per_class_accuracy,
                          "confusion_matrix": result.confusion_matrix}, self.progress["global_step"],
                         class_names=list(self.spec.classes))
        self.tracker.log_confusion(result.confusion_matrix, list(self.spec.classes), self.progress["global_step"])
        self.reporter.epoch_done(record)
        if self.checkpointer.due(self.progress["global_step"], end_of_epoch=True):
            self._save_training_state(result)
        return result

    def _evaluate(self) -> EvalResult:
        return evaluate(self.acc.unwrap_model(self.model), self.test_set, self.spec, rank=self.rank,
                        world=self.world, batch_size=self.cfg.train.eval_batch_size,
                        reduce_sum=lambda t: self.acc.reduce(t, "sum"), memory_format=self.memory_format)

    # ---- checkpoints and the end ----------------------------------------------------------------
    def _meta(self, result: EvalResult | None) -> dict[str, Any]:
        meta = {"dataset": self.spec.name, "classes": list(self.spec.classes),
                "normalization": {"mean": self.spec.mean, "std": self.spec.std}, "input_size": [1, 28, 28],
                "epoch": self.progress["epoch"], "step_in_epoch": self.progress["step_in_epoch"],
                "global_step": self.progress["global_step"], "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "world_size": self.world, "run_name": self.run_dir.name}
        if result is not None:
            meta["metrics"] = {"test_accuracy": result.accuracy, "test_loss": result.loss,
                               "test_samples": result.samples}
        return meta

    def _save_training_state(self, result: EvalResult | None) -> Path:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.acc.scaler.state_dict() if self.acc.scaler is not None else None,
            "progress": {**self.progress,
                         "elapsed_before": self.progress["elapsed_before"] + time.time() - PROCESS_START},
            "history": self.history,
            "tracking_run_id": self.tracker.run_id,
        }
        path = self.checkpointer.save(self.progress["global_step"], self.acc.unwrap_model(self.model),
                                      self._meta(result), state)
        self.acc.wait_for_everyone()
        return path

    def _stop(self, stop: StopRequest) -> None:
        path = self._save_training_state(None)
        self._write_summary(None, status="stopped", stop_signal=stop.signal_name or "peer")
        if self.is_main:
            stop.consume_stop_file()
        raise TrainingStopped(f"stopped on {stop.signal_name or 'a peer rank signal'} at step "
                              f"{self.progress['global_step']}; resume with --resume auto", str(path))

    def _finish(self, final: EvalResult) -> dict[str, Any]:
        model_dir = self.run_dir / "model"
        if self.is_main:
            save_checkpoint(model_dir, self.acc.unwrap_model(self.model), self._meta(final))
        summary = self._write_summary(final, status="completed")
        if self.is_main:
            write_report(self.run_dir)
            self._track_final(model_dir)
        self.acc.wait_for_everyone()
        self.reporter.final_table(self.history, summary)
        self.tracker.summary(summary)
        return summary

    def _track_final(self, model_dir: Path) -> None:
        n = self.cfg.tracking.misclassified_images
        if self.tracker.mode != "disabled" and n:
            wrong = misclassified(self.acc.unwrap_model(self.model), self.test_set, self.spec, n, self.memory_format)
            self.tracker.log_misclassified(*wrong, step=self.progress["global_step"])
        if self.cfg.tracking.log_model:
            self.tracker.log_model(model_dir, self.run_dir.name)

    def _write_summary(self, final: EvalResult | None, status: str, **extra: Any) -> dict[str, Any]:
        p = self.progress
        summary = {
            "status": status,
            "run_name": self.run_dir.name,
            "run_dir": str(self.run_dir),
            "dataset": self.spec.name,
            "world_size": self.world,
            "rank_nodes": self.rank_nodes,
            "device": self.device.type,
            "mixed_precision": self.acc.mixed_precision,
            "epochs": self.cfg.train.epochs,
            "epochs_completed": p["epoch"],
            "global_step": p["global_step"],
            "global_batch_size": self.cfg.train.batch_size,
            "per_process_batch_size": self.cfg.train.batch_size // self.world,
            "test_accuracy": final.accuracy if final else None,
            "test_loss": final.loss if final else None,
            "test_samples": final.samples if final else None,
            "per_class_accuracy": final.per_class_accuracy if final else None,
            "confusion_matrix": final.confusion_matrix if final else None,
            "best_test_accuracy": max((h["test_accuracy"] for h in self.history), default=None),
            "train_images_per_second": p["train_images"] / p["train_seconds"] if p["train_seconds"] else None,
            "wall_time_seconds": p["elapsed_before"] + time.time() - PROCESS_START,
            "resumed": self.resumed_from is not None,
            "resumed_from": self.resumed_from,
            "restarts": p["restarts"],
            "history": self.history,
            "checkpoint": str(self.run_dir / "model") if final else None,
            "tracking": {"mode": self.tracker.mode, "run_id": self.tracker.run_id},
            "slurm": slurm_info(),
            **extra,
        }
        if self.is_main:
            write_json_atomic(self.run_dir / "summary.json", summary)
        return summary


def train(cfg: Config, resume: str | None = None) -> dict[str, Any]:
    """Run the training job; return the summary (also written to <run_dir>/summary.json)."""
    return Trainer(cfg, resume).fit()
