"""`train` command and configuration: argv in, model file out; end to end on a generated recording."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("rosbags", reason="rosbags is required to read and write bags")

from mono_depth_ros.geometry import disparity_to_depth
from mono_depth_ros.model_file import load_model_file
from mono_depth_ros.networks import DepthNet
from mono_depth_ros.simulation import write_synthetic_bag
from mono_depth_ros_training import cli
from mono_depth_ros_training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_to_dict,
    find_default_config_file,
    load_config,
)
from mono_depth_ros_training.metrics import image_depth_metrics
from mono_depth_ros_training.checkpoints import CHECKPOINT_NAME, load_checkpoint

REPO = Path(__file__).resolve().parent.parent


# Checkpoints are ~100-300 MB each: delete them after each test (fixture in conftest).
pytestmark = pytest.mark.usefixtures("drop_large_outputs")


# --------------------------------------------------------------------------- configuration


def test_train_yaml_mirrors_the_dataclass_defaults():
    assert yaml.safe_load((REPO / "config" / "train.yaml").read_text()) == config_to_dict(TrainConfig())
    assert load_config(REPO / "config" / "train.yaml") == TrainConfig()


def test_monodepth2_recipe_defaults():
    """Monodepth2's losses and shape by default; its optimiser recipe in config/train_monodepth2.yaml."""
    config = TrainConfig()
    assert (config.data.width, config.data.height) == (640, 192)
    assert (config.optim.batch_size, config.optim.epochs) == (12, 20)
    assert load_config(REPO / "config" / "train_monodepth2.yaml").optim.lr == 1e-4
    assert (config.optim.scheduler_step, config.optim.scheduler_gamma) == (15, 0.1)
    assert (config.loss.ssim_weight, config.loss.smoothness) == (0.85, 1e-3)
    assert config.model.scales == [0, 1, 2, 3] and (config.model.min_depth, config.model.max_depth) == (0.1, 100.0)


def test_default_config_file_is_found_in_the_source_tree():
    assert find_default_config_file() is not None


def test_overrides_are_parsed_and_type_checked():
    config = apply_overrides(
        TrainConfig(),
        ["optim.batch_size=4", "data.width=320", "optim.lr=2e-4", "model.scales=[0, 1]", "amp=false",
         "data.image_topic=/cam/image", "data.K=[500, 0, 320, 0, 500, 96, 0, 0, 1]", "data.baseline_m=0.12", "mode=stereo"],
    )
    assert config.optim.batch_size == 4 and config.data.width == 320
    assert config.optim.lr == pytest.approx(2e-4)  # YAML 1.1 would read '2e-4' as a string
    assert config.model.scales == [0, 1] and config.amp is False and config.mode == "stereo"
    assert config.data.image_topic == "/cam/image" and config.data.K[0] == 500 and config.data.baseline_m == 0.12
    assert apply_overrides(config, ["data.baseline_m=null"]).data.baseline_m is None
    assert apply_overrides(TrainConfig(), ["data.image_topic=123"]).data.image_topic == "123"  # strings verbatim
    assert isinstance(apply_overrides(TrainConfig(), ["model.max_depth=80"]).model.max_depth, float)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.bach_size=4", r"unknown config key 'optim.bach_size'. Did you mean 'optim.batch_size'\?"),
        ("optimizer.lr=1", r"unknown config key 'optimizer'. Did you mean 'optim'\?"),
        ("optim.batch_size=four", r"optim.batch_size must be an integer, got 'four'"),
        ("optim.batch_size=2.5", r"optim.batch_size must be an integer, got 2.5"),
        ("amp=yes please", r"amp must be true or false"),
        ("optim=3", r"'optim' is a section"),
        ("optim.lr.x=3", r"'optim.lr' is a value, not a section"),
        ("batch_size", r"not of the form section.key=value"),
        ("mode=stereoo", r"mode is 'stereoo'; choose one of mono, stereo, mono\+stereo"),
        ("data.width=100", r"data.width is 100; must be a multiple of 32"),
        ("model.min_depth=200", r"model depth range \[200.0, 100.0\]"),
        ("data.val_fraction=1.5", r"val_fraction = 1.5"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(TrainConfig(), [override])


def test_config_files_are_partial_and_checked(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("mode: stereo\noptim:\n  epochs: 3\n")
    config = load_config(path, ["optim.epochs=4"])
    assert config.mode == "stereo" and config.optim.epochs == 4 and config.optim.batch_size == 12
    path.write_text("optim:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: unknown config key 'optim.epoch'. Did you mean 'optim.epochs'"):
        load_config(path)
    path.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "corridor"
    return write_synthetic_bag(path, num_frames=30, width=128, height=64, return_recording=True)


def _argv(recording, out, cache, *extra):
    return ["--bag", str(recording.path), "--out", str(out), "model.pretrained=false", "data.num_workers=0",
            f"data.cache_dir={cache}", "log.image_every=0", *extra]


def _depth_errors(depth_net, recording, min_depth, max_depth):
    """Median-scaled abs_rel of depth_net over every frame of the recording."""
    depth_net.eval()
    images = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 for image in recording.images])
    with torch.no_grad():
        _, depth = disparity_to_depth(depth_net(images, output_scales=[0])[0], min_depth, max_depth)
    values = [
        image_depth_metrics(torch.from_numpy(gt), predicted[0], max_depth=80.0, median_scaling=True)["abs_rel"]
        for gt, predicted in zip(recording.depths, depth)
    ]
    return float(np.mean(values))


