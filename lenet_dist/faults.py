"""Fault injection for crash tests: LENET_DIST_FAULT="<point>:<n>" makes the process SIGKILL
itself the n-th time it reaches <point> (after-step, during-save). A real SIGKILL at a chosen
moment, so crash-resume tests are deterministic. Unset (always, outside tests): does nothing."""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def crash_point(point: str) -> None:
    spec = os.environ.get("LENET_DIST_FAULT")
    if not spec:
        return
    want, _, n = spec.partition(":")
    if want != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
