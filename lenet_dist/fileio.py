"""The one way files are written here: to a temporary sibling, fsynced, renamed into place, and the
directory fsynced. A crash or a concurrent reader sees the old file or the new one, never half of
one; a failed write leaves nothing behind. Also the one sha256 of a file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lenet_dist.errors import DiskFullError

TMP_MARK = ".tmp-"  # hidden temporaries are named .<name>.tmp-<host>-<pid>; readers skip them


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def disk_full_as_user_error(dest: Path, needed_bytes: int = 0) -> Iterator[None]:
    """A full disk or quota becomes one line naming the path and the space needed. torch.save
    reports it as a RuntimeError ("unexpected pos"), so a failure with too little room left counts too."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        try:
            free = shutil.disk_usage(Path(dest).parent).free
        except OSError:
            free = -1
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or 0 <= free < needed_bytes
        if not full:
            raise
        raise DiskFullError(f"no space left on the device writing {dest}: {free / 2**20:.1f} MiB free, about "
                            f"{max(needed_bytes, 1) / 2**20:.1f} MiB needed; free some space (or move --output-dir), "
                            "then resume with --resume auto") from None


def temporary_sibling(path: Path) -> Path:
    return path.parent / f".{path.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}"


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; when the block succeeds it becomes `path` in one rename."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; when the block succeeds it becomes `dest` in one rename
    (an existing `dest` is kept until the new one is in place)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{socket.gethostname()}-{os.getpid()}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
        fsync_path(dest.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    with disk_full_as_user_error(path, len(text)), atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
