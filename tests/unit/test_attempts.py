"""When restarting is sensible: the attempt log, in-process."""

from pathlib import Path

import pytest

from lenet_dist.records import AttemptEnd, AttemptFailure, AttemptStart
from lenet_dist.training import attempts


def _log(run_dir: Path, *history: tuple[int, str]) -> None:
    for n, (start, ended) in enumerate(history, 1):
        attempts.append(run_dir, AttemptStart(attempt=n, resumed_from_step=start))
        if ended != "crashed":
            attempts.append(run_dir, AttemptEnd(attempt=n, status=ended))


def test_a_crash_that_made_progress_is_restarted(tmp_path: Path):
    _log(tmp_path, (0, "crashed"), (10, "crashed"))
    assert attempts.begin(tmp_path, 20, max_restarts=3, launcher_restart=2) == 3


def test_the_second_crash_without_progress_gives_up(tmp_path: Path):
    _log(tmp_path, (0, "crashed"), (10, "crashed"))
    with pytest.raises(attempts.GaveUp, match="checkpoint at step 10"):
        attempts.begin(tmp_path, 10, max_restarts=3, launcher_restart=2)
    starts = [r for r in attempts.read(tmp_path) if isinstance(r, AttemptStart)]
    assert len(starts) == 2, "the refused one is not logged"


def test_too_many_crashes_in_a_row_give_up(tmp_path: Path):
    _log(tmp_path, (0, "crashed"), (10, "crashed"), (20, "crashed"), (30, "crashed"))
    with pytest.raises(attempts.GaveUp, match="max_restarts = 3"):
        attempts.begin(tmp_path, 40, max_restarts=3, launcher_restart=0)


def test_a_clean_stop_resets_the_count(tmp_path: Path):
    _log(tmp_path, (0, "crashed"), (10, "stopped"), (10, "crashed"))
    assert attempts.begin(tmp_path, 10, max_restarts=3, launcher_restart=0) == 4


def test_the_summary_says_how_each_attempt_ended(tmp_path: Path):
    _log(tmp_path, (0, "crashed"), (10, "completed"))
    attempts.append(tmp_path, AttemptFailure(attempt=1, rank=0, node="n1", step=12, cause="x"))
    got = attempts.summary(attempts.read(tmp_path))
    assert [(a.resumed_from_step, a.ended) for a in got] == [(0, "crashed"), (10, "completed")]
    assert got[0].failures[0].step == 12 and got[1].failures == []


def test_two_crashes_that_peers_saw_at_different_steps_are_bad_luck_not_a_bug(tmp_path: Path):
    _log(tmp_path, (0, "crashed"), (10, "crashed"))
    for attempt, step in ((1, 12), (2, 14)):  # what the surviving rank recorded
        attempts.append(tmp_path, AttemptFailure(attempt=attempt, rank=0, node="n1", step=step,
                                                  cause="a peer rank died"))
    assert attempts.begin(tmp_path, 10, max_restarts=3, launcher_restart=2) == 3


def test_two_crashes_that_peers_saw_at_the_same_step_give_up_naming_it(tmp_path: Path):
    _log(tmp_path, (10, "crashed"), (10, "crashed"))
    for attempt in (1, 2):
        attempts.append(tmp_path, AttemptFailure(attempt=attempt, rank=0, node="n1", step=13,
                                                  cause="a peer rank died"))
    with pytest.raises(attempts.GaveUp, match="at step 13 both times"):
        attempts.begin(tmp_path, 10, max_restarts=3, launcher_restart=2)


def test_every_line_reads_back_as_the_record_that_wrote_it(tmp_path: Path):
    written = [AttemptStart(attempt=1, resumed_from_step=0, host="h", pid=7, slurm_job_id="42"),
               AttemptFailure(attempt=1, rank=1, node="n2", step=3, cause="peer"),
               AttemptEnd(attempt=1, status="failed")]
    for record in written:
        attempts.append(tmp_path, record)
    assert attempts.read(tmp_path) == written


def test_each_rank_writes_its_own_file_and_reading_merges_them(tmp_path: Path):
    """Appends from several hosts to one NFS file are not atomic: one writer per file."""
    attempts.append(tmp_path, AttemptStart(attempt=1, resumed_from_step=0))
    attempts.append(tmp_path, AttemptFailure(attempt=1, rank=0, node="n1", step=7, cause="peer"), rank=0)
    for rank in (1, 13):
        attempts.append(tmp_path, AttemptFailure(attempt=1, rank=rank, node=f"n{rank}", step=7, cause="peer"),
                        rank=rank)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempts.jsonl", "attempts.rank1.jsonl",
                                                          "attempts.rank13.jsonl"]
    [summary] = attempts.summary(attempts.read(tmp_path))
    assert sorted(f.rank for f in summary.failures) == [0, 1, 13]
