"""The `lenet-dist` command. Thin: parse, load config, call. Heavy modules (torch, accelerate)
are imported inside the commands so that `--help` stays fast."""

from __future__ import annotations

import functools
import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lenet_dist.errors import EXIT_RESUMABLE, UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="LeNet5 on MNIST, trained the way production jobs are.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch, verify and import the datasets.")
checkpoint_app = typer.Typer(no_args_is_help=True, help="Inspect checkpoints.")
app.add_typer(data_app, name="data")
runs_app = typer.Typer(no_args_is_help=True, help="Look at finished runs.")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(runs_app, name="runs")


class Dataset(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"


class TrackingMode(str, Enum):
    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="lenet-dist: %(message)s", stream=sys.stderr)
    for noisy in ("accelerate", "wandb", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def user_errors(fn):
    """Turn a UserError into one line on stderr and its exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from lenet_dist.preemption import TrainingStopped

        _setup_logging()
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            typer.echo(f"lenet-dist: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except TrainingStopped as exc:
            typer.echo(f"lenet-dist: {exc} (checkpoint: {exc.checkpoint})", err=True)
            raise typer.Exit(EXIT_RESUMABLE) from None

    return wrapper


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default: built-in "
                                                "defaults, the same as configs/default.yaml)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="dotted override KEY=VALUE, e.g. "
                                                  "optim.lr=0.01 (repeatable)")]
DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="where the raw IDX files live")]


@app.command()
@user_errors
def train(
    config: ConfigOpt = None,
    epochs: Annotated[int | None, typer.Option(help="train.epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="train.batch_size (global, all processes)")] = None,
    lr: Annotated[float | None, typer.Option(help="optim.lr")] = None,
    seed: Annotated[int | None, typer.Option(help="train.seed")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="output_dir: run directories go under it")] = None,
    run_name: Annotated[str | None, typer.Option(help="run_name (default: generated)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data.data_dir")] = None,
    dataset: Annotated[Dataset | None, typer.Option(help="data.dataset")] = None,
    tracking: Annotated[TrackingMode | None, typer.Option(help="tracking.mode (W&B)")] = None,
    resume: Annotated[str | None, typer.Option(help="'auto' (latest valid checkpoint of this run, else "
                                               "start fresh) or a checkpoint directory")] = None,
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate the config, print the run directory "
                                          "and exit (job scripts use it to fail fast)")] = False,
) -> None:
    """Train LeNet5; works alone, under `accelerate launch`, torchrun and srun."""
    from lenet_dist.config import load_config

    flags = {"train.epochs": epochs, "train.batch_size": batch_size, "optim.lr": lr, "train.seed": seed,
             "output_dir": output_dir, "run_name": run_name, "data.data_dir": data_dir,
             "data.dataset": dataset.value if dataset else None,
             "tracking.mode": tracking.value if tracking else None}
    overrides = list(set_ or []) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    cfg = load_config(config, overrides)
    if dry_run:
        from lenet_dist.run_dir import generated_name

        typer.echo(Path(cfg.output_dir) / (cfg.run_name or generated_name(cfg.data.dataset)))
        return

    from lenet_dist.train import train as run_training

    run_training(cfg, resume=resume)


@app.command()
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="model checkpoint directory (or its meta.json)")],
    data_dir: DataDirOpt = Path("data"),
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Held-out evaluation of a model checkpoint, on any device (sharded under a multi-process launcher)."""
    from lenet_dist.evaluate import evaluate_checkpoint
    from lenet_dist.report import print_eval

    result, meta, reporter = evaluate_checkpoint(checkpoint, data_dir, device)
    if not reporter:
        return
    if as_json:
        typer.echo(json.dumps({"checkpoint": str(checkpoint), "dataset": meta["dataset"], **result.to_dict()}))
    else:
        print_eval(result, meta)


@checkpoint_app.command("info")
@user_errors
def checkpoint_info(
    path: Annotated[Path, typer.Argument(help="checkpoint directory")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a checkpoint holds, and whether every file passes its sha256 check."""
    from lenet_dist.checkpoint import read_meta

    ckpt, meta = read_meta(path)
    if as_json:
        typer.echo(json.dumps({"path": str(ckpt), "intact": True, **meta}))
        return
    kind = "training state + model" if "training_state.pt" in meta["files"] else "model"
    typer.echo(f"{ckpt}: intact ({kind}, {len(meta['files'])} files verified)")
    for key in ("architecture", "model_args", "dataset", "epoch", "global_step", "world_size", "metrics",
                "normalization", "versions", "created"):
        if key in meta:
            typer.echo(f"  {key}: {meta[key]}")


@data_app.command("fetch")
@user_errors
def data_fetch(
    dataset: Annotated[Dataset, typer.Option()] = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
    force: Annotated[bool, typer.Option(help="replace files that fail their sha256 check")] = False,
) -> None:
    """Fetch a dataset through the source chain and verify it."""
    from lenet_dist.fetch import ensure_dataset

    spec = ensure_dataset(dataset.value, data_dir, force=force)
    typer.echo(f"{spec.name}: all files present and verified in {spec.raw_dir(data_dir)}")


@data_app.command("verify")
@user_errors
def data_verify(
    dataset: Annotated[Dataset, typer.Option()] = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
) -> None:
    """Check every raw file's sha256; exit 3 if any is missing or corrupt."""
    from lenet_dist.errors import DataError
    from lenet_dist.fetch import get_spec, verify

    spec = get_spec(dataset.value)
    status = verify(spec, data_dir)
    for name, state in status.items():
        typer.echo(f"{state:8} {spec.raw_dir(data_dir) / name}")
    bad = [n for n, s in status.items() if s != "ok"]
    if bad:
        raise DataError(f"{spec.name}: {len(bad)} file(s) missing or corrupt; run `lenet-dist data fetch "
                        f"--dataset {spec.name}` (add --force to replace corrupt files)")


@data_app.command("import")
@user_errors
def data_import(
    folder: Annotated[Path, typer.Argument(help="folder holding the four IDX files, raw or .gz")],
    dataset: Annotated[Dataset, typer.Option()] = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
) -> None:
    """Import a dataset's IDX files from a folder, verifying each."""
    from lenet_dist.fetch import import_dataset

    spec = import_dataset(folder, dataset.value, data_dir)
    typer.echo(f"{spec.name}: imported and verified into {spec.raw_dir(data_dir)}")


@runs_app.command("compare")
@user_errors
def runs_compare(
    paths: Annotated[list[Path], typer.Argument(help="run directories, or folders of them (e.g. runs/)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A table of runs (a sweep's, say) from their summary.json, best held-out accuracy first."""
    from lenet_dist.runs import compare, print_table

    rows = compare(paths)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_table(rows)


class Style(str, Enum):
    user = "user"
    mnist = "mnist"


@data_app.command("samples")
@user_errors
def data_samples(
    out_dir: Annotated[Path, typer.Argument(help="folder to write the images and labels.csv into")],
    n: Annotated[int, typer.Option(min=1, max=10000, help="how many test digits")] = 100,
    style: Annotated[Style, typer.Option(help="user: photo-like, dark on light; mnist: as in the dataset")] = (
        Style.user),
    seed: Annotated[int, typer.Option()] = 0,
    dataset: Annotated[Dataset, typer.Option()] = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
) -> None:
    """Write image files made from real held-out test digits, to try `predict` on."""
    from lenet_dist.fetch import ensure_dataset
    from lenet_dist.samples import write_samples

    spec = ensure_dataset(dataset.value, data_dir)
    labels = write_samples(spec, data_dir, out_dir, n, style.value, seed)
    typer.echo(f"wrote {n} {style.value}-style images and {labels}")


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command()
@user_errors
def predict(
    inputs: Annotated[list[str], typer.Argument(help="image files, directories, or glob patterns")],
    checkpoint: Annotated[Path | None, typer.Option(help="model checkpoint (default: the best model of the "
                                                    "most recent run under runs/)")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="look into subdirectories")] = False,
    no_preprocess: Annotated[bool, typer.Option("--no-preprocess", help="inputs are already MNIST-like "
                                                "(light digit on black, 28x28): skip inversion/crop/centring")] = False,
    save_preprocessed: Annotated[Path | None, typer.Option(help="write the 28x28 images the model saw here")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    output: Annotated[OutputFormat, typer.Option("--format", help="table | json | csv")] = OutputFormat.table,
    as_json: Annotated[bool, typer.Option("--json", help="same as --format json")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="same as --format csv")] = False,
) -> None:
    """Predict the digit in each image; bad inputs get an error row and exit code 5."""
    from lenet_dist.images import collect_inputs, start_loading

    fmt = "json" if as_json else "csv" if as_csv else output.value
    files, missing = collect_inputs(inputs, recursive)
    wait_for_images = start_loading(files, no_preprocess)  # workers decode while torch is imported

    from lenet_dist.distributed import pick_device
    from lenet_dist.predict import Prediction, default_checkpoint, predict_files

    dev = pick_device(device)
    if checkpoint is None:
        checkpoint = default_checkpoint()
    typer.echo(f"lenet-dist: using checkpoint {checkpoint}", err=True)
    rows = [Prediction(item, error=why) for item, why in missing]
    rows += predict_files(files, wait_for_images(), checkpoint, device=dev, save_preprocessed=save_preprocessed)
    for r in rows:
        if r.error:
            typer.echo(f"lenet-dist: {r.file}: {r.error}", err=True)
    if fmt == "json":
        from lenet_dist.predict import as_json as to_json

        typer.echo(to_json(rows))
    elif fmt == "csv":
        from lenet_dist.predict import as_csv as to_csv

        typer.echo(to_csv(rows), nl=False)
    else:
        from lenet_dist.report import print_predictions

        print_predictions(rows)
    if any(r.error for r in rows):
        from lenet_dist.errors import EXIT_PARTIAL

        raise typer.Exit(EXIT_PARTIAL)


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="model checkpoint directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.torchscript,
) -> None:
    """Export a model checkpoint to a file that runs without lenet-dist (raw normalised input)."""
    from lenet_dist.export import export_model

    max_diff = export_model(checkpoint, output, fmt.value)
    typer.echo(f"wrote {output} ({fmt.value}); max |logit difference| vs the checkpoint: {max_diff:.2e}")


@app.command()
@user_errors
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """(Re)draw <run>/report.png from metrics.jsonl: loss and accuracy per epoch, confusion matrix."""
    from lenet_dist.report import write_report

    typer.echo(f"wrote {write_report(run_dir)}")
