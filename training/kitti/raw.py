"""KITTI raw drives (synced + rectified) -> rosbag2: calibration, OXTS poses, velodyne ground truth.

A KITTI raw download is a date folder (``2011_09_26/``) holding ``calib_cam_to_cam.txt``,
``calib_velo_to_cam.txt``, ``calib_imu_to_velo.txt`` and drive folders
``2011_09_26_drive_XXXX_sync/`` with ``image_02/data/*.png`` (left colour camera),
``image_03/data/*.png`` (right), ``image_02/timestamps.txt``, ``oxts/data/*.txt`` (30 values a
line) and ``velodyne_points/data/*.bin`` (float32 x y z reflectance).

* :func:`load_calibration` -- the date folder's calibration (:class:`KittiCalibration`).
* :func:`velodyne_depth` -- the left camera's ground-truth depth from one scan, as the benchmark makes it.
* :func:`oxts_poses` -- OXTS packets -> 4x4 poses relative to the first frame, body-frame velocities.
* :func:`read_drive` -- the files of one drive, checked (:class:`KittiDrive`).
* :func:`split_frames` -- the frames of a split (:mod:`.splits`) per drive, for ``kitti_to_bag(frames=...)``.
* :func:`kitti_to_bag` -- drives -> one rosbag2 bag each, written through
  :mod:`mono_depth_ros.bagio.writer` with the builders of :mod:`mono_depth_ros.bagio.messages`.

Every problem with the files is a :class:`KittiError` naming the file and what to do.
CLI: ``python -m mono_depth_ros_training.kitti.raw --drive DIR [--drive DIR ...] --out OUT
[--split NAME [--neighbours N]]``.
"""
from __future__ import annotations

import argparse
import calendar
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from mono_depth_ros.bagio.messages import (
    TF_MESSAGE_TYPE,
    camera_info_message,
    depth_message,
    image_message,
    odometry_message,
    point_cloud_message,
    tf_message,
)
from mono_depth_ros.bagio.writer import BagEntry, check_storage, make_typestore, write_sorted_bag
from mono_depth_ros.geometry.rotations import rpy_to_matrix
from mono_depth_ros.msgtypes import CAMERA_INFO_TYPE, IMAGE_TYPE, ODOMETRY_TYPE, POINT_CLOUD_TYPE

EARTH_RADIUS_M = 6378137.0  # WGS84 equatorial radius, as KITTI's devkit (convertOxtsToPose) uses
OXTS_FIELDS = 30
LEFT_FRAME = "camera_left_optical"
RIGHT_FRAME = "camera_right_optical"
ODOM_FRAME = "odom"
IMU_FRAME = "imu_link"  # the OXTS unit: x forward, y left, z up
VELODYNE_FRAME = "velodyne"

LEFT_IMAGE_TOPIC = "/kitti/camera_left/image_raw"
LEFT_INFO_TOPIC = "/kitti/camera_left/camera_info"
RIGHT_IMAGE_TOPIC = "/kitti/camera_right/image_raw"
RIGHT_INFO_TOPIC = "/kitti/camera_right/camera_info"
# In the left camera's namespace, as the sample recording's /camera/depth beside /camera/image_raw,
# so that `train` and `evaluate` choose it on their own (32FC1 metres, 0 where no point).
DEPTH_TOPIC = "/kitti/camera_left/depth_gt"
ODOM_TOPIC = "/odom"
TF_STATIC_TOPIC = "/tf_static"
VELODYNE_TOPIC = "/kitti/velodyne_points"
TOPICS = (
    (TF_STATIC_TOPIC, TF_MESSAGE_TYPE),
    (LEFT_IMAGE_TOPIC, IMAGE_TYPE), (LEFT_INFO_TOPIC, CAMERA_INFO_TYPE),
    (RIGHT_IMAGE_TOPIC, IMAGE_TYPE), (RIGHT_INFO_TOPIC, CAMERA_INFO_TYPE),
    (DEPTH_TOPIC, IMAGE_TYPE), (ODOM_TOPIC, ODOMETRY_TYPE), (VELODYNE_TOPIC, POINT_CLOUD_TYPE),
)


