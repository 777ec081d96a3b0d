"""Training samples from rosbag2 recordings: triplets, stereo pairs, splits, augmentation, caching.

Pipeline per bag: find topics (mono_depth_ros.bagio) -> decode every image once, undistort when
D is non-zero, resize to the training size with area interpolation and store the frames
in a uint8 .npy cache (memory-mapped by the data-loader workers) -> choose target frames
(triplets by timestamp, stereo pairs, static frames dropped) -> split each bag into a
training head and a validation tail by time.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mono_depth_ros import bagio
from mono_depth_ros.bagio import BagError, BagReader, CameraModel, StreamSummary, TopicSelection
from mono_depth_ros.geometry import scale_intrinsics
from mono_depth_ros.networks import LEARNED_FOCAL_PRIOR

from .weather import WEATHER_EFFECTS, sample_weather

MODES = ("mono", "stereo", "mono+stereo")
CACHE_VERSION = 1
COLOUR_JITTER_PROBABILITY = 0.5  # Monodepth2 jitters half of the training samples
THUMBNAIL_FACTOR = 4  # static-frame test runs on frames 4x smaller than the training size


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


@dataclass
class DataReport:
    """What build_datasets read and used; print it for the user."""

    frames_read: int = 0
    frames_used: int = 0
    dropped: Dict[str, int] = field(default_factory=dict)
    K_native: Optional[List[List[float]]] = None
    native_size: Optional[Tuple[int, int]] = None  # (w, h)
    distortion_model: str = ""
    rectified: bool = False
    baseline_m: Optional[float] = None
    has_odometry: bool = False
    has_depth_gt: bool = False
    normalized_intrinsics: Optional[List[float]] = None  # [fx/W, fy/H, cx/W, cy/H] of the native image
    # False: no bag had a calibration (camera_info or data.K); K is a placeholder that only learned
    # intrinsics (model.intrinsics: learned) may replace, and normalized_intrinsics is None.
    calibrated: bool = True
    train_samples: int = 0
    val_samples: int = 0
    mode: str = "mono"
    training_size: Tuple[int, int] = (0, 0)
    bags: List[str] = field(default_factory=list)
    topics: List[Dict[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    cache_hits: int = 0

    def __str__(self) -> str:
        lines = [
            f"data ({self.mode}): {self.frames_used} of {self.frames_read} frames used "
            f"({self.train_samples} train, {self.val_samples} validation) from {len(self.bags)} bag(s)",
        ]
        for path, topics in zip(self.bags, self.topics):
            chosen = ", ".join(f"{k.replace('_topic', '')}={v}" for k, v in topics.items() if v)
            lines.append(f"  {path}: {chosen}")
        if self.dropped:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.dropped.items()))
            lines.append(f"  dropped: {reasons}")
        if self.native_size is not None:
            lines.append(
                f"  camera {self.native_size[0]}x{self.native_size[1]} -> "
                f"{self.training_size[0]}x{self.training_size[1]}, "
                f"distortion {self.distortion_model or 'none'}{' (undistorted)' if self.rectified else ''}"
            )
        if self.K_native is not None and not self.calibrated:
            lines.append("  K unknown (no camera_info, no data.K): the intrinsics are learned")
        elif self.K_native is not None:
            lines.append(f"  K {np.round(np.asarray(self.K_native), 3).tolist()}")
        lines.append(
            f"  odometry {'yes' if self.has_odometry else 'no'}, "
            f"ground-truth depth {'yes' if self.has_depth_gt else 'no'}"
            + (f", stereo baseline {self.baseline_m:.4f} m" if self.baseline_m else "")
        )
        for warning in self.warnings:
            lines.append(f"  WARNING: {warning}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "mono_depth_ros" / "frames"


class _GrowingArray:
    """Append rows to a .npy file (memory-mapped); grows by copying when the estimate was short."""

    def __init__(self, path: Path, row_shape: Tuple[int, ...], dtype, capacity: int):
        self.path, self.row_shape, self.dtype = path, row_shape, np.dtype(dtype)
        self.count = 0
        self.array = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=(max(capacity, 1),) + row_shape)

    def append(self, row: np.ndarray) -> int:
        if self.count == self.array.shape[0]:
            bigger = self.path.with_suffix(".grow.npy")
            grown = np.lib.format.open_memmap(
                bigger, mode="w+", dtype=self.dtype, shape=(2 * self.count,) + self.row_shape
            )
            grown[: self.count] = self.array[: self.count]
            grown.flush()
            del self.array
            os.replace(bigger, self.path)
            self.array = np.lib.format.open_memmap(self.path, mode="r+")
        self.array[self.count] = row
        self.count += 1
        return self.count - 1

    def close(self) -> None:
        self.array.flush()
        del self.array


class _FramePreparer:
    """Native decoded frame -> training-size frame: undistort (if D != 0) then area resize."""

    def __init__(self, camera: CameraModel, K_native: np.ndarray, native_size: Tuple[int, int],
                 training_size: Tuple[int, int], K_output: Optional[np.ndarray] = None):
        self.native_size, self.training_size = native_size, training_size
        self.maps = None
        K_output = K_native if K_output is None else K_output
        if camera.is_distorted or not np.allclose(K_output, K_native):
            model = camera.distortion_model
            size = native_size
            if model == "equidistant":
                self.maps = cv2.fisheye.initUndistortRectifyMap(
                    K_native, camera.D[:4], np.eye(3), K_output, size, cv2.CV_32FC1
                )
            elif model in ("plumb_bob", "rational_polynomial", ""):
                self.maps = cv2.initUndistortRectifyMap(K_native, camera.D, None, K_output, size, cv2.CV_32FC1)
            else:
                raise BagError(
                    f"distortion model '{model}' with non-zero D is not supported (plumb_bob, rational_polynomial, "
                    f"equidistant); record rectified images (image_proc's image_rect) instead"
                )

    def image(self, rgb: np.ndarray) -> np.ndarray:
        if self.maps is not None:
            rgb = cv2.remap(rgb, self.maps[0], self.maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if (rgb.shape[1], rgb.shape[0]) != self.training_size:
            rgb = cv2.resize(rgb, self.training_size, interpolation=cv2.INTER_AREA)
        return rgb

    def depth(self, depth: np.ndarray) -> np.ndarray:
        if self.maps is not None:
            depth = cv2.remap(depth, self.maps[0], self.maps[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        if (depth.shape[1], depth.shape[0]) != self.training_size:
            depth = cv2.resize(depth, self.training_size, interpolation=cv2.INTER_NEAREST)
        return depth


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """Training-size RGB (H, W, 3) uint8 -> grey (H/4, W/4) uint8 for the static-frame test."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    size = (max(1, frame.shape[1] // THUMBNAIL_FACTOR), max(1, frame.shape[0] // THUMBNAIL_FACTOR))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


