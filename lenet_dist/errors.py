"""Errors a user can cause. The CLI turns each into one line on stderr and its exit code.

Exit codes (documented in the README):
    0   success
    1   an unexpected failure (a bug: the traceback is kept)
    2   bad usage or configuration; a run directory already being written by another process
    3   data missing, unreachable, unreadable or corrupt
    4   bad checkpoint (missing, truncated, corrupt, wrong architecture)
    5   some inputs could not be predicted (the others were)
    6   training diverged (non-finite loss): no model was saved from it
    70  not restarted again: crashes kept happening (at the same step, or max_restarts in a row)
    74  no space left to write a checkpoint or result (EX_IOERR); earlier checkpoints are intact
    75  training stopped cleanly on a signal and can be resumed (EX_TEMPFAIL)
    76  a peer rank died or hung: this attempt ended so that the job restarts from its checkpoint
"""

from __future__ import annotations

EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_CHECKPOINT = 4
EXIT_PARTIAL = 5
EXIT_DIVERGED = 6
EXIT_GAVE_UP = 70
EXIT_NO_SPACE = 74
EXIT_RESUMABLE = 75
EXIT_PEER_LOST = 76


class UserError(Exception):
    """Something the user can fix; never a bug."""

    exit_code = EXIT_CONFIG


class ConfigError(UserError):
    exit_code = EXIT_CONFIG


class DataError(UserError):
    exit_code = EXIT_DATA


class CheckpointError(UserError):
    exit_code = EXIT_CHECKPOINT


class UnreadableInputs(UserError):
    """Some of the user's images could not be read; nothing was done with the rest."""

    exit_code = EXIT_PARTIAL


class DivergedError(UserError):
    exit_code = EXIT_DIVERGED


class DiskFullError(UserError):
    exit_code = EXIT_NO_SPACE


class PeerLost(Exception):
    """Another rank died or stopped answering; not the user's doing, and not a bug here: the job
    restarts from its latest checkpoint (exit 76)."""
