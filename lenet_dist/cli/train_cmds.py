"""`train`, `evaluate`, `checkpoint info`."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from lenet_dist.cli.app import DataDirOpt, Dataset, DeviceOpt, JsonOpt, Tracking, app, checkpoint_app
from lenet_dist.errors import EXIT_RESUMABLE, ConfigError, UserError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default: built-in "
                                                "defaults, the same as configs/default.yaml)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="dotted override KEY=VALUE, e.g. "
                                                  "optim.lr=0.01 (repeatable)")]


@app.command()
def train(
    config: ConfigOpt = None,
    epochs: Annotated[int | None, typer.Option(help="train.epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="train.batch_size (global, all processes)")] = None,
    lr: Annotated[float | None, typer.Option(help="optim.lr")] = None,
    seed: Annotated[int | None, typer.Option(help="train.seed")] = None,
    output_dir: Annotated[str | None, typer.Option(help="output_dir: run directories go under it")] = None,
    run_name: Annotated[str | None, typer.Option(help="run_name (default: generated)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="data.data_dir")] = None,
    dataset: Annotated[Dataset | None, typer.Option(help="data.dataset")] = None,
    tracking: Annotated[Tracking | None, typer.Option(help="tracking.mode (W&B)")] = None,
    resume: Annotated[str | None, typer.Option(help="'auto' (latest valid checkpoint of this run, else "
                                               "start fresh) or a checkpoint directory")] = None,
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate the config, print the run directory "
                                          "and exit (job scripts use it to fail fast)")] = False,
    fetch_data: Annotated[bool, typer.Option("--fetch-data", help="with --dry-run: also fetch and verify the "
                                             "dataset, once, so that the job's ranks only read it")] = False,
    world_size: Annotated[int | None, typer.Option("--world-size", min=1, help="with --dry-run: check the batch "
                                                   "settings for this many processes")] = None,
    default_run_name: Annotated[str | None, typer.Option(hidden=True, help="the run's name when neither "
                                                         "--run-name, --set run_name nor the config gives one "
                                                         "(job scripts pass the job's)")] = None,
) -> None:
    """Train LeNet5; works alone, under `accelerate launch`, torchrun and srun."""
    with deterministic_failures_end_the_launch():
        _train(config, epochs, batch_size, lr, seed, output_dir, run_name, data_dir, dataset, tracking, resume, set_,
               dry_run, default_run_name, fetch_data, world_size)


@contextmanager
def deterministic_failures_end_the_launch():
    """Under torchrun's elastic agent: a restarted attempt exits at once with the code of a failure
    that restarting cannot fix (training/failure_record.py)."""
    from lenet_dist.training import failure_record
    from lenet_dist.training.distributed import elastic_restart, job_key, under_elastic_agent
    from lenet_dist.training.stopping import TrainingStopped

    if not under_elastic_agent():
        yield
        return
    key = job_key()
    if elastic_restart() == 0:
        failure_record.forget(key)
    elif (failure := failure_record.recorded(key)) is not None:
        raise failure
    try:
        yield
    except UserError as exc:
        failure_record.record(key, exc.exit_code, str(exc))
        raise
    except TrainingStopped as exc:
        failure_record.record(key, EXIT_RESUMABLE, f"{exc} (checkpoint: {exc.checkpoint})")
        raise


def _train(config, epochs, batch_size, lr, seed, output_dir, run_name, data_dir, dataset, tracking, resume, set_,
           dry_run, default_run_name, fetch_data, world_size) -> None:
    from lenet_dist.config import load_config

    flags = {"train.epochs": epochs, "train.batch_size": batch_size, "optim.lr": lr, "train.seed": seed,
             "output_dir": output_dir, "run_name": run_name, "data.data_dir": data_dir,
             "data.dataset": dataset.value if dataset else None,
             "tracking.mode": tracking.value if tracking else None}
    if run_name is not None and not run_name.strip():
        raise ConfigError("--run-name must not be empty (leave it out to have a name generated)")
    overrides = list(set_ or []) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    cfg = load_config(config, overrides)
    if cfg.run_name is None and default_run_name:
        cfg = load_config(config, [*overrides, f"run_name={default_run_name}"])
    if dry_run:
        from lenet_dist.training.batching import for_world
        from lenet_dist.training.run_dir import generated_name

        for_world(cfg, world_size or 1)
        if fetch_data:
            from lenet_dist.data.fetch import ensure_dataset

            ensure_dataset(cfg.data.dataset, cfg.data.data_dir)
        typer.echo(Path(cfg.output_dir) / (cfg.run_name or generated_name(cfg.data.dataset)))
        return
    from lenet_dist.training.train import train as run_training

    run_training(cfg, resume=resume)


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(
        help="model checkpoint directory (or its meta.json), or a run directory (its final model)")],
    data_dir: DataDirOpt = Path("data"),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Held-out evaluation of a model checkpoint, on any device (sharded under a multi-process launcher)."""
    from lenet_dist.tracking.console import print_eval
    from lenet_dist.training.evaluate_checkpoint import evaluate_checkpoint

    result, meta, reporter = evaluate_checkpoint(checkpoint, data_dir, device)
    if not reporter:
        return
    if as_json:
        typer.echo(json.dumps({"checkpoint": str(checkpoint), "dataset": meta.dataset,
                               "mirror_average": meta.mirror_average, **result.to_dict()}))
    else:
        print_eval(result, meta)


@checkpoint_app.command("info")
def checkpoint_info(
    path: Annotated[Path, typer.Argument(help="checkpoint directory")],
    as_json: JsonOpt = False,
) -> None:
    """What a checkpoint holds, and whether every file passes its sha256 check."""
    from lenet_dist.checkpoint import STATE_FILE, read_meta

    ckpt, meta = read_meta(path)
    info = meta.model_dump(mode="json", exclude_none=True)
    if as_json:
        typer.echo(json.dumps({"path": str(ckpt), "intact": True, **info}))
        return
    kind = "training state + model" if STATE_FILE in meta.files else "model"
    typer.echo(f"{ckpt}: intact ({kind}, {len(meta.files)} files verified)")
    for key in ("architecture", "model_args", "dataset", "epoch", "global_step", "world_size", "metrics",
                "normalization", "versions", "created"):
        if key in info:
            typer.echo(f"  {key}: {info[key]}")
