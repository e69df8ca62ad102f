"""Typed records for everything that crosses a boundary: a file, a process, a checkpoint.

One definition each; every writer builds the record and every reader parses through it, so a
misspelt key is a type error at the call site, not a KeyError at the end of a 2-hour job.

    Progress        where training is
    TrainingState   training_state.pt: progress, history and the optimizer's, schedule's and
                    scaler's state (saved as plain containers: it loads with weights_only)
    EpochRecord     one evaluated epoch; summary.json's history and metrics.jsonl's eval lines
    CheckpointMeta  meta.json of every checkpoint directory
    AttemptLine     one line of attempts.jsonl: AttemptStart | AttemptFailure | AttemptEnd
    RunSummary      summary.json of a run (with an AttemptSummary per attempt)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from lenet_dist.fileio import write_json_atomic
from lenet_dist.records.attempts import AttemptEnd, AttemptFailure, AttemptLine, AttemptStart, AttemptSummary
from lenet_dist.records.base import Record, RecordError, read_record

__all__ = ["AttemptEnd", "AttemptFailure", "AttemptLine", "AttemptStart", "AttemptSummary", "RecordError",
           "read_record"]

CHECKPOINT_FORMAT = "lenet-dist-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class Normalization(Record):
    """The dataset's pixel statistics: the model sees (pixels/255 - mean) / std."""

    mean: float
    std: float

    def apply(self, x):  # a torch tensor or a numpy array
        return (x - self.mean) / self.std


class Progress(Record):
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps taken in the current epoch
    global_step: int = 0
    train_seconds: float = 0.0
    train_images: int = 0
    elapsed_before: float = 0.0  # wall seconds spent by earlier attempts of this run
    epoch_loss_sum: float = 0.0
    restarts: int = 0


class EpochRecord(Record):
    epoch: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    train_seconds: float
    epoch_seconds: float  # training + evaluation
    elapsed_seconds: float  # since the run's first process started


class TrainingState(Record):
    """What a training checkpoint holds besides the model. The optimizer, schedule and scaler states
    are torch's own state_dicts (tensors in plain containers), kept as they are."""

    progress: Progress
    history: list[EpochRecord] = []
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    tracking_run_id: str | None = None

    def to_state(self) -> dict[str, Any]:
        """Plain containers for torch.save (and torch.load's weights_only)."""
        return {"progress": self.progress.model_dump(), "history": [h.model_dump() for h in self.history],
                "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler,
                "tracking_run_id": self.tracking_run_id}


class EvalLine(EpochRecord):
    """An evaluation line of metrics.jsonl (the Tracker writes `step` and `kind` too)."""

    step: int
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class


class EvalMetrics(Record):
    test_accuracy: float
    test_loss: float
    test_samples: int


class CheckpointMeta(Record):
    """meta.json. The checkpoint writer fills format, architecture, model_args, versions, created
    and files; the trainer the rest."""

    format: Literal["lenet-dist-checkpoint"] = CHECKPOINT_FORMAT
    format_version: int = CHECKPOINT_FORMAT_VERSION
    architecture: str = "LeNet5"
    model_args: dict[str, int] = {}
    dataset: str
    classes: list[str]
    normalization: Normalization
    input_size: list[int] = [1, 28, 28]
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0
    world_size: int = 1
    run_name: str = ""
    metrics: EvalMetrics | None = None
    mirror_average: bool = False  # evaluated, and to be read, as the average of the image and its mirror
    versions: dict[str, str] = {}
    created: str = ""
    files: dict[str, str] = {}  # file name -> sha256

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n"

class TrackingInfo(Record):
    mode: str
    run_id: str | None = None


class RunSummary(Record):
    status: Literal["completed", "stopped", "diverged", "failed"]
    run_name: str
    run_dir: str
    dataset: str
    world_size: int
    rank_nodes: list[str]
    device: str
    mixed_precision: str
    epochs: int
    epochs_completed: int
    global_step: int
    global_batch_size: int
    per_process_batch_size: int
    test_accuracy: float | None
    test_loss: float | None
    test_samples: int | None
    per_class_accuracy: list[float] | None
    confusion_matrix: list[list[int]] | None
    best_test_accuracy: float | None
    train_images_per_second: float | None
    wall_time_seconds: float
    resumed: bool
    resumed_from: str | None
    restarts: int
    history: list[EpochRecord]
    checkpoint: str | None
    tracking: TrackingInfo
    slurm: dict[str, str]
    attempts: list[AttemptSummary] = []  # every start of this run: where from, how it ended, failures seen
    stop_signal: str | None = None  # stopped runs only: what asked for the stop
    # validation: the run held out data.validation_size training images and never read the test
    # set, so every test_* field above is that validation split's figure
    evaluated_on: Literal["test", "validation"] = "test"
    error: str | None = None  # failed runs only: the line the job ended with
    exit_code: int | None = None  # failed runs only
    started_at: float | None = None  # this attempt's process start (unix time): the benchmark's clock
    startup_seconds: dict[str, float] = {}  # seconds since that start at each milestone up to the first step

    FILE: ClassVar[str] = "summary.json"

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        for key in ("stop_signal", "error", "exit_code"):
            if out[key] is None:
                del out[key]
        return out

    def write(self, run_dir: Path) -> None:
        write_json_atomic(Path(run_dir) / self.FILE, self.to_dict())

    @classmethod
    def read(cls, run_dir: Path) -> RunSummary:
        return read_record(Path(run_dir) / cls.FILE, cls)
