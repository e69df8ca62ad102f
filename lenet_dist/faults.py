"""Fault injection for crash tests: LENET_DIST_FAULT makes the process SIGKILL itself at a chosen
moment, so crash-resume tests are deterministic. Unset (always, outside tests): does nothing.

    after-step:<n>    the n-th time this process finishes a step
    during-save:<n>   the n-th checkpoint this process writes, after its weights file
    at-step:<g>       whenever global step g finishes, in every attempt (a crash that repeats)
    slow-save:<s>     not a crash: every checkpoint write takes s seconds longer (a slow file system)
    hang-when-finished  SIGSTOP, not SIGKILL: once the run has finished, before the process exits
                      (the launcher's first attempt only, so the restart finishes)
    …@<rank>          only in the process with that RANK (a crash of one worker), e.g. after-step:12@1
    stale-listing     not a crash: this process's listing of a run's checkpoints misses the newest one
                      (a shared file system's attribute cache), e.g. stale-listing@1
    fill-disk:<point>   not a crash: fill the file system of the run directory at that point
                      (disk_fill_point), so what follows meets a real full disk
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_counts: dict[str, int] = {}


def crash_point(point: str, global_step: int | None = None) -> None:
    spec = os.environ.get("LENET_DIST_FAULT")
    if not spec:
        return
    spec, _, rank = spec.partition("@")
    if rank and os.environ.get("RANK", "0") != rank:
        return
    want, _, n = spec.partition(":")
    if want == "slow-save" and point == "during-save":
        time.sleep(float(n))
        return
    if want == point == "hang-when-finished":
        if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
            os.kill(os.getpid(), signal.SIGSTOP)
        return
    if want == "at-step" and point == "after-step" and global_step == int(n):
        os.kill(os.getpid(), signal.SIGKILL)
    if want != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def processes_with(env: dict[str, str], cmd_has: str = "lenet_dist", cmd_lacks: str = "accelerate") -> list[int]:
    """Pids of this machine's processes whose environment holds every env item and whose command line
    holds `cmd_has` and not `cmd_lacks`: how crash tests and jobs/chaos.py find the worker to kill."""
    want = [f"{k}={v}".encode() for k, v in env.items()]
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if all(w in environ for w in want) and cmd_has.encode() in cmd and cmd_lacks.encode() not in cmd:
            found.append(int(pid))
    return found


def disk_fill_point(point: str, directory: Path) -> None:
    """LENET_DIST_FAULT=fill-disk:<point>: fill the file system holding `directory` (a small tmpfs in
    the tests) with a hidden file, `.fill`, until it is full."""
    if os.environ.get("LENET_DIST_FAULT") != f"fill-disk:{point}":
        return
    with open(Path(directory) / ".fill", "ab") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass


def listing_as_seen(paths: list[Path]) -> list[Path]:
    """LENET_DIST_FAULT=stale-listing[@rank]: this process does not see the newest checkpoint yet."""
    spec, _, rank = os.environ.get("LENET_DIST_FAULT", "").partition("@")
    if spec != "stale-listing" or (rank and os.environ.get("RANK", "0") != rank):
        return paths
    return paths[:-1]
