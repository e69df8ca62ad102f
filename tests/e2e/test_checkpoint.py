"""Fault tolerance with real processes: SIGKILL at chosen points, signals, corrupt checkpoints."""

import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lenet_dist.checkpoint import STATE_FILE, list_training_checkpoints, read_meta
from lenet_dist.errors import EXIT_RESUMABLE
from lenet_dist.fileio import sha256_of

from ..conftest import cli_env, launch, one_error_line, read_summary, run_cli, wait_until_step

pytestmark = pytest.mark.slow  # real launches: subprocesses, multi-process, the SLURM cluster

# 3000 images, batch 128: 23 steps per epoch, 2 epochs, a training state every 5 steps
RESUMABLE = ["--set", "data.train_subset=3000", "--set", "tracking.mode=disabled", "--epochs", "2",
             "--set", "checkpoint.every_steps=5", "--set", "checkpoint.keep_last=3", "--seed", "3"]


def _train(tmp: Path, data: Path, name: str, *extra: str, env=None):
    return run_cli("train", "--data-dir", data, "--output-dir", tmp, "--run-name", name, *RESUMABLE, *extra,
                   cwd=tmp, env=env)


def _weights(run: Path) -> bytes:
    return (run / "model" / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(mnist_dir: Path, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ref")
    proc = _train(tmp, mnist_dir, "ref")
    assert proc.returncode == 0, proc.stderr
    return tmp / "ref"


@pytest.mark.parametrize("fault", ["after-step:2", "after-step:12", "after-step:30", "during-save:3"])
def test_resume_after_sigkill_is_bit_exact(fault: str, uninterrupted: Path, mnist_dir: Path, tmp_path: Path):
    crashed = _train(tmp_path, mnist_dir, "run", env=cli_env(LENET_DIST_FAULT=fault))
    assert crashed.returncode == -signal.SIGKILL
    resumed = _train(tmp_path, mnist_dir, "run", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert _weights(tmp_path / "run") == _weights(uninterrupted)
    s = read_summary(tmp_path / "run")
    assert s["epochs_completed"] == 2 and s["global_step"] == 46
    assert [h["epoch"] for h in s["history"]] == [1, 2], "no epoch repeated or skipped"
    ref = read_summary(uninterrupted)
    assert [h["test_accuracy"] for h in s["history"]] == [h["test_accuracy"] for h in ref["history"]]
    assert [h["train_loss"] for h in s["history"]] == pytest.approx([h["train_loss"] for h in ref["history"]])
    assert s["resumed"] == (fault != "after-step:2")  # killed before the first save: starts fresh
    assert not list((tmp_path / "run" / "checkpoints").glob(".*")), "no temporary directory left behind"


def test_corrupt_latest_checkpoint_is_skipped_on_auto_resume(uninterrupted: Path, mnist_dir: Path, tmp_path: Path):
    crashed = _train(tmp_path, mnist_dir, "run", env=cli_env(LENET_DIST_FAULT="after-step:33"))
    assert crashed.returncode == -signal.SIGKILL
    newest = list_training_checkpoints(tmp_path / "run")[-1]
    with open(newest / "model.safetensors", "r+b") as fh:
        fh.truncate(100)
    resumed = _train(tmp_path, mnist_dir, "run", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping" in resumed.stderr and newest.name in resumed.stderr
    assert _weights(tmp_path / "run") == _weights(uninterrupted)


def test_a_one_process_checkpoint_resumes_on_two_processes(uninterrupted: Path, mnist_dir: Path, tmp_path: Path):
    crashed = _train(tmp_path, mnist_dir, "run", env=cli_env(LENET_DIST_FAULT="after-step:30"))
    assert crashed.returncode == -signal.SIGKILL
    resumed = launch(2, "train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "run", *RESUMABLE,
                     "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    s = read_summary(tmp_path / "run")
    assert s["world_size"] == 2 and s["resumed"] and s["global_step"] == 46
    ref = read_summary(uninterrupted)
    assert s["history"][0] == ref["history"][0] | {k: s["history"][0][k] for k in ("train_seconds", "epoch_seconds",
                                                                                   "elapsed_seconds")}
    # same global batches, only the all-reduce's summation order differs
    assert abs(s["test_accuracy"] - ref["test_accuracy"]) < 0.01


def _wait_for(path_glob, root: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(root.glob(path_glob)):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path_glob} never appeared under {root}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_mid_epoch_checkpoints_and_exits_resumable(sig, mnist_dir: Path, tmp_path: Path):
    cmd = [sys.executable, "-m", "lenet_dist", "train", "--data-dir", str(mnist_dir), "--output-dir", str(tmp_path),
           "--run-name", "sig", "--set", "tracking.mode=disabled", "--epochs", "3", "--set", "train.log_every_steps=5"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for("sig/metrics.jsonl", tmp_path)
    wait_until_step(tmp_path / "sig" / "metrics.jsonl", 20)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_RESUMABLE, err
    assert "resume with --resume auto" in err and "Traceback" not in err
    s = read_summary(tmp_path / "sig")
    assert s["status"] == "stopped" and s["stop_signal"] == sig.name
    [ckpt] = list_training_checkpoints(tmp_path / "sig")
    _, meta = read_meta(ckpt)
    assert meta.global_step == s["global_step"] and 0 < meta.step_in_epoch < meta.steps_per_epoch


def test_two_process_sigterm_stop_and_resume_matches_uninterrupted(mnist_dir: Path, tmp_path: Path):
    common = ["train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--set", "data.train_subset=12800",
              "--set", "tracking.mode=disabled", "--epochs", "2", "--set", "train.log_every_steps=5"]
    ref = launch(2, *common, "--run-name", "ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    from ..conftest import BIN, free_port

    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", str(free_port()), "-m", "lenet_dist", *map(str, common), "--run-name", "sig"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    wait_until_step(tmp_path / "sig" / "metrics.jsonl", 30)
    os.killpg(proc.pid, signal.SIGTERM)  # as SLURM/a terminal would: the whole process group
    _, err = proc.communicate(timeout=120)
    assert err.count("resume with --resume auto") == 2, err[-3000:]  # both ranks stopped cleanly
    s = read_summary(tmp_path / "sig")
    assert s["status"] == "stopped" and 0 < s["global_step"] < 200
    resumed = launch(2, *common, "--run-name", "sig", "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = read_summary(tmp_path / "sig")
    assert final["resumed"] and final["epochs_completed"] == 2
    assert final["test_accuracy"] == read_summary(tmp_path / "ref")["test_accuracy"]
    assert _weights(tmp_path / "sig") == _weights(tmp_path / "ref")


def test_time_based_saves_are_agreed_by_both_ranks_at_the_stop_checks(mnist_dir: Path, tmp_path: Path):
    # every_seconds so small that every check (each 5 steps) is due: the ranks vote in the same
    # all-reduce as the stop flag, and both must take part in each save
    proc = launch(2, "train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "timed",
                  "--set", "data.train_subset=3000", "--set", "tracking.mode=disabled", "--epochs", "1",
                  "--set", "checkpoint.every_seconds=0.001", "--set", "checkpoint.signal_check_steps=5",
                  "--set", "checkpoint.every_epoch=false", "--set", "checkpoint.keep_last=10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [read_meta(c)[1].global_step for c in list_training_checkpoints(tmp_path / "timed")]
    assert steps == [5, 10, 15, 20], "one save per check; none at the epoch's end (every_epoch off)"


def _as_if_saved_on_cuda(state_file: Path) -> None:
    """Rewrite a torch.save archive so every storage says it lives on cuda:0 (as a GPU job's would)."""
    with zipfile.ZipFile(state_file) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for info, data in items:
            if info.filename.endswith("data.pkl"):
                cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # pickle BINUNICODE
                assert cpu in data
                data = data.replace(cpu, cuda)
            zout.writestr(info, data)
    state_file.write_bytes(buf.getvalue())


def test_training_state_saved_on_cuda_resumes_on_cpu(uninterrupted: Path, mnist_dir: Path, tmp_path: Path):
    import torch

    crashed = _train(tmp_path, mnist_dir, "run", env=cli_env(LENET_DIST_FAULT="after-step:12"))
    assert crashed.returncode == -signal.SIGKILL
    ckpt = list_training_checkpoints(tmp_path / "run")[-1]
    _as_if_saved_on_cuda(ckpt / STATE_FILE)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(ckpt / STATE_FILE, weights_only=True)  # the trap the loader must avoid
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["files"][STATE_FILE] = sha256_of(ckpt / STATE_FILE)
    (ckpt / "meta.json").write_text(json.dumps(meta))
    resumed = _train(tmp_path, mnist_dir, "run", "--resume", str(ckpt))
    assert resumed.returncode == 0, resumed.stderr
    assert _weights(tmp_path / "run") == _weights(uninterrupted)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("damage", ["truncated", "random-bytes", "model-is-a-pickle", "state-pickle-runs-code",
                                    "other-architecture", "missing"])
def test_bad_checkpoints_are_refused_with_one_line(damage: str, small_run: Path, mnist_dir: Path, tmp_path: Path):
    import shutil

    ckpt = tmp_path / "ckpt"
    src = list_training_checkpoints(small_run)[-1]
    shutil.copytree(src, ckpt)
    meta = json.loads((ckpt / "meta.json").read_text())
    if damage == "truncated":
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "random-bytes":
        (ckpt / "meta.json").write_bytes(os.urandom(4096))
    elif damage.endswith("pickle") or damage.endswith("runs-code"):  # crafted, checksum updated to match
        name = "model.safetensors" if damage == "model-is-a-pickle" else STATE_FILE
        (ckpt / name).write_bytes(pickle.dumps({"optimizer": _RunsCode()}))
        meta["files"][name] = sha256_of(ckpt / name)
        (ckpt / "meta.json").write_text(json.dumps(meta))
    elif damage == "other-architecture":
        meta["model_args"] = {"in_channels": 3, "num_classes": 10}
        (ckpt / "meta.json").write_text(json.dumps(meta))
    else:
        ckpt = tmp_path / "does-not-exist"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    commands = [["evaluate", ckpt, "--data-dir", mnist_dir]] if damage != "state-pickle-runs-code" else []
    for args in commands + [
                 ["train", "--data-dir", mnist_dir, "--output-dir", tmp_path / "runs", "--run-name", "x",
                  "--resume", ckpt, "--set", "data.train_subset=1000", "--set", "tracking.mode=disabled"]]:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 4, proc.stderr
        one_error_line(proc)
    assert not (tmp_path / "PWNED").exists(), "no code may run"
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "runs" not in p.parts}
    assert after == before, "nothing overwritten"


def test_evaluate_prints_accuracy_per_class_and_confusion(small_run: Path, mnist_dir: Path, tmp_path: Path):
    proc = run_cli("evaluate", small_run / "model", "--data-dir", mnist_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout and "confusion matrix" in proc.stdout
    as_json = run_cli("evaluate", small_run / "model", "--data-dir", mnist_dir, "--json", cwd=tmp_path)
    result = json.loads(as_json.stdout)
    assert result["accuracy"] == read_summary(small_run)["test_accuracy"]
    assert sum(map(sum, result["confusion_matrix"])) == 10000 and len(result["per_class_accuracy"]) == 10


def test_every_rank_resumes_the_checkpoint_the_main_process_chose(mnist_dir: Path, tmp_path: Path):
    """On a shared file system another host may not list the newest checkpoint yet (attribute
    caching); rank 1 here misses it, and must still resume where rank 0 does."""
    common = ["train", "--data-dir", mnist_dir, "--set", "data.train_subset=3000", "--set", "tracking.mode=disabled",
              "--epochs", "1", "--set", "checkpoint.every_steps=5", "--set", "checkpoint.keep_last=5",
              "--run-name", "r"]
    crashed = run_cli(*common, "--output-dir", tmp_path / "a", cwd=tmp_path,
                      env=cli_env(LENET_DIST_FAULT="after-step:12"))
    assert crashed.returncode == -signal.SIGKILL
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    plain = launch(2, *common, "--output-dir", tmp_path / "a", "--resume", "auto", cwd=tmp_path)
    stale = launch(2, *common, "--output-dir", tmp_path / "b", "--resume", "auto", cwd=tmp_path,
                   env=cli_env(LENET_DIST_FAULT="stale-listing@1"))
    assert plain.returncode == 0 and stale.returncode == 0, stale.stderr[-3000:]
    for out in ("a", "b"):
        assert read_summary(tmp_path / out / "r")["resumed_from"].endswith("step-000000010")
    assert _weights(tmp_path / "b" / "r") == _weights(tmp_path / "a" / "r")
