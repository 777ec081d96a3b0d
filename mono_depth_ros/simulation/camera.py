"""The simulated camera: pinhole intrinsics, the ray of every pixel (lens distortion included),
its mount on the body, and the frame names of the recordings.

Frames
------
* ``odom``: REP 103 world frame, x forward along the corridor / street, y left, z up; the
  ground is z = 0.
* ``camera_link``: the camera body (x forward, y left, z up) at the left camera's
  optical centre; /odom carries T_odom_camera_link.
* ``camera_optical_frame``: ROS optical frame of the left camera (x right, y down, z
  forward). The right camera is ``baseline_m`` along +x of the left optical frame.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from mono_depth_ros.bagio.messages import BODY_FRAME, ODOM_FRAME, OPTICAL_FRAME
from mono_depth_ros.distortion import lens_distortion, undistort_points
from mono_depth_ros.geometry.rotations import R_BODY_OPTICAL

LEFT_FRAME = OPTICAL_FRAME
RIGHT_FRAME = "camera_right_optical_frame"

__all__ = [
    "BODY_FRAME", "LEFT_FRAME", "ODOM_FRAME", "RIGHT_FRAME", "body_to_optical", "camera_intrinsics", "camera_rays",
]


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
    lens = lens_distortion(distortion_model, distortion) if distortion is not None else None
    if lens is None:
        xy = (pixels - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])
    else:
        xy = undistort_points(pixels, K, lens)
    return np.concatenate([xy.T, np.ones((1, xy.shape[0]))], axis=0)


def body_to_optical(offset_x_m: float = 0.0) -> np.ndarray:
    """T_body_optical (4, 4): the optical frame offset_x_m along the left optical x axis (a stereo camera)."""
    T_body_optical = np.eye(4)
    T_body_optical[:3, :3] = R_BODY_OPTICAL
    T_body_optical[:3, 3] = R_BODY_OPTICAL @ np.array([offset_x_m, 0.0, 0.0])
    return T_body_optical

