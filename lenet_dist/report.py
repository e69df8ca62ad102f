"""Human-readable views of results: evaluation and prediction tables, report.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from lenet_dist.errors import UserError


def print_eval(result, meta: dict) -> None:
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


def _eval_records(run_dir: Path) -> list[dict]:
    metrics = Path(run_dir) / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl: not a lenet-dist run directory")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    by_epoch = {r["epoch"]: r for r in records if r.get("kind") == "eval"}  # a resumed run may repeat none
    if not by_epoch:
        raise UserError(f"{run_dir} has no evaluated epoch yet: nothing to plot")
    return [by_epoch[e] for e in sorted(by_epoch)]


def write_report(run_dir: Path) -> Path:
    """report.png: loss and accuracy per epoch and the last confusion matrix, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    evals = _eval_records(run_dir)
    epochs = [r["epoch"] for r in evals]
    fig, (ax_loss, ax_acc, ax_cm) = plt.subplots(1, 3, figsize=(15, 4.5), dpi=100)
    ax_loss.plot(epochs, [r["train_loss"] for r in evals], "o-", label="train (augmented, smoothed)")
    ax_loss.plot(epochs, [r["test_loss"] for r in evals], "o-", label="held-out")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in evals], "o-", color="tab:green")
    ax_acc.set(title=f"held-out accuracy (last {100 * evals[-1]['test_accuracy']:.2f}%)", xlabel="epoch",
               ylabel="%")
    ax_acc.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    cm = np.array(evals[-1]["confusion_matrix"])
    ax_cm.imshow(np.log1p(cm), cmap="Blues")
    for (t, p), n in np.ndenumerate(cm):
        if n:
            ax_cm.text(p, t, str(n), ha="center", va="center", fontsize=7,
                       color="white" if n > cm.max() / 2 else "black")
    ax_cm.set(title=f"confusion matrix, epoch {epochs[-1]}", xlabel="predicted", ylabel="true",
              xticks=range(len(cm)), yticks=range(len(cm)))
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    out = Path(run_dir) / "report.png"
    tmp = out.with_name(".report.png.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(out)
    return out
