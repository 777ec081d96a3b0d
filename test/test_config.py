"""Tests of the typed node configuration: its one declaration, the files generated from it,
parameter validation, and the old parameter names."""
from __future__ import annotations

import dataclasses
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mono_depth_ros import config_files
from mono_depth_ros.config import (
    PARAMETERS,
    RENAMED,
    DepthNodeConfig,
    apply_parameters,
    load_node_config,
    parameter_error,
)

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "config" / "depth.yaml"
FIELDS = [f.name for f in dataclasses.fields(DepthNodeConfig)]


def yaml_section() -> dict:
    return yaml.safe_load(YAML_PATH.read_text())["/**"]["ros__parameters"]


# --------------------------------------------------------------------------- the declaration


def test_each_field_is_declared_once_with_its_spec():
    defaults = DepthNodeConfig()
    assert list(PARAMETERS) == FIELDS
    for name, spec in PARAMETERS.items():
        assert spec.name == name and spec.default == getattr(defaults, name), name
        assert type(spec.default) is spec.kind and spec.kind in (bool, int, float, str), name
        assert len(spec.description) > 10, name
    # Parameters that rebuild the model need a restart; the rest can change at run time.
    assert {name for name, spec in PARAMETERS.items() if spec.read_only} == {
        "model_path", "device", "half_precision", "image_transport", "publish_odometry", "odom_frame", "odometry_child_frame", "publish_tf"}
    assert RENAMED == {"min_depth": "output_min_depth", "max_depth": "output_max_depth"}


def test_the_declared_ranges():
    assert PARAMETERS["points_stride"].range_text() == "[1, 64]"
    assert PARAMETERS["points_stride"].ros_range() == (1, 64)
    assert PARAMETERS["odometry_still_threshold"].range_text() == "[0, 1)"
    assert PARAMETERS["output_min_depth"].range_text() == "> 0, < `output_max_depth`"
    assert PARAMETERS["output_max_depth"].range_text() == "> `output_min_depth`"
    assert PARAMETERS["depth_scale"].range_text() == "> 0" and PARAMETERS["depth_scale"].ros_range() is None
    assert PARAMETERS["max_image_pixels"].range_text() == ">= 1"
    assert PARAMETERS["model_path"].range_text() == ""


@pytest.mark.parametrize("name", [n for n, spec in PARAMETERS.items() if spec.minimum is not None])
def test_each_declared_bound_is_enforced(name):
    spec = PARAMETERS[name]
    step = 1 if spec.kind is int else 1e-6
    edge = spec.kind(spec.minimum)
    assert (parameter_error(name, edge) is None) != spec.min_exclusive, name
    assert parameter_error(name, spec.kind(spec.minimum - step)) is not None, name
    if spec.maximum is not None:
        assert (parameter_error(name, spec.kind(spec.maximum)) is None) != spec.max_exclusive, name
        assert parameter_error(name, spec.kind(spec.maximum + step)) is not None, name


# --------------------------------------------------------------------------- the generated files


def test_generated_files_are_current():
    stale = config_files.stale_files(ROOT)
    assert not stale, (
        f"{[path.relative_to(ROOT).as_posix() for path in stale]} differ from the declaration in "
        f"mono_depth_ros/config.py: run `python -m mono_depth_ros.config --write`")


def test_defaults_equal_the_yaml_file():
    loaded = load_node_config(YAML_PATH)
    assert loaded == DepthNodeConfig()
    for name in FIELDS:
        assert type(getattr(loaded, name)) is type(getattr(DepthNodeConfig(), name)), name
    section = yaml_section()
    assert list(section) == FIELDS
    assert all(section[name] == getattr(DepthNodeConfig(), name) for name in FIELDS)


def test_yaml_carries_each_description_as_a_comment():
    text = YAML_PATH.read_text()
    comments = " ".join(line.strip().lstrip("# ") for line in text.splitlines() if line.strip().startswith("#"))
    for spec in PARAMETERS.values():
        assert config_files.plain_text(spec.description) in comments, spec.name


def test_check_and_write_find_and_fix_stale_files(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "config" / "depth.yaml").write_text("/**:\n  ros__parameters:\n    min_depth: 0.1\n")
    (tmp_path / "docs" / "node.md").write_text(
        f"# Node\n## Parameters\nBefore.\n{config_files.BEGIN}\nold table\n{config_files.END}\nAfter.\n")
    assert config_files.main(["--check", "--root", str(tmp_path)]) == 1
    assert config_files.main(["--write", "--root", str(tmp_path)]) == 0
    assert config_files.main(["--check", "--root", str(tmp_path)]) == 0
    doc = (tmp_path / "docs" / "node.md").read_text()
    assert doc.startswith("# Node\n## Parameters\nBefore.\n") and doc.endswith(f"{config_files.END}\nAfter.\n")
    assert "old table" not in doc and "| `output_min_depth` | float | `0.1` |" in doc
    assert (tmp_path / "config" / "depth.yaml").read_text() == config_files.render_yaml()


