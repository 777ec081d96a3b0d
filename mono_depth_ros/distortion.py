"""Lens distortion of a camera_info (``D``, ``distortion_model``): undistorting images, and the exact
ray of every raw pixel (NumPy and OpenCV, no torch, no ROS import).

Frames and units: pixel (u, v) has its centre at integer coordinates (REP 104's convention, as OpenCV);
a ray is (x / z, y / z) in the camera's optical frame (REP 103: x right, y down, z forward), so a
point at depth z along it is z * (x / z, y / z, 1).

The trainer undistorts its images with the same K (``undistort_maps``), so a model always sees
undistorted images; the node does the same and maps the depth back onto the raw pixel grid
(:class:`Undistorter`), where camera_info's K and D describe every pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

# distortion_model names of sensor_msgs/distortion_models.h, with the number of D coefficients used.
PLUMB_BOB = "plumb_bob"
RATIONAL_POLYNOMIAL = "rational_polynomial"
EQUIDISTANT = "equidistant"
SUPPORTED_MODELS = {PLUMB_BOB: 5, RATIONAL_POLYNOMIAL: 8, EQUIDISTANT: 4}
# Undistorting a point is iterative; these settings reach 1e-9 px on strong lenses (OpenCV's default
# of 5 iterations leaves errors of a pixel or more near the corners).
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)


class DistortionError(ValueError):
    """camera_info's distortion cannot be used: the text says what is wrong and what to do."""


@dataclass(frozen=True)
class LensDistortion:
    """A camera's distortion: ``model`` (one of SUPPORTED_MODELS) and its coefficients ``D`` (float64)."""

    model: str
    D: Tuple[float, ...]

    @property
    def coefficients(self) -> np.ndarray:
        return np.asarray(self.D, dtype=np.float64)


def lens_distortion(distortion_model: str, D: Sequence[float]) -> Optional[LensDistortion]:
    """camera_info's (distortion_model, D) -> LensDistortion, or None for a pinhole camera (D empty or
    all zero, i.e. a rectified image). Raises DistortionError for D with NaN or infinity, an unknown
    model with non-zero D, or too few coefficients for the model."""
    values = np.asarray(list(D), dtype=np.float64).reshape(-1)
    if values.size and not np.all(np.isfinite(values)):
        raise DistortionError(
            f"camera_info D {values.tolist()} is not finite: the calibration is damaged; recalibrate the camera "
            "or fix the driver's camera_info_url")
    if not np.any(values):
        return None
    model = str(distortion_model).strip()
    if model not in SUPPORTED_MODELS:
        raise DistortionError(
            f"camera_info distortion_model '{model}' with non-zero D is not supported (supported: "
            f"{', '.join(SUPPORTED_MODELS)}); publish rectified images (image_proc) with their camera_info")
    needed = SUPPORTED_MODELS[model]
    if model == EQUIDISTANT and values.size != needed or values.size < needed:
        raise DistortionError(
            f"camera_info D has {values.size} coefficients; the '{model}' model takes "
            f"{'exactly ' if model == EQUIDISTANT else ''}{needed}: fix the calibration file")
    if model == PLUMB_BOB:
        values = values[:5]  # some drivers pad D; the model uses k1 k2 p1 p2 k3
    return LensDistortion(model, tuple(float(value) for value in values))


def undistort_points(pixels: np.ndarray, K: np.ndarray, lens: LensDistortion) -> np.ndarray:
    """Raw pixels (N, 2) (u, v) -> rays (N, 2) (x / z, y / z) of the points that the lens images there.

    The inverse of OpenCV's projectPoints (fisheye.projectPoints for equidistant) with this K and D,
    solved iteratively to ~1e-9 px."""
    points = np.ascontiguousarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    K = np.asarray(K, dtype=np.float64)
    D = lens.coefficients
    if lens.model == EQUIDISTANT:
        rays = cv2.fisheye.undistortPoints(points, K, D.reshape(4, 1), criteria=_UNDISTORT_CRITERIA)
    elif hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
        rays = cv2.undistortPointsIter(points, K, D, None, None, _UNDISTORT_CRITERIA)
    else:  # OpenCV 5 takes the criteria directly
        rays = cv2.undistortPoints(points, K, D, None, None, None, _UNDISTORT_CRITERIA)
    return rays.reshape(-1, 2)


def project_points(points: np.ndarray, K: np.ndarray, lens: Optional[LensDistortion]) -> np.ndarray:
    """Camera-frame points (N, 3) in front of the camera -> raw pixels (N, 2) through K and D."""
    points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 1, 3)
    zero = np.zeros(3)
    K = np.asarray(K, dtype=np.float64)
    if lens is None:
        return cv2.projectPoints(points, zero, zero, K, None)[0].reshape(-1, 2)
    if lens.model == EQUIDISTANT:
        return cv2.fisheye.projectPoints(points, zero, zero, K, lens.coefficients.reshape(4, 1))[0].reshape(-1, 2)
    return cv2.projectPoints(points, zero, zero, K, lens.coefficients)[0].reshape(-1, 2)


