"""report.png: loss and held-out accuracy per epoch and the confusion matrix, from metrics.jsonl,
so a cluster without W&B still shows the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lenet_dist.errors import UserError
from lenet_dist.fileio import atomic_file, disk_full_as_user_error
from lenet_dist.records import EvalLine

REPORT_BYTES = 200 * 1024  # about what report.png takes, for the full-disk message


def _eval_records(run_dir: Path) -> list[EvalLine]:
    metrics = Path(run_dir) / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl: not a lenet-dist run directory")
    lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    records = [EvalLine.model_validate(r) for r in lines if r.get("kind") == "eval"]
    by_epoch = {r.epoch: r for r in records}  # a resumed run may repeat none
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
    epochs = [r.epoch for r in evals]
    fig, (ax_loss, ax_acc, ax_cm) = plt.subplots(1, 3, figsize=(15, 4.5), dpi=100)
    ax_loss.plot(epochs, [r.train_loss for r in evals], "o-", label="train (augmented, smoothed)")
    ax_loss.plot(epochs, [r.test_loss for r in evals], "o-", label="held-out")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * r.test_accuracy for r in evals], "o-", color="tab:green")
    ax_acc.set(title=f"held-out accuracy (last {100 * evals[-1].test_accuracy:.2f}%)", xlabel="epoch",
               ylabel="%")
    ax_acc.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    cm = np.array(evals[-1].confusion_matrix)
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
    try:
        with disk_full_as_user_error(out, REPORT_BYTES), atomic_file(out) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return out
