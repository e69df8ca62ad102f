"""`finetune`: teach a trained model a person's own handwriting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lenet_dist.cli.app import Tracking, app
from lenet_dist.cli.train_cmds import SetOpt, deterministic_failures_end_the_launch

# The recipe, all ordinary config (any of it can be changed with --set): a short, gentle run from the
# trained weights over a slice of the model's own dataset, so that it does not forget, with the
# person's images repeated until they are about a quarter of every epoch (each repeat differently
# augmented: a few examples of a hand stand for the ways that hand varies).
DATASET_IMAGES = 12_000
PERSON_SHARE = 0.25
RECIPE = {"optim.lr": 1e-3, "schedule.warmup_fraction": 0.1, "checkpoint.every_seconds": 0}


def _repeat(folder: Path, dataset_images: int) -> int:
    """How often each of the person's images appears per epoch to make PERSON_SHARE of it."""
    images = sum(1 for p in folder.glob("*/*") if p.is_file()) if folder.is_dir() else 0
    return max(1, round(PERSON_SHARE / (1 - PERSON_SHARE) * dataset_images / max(images, 1)))


@app.command()
def finetune(
    folder: Annotated[Path, typer.Argument(help="a person's labelled digits: FOLDER/0/*.png … FOLDER/9/*.png "
                                           "(digits the model already reads may be left out)")],
    checkpoint: Annotated[Path, typer.Option(help="the trained model to start from: a checkpoint or a run "
                                             "directory")],
    epochs: Annotated[int, typer.Option(min=1, help="train.epochs")] = 4,
    output_dir: Annotated[str | None, typer.Option(help="output_dir: run directories go under it")] = None,
    run_name: Annotated[str | None, typer.Option(help="run_name (default: generated)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="data.data_dir: the model's dataset, mixed in")] = None,
    tracking: Annotated[Tracking | None, typer.Option(help="tracking.mode (W&B)")] = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune a trained model on a person's labelled digits, mixed with its own dataset so it does
    not forget; writes a run directory as `train` does (also under `accelerate launch`)."""
    from lenet_dist.checkpoint import read_meta
    from lenet_dist.config import load_config
    from lenet_dist.training.train import train as run_training

    _, meta = read_meta(checkpoint)  # a bad checkpoint fails here, before any data is read
    flags = {"data.dataset": meta.dataset, "train.init_from": str(checkpoint), "data.extra_folder": str(folder),
             "data.train_subset": DATASET_IMAGES, "train.epochs": epochs, **RECIPE, "output_dir": output_dir,
             "run_name": run_name, "data.data_dir": data_dir, "tracking.mode": tracking.value if tracking else None}
    cfg = load_config(None, list(set_ or []), {k: v for k, v in flags.items() if v is not None})
    if not any(s.startswith("data.extra_repeat=") for s in set_ or []):  # else the user's own
        cfg.data.extra_repeat = _repeat(folder, cfg.data.train_subset or DATASET_IMAGES)
    with deterministic_failures_end_the_launch():
        run_training(cfg)
