"""What a user sees from the CLI, in-process: help, choices from one source, one-line errors."""

import json
from pathlib import Path
from typing import get_args

from lenet_dist.choices import DatasetName, TrackingMode
from lenet_dist.cli.app import Dataset, Tracking
from lenet_dist.config import Config

from .cli import invoke, one_error_line
from .test_records import _summary


def test_help_lists_every_command():
    out = invoke("--help").stdout
    for command in ("train", "evaluate", "predict", "export", "report", "data", "checkpoint", "runs"):
        assert command in out
    assert "--resume" in invoke("train", "--help").stdout


def test_cli_choices_and_config_types_come_from_one_source():
    assert tuple(d.value for d in Dataset) == get_args(DatasetName) == get_args(Config.model_fields["data"]
                                                                              .annotation.model_fields["dataset"]
                                                                              .annotation)
    assert tuple(t.value for t in Tracking) == get_args(TrackingMode)


def test_checkpoint_info_reports_contents_and_integrity(model_checkpoint: Path):
    result = invoke("checkpoint", "info", model_checkpoint)
    assert result.exit_code == 0 and "intact (model, 1 files verified)" in result.stdout
    info = json.loads(invoke("checkpoint", "info", model_checkpoint, "--json").stdout)
    assert info["intact"] and info["dataset"] == "mnist" and info["metrics"]["test_accuracy"] == 0.5


def test_a_missing_checkpoint_is_exit_4_with_one_line(tmp_path: Path):
    result = invoke("checkpoint", "info", tmp_path / "nope")
    assert result.exit_code == 4 and "checkpoint not found" in one_error_line(result)


def test_a_user_error_in_any_command_is_one_line_without_traceback(tmp_path: Path):
    for args, code in [(["runs", "compare", tmp_path], 2), (["report", tmp_path], 2),
                       (["train", "--set", "optim.lr=-1"], 2), (["evaluate", tmp_path / "x"], 4)]:
        result = invoke(*args, cwd=tmp_path)
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_runs_compare_prints_a_table(tmp_path: Path):
    (tmp_path / "a").mkdir()
    _summary(run_name="a").write(tmp_path / "a")
    result = invoke("runs", "compare", tmp_path)
    assert result.exit_code == 0 and "0.9000" in result.stdout
    assert json.loads(invoke("runs", "compare", tmp_path, "--json").stdout)[0]["run_name"] == "a"


def test_dry_run_validates_and_prints_the_run_directory(tmp_path: Path):
    result = invoke("train", "--run-name", "x", "--output-dir", tmp_path, "--dry-run")
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_run_name_that_is_not_one_plain_folder_name_is_exit_2_before_anything_is_written(tmp_path: Path):
    (tmp_path / "config.yaml").write_text("the user's own file\n")
    (tmp_path / "out").mkdir()
    before = _tree(tmp_path)
    for name in ("..", ".", "../escape", "a/b", "/tmp/abs", "-rf", ".hidden", "", " "):
        for args in (["--run-name", name], ["--set", f"run_name={name}"] if name.strip() else ["--run-name", name]):
            result = invoke("train", *args, "--output-dir", tmp_path / "out", "--data-dir", tmp_path / "data",
                            cwd=tmp_path)
            assert result.exit_code == 2, (name, result.output)
            assert "run_name" in one_error_line(result) or "run-name" in one_error_line(result)
    assert _tree(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "out"]


def test_a_data_dir_that_is_a_file_is_a_usage_error(tmp_path: Path):
    (tmp_path / "afile").write_text("x")
    for data_dir in (tmp_path / "afile", tmp_path / "afile" / "below"):
        result = invoke("data", "fetch", "--data-dir", data_dir, cwd=tmp_path)
        assert result.exit_code == 2 and "is a file, not a folder" in one_error_line(result), result.output
        result = invoke("train", "--data-dir", data_dir, "--output-dir", tmp_path / "runs", cwd=tmp_path)
        assert result.exit_code == 2 and "is a file, not a folder" in one_error_line(result), result.output


def test_a_run_directory_stands_for_its_final_model_and_an_unfinished_one_names_its_checkpoints(tmp_path: Path):
    import torch

    from lenet_dist.checkpoint import save_checkpoint
    from lenet_dist.model import LeNet5

    from .conftest import make_meta, save_training_checkpoint

    run = tmp_path / "run"
    save_checkpoint(run / "model", LeNet5(), make_meta(20, accuracy=0.5))
    _summary(run_name="run").write(run)
    info = json.loads(invoke("checkpoint", "info", run, "--json").stdout)
    assert info["path"] == str(run / "model")
    out = tmp_path / "model.pt"
    assert invoke("export", run, "-o", out).exit_code == 0 and torch.jit.load(str(out)) is not None
    unfinished = tmp_path / "unfinished"
    step = save_training_checkpoint(unfinished, 10)
    result = invoke("checkpoint", "info", unfinished)
    assert result.exit_code == 4 and f"e.g. {step}" in one_error_line(result)


def test_dry_run_checks_the_batch_for_the_world_size_it_is_given(tmp_path: Path):
    ok = invoke("train", "--output-dir", tmp_path, "--run-name", "x", "--dry-run", "--world-size", "3")
    assert ok.exit_code == 0, ok.output
    bad = invoke("train", "--output-dir", tmp_path, "--batch-size", "64", "--dry-run", "--world-size", "65")
    assert bad.exit_code == 2 and "smaller than processes" in one_error_line(bad)
