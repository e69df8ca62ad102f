"""The checkpoint format: save, verify, load. No training policy here (that is
training/checkpointing.py), so inference reads checkpoints without importing training.

    <dir>/model.safetensors   CPU tensors of the unwrapped model (no module./_orig_mod. prefixes)
    <dir>/meta.json           records.CheckpointMeta: model arguments, dataset, classes,
                              normalisation, progress, metrics, versions, sha256 of every other file
    <dir>/training_state.pt   (training checkpoints only) optimizer, scheduler, scaler, progress;
                              read with torch.load(weights_only=True)

Why not accelerate's save_state: it pickles, writes in place (a crash mid-save leaves a torn
checkpoint) and records no checksums. A directory here is written under a temporary name,
fsynced and renamed, and every file's sha256 is checked before anything is loaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from lenet_dist.errors import CheckpointError
from lenet_dist.faults import crash_point, listing_as_seen
from lenet_dist.fileio import atomic_dir, disk_full_as_user_error, sha256_of
from lenet_dist.model import LeNet5, for_inference
from lenet_dist.records import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, CheckpointMeta, TrainingState

MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "training_state.pt"
STEP_PREFIX = "step-"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": torch.__version__}
    try:
        out["lenet_dist"] = version("lenet-dist")
    except PackageNotFoundError:
        out["lenet_dist"] = "unknown"
    return out


def save_checkpoint(dest: Path, model: LeNet5, meta: CheckpointMeta,
                    training: TrainingState | None = None) -> Path:
    """Write a model (and optionally training-state) checkpoint directory atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    training_state = training.to_state() if training is not None else None
    with disk_full_as_user_error(dest, _bytes_of(tensors, training_state)), atomic_dir(dest) as tmp:
        save_file(tensors, str(tmp / MODEL_FILE))
        crash_point("during-save")
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        full = meta.model_copy(update={
            "architecture": type(model).__name__, "model_args": model.model_args(), "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {f.name: sha256_of(f) for f in sorted(tmp.iterdir())},
        })
        (tmp / META_FILE).write_text(full.to_json())
    return Path(dest)


def _bytes_of(*trees: Any) -> int:
    """Roughly what a checkpoint of these tensors takes on disk (for the full-disk message)."""
    total, todo = 64 * 1024, list(trees)
    while todo:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)
    return total


def _resolve_dir(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (META_FILE, MODEL_FILE, STATE_FILE):
        return path.parent
    if path.is_dir():
        return _run_model(path) if not (path / META_FILE).exists() and _is_run_dir(path) else path
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    raise CheckpointError(
        f"{path} is not a lenet-dist checkpoint (expected a directory holding {META_FILE} and {MODEL_FILE})"
    )


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("summary.json", "config.yaml", "checkpoints", "model"))


def _run_model(run_dir: Path) -> Path:
    """A run directory stands for its final model; a run without one names the checkpoints it has."""
    if (run_dir / "model" / META_FILE).is_file():
        return run_dir / "model"
    steps = list_training_checkpoints(run_dir)
    hint = f"; pass one of its checkpoints, e.g. {steps[-1]}" if steps else ""
    raise CheckpointError(f"{run_dir} is a run directory without a final model (the run did not finish){hint}")


def _parse_meta(ckpt: Path) -> CheckpointMeta:
    meta_path = ckpt / META_FILE
    try:
        tree = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt} is not a lenet-dist checkpoint: {META_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{meta_path} is corrupt (not valid JSON)") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {meta_path}: {exc.strerror}") from None
    if not isinstance(tree, dict) or tree.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{meta_path} is not lenet-dist checkpoint metadata")
    if isinstance(tree.get("format_version"), int) and tree["format_version"] > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{ckpt} was written by a newer lenet-dist (format {tree['format_version']})")
    try:
        return CheckpointMeta.model_validate(tree)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise CheckpointError(f"{meta_path} is damaged: '{where}' is missing or invalid") from None


def read_meta(path: Path) -> tuple[Path, CheckpointMeta]:
    """The checkpoint directory and its metadata, after checking every file's sha256."""
    ckpt = _resolve_dir(path)
    meta = _parse_meta(ckpt)
    for name, digest in meta.files.items():
        f = ckpt / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {ckpt} is incomplete: {name} is missing")
        if sha256_of(f) != digest:
            raise CheckpointError(f"checkpoint {ckpt} is corrupt: {name} fails its sha256 check")
    if MODEL_FILE not in meta.files:
        raise CheckpointError(f"checkpoint {ckpt} lists no {MODEL_FILE}")
    return ckpt, meta


def load_model(path: Path, as_evaluated: bool = False) -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the model on CPU from a checkpoint; never unpickles. as_evaluated: read as it was
    evaluated (mirror-averaged where its meta says so): what predict, serve and export use."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    ckpt, meta = read_meta(path)
    if meta.architecture != "LeNet5":
        raise CheckpointError(f"checkpoint {ckpt} holds a {meta.architecture!r}, not a LeNet5")
    try:
        model = LeNet5(**meta.model_args)
    except TypeError:
        raise CheckpointError(f"checkpoint {ckpt} has unusable model_args: {meta.model_args!r}") from None
    try:
        tensors = load_file(str(ckpt / MODEL_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {ckpt}: {MODEL_FILE} is unreadable ({exc})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        raise CheckpointError(f"checkpoint {ckpt} does not match the LeNet5 architecture (tensor names/shapes)")
    model.load_state_dict(tensors)
    return for_inference(model.eval(), as_evaluated and meta.mirror_average), meta


def load_training_state(path: Path) -> tuple[LeNet5, CheckpointMeta, TrainingState]:
    """Model, metadata and training state, all on CPU (a state saved on GPU resumes anywhere)."""
    model, meta = load_model(path)
    ckpt = _resolve_dir(path)
    if STATE_FILE not in meta.files:
        raise CheckpointError(f"{ckpt} is a model checkpoint, not a training state (no {STATE_FILE})")
    try:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise CheckpointError(f"{ckpt}: {STATE_FILE} cannot be loaded safely ({type(exc).__name__})") from None
    try:
        return model, meta, TrainingState.model_validate(state)
    except ValidationError:
        raise CheckpointError(f"{ckpt}: {STATE_FILE} is not a lenet-dist training state") from None


def step_dir(run_dir: Path, global_step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{STEP_PREFIX}{global_step:09d}"


def list_training_checkpoints(run_dir: Path) -> list[Path]:
    """Step checkpoint directories of a run, oldest first (temporary ones are hidden: skipped)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return listing_as_seen(sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)))


def best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of a run with the highest held-out accuracy (final model included)."""
    scored = []
    for ckpt in list_training_checkpoints(run_dir) + [Path(run_dir) / "model"]:
        try:
            _, meta = read_meta(ckpt)
        except CheckpointError:
            continue
        if meta.metrics is not None:
            scored.append((meta.metrics.test_accuracy, meta.global_step, ckpt))
    return max(scored, key=lambda t: (t[0], t[1]))[2] if scored else None
