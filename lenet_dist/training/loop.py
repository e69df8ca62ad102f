"""The step/epoch loop: a Trainer of small methods (`run` → `_run_epoch` → `_run_batch`). Every rank
runs the same sequence; only the main process writes (through outputs.RunOutputs)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lenet_dist import PROCESS_START
from lenet_dist.config import Config
from lenet_dist.data.augment import augment_batch, batch_generator
from lenet_dist.data.tensors import epoch_order, rank_batch, rank_span
from lenet_dist.errors import DivergedError, UserError
from lenet_dist.faults import crash_point
from lenet_dist.records import EpochRecord, RunSummary
from lenet_dist.tracking.console import ProgressReporter
from lenet_dist.tracking.tracker import Tracker
from lenet_dist.training import attempts
from lenet_dist.training.batching import micro_batch_weight
from lenet_dist.training.checkpointing import Checkpointer, Restored
from lenet_dist.training.data import TrainingData
from lenet_dist.training.distributed import Processes, close_distributed
from lenet_dist.training.evaluation import EvalResult, evaluate
from lenet_dist.training.metrics import LossWindow, eval_line
from lenet_dist.training.outputs import RunOutputs
from lenet_dist.training.peer_failure import is_peer_failure
from lenet_dist.training.stopping import StopRequest, TrainingStopped
from lenet_dist.training.timeline import Timeline


class TrainLoop:
    def __init__(self, cfg: Config, procs: Processes, data: TrainingData, run_dir: Path, model, optimizer,
                 scheduler, checkpointer: Checkpointer, tracker: Tracker, start: Restored, attempt: int = 1,
                 timeline: Timeline | None = None):
        self.cfg, self.procs, self.data, self.run_dir = cfg, procs, data, run_dir
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.checkpointer, self.tracker, self.memory_format = checkpointer, tracker, data.memory_format
        self.progress, self.history = start.progress, start.history
        self.reporter = ProgressReporter(procs.is_main, cfg.train.epochs, data.steps_per_epoch)
        self.out = RunOutputs(cfg, procs, data, run_dir, checkpointer, tracker, self.reporter,
                              timeline or Timeline(), attempt, start.checkpoint)
        self.timeline, self._clock, self._last_save = self.out.timeline, time.perf_counter(), time.monotonic()
        self._span_start = rank_span(cfg.train.batch_size, procs.rank, procs.world)[0]  # where this rank's images start

    def run(self) -> RunSummary:
        stop = StopRequest(self.cfg.checkpoint.stop_signals, self.run_dir / "STOP")
        all_ranks_here, peer_lost, exit_code = False, False, 1
        try:
            final = None
            while self.progress.epoch < self.cfg.train.epochs:
                self._run_epoch(self.progress.epoch, stop)
                final = self._end_epoch()
            summary = self.out.finish(self.progress, self.history, self.procs.unwrap(self.model),
                                      final or self._evaluate_resumed_end())
            all_ranks_here, exit_code = True, 0
            return summary
        except (TrainingStopped, DivergedError) as exc:
            all_ranks_here = True  # every rank saw the same signal or the same reduced loss
            exit_code = 0 if isinstance(exc, TrainingStopped) else 1
            raise
        except UserError as exc:  # a full disk: summary.json says how the run ended
            self.out.failed(self.progress, self.history, exc)
            raise
        except Exception as exc:
            if self.procs.world > 1 and is_peer_failure(exc):
                peer_lost = True
                raise attempts.peer_lost(self.run_dir, self.out.attempt, self.procs.rank, self.progress.global_step,
                                         exc) from None
            raise
        finally:
            # Flag-only stop handlers stay past W&B's finish (for good after a lost peer): the launcher
            # SIGTERMs survivors at once, and the default handler would kill us before the line is out.
            self.tracker.close(exit_code)  # W&B shows a crashed or diverged attempt as failed
            self.reporter.close()
            if all_ranks_here:  # error paths leave it to the at-exit fallback, which never waits
                close_distributed()
            if not peer_lost:
                stop.restore()

    def _run_epoch(self, epoch: int, stop: StopRequest) -> None:
        order = epoch_order(len(self.data.train), self.cfg.train.seed, epoch).to(self.procs.device)
        self.model.train()
        self._clock = time.perf_counter()
        window = LossWindow(self.procs.device)
        for step in range(self.progress.step_in_epoch, self.data.steps_per_epoch):
            window.add(self._run_batch(order, epoch, step))
            self.timeline.mark("first_step")
            crash_point("after-step", self.progress.global_step + 1)
            p = self.progress
            p.step_in_epoch, p.global_step = step + 1, p.global_step + 1
            p.train_images += self.cfg.train.batch_size
            self.reporter.step(epoch, step + 1)
            if p.global_step % self.cfg.train.log_every_steps == 0:  # a host sync: only every N steps
                self._log_train(window, epoch)
            stopping, time_to_save = False, False
            if p.global_step % self.cfg.checkpoint.signal_check_steps == 0:  # ranks agree: one all-reduce
                stopping, time_to_save = self.procs.any_rank(stop.requested, self._save_interval_passed())
            if stopping:
                self._flush(window)
                self._add_train_time()
                self._stop(stop)
            due = self.checkpointer.due(p.global_step, end_of_epoch=False) or time_to_save
            if step + 1 < self.data.steps_per_epoch and due:
                self._flush(window)
                self._save_training_state(None)
        self._flush(window)
        if self.procs.device.type == "cuda":
            torch.cuda.synchronize()
        self._add_train_time()

    def _run_batch(self, order: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        cfg, procs, accum = self.cfg.train, self.procs, self.cfg.train.grad_accum_steps
        idx = rank_batch(order, step, cfg.batch_size, procs.rank, procs.world)
        x, y = self.data.train.images[idx], self.data.train.labels[idx]
        if self.cfg.augment.enabled:
            x = augment_batch(x, self.cfg.augment, batch_generator(procs.device, cfg.seed, epoch, step),
                              start=self._span_start, total=cfg.batch_size, mirror_safe=self.data.spec.mirror_safe)
        if not self.data.train.normalized:
            x = self.data.spec.normalization.apply(x)
        x = x.contiguous(memory_format=self.memory_format)
        total = torch.zeros((), device=procs.device)
        for x_micro, y_micro in zip(x.tensor_split(accum), y.tensor_split(accum), strict=True):
            with procs.acc.accumulate(self.model):  # no gradient all-reduce until the last micro-batch
                loss = F.cross_entropy(self.model(x_micro).float(), y_micro, label_smoothing=cfg.label_smoothing)
                weight = micro_batch_weight(len(y_micro), procs.world, accum, cfg.batch_size)
                procs.acc.backward(loss if weight == 1 else loss * weight)  # no extra op for an even split
            total += loss.detach() / accum
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return total

    def _save_interval_passed(self) -> bool:
        """checkpoint.every_seconds, by this rank's clock: the ranks agree at the stop check."""
        every = self.cfg.checkpoint.every_seconds
        return bool(every) and time.monotonic() - self._last_save >= every

    def _log_train(self, window: LossWindow, epoch: int) -> None:
        steps, seconds = window.steps, window.seconds()
        self.tracker.log({"kind": "train", "epoch": epoch + 1, "train_loss": self._flush(window) / steps,
                          "lr": self.optimizer.param_groups[0]["lr"],
                          "images_per_second": steps * self.cfg.train.batch_size / seconds}, self.progress.global_step)

    def _flush(self, window: LossWindow) -> float:
        """The window's summed losses (mean over ranks), added to the epoch's; a sync, before every save."""
        total = float(self.procs.reduce_mean(window.loss))
        self._check_finite(total, "training loss")
        self.progress.epoch_loss_sum += total
        window.reset()
        return total

    def _add_train_time(self) -> None:
        self.progress.train_seconds += time.perf_counter() - self._clock
        self._clock = time.perf_counter()

    def _end_epoch(self) -> EvalResult:
        p = self.progress
        train_seconds = p.train_seconds - sum(h.train_seconds for h in self.history)
        result = self._evaluate()
        self._check_finite(result.loss, "held-out loss")
        record = EpochRecord(
            epoch=p.epoch + 1, train_loss=p.epoch_loss_sum / self.data.steps_per_epoch, test_loss=result.loss,
            test_accuracy=result.accuracy, train_seconds=train_seconds,
            epoch_seconds=train_seconds + time.perf_counter() - self._clock,  # + evaluation
            elapsed_seconds=p.elapsed_before + time.time() - PROCESS_START)
        self.history.append(record)
        p.epoch, p.step_in_epoch, p.epoch_loss_sum = p.epoch + 1, 0, 0.0
        self.tracker.log(eval_line(record, result), p.global_step, class_names=list(self.data.spec.classes))
        self.tracker.log_confusion(result.confusion_matrix, list(self.data.spec.classes), p.global_step)
        self.reporter.epoch_done(record)
        if self.checkpointer.due(p.global_step, end_of_epoch=True):
            self._save_training_state(result)
        return result

    def _evaluate(self) -> EvalResult:
        return evaluate(self.procs.unwrap(self.model), self.data.test, self.data.spec, rank=self.procs.rank,
                        world=self.procs.world, batch_size=self.cfg.train.eval_batch_size,
                        reduce_sum=self.procs.reduce_sum, memory_format=self.memory_format,
                        mirror_average=self.data.mirror_average)

    def _save_training_state(self, result: EvalResult | None) -> Path:
        path = self.out.save_training_state(self.progress, self.history, self.procs.unwrap(self.model),
                                            self.optimizer, self.scheduler, result)
        self._last_save = time.monotonic()
        return path

    def _stop(self, stop: StopRequest) -> None:
        path = self._save_training_state(None)
        self.out.stopped(self.progress, self.history, stop.signal_name or "peer")
        if self.procs.is_main:
            stop.consume_stop_file()
        raise TrainingStopped(f"stopped on {stop.signal_name or 'a peer rank signal'} at step "
                              f"{self.progress.global_step}; resume with --resume auto", str(path))

    def _check_finite(self, value: float, what: str) -> None:
        if not math.isfinite(value):
            raise self.out.diverged(self.progress, self.history, what, value)

    def _evaluate_resumed_end(self) -> EvalResult:
        """Resumed at the last step: evaluate once and log it as the last epoch's result (for metrics.jsonl)."""
        result = self._evaluate()
        if self.history:
            self.tracker.log(eval_line(self.history[-1], result), self.progress.global_step,
                             class_names=list(self.data.spec.classes))
        return result
