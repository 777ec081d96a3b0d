"""StreetScene: a street with sidewalks, building blocks, parked cars, crates, lamp and sign
posts and sky (depth +inf), all axis-aligned boxes ray cast exactly, coloured from seeded
tileable textures (:mod:`.textures`). What ``sample_recording`` renders; its camera motion is
:class:`.trajectory.StreetTrajectory`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from .box import Box
from .textures import (
    CoarseShading,
    TextureAtlas,
    texture_brick,
    texture_car,
    texture_clouds,
    texture_crate,
    texture_plaster,
    texture_pole,
    texture_road,
    texture_sidewalk,
)

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
            (texture_road(texture_rng), 2 * ROAD_HALF_WIDTH_M / 512),
            (texture_sidewalk(texture_rng), 3.0 / 256),
            (texture_brick(texture_rng), 0.025),
            (texture_plaster(texture_rng), 0.025),
            (texture_crate(texture_rng), 0.01),
            (texture_car(texture_rng), 0.02),
            (texture_pole(texture_rng), 0.01),
            (texture_clouds(texture_rng), SKY_TEXEL_RAD),
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