def test_end_to_end_training_lowers_the_loss_and_improves_depth(recording, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Stereo learns fastest: the known baseline fixes scale from the first step. A 1 m minimum
    # depth keeps the untrained network's disparities (~0.5) within a few pixels at 128x64.
    out = tmp_path / "run"
    argv = _argv(
        recording, out, tmp_path / "cache", "mode=stereo", "data.width=128", "data.height=64", "optim.batch_size=4",
        "optim.max_steps=30", "optim.epochs=100", "optim.lr=5e-4", "model.min_depth=1.0", "loss.lr_consistency=0",
        "model.encoder=resnet", "model.initial_depth=0", "optim.schedule=step", "log.log_every=1", "--seed", "0",
    )
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out / "model.safetensors")

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    losses = [event.value for event in events.Scalars("train/total")]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses

    loaded = load_model_file(lines[-1])
    # The label is the held-out scale check's verdict, recorded beside it.
    checks = loaded.metadata.training["scale_checks"]
    assert [check["source"] for check in checks] == ["stereo baseline"]
    assert loaded.metadata.metric is (checks[0]["passed"] and loaded.metadata.training["converged"])
    assert loaded.metadata.has_pose is False
    assert (loaded.metadata.input_width, loaded.metadata.input_height) == (128, 64)
    assert loaded.metadata.training["baseline_m"] == pytest.approx(0.2)
    torch.manual_seed(0)  # the trainer's initial weights: same seed, same construction
    before = _depth_errors(DepthNet(18), recording, 1.0, 100.0)
    after = _depth_errors(loaded.depth_net, recording, 1.0, 100.0)
    assert after < before - 0.05, (before, after)

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["mode"] == "stereo" and saved["seed"] == 0 and saved["optim"]["max_steps"] == 30


def test_resume_continues_the_step_count(recording, tmp_path, capsys):
    out = tmp_path / "run"
    common = ("mode=mono", "data.width=64", "data.height=64", "optim.batch_size=2", "data.num_workers=1")
    assert cli.main(_argv(recording, out, tmp_path / "cache", *common, "optim.max_steps=2")) == 0
    assert load_checkpoint(out / "checkpoints" / CHECKPOINT_NAME)["step"] == 2
    capsys.readouterr()
    # The run's saved config is the base; only the step limit changes.
    assert cli.main(["--bag", str(recording.path), "--out", str(out), "--resume", "optim.max_steps=3"]) == 0
    captured = capsys.readouterr()
    assert "resuming at step 2" in captured.out
    assert captured.out.strip().splitlines()[-1] == str(out / "model.safetensors")
    checkpoint = load_checkpoint(out / "checkpoints" / CHECKPOINT_NAME)
    assert checkpoint["step"] == 3 and checkpoint["config"]["data"]["width"] == 64
    assert load_model_file(out / "model.safetensors").metadata.training["steps"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["optim.bach_size=4"], "unknown config key 'optim.bach_size'"),
        (["--resume"], "has no checkpoint"),
        (["data.image_topic=/nope"], "/nope"),
    ],
)
def test_user_errors_exit_2_with_one_clear_message(recording, tmp_path, capsys, extra, message):
    assert cli.main(_argv(recording, tmp_path / "run", tmp_path / "cache", *extra)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("train: error: ") and message in captured.err
    assert "Traceback" not in captured.err


def test_missing_bag_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["--bag", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "model.pretrained=false"]) == 2
    assert "train: error: " in capsys.readouterr().err


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--bag", "--out", "--config", "--resume", "--seed", "section.key=value"):
        assert flag in text
