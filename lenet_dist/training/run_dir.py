"""The run directory: <output_dir>/<run_name>/, named once (on the main process) for all ranks."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from lenet_dist.config import Config
from lenet_dist.errors import ConfigError
from lenet_dist.training.distributed import Processes


def generated_name(dataset: str) -> str:
    return f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _claim(cfg: Config, resume: str | None) -> tuple[str, str | None]:
    """(run name, error) as decided by the main process."""
    name = cfg.run_name or generated_name(cfg.data.dataset)
    run_dir = Path(cfg.output_dir) / name
    started = (run_dir / "checkpoints").exists() or (run_dir / "summary.json").exists()
    if started and resume is None:
        return name, (f"run directory {run_dir} already holds a run; continue it with --resume auto "
                      "or pick another --run-name")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return name, f"cannot write the run directory {run_dir}: {exc.strerror}"
    return name, None


def prepare_run_dir(cfg: Config, procs: Processes, resume: str | None) -> Path:
    """Create the run directory; every rank gets the same path or the same error."""
    name, error = procs.broadcast(_claim(cfg, resume) if procs.is_main else None)
    if error:
        raise ConfigError(error)
    return Path(cfg.output_dir) / name
