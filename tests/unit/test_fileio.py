"""Atomic writes: readers see the old file or the new one; a failed write leaves nothing behind."""

import os
import socket
from pathlib import Path

import pytest

from lenet_dist.fileio import TMP_MARK, atomic_dir, atomic_file, temporary_sibling, write_json_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("disk gone")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_directory_is_replaced_whole(tmp_path: Path):
    dest = tmp_path / "model"
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "a").write_text("new")
        raise RuntimeError
    assert (dest / "a").read_text() == "old"
    with atomic_dir(dest) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    assert not [p for p in tmp_path.iterdir() if TMP_MARK in p.name or ".old-" in p.name]


def test_a_temporary_name_carries_the_host_as_well_as_the_pid(tmp_path: Path):
    """Hosts that share a file system reuse pids: two writers on two hosts must not share a temporary."""
    tmp = temporary_sibling(tmp_path / "summary.json")
    assert tmp.name == f".summary.json{TMP_MARK}{socket.gethostname()}-{os.getpid()}"
