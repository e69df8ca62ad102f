"""The `lenet-dist` command. Thin: parse, load config, call. Heavy modules (torch, accelerate)
are imported inside the commands so that `--help` stays fast."""

from lenet_dist.cli import data_cmds, finetune_cmds, predict_cmds, runs_cmds, serve_cmds, train_cmds  # noqa: F401  (they register)
from lenet_dist.cli.app import app

__all__ = ["app"]
