"""CameraInfo -> intrinsics for the image at hand (plain NumPy: no torch, no ROS import)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .geometry.intrinsics import scale_intrinsics


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
    principal point (pixel-centre exact), as image_geometry does. A non-zero ROI must lie inside
    the width x height sensor; one that runs past its edge is a CameraInfoError.
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
    if not full_roi:
        outside = []
        if roi_x_offset + roi_width > info_width:
            outside.append(
                f"roi.x_offset {roi_x_offset} + roi.width {roi_width} = {roi_x_offset + roi_width} > width {info_width}"
            )
        if roi_y_offset + roi_height > info_height:
            outside.append(
                f"roi.y_offset {roi_y_offset} + roi.height {roi_height} = {roi_y_offset + roi_height} "
                f"> height {info_height}"
            )
        if outside:
            raise CameraInfoError(
                f"camera_info's region of interest runs past the edge of the {info_width}x{info_height} sensor "
                f"it describes ({'; '.join(outside)}); K and width/height are for the full sensor and the ROI "
                f"must lie inside it: fix roi (or width/height) in the camera driver's calibration or "
                f"camera_info settings"
            )
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
        K = scale_intrinsics(K, 1.0 / bin_x, 1.0 / bin_y)
    return K


# A learned K this far from camera_info's is worth a warning: learned focal lengths are usually within
# ~10 % of the calibration, and a wrong calibration is off by far more.
FOCAL_DISAGREEMENT = 0.2  # relative difference of fx or fy
PRINCIPAL_POINT_DISAGREEMENT = 0.1  # difference of cx (cy) as a fraction of the image width (height)


def intrinsics_disagreement(
    K_camera_info: Sequence[float],
    metadata,
    width: int,
    height: int,
    focal_tolerance: float = FOCAL_DISAGREEMENT,
    principal_tolerance: float = PRINCIPAL_POINT_DISAGREEMENT,
) -> Optional[str]:
    """A warning text when camera_info's K and the K a model learned disagree strongly, else None.

    K_camera_info: 3x3 (or 9 values, row-major) for the images at hand, width x height pixels (as
    intrinsics_for_image returns it); metadata: the model's ModelMetadata. Only models whose
    intrinsics were learned or refined (metadata.intrinsics) are compared: their
    normalized_intrinsics (fx/W, fy/H, cx/W, cy/H) are scaled to the image. Disagreement: fx or fy
    off by more than ``focal_tolerance`` (relative to camera_info's), or cx (cy) by more than
    ``principal_tolerance`` of the image width (height).
    """
    if getattr(metadata, "intrinsics", "given") == "given" or metadata.normalized_intrinsics is None:
        return None
    K = np.asarray(K_camera_info, dtype=np.float64).reshape(3, 3)
    given = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    n = metadata.normalized_intrinsics
    learned = (n[0] * width, n[1] * height, n[2] * width, n[3] * height)
    problems = []
    for name, ours, theirs in zip(("fx", "fy"), given[:2], learned[:2]):
        if not ours > 0 or abs(theirs - ours) > focal_tolerance * ours:
            problems.append(f"{name} {ours:.1f} vs learned {theirs:.1f} ({(theirs - ours) / ours:+.0%})"
                            if ours > 0 else f"{name} {ours:.1f} vs learned {theirs:.1f}")
    for name, ours, theirs, size in zip(("cx", "cy"), given[2:], learned[2:], (width, height)):
        if abs(theirs - ours) > principal_tolerance * size:
            problems.append(f"{name} {ours:.1f} vs learned {theirs:.1f} ({abs(theirs - ours) / size:.0%} of the image)")
    if not problems:
        return None
    return (
        f"camera_info disagrees with the intrinsics the model "
        f"{'refined' if metadata.intrinsics == 'refine' else 'learned'} in training "
        f"({width}x{height} image): {'; '.join(problems)}. The node uses camera_info; if the model was trained "
        f"on this camera, its calibration is probably wrong (recalibrate, or check that camera_info belongs to "
        f"this image topic and resolution)."
    )
