"""slurm/*.sh against a real SLURM cluster on this machine (slurm/local-cluster.sh): two slurmd
pose as nodes n1 and n2. Skipped where no cluster can be started, unless LENET_DIST_REQUIRE_SLURM=1
(CI), where that is a failure."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import REPO, cli_env, read_summary

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
SMALL = ["--set", "data.train_subset=6000", "--epochs", "1", "--tracking", "disabled"]


@pytest.fixture(scope="module")
def cluster():
    state = Path(os.environ.get("LENET_SLURM_DIR", "/tmp/lenet-slurm-tests"))
    env = cli_env(LENET_SLURM_DIR=str(state))
    can_start = os.geteuid() == 0 and (shutil.which("apt-get") or shutil.which("slurmctld"))
    if not can_start:
        if os.environ.get("LENET_DIST_REQUIRE_SLURM") == "1":
            pytest.fail("LENET_DIST_REQUIRE_SLURM=1 but the local cluster cannot be started (needs root)")
        pytest.skip("the local SLURM cluster needs root (apt, munge)")
    start = subprocess.run(["bash", "slurm/local-cluster.sh", "start"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)
    assert start.returncode == 0, start.stderr
    env["SLURM_CONF"] = str(state / "slurm.conf")
    (REPO / "logs").mkdir(exist_ok=True)
    yield env
    subprocess.run(["bash", "slurm/local-cluster.sh", "stop"], cwd=REPO, env=env, capture_output=True)


def sbatch(env, *args: str, wait: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Submit; with `wait`, return once the job (every task of an array) has ended, with the job's exit
    code as returncode, like `sbatch --wait`. Not `--wait` itself: it polls at growing intervals (up to
    10 s), which added ~5 s to every job here."""
    cmd = ["sbatch", "--parsable", *map(str, args)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    if wait and done.returncode == 0:
        job = done.stdout.strip().split(";")[0]
        done.returncode = _wait(lambda: _ended(env, job), timeout, f"job {job} to end")[0]
    return done


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED"}


def _job_state(env, job: str) -> str:
    """`scontrol show job`, one line per task (an array has several)."""
    return subprocess.run(["scontrol", "-o", "show", "job", job], env=env, capture_output=True, text=True).stdout


def _ended(env, job: str) -> tuple[int] | None:
    """(highest exit code over the job's tasks,) once every task has ended and finished completing."""
    tasks = [dict(f.split("=", 1) for f in line.split() if "=" in f)
             for line in _job_state(env, job).splitlines() if line.strip()]
    if not tasks or any(t.get("JobState") not in TERMINAL for t in tasks):  # COMPLETING is not an end yet
        return None
    codes = [tuple(int(x) for x in t["ExitCode"].split(":")) for t in tasks]
    return (max(code or (128 + sig if sig else 0) for code, sig in codes),)


def log_of(job_name: str, job_id: str) -> str:
    return (REPO / "logs" / f"{job_name}-{job_id}.out").read_text()


def test_scripts_are_syntax_and_shellcheck_clean():
    scripts = [*sorted((REPO / "slurm").glob("*.sh")), *sorted((REPO / "jobs").glob("*.sh")), REPO / ".ci" / "run"]
    for script in scripts:
        subprocess.run(["bash", "-n", script], check=True)
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
    elif os.environ.get("LENET_DIST_REQUIRE_SLURM") == "1":
        pytest.fail("shellcheck is not installed")


def test_single_node_job_trains_and_evaluates(cluster, mnist_dir: Path, tmp_path: Path):
    done = sbatch(cluster, "--job-name=t-single", "slurm/train.sh", "--data-dir", mnist_dir, "--output-dir", tmp_path,
                  *SMALL)
    job = done.stdout.strip().split(";")[0]
    assert done.returncode == 0, log_of("t-single", job)
    run = tmp_path / f"t-single-{job}"
    s = read_summary(run)
    assert s["status"] == "completed" and s["world_size"] == 1 and s["slurm"]["slurm_job_id"] == job
    assert s["test_samples"] == 10000 and s["test_accuracy"] > 0.7  # chance is 0.10
    assert (run / "model" / "model.safetensors").is_file()


def test_two_node_job_runs_one_ddp_world_across_both_nodes(cluster, mnist_dir: Path, tmp_path: Path):
    done = sbatch(cluster, "--job-name=t-multi", "--nodes=2", "slurm/train.sh", "--data-dir", mnist_dir,
                  "--output-dir", tmp_path, *SMALL)
    job = done.stdout.strip()
    assert done.returncode == 0, log_of("t-multi", job)
    assert [p.name for p in tmp_path.iterdir()] == [f"t-multi-{job}"], "one run directory"
    s = read_summary(tmp_path / f"t-multi-{job}")
    assert s["world_size"] == 2 and sorted(s["rank_nodes"]) == ["n1", "n2"]
    assert s["test_samples"] == 10000 and s["test_accuracy"] > 0.7
    assert log_of("t-multi", job).count("held-out accuracy") == 1, "one set of logs"


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _last_step(metrics: Path) -> int:
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return json.loads(lines[-1])["step"] if lines else 0


def test_preempted_job_checkpoints_requeues_itself_and_resumes(cluster, mnist_dir: Path, tmp_path: Path):
    done = sbatch(cluster, "--job-name=t-preempt", "slurm/train.sh", "--data-dir", mnist_dir, "--output-dir",
                  tmp_path, "--set", "data.train_subset=20000", "--epochs", "2", "--tracking", "disabled",
                  "--set", "train.log_every_steps=5", wait=False)
    job = done.stdout.strip()
    run = tmp_path / f"t-preempt-{job}"
    _wait(lambda: _last_step(run / "metrics.jsonl") >= 40, 180, "40 training steps")
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=cluster, check=True)  # as --signal=B:USR1@T
    final = _wait(lambda: (run / "summary.json").exists() and read_summary(run)["status"] == "completed"
                  and read_summary(run), 300, "the requeued job to complete")
    log = log_of("t-preempt", job)
    assert "restart 0" in log and "restart 1" in log, log
    assert "requeueing job" in log and "SIGUSR1 received" in log
    assert final["resumed"] and final["restarts"] == 1 and final["slurm"]["slurm_restart_count"] == "1"
    assert final["epochs_completed"] == 2 and [h["epoch"] for h in final["history"]] == [1, 2]
    assert final["global_step"] == 2 * (20000 // 128)
    _wait(lambda: "JobState=COMPLETED" in _job_state(cluster, job), 60, "COMPLETED")


def test_usr1_to_every_process_of_a_two_node_step_is_survived_by_the_launcher(cluster, mnist_dir: Path,
                                                                             tmp_path: Path):
    """`scancel --signal=USR1 --full` reaches the launchers too; with a slow file system (every save
    takes 4 s longer) a launcher that died of it would tear the step down mid-checkpoint."""
    env = {**cluster, "LENET_DIST_FAULT": "slow-save:4"}
    done = sbatch(env, "--job-name=t-usr1", "--nodes=2", "slurm/train.sh", "--data-dir", mnist_dir, "--output-dir",
                  tmp_path, "--set", "data.train_subset=12800", "--epochs", "1", "--tracking", "disabled",
                  "--set", "train.log_every_steps=5", "--set", "checkpoint.every_epoch=false", wait=False)
    job = done.stdout.strip()
    run = tmp_path / f"t-usr1-{job}"
    _wait(lambda: _last_step(run / "metrics.jsonl") >= 20, 180, "20 training steps")
    subprocess.run(["scancel", "--full", "--signal=USR1", job], env=cluster, check=True)
    # no StartTime=now here: a job that requeued itself and starts within cred_expire is killed
    # ("Job credential revoked"); SLURM starts it after cred_expire + 1 s by itself
    _wait(lambda: "JobState=COMPLETED" in _job_state(cluster, job), 300, "COMPLETED")
    log = log_of("t-usr1", job)
    assert "job step ended with exit code 75, run status 'stopped'" in log, log
    final = read_summary(run)
    assert final["status"] == "completed" and final["resumed"] and final["global_step"] == 12800 // 128


def test_scancel_ends_the_job_checkpointed_and_resubmitting_the_run_name_resumes(cluster, mnist_dir: Path,
                                                                                 tmp_path: Path):
    args = ["--data-dir", mnist_dir, "--output-dir", tmp_path, "--set", "data.train_subset=20000", "--epochs", "2",
            "--tracking", "disabled", "--set", "train.log_every_steps=5", "--run-name", "mine"]
    job = sbatch(cluster, "--job-name=t-cancel", "slurm/train.sh", *args, wait=False).stdout.strip()
    run = tmp_path / "mine"  # the user's name wins over the job's
    _wait(lambda: _last_step(run / "metrics.jsonl") >= 40, 180, "40 training steps")
    subprocess.run(["scancel", job], env=cluster, check=True)  # a person cancelling: plain SIGTERM
    _wait(lambda: "JobState=CANCELLED" in _job_state(cluster, job), 60, "CANCELLED")
    _wait(lambda: "not requeueing it myself (stopped by SIGTERM)" in log_of("t-cancel", job), 40,
          "the script's last line")
    time.sleep(3)
    state = _job_state(cluster, job)
    assert "JobState=CANCELLED" in state and "Restarts=0" in state, state
    s = read_summary(run)
    assert s["status"] == "stopped" and s["stop_signal"] == "SIGTERM" and s["global_step"] >= 40
    assert "--run-name mine" in log_of("t-cancel", job), "the log says how to continue"
    again = sbatch(cluster, "--job-name=t-cancel", "slurm/train.sh", *args)  # the same line, resubmitted
    assert again.returncode == 0, log_of("t-cancel", again.stdout.strip())
    final = read_summary(run)
    assert final["status"] == "completed" and final["resumed"] and final["global_step"] == 2 * (20000 // 128)
    assert [p.name for p in tmp_path.iterdir()] == ["mine"], "one run, continued, not a new one"


def test_user_error_fails_fast_with_one_line_and_is_not_requeued(cluster, tmp_path: Path):
    done = sbatch(cluster, "--job-name=t-usererr", "slurm/train.sh", "--config", tmp_path / "nope.yaml")
    job = done.stdout.strip()
    assert done.returncode == 2
    log = log_of("t-usererr", job)
    assert len(re.findall(r"error:", log)) == 1 and "config file not found" in log
    assert "Traceback" not in log and "requeue" not in log
    state = _job_state(cluster, job)
    assert "Restarts=0" in state and "JobState=FAILED" in state


def test_a_batch_the_job_s_processes_cannot_share_fails_in_the_dry_run_before_srun(cluster, tmp_path: Path):
    """The world size (2 nodes x 2 CPU processes) is known before srun: a global batch of 3 leaves a
    rank without an image."""
    env = {**cluster, "LENET_CPU_PROCS_PER_NODE": "2"}
    done = sbatch(env, "--job-name=t-world", "--nodes=2", "slurm/train.sh", "--output-dir", tmp_path,
                  "--batch-size", "3")
    job = done.stdout.strip()
    log = log_of("t-world", job)
    assert done.returncode == 2, log
    assert "train.batch_size (3) is smaller than processes x train.grad_accum_steps (4 x 1)" in log
    assert "node(s) x" not in log.split("error:")[1], "nothing ran after the dry run"


def test_each_rank_uses_the_cpus_slurm_gave_its_task_and_says_so(cluster, mnist_dir: Path, tmp_path: Path):
    done = sbatch(cluster, "--job-name=t-cpus", "--cpus-per-task=1", "slurm/train.sh", "--data-dir", mnist_dir,
                  "--output-dir", tmp_path, *SMALL)
    job = done.stdout.strip()
    log = log_of("t-cpus", job)
    assert done.returncode == 0, log
    assert "1 CPU(s) per node" in log and "1 torch thread(s) per process of 1 CPU(s) usable" in log, log


def test_array_sweep_produces_a_run_per_line_and_a_comparison(cluster, mnist_dir: Path, tmp_path: Path):
    sweep = tmp_path / "tiny.txt"
    sweep.write_text("# two learning rates\n--set optim.lr=0.001\n\n--set optim.lr=0.004\n")
    out = tmp_path / "runs"
    done = sbatch(cluster, "--job-name=t-sweep", "slurm/sweep.sh", sweep, "--data-dir", mnist_dir, "--output-dir",
                  out, *SMALL)
    job = done.stdout.strip()
    log = log_of("t-sweep", job)
    assert done.returncode == 0, log
    runs = sorted(p.name for p in out.iterdir())
    assert len(runs) == 2 and all(r.startswith("tiny-") for r in runs)
    assert all(read_summary(out / r)["status"] == "completed" for r in runs)
    assert all("group: tiny" in (out / r / "config.yaml").read_text() for r in runs), "W&B group = sweep name"
    configs = sorted((out / r / "config.yaml").read_text().split("lr: ")[1].split()[0] for r in runs)
    assert configs == ["0.001", "0.004"]
    assert "2 runs, best held-out accuracy first" in log and "2 of 2 runs completed" in log


RECOVER = ["--set", "data.train_subset=6000", "--epochs", "2", "--set", "checkpoint.every_steps=5", "--seed", "5",
           "--set", "train.log_every_steps=1", "--tracking", "disabled"]


def _pid_of(node: str, rank: int) -> int:
    from lenet_dist.faults import processes_with

    [pid] = processes_with({"SLURMD_NODENAME": node, "RANK": str(rank)})
    return pid


def test_a_killed_rank_on_the_second_node_restarts_the_step_and_the_job_completes(cluster, mnist_dir: Path,
                                                                                  tmp_path: Path):
    ref = sbatch(cluster, "--job-name=t-clean", "--nodes=2", "slurm/train.sh", "--data-dir", mnist_dir,
                 "--output-dir", tmp_path / "ref", "--run-name", "ref", *RECOVER)  # the same job, uninterrupted
    assert ref.returncode == 0, log_of("t-clean", ref.stdout.strip())
    out = tmp_path / "runs"
    job = sbatch(cluster, "--job-name=t-crash", "--nodes=2", "slurm/train.sh", "--data-dir", mnist_dir,
                 "--output-dir", out, *RECOVER, wait=False).stdout.strip()
    run = out / f"t-crash-{job}"
    _wait(lambda: _last_step(run / "metrics.jsonl") >= 12, 180, "12 training steps")
    os.kill(_pid_of("n2", 1), 9)
    _wait(lambda: "JobState=COMPLETED" in _job_state(cluster, job), 300, "COMPLETED")
    log = log_of("t-crash", job)
    assert "restarting it from the run's latest checkpoint (restart 1 of at most 3)" in log, log
    assert [p.name for p in out.iterdir()] == [run.name], "one run directory"
    s = read_summary(run)
    assert s["status"] == "completed" and s["world_size"] == 2 and len(s["attempts"]) >= 2
    assert s["attempts"][0]["ended"] == "crashed" and s["attempts"][-1]["ended"] == "completed"
    assert (run / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "ref" / "ref" / "model" / "model.safetensors").read_bytes(), "bit-identical"


def test_a_crash_at_the_same_step_fails_the_job_once_and_is_not_requeued(cluster, mnist_dir: Path, tmp_path: Path):
    env = {**cluster, "LENET_DIST_FAULT": "at-step:13"}
    done = sbatch(env, "--job-name=t-repeat", "slurm/train.sh", "--data-dir", mnist_dir, "--output-dir", tmp_path,
                  *RECOVER)
    job = done.stdout.strip()
    log = log_of("t-repeat", job)
    assert done.returncode != 0 and "not restarting again" in log, log
    # from step 0 it crashed at 13; from the checkpoint at 10 at 13 again: the second identical failure
    assert log.count("restarting it from the run's latest checkpoint") == 2, log
    state = _job_state(cluster, job)
    assert "JobState=FAILED" in state and "Restarts=0" in state


def _scontrol(cluster, *args: str, check: bool = True) -> None:
    subprocess.run(["scontrol", *args], env=cluster, check=check, capture_output=True)


def test_a_lost_node_makes_slurm_requeue_the_job_and_it_completes_on_the_nodes_it_gets(cluster, mnist_dir: Path,
                                                                                      tmp_path: Path):
    # the node goes away without warning: SLURM (not the job) notices, kills the job and requeues it
    # (--requeue); when two nodes are up again the job resumes its own run from its last checkpoint
    job = sbatch(cluster, "--job-name=t-lost", "--nodes=2", "slurm/train.sh", "--data-dir", mnist_dir,
                 "--output-dir", tmp_path, *RECOVER, wait=False).stdout.strip()
    run = tmp_path / f"t-lost-{job}"
    _wait(lambda: _last_step(run / "metrics.jsonl") >= 12, 180, "12 training steps")
    _scontrol(cluster, "update", "NodeName=n2", "State=DOWN", "Reason=lenet-dist-test-lost-node")
    try:
        _wait(lambda: re.search(r"Restarts=[1-9]", _job_state(cluster, job)), 120, "SLURM to requeue the job")
    finally:
        _scontrol(cluster, "update", "NodeName=n2", "State=RESUME", check=False)  # ReturnToService may have done it
    _scontrol(cluster, "update", f"JobId={job}", "StartTime=now", check=False)  # skip the requeue's begin-time delay
    _wait(lambda: "JobState=COMPLETED" in _job_state(cluster, job), 300, "COMPLETED")
    assert [p.name for p in tmp_path.iterdir()] == [run.name], "one run directory"
    s = read_summary(run)
    assert s["status"] == "completed" and s["world_size"] == 2 and s["resumed"], s
    assert s["slurm"]["slurm_restart_count"] == "1" and s["global_step"] == 2 * (6000 // 128)
    assert "restart 1" in log_of("t-lost", job)
