"""CameraInfo -> intrinsics for the image at hand (plain NumPy, no ROS import)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .geometry import scale_intrinsics


class CameraInfoError(ValueError):
    """camera_info cannot be used with the image; the text says why."""


def intrinsics_for_image(
    k: Sequence[float],
    info_width: int,
    info_height: int,
    image_width: int,
    image_height: int,
    binning_x: int = 0,
    binning_y: int = 0,
    roi_x_offset: int = 0,
    roi_y_offset: int = 0,
    roi_width: int = 0,
    roi_height: int = 0,
) -> np.ndarray:
    """The 3x3 K that applies to the published image, or CameraInfoError.

    Follows sensor_msgs/CameraInfo: K is for the full-resolution sensor; a region of
    interest shifts the principal point and binning divides the focal lengths and
    principal point (pixel-centre exact), as image_geometry does.
    """
    K = np.asarray(k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise CameraInfoError(f"camera_info K has non-finite entries: {K.ravel().tolist()}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise CameraInfoError(
            f"camera_info K has focal lengths fx={fx}, fy={fy}; both must be > 0 (is the camera calibrated?)"
        )
    bin_x, bin_y = max(binning_x, 1), max(binning_y, 1)
    full_roi = roi_width == 0 and roi_height == 0
    expected_width = (info_width if full_roi else roi_width) // bin_x
    expected_height = (info_height if full_roi else roi_height) // bin_y
    if (expected_width, expected_height) != (image_width, image_height):
        raise CameraInfoError(
            f"camera_info describes {expected_width}x{expected_height} images but the image is "
            f"{image_width}x{image_height}; remap camera_info to the camera_info of this image topic"
        )
    K = K.copy()
    K[0, 2] -= roi_x_offset
    K[1, 2] -= roi_y_offset
    if bin_x > 1 or bin_y > 1:
        K = scale_intrinsics(torch.from_numpy(K), 1.0 / bin_x, 1.0 / bin_y).numpy()
    return K
