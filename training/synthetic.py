"""Small synthetic rosbag2 recordings with exact depth, for tests and smoke runs.

A camera drives forward down a textured corridor (ground, ceiling, side walls, an end
wall and a few boxes). Every pixel is ray cast with NumPy, so the depth published on
the depth topic is exact (metres along the optical axis) and the odometry is the pose
the images were rendered from.

Frames
------
* ``odom``: REP 103 world frame, x forward along the corridor, y left, z up; the
  ground is z = 0.
* ``camera_link``: the camera body (x forward, y left, z up) at the left camera's
  optical centre; /odom carries T_odom_camera_link.
* ``camera_optical_frame``: ROS optical frame of the left camera (x right, y down, z
  forward). The right camera is ``baseline_m`` along +x of the left optical frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

STAMP_ORIGIN_NS = 1_700_000_000 * 1_000_000_000  # first image stamp (a plausible wall-clock time)
LEFT_FRAME = "camera_optical_frame"
RIGHT_FRAME = "camera_right_optical_frame"
BODY_FRAME = "camera_link"
ODOM_FRAME = "odom"

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
DEPTH_TOPIC = "/camera/depth"
RIGHT_IMAGE_TOPIC = "/camera_right/image_raw"
RIGHT_COMPRESSED_TOPIC = "/camera_right/image_raw/compressed"
RIGHT_CAMERA_INFO_TOPIC = "/camera_right/camera_info"
ODOM_TOPIC = "/odom"

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"

# Rotation taking optical-frame vectors into the body frame (columns: optical x, y, z in body).
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# --------------------------------------------------------------------------- camera


def camera_intrinsics(width: int, height: int) -> np.ndarray:
    """Pinhole K (3, 3) used by the synthetic camera: square pixels, ~70 deg horizontal FOV,
    principal point deliberately off-centre so flips and resizes are exercised."""
    focal = 0.7 * width
    return np.array(
        [[focal, 0.0, 0.5 * width + 0.7], [0.0, focal, 0.5 * height - 0.4], [0.0, 0.0, 1.0]]
    )


def camera_rays(
    K: np.ndarray,
    width: int,
    height: int,
    distortion: Optional[Sequence[float]] = None,
    distortion_model: str = "plumb_bob",
) -> np.ndarray:
    """Ray of every pixel centre in the optical frame, scaled so z == 1.

    -> (3, H*W), row-major pixel order. With distortion, pixel (u, v) of the *distorted*
    image looks along the ray whose distorted projection is (u, v).
    """
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    pixels = np.stack([u.ravel(), v.ravel()], axis=-1)
    if distortion is None or not np.any(np.asarray(distortion, dtype=np.float64)):
        xy = (pixels - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])
    else:
        D = np.asarray(distortion, dtype=np.float64)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
        points = pixels.reshape(-1, 1, 2)
        if distortion_model == "equidistant":
            xy = cv2.fisheye.undistortPoints(points, K, D.reshape(4, 1), criteria=criteria).reshape(-1, 2)
        elif distortion_model in ("plumb_bob", "rational_polynomial"):
            if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
                xy = cv2.undistortPointsIter(points, K, D, None, None, criteria)
            else:  # OpenCV 5 takes the criteria directly
                xy = cv2.undistortPoints(points, K, D, None, None, None, criteria)
            xy = xy.reshape(-1, 2)
        else:
            raise ValueError(f"unsupported distortion model '{distortion_model}' (plumb_bob, equidistant)")
    return np.concatenate([xy.T, np.ones((1, xy.shape[0]))], axis=0)


# --------------------------------------------------------------------------- scene


def _hash01(ix: np.ndarray, iy: np.ndarray, key) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1] per integer lattice point."""
    h = ix.astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B1)
    h = h + iy.astype(np.int64).astype(np.uint64) * np.uint64(0x85EBCA77)
    h = h + (np.asarray(key, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint64) * np.uint64(0xC2B2AE3D)
    h ^= h >> np.uint64(15)
    h *= np.uint64(0x2C1B3C6D)
    h ^= h >> np.uint64(12)
    h *= np.uint64(0x297A2D39)
    h ^= h >> np.uint64(15)
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(0xFFFFFF)


def _value_noise(s: np.ndarray, t: np.ndarray, period: float, key) -> np.ndarray:
    """Smoothly interpolated lattice noise in [0, 1] with the given period (metres)."""
    gs, gt = s / period, t / period
    i0, j0 = np.floor(gs), np.floor(gt)
    fs, ft = gs - i0, gt - j0
    fs, ft = fs * fs * (3.0 - 2.0 * fs), ft * ft * (3.0 - 2.0 * ft)
    n00 = _hash01(i0, j0, key)
    n10 = _hash01(i0 + 1, j0, key)
    n01 = _hash01(i0, j0 + 1, key)
    n11 = _hash01(i0 + 1, j0 + 1, key)
    return (n00 * (1 - fs) + n10 * fs) * (1 - ft) + (n01 * (1 - fs) + n11 * fs) * ft


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the odom frame."""

    minimum: Tuple[float, float, float]
    maximum: Tuple[float, float, float]


@dataclass(frozen=True)
class CorridorScene:
    """Textured corridor along odom +x; ground at z = 0."""

    half_width: float = 2.5
    ceiling: float = 3.5
    end_x: float = 80.0
    back_x: float = -30.0
    boxes: Tuple[Box, ...] = ()
    seed: int = 0

    @staticmethod
    def with_boxes(seed: int = 0, count: int = 6) -> "CorridorScene":
        rng = np.random.default_rng(seed)
        boxes = []
        for index in range(count):
            side = 1.0 if index % 2 == 0 else -1.0
            x = 4.0 + 3.5 * index + rng.uniform(0.0, 2.0)
            y = side * rng.uniform(1.3, 1.9)
            size = rng.uniform(0.3, 0.55, size=3)
            boxes.append(Box((x - size[0], y - size[1], 0.0), (x + size[0], y + size[1], 2.0 * size[2])))
        return CorridorScene(boxes=tuple(boxes), seed=seed)

    def _planes(self):
        # (normal axis, offset, surface id)
        return [
            (2, 0.0, 0),  # ground
            (2, self.ceiling, 1),
            (1, self.half_width, 2),  # left wall
            (1, -self.half_width, 3),  # right wall
            (0, self.end_x, 4),
            (0, self.back_x, 5),
        ]

    def intersect(self, origin: np.ndarray, directions: np.ndarray):
        """Nearest surface along rays origin + t * directions.

        origin: (3,) odom, directions: (3, N) odom -> (t (N,), normal axis (N,), surface id (N,)).
        """
        count = directions.shape[1]
        best_t = np.full(count, np.inf)
        best_axis = np.zeros(count, dtype=np.int64)
        best_id = np.full(count, -1, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis, offset, surface in self._planes():
                t = (offset - origin[axis]) / directions[axis]
                hit = (t > 1e-9) & (t < best_t)
                best_t = np.where(hit, t, best_t)
                best_axis[hit] = axis
                best_id[hit] = surface
            for index, box in enumerate(self.boxes):
                low = (np.asarray(box.minimum)[:, None] - origin[:, None]) / directions
                high = (np.asarray(box.maximum)[:, None] - origin[:, None]) / directions
                near = np.minimum(low, high)
                far = np.maximum(low, high)
                near = np.where(np.isnan(near), -np.inf, near)
                far = np.where(np.isnan(far), np.inf, far)
                t_near = near.max(axis=0)
                t_far = far.min(axis=0)
                hit = (t_near <= t_far) & (t_near > 1e-9) & (t_near < best_t)
                best_t = np.where(hit, t_near, best_t)
                best_axis[hit] = near.argmax(axis=0)[hit]
                best_id[hit] = 10 + index
        return best_t, best_axis, best_id

    def shade(self, points: np.ndarray, axis: np.ndarray, surface: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colour of surface points. points: (3, N) odom, footprint: (N,) metres per pixel -> (N, 3) in [0, 1]."""
        # Surface coordinates: the two odom coordinates orthogonal to the normal axis.
        s = np.where(axis == 0, points[1], points[0])
        t = np.where(axis == 2, points[1], points[2])
        luminance = np.full(s.shape, 0.5)
        # Octaves fade out as they approach the pixel size (cheap anti-aliasing).
        for octave, period in enumerate((1.6, 0.8, 0.4, 0.2, 0.1, 0.05)):
            weight = np.clip((period / np.maximum(footprint, 1e-9) - 2.0) / 2.0, 0.0, 1.0)
            noise = _value_noise(s, t, period, surface * 7919 + self.seed * 104729 + octave)
            luminance += 0.55 * weight * (noise - 0.5) * (0.85 ** octave)
        checker_period = 0.5
        checker_weight = np.clip((checker_period / np.maximum(footprint, 1e-9) - 2.0) / 2.0, 0.0, 1.0)
        checker = np.sin(2 * np.pi * s / checker_period) * np.sin(2 * np.pi * t / checker_period)
        luminance += 0.18 * checker_weight * checker
        palette = np.array(
            [
                [0.55, 0.50, 0.45],  # ground
                [0.75, 0.75, 0.80],  # ceiling
                [0.80, 0.55, 0.40],  # left wall
                [0.40, 0.55, 0.75],  # right wall
                [0.60, 0.75, 0.50],  # end wall
                [0.70, 0.70, 0.70],  # back wall
            ]
        )
        box_palette = np.array([[0.85, 0.35, 0.30], [0.30, 0.70, 0.40], [0.85, 0.75, 0.30], [0.55, 0.40, 0.80]])
        base = np.where(
            (surface >= 10)[:, None],
            box_palette[np.clip(surface - 10, 0, None) % len(box_palette)],
            palette[np.clip(surface, 0, 5)],
        )
        light = np.array([0.8, 0.9, 1.0])[axis]  # faces lit differently so box edges show
        colour = base * (luminance * light)[:, None] * 1.25
        return np.clip(colour, 0.0, 1.0)

    def render(
        self, rays_optical: np.ndarray, T_odom_optical: np.ndarray, width: int, height: int, focal: float
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Ray cast one view.

        rays_optical: (3, H*W) with z == 1, T_odom_optical: (4, 4) camera pose
        -> (rgb (H, W, 3) uint8, depth (H, W) float32 metres along the optical axis).
        """
        directions = T_odom_optical[:3, :3] @ rays_optical
        origin = T_odom_optical[:3, 3]
        depth, axis, surface = self.intersect(origin, directions)
        points = origin[:, None] + directions * depth
        ray_length = np.linalg.norm(directions, axis=0)
        cos_incidence = np.abs(directions[axis, np.arange(directions.shape[1])]) / ray_length
        footprint = depth * ray_length / focal / np.maximum(cos_incidence, 0.2)
        colour = self.shade(points, axis, surface, footprint)
        rgb = np.round(colour * 255.0).astype(np.uint8).reshape(height, width, 3)
        return rgb, depth.astype(np.float32).reshape(height, width)


# --------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class Trajectory:
    """Camera motion: forward along odom x with varying speed, small sway and yaw.

    The camera stands still for the first ``static_s`` seconds.
    """

    speed_mps: float = 1.0
    static_s: float = 0.0
    camera_height: float = 1.4
    start_x: float = 0.0

    def body_pose(self, time_s: float) -> Tuple[np.ndarray, float]:
        """-> (position (3,) of camera_link in odom, yaw radians)."""
        tau = max(0.0, time_s - self.static_s)
        amplitude, period = 0.25, 3.0
        x = self.start_x + self.speed_mps * (
            tau + amplitude * period / (2 * math.pi) * (1.0 - math.cos(2 * math.pi * tau / period))
        )
        y = 0.12 * math.sin(2 * math.pi * tau / 4.0) * min(1.0, self.speed_mps)
        yaw = 0.04 * math.sin(2 * math.pi * tau / 2.7) * min(1.0, self.speed_mps)
        return np.array([x, y, self.camera_height]), yaw

    def T_odom_body(self, time_s: float) -> np.ndarray:
        position, yaw = self.body_pose(time_s)
        T = np.eye(4)
        c, s = math.cos(yaw), math.sin(yaw)
        T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        T[:3, 3] = position
        return T

    def T_odom_optical(self, time_s: float, offset_x_m: float = 0.0) -> np.ndarray:
        """Pose (4, 4) of an optical frame offset by offset_x_m along the left optical x axis."""
        T_body_optical = np.eye(4)
        T_body_optical[:3, :3] = R_BODY_OPTICAL
        T_body_optical[:3, 3] = R_BODY_OPTICAL @ np.array([offset_x_m, 0.0, 0.0])
        return self.T_odom_body(time_s) @ T_body_optical


# --------------------------------------------------------------------------- messages


def make_typestore():
    """rosbags typestore with the ROS 2 Humble message definitions."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def _header(typestore, stamp_ns: int, frame_id: str):
    Time = typestore.types["builtin_interfaces/msg/Time"]
    Header = typestore.types["std_msgs/msg/Header"]
    seconds, nanoseconds = divmod(int(stamp_ns), 1_000_000_000)
    return Header(stamp=Time(sec=seconds, nanosec=nanoseconds), frame_id=frame_id)


def _rgb_to_encoding(rgb: np.ndarray, encoding: str) -> Tuple[np.ndarray, int]:
    """RGB (H, W, 3) uint8 -> (pixels in `encoding`, channels)."""
    if encoding == "rgb8":
        return rgb, 3
    if encoding == "bgr8":
        return rgb[:, :, ::-1], 3
    if encoding == "rgba8":
        return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2), 4
    if encoding == "bgra8":
        return np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2), 4
    if encoding == "mono8":
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        return grey[:, :, None], 1
    raise ValueError(f"unsupported synthetic encoding '{encoding}' (rgb8, bgr8, rgba8, bgra8, mono8)")


