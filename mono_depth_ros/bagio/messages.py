"""Building rosbags message objects (ROS 2 Humble definitions) from NumPy arrays.

Used by the sample-recording renderer (:mod:`mono_depth_ros.simulation`), ``infer_bag`` and
test fixtures: :func:`header_message`, :func:`image_from_fields` (any sensor_msgs/Image),
:func:`image_message` (RGB in a colour encoding), :func:`compressed_image_message`,
:func:`depth_message` (32FC1 / 16UC1), :func:`camera_info_message`, :func:`odometry_message`,
:func:`transform_message` / :func:`tf_message` (tf2_msgs/TFMessage) and :func:`point_cloud_message`
(an unorganised float32 sensor_msgs/PointCloud2).
Every function takes the rosbags typestore the message is for (:func:`.writer.make_typestore`).
No ROS, no torch.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import cv2
import numpy as np

from mono_depth_ros.geometry.rotations import matrix_to_quaternion
from mono_depth_ros.msgtypes import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    ODOMETRY_TYPE,
    POINT_CLOUD_TYPE,
    POINT_FIELD_TYPE,
)

TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"
TRANSFORM_STAMPED_TYPE = "geometry_msgs/msg/TransformStamped"
POINT_FIELD_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32

# Default frame ids (REP 105 names): the camera's optical frame, the odometry frame and the camera body.
OPTICAL_FRAME = "camera_optical_frame"
ODOM_FRAME = "odom"
BODY_FRAME = "camera_link"


def header_message(typestore, stamp_ns: int, frame_id: str):
    """std_msgs/Header with stamp ``stamp_ns`` (nanoseconds)."""
    Time = typestore.types["builtin_interfaces/msg/Time"]
    Header = typestore.types["std_msgs/msg/Header"]
    seconds, nanoseconds = divmod(int(stamp_ns), 1_000_000_000)
    return Header(stamp=Time(sec=seconds, nanosec=nanoseconds), frame_id=frame_id)


def image_from_fields(typestore, header, height: int, width: int, encoding: str, step: int, data):
    """sensor_msgs/Image from its fields (little-endian); data: the pixel bytes as a uint8 array."""
    return typestore.types[IMAGE_TYPE](
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=step, data=data,
    )


def rgb_to_encoding(rgb: np.ndarray, encoding: str) -> Tuple[np.ndarray, int]:
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


def image_message(typestore, rgb: np.ndarray, stamp_ns: int, frame_id: str = OPTICAL_FRAME, encoding: str = "rgb8"):
    """sensor_msgs/Image from an RGB (H, W, 3) uint8 array, converted to `encoding`."""
    pixels, channels = rgb_to_encoding(rgb, encoding)
    height, width = rgb.shape[:2]
    return image_from_fields(
        typestore, header_message(typestore, stamp_ns, frame_id), height, width, encoding, width * channels,
        np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1),
    )


def compressed_image_message(
    typestore,
    rgb: np.ndarray,
    stamp_ns: int,
    frame_id: str = OPTICAL_FRAME,
    image_format: str = "jpeg",
    encoding: str = "rgb8",
):
    """sensor_msgs/CompressedImage as image_transport's compressed plugin writes it."""
    pixels, channels = rgb_to_encoding(rgb, encoding)
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
        header=header_message(typestore, stamp_ns, frame_id),
        format=f"{encoding}; {image_format} compressed {coded}",
        data=np.asarray(buffer, dtype=np.uint8).reshape(-1),
    )


def depth_message(typestore, depth: np.ndarray, stamp_ns: int, frame_id: str = OPTICAL_FRAME, encoding: str = "32FC1"):
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
    header = header_message(typestore, stamp_ns, frame_id)
    return image_from_fields(typestore, header, height, width, encoding, step, data)


