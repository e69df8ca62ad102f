"""Errors a user can cause. The CLI turns each into one line on stderr and its exit code.

Exit codes (documented in the README):
    0   success
    1   an unexpected failure (a bug: the traceback is kept)
    2   bad usage or configuration
    3   data missing, unreachable or corrupt
    4   bad checkpoint (missing, truncated, corrupt, wrong architecture)
    5   some inputs could not be predicted (the others were)
    75  training stopped cleanly on a signal and can be resumed (EX_TEMPFAIL)
"""

from __future__ import annotations

EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_CHECKPOINT = 4
EXIT_PARTIAL = 5
EXIT_RESUMABLE = 75


class UserError(Exception):
    """Something the user can fix; never a bug."""

    exit_code = 1


class ConfigError(UserError):
    exit_code = EXIT_CONFIG


class DataError(UserError):
    exit_code = EXIT_DATA


class CheckpointError(UserError):
    exit_code = EXIT_CHECKPOINT
