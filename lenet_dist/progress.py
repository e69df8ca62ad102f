"""What a person watching the job sees: a progress bar, a line per epoch, a final table.
Main process only; the others get a reporter that prints nothing."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


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

    def epoch_done(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self.console.print(
                f"epoch {record['epoch']}/{self.epochs}  train_loss {record['train_loss']:.4f}  "
                f"test_loss {record['test_loss']:.4f}  test_acc {record['test_accuracy']:.4f}  "
                f"{record['epoch_seconds']:.1f}s", highlight=False)

    def final_table(self, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.close()
        table = Table(title=f"{summary['run_name']}: {summary['dataset']}, world size {summary['world_size']}, "
                            f"{summary['device']}")
        for col in ("epoch", "train loss", "test loss", "test acc", "seconds"):
            table.add_column(col, justify="right")
        for h in history:
            table.add_row(str(h["epoch"]), f"{h['train_loss']:.4f}", f"{h['test_loss']:.4f}",
                          f"{h['test_accuracy']:.4f}", f"{h['epoch_seconds']:.1f}")
        self.console.print(table)
        rate = summary["train_images_per_second"]
        self.console.print(
            f"held-out accuracy {summary['test_accuracy']:.4f} on {summary['test_samples']} images; "
            f"{rate:,.0f} train images/s; {summary['wall_time_seconds']:.1f}s; model: {summary['checkpoint']}",
            highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