def image_message(typestore, rgb: np.ndarray, stamp_ns: int, frame_id: str = LEFT_FRAME, encoding: str = "rgb8"):
    """sensor_msgs/Image from an RGB (H, W, 3) uint8 array, converted to `encoding`."""
    pixels, channels = _rgb_to_encoding(rgb, encoding)
    height, width = rgb.shape[:2]
    Image = typestore.types[IMAGE_TYPE]
    return Image(
        header=_header(typestore, stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
        data=np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1),
    )


def compressed_image_message(
    typestore,
    rgb: np.ndarray,
    stamp_ns: int,
    frame_id: str = LEFT_FRAME,
    image_format: str = "jpeg",
    encoding: str = "rgb8",
):
    """sensor_msgs/CompressedImage as image_transport's compressed plugin writes it."""
    pixels, channels = _rgb_to_encoding(rgb, encoding)
    if channels == 1:
        to_encode, coded = pixels[:, :, 0], "mono8"
    else:
        to_encode, coded = np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8"  # OpenCV encodes BGR
    extension = {"jpeg": ".jpg", "png": ".png"}.get(image_format)
    if extension is None:
        raise ValueError(f"unsupported compressed format '{image_format}' (jpeg, png)")
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buffer = cv2.imencode(extension, np.ascontiguousarray(to_encode), params)
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for {image_format}")
    CompressedImage = typestore.types[COMPRESSED_TYPE]
    return CompressedImage(
        header=_header(typestore, stamp_ns, frame_id),
        format=f"{encoding}; {image_format} compressed {coded}",
        data=np.asarray(buffer, dtype=np.uint8).reshape(-1),
    )