@dataclass
class BagCache:
    """Decoded frames of one bag at training size (arrays memory-mapped from `directory`)."""

    directory: Path
    meta: dict

    def array(self, name: str) -> np.ndarray:
        return np.load(self.directory / f"{name}.npy", mmap_mode="r")


def _cache_key(bag_path: Path, config: DataConfig, stereo: bool) -> str:
    """Bag content + everything that changes the decoded frames (topic options, size, fallback K)."""
    description = {
        "version": CACHE_VERSION,
        "bag": bagio.bag_fingerprint(bag_path),
        "topics": [config.image_topic, config.camera_info_topic, config.right_image_topic,
                   config.right_camera_info_topic, config.odometry_topic, config.depth_topic],
        "size": [config.width, config.height],
        "K": None if config.K is None else [float(v) for v in np.asarray(config.K).reshape(-1)],
        "stereo": stereo,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


def _camera_json(camera: Optional[CameraModel]) -> Optional[dict]:
    if camera is None:
        return None
    return {
        "K": camera.K.tolist(), "D": camera.D.tolist(), "distortion_model": camera.distortion_model,
        "width": camera.width, "height": camera.height, "P": camera.P.tolist(),
    }


def placeholder_intrinsics(width: int, height: int) -> np.ndarray:
    """K (3, 3) standing in for an unknown calibration (learned intrinsics replace it in training):
    the camera head's starting point, focal LEARNED_FOCAL_PRIOR * W, principal point at the centre."""
    focal = LEARNED_FOCAL_PRIOR * width
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _decode_bag_into_cache(
    reader: BagReader, selection: TopicSelection, config: DataConfig, stereo: bool, directory: Path, log,
    require_calibration: bool = True,
) -> dict:
    """Decode the selected topics of one bag into directory/{left,right,depth,thumbs}.npy + meta.json.

    Without ``require_calibration`` a bag with neither camera_info nor data.K is decoded with a
    placeholder K (meta "calibrated": false) instead of refused.
    """
    training_size = (config.width, config.height)
    config_K = None if config.K is None else np.asarray(config.K, dtype=np.float64).reshape(3, 3)
    # The calibration is needed before the first image is prepared, so peek at it.
    camera = right_camera = None
    if selection.camera_info:
        first = reader.first_message(selection.camera_info)
        camera = None if first is None else bagio.camera_model_from_msg(first)
    if camera is None and config_K is None and require_calibration:
        raise BagError(
            f"camera_info {selection.camera_info or '(none)'} in bag {reader.path} has no usable calibration "
            f"(K is all zeros or no messages); give the intrinsics as K in the config (3x3 row-major), "
            f"or learn them (model.intrinsics=learned, mode mono or mono+stereo)"
        )
    config_K_note = []
    if camera is not None and config_K is not None and not np.allclose(camera.K, config_K):
        config_K_note.append(f"K from the config is not used: {selection.camera_info} has the calibration")
    if stereo and selection.right_camera_info:
        first = reader.first_message(selection.right_camera_info)
        right_camera = None if first is None else bagio.camera_model_from_msg(first)

    def count(topic):
        return reader.topics[topic].count if topic else 0

    thumb_shape = (max(1, config.height // THUMBNAIL_FACTOR), max(1, config.width // THUMBNAIL_FACTOR))
    frame_shape = (config.height, config.width, 3)
    arrays = {
        "left": _GrowingArray(directory / "left.npy", frame_shape, np.uint8, count(selection.image)),
        "thumbs": _GrowingArray(directory / "thumbs.npy", thumb_shape, np.uint8, count(selection.image)),
    }
    if stereo:
        arrays["right"] = _GrowingArray(directory / "right.npy", frame_shape, np.uint8, count(selection.right_image))
    if selection.depth:
        arrays["depth"] = _GrowingArray(
            directory / "depth.npy", frame_shape[:2], np.float32, count(selection.depth)
        )
    stamps: Dict[str, List[int]] = {"left": [], "right": [], "depth": []}
    odometry_stamps: List[int] = []
    odometry_positions: List[List[float]] = []
    preparers: Dict[str, _FramePreparer] = {}
    summary = StreamSummary()
    info: dict = {}

    def left_preparer(size):
        if "left" not in preparers:
            if camera is not None:
                try:
                    K_native = camera.K_for_image(*size)
                except ValueError as error:
                    raise BagError(
                        f"bag {reader.path}: {selection.camera_info} does not fit {selection.image}: {error}"
                    ) from None
                model = camera
            else:
                K_native = config_K if config_K is not None else placeholder_intrinsics(*size)
                model = CameraModel(K_native, np.zeros(5), "plumb_bob", size[0], size[1], np.zeros((3, 4)))
            preparers["left"] = _FramePreparer(model, K_native, size, training_size)
            info.update(K_native=K_native.tolist(), native_size=list(size), rectified=bool(model.is_distorted),
                        distortion_model=model.distortion_model if model.is_distorted else "",
                        calibrated=camera is not None or config_K is not None)
        return preparers["left"]

    def right_preparer(size):
        if "right" not in preparers:
            left_preparer(summary.image_size or size)
            K_left = np.asarray(info["K_native"])
            if right_camera is not None:
                try:
                    K_right = right_camera.K_for_image(*size)
                except ValueError as error:
                    raise BagError(
                        f"bag {reader.path}: {selection.right_camera_info} does not fit "
                        f"{selection.right_image}: {error}"
                    ) from None
                model = right_camera
            else:
                K_right = K_left
                model = CameraModel(K_left, np.zeros(5), "plumb_bob", size[0], size[1], np.zeros((3, 4)))
            if size != tuple(info["native_size"]):
                raise BagError(
                    f"bag {reader.path}: right images are {size[0]}x{size[1]} but left images are "
                    f"{info['native_size'][0]}x{info['native_size'][1]}; stereo needs a rectified pair of equal size"
                )
            # Map the right camera into the left camera's K (rectified pairs share K already).
            preparers["right"] = _FramePreparer(model, K_right, size, training_size, K_output=K_left)
        return preparers["right"]

    waiting_depth: List[bagio.StreamItem] = []  # depth that came before the first image

    def add_depth(item) -> None:
        if (item.data.shape[1], item.data.shape[0]) != summary.image_size:
            return  # not registered to the colour image; reported below
        arrays["depth"].append(preparers["left"].depth(item.data))
        stamps["depth"].append(item.stamp_ns)

    for item in bagio.stream_recording(reader, selection, summary):
        if item.role == "image":
            frame = left_preparer((item.data.shape[1], item.data.shape[0])).image(item.data)
            arrays["left"].append(frame)
            arrays["thumbs"].append(thumbnail(frame))
            stamps["left"].append(item.stamp_ns)
            for waiting in waiting_depth:
                add_depth(waiting)
            waiting_depth.clear()
        elif item.role == "right_image" and stereo:
            arrays["right"].append(right_preparer((item.data.shape[1], item.data.shape[0])).image(item.data))
            stamps["right"].append(item.stamp_ns)
        elif item.role == "depth":
            if summary.image_size is None or "left" not in preparers:
                waiting_depth.append(item)
            else:
                add_depth(item)
        elif item.role == "odometry":
            odometry_stamps.append(item.stamp_ns)
            odometry_positions.append(item.data.tolist())
    for array in arrays.values():
        array.close()
    notes = config_K_note + list(summary.notes)
    depth_size, image_size = summary.depth_size, summary.image_size
    if selection.depth and depth_size is not None and image_size is not None and depth_size != image_size:
        notes.append(
            f"depth {selection.depth} is {summary.depth_size[0]}x{summary.depth_size[1]} but images are "
            f"{summary.image_size[0]}x{summary.image_size[1]}; ground truth not used "
            f"(record depth registered to the camera)"
        )
    baseline = right_camera.baseline_m if right_camera is not None else None
    meta = {
        "bag": str(reader.path),
        "topics": selection.as_dict(),
        "stamps_left": stamps["left"],
        "stamps_right": stamps["right"],
        "stamps_depth": stamps["depth"],
        "odometry_stamps": odometry_stamps,
        "odometry_positions": odometry_positions,
        "camera": _camera_json(camera),
        "right_camera": _camera_json(right_camera),
        "baseline_m": baseline,
        "damage": list(reader.damage),
        "notes": notes,
        "decode_failures": dict(summary.decode_failures),
        "skipped": {topic: dict(reasons) for topic, reasons in summary.skipped.items()},
        **info,
    }
    if not stamps["left"]:
        reasons = "; ".join(notes + list(reader.damage) or ["(no messages)"])
        raise BagError(f"no usable images on {selection.image} in bag {reader.path}: {reasons}")
    (directory / "meta.json").write_text(json.dumps(meta))
    return meta


def load_bag(path, config: DataConfig, mode: str, log: Callable[[str], None] = print,
             require_calibration: bool = True) -> BagCache:
    """Find topics in a bag and return its decoded frames, decoding only on a cache miss.

    What was left out of the bag (damage, frames skipped for a calibration or size change,
    undecodable images) is logged as WARNING lines, on a cache hit too, and kept in
    ``meta["damage"]`` / ``meta["notes"]``. Without ``require_calibration`` (learned intrinsics) a bag
    without camera_info and data.K is used with a placeholder K (``meta["calibrated"]`` false).
    """
    stereo = mode != "mono"
    bag_path = Path(path).expanduser()
    if not bag_path.exists():
        raise BagError(f"bag {bag_path} does not exist (pass a rosbag2 directory, a .mcap or a .db3 file)")
    root = Path(os.path.expanduser(config.cache_dir)) if config.cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    directory = root / _cache_key(bag_path, config, stereo)
    if (directory / "meta.json").exists():
        meta = json.loads((directory / "meta.json").read_text())
        meta["cache_hit"] = True
        meta["bag"] = str(bag_path)  # the same recording may have been decoded under another path
        for warning in meta["damage"] + meta["notes"]:
            log(f"WARNING: {warning}")
        return BagCache(directory, meta)
    with BagReader(bag_path, log=log) as reader:
        selection = bagio.discover_topics(
            reader,
            image_topic=config.image_topic,
            camera_info_topic=config.camera_info_topic,
            right_image_topic=config.right_image_topic,
            right_camera_info_topic=config.right_camera_info_topic,
            odometry_topic=config.odometry_topic,
            depth_topic=config.depth_topic,
            need_stereo=stereo,
            have_config_K=config.K is not None or not require_calibration,
        )
        return _decode_to_cache(reader, selection, config, stereo, root, directory, log, require_calibration)


def _decode_to_cache(reader: BagReader, selection: TopicSelection, config: DataConfig, stereo: bool,
                     root: Path, directory: Path, log, require_calibration: bool = True) -> BagCache:
    log(f"decoding {reader.path} ({bagio.describe_selection(selection)}) into cache {directory}")
    scratch = root / f".{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        meta = _decode_bag_into_cache(reader, selection, config, stereo, scratch, log, require_calibration)
        for note in meta["notes"]:  # damage was logged by the reader as it was found
            log(f"WARNING: {note}")
        try:
            os.rename(scratch, directory)  # atomic: a concurrent process (DDP rank) may have won
        except OSError:
            if not (directory / "meta.json").exists():
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    meta["cache_hit"] = False
    return BagCache(directory, meta)


# --------------------------------------------------------------------------- sample selection


@dataclass(frozen=True)
class SampleRef:
    """Indices into one bag's cached arrays (-1 = not used)."""

    bag: int
    target: int
    prev: int = -1
    next: int = -1
    right: int = -1
    depth: int = -1
    odom_distance_prev: float = math.nan
    odom_distance_next: float = math.nan


def _nearest(sorted_stamps: np.ndarray, query: int) -> Tuple[int, float]:
    """Index in sorted_stamps nearest to query and |difference| in seconds (-1, inf if empty)."""
    if sorted_stamps.size == 0:
        return -1, math.inf
    position = int(np.searchsorted(sorted_stamps, query))
    best, best_diff = -1, math.inf
    for candidate in (position - 1, position):
        if 0 <= candidate < sorted_stamps.size:
            diff = abs(int(sorted_stamps[candidate]) - int(query)) * 1e-9
            if diff < best_diff:
                best, best_diff = candidate, diff
    return best, best_diff


def select_samples(bag_index: int, cache: BagCache, config: DataConfig, mode: str,
                   dropped: Dict[str, int]) -> List[SampleRef]:
    """Targets of one bag in time order; every other image is counted in `dropped` by reason."""
    meta = cache.meta

    def drop(reason: str, count: int = 1) -> None:
        if count:
            dropped[reason] = dropped.get(reason, 0) + count

    drop("decode_error", meta["decode_failures"].get(meta["topics"]["image_topic"], 0))
    for reason, count in meta.get("skipped", {}).get(meta["topics"]["image_topic"], {}).items():
        drop(reason, count)  # calibration_changed, size_changed
    stamps = np.asarray(meta["stamps_left"], dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    sorted_stamps = stamps[order]
    unique = np.ones(order.size, dtype=bool)
    unique[1:] = np.diff(sorted_stamps) > 0
    drop("duplicate_stamp", int((~unique).sum()))
    order, sorted_stamps = order[unique], sorted_stamps[unique]
    strided = order[:: config.frame_stride]
    drop("frame_stride", order.size - strided.size)
    frame_stamps = stamps[strided]

    temporal = mode in ("mono", "mono+stereo")
    stereo = mode in ("stereo", "mono+stereo")
    right_stamps = np.asarray(meta["stamps_right"], dtype=np.int64)
    right_order = np.argsort(right_stamps, kind="stable")
    right_sorted = right_stamps[right_order]
    depth_stamps = np.asarray(meta["stamps_depth"], dtype=np.int64)
    depth_order = np.argsort(depth_stamps, kind="stable")
    depth_sorted = depth_stamps[depth_order]

    positions = None
    if meta["odometry_stamps"]:
        positions = bagio.interpolate_positions(
            np.asarray(meta["odometry_stamps"], dtype=np.int64), np.asarray(meta["odometry_positions"]), frame_stamps
        )
    thumbs = cache.array("thumbs") if temporal else None
    max_gap_ns = config.max_gap_s * 1e9

    samples: List[SampleRef] = []
    for j, target in enumerate(strided):
        prev_index = next_index = -1
        distance_prev = distance_next = math.nan
        if temporal:
            if j == 0 or j == strided.size - 1:
                drop("no_neighbours")
                continue
            if frame_stamps[j] - frame_stamps[j - 1] > max_gap_ns or frame_stamps[j + 1] - frame_stamps[j] > max_gap_ns:
                drop("gap")
                continue
            prev_index, next_index = int(strided[j - 1]), int(strided[j + 1])
            if positions is not None and np.all(np.isfinite(positions[j - 1 : j + 2])):
                distance_prev = float(np.linalg.norm(positions[j] - positions[j - 1]))
                distance_next = float(np.linalg.norm(positions[j + 1] - positions[j]))
                moving = min(distance_prev, distance_next) >= config.min_motion_m
            else:
                centre = thumbs[target].astype(np.float32)
                change_prev = float(np.abs(centre - thumbs[prev_index]).mean()) / 255.0
                change_next = float(np.abs(centre - thumbs[next_index]).mean()) / 255.0
                moving = min(change_prev, change_next) >= config.min_photometric_change
            if not moving:
                drop("static")
                continue
        right_index = -1
        if stereo:
            position, offset = _nearest(right_sorted, int(stamps[target]))
            if offset > config.stereo_max_offset_s:
                drop("no_stereo_pair")
                continue
            right_index = int(right_order[position])
        depth_index = -1
        position, offset = _nearest(depth_sorted, int(stamps[target]))
        if offset <= config.stereo_max_offset_s:
            depth_index = int(depth_order[position])
        samples.append(SampleRef(bag_index, int(target), prev_index, next_index, right_index, depth_index,
                                 distance_prev, distance_next))
    return samples


def split_samples(samples: List[SampleRef], stamps: np.ndarray, val_fraction: float,
                  dropped: Dict[str, int]) -> Tuple[List[SampleRef], List[SampleRef]]:
    """Training head and validation tail of one bag's samples (time order).

    Training samples whose frames reach into the validation segment are dropped
    ('split_boundary') so no image is in both sets.
    """
    if val_fraction <= 0 or len(samples) < 2:
        return samples, []
    count = min(len(samples) - 1, max(1, int(round(val_fraction * len(samples)))))
    train, val = samples[:-count], samples[-count:]

    def frames(sample: SampleRef) -> List[int]:
        return [i for i in (sample.prev, sample.target, sample.next) if i >= 0]

    first_val_stamp = min(int(stamps[i]) for i in frames(val[0]))
    kept = [s for s in train if max(int(stamps[i]) for i in frames(s)) < first_val_stamp]
    if len(kept) < len(train):
        dropped["split_boundary"] = dropped.get("split_boundary", 0) + len(train) - len(kept)
    return kept, val


# --------------------------------------------------------------------------- augmentation


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def hue_rotation_matrix(hue: float) -> np.ndarray:
    """(3, 3) RGB matrix that turns the hue by `hue` turns (+ = red towards yellow) and keeps luma.

    A rotation of the chroma plane in YIQ: far cheaper than an HSV round trip per pixel and
    what matters for augmentation (a plausible colour-cast change) is the same.
    """
    angle = -2.0 * math.pi * hue
    rotation = np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)], [0.0, math.sin(angle), math.cos(angle)]]
    )
    return np.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ


