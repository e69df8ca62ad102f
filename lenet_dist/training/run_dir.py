"""The run directory: <output_dir>/<run_name>/, named once (on the main process) for all ranks,
and written by one job at a time: the main process holds a lock on it for the whole run, so a
second `train --run-name same` (or a `--resume auto` while the run is live) stops at once."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import BaseFileLock

from lenet_dist import locks
from lenet_dist.config import Config
from lenet_dist.errors import ConfigError
from lenet_dist.training.distributed import Processes, job_key, under_elastic_agent

LOCK_FILE = ".writer.lock"
WRITER_FILE = ".writer"  # who holds the lock: for the message the second writer gets


def generated_name(dataset: str) -> str:
    return f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _launch_name(cfg: Config) -> str:
    """An unnamed run keeps its generated name across the elastic agent's restarts of this launch,
    so a restarted attempt finds and resumes its own run."""
    if not under_elastic_agent():
        return generated_name(cfg.data.dataset)
    memo = Path(cfg.output_dir) / ".launches" / job_key()
    if memo.is_file():
        return memo.read_text().strip()
    name = generated_name(cfg.data.dataset)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(name + "\n")
    return name


def _holder(run_dir: Path) -> str:
    try:
        w = json.loads((run_dir / WRITER_FILE).read_text())
        return f"pid {w['pid']} on {w['host']}, since {w['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _claim(cfg: Config, resume: str | None) -> tuple[str, BaseFileLock | None, str | None]:
    """(run name, the held lock, error) as decided by the main process."""
    try:
        name = cfg.run_name or _launch_name(cfg)
        run_dir = Path(cfg.output_dir) / name
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = locks.acquire(run_dir / LOCK_FILE, timeout=0)
    except locks.Timeout:
        return name, None, (f"run directory {run_dir} is being written by {_holder(run_dir)}; wait for that run "
                            "to end, or pick another --run-name")
    except OSError as exc:
        return cfg.run_name or "", None, f"cannot write under {cfg.output_dir}: {exc.strerror}"
    started = (run_dir / "checkpoints").exists() or (run_dir / "summary.json").exists()
    if started and resume is None:
        lock.release()
        return name, None, (f"run directory {run_dir} already holds a run; continue it with --resume auto "
                            "or pick another --run-name")
    (run_dir / WRITER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                   "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    return name, lock, None


@contextmanager
def claimed_run_dir(cfg: Config, procs: Processes, resume: str | None) -> Iterator[Path]:
    """The run directory, held for this job while the block runs; every rank gets the same path
    or the same error."""
    name, lock, error = _claim(cfg, resume) if procs.is_main else (None, None, None)
    name, error = procs.broadcast((name, error))
    if error:
        raise ConfigError(error)
    try:
        yield Path(cfg.output_dir) / name
    finally:
        if lock is not None:
            (Path(cfg.output_dir) / name / WRITER_FILE).unlink(missing_ok=True)
            lock.release()
