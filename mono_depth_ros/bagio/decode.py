"""Messages -> NumPy: camera calibration, header stamps, images, depth images and odometry positions.

Works on deserialized messages (rosbags' or rclpy's; duck-typed). Image errors raise
:class:`~mono_depth_ros.image_conversion.ImageFormatError` (a ValueError) saying what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..image_conversion import ImageFormatError, compressed_to_rgb, image_to_rgb
from ..msgtypes import COMPRESSED_TYPE, IMAGE_TYPE


@dataclass(frozen=True)
class CameraModel:
    """Calibration from one sensor_msgs/CameraInfo (native resolution)."""

    K: np.ndarray  # (3, 3) float64
    D: np.ndarray  # (n,) float64
    distortion_model: str
    width: int
    height: int
    P: np.ndarray  # (3, 4) float64
    binning: Tuple[int, int] = (0, 0)
    roi: Tuple[int, int, int, int] = (0, 0, 0, 0)  # x_offset, y_offset, width, height

    @property
    def is_distorted(self) -> bool:
        return bool(np.any(self.D != 0.0))

    @property
    def baseline_m(self) -> Optional[float]:
        """Stereo baseline from P[3] = -fx' * baseline (right camera); None for a left/mono camera."""
        if self.P[0, 0] <= 0.0 or self.P[0, 3] == 0.0:
            return None
        return float(-self.P[0, 3] / self.P[0, 0])

    def same_calibration(self, other: "CameraModel") -> bool:
        return (
            self.width == other.width
            and self.height == other.height
            and self.distortion_model == other.distortion_model
            and self.binning == other.binning
            and self.roi == other.roi
            and self.D.shape == other.D.shape
            and np.allclose(self.K, other.K, rtol=1e-6, atol=1e-6)
            and np.allclose(self.D, other.D, rtol=1e-6, atol=1e-9)
        )

    def K_for_image(self, image_width: int, image_height: int) -> np.ndarray:
        """K (3, 3) of the published image (binning and ROI applied); ValueError if sizes disagree."""
        from ..camera import intrinsics_for_image  # imports torch: loaded here so reading a bag does not

        if self.width == 0 and self.height == 0:  # some drivers leave the size unset
            return self.K.copy()
        return intrinsics_for_image(
            self.K.reshape(-1), self.width, self.height, image_width, image_height,
            self.binning[0], self.binning[1], *self.roi,
        )


def camera_model_from_msg(msg) -> Optional[CameraModel]:
    """CameraInfo message -> CameraModel, or None for an uncalibrated camera (K all zeros)."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if K[0, 0] <= 0.0 or K[1, 1] <= 0.0:
        return None
    return CameraModel(
        K=K,
        D=np.asarray(msg.d, dtype=np.float64).reshape(-1),
        distortion_model=str(msg.distortion_model or "plumb_bob"),
        width=int(msg.width),
        height=int(msg.height),
        P=np.asarray(msg.p, dtype=np.float64).reshape(3, 4),
        binning=(int(msg.binning_x), int(msg.binning_y)),
        roi=(int(msg.roi.x_offset), int(msg.roi.y_offset), int(msg.roi.width), int(msg.roi.height)),
    )


def header_stamp_ns(msg, bag_time_ns: int) -> int:
    """Header stamp in ns; the bag's receive time when the driver left the stamp at zero."""
    stamp = msg.header.stamp
    value = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return value if value > 0 else int(bag_time_ns)


def decode_image(msg, msgtype: str) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8, ...) or CompressedImage (jpeg, png)
    -> (H, W, 3) uint8 RGB. Raises ValueError saying what is wrong."""
    if msgtype == IMAGE_TYPE:
        return image_to_rgb(
            str(msg.encoding), int(msg.height), int(msg.width), int(msg.step), msg.data, bool(msg.is_bigendian)
        )
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_rgb(str(msg.format), msg.data)
    raise ImageFormatError(f"message type {msgtype} is not an image")


def decode_depth(msg) -> np.ndarray:
    """Depth image (32FC1 metres, 16UC1 / mono16 millimetres) -> (H, W) float32 metres, 0 = invalid."""
    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if encoding == "32FC1":
        dtype, scale = np.dtype(">f4" if msg.is_bigendian else "<f4"), 1.0
    elif encoding in ("16UC1", "mono16"):
        dtype, scale = np.dtype(">u2" if msg.is_bigendian else "<u2"), 0.001
    else:
        raise ImageFormatError(f"depth encoding '{encoding}' is not supported (32FC1 metres, 16UC1 millimetres)")
    buffer = np.asarray(msg.data, dtype=np.uint8)
    if step < width * dtype.itemsize or buffer.size < step * height:
        raise ImageFormatError(f"depth image {width}x{height} step {step} has only {buffer.size} bytes")
    rows = buffer[: step * height].reshape(height, step)[:, : width * dtype.itemsize]
    depth = np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth <= 0.0)] = 0.0
    return depth


def odometry_position(msg) -> np.ndarray:
    """nav_msgs/Odometry -> (3,) position of child_frame_id in the odometry frame."""
    position = msg.pose.pose.position
    return np.array([position.x, position.y, position.z], dtype=np.float64)


def interpolate_positions(
    stamps_ns: np.ndarray, positions: np.ndarray, query_ns: np.ndarray, max_extrapolation_s: float = 0.05
) -> np.ndarray:
    """Linear interpolation of positions (N, 3) at stamps (N,) to query stamps (M,) -> (M, 3).

    Queries more than max_extrapolation_s outside the odometry's time range get NaN.
    """
    query_ns = np.asarray(query_ns, dtype=np.int64)
    result = np.full((query_ns.size, 3), np.nan)
    if len(stamps_ns) == 0:
        return result
    order = np.argsort(stamps_ns, kind="stable")
    stamps = (np.asarray(stamps_ns, dtype=np.int64)[order] - stamps_ns[order][0]).astype(np.float64)
    values = np.asarray(positions, dtype=np.float64)[order]
    query = (query_ns - stamps_ns[order][0]).astype(np.float64)
    for axis in range(3):
        result[:, axis] = np.interp(query, stamps, values[:, axis])
    margin = max_extrapolation_s * 1e9
    outside = (query < stamps[0] - margin) | (query > stamps[-1] + margin)
    result[outside] = np.nan
    return result
