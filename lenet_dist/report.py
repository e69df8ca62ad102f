"""Human-readable views of results: evaluation tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lenet_dist.evaluate import EvalResult


def print_eval(result: EvalResult, meta: dict) -> None:
    console = Console()
    classes = meta["classes"]
    console.print(f"{meta['dataset']} test set: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}, "
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


def print_predictions(rows) -> None:
    table = Table(title=f"{len(rows)} inputs")
    for col in ("file", "label", "confidence", "top 3"):
        table.add_column(col, justify="right" if col == "confidence" else "left")
    for r in rows:
        if r.error:
            table.add_row(r.file, "—", "—", f"error: {r.error}")
        else:
            top3 = "  ".join(f"{lbl} {p:.2f}" for lbl, p in r.top3)
            table.add_row(r.file, r.label, f"{r.confidence:.4f}", top3)
    Console().print(table)
