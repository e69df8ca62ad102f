import json
from pathlib import Path

import pytest
import torch

from lenet_dist.checkpoint import load_model
from lenet_dist.config import load_config
from lenet_dist.data.datasets import MNIST
from lenet_dist.data.tensors import load_split
from lenet_dist.fileio import TMP_MARK

from ..conftest import REPO, SMALL, launch, read_summary, run_cli

pytestmark = pytest.mark.slow  # real launches: subprocesses, multi-process, the SLURM cluster


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_process_launch_on_empty_data_dir_fetches_once_and_runs_ddp(tmp_path: Path):
    data = tmp_path / "data"  # empty: both ranks start on it at once
    proc = launch(2, "train", "--data-dir", data, "--output-dir", tmp_path / "runs", "--run-name", "ddp",
                  "--set", "train.log_every_steps=10", *SMALL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert proc.stderr.count(f"fetched mnist {f} from") == 1, proc.stderr
    assert not [p for p in data.rglob("*") if TMP_MARK in p.name], "no temporary files left"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"], "one run directory"
    s = read_summary(tmp_path / "runs" / "ddp")
    assert s["world_size"] == 2 and s["per_process_batch_size"] == s["global_batch_size"] // 2
    assert s["test_samples"] == 10000 and s["test_accuracy"] > 0.8
    records = _jsonl(tmp_path / "runs" / "ddp" / "metrics.jsonl")
    steps = 6000 // 128
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(10, steps + 1, 10)), "logged once"
    assert len([r for r in records if r["kind"] == "eval"]) == 1
    assert proc.stdout.count("held-out accuracy") + proc.stderr.count("held-out accuracy") == 1


