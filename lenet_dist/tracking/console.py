"""What a person at a terminal sees: the training progress bar, a line per epoch and a final
table (main process only; the others get a reporter that prints nothing), and evaluation tables."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lenet_dist.records import CheckpointMeta, EpochRecord, RunSummary


class ProgressReporter:
    def __init__(self, enabled: bool, epochs: int, steps_per_epoch: int):
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.epochs = epochs
        self._bar = None
        if enabled and self.console.is_terminal:
            self._bar = Progress(TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                                 MofNCompleteColumn(), TimeRemainingColumn(), console=self.console,
                                 transient=True)
            self._task = self._bar.add_task("train", total=steps_per_epoch, epoch=1, epochs=epochs)
            self._bar.start()

    def step(self, epoch: int, step: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, epoch=epoch + 1)

    def epoch_done(self, record: EpochRecord) -> None:
        if self.enabled:
            self.console.print(
                f"epoch {record.epoch}/{self.epochs}  train_loss {record.train_loss:.4f}  "
                f"test_loss {record.test_loss:.4f}  test_acc {record.test_accuracy:.4f}  "
                f"{record.epoch_seconds:.1f}s", highlight=False)

    def final_table(self, history: list[EpochRecord], summary: RunSummary) -> None:
        if not self.enabled:
            return
        self.close()
        table = Table(title=f"{summary.run_name}: {summary.dataset}, world size {summary.world_size}, "
                            f"{summary.device}")
        for col in ("epoch", "train loss", "test loss", "test acc", "seconds"):
            table.add_column(col, justify="right")
        for h in history:
            table.add_row(str(h.epoch), f"{h.train_loss:.4f}", f"{h.test_loss:.4f}", f"{h.test_accuracy:.4f}",
                          f"{h.epoch_seconds:.1f}")
        self.console.print(table)
        rate = summary.train_images_per_second or 0.0
        self.console.print(
            f"held-out accuracy {summary.test_accuracy:.4f} on {summary.test_samples} images; "
            f"{rate:,.0f} train images/s; {summary.wall_time_seconds:.1f}s; model: {summary.checkpoint}",
            highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def print_eval(result, meta: CheckpointMeta) -> None:
    console = Console()
    classes = meta.classes
    console.print(f"{meta.dataset} test set: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}, "
                  f"{result.samples} images", highlight=False)
    per_class = Table(title="per-class accuracy")
    per_class.add_column("class")
    per_class.add_column("accuracy", justify="right")
    for name, acc in zip(classes, result.per_class_accuracy, strict=True):
        per_class.add_row(name, f"{acc:.4f}")
    console.print(per_class)
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("")
    for i in range(len(classes)):
        confusion.add_column(str(i), justify="right")
    for i, row in enumerate(result.confusion_matrix):
        confusion.add_row(f"{i} {classes[i]}", *[str(n) for n in row])
    console.print(confusion)