def test_a_document_without_markers_is_an_error(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "node.md").write_text("## Parameters\n| parameter |\n")
    assert config_files.main(["--check", "--root", str(tmp_path)]) == 2


def test_the_generator_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "mono_depth_ros.config", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_yaml_values_read_back_with_their_types():
    for value in (0.1, 80.0, 1e-05, 2.5e20, 0, 16_000_000, True, False, "", "odom", "cuda:1"):
        assert yaml.safe_load(f"x: {config_files.yaml_value(value)}")["x"] == value
        assert type(yaml.safe_load(f"x: {config_files.yaml_value(value)}")["x"]) is type(value)


# --------------------------------------------------------------------------- validation


def test_apply_parameters_accepts_valid_changes_and_converts_int_to_float():
    original = DepthNodeConfig()
    updated = apply_parameters(
        original,
        {"output_max_depth": 40, "depth_scale": 2, "points_stride": 4, "publish_points": False, "device": "cuda:1",
         "model_path": "/models/m.safetensors"},
    )
    assert updated.output_max_depth == 40.0 and type(updated.output_max_depth) is float
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
        ({"output_min_depth": 80.0},
         r"parameter 'output_min_depth' \(80.0\) must be smaller than output_max_depth \(80.0\)"),
        ({"output_max_depth": 0.05},
         r"parameter 'output_max_depth' \(0.05\) must be larger than output_min_depth \(0.1\)"),
        ({"output_min_depth": 0.0}, "parameter 'output_min_depth' must be > 0, got 0.0"),
        ({"output_min_depth": -1}, "parameter 'output_min_depth' must be > 0, got -1.0"),
        ({"depth_scale": -2.0}, "parameter 'depth_scale' must be > 0, got -2.0"),
        ({"depth_scale": 0}, "parameter 'depth_scale' must be > 0, got 0.0"),
        ({"points_stride": 0}, "parameter 'points_stride' must be between 1 and 64, got 0"),
        ({"points_stride": 65}, "parameter 'points_stride' must be between 1 and 64, got 65"),
        ({"max_image_pixels": 0}, "parameter 'max_image_pixels' must be >= 1, got 0"),
        ({"odometry_max_gap": 0.0}, "parameter 'odometry_max_gap' must be > 0, got 0.0"),
        ({"odometry_still_threshold": 1.0}, r"parameter 'odometry_still_threshold' must be in \[0, 1\), got 1.0"),
        ({"odometry_drift": -0.1}, "parameter 'odometry_drift' must be >= 0, got -0.1"),
        ({"odom_frame": " "}, "parameter 'odom_frame' must not be empty"),
        ({"device": "gpu"}, r"parameter 'device' is 'gpu': use 'cuda', 'cuda:N' or 'cpu'"),
        ({"device": "cuda:"}, "parameter 'device' is 'cuda:'"),
        ({"device": "cuda:x"}, "parameter 'device' is 'cuda:x'"),
        ({"device": 0}, "parameter 'device' must be a string, got 0"),
        ({"output_min_depth": "0.5"}, "parameter 'output_min_depth' must be a number, got '0.5'"),
        ({"output_max_depth": True}, "parameter 'output_max_depth' must be a number, got True"),
        ({"output_max_depth": math.inf}, "parameter 'output_max_depth' must be finite, got inf"),
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
        apply_parameters(DepthNodeConfig(), {"output_max_depth": 30.0, "points_stride": 0})


@pytest.mark.parametrize(
    "values",
    [{"output_min_depth": 100.0, "output_max_depth": 200.0}, {"output_max_depth": 200.0, "output_min_depth": 100.0}],
)
def test_min_and_max_can_move_together(values):
    updated = apply_parameters(DepthNodeConfig(), values)
    assert (updated.output_min_depth, updated.output_max_depth) == (100.0, 200.0)
    # Each alone would cross the other's current value.
    with pytest.raises(ValueError, match="output_min_depth"):
        apply_parameters(DepthNodeConfig(), {"output_min_depth": 100.0})
    with pytest.raises(ValueError, match="output_max_depth"):
        apply_parameters(DepthNodeConfig(output_min_depth=100.0, output_max_depth=200.0), {"output_max_depth": 50.0})


def test_min_and_max_moving_together_must_still_be_ordered():
    with pytest.raises(ValueError, match=r"output_min_depth' \(5.0\) must be smaller than output_max_depth \(2.0\)"):
        apply_parameters(DepthNodeConfig(), {"output_min_depth": 5.0, "output_max_depth": 2.0})


