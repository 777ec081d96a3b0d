"""Typed configuration of depth_node: the one source of truth for its parameters.

``config/depth.yaml`` holds the same defaults in ROS 2 parameter-file form; a test
keeps the two in step, and the parameter table of docs/node.md ('Parameters') is written from
:data:`NODE_PARAMETER_DOCS`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml


@dataclass(frozen=True)
class DepthNodeConfig:
    model_path: str = ""
    device: str = "cuda"
    half_precision: bool = False
    min_depth: float = 0.1
    max_depth: float = 80.0
    depth_scale: float = 1.0
    publish_points: bool = True
    points_stride: int = 1
    publish_colored_depth: bool = True
    max_image_pixels: int = 16_000_000
    require_matching_frame_id: bool = True
    publish_odometry: bool = False
    odom_frame: str = "odom"
    odometry_child_frame: str = ""
    publish_tf: bool = True
    odometry_max_gap: float = 0.5
    odometry_still_threshold: float = 0.01  # data.min_photometric_change of the trainer
    odometry_drift: float = 0.5  # measured 35-59 % for 400-step CPU models (docs/node.md, 'Visual odometry')


# name -> (read_only, description). Read-only parameters need a restart (they rebuild the model).
NODE_PARAMETER_DOCS: Dict[str, tuple] = {
    "model_path": (True, "Model file to run: .safetensors (PyTorch) or .onnx from export_onnx (onnxruntime). Required."),
    "device": (True, "'cuda', 'cuda:N' or 'cpu'. Falls back to the CPU with one warning when CUDA is missing."),
    "half_precision": (True, "Run the network in float16 on CUDA (ignored on the CPU)."),
    "min_depth": (False, "Metres. Closer depth is published as -inf in `depth` and NaN in `points` (REP 118)."),
    "max_depth": (False, "Metres. Farther depth (e.g. sky) is published as +inf in `depth` and NaN in `points`."),
    "depth_scale": (
        False,
        "Multiplies the model's depth. 1.0 for metric models; for non-metric ones, the factor that makes "
        "its depth metres on your robot (see docs/node.md, 'Scale').",
    ),
    "publish_points": (False, "Publish the `points` cloud."),
    "points_stride": (False, "Keep every n-th pixel in each direction for `points` (1 = organised full resolution)."),
    "publish_colored_depth": (False, "Publish `depth_colored`, a colour-mapped depth image for people."),
    "max_image_pixels": (
        False,
        "Larger images (width x height) are skipped with a warning: a 48 MP frame would need GBs for its cloud. "
        "Raise it for big cameras, or publish a resized image (image_proc resize).",
    ),
    "require_matching_frame_id": (
        False,
        "Skip images whose header.frame_id differs from the camera_info's (a camera_info of another camera, or "
        "of the camera before a frame_id change). An empty camera_info frame_id matches any image.",
    ),
    "publish_odometry": (
        True,
        "Run the model's pose network on consecutive frames and publish `odom` (nav_msgs/Odometry) and, with "
        "publish_tf, the transform odom_frame -> camera. Needs a model file with a pose network.",
    ),
    "odom_frame": (True, "Frame of the odometry (REP 105): the camera's body frame (x forward, z up) at the first frame."),
    "odometry_child_frame": (
        True,
        "Child frame of `odom` and of the transform; empty = the image's frame_id. Must not already have a tf parent.",
    ),
    "publish_tf": (True, "With publish_odometry: broadcast odom_frame -> child frame on /tf (needs tf2_ros)."),
    "odometry_max_gap": (
        False,
        "Seconds. A longer gap between processed frames (or a stamp going back) restarts the odometry at the origin.",
    ),
    "odometry_still_threshold": (
        False,
        "Mean grey-level change (0-1) below which a frame counts as standing still: odom reports no motion. "
        "The trainer drops such pairs (data.min_photometric_change), so the pose network never learned them. 0 = off.",
    ),
    "odometry_drift": (
        False,
        "Position error per metre travelled that the covariances report (0.5 = 50 %; measure yours with benchmarks/bench_odometry.py, see docs/node.md, 'Visual odometry').",
    ),
}

DEVICE_HINT = "use 'cuda', 'cuda:N' or 'cpu'"


def _type_error(name: str, value: Any) -> Optional[str]:
    fields = {f.name for f in dataclasses.fields(DepthNodeConfig)}
    if name not in fields:
        return f"unknown parameter '{name}'"
    kind = type(getattr(DepthNodeConfig(), name))
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"parameter '{name}' must be a number, got {value!r}"
        if not math.isfinite(float(value)):
            return f"parameter '{name}' must be finite, got {value!r}"
    elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"parameter '{name}' must be an integer, got {value!r}"
    elif kind is bool and not isinstance(value, bool):
        return f"parameter '{name}' must be true or false, got {value!r}"
    elif kind is str and not isinstance(value, str):
        return f"parameter '{name}' must be a string, got {value!r}"
    return None


def parameter_error(name: str, value: Any, config: Optional[DepthNodeConfig] = None) -> Optional[str]:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is).

    ``config`` supplies the other parameters for cross-checks such as min_depth < max_depth.
    """
    problem = _type_error(name, value)
    if problem:
        return problem
    current = config or DepthNodeConfig()
    if name == "device":
        text = value.strip().lower()
        if not (text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())):
            return f"parameter 'device' is '{value}': {DEVICE_HINT}"
    if name == "min_depth":
        if value <= 0:
            return f"parameter 'min_depth' must be > 0, got {value}"
        if value >= current.max_depth:
            return f"parameter 'min_depth' ({value}) must be smaller than max_depth ({current.max_depth})"
    if name == "max_depth" and value <= current.min_depth:
        return f"parameter 'max_depth' ({value}) must be larger than min_depth ({current.min_depth})"
    if name == "depth_scale" and value <= 0:
        return f"parameter 'depth_scale' must be > 0, got {value}"
    if name == "points_stride" and not 1 <= value <= 64:
        return f"parameter 'points_stride' must be between 1 and 64, got {value}"
    if name == "max_image_pixels" and value < 1:
        return f"parameter 'max_image_pixels' must be >= 1, got {value}"
    if name == "odometry_max_gap" and value <= 0:
        return f"parameter 'odometry_max_gap' must be > 0, got {value}"
    if name == "odometry_still_threshold" and not 0 <= value < 1:
        return f"parameter 'odometry_still_threshold' must be in [0, 1), got {value}"
    if name == "odometry_drift" and value < 0:
        return f"parameter 'odometry_drift' must be >= 0, got {value}"
    if name == "odom_frame" and not value.strip():
        return "parameter 'odom_frame' must not be empty"
    return None


def apply_parameters(config: DepthNodeConfig, values: Mapping[str, Any]) -> DepthNodeConfig:
    """Validate ``values`` together and return the updated config; raise ValueError naming the first bad one."""
    converted = {}
    for name, value in values.items():
        problem = _type_error(name, value)
        if problem:
            raise ValueError(problem)
        if isinstance(getattr(config, name), float):
            value = float(value)  # '80' in YAML means 80.0 here
        converted[name] = value
    # Range checks see the config with all changes applied, so min_depth and max_depth can move together.
    candidate = dataclasses.replace(config, **converted)
    for name, value in converted.items():
        problem = parameter_error(name, value, candidate)
        if problem:
            raise ValueError(problem)
    return candidate


def load_node_config(path, node_name: str = "depth_node") -> DepthNodeConfig:
    """Read a ROS 2 parameter file (``/**`` or ``<node_name>`` section) into a DepthNodeConfig."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    section: Dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section.update((data.get(key) or {}).get("ros__parameters", {}) or {})
    return apply_parameters(DepthNodeConfig(), section) if section else DepthNodeConfig()
