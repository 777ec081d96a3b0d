"""Synthetic rosbag2 recordings with exact depth: test fixtures, smoke runs and sample data.

Two scenes, both ray cast analytically with NumPy so that the depth published on the depth
topic is exact (metres along the optical axis) and the odometry is the pose the images were
rendered from:

* ``corridor`` (CorridorScene + Trajectory): a small textured corridor (ground, ceiling, side
  walls, end wall, a few boxes); the default of render_recording / write_synthetic_bag.
* ``street`` (StreetScene + StreetTrajectory): a street with sidewalks, building blocks,
  parked cars, crates, lamp and sign posts and sky (depth +inf); speed changes, a stop in the
  middle and small rotations. What ``sample_recording`` writes. Colour comes from seeded
  tileable textures sampled with mip-mapping (TextureAtlas), which keeps it fast.

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

import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from mono_depth_ros.geometry.rotations import (
    R_BODY_OPTICAL,
    matrix_to_quaternion,
    rotation_log,
    rpy_to_matrix,
)
from mono_depth_ros.msgtypes import CAMERA_INFO_TYPE, COMPRESSED_TYPE, IMAGE_TYPE, ODOMETRY_TYPE

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


def body_to_optical(offset_x_m: float = 0.0) -> np.ndarray:
    """T_body_optical (4, 4): the optical frame offset_x_m along the left optical x axis (a stereo camera)."""
    T_body_optical = np.eye(4)
    T_body_optical[:3, :3] = R_BODY_OPTICAL
    T_body_optical[:3, 3] = R_BODY_OPTICAL @ np.array([offset_x_m, 0.0, 0.0])
    return T_body_optical


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
        return self.T_odom_body(time_s) @ body_to_optical(offset_x_m)


# --------------------------------------------------------------------------- textures
#
# Colour comes from small seeded tileable texture images (generated once per scene) sampled
# with cv2.remap at texture coordinates in metres. Anti-aliasing: each texture has a mip
# chain; every pixel blends the two levels around its footprint (metres per pixel on the
# surface). All tiles and levels live in one atlas image so that one view takes two remaps.


def _tileable_noise(rng: np.random.Generator, height: int, width: int, beta: float, stretch: float = 1.0) -> np.ndarray:
    """Periodic noise (height, width) float32, zero mean, unit std, power ~ 1 / f**beta.

    stretch > 1 makes features long along the width axis (wood grain, clouds).
    """
    spectrum = np.fft.rfft2(rng.standard_normal((height, width)))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :] * stretch
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    spectrum *= radius ** (-0.5 * beta)
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(height, width))
    return (noise / max(float(noise.std()), 1e-12)).astype(np.float32)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _texture_road(rng, size: int = 512) -> np.ndarray:
    """Asphalt, 0.02 m/texel, one tile = the road's width: rows are y + ROAD_HALF_WIDTH, columns x."""
    coarse = _tileable_noise(rng, size, size, 2.2)
    fine = _tileable_noise(rng, size, size, 0.2)
    patches = _tileable_noise(rng, size, size, 3.0) > 1.0  # repaired patches, slightly darker
    grey = 0.34 + 0.035 * coarse + 0.06 * fine - 0.05 * patches
    rows, cols = np.mgrid[0:size, 0:size]
    centre = (np.abs(rows - size / 2 + 0.5) < 3.5) & ((cols % 256) < 128)  # dashed centre line
    edges = (np.abs(rows - 16) < 3.5) | (np.abs(rows - (size - 17)) < 3.5)  # solid edge lines at |y| = 4.8 m
    paint = (centre | edges) & (_tileable_noise(rng, size, size, 1.0) > -1.3)  # worn in places
    grey = np.where(paint, 0.80 + 0.05 * fine, grey)
    return _to_uint8(grey[:, :, None] * np.array([1.0, 1.0, 1.03]))


