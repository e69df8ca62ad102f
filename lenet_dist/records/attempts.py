"""attempts.jsonl: one line per start of a run, per failure a rank saw, and per end."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from lenet_dist.records.base import Record, now


class AttemptStart(Record):
    kind: Literal["start"] = "start"
    time: str = Field(default_factory=now)
    attempt: int
    resumed_from_step: int
    launcher_restart: int = 0
    host: str = ""
    pid: int = 0
    slurm_job_id: str | None = None
    slurm_restart_count: str | None = None


class AttemptFailure(Record):
    """A rank that saw a peer fail: where, and why."""

    kind: Literal["failure"] = "failure"
    time: str = Field(default_factory=now)
    attempt: int
    rank: int
    node: str
    step: int
    cause: str


class AttemptEnd(Record):
    kind: Literal["end"] = "end"
    time: str = Field(default_factory=now)
    attempt: int
    status: Literal["completed", "stopped", "diverged", "failed"]


AttemptLine = Annotated[AttemptStart | AttemptFailure | AttemptEnd, Field(discriminator="kind")]


class AttemptSummary(Record):
    attempt: int
    started: str
    resumed_from_step: int
    ended: str  # an AttemptEnd's status, or "crashed"
    failures: list[AttemptFailure] = []