@dataclass(frozen=True)
class ColourJitter:
    """One set of colour-jitter factors, applied identically to every frame of a sample."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    @staticmethod
    def sample(config: DataConfig, generator: Optional[torch.Generator] = None) -> "ColourJitter":
        def uniform(low: float, high: float) -> float:
            return float(low + (high - low) * torch.rand((), generator=generator))

        return ColourJitter(
            brightness=uniform(max(0.0, 1 - config.brightness), 1 + config.brightness),
            contrast=uniform(max(0.0, 1 - config.contrast), 1 + config.contrast),
            saturation=uniform(max(0.0, 1 - config.saturation), 1 + config.saturation),
            hue=uniform(-config.hue, config.hue),
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, 3, H, W) in [0, 1] -> jittered (N, 3, H, W) in [0, 1]."""
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
        out = (images * self.brightness).clamp(0.0, 1.0)
        grey = (out * weights).sum(dim=1, keepdim=True)
        mean = grey.mean(dim=(2, 3), keepdim=True)
        out = ((out - mean) * self.contrast + mean).clamp(0.0, 1.0)
        grey = (out * weights).sum(dim=1, keepdim=True)
        out = ((out - grey) * self.saturation + grey).clamp(0.0, 1.0)
        if self.hue != 0.0:
            matrix = torch.as_tensor(hue_rotation_matrix(self.hue), dtype=images.dtype)
            out = torch.einsum("ij,njhw->nihw", matrix, out).clamp(0.0, 1.0)
        return out


