"""The data section of the training config (:class:`DataConfig`) and the training modes.

Which topics to read, the training image size, how frames are chosen (gaps, strides, motion),
the fallback calibration, the validation split, augmentation strengths and the frame cache; the
reference defaults. :meth:`DataConfig.validate` names every field that is out of range.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .weather import WEATHER_EFFECTS

MODES = ("mono", "stereo", "mono+stereo")


@dataclass
class DataConfig:
    """Where the training frames come from and how they are prepared (defaults are the reference)."""

    image_topic: str = ""  # "" = auto-detect (one Image/CompressedImage topic with a CameraInfo beside it)
    camera_info_topic: str = ""  # "" = auto
    right_image_topic: str = ""  # "" = auto-detect a second camera when mode needs stereo
    right_camera_info_topic: str = ""
    odometry_topic: str = ""  # "" = auto (nav_msgs/Odometry) if exactly one; "none" disables
    depth_topic: str = ""  # ground-truth depth (32FC1/16UC1) for validation metrics; "" = auto; "none" disables
    width: int = 640
    height: int = 192
    max_gap_s: float = 0.25  # max time between consecutive frames of a triplet
    frame_stride: int = 1  # use every n-th frame (high-rate cameras)
    min_motion_m: float = 0.01  # with odometry: drop target frames whose neighbours moved less than this
    min_photometric_change: float = 0.01  # without odometry: mean abs intensity change to count as moving
    stereo_max_offset_s: float = 0.005  # max stamp difference to pair left/right (and depth ground truth)
    K: Optional[list] = None  # 3x3 row-major fallback when the bag has no camera_info
    baseline_m: Optional[float] = None  # fallback/override stereo baseline
    val_fraction: float = 0.1  # last contiguous time segments of each bag go to validation
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1
    flip_probability: float = 0.5
    # Weather on the networks' input only (like colour jitter): share of samples that get one effect,
    # drawn from `weather`, identical on every frame of the sample. 0 = off.
    weather_probability: float = 0.0
    weather: List[str] = field(default_factory=lambda: list(WEATHER_EFFECTS))
    cache_dir: str = ""  # "" = ~/.cache/mono_depth_ros/frames
    num_workers: int = 2

    def validate(self) -> None:
        problems = []
        if self.width < 16 or self.height < 16:
            problems.append(f"width x height = {self.width}x{self.height}; both must be >= 16")
        if self.frame_stride < 1:
            problems.append(f"frame_stride = {self.frame_stride}; must be >= 1")
        if self.max_gap_s <= 0:
            problems.append(f"max_gap_s = {self.max_gap_s}; must be > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction = {self.val_fraction}; must be in [0, 1)")
        if not 0.0 <= self.flip_probability <= 1.0:
            problems.append(f"flip_probability = {self.flip_probability}; must be in [0, 1]")
        if self.hue < 0 or self.hue > 0.5 or min(self.brightness, self.contrast, self.saturation) < 0:
            problems.append("colour jitter: brightness, contrast, saturation must be >= 0 and hue in [0, 0.5]")
        if not 0.0 <= self.weather_probability <= 1.0:
            problems.append(f"weather_probability = {self.weather_probability}; must be in [0, 1] (0 = off)")
        unknown = [name for name in self.weather if name not in WEATHER_EFFECTS]
        if unknown or len(set(self.weather)) != len(self.weather) or (self.weather_probability > 0 and not self.weather):
            problems.append(
                f"weather = {list(self.weather)}; list distinct effects from {', '.join(WEATHER_EFFECTS)}"
                + (" (at least one when weather_probability > 0)" if not self.weather else "")
            )
        if self.K is not None:
            K = np.asarray(self.K, dtype=np.float64).reshape(-1)
            if K.size != 9 or K[0] <= 0 or K[4] <= 0:
                problems.append(f"K = {self.K}; must be 9 numbers, 3x3 row-major [fx, 0, cx, 0, fy, cy, 0, 0, 1]")
        if self.baseline_m is not None and self.baseline_m <= 0:
            problems.append(f"baseline_m = {self.baseline_m}; must be > 0 (metres between the cameras)")
        if problems:
            raise ValueError("invalid data config: " + "; ".join(problems))
