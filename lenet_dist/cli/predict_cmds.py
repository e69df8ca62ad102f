"""Using a trained model: `predict` (images, folders, whole numbers) and `export` (TorchScript, ONNX)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lenet_dist.cli.app import DeviceOpt, app
from lenet_dist.errors import EXIT_PARTIAL, ConfigError


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command()
def predict(
    inputs: Annotated[list[str], typer.Argument(help="image files, directories, or glob patterns")],
    checkpoint: Annotated[Path | None, typer.Option(
        help="model checkpoint or run directory (default: the best model of the most recent run under runs/)")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="look into subdirectories")] = False,
    no_preprocess: Annotated[bool, typer.Option("--no-preprocess", help="inputs are already MNIST-like "
                                                "(light digit on black, 28x28): skip inversion/crop/centring "
                                                "and read each once")] = False,
    number: Annotated[bool, typer.Option("--number", help="each image is a row of separate digits (a postcode, "
                                         "a year): read them left to right")] = False,
    save_preprocessed: Annotated[Path | None, typer.Option(help="write the 28x28 images the model saw here")] = None,
    device: DeviceOpt = "auto",
    output: Annotated[OutputFormat, typer.Option("--format", help="table | json | csv")] = OutputFormat.table,
    as_json: Annotated[bool, typer.Option("--json", help="same as --format json")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="same as --format csv")] = False,
) -> None:
    """Predict the digit in each image; bad inputs get an error row and exit code 5."""
    from lenet_dist.inference.images import collect_inputs, start_loading

    fmt = "json" if as_json else "csv" if as_csv else output.value
    if save_preprocessed is not None and save_preprocessed.exists() and not save_preprocessed.is_dir():
        raise ConfigError(f"--save-preprocessed {save_preprocessed} is a file; give a folder (created if missing)")
    if number and no_preprocess:
        raise ConfigError("--number finds the digits in the photo; it cannot be used with --no-preprocess")
    files, missing = collect_inputs(inputs, recursive)
    mode = "number" if number else "mnist" if no_preprocess else "digit"
    wait_for_images = start_loading(files, mode)  # workers decode while torch is imported

    from lenet_dist.device import pick_device
    from lenet_dist.inference import output as out
    from lenet_dist.inference.predict import NumberPrediction, Prediction, default_checkpoint, predict_files

    dev = pick_device(device)
    if checkpoint is None:
        checkpoint = default_checkpoint()
    typer.echo(f"lenet-dist: using checkpoint {checkpoint}", err=True)
    row_type = NumberPrediction if number else Prediction
    rows = [row_type(item, error=why) for item, why in missing]
    rows += predict_files(files, wait_for_images(), checkpoint, device=dev, save_preprocessed=save_preprocessed,
                          number=number, pens=not no_preprocess)
    for r in rows:
        if r.error:
            typer.echo(f"lenet-dist: {r.file}: {r.error}", err=True)
    out.emit(rows, fmt)
    if any(r.error for r in rows):
        raise typer.Exit(EXIT_PARTIAL)


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(
        help="model checkpoint directory, or a run directory (its final model)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.torchscript,
    device: DeviceOpt = "cpu",
) -> None:
    """Export a model checkpoint to a file that runs without lenet-dist (raw normalised input)."""
    from lenet_dist.inference.export import export_model

    max_diff = export_model(checkpoint, output, fmt.value, device)
    typer.echo(f"wrote {output} ({fmt.value}); max |logit difference| vs the checkpoint: {max_diff:.2e}")