FLIP_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


def flip_intrinsics(K: torch.Tensor, width: int) -> torch.Tensor:
    """K (3, 3) of an image -> K of its horizontal mirror: cx -> (W - 1) - cx (pixel-centre convention)."""
    flipped = K.clone()
    flipped[0, 2] = (width - 1) - K[0, 2]
    return flipped


def flip_transform(T: torch.Tensor) -> torch.Tensor:
    """T_b_a (4, 4) between two cameras -> the same relation in the mirrored world (x -> -x in both frames).

    For a stereo pair the translation's x flips sign: the mirrored left camera sees what a
    right camera would, so the other camera ends up on its left.
    """
    return FLIP_X @ T @ FLIP_X


# --------------------------------------------------------------------------- dataset


class BagDataset(Dataset):
    """Samples (dicts of tensors, see the trainer interface) from cached bag frames."""

    def __init__(self, caches: Sequence[BagCache], samples: Sequence[SampleRef], config: DataConfig, mode: str,
                 intrinsics: Sequence[np.ndarray], baselines: Sequence[Optional[float]], augment: bool):
        self.caches = list(caches)
        self.samples = list(samples)
        self.config = config
        self.mode = mode
        self.augment = augment
        self.width, self.height = config.width, config.height
        # Training-resolution K per bag (pixel-centre exact scaling of the native K).
        self.intrinsics = [torch.as_tensor(K, dtype=torch.float32) for K in intrinsics]
        self.baselines = list(baselines)
        self._arrays: Optional[List[Dict[str, np.ndarray]]] = None
        self._stamps = [np.asarray(c.meta["stamps_left"], dtype=np.int64) for c in self.caches]

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None  # each worker maps the cache files itself
        return state

    def _bag_arrays(self, bag: int) -> Dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = [dict() for _ in self.caches]
        arrays = self._arrays[bag]
        if not arrays:
            directory = self.caches[bag].directory
            for name in ("left", "right", "depth"):
                if (directory / f"{name}.npy").exists():
                    arrays[name] = np.load(directory / f"{name}.npy", mmap_mode="r")
        return arrays

    @staticmethod
    def _to_tensor(frame: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(frame)).permute(2, 0, 1).float().div_(255.0)  # copy out of the memmap

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        ref = self.samples[index]
        arrays = self._bag_arrays(ref.bag)
        names = ["target"]
        frames = [arrays["left"][ref.target]]
        if self.mode in ("mono", "mono+stereo"):
            names += ["prev", "next"]
            frames += [arrays["left"][ref.prev], arrays["left"][ref.next]]
        if self.mode in ("stereo", "mono+stereo"):
            names.append("stereo")
            frames.append(arrays["right"][ref.right])
        images = torch.stack([self._to_tensor(f) for f in frames])  # (N, 3, H, W)
        if ref.depth >= 0 and "depth" in arrays:
            depth = torch.from_numpy(np.array(arrays["depth"][ref.depth], dtype=np.float32))[None]
            has_depth = True
        else:
            depth = torch.zeros(1, self.height, self.width)
            has_depth = False
        K = self.intrinsics[ref.bag].clone()
        T_stereo_target = torch.eye(4)
        baseline = self.baselines[ref.bag]
        if baseline is not None:
            T_stereo_target[0, 3] = -baseline  # left target -> right camera
        flipped = False
        augmented = images
        if self.augment:
            flipped = bool(torch.rand(()) < self.config.flip_probability)
            if flipped:
                images = torch.flip(images, dims=[-1])
                depth = torch.flip(depth, dims=[-1])
                K = flip_intrinsics(K, self.width)
                T_stereo_target = flip_transform(T_stereo_target)
            augmented = images
            if torch.rand(()) < COLOUR_JITTER_PROBABILITY:
                augmented = ColourJitter.sample(self.config)(images)
            # (no random number is drawn when weather is off: the other augmentations stay as they were)
            weather_probability = getattr(self.config, "weather_probability", 0.0)
            if weather_probability > 0 and torch.rand(()) < weather_probability:
                augmented = sample_weather(self.config.weather, self.height, self.width)(augmented)
        sample: Dict[str, torch.Tensor] = {}
        for position, name in enumerate(names):
            sample[name] = images[position]
            sample[f"{name}_aug"] = augmented[position]
        sample["K"] = K
        sample["T_stereo_target"] = T_stereo_target
        sample["odom_distance_prev"] = torch.tensor(ref.odom_distance_prev, dtype=torch.float32)
        sample["odom_distance_next"] = torch.tensor(ref.odom_distance_next, dtype=torch.float32)
        sample["depth_gt"] = depth
        sample["has_depth_gt"] = torch.tensor(has_depth)
        sample["stamp"] = torch.tensor(int(self._stamps[ref.bag][ref.target]) * 1e-9, dtype=torch.float64)
        sample["flipped"] = torch.tensor(flipped)
        return sample


