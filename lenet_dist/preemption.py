"""Stop requests from signals. A handler only sets a flag; the training loop acts on it at the
next step boundary, after all ranks agree, so no rank is left waiting in a collective."""

from __future__ import annotations

import signal


class StopRequest:
    def __init__(self, signal_names: list[str]):
        self.signal_name: str | None = None
        self._previous = {}
        for name in signal_names:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class TrainingStopped(Exception):
    """Raised out of train() after a clean, resumable stop (exit code 75)."""

    def __init__(self, message: str, checkpoint: str):
        super().__init__(message)
        self.checkpoint = checkpoint
