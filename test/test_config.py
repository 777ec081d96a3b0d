"""Tests of the typed node configuration, its YAML defaults and parameter validation."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from mono_depth_ros.config import (
    NODE_PARAMETER_DOCS,
    DepthNodeConfig,
    apply_parameters,
    load_node_config,
    parameter_error,
)

YAML_PATH = Path(__file__).resolve().parents[1] / "config" / "depth.yaml"
FIELDS = [f.name for f in dataclasses.fields(DepthNodeConfig)]


def yaml_section() -> dict:
    return yaml.safe_load(YAML_PATH.read_text())["/**"]["ros__parameters"]


def test_defaults_equal_the_yaml_file():
    loaded = load_node_config(YAML_PATH)
    assert loaded == DepthNodeConfig()
    for name in FIELDS:
        assert type(getattr(loaded, name)) is type(getattr(DepthNodeConfig(), name)), name


def test_every_field_is_documented_and_in_the_yaml():
    section = yaml_section()
    assert list(NODE_PARAMETER_DOCS) == FIELDS
    assert sorted(section) == sorted(FIELDS)
    for name in FIELDS:
        read_only, description = NODE_PARAMETER_DOCS[name]
        assert isinstance(read_only, bool) and len(description) > 10, name
        assert section[name] == getattr(DepthNodeConfig(), name), name
    # Parameters that rebuild the model need a restart; the rest can change at run time.
    assert {n for n, (ro, _) in NODE_PARAMETER_DOCS.items() if ro} == {
        "model_path", "device", "half_precision", "publish_odometry", "odom_frame", "odometry_child_frame", "publish_tf"}


def test_apply_parameters_accepts_valid_changes_and_converts_int_to_float():
    original = DepthNodeConfig()
    updated = apply_parameters(
        original,
        {"max_depth": 40, "depth_scale": 2, "points_stride": 4, "publish_points": False, "device": "cuda:1",
         "model_path": "/models/m.safetensors"},
    )
    assert updated.max_depth == 40.0 and type(updated.max_depth) is float
    assert updated.depth_scale == 2.0 and type(updated.depth_scale) is float
    assert (updated.points_stride, updated.publish_points, updated.device) == (4, False, "cuda:1")
    assert updated.model_path == "/models/m.safetensors"
    assert original == DepthNodeConfig()  # frozen: the original is untouched
    assert apply_parameters(original, {}) == original


@pytest.mark.parametrize("stride", [1, 64])
def test_stride_limits_are_inclusive(stride):
    assert apply_parameters(DepthNodeConfig(), {"points_stride": stride}).points_stride == stride


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12", "CPU", " cuda:1 "])
def test_valid_devices(device):
    assert parameter_error("device", device) is None
    assert apply_parameters(DepthNodeConfig(), {"device": device}).device == device


@pytest.mark.parametrize(
    "values, message",
    [
        ({"min_depth": 80.0}, r"parameter 'min_depth' \(80.0\) must be smaller than max_depth \(80.0\)"),
        ({"max_depth": 0.05}, r"parameter 'max_depth' \(0.05\) must be larger than min_depth \(0.1\)"),
        ({"min_depth": 0.0}, "parameter 'min_depth' must be > 0, got 0.0"),
        ({"min_depth": -1}, "parameter 'min_depth' must be > 0, got -1.0"),
        ({"depth_scale": -2.0}, "parameter 'depth_scale' must be > 0, got -2.0"),
        ({"depth_scale": 0}, "parameter 'depth_scale' must be > 0, got 0.0"),
        ({"points_stride": 0}, "parameter 'points_stride' must be between 1 and 64, got 0"),
        ({"points_stride": 65}, "parameter 'points_stride' must be between 1 and 64, got 65"),
        ({"device": "gpu"}, r"parameter 'device' is 'gpu': use 'cuda', 'cuda:N' or 'cpu'"),
        ({"device": "cuda:"}, "parameter 'device' is 'cuda:'"),
        ({"device": "cuda:x"}, "parameter 'device' is 'cuda:x'"),
        ({"device": 0}, "parameter 'device' must be a string, got 0"),
        ({"min_depth": "0.5"}, "parameter 'min_depth' must be a number, got '0.5'"),
        ({"max_depth": True}, "parameter 'max_depth' must be a number, got True"),
        ({"max_depth": math.inf}, "parameter 'max_depth' must be finite, got inf"),
        ({"depth_scale": math.nan}, "parameter 'depth_scale' must be finite, got nan"),
        ({"points_stride": 2.0}, "parameter 'points_stride' must be an integer, got 2.0"),
        ({"points_stride": True}, "parameter 'points_stride' must be an integer, got True"),
        ({"publish_points": 1}, "parameter 'publish_points' must be true or false, got 1"),
        ({"half_precision": "false"}, "parameter 'half_precision' must be true or false, got 'false'"),
        ({"model_path": None}, "parameter 'model_path' must be a string, got None"),
        ({"colour": 1}, "unknown parameter 'colour'"),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(values, message):
    with pytest.raises(ValueError, match=message):
        apply_parameters(DepthNodeConfig(), values)
    (name, value), = values.items()
    assert parameter_error(name, value) is not None


def test_one_bad_value_refuses_the_whole_update():
    with pytest.raises(ValueError, match="points_stride"):
        apply_parameters(DepthNodeConfig(), {"max_depth": 30.0, "points_stride": 0})


@pytest.mark.parametrize(
    "values",
    [{"min_depth": 100.0, "max_depth": 200.0}, {"max_depth": 200.0, "min_depth": 100.0}],
)
def test_min_and_max_can_move_together(values):
    updated = apply_parameters(DepthNodeConfig(), values)
    assert (updated.min_depth, updated.max_depth) == (100.0, 200.0)
    # Each alone would cross the other's current value.
    with pytest.raises(ValueError, match="min_depth"):
        apply_parameters(DepthNodeConfig(), {"min_depth": 100.0})
    with pytest.raises(ValueError, match="max_depth"):
        apply_parameters(DepthNodeConfig(min_depth=100.0, max_depth=200.0), {"max_depth": 50.0})


def test_min_and_max_moving_together_must_still_be_ordered():
    with pytest.raises(ValueError, match=r"min_depth' \(5.0\) must be smaller than max_depth \(2.0\)"):
        apply_parameters(DepthNodeConfig(), {"min_depth": 5.0, "max_depth": 2.0})


def test_parameter_error_uses_the_given_config_for_cross_checks():
    config = DepthNodeConfig(min_depth=1.0, max_depth=10.0)
    assert parameter_error("min_depth", 5.0, config) is None
    assert "smaller than max_depth (10.0)" in parameter_error("min_depth", 20.0, config)
    assert "larger than min_depth (1.0)" in parameter_error("max_depth", 0.5, config)


def test_load_node_config_merges_wildcard_and_node_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    max_depth: 30\n    device: cpu\n"
        "depth_node:\n  ros__parameters:\n    points_stride: 2\n"
        "/depth_node:\n  ros__parameters:\n    device: cuda:0\n"
        "other_node:\n  ros__parameters:\n    points_stride: 9\n"
    )
    config = load_node_config(path)
    assert config == DepthNodeConfig(max_depth=30.0, device="cuda:0", points_stride=2)
    assert load_node_config(path, node_name="other_node").points_stride == 9


def test_load_node_config_refuses_bad_values_and_accepts_empty_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    points_stride: 0\n")
    with pytest.raises(ValueError, match="points_stride"):
        load_node_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_node_config(empty) == DepthNodeConfig()


# --------------------------------------------------------------------------- training config: model.encoder


def test_training_config_encoder_choices_are_checked():
    from training.config import ConfigError, TrainConfig, apply_overrides

    config = apply_overrides(TrainConfig(), ["model.encoder=efficientnet_lite0"])
    assert config.model.encoder == "efficientnet_lite0"
    # num_layers is the ResNet depth: not read for another encoder, checked for a ResNet.
    assert apply_overrides(config, ["model.num_layers=101"]).model.num_layers == 101
    with pytest.raises(ConfigError, match=r"model.num_layers is 101; choose one of \(18, 34, 50\)"):
        apply_overrides(TrainConfig(), ["model.encoder=resnet", "model.num_layers=101"])
    with pytest.raises(ConfigError, match="model.encoder is 'effnet'; choose one of resnet, efficientnet_lite0"):
        apply_overrides(TrainConfig(), ["model.encoder=effnet"])


def test_the_monodepth2_recipe_file_loads_and_restores_its_published_settings():
    from pathlib import Path

    from training.config import TrainConfig, load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "train_monodepth2.yaml")
    assert (config.model.encoder, config.model.num_layers, config.model.initial_depth) == ("resnet", 18, 0.0)
    assert (config.optim.lr, config.optim.schedule, config.optim.scheduler_step) == (1e-4, "step", 15)
    assert (config.loss.odometry_distance, config.loss.velocity_weight) == (False, 0.0)
    default = TrainConfig()
    assert (default.model.encoder, default.model.initial_depth, default.optim.schedule) == (
        "efficientnet_lite0", None, "onecycle")


def test_initial_depth_takes_null_zero_or_a_depth_inside_the_range():
    from training.config import ConfigError, TrainConfig, apply_overrides

    assert apply_overrides(TrainConfig(), ["model.initial_depth=null"]).model.initial_depth is None
    assert apply_overrides(TrainConfig(), ["model.initial_depth=0"]).model.initial_depth == 0.0
    assert apply_overrides(TrainConfig(), ["model.initial_depth=12"]).model.initial_depth == 12.0
    with pytest.raises(ConfigError, match="model.initial_depth is 0.05; null"):
        apply_overrides(TrainConfig(), ["model.initial_depth=0.05"])
