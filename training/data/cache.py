"""The frame cache: each bag decoded once at training size into memory-mapped .npy files.

:func:`load_bag` finds a bag's topics (:mod:`mono_depth_ros.bagio`), decodes every image once,
undistorts it when D is non-zero, resizes it to the training size with area interpolation and
stores the frames (left, right, depth, static-test thumbnails) in a uint8 .npy cache keyed by
the bag's content and the options that change the frames; data-loader workers memory-map it.
A cache directory appears atomically, so concurrent processes (DDP ranks) can share it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from mono_depth_ros import bagio
from mono_depth_ros.bagio import BagError, BagReader, CameraModel, StreamSummary, TopicSelection
from mono_depth_ros.distortion import EQUIDISTANT, PLUMB_BOB, DistortionError, lens_distortion, undistort_maps
from mono_depth_ros.networks import LEARNED_FOCAL_PRIOR

from .config import DataConfig

CACHE_VERSION = 1
THUMBNAIL_FACTOR = 4  # static-frame test runs on frames 4x smaller than the training size


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "mono_depth_ros" / "frames"


class GrowingArray:
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
            model = camera.distortion_model or PLUMB_BOB  # an unnamed model with D: OpenCV's default
            D = camera.D[:4] if model == EQUIDISTANT else camera.D
            try:
                lens = lens_distortion(model, D)
            except DistortionError as error:
                raise BagError(f"{error} (or record rectified images, image_proc's image_rect)") from None
            if lens is None:
                self.maps = cv2.initUndistortRectifyMap(K_native, None, None, K_output, native_size, cv2.CV_32FC1)
            else:
                self.maps = undistort_maps(K_native, lens, native_size, K_output)

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
        "left": GrowingArray(directory / "left.npy", frame_shape, np.uint8, count(selection.image)),
        "thumbs": GrowingArray(directory / "thumbs.npy", thumb_shape, np.uint8, count(selection.image)),
    }
    if stereo:
        arrays["right"] = GrowingArray(directory / "right.npy", frame_shape, np.uint8, count(selection.right_image))
    if selection.depth:
        arrays["depth"] = GrowingArray(
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