def raw_pixel_rays(K: np.ndarray, lens: LensDistortion, height: int, width: int, stride: int = 1) -> np.ndarray:
    """Rays of the raw pixel centres (u, v) = (stride * j, stride * i) through the full camera model.

    -> (ceil(H / stride), ceil(W / stride), 2) float32 (x / z, y / z): multiply by depth for x, y (the
    same layout as mono_depth_ros.pointcloud.unit_depth_rays, which is the pinhole case)."""
    u = np.arange(0, width, stride, dtype=np.float64)
    v = np.arange(0, height, stride, dtype=np.float64)
    grid_u, grid_v = np.meshgrid(u, v)
    rays = undistort_points(np.stack([grid_u.ravel(), grid_v.ravel()], axis=-1), K, lens)
    return rays.reshape(v.size, u.size, 2).astype(np.float32)


def undistort_maps(K: np.ndarray, lens: LensDistortion, size: Tuple[int, int],
                   K_new: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (map_x, map_y), each (H, W) float32, that turn a raw image of ``size`` (W, H)
    into the undistorted (pinhole) image with intrinsics ``K_new`` (default: K itself)."""
    K = np.asarray(K, dtype=np.float64)
    K_new = K if K_new is None else np.asarray(K_new, dtype=np.float64)
    if lens.model == EQUIDISTANT:
        return cv2.fisheye.initUndistortRectifyMap(K, lens.coefficients.reshape(4, 1), np.eye(3), K_new, size,
                                                   cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(K, lens.coefficients, None, K_new, size, cv2.CV_32FC1)


class Undistorter:
    """Raw image -> undistorted image for the network; undistorted depth -> depth on the raw pixel grid.

    Built once per calibration and image size (the maps cost a few hundred ms at 1280x720). The
    undistorted image keeps K, so depth along the optical axis is the same in both images: the raw
    pixel (u, v) whose ray is (x, y) finds its depth at (fx x + s y + cx, fy y + cy) of the undistorted
    depth, interpolated in inverse depth (exact for planes). Raw pixels that the undistorted image does
    not cover (the corners of a barrel lens) get NaN: no estimate (REP 118).
    """

    def __init__(self, K: np.ndarray, lens: LensDistortion, width: int, height: int):
        self.K = np.asarray(K, dtype=np.float64)
        self.lens = lens
        self.size = (int(width), int(height))
        self._image_maps = cv2.convertMaps(*undistort_maps(self.K, lens, self.size), cv2.CV_16SC2)
        self.rays = raw_pixel_rays(self.K, lens, int(height), int(width))
        x, y = self.rays[:, :, 0].astype(np.float64), self.rays[:, :, 1].astype(np.float64)
        fx, skew, cx, fy, cy = self.K[0, 0], self.K[0, 1], self.K[0, 2], self.K[1, 1], self.K[1, 2]
        # Bilinear sampling written out once (corner indices and weights): exact, where cv2.remap
        # rounds coordinates to 1/32 px.
        u, v = fx * x + skew * y + cx, fy * y + cy
        self._covered = (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
        u0 = np.clip(np.floor(u), 0, max(width - 2, 0)).astype(np.int64)
        v0 = np.clip(np.floor(v), 0, max(height - 2, 0)).astype(np.int64)
        du, dv = np.clip(u - u0, 0.0, 1.0), np.clip(v - v0, 0.0, 1.0)
        right, below = min(1, width - 1), min(1, height - 1) * width
        index = v0 * width + u0
        self._corners = np.stack([index, index + right, index + below, index + below + right])
        self._weights = np.stack([(1 - du) * (1 - dv), du * (1 - dv), (1 - du) * dv, du * dv]).astype(np.float64)

    def image(self, raw: np.ndarray) -> np.ndarray:
        """(H, W, C) raw image -> (H, W, C) undistorted, bilinear; uncovered pixels black."""
        if (raw.shape[1], raw.shape[0]) != self.size:
            raise ValueError(f"image is {raw.shape[1]}x{raw.shape[0]}, the undistorter was built for "
                             f"{self.size[0]}x{self.size[1]}")
        return cv2.remap(raw, *self._image_maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def depth_to_raw(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) float32 depth of the undistorted image -> (H, W) float32 depth at the raw pixels."""
        if (depth.shape[1], depth.shape[0]) != self.size:
            raise ValueError(f"depth is {depth.shape[1]}x{depth.shape[0]}, the undistorter was built for "
                             f"{self.size[0]}x{self.size[1]}")
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / depth.astype(np.float64).reshape(-1)
            sampled = np.einsum("khw,khw->hw", inverse[self._corners], self._weights)
            raw = np.where(self._covered, 1.0 / sampled, np.nan)
        return raw.astype(np.float32)
