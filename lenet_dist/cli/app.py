"""The Typer app and its sub-apps; user errors are turned into one line and an exit code here,
once, for every command (a new command cannot forget it)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from lenet_dist.choices import DatasetName, TrackingMode, enum_of
from lenet_dist.errors import EXIT_PEER_LOST, EXIT_RESUMABLE, PeerLost, UserError

Dataset = enum_of("Dataset", DatasetName)
Tracking = enum_of("Tracking", TrackingMode)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="lenet-dist: %(message)s", stream=sys.stderr)
    for noisy in ("accelerate", "wandb", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _UserErrorsAsOneLine(TyperGroup):
    """Every command runs inside this group's invoke: a UserError becomes `lenet-dist: error: …` and
    its exit code, a clean training stop exit 75; anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):
        from lenet_dist.training.stopping import TrainingStopped

        _setup_logging()
        try:
            return super().invoke(ctx)
        except UserError as exc:
            typer.echo(f"lenet-dist: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except TrainingStopped as exc:
            typer.echo(f"lenet-dist: {exc} (checkpoint: {exc.checkpoint})", err=True)
            raise typer.Exit(EXIT_RESUMABLE) from None
        except PeerLost as exc:
            typer.echo(f"lenet-dist: {exc}", err=True)
            raise typer.Exit(EXIT_PEER_LOST) from None


app = typer.Typer(cls=_UserErrorsAsOneLine, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, help="LeNet5 on MNIST, trained the way production jobs are.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch, verify and import the datasets.")
checkpoint_app = typer.Typer(no_args_is_help=True, help="Inspect checkpoints.")
runs_app = typer.Typer(no_args_is_help=True, help="Look at finished runs.")
app.add_typer(data_app, name="data")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(runs_app, name="runs")

DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="where the raw IDX files live")]
DatasetOpt = Annotated[Dataset, typer.Option(help="which dataset")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
