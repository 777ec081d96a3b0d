"""write_synthetic_bag: render a recording and stream it into a rosbag2 directory (the topics below)."""
from __future__ import annotations

import heapq
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from mono_depth_ros.bagio.messages import (
    camera_info_message,
    compressed_image_message,
    depth_message,
    image_message,
    odometry_message,
    rgb_to_encoding,
)
from mono_depth_ros.bagio.writer import STORAGES, BagEntry, make_typestore, write_sorted_bag
from mono_depth_ros.geometry.rotations import rotation_log
from mono_depth_ros.msgtypes import CAMERA_INFO_TYPE, COMPRESSED_TYPE, DEPTH_ENCODINGS, IMAGE_TYPE, ODOMETRY_TYPE

from .camera import LEFT_FRAME, RIGHT_FRAME
from .recording import STAMP_ORIGIN_NS, RecordingPlan

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
DEPTH_TOPIC = "/camera/depth"
RIGHT_IMAGE_TOPIC = "/camera_right/image_raw"
RIGHT_COMPRESSED_TOPIC = "/camera_right/image_raw/compressed"
RIGHT_CAMERA_INFO_TOPIC = "/camera_right/camera_info"
ODOM_TOPIC = "/odom"


def _odometry_entries(typestore, trajectory, num_frames: int, rate_hz: float) -> List[BagEntry]:
    """/odom at twice the image rate, stamps deliberately offset from the image stamps (readers
    must interpolate); twist by central differences, in camera_link."""
    entries = []
    odom_period_s = 0.5 / rate_hz
    first_s = -odom_period_s + 0.013 / rate_hz * 10  # offset from image stamps on purpose
    last_s = (num_frames - 1) / rate_hz + odom_period_s
    count = int(math.floor((last_s - first_s) / odom_period_s)) + 2
    delta = 1e-4
    for index in range(count):
        time_s = first_s + index * odom_period_s
        stamp_ns = STAMP_ORIGIN_NS + int(round(time_s * 1e9))
        T = trajectory.T_odom_body(time_s)
        ahead, behind = trajectory.T_odom_body(time_s + delta), trajectory.T_odom_body(time_s - delta)
        velocity_odom = (ahead[:3, 3] - behind[:3, 3]) / (2 * delta)
        angular_body = rotation_log(behind[:3, :3].T @ ahead[:3, :3]) / (2 * delta)
        message = odometry_message(typestore, T, T[:3, :3].T @ velocity_odom, angular_body, stamp_ns)
        entries.append(BagEntry(ODOM_TOPIC, ODOMETRY_TYPE, stamp_ns, message))
    return entries


