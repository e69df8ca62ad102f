"""Where a job's start-up goes: seconds since the process started at each milestone before the
first optimizer step (imports, joining the process group, data, model and optimizer, run setup,
the first step). Written to summary.json as `startup_seconds`; jobs/benchmark.py prints it."""

from __future__ import annotations

import time

from lenet_dist import PROCESS_START


class Timeline:
    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        """Record `name` once: the loop passes "first_step" on every step, so later calls cost a lookup."""
        if name not in self.marks:
            self.marks[name] = round(time.time() - PROCESS_START, 4)
