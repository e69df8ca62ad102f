"""A lock file that works on the file systems clusters share: the data dir's fetch lock and the run
directory's writer lock.

filelock's FileLock is the kernel's flock: released when the holder dies, however it dies. Some
file systems are mounted without flock (Lustre's default at some sites, old NFS): flock then fails
with ENOSYS or EOPNOTSUPP. There the lock falls back to filelock's SoftFileLock, a file created
with O_EXCL, which works on any file system but outlives a holder that was killed: the message
for a lock that is never freed names the file to remove.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from filelock import BaseFileLock, FileLock, SoftFileLock, Timeout

log = logging.getLogger("lenet_dist.locks")
NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)

__all__ = ["Timeout", "acquire"]


def acquire(path: Path, timeout: float) -> BaseFileLock:
    """The lock at `path`, held; filelock.Timeout when another holder keeps it past `timeout`."""
    try:
        if os.environ.get("LENET_DIST_FAULT") == "no-flock":  # fault injection: a file system without flock
            raise OSError(errno.ENOSYS, "flock not supported by this file system")
        lock = FileLock(str(path), timeout=timeout)
        lock.acquire()
        return lock
    except OSError as exc:
        if exc.errno not in NO_FLOCK:
            raise
    log.warning("%s: this file system has no flock; using a lock file instead (if a killed job leaves %s "
                "behind, remove it)", path.parent, soft_path(path))
    lock = SoftFileLock(str(soft_path(path)), timeout=timeout)
    lock.acquire()
    return lock


def soft_path(path: Path) -> Path:
    return path.with_name(path.name + ".soft")
