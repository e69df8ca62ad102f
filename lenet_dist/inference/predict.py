"""Predict digits in image files with a model checkpoint: batched, on CPU or GPU, no accelerate.
A bad input gets an error row; it never stops the others."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lenet_dist.checkpoint import best_checkpoint, load_model
from lenet_dist.data.augment import pen_width
from lenet_dist.data.datasets import DATASETS
from lenet_dist.errors import CheckpointError
from lenet_dist.inference.preprocess import Row
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
    weakest digit's; `uncertain` when any digit is, when two ways to cut the row read about equally
    well, or when ink the size of a small digit was left out."""

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


PEN = 0.5  # read thicker and thinner by this blend too: inside the range training's augment.stroke spans


def probabilities(model: torch.nn.Module, meta, x: torch.Tensor, pens: bool = True) -> torch.Tensor:
    """Class probabilities of a batch of [0, 1] images. With `pens`, digits (a pen-drawn dataset) are
    read at three pen widths and the probabilities averaged: a stranger's pen, a scan's blur or a
    photo's threshold leaves strokes thicker or thinner than the training images, and the views
    closer to those outvote the one further off."""
    spec = DATASETS.get(meta.dataset)
    views = [x, pen_width(x, PEN), pen_width(x, -PEN)] if pens and spec is not None and spec.pen_drawn else [x]
    with torch.inference_mode():
        probs = torch.softmax(model(meta.normalization.apply(torch.cat(views))).float(), dim=1)
    return probs.view(len(views), len(x), -1).mean(0)


def read_digits(model: torch.nn.Module, meta, images: list[np.ndarray], dev: torch.device,
                batch_size: int, pens: bool = True) -> list[DigitRead]:
    """One batched forward pass per batch_size images (see probabilities for `pens`)."""
    out: list[DigitRead] = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.stack(images[start:start + batch_size]))[:, None].to(dev)
        probs = probabilities(model, meta, x, pens).cpu()
        top_p, top_i = probs.topk(3, dim=1)
        for ps, idx in zip(top_p.tolist(), top_i.tolist(), strict=True):
            top3 = [(meta.classes[j], p) for j, p in zip(idx, ps, strict=True)]
            out.append(DigitRead(top3[0][0], ps[0], top3, ps[0] < UNCERTAIN_BELOW or ps[0] - ps[1] < UNCERTAIN_MARGIN))
    return out


CLOSE_READINGS = 0.05  # two ways to cut a stretch of a row within this many nats of each other: a person should look


def choose_reading(row: Row, reads: list[DigitRead], at: int = 0) -> tuple[list[int], bool]:
    """The likeliest way to cut the row (indices into row.images): in each slot, the reading whose
    digits the model is surest of together (the product of their top probabilities, so a reading
    with more digits must earn each one), the first (the ink's shape's choice) on a tie; and whether
    some slot's runner-up came close, or ink was left out that could be a digit. The row's images
    were read into reads[at:]."""
    chosen, close = [], row.left_out
    for slot in row.slots:
        scores = [sum(math.log(max(reads[at + i].confidence, 1e-9)) for i in reading) for reading in slot]
        order = sorted(range(len(slot)), key=lambda k: (-scores[k], k))
        chosen += slot[order[0]]
        close = close or (len(slot) > 1 and scores[order[0]] - scores[order[1]] < CLOSE_READINGS)
    return chosen, close


def predict_files(files: list[Path], loaded: list[tuple[np.ndarray | Row | None, str | None]], checkpoint: Path, *,
                  device: torch.device | str = "cpu", batch_size: int = 1024, save_preprocessed: Path | None = None,
                  number: bool = False, pens: bool = True) -> list[Prediction] | list[NumberPrediction]:
    """One row per file; `loaded` holds each file's preprocessed image (a Row for a number) or its
    error (images.start_loading). pens: False reads each image once, as the held-out evaluation does
    (--no-preprocess)."""
    model, meta = load_model(checkpoint, as_evaluated=True)
    dev = torch.device(device)
    model = model.to(dev)
    images, first = [], []
    for image, _ in loaded:
        first.append(len(images))
        if image is not None:
            images += list(image.images if isinstance(image, Row) else image.reshape(-1, 28, 28))
    reads = read_digits(model, meta, images, dev, batch_size, pens)
    out = []
    for i, (f, (image, err)) in enumerate(zip(files, loaded, strict=True)):
        if image is None:
            out.append(NumberPrediction(str(f), error=err) if number else Prediction(str(f), error=err))
            continue
        chosen, close = choose_reading(image, reads, first[i]) if isinstance(image, Row) else ([0], False)
        digits = [reads[first[i] + k] for k in chosen]
        if save_preprocessed is not None:
            for n, k in enumerate(chosen):
                name = f"{i:05d}-{f.stem}{f'-{n}' if number else ''}.png"
                _save_png(images[first[i] + k], Path(save_preprocessed) / name)
        if number:
            out.append(NumberPrediction(str(f), "".join(d.label for d in digits), min(d.confidence for d in digits),
                                        close or any(d.uncertain for d in digits), digits))
        else:
            out.append(Prediction(str(f), digits[0].label, digits[0].confidence, digits[0].top3, digits[0].uncertain))
    return out


def _save_png(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((a * 255).round().astype(np.uint8)).save(path)