class KittiError(Exception):
    """A KITTI file is missing, truncated or inconsistent; the message names it."""


# --------------------------------------------------------------------------- calibration


def read_calib_file(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """A KITTI calibration file (``key: v1 v2 ...`` lines) -> {key: float64 values}; non-numeric
    lines (``calib_time: ...``) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise KittiError(f"missing calibration file {path}: it comes with the drive's date folder in KITTI's "
                         f"raw download (the *_calib.zip of that date); unpack it next to the drive folders")
    values: Dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue
    return values


def _calib_entry(values: Dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    entry = values.get(key)
    if entry is None or entry.size != size:
        found = "missing" if entry is None else f"has {entry.size} values"
        raise KittiError(f"{path}: entry '{key}' {found}, expected {size} numbers; the file is damaged or not "
                         f"KITTI's, download the date's calibration again")
    return entry


def _rigid(R: np.ndarray, T: np.ndarray) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = R.reshape(3, 3)
    transform[:3, 3] = T.reshape(3)
    return transform


@dataclass(frozen=True)
class KittiCalibration:
    """One date's calibration. P_rect_02 / P_rect_03: (3, 4) projections of the rectified camera 0's
    frame into cameras 2 / 3; R_rect_00: (3, 3) rectifying rotation; T_cam_velo: (4, 4) velodyne ->
    unrectified camera 0; T_velo_imu: (4, 4) IMU -> velodyne; image_size: (width, height) of camera 2."""

    P_rect_02: np.ndarray
    P_rect_03: np.ndarray
    R_rect_00: np.ndarray
    T_cam_velo: np.ndarray
    T_velo_imu: np.ndarray
    image_size: Tuple[int, int]

    @property
    def K_left(self) -> np.ndarray:
        return self.P_rect_02[:, :3].copy()

    @property
    def K_right(self) -> np.ndarray:
        return self.P_rect_03[:, :3].copy()

    @staticmethod
    def camera_offset(P: np.ndarray) -> float:
        """x of the rectified camera 0's origin seen from the camera of ``P`` (P = K [I | t])."""
        return float((P[0, 3] - P[0, 2] * P[2, 3]) / P[0, 0])

    @property
    def baseline(self) -> float:
        """Distance in metres from the left (2) to the right (3) camera along x (about 0.54 m in KITTI)."""
        return self.camera_offset(self.P_rect_02) - self.camera_offset(self.P_rect_03)

    @staticmethod
    def camera_translation(P: np.ndarray) -> np.ndarray:
        """(3,) the rectified camera 0's origin in the frame of the camera of ``P`` (K^-1 P[:, 3])."""
        return np.linalg.solve(P[:, :3], P[:, 3])

    @property
    def T_left_velo(self) -> np.ndarray:
        """(4, 4) velodyne -> camera 2's rectified optical frame: [I | K^-1 P_rect_02[:, 3]] R_rect_00 T_cam_velo."""
        return _rigid(np.eye(3), self.camera_translation(self.P_rect_02)) @ _rigid(self.R_rect_00, np.zeros(3)) \
            @ self.T_cam_velo

    @property
    def T_left_right(self) -> np.ndarray:
        """(4, 4) camera 3 -> camera 2 (rectified, same orientation): the right camera at x = +baseline."""
        return _rigid(np.eye(3), self.camera_translation(self.P_rect_02) - self.camera_translation(self.P_rect_03))

    def static_transforms(self) -> List[Tuple[np.ndarray, str, str]]:
        """(T_parent_child, parent, child) for /tf_static: imu_link -> velodyne -> camera_left_optical
        -> camera_right_optical."""
        return [
            (np.linalg.inv(self.T_velo_imu), IMU_FRAME, VELODYNE_FRAME),
            (np.linalg.inv(self.T_left_velo), VELODYNE_FRAME, LEFT_FRAME),
            (self.T_left_right, LEFT_FRAME, RIGHT_FRAME),
        ]

    @property
    def P_velo_to_left(self) -> np.ndarray:
        """(3, 4) velodyne -> camera 2's pixels: P_rect_02 @ R_rect_00 @ T_cam_velo."""
        R_rect = np.eye(4)
        R_rect[:3, :3] = self.R_rect_00
        return self.P_rect_02 @ R_rect @ self.T_cam_velo


def load_calibration(date_dir: Union[str, Path]) -> KittiCalibration:
    """The calibration files of a KITTI date folder -> :class:`KittiCalibration` (KittiError when missing)."""
    date_dir = Path(date_dir)
    cam_path = date_dir / "calib_cam_to_cam.txt"
    velo_path = date_dir / "calib_velo_to_cam.txt"
    imu_path = date_dir / "calib_imu_to_velo.txt"
    cam, velo, imu = read_calib_file(cam_path), read_calib_file(velo_path), read_calib_file(imu_path)
    size = _calib_entry(cam, "S_rect_02", 2, cam_path)
    return KittiCalibration(
        P_rect_02=_calib_entry(cam, "P_rect_02", 12, cam_path).reshape(3, 4),
        P_rect_03=_calib_entry(cam, "P_rect_03", 12, cam_path).reshape(3, 4),
        R_rect_00=_calib_entry(cam, "R_rect_00", 9, cam_path).reshape(3, 3),
        T_cam_velo=_rigid(_calib_entry(velo, "R", 9, velo_path), _calib_entry(velo, "T", 3, velo_path)),
        T_velo_imu=_rigid(_calib_entry(imu, "R", 9, imu_path), _calib_entry(imu, "T", 3, imu_path)),
        image_size=(int(round(size[0])), int(round(size[1]))),
    )


# --------------------------------------------------------------------------- velodyne ground truth


def read_velodyne_size(path: Union[str, Path]) -> int:
    """The number of points in a velodyne scan; KittiError when missing or truncated."""
    path = Path(path)
    if not path.is_file():
        raise KittiError(f"missing velodyne scan {path}")
    size = path.stat().st_size
    if size % 16:
        raise KittiError(f"truncated velodyne scan {path}: {size} bytes is not a whole number of 16-byte points "
                         f"(float32 x y z reflectance); the download or unpacking was cut short, extract it again")
    return size // 16


def read_velodyne(path: Union[str, Path]) -> np.ndarray:
    """A velodyne scan (.bin, float32 x y z reflectance) -> (N, 4) float32; KittiError when truncated."""
    count = read_velodyne_size(path)
    return np.fromfile(path, dtype="<f4", count=count * 4).reshape(-1, 4)


def velodyne_depth(points: np.ndarray, calib: KittiCalibration, exact: bool = False) -> np.ndarray:
    """The left camera's (image_02) ground-truth depth from one scan -> (H, W) float32, 0 where no point.

    Points are taken to camera 2's pixels through ``P_rect_02 @ R_rect_00 @ T_cam_velo``; those
    behind the velodyne (x < 0) are dropped, pixel coordinates rounded, points outside the image
    dropped, and where several land on one pixel the nearest is kept.

    Default (``exact=False``): the published protocol, as Monodepth2's ``export_gt_depth.py``
    (``generate_depth_map(..., vel_depth=True)``) makes the ground truth behind its table: the value
    stored is the velodyne's forward distance x, not the camera's z (x is about 0.27 m larger in
    KITTI, the velodyne sitting behind the cameras), and every point moves one pixel up and left
    (``np.round(u) - 1``, a leftover from MATLAB's 1-based indexing). Use it so numbers compare with
    papers. ``exact=True``: the geometrically exact value, camera 2's z at the pixel the point
    projects to (``np.round(u)``), points with z <= 0 dropped.
    """
    points = np.asarray(points, dtype=np.float64)
    width, height = calib.image_size
    points = points[points[:, 0] >= 0.0]
    homogeneous = np.concatenate([points[:, :3], np.ones((len(points), 1))], axis=1)
    projected = homogeneous @ calib.P_velo_to_left.T
    z = projected[:, 2]
    keep = z > 0.0 if exact else z != 0.0
    projected, z, points = projected[keep], z[keep], points[keep]
    u = np.round(projected[:, 0] / z)
    v = np.round(projected[:, 1] / z)
    if exact:
        value = z
    else:
        u, v, value = u - 1, v - 1, points[:, 0]
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height) & (value > 0)
    depth = np.full((height, width), np.inf)
    np.minimum.at(depth, (v[inside].astype(np.int64), u[inside].astype(np.int64)), value[inside])
    depth[~np.isfinite(depth)] = 0.0
    return depth.astype(np.float32)


