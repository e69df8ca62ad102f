"""The run directory has one writer: the claim, in-process."""

from pathlib import Path

import pytest

from lenet_dist.config import load_config
from lenet_dist.errors import ConfigError
from lenet_dist.training.distributed import Processes
from lenet_dist.training.run_dir import claimed_run_dir

ALONE = Processes(acc=None, rank=0, world=1, is_main=True, device=None, rank_nodes=["here"])


def test_a_second_writer_is_refused_and_named(tmp_path: Path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "run_name=r"])
    with claimed_run_dir(cfg, ALONE, None) as run_dir:
        assert run_dir == tmp_path / "r"
        with pytest.raises(ConfigError, match=r"is being written by pid \d+ on "), \
                claimed_run_dir(cfg, ALONE, "auto"):
            pass
    with claimed_run_dir(cfg, ALONE, "auto"):  # released at the end of the first
        pass


def test_a_started_run_needs_resume(tmp_path: Path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "run_name=r"])
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already holds a run"), claimed_run_dir(cfg, ALONE, None):
        pass
    with claimed_run_dir(cfg, ALONE, "auto") as run_dir:
        assert run_dir.is_dir()