def write_synthetic_bag(
    path: Union[str, Path],
    *,
    num_frames: int = 40,
    width: int = 160,
    height: int = 96,
    storage: str = "mcap",
    rate_hz: float = 10.0,
    speed_mps: float = 1.0,
    stereo: bool = True,
    baseline_m: float = 0.2,
    odometry: bool = True,
    depth: bool = True,
    compressed: Union[bool, str] = False,
    encoding: str = "rgb8",
    static_frames: int = 0,
    seed: int = 0,
    distortion: Optional[Sequence[float]] = None,
    distortion_model: str = "plumb_bob",
    camera_info: bool = True,
    depth_encoding: str = "32FC1",
    stereo_offset_s: float = 0.0,
    drop_frames: Sequence[int] = (),
    return_recording: bool = False,
    scene: str = "corridor",
    stop_frames: Optional[int] = None,
    progress=None,
):
    """Render a drive down a textured corridor (or, with scene="street", a street) and write it
    as a rosbag2 directory, streaming: frames are written as they are rendered.

    Topics: /camera/image_raw (or /camera/image_raw/compressed when `compressed` is True,
    "jpeg" or "png"; True means jpeg), /camera/camera_info (exact K; D zero unless
    `distortion`), /camera/depth (32FC1 metres or 16UC1 mm, same stamps; +inf / 0 where a ray
    hits nothing), with `stereo` /camera_right/image_raw[/compressed] + /camera_right/camera_info
    (P[3] = -fx * baseline), with `odometry` /odom (nav_msgs/Odometry of camera_link at 2x the
    image rate, offset stamps, so readers must interpolate). The camera stands still for
    `static_frames` frames first (street: also `stop_frames` in the middle, see
    render_recording). Frames listed in `drop_frames` are left out of every camera topic (a
    recording gap). progress(1) is called after each rendered frame.
    -> the bag directory, or a SyntheticRecording with `return_recording` (keeps every image).
    """
    if abs(stereo_offset_s) * rate_hz >= 0.5:
        raise ValueError(f"stereo_offset_s must be less than half a frame period, got {stereo_offset_s} s")
    plan = RecordingPlan(
        num_frames=num_frames, width=width, height=height, rate_hz=rate_hz, speed_mps=speed_mps, stereo=stereo,
        baseline_m=baseline_m, static_frames=static_frames, seed=seed, distortion=distortion,
        distortion_model=distortion_model, stereo_offset_s=stereo_offset_s, scene=scene, stop_frames=stop_frames,
    )
    # Checked before anything is rendered.
    for value, name, choices in ((storage, "storage", STORAGES), (depth_encoding, "depth_encoding", DEPTH_ENCODINGS)):
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got '{value}'")
    if compressed and compressed is not True and compressed not in ("jpeg", "png"):
        raise ValueError(f"unsupported compressed format '{compressed}' (jpeg, png)")
    rgb_to_encoding(np.zeros((1, 1, 3), np.uint8), encoding)  # raises for an unsupported encoding
    if Path(path).exists():
        raise FileExistsError(f"{path} exists; write_synthetic_bag creates a new bag directory")
    typestore = make_typestore()
    image_format = None
    if compressed:
        image_format = "jpeg" if compressed is True else str(compressed)
    K = plan.K
    dropped = set(int(i) for i in drop_frames)
    recording = plan.new_recording() if return_recording else None

    def camera_entries(raw_topic, compressed_topic, info_topic, frame_id, rgb, stamp_ns, baseline):
        if image_format:
            message = compressed_image_message(typestore, rgb, stamp_ns, frame_id, image_format, encoding)
            yield BagEntry(compressed_topic, COMPRESSED_TYPE, stamp_ns, message)
        else:
            yield BagEntry(raw_topic, IMAGE_TYPE, stamp_ns, image_message(typestore, rgb, stamp_ns, frame_id, encoding))
        if camera_info:
            info = camera_info_message(typestore, K, width, height, stamp_ns, frame_id, distortion, distortion_model, baseline)
            yield BagEntry(info_topic, CAMERA_INFO_TYPE, stamp_ns, info)

    def frame_entries():
        for frame in plan.frames(recording, progress):
            if frame.index in dropped:
                continue
            entries = list(camera_entries(IMAGE_TOPIC, COMPRESSED_TOPIC, CAMERA_INFO_TOPIC, LEFT_FRAME,
                                          frame.rgb, frame.stamp_ns, 0.0))
            if depth:
                message = depth_message(typestore, frame.depth, frame.stamp_ns, LEFT_FRAME, depth_encoding)
                entries.append(BagEntry(DEPTH_TOPIC, IMAGE_TYPE, frame.stamp_ns, message))
            if stereo:
                entries += camera_entries(RIGHT_IMAGE_TOPIC, RIGHT_COMPRESSED_TOPIC, RIGHT_CAMERA_INFO_TOPIC,
                                          RIGHT_FRAME, frame.right_rgb, frame.right_stamp_ns, baseline_m)
            # Stable: at equal stamps left image, left info, depth, right image, right info.
            yield from sorted(entries, key=lambda entry: entry.stamp_ns)

    topics: List[Tuple[str, str]] = []
    if odometry:
        topics.append((ODOM_TOPIC, ODOMETRY_TYPE))
    if len(dropped.intersection(range(num_frames))) < num_frames:
        cameras = [(IMAGE_TOPIC, COMPRESSED_TOPIC, CAMERA_INFO_TOPIC)]
        if stereo:
            cameras.append((RIGHT_IMAGE_TOPIC, RIGHT_COMPRESSED_TOPIC, RIGHT_CAMERA_INFO_TOPIC))
        for number, (raw_topic, compressed_topic, info_topic) in enumerate(cameras):
            topics.append((compressed_topic, COMPRESSED_TYPE) if image_format else (raw_topic, IMAGE_TYPE))
            if camera_info:
                topics.append((info_topic, CAMERA_INFO_TYPE))
            if number == 0 and depth:
                topics.append((DEPTH_TOPIC, IMAGE_TYPE))
    odometry_entries = _odometry_entries(typestore, plan.trajectory, num_frames, rate_hz) if odometry else []
    # Camera entries before odometry at equal stamps (heapq.merge is stable across its inputs).
    entries = heapq.merge(frame_entries(), odometry_entries, key=lambda entry: entry.stamp_ns)
    bag_path = write_sorted_bag(path, entries, topics, storage=storage, typestore=typestore)
    if recording is None:
        return bag_path
    recording.path = bag_path
    return recording