# --------------------------------------------------------------------------- OXTS


def read_oxts(path: Union[str, Path]) -> np.ndarray:
    """One OXTS packet file -> (30,) float64 (lat lon alt roll pitch yaw vn ve vf vl vu ax ... orimode)."""
    path = Path(path)
    if not path.is_file():
        raise KittiError(f"missing OXTS packet {path}")
    fields = path.read_text().split()
    try:
        values = np.array([float(v) for v in fields], dtype=np.float64)
    except ValueError as error:
        raise KittiError(f"OXTS packet {path} holds a non-number ({error}); extract the drive again") from None
    if values.size != OXTS_FIELDS:
        raise KittiError(f"OXTS packet {path} has {values.size} values, expected {OXTS_FIELDS} "
                         f"(lat lon alt roll pitch yaw ... orimode); the file is truncated, extract the drive again")
    return values


def oxts_poses(packets: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 30) OXTS packets -> (poses (N, 4, 4) of the IMU relative to the first frame (pose_0^-1 @
    pose_i), linear velocities (N, 3) and angular velocities (N, 3) in the IMU's body frame).

    As KITTI's devkit (convertOxtsToPose): Mercator scale from the first latitude, x = scale * R *
    lon * pi / 180, y = scale * R * log(tan((90 + lat) * pi / 360)), z = alt, R = Rz(yaw) Ry(pitch)
    Rx(roll); velocities are vf vl vu and wf wl wu (forward, left, up).
    """
    packets = np.asarray(packets, dtype=np.float64).reshape(-1, OXTS_FIELDS)
    scale = math.cos(math.radians(packets[0, 0]))
    poses = np.empty((len(packets), 4, 4))
    for index, packet in enumerate(packets):
        lat, lon, alt, roll, pitch, yaw = packet[:6]
        pose = np.eye(4)
        pose[:3, :3] = rpy_to_matrix(roll, pitch, yaw)
        pose[:3, 3] = (
            scale * EARTH_RADIUS_M * math.radians(lon),
            scale * EARTH_RADIUS_M * math.log(math.tan(math.radians(90.0 + lat) / 2.0)),
            alt,
        )
        poses[index] = pose
    poses = np.linalg.inv(poses[0]) @ poses
    return poses, packets[:, 8:11].copy(), packets[:, 20:23].copy()


# --------------------------------------------------------------------------- drives


def parse_timestamp(line: str) -> int:
    """'2011-09-26 13:02:25.964389445' (UTC) -> nanoseconds since the epoch."""
    date, clock = line.split()
    year, month, day = (int(v) for v in date.split("-"))
    hours, minutes, seconds = clock.split(":")
    whole, _, fraction = seconds.partition(".")
    epoch_s = calendar.timegm((year, month, day, int(hours), int(minutes), int(whole), 0, 0, 0))
    return epoch_s * 1_000_000_000 + int((fraction + "000000000")[:9])


@dataclass(frozen=True)
class KittiDrive:
    """The checked files of one synced drive (frames in order; same names in every folder)."""

    path: Path
    calibration: KittiCalibration
    stamps_ns: np.ndarray
    left_images: List[Path]
    right_images: List[Path]
    oxts_files: List[Path]
    velodyne_files: List[Path]
    oxts_packets: np.ndarray

    @property
    def name(self) -> str:
        return self.path.name


def _frame_files(folder: Path, suffix: str) -> List[Path]:
    if not folder.is_dir():
        raise KittiError(f"missing folder {folder}: a synced KITTI drive (*_sync) has image_02, image_03, oxts and "
                         f"velodyne_points, each with data/; download the drive's synced+rectified data")
    return sorted(folder.glob(f"*{suffix}"))


def read_drive(drive_dir: Union[str, Path], calib_dir: Optional[Union[str, Path]] = None) -> KittiDrive:
    """Check a ``<date>_drive_XXXX_sync`` folder -> :class:`KittiDrive` (KittiError naming what is wrong).

    calib_dir: the folder with the calibration files; default the drive's parent (the date folder).
    """
    drive_dir = Path(drive_dir)
    if not drive_dir.is_dir():
        raise KittiError(f"drive folder {drive_dir} does not exist")
    calibration = load_calibration(Path(calib_dir) if calib_dir else drive_dir.parent)
    folders = {
        "image_02": (drive_dir / "image_02" / "data", ".png"),
        "image_03": (drive_dir / "image_03" / "data", ".png"),
        "oxts": (drive_dir / "oxts" / "data", ".txt"),
        "velodyne_points": (drive_dir / "velodyne_points" / "data", ".bin"),
    }
    files = {name: _frame_files(folder, suffix) for name, (folder, suffix) in folders.items()}
    stamps_path = drive_dir / "image_02" / "timestamps.txt"
    if not stamps_path.is_file():
        raise KittiError(f"missing {stamps_path}: the left camera's frame times; extract the drive again")
    stamps_ns = np.array([parse_timestamp(line) for line in stamps_path.read_text().splitlines() if line.strip()],
                         dtype=np.int64)
    counts = {name: len(paths) for name, paths in files.items()}
    counts["image_02/timestamps.txt lines"] = len(stamps_ns)
    if len(set(counts.values())) != 1 or not stamps_ns.size:
        listing = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise KittiError(f"inconsistent frame counts in drive {drive_dir} ({listing}); the synced data has one file "
                         f"per frame in each folder: a folder was extracted partly, extract the drive again")
    stems = {name: [p.stem for p in paths] for name, paths in files.items()}
    for name, names in stems.items():
        if names != stems["image_02"]:
            first = next(a for a, b in zip(names, stems["image_02"]) if a != b)
            raise KittiError(f"drive {drive_dir}: {name} has frame '{first}' where image_02 has another; "
                             f"the folders do not hold the same frames")
    if np.any(np.diff(stamps_ns) <= 0):
        raise KittiError(f"{stamps_path}: timestamps do not increase")
    for path in files["velodyne_points"]:
        read_velodyne_size(path)
    packets = np.stack([read_oxts(path) for path in files["oxts"]])
    return KittiDrive(drive_dir, calibration, stamps_ns, files["image_02"], files["image_03"], files["oxts"],
                      files["velodyne_points"], packets)


def read_rgb(path: Path) -> np.ndarray:
    """A KITTI PNG -> (H, W, 3) uint8 RGB (KittiError when unreadable)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise KittiError(f"cannot read image {path} (missing or truncated PNG); extract the drive again")
    return np.ascontiguousarray(image[:, :, ::-1])


# --------------------------------------------------------------------------- the bag


def drive_entries(drive: KittiDrive, typestore, exact_depth: bool = False, progress: bool = True,
                  frames: Optional[Sequence[int]] = None) -> Iterator[BagEntry]:
    """The messages of one drive (``frames``: indices in increasing order, default all), frame by frame
    in stamp order, /tf_static first (see :func:`kitti_to_bag`)."""
    calib = drive.calibration
    width, height = calib.image_size
    poses, linear, angular = oxts_poses(drive.oxts_packets)  # relative to the drive's frame 0 whatever is kept
    frames = range(len(drive.stamps_ns)) if frames is None else list(frames)
    if not len(frames):
        return
    first = int(drive.stamps_ns[frames[0]])
    yield BagEntry(TF_STATIC_TOPIC, TF_MESSAGE_TYPE, first, tf_message(typestore, calib.static_transforms(), first))
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc=f"  {drive.name}", unit="frame")
    for index in frames:
        stamp = int(drive.stamps_ns[index])
        for path, topic, info_topic, frame, K, baseline in (
            (drive.left_images[index], LEFT_IMAGE_TOPIC, LEFT_INFO_TOPIC, LEFT_FRAME, calib.K_left, 0.0),
            (drive.right_images[index], RIGHT_IMAGE_TOPIC, RIGHT_INFO_TOPIC, RIGHT_FRAME, calib.K_right,
             calib.baseline),
        ):
            rgb = read_rgb(path)
            if rgb.shape[:2] != (height, width):
                raise KittiError(f"image {path} is {rgb.shape[1]}x{rgb.shape[0]}, the calibration's S_rect_02 says "
                                 f"{width}x{height}; is the calibration of this drive's date?")
            yield BagEntry(topic, IMAGE_TYPE, stamp, image_message(typestore, rgb, stamp, frame))
            info = camera_info_message(typestore, K, width, height, stamp, frame, baseline_m=baseline)
            yield BagEntry(info_topic, CAMERA_INFO_TYPE, stamp, info)
        points = read_velodyne(drive.velodyne_files[index])
        depth = velodyne_depth(points, calib, exact=exact_depth)
        yield BagEntry(DEPTH_TOPIC, IMAGE_TYPE, stamp, depth_message(typestore, depth, stamp, LEFT_FRAME))
        cloud = point_cloud_message(typestore, points, stamp, VELODYNE_FRAME, ("x", "y", "z", "intensity"))
        yield BagEntry(VELODYNE_TOPIC, POINT_CLOUD_TYPE, stamp, cloud)
        odometry = odometry_message(typestore, poses[index], linear[index], angular[index], stamp, ODOM_FRAME,
                                    IMU_FRAME)
        yield BagEntry(ODOM_TOPIC, ODOMETRY_TYPE, stamp, odometry)


