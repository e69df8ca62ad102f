from pathlib import Path

import pytest

from lenet_dist.config import Config, load_config
from lenet_dist.errors import ConfigError

from ..conftest import REPO
from .cli import invoke, one_error_line


def test_default_yaml_equals_builtin_defaults():
    assert load_config(REPO / "configs" / "default.yaml") == Config()


@pytest.mark.parametrize("name", ["fast.yaml", "debug.yaml"])
def test_shipped_configs_are_valid(name):
    load_config(REPO / "configs" / name)


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=0.01", "train.epochs=3", "data.train_subset=null", "augment.enabled=false"])
    assert cfg.optim.lr == 0.01 and cfg.train.epochs == 3 and cfg.data.train_subset is None
    assert cfg.augment.enabled is False
    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"  # not YAML's False


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'"),
        ("nosuch.key=1", "unknown config key 'nosuch'"),
        ("optim.lr=-1", "'optim.lr'"),
        ("train.batch_size=0", "'train.batch_size'"),
        ("train.epochs=abc", "'train.epochs'"),
        ("data.dataset=cifar", "'data.dataset'"),
        ("optim.lr", "KEY=VALUE"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [override])


def test_any_world_size_takes_the_batch_unless_a_micro_batch_would_be_empty():
    from lenet_dist.training.batching import for_world

    cfg = load_config(None, ["train.batch_size=100", "train.grad_accum_steps=3"])
    for world in (1, 3, 7, 12, 24, 33):
        assert for_world(cfg, world).train.batch_size == 100
    with pytest.raises(ConfigError, match=r"smaller than processes x train.grad_accum_steps \(34 x 3\)"):
        for_world(cfg, 34)


def test_a_per_process_batch_grows_with_the_processes_and_scales_the_lr_by_the_stated_rule():
    from lenet_dist.training.batching import for_world

    base = ["train.batch_size=128", "train.batch_size_per_process=32", "optim.lr=0.001"]
    adam = for_world(load_config(None, base), 16)
    assert adam.train.batch_size == 512 and adam.optim.lr == pytest.approx(0.002)  # sqrt(512 / 128) = 2
    sgd = for_world(load_config(None, [*base, "optim.lr_scaling=linear"]), 16)
    assert sgd.train.batch_size == 512 and sgd.optim.lr == pytest.approx(0.004)


def test_cli_config_errors_are_one_line_with_exit_2(tmp_path: Path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: [1\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  epochz: 3\n")
    for args, expected in [
        (["-c", bad_yaml], "not valid YAML"),
        (["-c", unknown], "unknown config key 'train.epochz'"),
        (["-c", tmp_path / "nope.yaml"], "config file not found"),
        (["--set", "optim.lr=-0.1"], "optim.lr"),
        (["--set", "data.dataset=svhn"], "data.dataset"),
    ]:
        result = invoke("train", *args, cwd=tmp_path)
        assert result.exit_code == 2
        assert expected in one_error_line(result)
    assert not (tmp_path / "runs").exists(), "nothing may be written before the config is valid"


def test_help_is_fast_because_torch_is_not_imported():
    import subprocess
    import sys

    code = "import sys; from lenet_dist.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("override", "named"), [
    ("output_dir=", "'output_dir': must not be empty"),
    ("data.data_dir=''", "'data.data_dir': must not be empty"),
    ("train.seed=99999999999999999999999", "'train.seed'"),
    ("checkpoint.stop_signals=[SIGKILL]", "'checkpoint.stop_signals.0'"),
])
def test_values_that_would_fail_later_are_refused_up_front(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, [override])


def test_sighup_checkpoints_by_default():
    assert "SIGHUP" in Config().checkpoint.stop_signals
