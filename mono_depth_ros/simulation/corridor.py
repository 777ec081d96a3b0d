"""CorridorScene: a small textured corridor (ground, ceiling, side walls, end wall, a few boxes),
ray cast analytically and shaded with procedural lattice noise; the default scene of
render_recording / write_synthetic_bag. Its camera motion is :class:`.trajectory.Trajectory`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .box import Box


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