def test_parameter_error_uses_the_given_config_for_cross_checks():
    config = DepthNodeConfig(output_min_depth=1.0, output_max_depth=10.0)
    assert parameter_error("output_min_depth", 5.0, config) is None
    assert "smaller than output_max_depth (10.0)" in parameter_error("output_min_depth", 20.0, config)
    assert "larger than output_min_depth (1.0)" in parameter_error("output_max_depth", 0.5, config)


def test_load_node_config_merges_wildcard_and_node_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    output_max_depth: 30\n    device: cpu\n"
        "depth_node:\n  ros__parameters:\n    points_stride: 2\n"
        "/depth_node:\n  ros__parameters:\n    device: cuda:0\n"
        "other_node:\n  ros__parameters:\n    points_stride: 9\n"
    )
    config = load_node_config(path)
    assert config == DepthNodeConfig(output_max_depth=30.0, device="cuda:0", points_stride=2)
    assert load_node_config(path, node_name="other_node").points_stride == 9


def test_load_node_config_refuses_bad_values_and_accepts_empty_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    points_stride: 0\n")
    with pytest.raises(ValueError, match="points_stride"):
        load_node_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_node_config(empty) == DepthNodeConfig()


# --------------------------------------------------------------------------- old parameter names


def test_old_names_set_the_new_parameters():
    updated = apply_parameters(DepthNodeConfig(), {"min_depth": 0.5, "max_depth": 30})
    assert (updated.output_min_depth, updated.output_max_depth) == (0.5, 30.0)
    assert type(updated.output_max_depth) is float
    assert parameter_error("min_depth", 0.5) is None


def test_old_names_in_errors_name_what_the_user_wrote():
    with pytest.raises(ValueError, match=r"parameter 'min_depth' must be a number, got 'near' "
                                         r"\('min_depth' is the old name of 'output_min_depth'\)"):
        apply_parameters(DepthNodeConfig(), {"min_depth": "near"})
    with pytest.raises(ValueError, match=r"parameter 'max_depth' \(0.05\) must be larger than output_min_depth"):
        apply_parameters(DepthNodeConfig(), {"max_depth": 0.05})


@pytest.mark.parametrize("defaults_yield", [False, True])
def test_old_and_new_name_with_different_values_is_an_error(defaults_yield):
    with pytest.raises(ValueError, match=r"'max_depth' \(30.0\) and 'output_max_depth' \(40.0\) are both set.*"
                                         r"set only 'output_max_depth'"):
        apply_parameters(DepthNodeConfig(), {"max_depth": 30.0, "output_max_depth": 40.0},
                         defaults_yield=defaults_yield)
    # The same value under both names is no conflict.
    both = apply_parameters(DepthNodeConfig(), {"max_depth": 30, "output_max_depth": 30.0})
    assert both.output_max_depth == 30.0


def test_a_new_name_at_its_default_yields_to_the_old_name_at_startup():
    values = {"output_max_depth": 80.0, "max_depth": 30.0}  # config/depth.yaml + a user's old-name override
    assert apply_parameters(DepthNodeConfig(), values, defaults_yield=True).output_max_depth == 30.0
    with pytest.raises(ValueError, match="are both set"):  # a run-time change gives both on purpose
        apply_parameters(DepthNodeConfig(), values)


def test_params_file_with_old_names_loads_with_one_warning_each(tmp_path, caplog):
    path = tmp_path / "old.yaml"
    path.write_text("/**:\n  ros__parameters:\n    min_depth: 0.5\n    max_depth: 30.0\n    depth_scale: 2.0\n")
    notes = []
    config = load_node_config(path, warn=notes.append)
    assert (config.output_min_depth, config.output_max_depth, config.depth_scale) == (0.5, 30.0, 2.0)
    assert len(notes) == 2
    assert "'min_depth' is deprecated: it is now 'output_min_depth'" in notes[0]
    assert "'max_depth' is deprecated: it is now 'output_max_depth'" in notes[1]
    with caplog.at_level(logging.WARNING, logger="mono_depth_ros.config"):
        load_node_config(path)
    assert sum("is deprecated" in record.getMessage() for record in caplog.records) == 2
    # The shipped file (new names at their defaults) plus an old name: the old name wins.
    merged = tmp_path / "merged.yaml"
    merged.write_text(YAML_PATH.read_text() + "depth_node:\n  ros__parameters:\n    max_depth: 25.0\n")
    assert load_node_config(merged, warn=notes.append).output_max_depth == 25.0
    conflict = tmp_path / "conflict.yaml"
    conflict.write_text("/**:\n  ros__parameters:\n    max_depth: 30.0\n    output_max_depth: 40.0\n")
    with pytest.raises(ValueError, match="set only 'output_max_depth'"):
        load_node_config(conflict, warn=notes.append)