def build_datasets(bag_paths: Sequence[str], config: DataConfig, mode: str,
                   log: Callable[[str], None] = print,
                   require_calibration: bool = True) -> Tuple[BagDataset, BagDataset, DataReport]:
    """Training and validation datasets from rosbag2 recordings, plus a report of what was used.

    Raises BagError for unusable input (no images, too few frames, camera_info missing without
    config K, ambiguous topics, nothing left after damage). Frames taken while the calibration
    or the image size differed from the bag's first are left out (report.dropped) and explained
    in report.warnings. ``require_calibration=False`` (model.intrinsics: learned) accepts bags without
    camera_info and data.K: their K is a placeholder and report.calibrated is False.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if not bag_paths:
        raise BagError("no bags given; pass --bag PATH (a rosbag2 directory, .mcap or .db3 file)")
    config.validate()
    report = DataReport(mode=mode, training_size=(config.width, config.height))
    caches: List[BagCache] = []
    intrinsics: List[np.ndarray] = []
    baselines: List[Optional[float]] = []
    train: List[SampleRef] = []
    val: List[SampleRef] = []
    for bag_index, path in enumerate(bag_paths):
        cache = load_bag(path, config, mode, log, require_calibration)
        meta = cache.meta
        if require_calibration and not meta.get("calibrated", True):  # decoded earlier for learned intrinsics
            raise BagError(
                f"bag {meta['bag']} has no usable calibration (no camera_info with a non-zero K); give the "
                f"intrinsics as K in the config (3x3 row-major), or learn them (model.intrinsics=learned)"
            )
        caches.append(cache)
        report.cache_hits += int(meta.get("cache_hit", False))
        report.bags.append(meta["bag"])
        report.topics.append(meta["topics"])
        report.warnings.extend(meta["damage"] + meta["notes"])  # load_bag logged them
        K_native = np.asarray(meta["K_native"], dtype=np.float64)
        native_w, native_h = meta["native_size"]
        scale_x, scale_y = config.width / native_w, config.height / native_h
        K_training = scale_intrinsics(torch.from_numpy(K_native), scale_x, scale_y).numpy()
        intrinsics.append(K_training)
        baseline = None
        if mode != "mono":
            baseline = config.baseline_m if config.baseline_m is not None else meta["baseline_m"]
            if baseline is None:
                raise BagError(
                    f"stereo baseline unknown for bag {meta['bag']}: the right camera_info "
                    f"({meta['topics']['right_camera_info_topic'] or 'none'}) has P[3] = 0. "
                    f"Set baseline_m in the config (metres between the cameras)."
                )
        baselines.append(baseline)
        calibrated = bool(meta.get("calibrated", True))
        if report.K_native is None:
            report.K_native = K_native.tolist()
            report.native_size = (int(native_w), int(native_h))
            report.distortion_model = meta["distortion_model"]
            report.rectified = bool(meta["rectified"])
            report.baseline_m = baseline
            report.calibrated = calibrated
            report.normalized_intrinsics = [
                K_native[0, 0] / native_w, K_native[1, 1] / native_h,
                K_native[0, 2] / native_w, K_native[1, 2] / native_h,
            ] if calibrated else None
        elif not np.allclose(K_native, report.K_native, rtol=1e-4) or tuple(meta["native_size"]) != report.native_size:
            report.warnings.append(f"bag {meta['bag']} has a different camera (K or size) than the first bag")
        report.has_odometry = report.has_odometry or bool(meta["odometry_stamps"])
        report.has_depth_gt = report.has_depth_gt or bool(meta["stamps_depth"])
        image_topic = meta["topics"]["image_topic"]
        report.frames_read += (
            len(meta["stamps_left"]) + meta["decode_failures"].get(image_topic, 0)
            + sum(meta.get("skipped", {}).get(image_topic, {}).values())
        )
        samples = select_samples(bag_index, cache, config, mode, report.dropped)
        stamps = np.asarray(meta["stamps_left"], dtype=np.int64)
        bag_train, bag_val = split_samples(samples, stamps, config.val_fraction, report.dropped)
        train += bag_train
        val += bag_val
    report.train_samples, report.val_samples = len(train), len(val)
    report.frames_used = len(train) + len(val)
    if not train:
        needs = "three consecutive frames (t-1, t, t+1) within max_gap_s" if mode != "stereo" else "a left/right pair"
        raise BagError(
            f"too few frames to train: every target needs {needs}, and none is left.\n{report}\n"
            f"Record a longer bag with the camera moving, or relax max_gap_s / min_motion_m / stereo_max_offset_s."
        )
    train_set = BagDataset(caches, train, config, mode, intrinsics, baselines, augment=True)
    val_set = BagDataset(caches, val, config, mode, intrinsics, baselines, augment=False)
    return train_set, val_set, report


__all__ = [
    "BagDataset",
    "ColourJitter",
    "DataConfig",
    "DataReport",
    "MODES",
    "build_datasets",
    "flip_intrinsics",
    "flip_transform",
    "hue_rotation_matrix",
    "load_bag",
]
