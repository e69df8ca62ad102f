"""Typed configuration: YAML file + dotted overrides, validated before any work starts. Every field
is documented here and in configs/default.yaml. Unknown keys, wrong types and impossible values
raise ConfigError naming the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from lenet_dist.choices import DatasetName, TrackingMode
from lenet_dist.errors import ConfigError

RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_empty_paths(cls, value: Any, info: ValidationInfo) -> Any:
        """Path('') is '.', so an empty --output-dir or --data-dir would silently mean the current
        directory."""
        if info.field_name in ("output_dir", "data_dir") and (value is None or str(value).strip() == ""):
            raise ValueError("must not be empty")
        return value


class DataConfig(_Section):
    dataset: DatasetName = "mnist"
    data_dir: Path = Field(Path("data"), description="where raw IDX files are fetched to and read from")
    train_subset: int | None = Field(None, gt=0, description="use only the first N training images")
    test_subset: int | None = Field(None, gt=0, description="evaluate on only the first N test images")
    validation_size: int = Field(0, ge=0, description="evaluate on N held-out training images, never the test set")
    extra_folder: Path | None = Field(None, description="also train on FOLDER/<class>/*.png, read as predict reads")
    extra_repeat: int = Field(1, gt=0, description="times each extra_folder image appears per epoch")


class AugmentConfig(_Section):
    enabled: bool = Field(True, description="batched random affine on the training device")
    degrees: float = Field(5.0, ge=0, le=180, description="max rotation, degrees")
    translate: float = Field(0.06, ge=0, le=0.5, description="max shift, fraction of the image size")
    scale: float = Field(0.06, ge=0, lt=1, description="max relative zoom in or out")
    stroke: float = Field(0.5, ge=0, le=1, description="max blend towards thicker or thinner strokes")
    contrast: float = Field(0.4, ge=0, lt=1, description="max change of the ink's gamma: faint pencil, heavy ink")
    mirror: bool | Literal["auto"] = Field(False, description="auto: where every class survives a mirror")
    erase: float = Field(0.0, ge=0, le=1, description="probability of blanking one random rectangle")
    test_mirror: bool | Literal["auto"] = Field(False, description="read each image averaged with its mirror")


class OptimConfig(_Section):
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    lr_scaling: Literal["sqrt", "linear"] = Field("sqrt", description="lr x global/batch_size, or its root")


class ScheduleConfig(_Section):
    name: Literal["constant", "onecycle", "cosine"] = "onecycle"
    warmup_fraction: float = Field(0.2, ge=0, lt=1, description="onecycle: fraction of steps rising to lr")


class TrainConfig(_Section):
    epochs: int = Field(15, gt=0)
    batch_size: int = Field(128, gt=0, description="global batch: split over processes and accumulation, as "
                            "evenly as can be (any number of processes)")
    batch_size_per_process: int | None = Field(None, gt=0, description="set: the global batch is this times the "
                                               "processes, and optim.lr scales from train.batch_size by "
                                               "optim.lr_scaling (training/batching.py)")
    grad_accum_steps: int = Field(1, gt=0)
    seed: int = Field(0, ge=0, lt=2**32, description="the data order and augmentation draws derive from it")
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = Field(
        "no", description="auto: bf16 where the hardware does it natively (recent GPUs, AVX512-BF16/AMX CPUs)")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    eval_batch_size: int = Field(1000, gt=0)
    log_every_steps: int = Field(50, gt=0, description="train loss/lr/throughput every N optimizer steps")
    channels_last: bool = Field(True, description="NHWC memory layout; faster convolutions on CPU and GPU")
    cpu_speedups: bool = Field(False, description="opt-in CPU-only kernels (training/cpu_speedups.py); "
                               "nothing on CUDA")
    init_from: Path | None = Field(None, description="start from this model checkpoint's (or run's) weights: "
                                   "fine-tuning; the optimizer and schedule start fresh")


class CheckpointConfig(_Section):
    every_steps: int = Field(0, ge=0, description="0: no step checkpoints")
    every_epoch: bool = True
    keep_last: int = Field(2, gt=0, description="training states kept, besides the best")
    keep_best: bool = Field(True, description="also keep the best model by held-out accuracy")
    stop_signals: list[Literal["SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP"]] = Field(
        ["SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP"],
        description="checkpoint and exit 75 (resumable) on these; SIGHUP: the terminal or ssh session went away")
    signal_check_steps: int = Field(10, gt=0, description="ranks agree on a stop every N steps (a sync)")
    every_seconds: float = Field(60.0, ge=0, description="also a training state when this much time has passed "
                                 "since the last one (0: off): what a crash can lose")
    hang_timeout_s: float = Field(60.0, gt=0, description="a collective that waits this long means a peer is dead "
                                  "or hung: this rank exits so the job can restart")
    max_restarts: int = Field(3, ge=0, description="automatic restarts after crashes, before giving up; two crashes "
                              "in a row from the same checkpoint give up at once")


class TrackingConfig(_Section):
    mode: TrackingMode = "auto"
    project: str = "lenet-dist"
    entity: str | None = None
    group: str | None = None
    init_timeout_s: float = Field(20.0, gt=0, description="online init longer than this falls back to offline")
    log_model: bool = Field(False, description="upload the final model checkpoint as a W&B artifact")
    misclassified_images: int = Field(32, ge=0, description="held-out images the model got wrong, as a W&B table")


class Config(_Section):
    output_dir: Path = Field(Path("runs"), description="run directories are created under it")
    run_name: str | None = Field(None, description="one plain folder name under output_dir; default: generated")
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("run_name")
    @classmethod
    def _one_plain_folder_name(cls, value: str | None) -> str | None:
        """The run directory is <output_dir>/<run_name>: a name with '/', '..' or a leading '.' or
        '-' would write outside it, into a hidden folder, or read as an option."""
        if value is not None and not RUN_NAME.fullmatch(value):
            raise ValueError("must be one plain folder name: letters, digits, '.', '_' and '-', at most 200, not "
                             "starting with '.' or '-' (so not '.', '..', empty or a path)")
        return value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{key}': '{part}' is a value, not a section")
        node = child
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'optim.lr=0.01' -> ('optim.lr', 0.01); the value is read as YAML (so 'null', 'true', '[1,2]')."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not KEY=VALUE (example: --set optim.lr=0.01)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw.strip()  # YAML 1.1 reads no/yes/on/off as booleans: mixed_precision=no means "no"
    return key.strip(), value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(tree).__name__}")
    return tree


def _explain(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{key}' (see configs/default.yaml for the valid keys)"
    got = first.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"config key '{key}': {first['msg'].removeprefix('Value error, ')}{shown}"


def load_config(path: Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                values: dict[str, Any] | None = None) -> Config:
    """Read YAML (none: the defaults defined here, which configs/default.yaml mirrors), set the
    dotted `values` as they are (no YAML parsing: a path stays a string), apply 'a.b=value'
    overrides, validate."""
    tree = _read_yaml(path) if path is not None else {}
    for key, value in (values or {}).items():
        _set_dotted(tree, key, value)
    for text in overrides:
        _set_dotted(tree, *parse_override(text))
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None