def _texture_sidewalk(rng, size: int = 256, slabs: int = 6) -> np.ndarray:
    """Concrete paving slabs (0.5 m) with joints, per-slab shade and grain; 3 m tile."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    slab = size / slabs
    shade = rng.uniform(-0.06, 0.06, size=(slabs, slabs))[(rows // slab).astype(int), (cols // slab).astype(int)]
    joints = ((rows % slab) < 1.5) | ((cols % slab) < 1.5)
    grey = 0.62 + shade + 0.03 * _tileable_noise(rng, size, size, 2.0) + 0.045 * _tileable_noise(rng, size, size, 0.3)
    grey = np.where(joints, grey - 0.22, grey)
    return _to_uint8(grey[:, :, None] * np.array([1.0, 0.98, 0.93]))


def _window(rng, floor_rows, floor_cols, top: int, bottom: int, left: int, right: int, size: int):
    """Boolean masks (frame, glass) of one window per 128-texel floor cell, and a glass shade."""
    inside = (floor_rows >= bottom) & (floor_rows < top) & (floor_cols >= left) & (floor_cols < right)
    frame = inside & (
        (floor_rows < bottom + 3) | (floor_rows >= top - 3) | (floor_cols < left + 3) | (floor_cols >= right - 3)
        | (np.abs(floor_cols - (left + right) / 2) < 1.5) | (np.abs(floor_rows - (bottom + 2 * top) / 3) < 1.5)
    )
    glass = inside & ~frame
    # Reflections: brighter towards the top, blotchy sky reflections.
    shade = 0.16 + 0.12 * (floor_rows - bottom) / max(top - bottom, 1) + 0.05 * _tileable_noise(rng, size, size, 2.5)
    return frame, glass, shade


def _texture_brick(rng, size: int = 512) -> np.ndarray:
    """Brick facade with windows, 0.025 m/texel (12.8 m tile): floors 3.2 m, windows every 3.2 m.

    Rows are height above the ground (texel 0 at z = 0), columns along the wall.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    course = rows // 4  # 0.1 m brick courses
    shifted = cols + 4 * (course % 2)
    brick = rng.uniform(-0.08, 0.08, size=(size // 4, size // 8 + 1))[course, (shifted // 8) % (size // 8)]
    mortar = ((rows % 4) == 0) | ((shifted % 8) == 0)
    base = np.array([0.62, 0.33, 0.24]) * (1.0 + brick + 0.05 * _tileable_noise(rng, size, size, 2.0)
                                           + 0.06 * _tileable_noise(rng, size, size, 0.2))[:, :, None]
    rgb = np.where(mortar[:, :, None], np.array([0.70, 0.68, 0.64]), base)
    floor_rows, floor_cols = rows % 128, cols % 128
    frame, glass, shade = _window(rng, floor_rows, floor_cols, 100, 36, 40, 88, size)
    sill = (floor_rows >= 32) & (floor_rows < 36) & (floor_cols >= 36) & (floor_cols < 92)
    rgb = np.where((frame | sill)[:, :, None], np.array([0.86, 0.85, 0.80]), rgb)
    rgb = np.where(glass[:, :, None], shade[:, :, None] * np.array([0.8, 0.95, 1.15]), rgb)
    return _to_uint8(rgb)


def _texture_plaster(rng, size: int = 512) -> np.ndarray:
    """Plastered facade with cornices, shutters and tall windows, 0.025 m/texel (12.8 m tile)."""
    rows, cols = np.mgrid[0:size, 0:size]
    stains = _tileable_noise(rng, size, size, 2.4)
    grain = _tileable_noise(rng, size, size, 0.4)
    rgb = np.array([0.86, 0.80, 0.66]) * (1.0 + 0.07 * stains + 0.05 * grain)[:, :, None]
    floor_rows, floor_cols = rows % 128, cols % 128
    cornice = floor_rows < 6
    rgb = np.where(cornice[:, :, None], np.array([0.72, 0.70, 0.66]) * (1.0 + 0.05 * grain)[:, :, None], rgb)
    frame, glass, shade = _window(rng, floor_rows, floor_cols, 104, 30, 40, 88, size)
    shutters = (floor_rows >= 30) & (floor_rows < 104) & (((floor_cols >= 22) & (floor_cols < 40)) | ((floor_cols >= 88) & (floor_cols < 106)))
    slats = (floor_rows % 4) == 0
    shutter_colour = np.array([0.25, 0.42, 0.30]) * np.where(slats, 0.7, 1.0)[:, :, None]
    rgb = np.where(shutters[:, :, None], shutter_colour, rgb)
    rgb = np.where(frame[:, :, None], np.array([0.92, 0.92, 0.90]), rgb)
    rgb = np.where(glass[:, :, None], shade[:, :, None] * np.array([0.85, 0.95, 1.1]), rgb)
    return _to_uint8(rgb)


def _texture_crate(rng, size: int = 256) -> np.ndarray:
    """Wooden planks 0.16 m wide with grain along them, 0.01 m/texel."""
    rows = np.mgrid[0:size, 0:size][0]
    grain = _tileable_noise(rng, size, size, 1.6, stretch=10.0)
    plank = rng.uniform(-0.1, 0.1, size=size // 16 + 1)[rows // 16]
    gaps = (rows % 16) < 1.5
    value = 1.0 + plank + 0.12 * grain + 0.05 * _tileable_noise(rng, size, size, 0.3)
    rgb = np.array([0.66, 0.50, 0.32]) * value[:, :, None]
    rgb = np.where(gaps[:, :, None], np.array([0.2, 0.15, 0.1]), rgb)
    return _to_uint8(rgb)


def _texture_car(rng, size: int = 256) -> np.ndarray:
    """Car-sized box: light paint (tinted per car), dark window band, dark sill, seams; 0.02 m/texel.

    Rows are height above the ground: 0-0.3 m dark (wheels, shadow), 0.95-1.35 m windows.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    paint = 0.80 * (1.0 + 0.03 * _tileable_noise(rng, size, size, 2.0) + 0.035 * _tileable_noise(rng, size, size, 0.3))
    value = np.where(rows < 15, 0.12 + 0.04 * _tileable_noise(rng, size, size, 0.5), paint)
    glass = (rows >= 48) & (rows < 68)
    value = np.where(glass, 0.14 + 0.10 * (rows - 48) / 20.0 + 0.04 * _tileable_noise(rng, size, size, 2.0), value)
    seams = ((cols % 64) < 1.5) & (rows >= 15) & (rows < 48)
    value = np.where(seams, value * 0.6, value)
    return _to_uint8(np.repeat(value[:, :, None], 3, axis=2))


def _texture_pole(rng, size: int = 128) -> np.ndarray:
    """Painted metal with rings every 0.32 m and rust blotches, 0.01 m/texel."""
    rows = np.mgrid[0:size, 0:size][0]
    value = 0.45 + 0.04 * _tileable_noise(rng, size, size, 0.3) + 0.05 * _tileable_noise(rng, size, size, 2.0)
    rings = (rows % 32) < 3
    rgb = np.array([0.55, 0.62, 0.58]) * (value / 0.45)[:, :, None]
    rgb = np.where(rings[:, :, None], np.array([0.20, 0.20, 0.22]), rgb)
    rust = _tileable_noise(rng, size, size, 2.5) > 1.3
    rgb = np.where(rust[:, :, None], np.array([0.45, 0.28, 0.16]), rgb)
    return _to_uint8(rgb)


def _texture_clouds(rng, width: int = 512, height: int = 128) -> np.ndarray:
    """Cloud density (grey) over (azimuth, elevation); one tile = 360 deg x 90 deg."""
    density = _tileable_noise(rng, height, width, 2.6, stretch=0.35) + 0.15 * _tileable_noise(rng, height, width, 1.0)
    density = np.clip((density - 0.2) * 0.5, 0.0, 1.0)
    return _to_uint8(np.repeat(density[:, :, None], 3, axis=2))


def _wrap(x: np.ndarray, period, inverse_period) -> np.ndarray:
    """x modulo period, in [0, period] up to rounding (several times faster than np.mod)."""
    return x - np.floor(x * inverse_period) * period


class TextureAtlas:
    """Tileable textures with mip chains packed into one image, sampled by metres.

    tiles: (rgb (h, w, 3) uint8 tileable, metres per texel) per material, in material order.
    """

    PAD = 2  # wrapped border texels around every level, for bilinear sampling across the seam
    MIN_LEVEL_SIZE = 8
    LOD_BIAS = -0.3  # slightly sharp rather than blurry; pixel footprints are estimated generously

    def __init__(self, tiles: Sequence[Tuple[np.ndarray, float]]):
        levels = []
        for rgb, _ in tiles:
            chain = [rgb]
            while min(chain[-1].shape[:2]) // 2 >= self.MIN_LEVEL_SIZE:
                h, w = chain[-1].shape[:2]
                chain.append(cv2.resize(chain[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))  # exact 2x2 means
            levels.append(chain)
        max_levels = max(len(chain) for chain in levels)
        count = len(tiles)
        self.texel = np.array([texel for _, texel in tiles], dtype=np.float64)
        self.max_level = np.array([len(chain) - 1 for chain in levels], dtype=np.int64)
        self.x0 = np.zeros((count, max_levels))
        self.y0 = np.zeros((count, max_levels))
        self.width = np.ones((count, max_levels))
        self.height = np.ones((count, max_levels))
        # Shelf packing: one row of the atlas per material (its levels side by side).
        row_heights = [chain[0].shape[0] + 2 * self.PAD for chain in levels]
        row_widths = [sum(level.shape[1] + 2 * self.PAD for level in chain) for chain in levels]
        atlas = np.zeros((sum(row_heights), max(row_widths), 3), np.uint8)
        top = 0
        for material, chain in enumerate(levels):
            left = 0
            for level, image in enumerate(chain):
                h, w = image.shape[:2]
                atlas[top:top + h + 2 * self.PAD, left:left + w + 2 * self.PAD] = np.pad(
                    image, ((self.PAD, self.PAD), (self.PAD, self.PAD), (0, 0)), mode="wrap"
                )
                self.x0[material, level], self.y0[material, level] = left + self.PAD, top + self.PAD
                self.width[material, level], self.height[material, level] = w, h
                left += w + 2 * self.PAD
            top += row_heights[material]
        self.atlas = atlas
        # Flat float32 tables indexed by material * levels + level, for sample().
        self._texel32 = self.texel.astype(np.float32)
        self._max_level32 = self.max_level.astype(np.float32)
        scale = 1.0 / (self.texel[:, None] * np.exp2(np.arange(max_levels))[None, :])
        self._texels_per_metre = scale.astype(np.float32).reshape(-1)
        self._x0_32, self._y0_32 = self.x0.astype(np.float32).reshape(-1), self.y0.astype(np.float32).reshape(-1)
        self._width32, self._height32 = self.width.astype(np.float32).reshape(-1), self.height.astype(np.float32).reshape(-1)
        self._inv_width32, self._inv_height32 = 1.0 / self._width32, 1.0 / self._height32

    def sample(self, material: np.ndarray, s: np.ndarray, t: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Filtered colour. material (H, W) int, s, t (H, W) metres along the texture's columns and
        rows, footprint (H, W) metres per pixel on the surface -> (H, W, 3) float32 in [0, 1]."""
        levels = self.x0.shape[1]
        # float32 throughout: texture coordinates of a few hundred metres keep ~1/100 texel.
        lod = np.log2(np.maximum(footprint, 1e-9).astype(np.float32) / self._texel32[material]) + np.float32(self.LOD_BIAS)
        np.clip(lod, 0.0, self._max_level32[material], out=lod)
        low = lod.astype(np.int64)  # floor: lod >= 0
        blend = (lod - low)[:, :, None]
        key_low = material * levels + low
        key_high = material * levels + np.minimum(low + 1, self.max_level[material])
        s32, t32 = s.astype(np.float32), t.astype(np.float32)
        out = None
        for key, weight in ((key_low, 1.0 - blend), (key_high, blend)):
            scale = self._texels_per_metre[key]
            # Texel centres at integer + 0.5 in texture space; remap puts them at integers.
            map_x = self._x0_32[key] + _wrap(s32 * scale - np.float32(0.5), self._width32[key], self._inv_width32[key])
            map_y = self._y0_32[key] + _wrap(t32 * scale - np.float32(0.5), self._height32[key], self._inv_height32[key])
            colour = cv2.remap(self.atlas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            contribution = colour.astype(np.float32) * weight
            out = contribution if out is None else out + contribution
        return out * np.float32(1.0 / 255.0)


class CoarseShading:
    """A smooth tileable brightness field (~0.8-1.2) in metres, for large-scale variation on every surface."""

    TEXEL_M = 0.75

    def __init__(self, rng: np.random.Generator, size: int = 128):
        field = _tileable_noise(rng, size, size, 2.2)
        self.image = (1.0 + 0.12 * np.clip(field, -2.0, 2.0)).astype(np.float32)
        self.size = size

    def sample(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """s, t (H, W) metres -> (H, W) float32 brightness factor."""
        size, inverse = np.float32(self.size), np.float32(1.0 / self.size)
        map_x = _wrap((s * np.float32(1.0 / self.TEXEL_M) - np.float32(0.5)).astype(np.float32), size, inverse)
        map_y = _wrap((t * np.float32(1.0 / self.TEXEL_M) - np.float32(0.5)).astype(np.float32), size, inverse)
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


# --------------------------------------------------------------------------- street

STREET_CAMERA_HEIGHT_M = 1.5  # camera_link above the ground (z = 0) in street recordings
ROAD_HALF_WIDTH_M = 5.12  # road |y| < this (one road texture tile wide); sidewalks beyond
FACADE_LINE_M = 8.0  # building fronts at |y| >= this (plus each block's setback)
CLEAR_HALF_WIDTH_M = 2.6  # no objects within |y| < this: the camera drives here

# Materials (texture atlas order).
MAT_ROAD, MAT_SIDEWALK, MAT_BRICK, MAT_PLASTER, MAT_CRATE, MAT_CAR, MAT_POLE, MAT_SKY = range(8)
SKY_TEXEL_RAD = 2.0 * math.pi / 512.0

# Light per face orientation, index 2 * axis + (normal points to +axis): tops brightest, faces
# towards the approaching camera (-x) bright, the two street sides lit differently.
FACE_LIGHT = np.array([0.95, 0.72, 0.86, 0.74, 0.55, 1.0], dtype=np.float32)
SKY_HORIZON = np.array([0.80, 0.86, 0.93], dtype=np.float32)
SKY_ZENITH = np.array([0.33, 0.52, 0.84], dtype=np.float32)

# Edges of an axis-aligned box as corner index pairs (corner bits: x, y, z = max).
_BOX_EDGES = np.array([(a, a | bit) for bit in (1, 2, 4) for a in range(8) if not a & bit])


@dataclass
class RenderedView:
    """One ray-cast view. rgb (H, W, 3) uint8; depth (H, W) float32 metres along the optical axis
    (+inf where a ray hits nothing: sky); surface (H, W) int (-1 sky, 0 ground, k + 1 = box k);
    axis (H, W) int: the odom axis of the hit face's normal (2 for the ground)."""

    rgb: np.ndarray
    depth: np.ndarray
    surface: np.ndarray
    axis: np.ndarray


class StreetScene:
    """A street along odom +x: textured road and sidewalks on z = 0, building blocks on both
    sides (varied setbacks and heights, brick or plaster facades with windows), parked cars,
    crates, lamp posts and sign posts, a building closing the street far ahead, sky above.

    Every object is an axis-aligned box (``boxes[k]`` is surface ``k + 1``), so ray casting is
    exact: depth is the analytic ray parameter. Deterministic from the seed.
    """

    SKY = -1
    GROUND = 0

    def __init__(self, boxes: Sequence[Box], kinds: Sequence[str], materials: Sequence[int],
                 tints: np.ndarray, seed: int = 0):
        if not (len(boxes) == len(kinds) == len(materials) == len(tints)):
            raise ValueError("boxes, kinds, materials and tints must have one entry per box")
        self.boxes = tuple(boxes)
        self.kinds = tuple(kinds)
        self.seed = seed
        self.box_min = np.array([box.minimum for box in boxes], dtype=np.float64).reshape(-1, 3)
        self.box_max = np.array([box.maximum for box in boxes], dtype=np.float64).reshape(-1, 3)
        if np.any(self.box_max <= self.box_min):
            raise ValueError("every box needs maximum > minimum on all three axes")
        bits = np.arange(8)
        self._corners = np.where(
            np.stack([(bits >> axis) & 1 for axis in range(3)], axis=-1)[None].astype(bool),
            self.box_max[:, None, :], self.box_min[:, None, :],
        )  # (B, 8, 3)
        rng = np.random.default_rng([seed, 7])
        # Per-surface tables, indexed by surface + 1 (sky, ground, boxes...).
        count = len(boxes) + 2
        self._material = np.concatenate([[MAT_SKY, MAT_ROAD], np.asarray(materials, dtype=np.int64)]).astype(np.int64)
        self._tint = np.concatenate([np.ones((2, 3)), np.asarray(tints, dtype=np.float64).reshape(-1, 3)]).astype(np.float32)
        self._offset = rng.uniform(0.0, 50.0, size=(count, 2))
        self._offset[1] = 0.0  # road markings stay on the road
        # Facades start a floor at the ground; only shift them along the wall.
        self._offset[2:, 1] = np.where(np.isin(self._material[2:], (MAT_BRICK, MAT_PLASTER, MAT_CAR)), 0.0, self._offset[2:, 1])
        # Columns: texture offset (s, t), then the coarse shading field's offset (s, t).
        coarse_offset = 37.0 * np.arange(count)[:, None] + np.array([0.0, -26.0])
        self._offset32 = np.concatenate([self._offset, coarse_offset], axis=1).astype(np.float32)
        texture_rng = np.random.default_rng([seed, 11])
        self.atlas = TextureAtlas([
            (_texture_road(texture_rng), 2 * ROAD_HALF_WIDTH_M / 512),
            (_texture_sidewalk(texture_rng), 3.0 / 256),
            (_texture_brick(texture_rng), 0.025),
            (_texture_plaster(texture_rng), 0.025),
            (_texture_crate(texture_rng), 0.01),
            (_texture_car(texture_rng), 0.02),
            (_texture_pole(texture_rng), 0.01),
            (_texture_clouds(texture_rng), SKY_TEXEL_RAD),
        ])
        self.coarse = CoarseShading(texture_rng)

    # ---- layout

    @classmethod
    def generate(cls, seed: int = 0, length_m: float = 60.0) -> "StreetScene":
        """Seeded layout for a camera driving from x = 0 to about x = length_m; the closing
        building stands 55-75 m beyond that."""
        if not length_m >= 0.0:
            raise ValueError(f"length_m must be >= 0, got {length_m}")
        # One stream per kind of object: changing how many cars fit leaves the buildings alone.
        layout, cars, crates, poles, ends = (np.random.default_rng([seed, 1, kind]) for kind in range(5))
        end_x = max(length_m, 15.0) + 55.0 + ends.uniform(0.0, 20.0)
        boxes: List[Box] = []
        kinds: List[str] = []
        materials: List[int] = []
        tints: List[np.ndarray] = []

        def add(kind, low, high, material, tint):
            boxes.append(Box(tuple(float(v) for v in low), tuple(float(v) for v in high)))
            kinds.append(kind)
            materials.append(material)
            tints.append(np.asarray(tint, dtype=np.float64))

        def facade_tint(rng):
            return rng.uniform(0.8, 1.15) * rng.uniform(0.9, 1.1, size=3)

        for side in (1.0, -1.0):
            x = -25.0 + layout.uniform(0.0, 6.0)
            while x < end_x:
                width = layout.uniform(6.0, 16.0)
                if layout.uniform() < 0.15:  # an alley: a gap with a building set far back
                    gap = layout.uniform(2.5, 4.5)
                    front = FACADE_LINE_M + 12.0
                    y0, y1 = sorted((side * front, side * (front + 10.0)))
                    add("building", (x, y0, 0.0), (x + gap, y1, layout.uniform(6.0, 12.0)),
                        int(layout.choice([MAT_BRICK, MAT_PLASTER])), facade_tint(layout))
                    x += gap
                    continue
                setback = 0.0 if layout.uniform() < 0.55 else layout.uniform(0.4, 2.5)
                front = FACADE_LINE_M + setback
                y0, y1 = sorted((side * front, side * (front + 12.0)))
                height = float(layout.choice([6.4, 9.6, 12.8, 16.0, 19.2])) + layout.uniform(0.0, 1.5)
                add("building", (x, y0, 0.0), (min(x + width, end_x + 1.0), y1, height),
                    int(layout.choice([MAT_BRICK, MAT_PLASTER])), facade_tint(layout))
                x += width
        # The street's end: one wide building across it.
        add("end", (end_x, -40.0, 0.0), (end_x + 20.0, 40.0, 24.0 + ends.uniform(0.0, 8.0)), MAT_BRICK,
            facade_tint(ends))
        # Parked cars in the parking strips along both kerbs (a body and a cabin box each).
        for side in (1.0, -1.0):
            x = -10.0 + cars.uniform(0.0, 8.0)
            while x < end_x - 8.0:
                length = cars.uniform(3.8, 4.8)
                centre_y = side * (ROAD_HALF_WIDTH_M - 1.15 + cars.uniform(-0.1, 0.1))
                tint = cars.choice(np.array([[0.9, 0.2, 0.2], [0.2, 0.35, 0.8], [0.95, 0.95, 0.95],
                                             [0.3, 0.3, 0.32], [0.2, 0.6, 0.35], [0.95, 0.8, 0.3]]))
                tint = tint * cars.uniform(0.85, 1.1)
                add("car", (x, centre_y - 0.9, 0.0), (x + length, centre_y + 0.9, 0.95), MAT_CAR, tint)
                cabin = (x + 0.25 * length, x + 0.8 * length)
                add("car", (cabin[0], centre_y - 0.78, 0.95), (cabin[1], centre_y + 0.78, 1.45), MAT_CAR, tint * 0.9)
                x += length + cars.uniform(1.0, 14.0)
        # Crates and stacks on the sidewalks, against the facade line.
        for side in (1.0, -1.0):
            x = -5.0 + crates.uniform(0.0, 10.0)
            while x < end_x - 5.0:
                size = crates.uniform(0.5, 1.1)
                y_outer = side * (FACADE_LINE_M - crates.uniform(0.05, 0.6))
                y0, y1 = sorted((y_outer, y_outer - side * size))
                levels = 1 + int(crates.uniform() < 0.35)
                for level in range(levels):
                    shrink = 0.08 * level
                    add("crate", (x + shrink, y0 + shrink, level * size), (x + size - shrink, y1 - shrink, (level + 1) * size),
                        MAT_CRATE, crates.uniform(0.8, 1.2) * crates.uniform(0.92, 1.08, size=3))
                x += size + crates.uniform(4.0, 16.0)
        # Lamp posts (post, arm over the road, lamp head) and sign posts along the kerbs.
        for side in (1.0, -1.0):
            x = -12.0 + poles.uniform(0.0, 12.0)
            while x < end_x - 3.0:
                y = side * (ROAD_HALF_WIDTH_M + 0.45)
                grey = poles.uniform(0.8, 1.1) * np.ones(3)
                if poles.uniform() < 0.6:
                    height = poles.uniform(5.0, 6.5)
                    add("pole", (x - 0.09, y - 0.09, 0.0), (x + 0.09, y + 0.09, height), MAT_POLE, grey)
                    y_arm = sorted((y, y - side * 1.4))
                    add("pole", (x - 0.05, y_arm[0], height - 0.12), (x + 0.05, y_arm[1], height), MAT_POLE, grey)
                    tip = y - side * 1.4
                    add("pole", (x - 0.2, min(tip, tip + side * 0.5), height - 0.3), (x + 0.2, max(tip, tip + side * 0.5), height - 0.12),
                        MAT_POLE, grey * 1.3)
                else:
                    add("pole", (x - 0.04, y - 0.04, 0.0), (x + 0.04, y + 0.04, 2.3), MAT_POLE, grey)
                    add("sign", (x - 0.02, y - 0.35, 2.0), (x + 0.02, y + 0.35, 2.7), MAT_PLASTER,
                        poles.choice(np.array([[0.3, 0.45, 1.1], [1.1, 0.35, 0.3], [1.1, 1.0, 0.4]])))
                x += poles.uniform(9.0, 22.0)
        return cls(boxes, kinds, materials, np.array(tints), seed=seed)

    # ---- ray casting

    def intersect(self, origin: np.ndarray, directions: np.ndarray):
        """Nearest surface along rays origin + t * directions, every box tested (no culling).

        origin: (3,) odom, directions: (3, N) odom -> (t (N,) [inf: sky], normal axis (N,), surface id (N,)).
        """
        depth, axis, surface = self._cast(origin, directions[:, None, :], windows=None)
        return depth[0], axis[0], surface[0]

    def _cast(self, origin: np.ndarray, directions: np.ndarray, windows):
        """origin (3,), directions (3, H, W) odom; windows: per box (row0, row1, col0, col1)
        pixel range that can see it, None to skip it; windows=None tests every box everywhere.
        -> (t (H, W) float64, axis (H, W) int64, surface (H, W) int64)."""
        height, width = directions.shape[1:]
        with np.errstate(divide="ignore"):
            depth = np.where(directions[2] < 0.0, -origin[2] / directions[2], np.inf)
        surface = np.where(np.isfinite(depth), self.GROUND, self.SKY).astype(np.int64)
        axis = np.full((height, width), 2, dtype=np.int64)
        # Exact zeros would give 0 * inf = NaN in the slab test; such a ray is parallel to the
        # slab, which a 1e-300 component represents exactly as well.
        inverse = 1.0 / np.where(directions == 0.0, 1e-300, directions)
        for index in range(len(self.boxes)):
            if windows is None:
                rows, cols = slice(None), slice(None)
            elif windows[index] is None:
                continue
            else:
                r0, r1, c0, c1 = windows[index]
                rows, cols = slice(r0, r1), slice(c0, c1)
            inv = inverse[:, rows, cols]
            low = (self.box_min[index] - origin)[:, None, None] * inv
            high = (self.box_max[index] - origin)[:, None, None] * inv
            near = np.minimum(low, high)
            t_near = near.max(axis=0)
            t_far = np.maximum(low, high).min(axis=0)
            window_depth = depth[rows, cols]
            hit = (t_near <= t_far) & (t_near > 0.0) & (t_near < window_depth)
            if not hit.any():
                continue
            np.copyto(window_depth, t_near, where=hit)
            np.copyto(axis[rows, cols], near.argmax(axis=0), where=hit)
            surface[rows, cols][hit] = index + 1
        return depth, axis, surface

    def _windows(self, rays: np.ndarray, T_odom_optical: np.ndarray):
        """Per box, the pixel rectangle that can see it (None: none can).

        rays: (3, H, W) optical, z == 1. The box, clipped to just in front of the camera, is
        projected to normalised coordinates; a pixel can see it only if its column's x range
        and its row's y range overlap the projection's bounding box (conservative; exact for
        any ray layout, distorted included).
        """
        R, t = T_odom_optical[:3, :3], T_odom_optical[:3, 3]
        corners = (self._corners - t) @ R  # (B, 8, 3) optical
        near = 1e-6
        z = corners[..., 2]
        start, end = corners[:, _BOX_EDGES[:, 0]], corners[:, _BOX_EDGES[:, 1]]  # (B, 12, 3)
        z0, z1 = start[..., 2], end[..., 2]
        crosses = (z0 - near) * (z1 - near) < 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(crosses, (near - z0) / (z1 - z0), 0.0)
        clipped = start + fraction[..., None] * (end - start)
        points = np.concatenate([corners, clipped], axis=1)  # (B, 20, 3)
        valid = np.concatenate([z >= near, crosses], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(valid, points[..., 0] / np.maximum(points[..., 2], near), np.nan)
            y = np.where(valid, points[..., 1] / np.maximum(points[..., 2], near), np.nan)
        any_valid = valid.any(axis=1)
        margin = 1e-7
        x_low = np.where(any_valid, np.nanmin(np.where(valid, x, np.inf), axis=1), np.inf) - margin
        x_high = np.where(any_valid, np.nanmax(np.where(valid, x, -np.inf), axis=1), -np.inf) + margin
        y_low = np.where(any_valid, np.nanmin(np.where(valid, y, np.inf), axis=1), np.inf) - margin
        y_high = np.where(any_valid, np.nanmax(np.where(valid, y, -np.inf), axis=1), -np.inf) + margin
        # Column u can see x in [col_min[u], col_max[u]]; running max / min make the search conservative
        # even when distortion makes the ranges non-monotonic.
        col_max = np.maximum.accumulate(rays[0].max(axis=0))
        col_min = np.minimum.accumulate(rays[0].min(axis=0)[::-1])[::-1]
        row_max = np.maximum.accumulate(rays[1].max(axis=1))
        row_min = np.minimum.accumulate(rays[1].min(axis=1)[::-1])[::-1]
        c0 = np.searchsorted(col_max, x_low, side="left")
        c1 = np.searchsorted(col_min, x_high, side="right")
        r0 = np.searchsorted(row_max, y_low, side="left")
        r1 = np.searchsorted(row_min, y_high, side="right")
        return [
            (int(r0[i]), int(r1[i]), int(c0[i]), int(c1[i])) if any_valid[i] and r1[i] > r0[i] and c1[i] > c0[i] else None
            for i in range(len(self.boxes))
        ]

    # ---- shading

    def shade(self, origin: np.ndarray, directions: np.ndarray, depth: np.ndarray, axis: np.ndarray,
              surface: np.ndarray, focal: float) -> np.ndarray:
        """Colour of every pixel. directions (3, H, W) odom, depth/axis/surface (H, W) from the cast
        -> (H, W, 3) uint8."""
        # float32 is plenty for colour (positions to ~1e-5 m); the depth stays float64.
        directions = directions.astype(np.float32)
        sky = surface == self.SKY
        finite_depth = np.where(sky, np.float32(0.0), depth.astype(np.float32))
        points = origin.astype(np.float32)[:, None, None] + directions * finite_depth
        index = surface + 1
        ground = surface == self.GROUND
        material = np.where(ground & (np.abs(points[1]) >= ROAD_HALF_WIDTH_M), MAT_SIDEWALK, self._material[index])
        # Texture coordinates: the two odom coordinates across the face, shifted per surface.
        offset = np.take(self._offset32, index, axis=0)  # (H, W, 4); np.take is far faster than [index] here
        s = np.where(axis == 0, points[1], points[0]) + offset[..., 0]
        t = np.where(axis == 2, points[1], points[2]) + offset[..., 1]
        np.copyto(t, points[1] + np.float32(ROAD_HALF_WIDTH_M), where=ground)  # road rows are y + half width
        length = np.sqrt((directions * directions).sum(axis=0))
        along_normal = np.take_along_axis(directions, axis[None], axis=0)[0]
        cos_incidence = np.abs(along_normal) / length
        footprint = finite_depth * length / np.float32(focal) / np.maximum(cos_incidence, np.float32(0.3))
        # Sky: texture over (azimuth, elevation); footprint in radians.
        sky_rays = directions[:, sky]
        elevation = np.arctan2(np.maximum(sky_rays[2], 0.0), np.hypot(sky_rays[0], sky_rays[1]))
        s[sky] = np.arctan2(sky_rays[1], sky_rays[0])
        t[sky] = elevation
        footprint[sky] = 1.0 / focal
        sampled = self.atlas.sample(material, s, t, footprint)
        light = FACE_LIGHT[2 * axis + (along_normal < 0.0)]  # the normal faces against the ray
        kerb = ground & (np.abs(np.abs(points[1]) - np.float32(ROAD_HALF_WIDTH_M + 0.12)) < 0.12)
        light[kerb] *= np.float32(1.3)
        coarse = self.coarse.sample(s + offset[..., 2], t + offset[..., 3])
        colour = sampled * ((light * coarse)[:, :, None] * np.take(self._tint, index, axis=0))
        # Sky colour: horizon-to-zenith gradient with faint clouds (the sampled density).
        weight = np.sqrt(np.clip(elevation / np.float32(0.8), 0.0, 1.0))[:, None]
        clouds = sampled[sky][:, :1] * np.float32(0.7)
        gradient = SKY_HORIZON * (1.0 - weight) + SKY_ZENITH * weight
        colour[sky] = gradient * (1.0 - clouds) + np.float32(0.97) * clouds
        colour *= np.float32(255.0)
        colour += np.float32(0.5)  # round to nearest when truncating below
        np.clip(colour, 0.0, 255.0, out=colour)
        return colour.astype(np.uint8)

    def render_view(self, rays_optical: np.ndarray, T_odom_optical: np.ndarray, width: int, height: int,
                    focal: float) -> RenderedView:
        """Ray cast and shade one view. rays_optical: (3, H*W) with z == 1 (camera_rays),
        T_odom_optical: (4, 4) camera pose."""
        rays = rays_optical.reshape(3, height, width)
        directions = np.einsum("ij,jhw->ihw", T_odom_optical[:3, :3], rays)
        origin = np.asarray(T_odom_optical[:3, 3], dtype=np.float64)
        windows = self._windows(rays, T_odom_optical)
        depth, axis, surface = self._cast(origin, directions, windows)
        rgb = self.shade(origin, directions, depth, axis, surface, focal)
        return RenderedView(rgb=rgb, depth=depth.astype(np.float32), surface=surface, axis=axis)

    def render(self, rays_optical: np.ndarray, T_odom_optical: np.ndarray, width: int, height: int,
               focal: float) -> Tuple[np.ndarray, np.ndarray]:
        """-> (rgb (H, W, 3) uint8, depth (H, W) float32 metres along the optical axis, +inf for sky)."""
        view = self.render_view(rays_optical, T_odom_optical, width, height, focal)
        return view.rgb, view.depth


def _smoothstep_integral(u: float) -> float:
    """Integral over [0, u] of the smoothstep 3x^2 - 2x^3 (u in [0, 1]; 0.5 at u = 1)."""
    return u ** 3 - 0.5 * u ** 4


@dataclass(frozen=True)
class StreetTrajectory:
    """Camera motion down a street: forward along odom +x at a smoothly varying speed
    (mean ``speed_mps``, between 0.4x and 1.6x of it), drifting a little across the lane, with
    small yaw sway (a few degrees) and pitch/roll wobble (< 1 degree); height fixed at
    ``camera_height``.

    It stands still until ``static_s`` and during ``stop_s`` = (start, end) seconds in the
    middle, slowing down and speeding up over ``ramp_s`` around each stop. Standing still
    freezes everything (the pose is exactly constant), because every motion is a function of
    a "motion clock" that stops.
    """

    speed_mps: float = 1.25
    static_s: float = 0.0
    stop_s: Optional[Tuple[float, float]] = None
    ramp_s: float = 1.5
    camera_height: float = STREET_CAMERA_HEIGHT_M
    lane_y: float = -0.8  # right-hand lane (REP 103: y to the left)
    start_x: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.stop_s is not None:
            start, end = self.stop_s
            moving_from = self.static_s + self.ramp_s if self.static_s > 0.0 else 0.0
            if not (end >= start and start - self.ramp_s >= moving_from):
                raise ValueError(
                    f"stop_s {self.stop_s} must end after it starts and its slow-down ({self.ramp_s} s) "
                    f"must begin after the start-up, at {moving_from} s or later"
                )

    def _phases(self) -> np.ndarray:
        return np.random.default_rng([self.seed, 3]).uniform(0.0, 2.0 * math.pi, size=8)

    def motion_time(self, time_s: float) -> float:
        """The motion clock: time_s minus the time spent standing (smoothly)."""
        r = self.ramp_s
        lost = 0.0
        if self.static_s > 0.0:
            if time_s < self.static_s:
                return 0.0
            if time_s < self.static_s + r:
                u = (time_s - self.static_s) / r
                return r * (u - _smoothstep_integral(u))
            lost = self.static_s + 0.5 * r
        if self.stop_s is not None:
            start, end = self.stop_s
            still = start - lost - 0.5 * r  # the clock while standing
            if time_s < start - r:
                return time_s - lost
            if time_s < start:
                return time_s - lost - r * _smoothstep_integral((time_s - (start - r)) / r)
            if time_s < end:
                return still
            if time_s < end + r:
                u = (time_s - end) / r
                return still + r * (u - _smoothstep_integral(u))
            lost += (end - start) + r
        return time_s - lost

    def body_pose(self, time_s: float) -> Tuple[np.ndarray, np.ndarray]:
        """-> (position (3,) of camera_link in odom, rotation (3, 3) odom <- camera_link)."""
        tau = self.motion_time(time_s)
        phase = self._phases()
        two_pi = 2.0 * math.pi
        # Speed v = V (1 + a1 sin(2 pi tau / p1 + phi1) + a2 sin(...)), integrated in closed form.
        distance = tau
        for amplitude, period, phi in ((0.45, 10.0, phase[0]), (0.15, 3.3, phase[1])):
            distance += amplitude * period / two_pi * (math.cos(phi) - math.cos(two_pi * tau / period + phi))
        x = self.start_x + self.speed_mps * distance
        y = self.lane_y + 0.25 * math.sin(two_pi * tau / 12.0 + phase[2])
        yaw = math.radians(3.0) * math.sin(two_pi * tau / 8.0 + phase[3]) + math.radians(1.0) * math.sin(two_pi * tau / 2.1 + phase[4])
        pitch = math.radians(0.8) * math.sin(two_pi * tau / 1.7 + phase[5])
        roll = math.radians(0.6) * math.sin(two_pi * tau / 2.3 + phase[6])
        return np.array([x, y, self.camera_height]), rpy_to_matrix(roll, pitch, yaw)

    def T_odom_body(self, time_s: float) -> np.ndarray:
        position, rotation = self.body_pose(time_s)
        T = np.eye(4)
        T[:3, :3] = rotation
        T[:3, 3] = position
        return T

    def T_odom_optical(self, time_s: float, offset_x_m: float = 0.0) -> np.ndarray:
        """Pose (4, 4) of an optical frame offset by offset_x_m along the left optical x axis."""
        return self.T_odom_body(time_s) @ body_to_optical(offset_x_m)


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


def odometry_message(typestore, T_odom_body: np.ndarray, linear: np.ndarray, yaw_rate, stamp_ns: int):
    """nav_msgs/Odometry: pose of camera_link in odom (full 3D orientation); twist in camera_link.

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


def write_sorted_bag(
    path: Union[str, Path],
    entries: Iterable[BagEntry],
    topics: Sequence[Tuple[str, str]],
    storage: str = "mcap",
    typestore=None,
) -> Path:
    """Stream messages already in stamp order into a new rosbag2 directory (nothing is held in
    memory). topics: every (topic, msgtype) that occurs, declared in this order.
    -> the bag directory."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got '{storage}'")
    typestore = typestore or make_typestore()
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; write_sorted_bag creates a new bag directory")
    with Writer(path, version=8, storage_plugin=plugins[storage]) as writer:
        connections = {topic: writer.add_connection(topic, msgtype, typestore=typestore) for topic, msgtype in topics}
        last_stamp = None
        for entry in entries:
            if entry.topic not in connections:
                raise ValueError(f"topic {entry.topic} was not declared in topics")
            if last_stamp is not None and entry.stamp_ns < last_stamp:
                raise ValueError(f"entries out of stamp order at {entry.topic} {entry.stamp_ns} < {last_stamp}")
            last_stamp = entry.stamp_ns
            writer.write(connections[entry.topic], entry.stamp_ns, typestore.serialize_cdr(entry.message, entry.msgtype))
    return path


def storage_file(bag_dir: Union[str, Path]) -> Path:
    """The single .mcap or .db3 storage file inside a bag directory written by write_bag."""
    files = sorted(Path(bag_dir).glob("*.mcap")) + sorted(Path(bag_dir).glob("*.db3"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one storage file in {bag_dir}, found {[f.name for f in files]}")
    return files[0]


# --------------------------------------------------------------------------- recordings

SCENES = ("corridor", "street")
STOP_RAMP_S = 1.5  # slowing down before / speeding up after a stop (street)


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
    trajectory: Optional[Union[Trajectory, "StreetTrajectory"]] = None
    scene: Optional[Union[CorridorScene, StreetScene]] = None
    scene_name: str = "corridor"
    camera_height_m: float = 1.4  # camera_link above the ground plane z = 0
    surfaces: List[np.ndarray] = field(default_factory=list)  # street: left surface ids (H, W) (StreetScene)
    right_poses: List[np.ndarray] = field(default_factory=list)  # T_odom_optical of the right camera
    still_frames: List[int] = field(default_factory=list)  # frames (after the first) whose pose equals the previous one


@dataclass
class _Frame:
    index: int
    stamp_ns: int
    pose: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    surface: Optional[np.ndarray] = None
    right_stamp_ns: int = 0
    right_pose: Optional[np.ndarray] = None
    right_rgb: Optional[np.ndarray] = None


def street_stop_interval(num_frames: int, rate_hz: float, static_frames: int, stop_frames: int):
    """(start_s, end_s) of the mid-recording stop in which frames k .. k + stop_frames - 1 stand
    exactly still (k ~ 45 % into the recording), or None when stop_frames is 0.
    Raises ValueError when the recording is too short to slow down and speed up around it."""
    if stop_frames <= 0:
        return None
    first = max(int(round(0.45 * num_frames)), static_frames + 1)
    # Half a frame of margin on both sides: frame stamps never sit on a boundary.
    start, end = (first - 0.5) / rate_hz, (first + stop_frames - 0.5) / rate_hz
    moving_from = static_frames / rate_hz + STOP_RAMP_S if static_frames > 0 else 0.0
    if first + stop_frames > num_frames or start - STOP_RAMP_S < moving_from:
        raise ValueError(
            f"{num_frames} frames at {rate_hz} Hz are too few for a stop of {stop_frames} frames "
            f"(it needs {STOP_RAMP_S} s to slow down and to speed up): use more frames or stop_frames=0"
        )
    return start, end


def _auto_stop_frames(num_frames: int, rate_hz: float, static_frames: int) -> int:
    """Default street stop: ~7 % of the recording, at least 5 frames, when it fits."""
    frames = max(5, int(round(0.07 * num_frames)))
    try:
        street_stop_interval(num_frames, rate_hz, static_frames, frames)
    except ValueError:
        return 0
    return frames


class _RecordingPlan:
    """Camera, scene and motion of a recording; renders frame by frame."""

    def __init__(self, *, num_frames, width, height, rate_hz, speed_mps, stereo, baseline_m, static_frames,
                 seed, distortion, distortion_model, stereo_offset_s, scene, stop_frames):
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {', '.join(SCENES)}, got '{scene}'")
        if num_frames < 1 or width < 8 or height < 8 or rate_hz <= 0:
            raise ValueError("need num_frames >= 1, width and height >= 8, rate_hz > 0")
        if static_frames < 0:
            raise ValueError(f"static_frames must be >= 0, got {static_frames}")
        self.num_frames, self.width, self.height, self.rate_hz = num_frames, width, height, rate_hz
        self.stereo, self.baseline_m, self.stereo_offset_s = stereo, baseline_m, stereo_offset_s
        self.scene_name = scene
        self.K = camera_intrinsics(width, height)
        self.rays = camera_rays(self.K, width, height, distortion, distortion_model)
        self.period_ns = int(round(1e9 / rate_hz))
        if scene == "corridor":
            if stop_frames:
                raise ValueError("stop_frames is for scene='street' (the corridor only stands still at the start)")
            self.scene = CorridorScene.with_boxes(seed)
            self.trajectory = Trajectory(speed_mps=speed_mps, static_s=static_frames / rate_hz)
        else:
            if stop_frames is None:
                stop_frames = _auto_stop_frames(num_frames, rate_hz, static_frames)
            # Frames 0 .. static_frames - 1 stand still.
            static_s = (static_frames - 0.5) / rate_hz if static_frames > 0 else 0.0
            self.trajectory = StreetTrajectory(
                speed_mps=speed_mps, static_s=static_s, ramp_s=STOP_RAMP_S, seed=seed,
                stop_s=street_stop_interval(num_frames, rate_hz, static_frames, stop_frames),
            )
            last = self.trajectory.T_odom_body((num_frames - 1) * self.period_ns * 1e-9)
            self.scene = StreetScene.generate(seed, length_m=float(last[0, 3]))

    def new_recording(self) -> SyntheticRecording:
        return SyntheticRecording(
            path=Path(), K=self.K, stamps_ns=[], trajectory=self.trajectory, scene=self.scene,
            scene_name=self.scene_name, camera_height_m=float(self.trajectory.camera_height),
        )

    def _render(self, pose):
        if isinstance(self.scene, StreetScene):
            view = self.scene.render_view(self.rays, pose, self.width, self.height, self.K[0, 0])
            return view.rgb, view.depth, view.surface
        rgb, depth = self.scene.render(self.rays, pose, self.width, self.height, self.K[0, 0])
        return rgb, depth, None

    def frame(self, index: int) -> _Frame:
        stamp_ns = STAMP_ORIGIN_NS + index * self.period_ns
        time_s = index * self.period_ns * 1e-9
        pose = self.trajectory.T_odom_optical(time_s)
        rgb, depth, surface = self._render(pose)
        frame = _Frame(index=index, stamp_ns=stamp_ns, pose=pose, rgb=rgb, depth=depth, surface=surface)
        if self.stereo:
            offset_ns = int(round(self.stereo_offset_s * 1e9))
            frame.right_pose = self.trajectory.T_odom_optical(time_s + offset_ns * 1e-9, offset_x_m=self.baseline_m)
            frame.right_rgb, _, _ = self._render(frame.right_pose)
            frame.right_stamp_ns = stamp_ns + offset_ns
        return frame

    def frames(self, recording: Optional[SyntheticRecording] = None, progress=None):
        """Render every frame in order; appended to `recording` when given; progress(1) after each."""
        previous = None
        for index in range(self.num_frames):
            frame = self.frame(index)
            if recording is not None:
                recording.stamps_ns.append(frame.stamp_ns)
                recording.images.append(frame.rgb)
                recording.depths.append(frame.depth)
                recording.poses.append(frame.pose)
                if frame.surface is not None:
                    recording.surfaces.append(frame.surface)
                if self.stereo:
                    recording.right_images.append(frame.right_rgb)
                    recording.right_stamps_ns.append(frame.right_stamp_ns)
                    recording.right_poses.append(frame.right_pose)
                if previous is not None and np.array_equal(previous, frame.pose):
                    recording.still_frames.append(index)
            previous = frame.pose
            if progress is not None:
                progress(1)
            yield frame


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
    scene: str = "corridor",
    stop_frames: Optional[int] = None,
    progress=None,
) -> SyntheticRecording:
    """Render the frames of a synthetic recording without writing a bag (path is empty).

    scene: "corridor" (the default, small and enclosed) or "street" (see StreetScene; speed
    varies between 0.4x and 1.6x speed_mps, and it stands still for `stop_frames` frames in
    the middle: None = about 7 % of the frames when the recording is long enough).
    """
    plan = _RecordingPlan(
        num_frames=num_frames, width=width, height=height, rate_hz=rate_hz, speed_mps=speed_mps, stereo=stereo,
        baseline_m=baseline_m, static_frames=static_frames, seed=seed, distortion=distortion,
        distortion_model=distortion_model, stereo_offset_s=stereo_offset_s, scene=scene, stop_frames=stop_frames,
    )
    recording = plan.new_recording()
    for _ in plan.frames(recording, progress):
        pass
    return recording


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
    plan = _RecordingPlan(
        num_frames=num_frames, width=width, height=height, rate_hz=rate_hz, speed_mps=speed_mps, stereo=stereo,
        baseline_m=baseline_m, static_frames=static_frames, seed=seed, distortion=distortion,
        distortion_model=distortion_model, stereo_offset_s=stereo_offset_s, scene=scene, stop_frames=stop_frames,
    )
    # Checked before anything is rendered.
    for value, name, choices in ((storage, "storage", ("mcap", "sqlite3")), (depth_encoding, "depth_encoding", ("32FC1", "16UC1"))):
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got '{value}'")
    if compressed and compressed is not True and compressed not in ("jpeg", "png"):
        raise ValueError(f"unsupported compressed format '{compressed}' (jpeg, png)")
    _rgb_to_encoding(np.zeros((1, 1, 3), np.uint8), encoding)  # raises for an unsupported encoding
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
