"""Typed configuration of depth_node: each parameter declared once, in :class:`DepthNodeConfig`.

A field's default is the parameter's default; its :func:`parameter` metadata (a
:class:`ParameterSpec`) holds the description, the allowed range and whether the parameter is
read-only (needs a restart). Everything else follows from that one declaration: the validation
below, depth_node's ROS ParameterDescriptors (mono_depth_ros/ros/parameters.py) and two generated
files, ``config/depth.yaml`` and the parameter table of docs/node.md (see config_docs.py). After
changing a declaration run ``python -m mono_depth_ros.config --write``; ``--check`` (and a test)
fails while the generated files are stale.

Three depth ranges, three names:

* the network's range, ``min_depth`` / ``max_depth`` of the model file (ModelMetadata, a file
  format; the trainer's ``model.min_depth`` / ``model.max_depth``): what the network can express;
* the node's output clip, ``output_min_depth`` / ``output_max_depth`` here: published depth outside
  it becomes -inf / +inf (REP 118). Renamed from ``min_depth`` / ``max_depth``, which still work
  with a deprecation warning (:data:`RENAMED`);
* the evaluation range, ``val.min_gt_depth`` / ``val.max_gt_depth`` of the trainer.

Two scales multiply: the model file's ``depth_scale`` (metres per network unit, written by the
trainer or importer) and this node's ``depth_scale`` (the user's correction on top of it).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import yaml

from .devices import DEVICE_HINT, parse_device


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: what the dataclass field's metadata declares, plus (filled in from the
    field) its ``name``, ``kind`` (bool, int, float or str) and ``default``.

    Numbers must lie within ``minimum`` / ``maximum`` (exclusive where ``*_exclusive``) and, for a
    pair such as the output clip, below the parameter named ``below`` / above the one named
    ``above``. ``check`` returns a problem text for other rules (``allowed`` describes them in the
    docs). ``renamed_from`` is the parameter's old name, still accepted with a deprecation warning.
    """

    description: str
    read_only: bool = False
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    below: Optional[str] = None
    above: Optional[str] = None
    allowed: str = ""
    check: Optional[Callable[[Any], Optional[str]]] = None
    renamed_from: Optional[str] = None
    name: str = ""
    kind: type = object
    default: Any = None

    def range_text(self) -> str:
        """The allowed values for people, Markdown: '> 0', '[1, 64]', '> 0, < `output_max_depth`'."""
        parts = []
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{'(' if self.min_exclusive else '['}{_number(self.minimum)}, "
                         f"{_number(self.maximum)}{')' if self.max_exclusive else ']'}")
        elif self.minimum is not None:
            parts.append(f"{'>' if self.min_exclusive else '>='} {_number(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f"{'<' if self.max_exclusive else '<='} {_number(self.maximum)}")
        if self.above:
            parts.append(f"> `{self.above}`")
        if self.below:
            parts.append(f"< `{self.below}`")
        if self.allowed:
            parts.append(self.allowed)
        return ", ".join(parts)

    def ros_range(self) -> Optional[Tuple[float, float]]:
        """(from, to) for a ROS FloatingPointRange / IntegerRange: only for a range bounded on both
        sides (ROS ranges are inclusive; the node's own check still refuses an excluded end)."""
        if self.minimum is None or self.maximum is None or self.kind not in (int, float):
            return None
        return self.minimum, self.maximum


def parameter(default: Any, description: str, **spec: Any) -> Any:
    """A DepthNodeConfig field: ``default`` plus the :class:`ParameterSpec` keywords."""
    return field(default=default, metadata={"spec": ParameterSpec(description, **spec)})


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _device_problem(value: str) -> Optional[str]:
    try:
        parse_device(value, allow_auto=False)
    except ValueError:
        return f"is '{value}': {DEVICE_HINT}"
    return None


def _not_blank(value: str) -> Optional[str]:
    return None if value.strip() else "must not be empty"


IMAGE_TRANSPORTS = ("raw", "compressed")


def _transport_problem(value: str) -> Optional[str]:
    return None if value in IMAGE_TRANSPORTS else (
        f"is '{value}': use raw (sensor_msgs/Image on `image`) or compressed (sensor_msgs/CompressedImage, "
        "jpeg or png, on `image/compressed`)")


@dataclass(frozen=True)
class DepthNodeConfig:
    """depth_node's parameters, in the order the docs list them. Descriptions are Markdown; links
    are relative to docs/node.md, where the table is generated."""

    model_path: str = parameter(
        "", "Model file to run: `.safetensors` (PyTorch) or `.onnx` from `export_onnx` (onnxruntime). Required.",
        read_only=True)
    device: str = parameter(
        "cuda", "Where the network runs. Falls back to the CPU with one warning when CUDA is missing.",
        read_only=True, allowed="`cuda`, `cuda:N`, `cpu`", check=_device_problem)
    half_precision: bool = parameter(
        False, "Run the network in float16 on CUDA (ignored on the CPU). Not for `.onnx` models.", read_only=True)
    image_transport: str = parameter(
        "raw", "How images arrive, named as image_transport does: `raw` subscribes to `image` "
        "(sensor_msgs/Image), `compressed` to `image/compressed` (sensor_msgs/CompressedImage, jpeg or png), "
        "after `image` is remapped.", read_only=True, allowed="`raw`, `compressed`", check=_transport_problem)
    output_min_depth: float = parameter(
        0.1, "Metres. The node's output clip: closer depth is published as -inf in `depth` and NaN in `points` "
        "(REP 118). Not the network's own range (`min_depth` / `max_depth` in the model file, fixed by "
        "training), which the clip can only narrow.",
        minimum=0.0, min_exclusive=True, below="output_max_depth", renamed_from="min_depth")
    output_max_depth: float = parameter(
        80.0, "Metres. The node's output clip: farther depth (e.g. sky) is published as +inf in `depth` and NaN "
        "in `points` (REP 118).",
        above="output_min_depth", renamed_from="max_depth")
    depth_scale: float = parameter(
        1.0, "Your correction on top of the model file's own `depth_scale`: published depth = network depth x the "
        "file's `depth_scale` (metres per network unit, written by the trainer or `import_monodepth2`) x this. "
        "1.0 for metric models; for non-metric ones, the factor that makes depth metres on your robot (see "
        "[Scale](#scale)). Scales the odometry's translation too.",
        minimum=0.0, min_exclusive=True)
    publish_points: bool = parameter(True, "Publish the `points` cloud.")
    points_stride: int = parameter(
        1, "Keep every n-th pixel in each direction for `points` (1 = organised full resolution).",
        minimum=1, maximum=64)
    publish_colored_depth: bool = parameter(True, "Publish `depth_colored`, a colour-mapped depth image for people.")
    max_image_pixels: int = parameter(
        16_000_000, "Larger images (width x height) are skipped with a warning: a 48 MP frame would need GBs for "
        "its cloud. Raise it for big cameras, or publish a resized image (image_proc `resize`).", minimum=1)
    image_is_rectified: bool = parameter(
        False, "The image is already rectified (image_proc's `image_rect`, published beside the raw camera's "
        "camera_info): the camera is camera_info's P and D is not applied. False: a non-zero D means a raw "
        "image, which the node undistorts (see Lens distortion).")
    require_matching_frame_id: bool = parameter(
        True, "Skip images whose `header.frame_id` differs from the camera_info's (a camera_info of another "
        "camera, or from before a frame_id change). An empty camera_info frame_id matches any image.")
    publish_odometry: bool = parameter(
        False, "Run the model's pose network on consecutive frames and publish `odom` (`nav_msgs/Odometry`) and, "
        "with `publish_tf`, the transform `odom_frame` -> camera ([Visual odometry](#visual-odometry)). Needs a "
        "model file with a pose network.", read_only=True)
    odom_frame: str = parameter(
        "odom", "Frame of the odometry (REP 105): the camera's body frame (x forward, z up) at the first frame.",
        read_only=True, allowed="not empty", check=_not_blank)
    odometry_child_frame: str = parameter(
        "", "Child frame of `odom` and of the transform; empty = the image's frame_id. Must not already have a "
        "tf parent.", read_only=True)
    publish_tf: bool = parameter(
        True, "With `publish_odometry`: broadcast `odom_frame` -> child frame on `/tf` (needs `tf2_ros`).",
        read_only=True)
    odometry_max_gap: float = parameter(
        0.5, "Seconds. A longer gap between processed frames (or a stamp going back) restarts the odometry at "
        "the origin.", minimum=0.0, min_exclusive=True)
    odometry_still_threshold: float = parameter(  # the trainer's data.min_photometric_change
        0.01, "Mean grey-level change (0-1, image 4x smaller) below which a frame counts as standing still: "
        "`odom` reports no motion and the pose network is not asked. The trainer leaves such pairs out "
        "(`data.min_photometric_change`), so the network never learned them. 0 = off.",
        minimum=0.0, maximum=1.0, max_exclusive=True)
    odometry_drift: float = parameter(  # measured 35-59 % for 400-step CPU models
        0.5, "Position error per metre travelled that the covariances report (0.5 = 50 %: what our 400-step "
        "models reach; measure yours with `benchmarks/bench_odometry.py`).", minimum=0.0)


def _specs() -> Dict[str, ParameterSpec]:
    specs = {}
    for item in dataclasses.fields(DepthNodeConfig):
        kind = item.type if isinstance(item.type, type) else {"str": str, "bool": bool, "int": int,
                                                                  "float": float}[item.type]
        specs[item.name] = dataclasses.replace(item.metadata["spec"], name=item.name, kind=kind,
                                               default=item.default)
    return specs


PARAMETERS: Dict[str, ParameterSpec] = _specs()
# Old parameter name -> current name; the old ones keep working, with a deprecation warning.
RENAMED: Dict[str, str] = {spec.renamed_from: name for name, spec in PARAMETERS.items() if spec.renamed_from}


def deprecation_note(old: str) -> str:
    new = RENAMED[old]
    return (f"parameter '{old}' is deprecated: it is now '{new}' (the node's output clip, not the model's "
            f"depth range); rename it in your launch or parameter file")


def _label(name: str, spelled: str) -> str:
    return name if spelled == name else spelled


def _hint(name: str, spelled: str) -> str:
    return "" if spelled == name else f" ('{spelled}' is the old name of '{name}')"


def _type_error(name: str, value: Any, spelled: Optional[str] = None) -> Optional[str]:
    spelled = spelled or name
    if name not in PARAMETERS:
        return f"unknown parameter '{spelled}'"
    kind = PARAMETERS[name].kind
    problem = None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = f"must be a number, got {value!r}"
        elif not math.isfinite(float(value)):
            problem = f"must be finite, got {value!r}"
    elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        problem = f"must be an integer, got {value!r}"
    elif kind is bool and not isinstance(value, bool):
        problem = f"must be true or false, got {value!r}"
    elif kind is str and not isinstance(value, str):
        problem = f"must be a string, got {value!r}"
    return f"parameter '{spelled}' {problem}{_hint(name, spelled)}" if problem else None


def _range_problem(spec: ParameterSpec, value: Any) -> Optional[str]:
    low, high = spec.minimum, spec.maximum
    too_low = low is not None and (value <= low if spec.min_exclusive else value < low)
    too_high = high is not None and (value >= high if spec.max_exclusive else value > high)
    if not (too_low or too_high):
        return None
    if low is not None and high is not None:
        if not (spec.min_exclusive or spec.max_exclusive):
            return f"must be between {_number(low)} and {_number(high)}, got {value}"
        return f"must be in {spec.range_text()}, got {value}"
    return f"must be {spec.range_text().partition(',')[0]}, got {value}"


def parameter_error(name: str, value: Any, config: Optional[DepthNodeConfig] = None,
                    spelled: Optional[str] = None) -> Optional[str]:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is).

    ``config`` supplies the other parameters for cross-checks such as output_min_depth <
    output_max_depth; ``spelled`` is the name the user wrote (an old name, :data:`RENAMED`).
    """
    name, spelled = RENAMED.get(name, name), spelled or name
    problem = _type_error(name, value, spelled)
    if problem:
        return problem
    spec, current = PARAMETERS[name], config or DepthNodeConfig()
    label = _label(name, spelled)
    text = _range_problem(spec, value) if spec.kind in (int, float) else None
    if text is None and spec.check is not None:
        text = spec.check(value)
    if text is not None:
        return f"parameter '{label}' {text}{_hint(name, spelled)}"
    if spec.below and value >= getattr(current, spec.below):
        return (f"parameter '{label}' ({value}) must be smaller than {spec.below} "
                f"({getattr(current, spec.below)}){_hint(name, spelled)}")
    if spec.above and value <= getattr(current, spec.above):
        return (f"parameter '{label}' ({value}) must be larger than {spec.above} "
                f"({getattr(current, spec.above)}){_hint(name, spelled)}")
    return None


def _same(spec: ParameterSpec, a: Any, b: Any) -> bool:
    if spec.kind is float and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def current_names(values: Mapping[str, Any], defaults_yield: bool = False) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """``values`` with old parameter names (:data:`RENAMED`) replaced by the current ones ->
    (values by current name, {current name: the name it was given as}).

    An old and a current name given together must agree, else ValueError. With ``defaults_yield``
    (start-up, parameter files) a current name left at its default yields to the old name: a launch
    file that loads config/depth.yaml (every parameter at its default) and sets ``max_depth: 30``
    means 30.
    """
    result: Dict[str, Any] = {}
    spelled: Dict[str, str] = {}
    for name, value in values.items():
        if name not in RENAMED:
            result[name] = value
            spelled.setdefault(name, name)
    for old, new in RENAMED.items():
        if old not in values:
            continue
        value = values[old]
        if new in values:
            spec = PARAMETERS[new]
            if defaults_yield and _same(spec, values[new], spec.default):
                pass
            elif not _same(spec, values[new], value):
                raise ValueError(
                    f"parameter '{old}' ({value!r}) and '{new}' ({values[new]!r}) are both set: '{old}' is the "
                    f"old name of '{new}'; set only '{new}'")
            else:
                continue  # the same value under both names
        result[new] = value
        spelled[new] = old
    return result, spelled


def apply_parameters(config: DepthNodeConfig, values: Mapping[str, Any],
                     defaults_yield: bool = False) -> DepthNodeConfig:
    """Validate ``values`` together and return the updated config; raise ValueError naming the first
    bad one. Old parameter names are accepted (see :func:`current_names`; callers say the warning)."""
    values, spelled = current_names(values, defaults_yield)
    converted = {}
    for name, value in values.items():
        problem = _type_error(name, value, spelled.get(name))
        if problem:
            raise ValueError(problem)
        if PARAMETERS[name].kind is float:
            value = float(value)  # '80' in YAML means 80.0 here
        converted[name] = value
    # Range checks see the config with all changes applied, so the clip's two ends can move together.
    candidate = dataclasses.replace(config, **converted)
    for name, value in converted.items():
        problem = parameter_error(name, value, candidate, spelled.get(name))
        if problem:
            raise ValueError(problem)
    return candidate


def load_node_config(path, node_name: str = "depth_node",
                     warn: Optional[Callable[[str], None]] = None) -> DepthNodeConfig:
    """Read a ROS 2 parameter file (``/**`` or ``<node_name>`` section) into a DepthNodeConfig.

    ``warn`` receives one deprecation note per old parameter name used (default: the logging
    module's warning)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    section: Dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section.update((data.get(key) or {}).get("ros__parameters", {}) or {})
    config = apply_parameters(DepthNodeConfig(), section, defaults_yield=True)
    report = warn or _log_warning
    for old in RENAMED:
        if old in section:
            report(deprecation_note(old))
    return config


def _log_warning(text: str) -> None:
    import logging

    logging.getLogger("mono_depth_ros.config").warning(text)


def main(argv: Optional[List[str]] = None) -> int:
    from .config_files import main as generate

    return generate(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