def split_frames(name: str) -> Dict[str, List[int]]:
    """The frames split ``name`` (:func:`.splits.read_split`) uses, per drive folder name
    (``'2011_09_26_drive_0002_sync'``): sorted frame indices, left and right merged."""
    from mono_depth_ros_training.kitti.splits import read_split

    frames: Dict[str, set] = {}
    for frame in read_split(name):
        frames.setdefault(frame.drive.split("/", 1)[1], set()).add(frame.frame)
    return {drive: sorted(indices) for drive, indices in frames.items()}


def select_frames(wanted: Iterable[int], count: int, neighbours: int = 0, drive: str = "") -> List[int]:
    """Frame indices ``wanted`` plus frame +- 1 .. neighbours (those inside the drive) -> sorted,
    unique; KittiError for a wanted index outside 0 .. count - 1."""
    wanted = sorted({int(index) for index in wanted})
    outside = [index for index in wanted if not 0 <= index < count]
    if outside:
        raise KittiError(f"drive {drive} has frames 0..{count - 1}, frames {outside[:5]} were asked for; "
                         f"is the drive complete, and the split or frame list the one for this drive?")
    keep = {index + offset for index in wanted for offset in range(-neighbours, neighbours + 1)}
    return sorted(index for index in keep if 0 <= index < count)