# --------------------------------------------------------------------------- training config: model.encoder


def test_training_config_encoder_choices_are_checked():
    from mono_depth_ros_training.config import ConfigError, TrainConfig, apply_overrides

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

    from mono_depth_ros_training.config import TrainConfig, load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "train_monodepth2.yaml")
    assert (config.model.encoder, config.model.num_layers, config.model.initial_depth) == ("resnet", 18, 0.0)
    assert (config.optim.lr, config.optim.schedule, config.optim.scheduler_step) == (1e-4, "step", 15)
    assert (config.loss.odometry_distance, config.loss.velocity_weight) == (False, 0.0)
    default = TrainConfig()
    assert (default.model.encoder, default.model.initial_depth, default.optim.schedule) == (
        "efficientnet_lite0", None, "onecycle")


def test_initial_depth_takes_null_zero_or_a_depth_inside_the_range():
    from mono_depth_ros_training.config import ConfigError, TrainConfig, apply_overrides

    assert apply_overrides(TrainConfig(), ["model.initial_depth=null"]).model.initial_depth is None
    assert apply_overrides(TrainConfig(), ["model.initial_depth=0"]).model.initial_depth == 0.0
    assert apply_overrides(TrainConfig(), ["model.initial_depth=12"]).model.initial_depth == 12.0
    with pytest.raises(ConfigError, match="model.initial_depth is 0.05; null"):
        apply_overrides(TrainConfig(), ["model.initial_depth=0.05"])


# --------------------------------------------------------------------------- training config: the evaluation range


def test_the_evaluation_range_has_its_own_names():
    from mono_depth_ros_training.config import ConfigError, TrainConfig, apply_overrides

    config = apply_overrides(TrainConfig(), ["val.min_gt_depth=0.5", "val.max_gt_depth=50"])
    assert (config.val.min_gt_depth, config.val.max_gt_depth) == (0.5, 50.0)
    assert (config.model.min_depth, config.model.max_depth) == (0.1, 100.0)  # the network's range is another
    with pytest.raises(ConfigError, match=r"val depth range \[5.0, 1.0\]"):
        apply_overrides(TrainConfig(), ["val.min_gt_depth=5", "val.max_gt_depth=1"])


def test_old_evaluation_range_keys_still_work_with_a_warning(tmp_path):
    from mono_depth_ros_training.config import ConfigError, TrainConfig, apply_overrides, config_from_dict, load_config

    with pytest.warns(FutureWarning, match=r"'val.max_depth' is deprecated: it is now 'val.max_gt_depth'"):
        assert apply_overrides(TrainConfig(), ["val.max_depth=40"]).val.max_gt_depth == 40.0
    path = tmp_path / "old.yaml"
    path.write_text("val:\n  min_depth: 0.01\n  max_depth: 60\n")
    with pytest.warns(FutureWarning) as caught:
        config = load_config(path)
    assert (config.val.min_gt_depth, config.val.max_gt_depth) == (0.01, 60.0)
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["val.max_depth", "val.min_depth"]
    # Both names with different values: an error that says which to keep.
    with pytest.raises(ConfigError, match=r"val.max_depth is the old name of val.max_gt_depth\): set only val.max_gt_depth"):
        apply_overrides(TrainConfig(), ["val.max_depth=40", "val.max_gt_depth=50"])
    with pytest.raises(ConfigError, match="set only val.min_gt_depth"):
        config_from_dict({"val": {"min_depth": 0.01, "min_gt_depth": 0.02}})
    with pytest.warns(FutureWarning):  # the same value under both names is no conflict
        assert apply_overrides(TrainConfig(), ["val.max_depth=40", "val.max_gt_depth=40.0"]).val.max_gt_depth == 40.0


def test_a_checkpoints_saved_config_with_old_keys_loads_quietly():
    import warnings

    from mono_depth_ros_training.config import TrainConfig, config_from_dict, config_to_dict

    saved = config_to_dict(TrainConfig())
    saved["val"] = {"enabled": True, "min_depth": 0.001, "max_depth": 70.0, "max_batches": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config_from_dict(saved, warn_renamed=False).val.max_gt_depth == 70.0


def test_image_transport_takes_raw_or_compressed():
    assert DepthNodeConfig(model_path="m").image_transport == "raw"
    spec = PARAMETERS["image_transport"]
    assert spec.check("compressed") is None and spec.check("raw") is None
    assert "use raw" in spec.check("theora") and "image/compressed" in spec.check("theora")
