"""Typed records: what is written is what is read back, and a damaged file says what is wrong."""

import json
from pathlib import Path

import pytest
import torch

from lenet_dist.records import (
    CheckpointMeta,
    EpochRecord,
    Progress,
    RecordError,
    RunSummary,
    TrackingInfo,
    TrainingState,
)

from .conftest import make_meta


def _summary(**changes) -> RunSummary:
    base = dict(status="completed", run_name="r", run_dir="runs/r", dataset="mnist", world_size=1,
                rank_nodes=["n1"], device="cpu", mixed_precision="no", epochs=1, epochs_completed=1,
                global_step=10, global_batch_size=128, per_process_batch_size=128, test_accuracy=0.9,
                test_loss=0.3, test_samples=100, per_class_accuracy=[0.9] * 10, confusion_matrix=[[1]],
                best_test_accuracy=0.9, train_images_per_second=1000.0, wall_time_seconds=3.0, resumed=False,
                resumed_from=None, restarts=0,
                history=[EpochRecord(epoch=1, train_loss=0.5, test_loss=0.3, test_accuracy=0.9, train_seconds=1,
                                     epoch_seconds=1.5, elapsed_seconds=3)],
                checkpoint="runs/r/model", tracking=TrackingInfo(mode="disabled"), slurm={})
    return RunSummary(**{**base, **changes})


def test_a_training_state_survives_a_weights_only_torch_load(tmp_path: Path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = TrainingState(progress=Progress(epoch=2, step_in_epoch=3, global_step=23, train_seconds=1.5, restarts=1),
                          history=[EpochRecord(epoch=1, train_loss=0.5, test_loss=0.3, test_accuracy=0.9,
                                               train_seconds=1, epoch_seconds=1.5, elapsed_seconds=3)],
                          optimizer=optimizer.state_dict(), tracking_run_id="r1")
    torch.save(state.to_state(), tmp_path / "s.pt")
    back = TrainingState.model_validate(torch.load(tmp_path / "s.pt", weights_only=True))
    assert back.progress == state.progress and back.history == state.history and back.tracking_run_id == "r1"
    restored = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    restored.load_state_dict(back.optimizer)
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_summary_round_trips_and_lists_stop_signal_only_when_stopped(tmp_path: Path):
    done = _summary()
    done.write(tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert "stop_signal" not in on_disk and on_disk["resumed_from"] is None, "nulls kept, stop_signal omitted"
    assert RunSummary.read(tmp_path) == done
    _summary(status="stopped", stop_signal="SIGTERM", test_accuracy=None).write(tmp_path)
    assert RunSummary.read(tmp_path).stop_signal == "SIGTERM"


def test_a_summary_missing_a_key_names_it(tmp_path: Path):
    d = _summary().to_dict()
    del d["history"]
    (tmp_path / "summary.json").write_text(json.dumps(d))
    with pytest.raises(RecordError, match="history"):
        RunSummary.read(tmp_path)
    with pytest.raises(RecordError, match="missing"):
        RunSummary.read(tmp_path / "nowhere")


def test_checkpoint_meta_keeps_the_on_disk_key_order():
    keys = list(json.loads(make_meta(accuracy=0.5).to_json()))
    assert keys[:4] == ["format", "format_version", "architecture", "model_args"]
    assert keys[-3:] == ["versions", "created", "files"] and "metrics" in keys
    assert "metrics" not in json.loads(make_meta(accuracy=None).to_json()), "no metrics: the key is left out"
    assert CheckpointMeta.model_validate_json(make_meta().to_json()) == make_meta()


def test_normalization_is_the_same_formula_for_tensors_and_arrays():
    import numpy as np

    from lenet_dist.data.datasets import MNIST

    x = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    assert np.allclose(MNIST.normalization.apply(x), MNIST.normalization.apply(torch.from_numpy(x)).numpy())
    assert MNIST.normalization.apply(0.1307) == 0.0
