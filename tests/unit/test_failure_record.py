"""What a launch's first attempt leaves for its restarts (training/failure_record.py)."""

from __future__ import annotations

import os

from lenet_dist.training import failure_record


def test_a_recorded_failure_is_found_by_the_same_launch_only_and_forgotten_by_a_new_one():
    key, other = f"test-{os.getpid()}-a", f"test-{os.getpid()}-b"
    try:
        assert failure_record.recorded(key) is None
        failure_record.record(key, 6, "training diverged at step 1")
        found = failure_record.recorded(key)
        assert found is not None and found.exit_code == 6 and "training diverged at step 1" in str(found)
        assert failure_record.recorded(other) is None
        failure_record.forget(key)
        assert failure_record.recorded(key) is None
    finally:
        failure_record.forget(key)


def test_a_launch_key_cannot_name_a_path_outside_the_folder():
    assert failure_record.marker("../../etc/x").parent == failure_record.marker("k").parent
