"""The checkpoint policy and format, in-process: when to save, what to keep, which to resume from,
and which checkpoints a resume must refuse."""

import json
from pathlib import Path

import pytest

from lenet_dist.checkpoint import best_checkpoint, list_training_checkpoints, load_model, read_meta
from lenet_dist.config import CheckpointConfig
from lenet_dist.errors import CheckpointError
from lenet_dist.training.checkpointing import Checkpointer, latest_valid, restore_training_state

from .conftest import save_training_checkpoint, training_objects


def test_due_every_n_steps_and_every_epoch_but_never_twice_for_one_step(tmp_path: Path):
    c = Checkpointer(tmp_path, CheckpointConfig(every_steps=5, every_epoch=True), is_main=True)
    assert [s for s in range(1, 16) if c.due(s, end_of_epoch=False)] == [5, 10, 15]
    assert c.due(7, end_of_epoch=True)
    c.last_saved_step = 10
    assert not c.due(10, end_of_epoch=True), "the step just saved is not saved again at the epoch's end"
    off = Checkpointer(tmp_path, CheckpointConfig(every_steps=0, every_epoch=False), is_main=True)
    assert not any(off.due(s, end_of_epoch=e) for s in range(1, 30) for e in (False, True))


def test_a_resumed_run_does_not_resave_the_step_it_resumed_at(tmp_path: Path):
    c = Checkpointer(tmp_path, CheckpointConfig(every_steps=5), is_main=True, last_saved_step=10)
    assert not c.due(10, end_of_epoch=False) and c.due(15, end_of_epoch=False)


def test_prune_keeps_the_last_n_and_the_best(tmp_path: Path):
    for step, acc in [(10, 0.9), (20, 0.5), (30, 0.6), (40, 0.7)]:
        save_training_checkpoint(tmp_path, step, acc)
    model, _, _ = training_objects()
    c = Checkpointer(tmp_path, CheckpointConfig(keep_last=2, keep_best=True), is_main=True)
    c._prune()
    assert [p.name for p in list_training_checkpoints(tmp_path)] == [
        "step-000000010", "step-000000030", "step-000000040"]
    Checkpointer(tmp_path, CheckpointConfig(keep_last=1, keep_best=False), is_main=True)._prune()
    assert [p.name for p in list_training_checkpoints(tmp_path)] == ["step-000000040"]


def test_best_checkpoint_prefers_accuracy_then_the_later_step(tmp_path: Path):
    for step, acc in [(10, 0.8), (20, 0.9), (30, 0.9), (40, None)]:
        save_training_checkpoint(tmp_path, step, acc)
    assert best_checkpoint(tmp_path).name == "step-000000030"
    assert best_checkpoint(tmp_path / "nothing-here") is None


def test_stale_temporaries_of_a_killed_save_are_removed_at_start(tmp_path: Path):
    stale = tmp_path / "checkpoints" / ".step-000000005.tmp-999"
    stale.mkdir(parents=True)
    Checkpointer(tmp_path, CheckpointConfig(), is_main=True)
    assert not stale.exists()


def test_latest_valid_skips_a_corrupt_newest(tmp_path: Path):
    save_training_checkpoint(tmp_path, 10)
    newest = save_training_checkpoint(tmp_path, 20)
    (newest / "model.safetensors").write_bytes(b"torn")
    assert latest_valid(tmp_path).name == "step-000000010"
    assert latest_valid(tmp_path / "empty") is None


def test_restore_loads_progress_and_counts_the_restart(tmp_path: Path):
    ckpt = save_training_checkpoint(tmp_path, 10)
    model, optimizer, scheduler = training_objects()
    start = restore_training_state(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                                   dataset="mnist", steps_per_epoch=10, total_steps=20)
    assert start.progress.global_step == 10 and start.progress.restarts == 1
    assert start.tracking_run_id == "abc123" and start.checkpoint == ckpt


@pytest.mark.parametrize(("dataset", "steps_per_epoch", "total_steps", "why"), [
    ("fashion-mnist", 10, 20, "same data and batch settings"),
    ("mnist", 12, 24, "same data and batch settings"),
    ("mnist", 10, 30, "keep train.epochs"),
])
def test_restore_refuses_other_data_batching_or_schedule(tmp_path, dataset, steps_per_epoch, total_steps, why):
    ckpt = save_training_checkpoint(tmp_path, 10)
    model, optimizer, scheduler = training_objects(total_steps)
    with pytest.raises(CheckpointError, match=why):
        restore_training_state(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                               dataset=dataset, steps_per_epoch=steps_per_epoch, total_steps=total_steps)


def test_a_model_checkpoint_is_not_a_training_state(model_checkpoint: Path):
    model, optimizer, scheduler = training_objects()
    with pytest.raises(CheckpointError, match="not a training state"):
        restore_training_state(model_checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                               scaler=None, dataset="mnist", steps_per_epoch=10, total_steps=20)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda m: m.pop("classes"), "'classes' is missing or invalid"),
    (lambda m: m.update(files=["model.safetensors"]), "'files' is missing or invalid"),
    (lambda m: m.update(format="something-else"), "not lenet-dist checkpoint metadata"),
    (lambda m: m.update(format_version=99), "newer lenet-dist"),
])
def test_damaged_metadata_is_a_checkpoint_error(model_checkpoint: Path, damage, message):
    meta_file = model_checkpoint / "meta.json"
    meta = json.loads(meta_file.read_text())
    damage(meta)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        read_meta(model_checkpoint)


def test_a_tampered_weight_file_fails_its_checksum(model_checkpoint: Path):
    data = bytearray((model_checkpoint / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (model_checkpoint / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(model_checkpoint)


def test_a_checkpoint_evaluated_mirror_averaged_is_read_so_for_inference_and_plain_for_training(tmp_path: Path):
    from lenet_dist.checkpoint import save_checkpoint
    from lenet_dist.model import LeNet5, MirrorAveraged

    from .conftest import make_meta

    plain = save_checkpoint(tmp_path / "plain", LeNet5(), make_meta(20))
    meta = make_meta(20).model_copy(update={"mirror_average": True})
    mirrored = save_checkpoint(tmp_path / "mirrored", LeNet5(), meta)
    assert type(load_model(plain, as_evaluated=True)[0]) is LeNet5, "older checkpoints read as they always did"
    assert type(load_model(mirrored)[0]) is LeNet5, "fine-tuning and resuming take the weights"
    model, meta = load_model(mirrored, as_evaluated=True)
    assert isinstance(model, MirrorAveraged) and meta.mirror_average