def test_held_out_evaluation_is_exact_for_1_2_3_and_5_processes(small_run: Path, mnist_dir: Path, tmp_path: Path):
    # 5 processes also guard the exit: without an explicit destroy_process_group, 3 in 10 such
    # launches died of SIGABRT in gloo's teardown after printing the right answer
    single = run_cli("evaluate", small_run / "model", "--data-dir", mnist_dir, "--json", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    reference = json.loads(single.stdout)
    assert reference["samples"] == 10000
    for world in (2, 3, 5):
        proc = launch(world, "evaluate", small_run / "model", "--data-dir", mnist_dir, "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]  # printed by one rank only
        result = json.loads(line)
        assert result["samples"] == 10000
        assert result["confusion_matrix"] == reference["confusion_matrix"]
        assert result["accuracy"] == reference["accuracy"]


def test_run_summary_has_what_other_tools_read(small_run: Path):
    s = read_summary(small_run)
    for key in ("dataset", "world_size", "device", "epochs", "global_batch_size", "test_accuracy", "test_loss",
                "test_samples", "best_test_accuracy", "train_images_per_second", "wall_time_seconds", "history",
                "checkpoint"):
        assert s[key] is not None, key
    assert set(s["history"][0]) >= {"epoch", "train_loss", "test_loss", "test_accuracy", "epoch_seconds",
                                    "elapsed_seconds"}
    assert s["test_accuracy"] > 0.85
    marks = list(s["startup_seconds"].items())  # where start-up went, in order, up to the first step
    assert [k for k, _ in marks] == ["imports", "process_group", "data", "model_and_optimizer", "run_setup",
                                     "first_step"]
    assert all(0 < a <= b for (_, a), (_, b) in zip(marks, marks[1:], strict=False)) and s["started_at"] > 1.7e9
    saved = (small_run / "config.yaml").read_text()
    assert "train_subset: 6000" in saved


def test_saved_model_reloads_with_the_predictions_training_evaluated(mnist_dir: Path, tmp_path: Path):
    from lenet_dist.training.evaluation import evaluate
    from lenet_dist.training.train import train

    cfg = load_config(None, ["data.train_subset=2048", "data.test_subset=3000", "train.epochs=1",
                             "tracking.mode=disabled", f"data.data_dir={mnist_dir}", f"output_dir={tmp_path}",
                             "run_name=r"])
    summary = train(cfg)
    loaded, meta = load_model(tmp_path / "r" / "model")
    assert meta.normalization == MNIST.normalization
    test = load_split(MNIST, mnist_dir, "test", 3000)
    again = evaluate(loaded.to(memory_format=torch.channels_last), test, MNIST, memory_format=torch.channels_last)
    assert again.confusion_matrix == summary.confusion_matrix  # the same prediction for every image
    assert again.loss == summary.test_loss  # bit-identical logits
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in loaded.state_dict())


def test_same_seed_gives_bit_identical_weights(mnist_dir: Path, tmp_path: Path):
    runs = []
    for name in ("a", "b"):
        proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", name, "--seed", "7",
                       "--set", "data.train_subset=3000", "--set", "tracking.mode=disabled", "--epochs", "1",
                       cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs.append((tmp_path / name / "model" / "model.safetensors").read_bytes())
    assert runs[0] == runs[1]


def test_gradient_accumulation_takes_the_same_steps(mnist_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file

    weights = []
    for accum in (1, 4):
        name = f"acc{accum}"
        proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", name, "--epochs", "1",
                       "--set", "data.train_subset=2560", "--set", f"train.grad_accum_steps={accum}",
                       "--set", "augment.enabled=false", "--tracking", "disabled", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        weights.append(load_file(tmp_path / name / "model" / "model.safetensors"))
    for key, w in weights[0].items():  # same global batches; only the summation order differs
        assert torch.allclose(w, weights[1][key], atol=1e-4), key


def test_evaluation_never_augments(mnist_dir: Path, tmp_path: Path):
    proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "a", "--epochs", "1",
                   "--set", "data.train_subset=2048", "--set", "augment.degrees=180", "--set", "augment.translate=0.5",
                   "--tracking", "disabled", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = run_cli("evaluate", tmp_path / "a" / "model", "--data-dir", mnist_dir, "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["accuracy"] == read_summary(tmp_path / "a")["test_accuracy"]


def test_three_processes_share_an_uneven_batch_and_train_the_one_process_weights(mnist_dir: Path, tmp_path: Path):
    """128 images over 3 ranks (43, 43, 42), with gradient accumulation on top (micro-batches of 22
    and 21): the loss weights make each update the one-process update on the same global batch."""
    from safetensors.torch import load_file

    common = ["train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--set", "data.train_subset=1280",
              "--set", "data.test_subset=500", "--epochs", "1", "--tracking", "disabled",
              "--set", "train.grad_accum_steps=2"]
    one = run_cli(*common, "--run-name", "one", cwd=tmp_path)
    three = launch(3, *common, "--run-name", "three", cwd=tmp_path)
    assert one.returncode == 0 and three.returncode == 0, three.stderr[-3000:]
    assert read_summary(tmp_path / "three")["global_step"] == read_summary(tmp_path / "one")["global_step"] == 10
    a, b = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("one", "three"))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), (name, (a[name] - b[name]).abs().max())


def test_the_best_configs_knobs_give_the_one_process_result_on_two(mnist_dir: Path, tmp_path: Path):
    """configs/best.yaml's recipe, with every knob it could use switched on (mirror, erasing, a
    validation split, mirror-averaged evaluation): 2 processes train the weights 1 process trains, and
    evaluate the same; the test set is never read; the model is read mirror-averaged everywhere."""
    from safetensors.torch import load_file

    common = ["train", "-c", REPO / "configs" / "best.yaml", "--data-dir", mnist_dir, "--output-dir", tmp_path,
              "--epochs", "1", "--set", "data.train_subset=1580", "--set", "data.validation_size=300",
              "--set", "augment.mirror=true", "--set", "augment.erase=0.5", "--set", "augment.test_mirror=true"]
    one = run_cli(*common, "--run-name", "one", cwd=tmp_path)
    two = launch(2, *common, "--run-name", "two", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    summaries = [read_summary(tmp_path / run) for run in ("one", "two")]
    for summary in summaries:
        assert summary["evaluated_on"] == "validation" and summary["test_samples"] == 300
        assert summary["global_step"] == 1280 // 64
    assert abs(summaries[0]["test_accuracy"] - summaries[1]["test_accuracy"]) <= 1 / 300
    a, b = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("one", "two"))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), (name, (a[name] - b[name]).abs().max())
    model = tmp_path / "one" / "model"
    assert json.loads((model / "meta.json").read_text())["mirror_average"] is True
    evaluated = run_cli("evaluate", model, "--data-dir", mnist_dir, "--json", cwd=tmp_path)
    exported = run_cli("export", model, "--output", tmp_path / "m.pt", cwd=tmp_path)
    assert evaluated.returncode == 0 and exported.returncode == 0, evaluated.stderr + exported.stderr
    assert json.loads(evaluated.stdout)["mirror_average"] is True
    assert json.loads((tmp_path / "m.pt.json").read_text())["mirror_average"] is True
    plain, _ = load_model(model)
    digits = torch.randn(8, 1, 28, 28)
    with torch.no_grad():  # the export reads each image as the average of it and its mirror
        want = ((plain(digits).softmax(1) + plain(digits.flip(-1)).softmax(1)) / 2).log()
        assert torch.allclose(torch.jit.load(str(tmp_path / "m.pt"))(digits), want, atol=1e-5)