def depth_message(typestore, depth: np.ndarray, stamp_ns: int, frame_id: str = LEFT_FRAME, encoding: str = "32FC1"):
    """sensor_msgs/Image depth: 32FC1 metres or 16UC1 millimetres (0 = invalid)."""
    height, width = depth.shape
    if encoding == "32FC1":
        data = np.ascontiguousarray(depth, dtype="<f4").reshape(-1).view(np.uint8)
        step = width * 4
    elif encoding == "16UC1":
        millimetres = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0.0)
        millimetres[millimetres > 65535] = 0.0  # out of range is invalid, not clipped
        data = millimetres.astype("<u2").reshape(-1).view(np.uint8)
        step = width * 2
    else:
        raise ValueError(f"unsupported depth encoding '{encoding}' (32FC1, 16UC1)")
    Image = typestore.types[IMAGE_TYPE]
    return Image(
        header=_header(typestore, stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=data,
    )


def camera_info_message(
    typestore,
    K: np.ndarray,
    width: int,
    height: int,
    stamp_ns: int,
    frame_id: str = LEFT_FRAME,
    distortion: Optional[Sequence[float]] = None,
    distortion_model: str = "plumb_bob",
    baseline_m: float = 0.0,
):
    """sensor_msgs/CameraInfo; for a right camera P[3] = -fx * baseline (ROS convention)."""
    if distortion is None:
        D = np.zeros(4 if distortion_model == "equidistant" else 5)
    else:
        D = np.asarray(distortion, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    P[0, 3] = -K[0, 0] * baseline_m
    CameraInfo = typestore.types[CAMERA_INFO_TYPE]
    RegionOfInterest = typestore.types["sensor_msgs/msg/RegionOfInterest"]
    return CameraInfo(
        header=_header(typestore, stamp_ns, frame_id),
        height=height,
        width=width,
        distortion_model=distortion_model,
        d=D,
        k=np.asarray(K, dtype=np.float64).reshape(9),
        r=np.eye(3).reshape(9),
        p=P.reshape(12),
        binning_x=0,
        binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def odometry_message(typestore, T_odom_body: np.ndarray, linear: np.ndarray, yaw_rate: float, stamp_ns: int):
    """nav_msgs/Odometry: pose of camera_link in odom; twist in camera_link."""
    ns = typestore.types
    R = T_odom_body[:3, :3]
    # Yaw-only rotation -> quaternion about z.
    yaw = math.atan2(R[1, 0], R[0, 0])
    pose = ns["geometry_msgs/msg/Pose"](
        position=ns["geometry_msgs/msg/Point"](
            x=float(T_odom_body[0, 3]), y=float(T_odom_body[1, 3]), z=float(T_odom_body[2, 3])
        ),
        orientation=ns["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)),
    )
    Vector3 = ns["geometry_msgs/msg/Vector3"]
    twist = ns["geometry_msgs/msg/Twist"](
        linear=Vector3(x=float(linear[0]), y=float(linear[1]), z=float(linear[2])),
        angular=Vector3(x=0.0, y=0.0, z=float(yaw_rate)),
    )
    covariance = np.zeros(36)
    return ns[ODOMETRY_TYPE](
        header=_header(typestore, stamp_ns, ODOM_FRAME),
        child_frame_id=BODY_FRAME,
        pose=ns["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=covariance),
        twist=ns["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=covariance.copy()),
    )


@dataclass
class BagEntry:
    """One message to write: bag receive time = header stamp unless given."""

    topic: str
    msgtype: str
    stamp_ns: int
    message: object


def write_bag(
    path: Union[str, Path],
    entries: Iterable[BagEntry],
    storage: str = "mcap",
    typestore=None,
    empty_topics: Sequence[Tuple[str, str]] = (),
) -> Path:
    """Write messages into a new rosbag2 directory (sorted by stamp).

    empty_topics: (topic, msgtype) connections to declare without messages.
    -> the bag directory.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got '{storage}'")
    typestore = typestore or make_typestore()
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; write_bag creates a new bag directory")
    entries = sorted(entries, key=lambda entry: entry.stamp_ns)  # stable: keeps topic order per stamp
    with Writer(path, version=8, storage_plugin=plugins[storage]) as writer:
        connections = {}
        for entry in entries:
            if entry.topic not in connections:
                connections[entry.topic] = writer.add_connection(entry.topic, entry.msgtype, typestore=typestore)
        for topic, msgtype in empty_topics:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
        for entry in entries:
            data = typestore.serialize_cdr(entry.message, entry.msgtype)
            writer.write(connections[entry.topic], entry.stamp_ns, data)
    return path


def storage_file(bag_dir: Union[str, Path]) -> Path:
    """The single .mcap or .db3 storage file inside a bag directory written by write_bag."""
    files = sorted(Path(bag_dir).glob("*.mcap")) + sorted(Path(bag_dir).glob("*.db3"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one storage file in {bag_dir}, found {[f.name for f in files]}")
    return files[0]


# --------------------------------------------------------------------------- recordings


@dataclass
class SyntheticRecording:
    """What write_synthetic_bag rendered (for tests that compare against ground truth)."""

    path: Path
    K: np.ndarray
    stamps_ns: List[int]
    images: List[np.ndarray] = field(default_factory=list)  # left RGB (H, W, 3) uint8
    depths: List[np.ndarray] = field(default_factory=list)  # left depth (H, W) float32
    right_images: List[np.ndarray] = field(default_factory=list)
    right_stamps_ns: List[int] = field(default_factory=list)
    poses: List[np.ndarray] = field(default_factory=list)  # T_odom_optical (4, 4) of the left camera
    trajectory: Optional[Trajectory] = None
    scene: Optional[CorridorScene] = None


def render_recording(
    *,
    num_frames: int = 40,
    width: int = 160,
    height: int = 96,
    rate_hz: float = 10.0,
    speed_mps: float = 1.0,
    stereo: bool = True,
    baseline_m: float = 0.2,
    static_frames: int = 0,
    seed: int = 0,
    distortion: Optional[Sequence[float]] = None,
    distortion_model: str = "plumb_bob",
    stereo_offset_s: float = 0.0,
) -> SyntheticRecording:
    """Render the frames of a synthetic recording without writing a bag (path is empty)."""
    if num_frames < 1 or width < 8 or height < 8 or rate_hz <= 0:
        raise ValueError("need num_frames >= 1, width and height >= 8, rate_hz > 0")
    K = camera_intrinsics(width, height)
    scene = CorridorScene.with_boxes(seed)
    trajectory = Trajectory(speed_mps=speed_mps, static_s=static_frames / rate_hz)
    rays = camera_rays(K, width, height, distortion, distortion_model)
    recording = SyntheticRecording(path=Path(), K=K, stamps_ns=[], trajectory=trajectory, scene=scene)
    period_ns = int(round(1e9 / rate_hz))
    for index in range(num_frames):
        stamp_ns = STAMP_ORIGIN_NS + index * period_ns
        time_s = index * period_ns * 1e-9
        pose = trajectory.T_odom_optical(time_s)
        rgb, depth = scene.render(rays, pose, width, height, K[0, 0])
        recording.stamps_ns.append(stamp_ns)
        recording.images.append(rgb)
        recording.depths.append(depth)
        recording.poses.append(pose)
        if stereo:
            offset_ns = int(round(stereo_offset_s * 1e9))
            right_pose = trajectory.T_odom_optical(time_s + offset_ns * 1e-9, offset_x_m=baseline_m)
            right_rgb, _ = scene.render(rays, right_pose, width, height, K[0, 0])
            recording.right_images.append(right_rgb)
            recording.right_stamps_ns.append(stamp_ns + offset_ns)
    return recording


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
):
    """Render a drive down a textured corridor and write it as a rosbag2 directory.

    Topics: /camera/image_raw (or /camera/image_raw/compressed when `compressed` is True,
    "jpeg" or "png"; True means jpeg), /camera/camera_info (exact K; D zero unless
    `distortion`), /camera/depth (32FC1 metres or 16UC1 mm, same stamps), with `stereo`
    /camera_right/image_raw[/compressed] + /camera_right/camera_info (P[3] = -fx * baseline),
    with `odometry` /odom (nav_msgs/Odometry of camera_link at 2x the image rate, offset
    stamps, so readers must interpolate). The camera stands still for `static_frames`
    frames first. Frames listed in `drop_frames` are left out of every camera topic (a
    recording gap). -> the bag directory, or a SyntheticRecording with `return_recording`.
    """
    typestore = make_typestore()
    recording = render_recording(
        num_frames=num_frames,
        width=width,
        height=height,
        rate_hz=rate_hz,
        speed_mps=speed_mps,
        stereo=stereo,
        baseline_m=baseline_m,
        static_frames=static_frames,
        seed=seed,
        distortion=distortion,
        distortion_model=distortion_model,
        stereo_offset_s=stereo_offset_s,
    )
    image_format = None
    if compressed:
        image_format = "jpeg" if compressed is True else str(compressed)
    K = recording.K
    entries: List[BagEntry] = []

    dropped = set(int(i) for i in drop_frames)

    def add_camera(raw_topic: str, compressed_topic: str, info_topic: str, frame: str, images, stamps, baseline):
        for index, (rgb, stamp_ns) in enumerate(zip(images, stamps)):
            if index in dropped:
                continue
            if image_format:
                message = compressed_image_message(typestore, rgb, stamp_ns, frame, image_format, encoding)
                entries.append(BagEntry(compressed_topic, COMPRESSED_TYPE, stamp_ns, message))
            else:
                message = image_message(typestore, rgb, stamp_ns, frame, encoding)
                entries.append(BagEntry(raw_topic, IMAGE_TYPE, stamp_ns, message))
            if camera_info:
                info = camera_info_message(
                    typestore, K, width, height, stamp_ns, frame, distortion, distortion_model, baseline
                )
                entries.append(BagEntry(info_topic, CAMERA_INFO_TYPE, stamp_ns, info))

    add_camera(IMAGE_TOPIC, COMPRESSED_TOPIC, CAMERA_INFO_TOPIC, LEFT_FRAME, recording.images, recording.stamps_ns, 0.0)
    if depth:
        for index, (depth_map, stamp_ns) in enumerate(zip(recording.depths, recording.stamps_ns)):
            if index in dropped:
                continue
            message = depth_message(typestore, depth_map, stamp_ns, LEFT_FRAME, depth_encoding)
            entries.append(BagEntry(DEPTH_TOPIC, IMAGE_TYPE, stamp_ns, message))
    if stereo:
        add_camera(
            RIGHT_IMAGE_TOPIC,
            RIGHT_COMPRESSED_TOPIC,
            RIGHT_CAMERA_INFO_TOPIC,
            RIGHT_FRAME,
            recording.right_images,
            recording.right_stamps_ns,
            baseline_m,
        )
    if odometry:
        trajectory = recording.trajectory
        odom_period_s = 0.5 / rate_hz
        first_s = -odom_period_s + 0.013 / rate_hz * 10  # offset from image stamps on purpose
        last_s = (num_frames - 1) / rate_hz + odom_period_s
        count = int(math.floor((last_s - first_s) / odom_period_s)) + 2
        for index in range(count):
            time_s = first_s + index * odom_period_s
            stamp_ns = STAMP_ORIGIN_NS + int(round(time_s * 1e9))
            T = trajectory.T_odom_body(time_s)
            delta = 1e-4
            ahead, behind = trajectory.T_odom_body(time_s + delta), trajectory.T_odom_body(time_s - delta)
            velocity_odom = (ahead[:3, 3] - behind[:3, 3]) / (2 * delta)
            yaw_rate = (
                math.atan2(ahead[1, 0], ahead[0, 0]) - math.atan2(behind[1, 0], behind[0, 0])
            ) / (2 * delta)
            message = odometry_message(typestore, T, T[:3, :3].T @ velocity_odom, yaw_rate, stamp_ns)
            entries.append(BagEntry(ODOM_TOPIC, ODOMETRY_TYPE, stamp_ns, message))
    bag_path = write_bag(path, entries, storage=storage, typestore=typestore)
    recording.path = bag_path
    return recording if return_recording else bag_path
