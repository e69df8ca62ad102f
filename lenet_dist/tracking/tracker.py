"""Metrics to metrics.jsonl and, when enabled, to Weights & Biases, behind one small interface.

Only the main process builds a Tracker that writes; the others get one that does nothing.
W&B never prompts and never hangs the job: `auto` is online only with credentials, online init
is bounded by tracking.init_timeout_s and falls back to offline with one warning.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lenet_dist.config import TrackingConfig
from lenet_dist.fileio import disk_full_as_user_error

log = logging.getLogger("lenet_dist.tracking")


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _reachable(timeout: float = 3.0) -> bool:
    """Can this node open a connection to the W&B server at all? Compute nodes often cannot; then
    waiting for wandb's own init timeout is time lost."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_mode(cfg: TrackingConfig) -> str:
    """A mode set in the config wins; `auto` follows WANDB_MODE, else credentials decide."""
    if cfg.mode != "auto":
        return cfg.mode
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if has_wandb_credentials() else "offline"


def wandb_keys(metrics: dict[str, Any], class_names: list[str] | None = None) -> dict[str, float]:
    """A metrics.jsonl record as W&B keys: numbers under '<kind>/' (train/loss, eval/test_accuracy…),
    a per-class list under '<kind>/per_class/<class>', `epoch` as is; anything else is left out."""
    kind = metrics.get("kind", "train")
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or k == "kind":
            continue
        if isinstance(v, int | float):
            flat[k if k == "epoch" else f"{kind}/{k.removeprefix(kind + '_')}"] = v
        elif k == "per_class_accuracy" and class_names:
            flat.update({f"{kind}/per_class/{c}": a for c, a in zip(class_names, v, strict=True)})
    return flat


class Tracker:
    """Writes one JSON object per log call to metrics.jsonl and mirrors it to W&B."""

    def __init__(self, run_dir: Path | None, cfg: TrackingConfig, *, run_name: str = "",
                 config: dict[str, Any] | None = None, run_id: str | None = None):
        self.enabled = run_dir is not None
        self.run_id = run_id
        self.mode = "disabled"
        self._jsonl = None
        self._wandb_run = None
        if not self.enabled:
            return
        self._jsonl = open(Path(run_dir) / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115 (closed in close())
        self.mode = resolve_mode(cfg)
        if self.mode != "disabled":
            self._start_wandb(Path(run_dir), cfg, run_name, config or {})

    def _start_wandb(self, run_dir: Path, cfg: TrackingConfig, run_name: str, config: dict) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ["WANDB_MODE"] = self.mode  # wandb re-reads it; an empty or stale value must not win
        kwargs = dict(
            project=os.environ.get("WANDB_PROJECT", cfg.project),
            entity=os.environ.get("WANDB_ENTITY", cfg.entity),
            group=os.environ.get("WANDB_RUN_GROUP", cfg.group),
            name=run_name,
            id=self.run_id,
            resume="allow",
            config=config,
            dir=os.environ.get("WANDB_DIR", str(run_dir)),
        )
        if self.mode == "online" and not _reachable():
            log.warning("tracking: W&B server unreachable from this node; logging offline instead, sync later "
                        "with `wandb sync %s`", kwargs["dir"])
            self.mode = os.environ["WANDB_MODE"] = "offline"
        try:
            self._wandb_run = wandb.init(mode=self.mode, settings=wandb.Settings(
                init_timeout=cfg.init_timeout_s, console="off", silent=True), **kwargs)
        except Exception as exc:  # wandb raises many types for "no network / bad key"
            if self.mode != "online":
                raise
            log.warning("tracking: W&B online init failed (%s); logging offline instead, sync later with "
                        "`wandb sync %s`", type(exc).__name__, kwargs["dir"])
            self.mode = os.environ["WANDB_MODE"] = "offline"
            self._wandb_run = wandb.init(mode="offline", settings=wandb.Settings(console="off", silent=True),
                                         **kwargs)
        self.run_id = self._wandb_run.id

    def log(self, metrics: dict[str, Any], step: int, class_names: list[str] | None = None) -> None:
        """One metrics.jsonl line; in W&B the numbers go under '<kind>/' (train/loss, eval/…), and a
        per-class list under '<kind>/per_class/<class>'."""
        if not self.enabled:
            return
        line = json.dumps({"step": step, **metrics}) + "\n"
        with disk_full_as_user_error(Path(self._jsonl.name), len(line)):
            self._jsonl.write(line)
        if self._wandb_run is None:
            return
        flat = wandb_keys(metrics, class_names)
        self._wandb_run.log(flat, step=step)

    def log_confusion(self, matrix: list[list[int]], class_names: list[str], step: int) -> None:
        if self._wandb_run is None:
            return
        import wandb

        rows = [[class_names[t], class_names[p], n] for t, r in enumerate(matrix) for p, n in enumerate(r)]
        table = wandb.Table(columns=["true", "predicted", "count"], data=rows)
        self._wandb_run.log({"eval/confusion_matrix": table}, step=step)

    def log_misclassified(self, images, true: list[str], predicted: list[str], step: int) -> None:
        """A small table of held-out images the model got wrong (images: uint8 HxW arrays)."""
        if self._wandb_run is None:
            return
        import wandb

        table = wandb.Table(columns=["image", "true", "predicted"],
                            data=[[wandb.Image(img), t, p] for img, t, p in zip(images, true, predicted, strict=True)])
        self._wandb_run.log({"eval/misclassified": table}, step=step)

    def log_model(self, model_dir: Path, name: str) -> None:
        if self._wandb_run is None:
            return
        import wandb

        artifact = wandb.Artifact(name=f"model-{name}", type="model")
        artifact.add_dir(str(model_dir))
        self._wandb_run.log_artifact(artifact)

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb_run is not None:
            self._wandb_run.summary.update({k: v for k, v in values.items() if isinstance(v, int | float | str)})

    def close(self, exit_code: int = 0) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._wandb_run is not None:
            self._wandb_run.finish(exit_code=exit_code)
            self._wandb_run = None
