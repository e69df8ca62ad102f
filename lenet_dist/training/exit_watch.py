"""A rank that finished does not leave while a rank beside it is stuck.

After the last collective no peer can notice a hung rank: if it hangs between there and its exit
(SIGSTOP, a teardown or a file system that never returns), every other worker exits 0 and the
launcher (torchrun's elastic agent, srun) waits for the stuck one for ever. So each finished rank
waits up to checkpoint.hang_timeout_s for the other workers the launcher started beside it (same
parent process) to exit or to be waiting likewise, which each shows by touching a file of its own
every 50 ms; if one is still neither, this rank exits 76 instead of 0. The launcher then ends the
attempt, killing the stuck worker, and restarts it; the new attempt resumes from the final
checkpoint and finishes at once (jobs/chaos.py --when time found this)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

FRESH_S = 1.0  # a waiting worker's file is never older than this; a stopped one's soon is


def proc_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat's fields after "pid (comm) ": state, parent, …, start time at [19]."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def local_peers() -> list[int]:
    """The other live workers this process's launcher started: same parent, lenet_dist (or the
    lenet-dist script) on the command line, not exited (zombies awaiting their parent are gone)."""
    me, parent, peers = os.getpid(), os.getppid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = proc_fields(pid)
            state, ppid = fields[0], int(fields[1])
            if ppid == parent and int(pid) != me and state not in ("Z", "X"):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"lenet_dist" in cmd or b"lenet-dist" in cmd:  # `-m lenet_dist`, or the console script
                    peers.append(int(pid))
        except (OSError, ValueError):
            continue
    return peers


def stuck_local_peers(timeout_s: float, poll_s: float = 0.05) -> list[int]:
    """Wait until every other local worker has exited or is waiting here too; those that are neither
    after timeout_s. Only under a launcher that started several workers here (not a lone process,
    whose siblings are the shell's)."""
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= 1 or not os.path.isdir("/proc"):
        return []
    waiting = Path(tempfile.gettempdir()) / f"lenet-dist-finished-{os.getuid()}-{os.getppid()}"
    waiting.mkdir(mode=0o700, exist_ok=True)
    mine, deadline = waiting / str(os.getpid()), time.monotonic() + timeout_s
    try:
        while True:
            mine.touch()
            pending = [pid for pid in local_peers() if not _fresh(waiting / str(pid))]
            if not pending or time.monotonic() >= deadline:
                return pending
            time.sleep(poll_s)
    finally:
        with contextlib.suppress(OSError):
            mine.unlink()
            waiting.rmdir()  # the last one out; not empty while another still waits


def _fresh(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < FRESH_S
    except OSError:
        return False