def kitti_to_bag(
    drive_dirs: Sequence[Union[str, Path]],
    out: Union[str, Path],
    *,
    storage: str = "mcap",
    exact_depth: bool = False,
    calib_dir: Optional[Union[str, Path]] = None,
    progress: bool = True,
    frames: Optional[Mapping[str, Iterable[int]]] = None,
    neighbours: int = 0,
) -> List[Path]:
    """Convert KITTI raw drives (synced + rectified) -> one new bag directory per drive, ``out/<drive name>``.

    Every drive's files are checked (counts, names, stamps, calibration, OXTS, scan sizes) before
    anything is written; a bag that fails half-way (an unreadable PNG) is removed. Topics, stamps from image_02/timestamps.txt:

    * ``/kitti/camera_left/image_raw`` + ``camera_info`` (rgb8; K = P_rect_02[:, :3], D zeros,
      R identity, P = [K | 0]; frame ``camera_left_optical``);
    * ``/kitti/camera_right/image_raw`` + ``camera_info`` (K = P_rect_03[:, :3], P[0, 3] = -fx * baseline,
      the baseline from camera 2 to camera 3 as ROS writes a right camera, about 0.54 m; frame
      ``camera_right_optical``);
    * ``/kitti/camera_left/depth_gt`` -- 32FC1 metres, 0 where no velodyne point
      (:func:`velodyne_depth`; the published protocol's values unless ``exact_depth``);
    * ``/odom`` -- nav_msgs/Odometry of ``imu_link`` (the OXTS unit) in ``odom``, the first frame's
      pose (:func:`oxts_poses`), with body-frame velocities;
    * ``/kitti/velodyne_points`` -- the scan as an unorganised PointCloud2 (x y z intensity float32,
      frame ``velodyne``);
    * ``/tf_static`` -- one tf2_msgs/TFMessage at the first stamp (latched by convention, a
      transient-local topic when played): imu_link -> velodyne (calib_imu_to_velo), velodyne ->
      camera_left_optical (rectified camera 2: T_cam_velo, R_rect_00, P_rect_02's offset),
      camera_left_optical -> camera_right_optical (the baseline along x).

    frames: {drive folder name: frame indices} to convert only those (e.g. :func:`split_frames`),
    each with its ``neighbours`` frames either side (for temporal training); a drive missing from
    it is an error. Odometry stays relative to the drive's frame 0.
    """
    check_storage(storage)
    out = Path(out)
    drives = [read_drive(path, calib_dir) for path in drive_dirs]
    names = [drive.name for drive in drives]
    if len(set(names)) != len(names):
        raise KittiError(f"the same drive name twice among {names}; each becomes a bag {out}/<drive name>")
    selected: Dict[str, Optional[List[int]]] = {drive.name: None for drive in drives}
    if frames is not None:
        for drive in drives:
            if drive.name not in frames:
                raise KittiError(f"drive {drive.name} has no frames in the frame list (split); leave it out")
            selected[drive.name] = select_frames(frames[drive.name], len(drive.stamps_ns), neighbours, drive.name)
    for drive in drives:
        if (out / drive.name).exists():
            raise KittiError(f"{out / drive.name} exists; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    typestore = make_typestore()
    bags = []
    for drive in drives:
        entries = drive_entries(drive, typestore, exact_depth=exact_depth, progress=progress,
                                frames=selected[drive.name])
        try:
            bags.append(write_sorted_bag(out / drive.name, entries, TOPICS, storage, typestore))
        except BaseException:
            shutil.rmtree(out / drive.name, ignore_errors=True)  # no half-written bag left behind
            raise
    return bags


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mono_depth_ros_training.kitti.raw",
        description="Convert KITTI raw drives (synced + rectified) to rosbag2 bags, one per drive under --out.",
    )
    parser.add_argument("--drive", action="append", required=True, metavar="DIR",
                        help="a <date>/<date>_drive_XXXX_sync folder (repeat for several)")
    parser.add_argument("--out", required=True, help="folder for the bags (one per drive, named after it)")
    parser.add_argument("--calib-dir", default=None, help="folder with the calib_*.txt files (default: the date folder)")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    parser.add_argument("--exact-depth", action="store_true",
                        help="ground truth as camera z at the exact pixel (default: the published protocol's)")
    parser.add_argument("--split", default=None, help="convert only the frames this split uses (eigen_test, "
                        "eigen_zhou_train, eigen_zhou_val)")
    parser.add_argument("--neighbours", type=int, default=1, metavar="N",
                        help="with --split, also keep frames -N..+N around each (temporal training; default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.neighbours < 0:
        parser.error("--neighbours must be >= 0")
    try:
        frames = split_frames(args.split) if args.split else None
    except ValueError as error:  # an unknown split name
        print(f"error: {error}")
        return 2
    try:
        bags = kitti_to_bag(args.drive, args.out, storage=args.storage, exact_depth=args.exact_depth,
                            calib_dir=args.calib_dir, progress=not args.no_progress, frames=frames,
                            neighbours=args.neighbours)
    except KittiError as error:
        print(f"error: {error}")
        return 2
    for bag in bags:
        print(f"wrote {bag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
