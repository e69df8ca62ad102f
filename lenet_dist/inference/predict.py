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

UNCERTAIN_BELOW = 0.6  # top-1 probability under this, or
UNCERTAIN_MARGIN = 0.25  # top-1 within this of top-2: a person should look


@dataclass
class DigitRead:
    label: str
    confidence: float
    top3: list[tuple[str, float]]
    uncertain: bool


@dataclass
class Prediction:
    file: str
    label: str | None = None
    confidence: float | None = None
    top3: list[tuple[str, float]] = field(default_factory=list)
    uncertain: bool | None = None
    error: str | None = None


@dataclass
class NumberPrediction:
    """A row of digits read left to right: `number` is their labels joined; `confidence` the
    weakest digit's; `uncertain` when any digit is."""

    file: str
    number: str | None = None
    confidence: float | None = None
    uncertain: bool | None = None
    digits: list[DigitRead] = field(default_factory=list)
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


def read_digits(model: torch.nn.Module, meta, images: list[np.ndarray], dev: torch.device,
          batch_size: int) -> list[DigitRead]:
    """One batched forward pass per batch_size images."""
    out: list[DigitRead] = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.stack(images[start:start + batch_size]))[:, None].to(dev)
        with torch.inference_mode():
            probs = torch.softmax(model(meta.normalization.apply(x)).float(), dim=1).cpu()
        top_p, top_i = probs.topk(3, dim=1)
        for ps, idx in zip(top_p.tolist(), top_i.tolist(), strict=True):
            top3 = [(meta.classes[j], p) for j, p in zip(idx, ps, strict=True)]
            out.append(DigitRead(top3[0][0], ps[0], top3, ps[0] < UNCERTAIN_BELOW or ps[0] - ps[1] < UNCERTAIN_MARGIN))
    return out


def predict_files(files: list[Path], loaded: list[tuple[np.ndarray | None, str | None]], checkpoint: Path, *,
                  device: torch.device | str = "cpu", batch_size: int = 1024, save_preprocessed: Path | None = None,
                  number: bool = False) -> list[Prediction] | list[NumberPrediction]:
    """One row per file; `loaded` holds each file's preprocessed image ([k, 28, 28] for a number) or
    its error (images.start_loading)."""
    model, meta = load_model(checkpoint)
    dev = torch.device(device)
    model = model.to(dev)
    images, owners = [], []
    for i, (f, (image, _)) in enumerate(zip(files, loaded, strict=True)):
        for k, digit in enumerate(image.reshape(-1, 28, 28) if image is not None else []):
            images.append(digit)
            owners.append(i)
            if save_preprocessed is not None:
                _save_png(digit, Path(save_preprocessed) / f"{i:05d}-{f.stem}{f'-{k}' if number else ''}.png")
    reads = read_digits(model, meta, images, dev, batch_size)
    per_file: list[list[DigitRead]] = [[] for _ in files]
    for owner, read in zip(owners, reads, strict=True):
        per_file[owner].append(read)
    if not number:
        return [Prediction(str(f), r[0].label, r[0].confidence, r[0].top3, r[0].uncertain) if r else
                Prediction(str(f), error=err) for f, r, (_, err) in zip(files, per_file, loaded, strict=True)]
    return [NumberPrediction(str(f), "".join(d.label for d in r), min(d.confidence for d in r),
                             any(d.uncertain for d in r), r) if r else
            NumberPrediction(str(f), error=err) for f, r, (_, err) in zip(files, per_file, loaded, strict=True)]


def _save_png(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((a * 255).round().astype(np.uint8)).save(path)
