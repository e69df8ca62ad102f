"""Stop requests. A signal handler only sets a flag; the training loop acts on it at the next
step boundary, after all ranks agree, so no rank is left waiting in a collective.

A file named STOP in the run directory is a stop request too: it reaches every rank on every
node whatever the launcher forwards (accelerate launch and torchrun do not forward SIGUSR1).
"""

from __future__ import annotations

import signal
from pathlib import Path


class StopRequest:
    def __init__(self, signal_names: list[str], stop_file: Path | None = None):
        self.signal_name: str | None = None
        self.stop_file = stop_file
        self._previous = {}
        for name in signal_names:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        if self.signal_name is None and self.stop_file is not None and self.stop_file.exists():
            self.signal_name = f"stop file {self.stop_file}"
        return self.signal_name is not None

    def consume_stop_file(self) -> None:
        """Remove the stop file once honoured, so the resumed run does not stop at once."""
        if self.stop_file is not None:
            self.stop_file.unlink(missing_ok=True)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class TrainingStopped(Exception):
    """Raised out of train() after a clean, resumable stop (exit code 75)."""

    def __init__(self, message: str, checkpoint: str):
        super().__init__(message)
        self.checkpoint = checkpoint
