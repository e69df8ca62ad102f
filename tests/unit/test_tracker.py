"""Tracking logic in-process: which W&B mode a run gets, the keys it logs, metrics.jsonl."""

import json
from pathlib import Path

import pytest

from lenet_dist.config import TrackingConfig
from lenet_dist.tracking.tracker import Tracker, resolve_mode, wandb_keys


@pytest.fixture
def no_credentials(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))


@pytest.mark.parametrize(("configured", "env", "key", "expected"), [
    ("disabled", "online", "k", "disabled"),  # the config wins
    ("auto", "offline", "k", "offline"),
    ("auto", "dryrun", None, "offline"),
    ("auto", "", "k", "online"),  # a key means online
    ("auto", "", None, "offline"),  # never a prompt
])
def test_mode_resolution(no_credentials, monkeypatch, configured, env, key, expected):
    if env:
        monkeypatch.setenv("WANDB_MODE", env)
    if key:
        monkeypatch.setenv("WANDB_API_KEY", key)
    assert resolve_mode(TrackingConfig(mode=configured)) == expected


def test_wandb_keys_group_by_kind_and_expand_per_class():
    record = {"kind": "eval", "epoch": 2, "test_accuracy": 0.99, "test_loss": 0.1, "resumed": True,
              "per_class_accuracy": [0.5, 1.0], "confusion_matrix": [[1, 0], [0, 1]]}
    assert wandb_keys(record, ["cat", "dog"]) == {
        "epoch": 2, "eval/test_accuracy": 0.99, "eval/test_loss": 0.1,
        "eval/per_class/cat": 0.5, "eval/per_class/dog": 1.0}
    assert wandb_keys({"kind": "train", "train_loss": 0.3, "lr": 0.01}) == {"train/loss": 0.3, "train/lr": 0.01}


def test_disabled_tracker_writes_metrics_jsonl_and_nothing_else(tmp_path: Path):
    t = Tracker(tmp_path, TrackingConfig(mode="disabled"), run_name="r")
    t.log({"kind": "train", "train_loss": 0.5}, step=10)
    t.close()
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        {"step": 10, "kind": "train", "train_loss": 0.5}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_a_non_main_rank_writes_nothing(tmp_path: Path):
    t = Tracker(None, TrackingConfig(mode="offline"))
    t.log({"kind": "train", "train_loss": 0.5}, step=1)
    t.close()
    assert t.mode == "disabled" and not list(tmp_path.iterdir())
