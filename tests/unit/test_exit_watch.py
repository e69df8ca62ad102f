"""A finished worker waits for the workers beside it (same parent) to exit or to be waiting too, and
names those that are neither: real child processes of this test, one of them SIGSTOPped."""

import json
import os
import signal
import subprocess
import sys
import time

WAIT = "import json, sys; from lenet_dist.training.exit_watch import stuck_local_peers; " \
       "print(json.dumps(stuck_local_peers(float(sys.argv[1]))))"


def _worker(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "LOCAL_WORLD_SIZE": "2"}  # "lenet_dist" on the command line marks it as a worker
    return subprocess.Popen([sys.executable, "-c", code, *args, "lenet_dist"], env=env, stdout=subprocess.PIPE,
                            text=True)


def test_workers_that_all_finish_leave_together_at_once():
    a, b = _worker(WAIT, "20"), _worker(WAIT, "20")
    t0 = time.monotonic()
    assert [json.loads(p.communicate(timeout=30)[0]) for p in (a, b)] == [[], []]
    assert time.monotonic() - t0 < 10, "neither waited out the timeout for the other"


def test_a_worker_that_exits_is_not_waited_for():
    other = _worker("import time; time.sleep(0.5)")
    me = _worker(WAIT, "20")
    assert json.loads(me.communicate(timeout=30)[0]) == []
    other.wait(timeout=5)


def test_a_stopped_worker_beside_a_finished_one_is_named_after_the_timeout():
    stuck = _worker("import time; time.sleep(60)")
    try:
        time.sleep(0.3)
        os.kill(stuck.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        me = _worker(WAIT, "2")
        assert json.loads(me.communicate(timeout=30)[0]) == [stuck.pid]
        assert time.monotonic() - t0 >= 2
    finally:
        stuck.kill()
        stuck.wait()