def camera_info_message(
    typestore,
    K: np.ndarray,
    width: int,
    height: int,
    stamp_ns: int,
    frame_id: str = OPTICAL_FRAME,
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
        header=header_message(typestore, stamp_ns, frame_id),
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


def odometry_message(
    typestore,
    T_odom_body: np.ndarray,
    linear: np.ndarray,
    yaw_rate,
    stamp_ns: int,
    frame_id: str = ODOM_FRAME,
    child_frame_id: str = BODY_FRAME,
):
    """nav_msgs/Odometry: pose of camera_link (child_frame_id) in odom (frame_id), full 3D
    orientation; twist in camera_link.

    linear: (3,) m/s in camera_link; yaw_rate: angular velocity in camera_link, (3,) rad/s or a
    float (rate about z only).
    """
    ns = typestore.types
    qx, qy, qz, qw = (float(v) for v in matrix_to_quaternion(T_odom_body[:3, :3]))
    angular = np.zeros(3)
    if np.ndim(yaw_rate) == 0:
        angular[2] = float(yaw_rate)
    else:
        angular[:] = np.asarray(yaw_rate, dtype=np.float64).reshape(3)
    pose = ns["geometry_msgs/msg/Pose"](
        position=ns["geometry_msgs/msg/Point"](
            x=float(T_odom_body[0, 3]), y=float(T_odom_body[1, 3]), z=float(T_odom_body[2, 3])
        ),
        orientation=ns["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
    )
    Vector3 = ns["geometry_msgs/msg/Vector3"]
    twist = ns["geometry_msgs/msg/Twist"](
        linear=Vector3(x=float(linear[0]), y=float(linear[1]), z=float(linear[2])),
        angular=Vector3(x=float(angular[0]), y=float(angular[1]), z=float(angular[2])),
    )
    covariance = np.zeros(36)
    return ns[ODOMETRY_TYPE](
        header=header_message(typestore, stamp_ns, frame_id),
        child_frame_id=child_frame_id,
        pose=ns["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=covariance),
        twist=ns["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=covariance.copy()),
    )




def transform_message(typestore, T_parent_child: np.ndarray, stamp_ns: int, frame_id: str, child_frame_id: str):
    """geometry_msgs/TransformStamped as tf2 reads it: the pose of ``child_frame_id`` in ``frame_id``
    (T_parent_child (4, 4) maps child coordinates to parent coordinates)."""
    ns = typestore.types
    T = np.asarray(T_parent_child, dtype=np.float64)
    qx, qy, qz, qw = (float(v) for v in matrix_to_quaternion(T[:3, :3]))
    transform = ns["geometry_msgs/msg/Transform"](
        translation=ns["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
        rotation=ns["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
    )
    return ns[TRANSFORM_STAMPED_TYPE](
        header=header_message(typestore, stamp_ns, frame_id), child_frame_id=child_frame_id, transform=transform,
    )


def tf_message(typestore, transforms: Iterable[Tuple[np.ndarray, str, str]], stamp_ns: int):
    """tf2_msgs/TFMessage (for /tf or /tf_static) from (T_parent_child, parent, child) triples."""
    stamped = [transform_message(typestore, T, stamp_ns, parent, child) for T, parent, child in transforms]
    return typestore.types[TF_MESSAGE_TYPE](transforms=stamped)


def point_cloud_message(typestore, points: np.ndarray, stamp_ns: int, frame_id: str,
                        fields: Sequence[str] = ("x", "y", "z")):
    """Unorganised sensor_msgs/PointCloud2 (height 1): points (N, len(fields)), one little-endian
    float32 field per column at offsets 0, 4, 8, ...; dense when every value is finite."""
    points = np.ascontiguousarray(points, dtype="<f4")
    if points.ndim != 2 or points.shape[1] != len(fields):
        raise ValueError(f"points must be (N, {len(fields)}) for fields {tuple(fields)}, got {points.shape}")
    PointField = typestore.types[POINT_FIELD_TYPE]
    point_step = 4 * len(fields)
    return typestore.types[POINT_CLOUD_TYPE](
        header=header_message(typestore, stamp_ns, frame_id),
        height=1,
        width=len(points),
        fields=[PointField(name=name, offset=4 * i, datatype=POINT_FIELD_FLOAT32, count=1)
                for i, name in enumerate(fields)],
        is_bigendian=False,
        point_step=point_step,
        row_step=point_step * len(points),
        data=points.reshape(-1).view(np.uint8),
        is_dense=bool(np.isfinite(points).all()),
    )
