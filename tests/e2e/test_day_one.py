"""What a cluster user hits on day one, on real processes: read-only shared data, one writer per run,
divergence, a full disk, unreadable files, one-line user errors, SIGHUP, empty paths, pipes."""

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lenet_dist.checkpoint import list_training_checkpoints
from lenet_dist.errors import EXIT_DIVERGED, EXIT_NO_SPACE, EXIT_RESUMABLE

from ..conftest import cli_env, one_error_line, read_summary, run_cli, wait_until_step

pytestmark = pytest.mark.slow
QUICK = ["--set", "data.train_subset=2048", "--set", "data.test_subset=1000", "--epochs", "1",
         "--tracking", "disabled"]


def _needs_root(what: str) -> None:
    if os.geteuid() != 0:
        if os.environ.get("LENET_DIST_REQUIRE_SLURM") == "1":  # CI runs as root: never skip there
            pytest.fail(f"{what} needs root")
        pytest.skip(f"{what} needs root")


@pytest.fixture
def read_only_data(mnist_dir: Path, tmp_path: Path):
    """A read-only filesystem holding verified MNIST (as a cluster's shared datasets are)."""
    _needs_root("a read-only bind mount")
    src, ro = tmp_path / "src", tmp_path / "ro"
    shutil.copytree(mnist_dir / "MNIST", src / "MNIST")
    ro.mkdir()
    subprocess.run(["mount", "--bind", src, ro], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", ro], check=True)
        yield src, ro
    finally:
        subprocess.run(["umount", ro], check=True)


def test_3_a_read_only_data_directory_is_used_as_it_is(read_only_data, tmp_path: Path):
    src, ro = read_only_data
    trained = run_cli("train", "--data-dir", ro, "--output-dir", tmp_path / "runs", "--run-name", "r", *QUICK,
                      cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    evaluated = run_cli("evaluate", tmp_path / "runs" / "r" / "model", "--data-dir", ro, "--json", cwd=tmp_path)
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["samples"] == 10000
    assert run_cli("data", "verify", "--data-dir", ro, cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in ro.rglob("*")) == sorted(p.name for p in src.rglob("*")), "nothing written"
    (src / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()  # incomplete and read-only: nothing to fix it
    missing = run_cli("train", "--data-dir", ro, *QUICK, cwd=tmp_path)
    assert missing.returncode == 3 and "not writable" in one_error_line(missing)


def test_4_a_run_directory_has_one_writer(mnist_dir: Path, tmp_path: Path):
    args = ["train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "same", "--epochs", "2",
            "--set", "data.train_subset=12800", "--tracking", "disabled", "--set", "train.log_every_steps=5"]
    first = subprocess.Popen([sys.executable, "-m", "lenet_dist", *map(str, args)], cwd=tmp_path, env=cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_step(tmp_path / "same" / "metrics.jsonl", 5)
    for extra in ([], ["--resume", "auto"]):
        second = run_cli(*args, *extra, cwd=tmp_path)
        assert second.returncode == 2
        assert f"is being written by pid {first.pid}" in one_error_line(second)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    lines = [json.loads(line) for line in (tmp_path / "same" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(5, 201, 5)), "one writer's lines"
    again = run_cli(*args, "--resume", "auto", cwd=tmp_path)  # the writer is gone: resuming is fine
    assert again.returncode == 0, again.stderr


def test_5_a_diverged_run_fails_and_never_becomes_the_default_model(small_run: Path, mnist_dir: Path,
                                                                     tmp_path: Path):
    runs = tmp_path / "runs"
    shutil.copytree(small_run, runs / "good")
    proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", runs, "--run-name", "bad", "--lr", "1e9",
                   "--set", "checkpoint.every_steps=5", *QUICK, cwd=tmp_path)
    assert proc.returncode == EXIT_DIVERGED
    assert "diverged" in one_error_line(proc) and "optim.lr" in proc.stderr
    s = read_summary(runs / "bad")
    assert s["status"] == "diverged" and s["checkpoint"] is None
    assert not (runs / "bad" / "model").exists() and not list_training_checkpoints(runs / "bad")
    image = tmp_path / "seven.png"
    from PIL import Image

    Image.new("L", (40, 40), 255).save(image)
    predicted = run_cli("predict", image, cwd=tmp_path)
    assert "good" in predicted.stderr.splitlines()[0], predicted.stderr


@contextlib.contextmanager
def _small_disk(where: Path, size: str):
    """A real file system of `size` (tmpfs), mounted at `where` while the block runs."""
    _needs_root("a size-limited tmpfs")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=True)


def test_6_a_full_disk_is_one_line_and_the_run_stays_resumable(mnist_dir: Path, tmp_path: Path):
    with _small_disk(tmp_path / "small-disk", "2m") as out:
        proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", out, "--run-name", "r", *QUICK,
                       "--set", "checkpoint.every_steps=3", "--set", "checkpoint.keep_last=5", cwd=tmp_path)
        assert proc.returncode == EXIT_NO_SPACE, proc.stderr
        line = one_error_line(proc)
        assert "no space left" in line and str(out / "r" / "checkpoints") in line and "MiB needed" in line
        kept = list_training_checkpoints(out / "r")
        assert kept and not [p for p in (out / "r" / "checkpoints").iterdir() if p.name.startswith(".")]
        shutil.copytree(out / "r", tmp_path / "big" / "r")
    resumed = run_cli("train", "--data-dir", mnist_dir, "--output-dir", tmp_path / "big", "--run-name", "r", *QUICK,
                      "--set", "checkpoint.every_steps=3", "--set", "checkpoint.keep_last=5", "--resume", "auto",
                      cwd=tmp_path)
    assert resumed.returncode == 0 and read_summary(tmp_path / "big" / "r")["resumed"], resumed.stderr


def test_6_a_disk_that_fills_while_the_report_is_drawn_is_exit_74_and_the_summary_never_says_completed(
        mnist_dir: Path, tmp_path: Path):
    """The disk fills for real (a small tmpfs, filled at that moment) after the model is saved."""
    with _small_disk(tmp_path / "disk", "8m") as out:
        proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", out, "--run-name", "r", *QUICK,
                       cwd=tmp_path, env=cli_env(LENET_DIST_FAULT="fill-disk:report"))
        assert proc.returncode == EXIT_NO_SPACE, proc.stderr[-2000:]
        line = one_error_line(proc)
        assert str(out / "r" / "report.png") in line and "MiB free" in line and "MiB needed" in line, line
        assert f"lenet-dist report {out / 'r'}" in line, line
        summary = out / "r" / "summary.json"
        assert not summary.exists() or read_summary(out / "r")["status"] == "failed", "never 'completed'"
        assert (out / "r" / "model" / "model.safetensors").is_file(), "the model was saved before the report"
        (out / "r" / ".fill").unlink()
        assert run_cli("report", out / "r", cwd=tmp_path).returncode == 0 and (out / "r" / "report.png").is_file()


def test_7_an_unreadable_data_file_is_exit_3_with_one_line(mnist_dir: Path):
    _needs_root("running as another user")
    base = Path("/tmp") / f"lenet-unreadable-{os.getpid()}"  # pytest's tmp is private to root
    try:
        shutil.copytree(mnist_dir / "MNIST", base / "data" / "MNIST")
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (base / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").chmod(0)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "lenet_dist"]
        for args in (["data", "verify"], ["train", "--tracking", "disabled"], ["evaluate", "nothing"]):
            proc = subprocess.run([*nobody, *args, "--data-dir", "data"], cwd=base, env=cli_env(HOME=str(base)),
                                  capture_output=True, text=True, timeout=300)
            if args[0] == "evaluate":
                assert proc.returncode == 4  # the checkpoint is checked first
                continue
            assert proc.returncode == 3, proc.stderr
            assert "cannot read t10k-images-idx3-ubyte" in one_error_line(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _damaged_meta(small_run: Path, tmp_path: Path, how: str) -> Path:
    ckpt = tmp_path / how
    shutil.copytree(small_run / "model", ckpt)
    meta_file = ckpt / "meta.json"
    meta = json.loads(meta_file.read_text())
    if how == "symlink-to-itself":
        meta_file.unlink()
        meta_file.symlink_to(meta_file)
        return ckpt
    if how == "files-is-a-list":
        meta["files"] = list(meta["files"])
    else:
        del meta["classes"]
    meta_file.write_text(json.dumps(meta))
    return ckpt


def test_8_small_user_errors_are_one_line_with_their_exit_code(small_run: Path, mnist_dir: Path, tmp_path: Path):
    cases = [(["train", "--set", "train.seed=99999999999999999999999", "--dry-run"], 2, "train.seed"),
             (["export", small_run / "model", "-o", tmp_path], 2, "is a directory"),
             (["report", tmp_path], 2, "not a lenet-dist run directory"),
             (["runs", "compare", tmp_path / "nothing"], 2, "no runs")]
    cases += [(["evaluate", _damaged_meta(small_run, tmp_path, how), "--data-dir", mnist_dir], 4, "meta.json")
              for how in ("symlink-to-itself", "files-is-a-list", "lacks-classes")]
    for args, code, words in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == code, (args, proc.stderr)
        assert words in one_error_line(proc), (args, proc.stderr)
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    proc = run_cli("predict", small_run / "model" / "meta.json", "--checkpoint", small_run / "model",
                   "--save-preprocessed", a_file, cwd=tmp_path)
    assert proc.returncode == 2 and "is a file" in one_error_line(proc) and proc.stdout == "", "checked first"


def test_8_resuming_a_finished_checkpoint_into_a_new_run_completes_with_a_report(small_run: Path, mnist_dir: Path,
                                                                                  tmp_path: Path):
    last = list_training_checkpoints(small_run)[-1]
    proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "again", "--resume",
                   last, "--set", "data.train_subset=6000", "--set", "tracking.mode=disabled", "--epochs", "1",
                   "--set", "augment.enabled=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_summary(tmp_path / "again")["status"] == "completed" and (tmp_path / "again" / "report.png").is_file()


def test_9_sighup_checkpoints_and_exits_resumable(mnist_dir: Path, tmp_path: Path):
    cmd = [sys.executable, "-m", "lenet_dist", "train", "--data-dir", str(mnist_dir), "--output-dir", str(tmp_path),
           "--run-name", "hup", "--set", "tracking.mode=disabled", "--epochs", "3", "--set", "train.log_every_steps=5"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_step(tmp_path / "hup" / "metrics.jsonl", 10)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_RESUMABLE, err
    assert read_summary(tmp_path / "hup")["stop_signal"] == "SIGHUP" and list_training_checkpoints(tmp_path / "hup")


def test_9_an_empty_output_dir_is_refused(tmp_path: Path):
    for flag in ("--output-dir", "--data-dir"):
        proc = run_cli("train", flag, "", "--dry-run", cwd=tmp_path)
        assert proc.returncode == 2 and "must not be empty" in one_error_line(proc)
    assert list(tmp_path.iterdir()) == []


def test_9_a_pipe_is_not_a_regular_file(small_run: Path, tmp_path: Path):
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    # a writer on the pipe, as `predict <(curl …)` would have: the reader must not take it for an empty file
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    proc = run_cli("predict", fifo, "--checkpoint", small_run / "model", "--json", cwd=tmp_path)
    assert proc.returncode == 5
    [row] = json.loads(proc.stdout)
    assert row["error"].startswith("not a regular file") and stat.S_ISFIFO(fifo.stat().st_mode)
