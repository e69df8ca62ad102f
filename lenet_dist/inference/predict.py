"""Predict digits in image files with a model checkpoint: batched, on CPU or GPU, no accelerate.
A bad input gets an error row; it never stops the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lenet_dist.checkpoint import best_checkpoint, load_model
from lenet_dist.errors import CheckpointError
from lenet_dist.records import RecordError, RunSummary


@dataclass
class Prediction:
    file: str
    label: str | None = None
    confidence: float | None = None
    top3: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def _diverged(run_dir: Path) -> bool:
    try:
        return RunSummary.read(run_dir).status == "diverged"
    except RecordError:
        return False


def default_checkpoint(runs_dir: Path = Path("runs")) -> Path:
    """The best model checkpoint of the most recent run under runs_dir (a diverged run never counts)."""
    runs = sorted((p for p in Path(runs_dir).glob("*/summary.json")), key=lambda p: p.stat().st_mtime)
    for summary in reversed(runs):
        if _diverged(summary.parent):
            continue
        best = best_checkpoint(summary.parent)
        if best is not None:
            return best
    raise CheckpointError(f"no trained model found under {runs_dir}/; train one or pass --checkpoint PATH")


def predict_files(files: list[Path], loaded: list[tuple[np.ndarray | None, str | None]], checkpoint: Path, *,
                  device: torch.device | str = "cpu", batch_size: int = 1024,
                  save_preprocessed: Path | None = None) -> list[Prediction]:
    """One row per file; `loaded` holds each file's preprocessed image or its error (images.start_loading)."""
    model, meta = load_model(checkpoint)
    dev = torch.device(device)
    model = model.to(dev)
    classes = meta.classes
    rows: list[Prediction] = []
    ready: list[tuple[Prediction, np.ndarray]] = []
    for i, (f, (image, error)) in enumerate(zip(files, loaded, strict=True)):
        row = Prediction(str(f), error=error)
        rows.append(row)
        if image is None:
            continue
        ready.append((row, image))
        if save_preprocessed is not None:
            _save_png(image, Path(save_preprocessed) / f"{i:05d}-{f.stem}.png")
    for start in range(0, len(ready), batch_size):
        chunk = ready[start:start + batch_size]
        x = torch.from_numpy(np.stack([a for _, a in chunk]))[:, None].to(dev)
        with torch.inference_mode():
            probs = torch.softmax(model(meta.normalization.apply(x)).float(), dim=1).cpu()
        top_p, top_i = probs.topk(3, dim=1)
        for (row, _), ps, idx in zip(chunk, top_p.tolist(), top_i.tolist(), strict=True):
            row.label, row.confidence = classes[idx[0]], ps[0]
            row.top3 = [(classes[j], p) for j, p in zip(idx, ps, strict=True)]
    return rows


def _save_png(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((a * 255).round().astype(np.uint8)).save(path)
