"""Checkpoints: one directory layout for the inference model and the training state.

    <dir>/model.safetensors   CPU tensors of the unwrapped model (no module./_orig_mod. prefixes)
    <dir>/meta.json           model arguments, dataset, classes, normalisation, progress, metrics,
                              versions, and the sha256 of every other file in <dir>
    <dir>/training_state.pt   (training checkpoints only) optimizer, scheduler, scaler, progress;
                              read with torch.load(weights_only=True)

A directory is written under a temporary name, fsynced and renamed: a crash mid-save leaves the
previous checkpoints as they were and at most a hidden .tmp directory, which is ignored.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from lenet_dist.errors import CheckpointError
from lenet_dist.faults import crash_point
from lenet_dist.fetch import sha256_of
from lenet_dist.model import LeNet5

FORMAT = "lenet-dist-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "training_state.pt"
STEP_PREFIX = "step-"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success make it `dest` in one rename."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        if dest.exists():  # replacing (the final model of a re-run): keep the old until the new is in
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
        _fsync(dest.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": torch.__version__}
    try:
        out["lenet_dist"] = version("lenet-dist")
    except PackageNotFoundError:
        out["lenet_dist"] = "unknown"
    return out


def save_checkpoint(dest: Path, model: LeNet5, meta: dict[str, Any],
                    training_state: dict[str, Any] | None = None) -> Path:
    """Write a model (and optionally training-state) checkpoint directory atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_dir(dest) as tmp:
        save_file(tensors, str(tmp / MODEL_FILE))
        crash_point("during-save")
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        full_meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": type(model).__name__,
            "model_args": model.model_args(),
            **meta,
            "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {f.name: sha256_of(f) for f in sorted(tmp.iterdir())},
        }
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2) + "\n")
    return Path(dest)


def _resolve_dir(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (META_FILE, MODEL_FILE, STATE_FILE):
        return path.parent
    if path.is_dir():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    raise CheckpointError(
        f"{path} is not a lenet-dist checkpoint (expected a directory holding {META_FILE} and {MODEL_FILE})"
    )


def read_meta(path: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint directory and its metadata, after checking every file's sha256."""
    ckpt = _resolve_dir(path)
    meta_path = ckpt / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt} is not a lenet-dist checkpoint: {META_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{meta_path} is corrupt (not valid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not lenet-dist checkpoint metadata")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{ckpt} was written by a newer lenet-dist (format {meta['format_version']})")
    for name, digest in meta.get("files", {}).items():
        f = ckpt / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {ckpt} is incomplete: {name} is missing")
        if sha256_of(f) != digest:
            raise CheckpointError(f"checkpoint {ckpt} is corrupt: {name} fails its sha256 check")
    if MODEL_FILE not in meta.get("files", {}):
        raise CheckpointError(f"checkpoint {ckpt} lists no {MODEL_FILE}")
    return ckpt, meta


def load_model(path: Path) -> tuple[LeNet5, dict[str, Any]]:
    """Rebuild the model on CPU from a checkpoint; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    ckpt, meta = read_meta(path)
    if meta.get("architecture") != "LeNet5":
        raise CheckpointError(f"checkpoint {ckpt} holds a {meta.get('architecture')!r}, not a LeNet5")
    try:
        model = LeNet5(**meta["model_args"])
    except (KeyError, TypeError):
        raise CheckpointError(f"checkpoint {ckpt} has unusable model_args: {meta.get('model_args')!r}") from None
    try:
        tensors = load_file(str(ckpt / MODEL_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {ckpt}: {MODEL_FILE} is unreadable ({exc})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        raise CheckpointError(f"checkpoint {ckpt} does not match the LeNet5 architecture (tensor names/shapes)")
    model.load_state_dict(tensors)
    model.eval()
    return model, meta


def load_training_state(path: Path) -> tuple[LeNet5, dict[str, Any], dict[str, Any]]:
    """Model, metadata and training state, all on CPU (a state saved on GPU resumes anywhere)."""
    model, meta = load_model(path)
    ckpt = _resolve_dir(path)
    if STATE_FILE not in meta.get("files", {}):
        raise CheckpointError(f"{ckpt} is a model checkpoint, not a training state (no {STATE_FILE})")
    try:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise CheckpointError(f"{ckpt}: {STATE_FILE} cannot be loaded safely ({type(exc).__name__})") from None
    return model, meta, state


def step_dir(run_dir: Path, global_step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{STEP_PREFIX}{global_step:09d}"


def list_training_checkpoints(run_dir: Path) -> list[Path]:
    """Step checkpoint directories of a run, oldest first (temporary ones are hidden: skipped)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX))
