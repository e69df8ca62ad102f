"""Every start of a run is an attempt, recorded in <run>/attempts.jsonl (main process only):

    {"kind": "start", "attempt": 2, "resumed_from_step": 120, "launcher_restart": 1, ...}
    {"kind": "failure", "attempt": 2, "rank": 0, "node": "n1", "step": 131, "cause": "…"}
    {"kind": "end", "attempt": 2, "status": "completed"}

An attempt with no "end" line crashed (SIGKILL, OOM, a segfault leave nothing else). Restarts are
the launcher's (torchrun's elastic agent, slurm/train.sh); this module decides whether one more is
sensible: not after `max_restarts` crashes in a row, and not when the last attempt crashed before
getting past the checkpoint the crash before it left (the second identical failure: a bug at a
fixed step must not loop for hours) — unless surviving ranks saw the two crashes at different
steps (a node lost twice in one checkpoint interval is bad luck, not a bug).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import TypeAdapter

from lenet_dist.errors import EXIT_GAVE_UP, PeerLost, UserError
from lenet_dist.fileio import disk_full_as_user_error
from lenet_dist.records import AttemptEnd, AttemptFailure, AttemptLine, AttemptStart, AttemptSummary

FILE = "attempts.jsonl"
RANK_FILES = "attempts.rank*.jsonl"  # failures seen by ranks other than the main process, one file each
_LINE = TypeAdapter(AttemptLine)


class GaveUp(UserError):
    exit_code = EXIT_GAVE_UP


def read(run_dir: Path) -> list[AttemptLine]:
    """The main process's lines, then every other rank's (their order does not matter: lines name
    their attempt)."""
    paths = [Path(run_dir) / FILE, *sorted(Path(run_dir).glob(RANK_FILES))]
    return [_LINE.validate_json(line) for path in paths if path.is_file()
            for line in path.read_text().splitlines() if line.strip()]


def append(run_dir: Path, record: AttemptLine, rank: int = 0) -> None:
    """One line, appended and flushed (a crash right after must not lose it). One writer per file:
    appends from several hosts to one file on NFS are not atomic, so a rank other than the main
    process writes a file of its own."""
    path = Path(run_dir) / (FILE if rank == 0 else RANK_FILES.replace("*", str(rank)))
    line = record.model_dump_json(exclude_none=True) + "\n"
    with disk_full_as_user_error(path, len(line)), open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def crashed_in_a_row(records: list[AttemptLine]) -> list[AttemptStart]:
    """The start records of the attempts that crashed since the last one that ended, newest first."""
    ended = {r.attempt for r in records if isinstance(r, AttemptEnd)}
    out = []
    for r in reversed([r for r in records if isinstance(r, AttemptStart)]):
        if r.attempt in ended:
            break
        out.append(r)
    return out


def refusal(records: list[AttemptLine], resumed_from_step: int, max_restarts: int) -> str | None:
    """Why this attempt must not run, or None."""
    crashes = crashed_in_a_row(records)
    if len(crashes) >= 2 and crashes[0].resumed_from_step == resumed_from_step:
        last, before = (_crash_step(records, c.attempt) for c in crashes[:2])
        if last is None or before is None or last == before:  # two crashes at different steps are bad luck
            where = f" (at step {last} both times)" if last is not None else ""
            return (f"the last two attempts crashed{where}, the second before it got past the checkpoint at step "
                    f"{resumed_from_step} that the first left; not restarting again: a crash at the same place "
                    f"every time is a bug, not bad luck (see {FILE} and the log)")
    if len(crashes) > max_restarts:
        return (f"{len(crashes)} attempts in a row crashed (checkpoint.max_restarts = {max_restarts}); not restarting "
                f"again (see {FILE} and the log)")
    return None


def _crash_step(records: list[AttemptLine], attempt: int) -> int | None:
    """Where an attempt failed, as a surviving rank saw it; None when no rank survived to say."""
    steps = [r.step for r in records if isinstance(r, AttemptFailure) and r.attempt == attempt]
    return min(steps) if steps else None


def begin(run_dir: Path, resumed_from_step: int, max_restarts: int, launcher_restart: int) -> int:
    """Record this attempt's start (main process), or raise GaveUp; returns the attempt number."""
    records = read(run_dir)
    why = refusal(records, resumed_from_step, max_restarts)
    if why:
        raise GaveUp(why)
    attempt = 1 + max((r.attempt for r in records), default=0)
    append(run_dir, AttemptStart(attempt=attempt, resumed_from_step=resumed_from_step,
                                 launcher_restart=launcher_restart, host=socket.gethostname(), pid=os.getpid(),
                                 slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                                 slurm_restart_count=os.environ.get("SLURM_RESTART_COUNT")))
    return attempt


def peer_lost(run_dir: Path, attempt: int, rank: int, step: int, exc: BaseException) -> PeerLost:
    """Record which rank saw what (any rank may), and the error that ends this attempt so the launcher
    restarts the job."""
    from lenet_dist.training.distributed import node_name

    cause = f"a peer rank died or stopped answering ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    append(run_dir, AttemptFailure(attempt=attempt, rank=rank, node=node_name(), step=step, cause=cause), rank)
    return PeerLost(f"rank {rank} on {node_name()} at step {step}: {cause}; ending this attempt so the job "
                    "restarts from its latest checkpoint")


def summary(records: list[AttemptLine]) -> list[AttemptSummary]:
    """One entry per attempt for summary.json: where it started, how it ended, why."""
    out = []
    for start in (r for r in records if isinstance(r, AttemptStart)):
        n = start.attempt
        end = next((r for r in records if isinstance(r, AttemptEnd) and r.attempt == n), None)
        out.append(AttemptSummary(attempt=n, started=start.time, resumed_from_step=start.resumed_from_step,
                                  ended=end.status if end else "crashed",
                                  failures=[r for r in records if isinstance(r, AttemptFailure) and r.attempt == n]))
    return out
