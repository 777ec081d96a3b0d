"""Seeded tileable textures for the street, sampled by metres with mip-mapping.

Colour comes from small seeded tileable texture images (generated once per scene) sampled
with cv2.remap at texture coordinates in metres. Anti-aliasing: each texture has a mip
chain; every pixel blends the two levels around its footprint (metres per pixel on the
surface). All tiles and levels live in one atlas image so that one view takes two remaps.

* ``texture_road`` ... ``texture_clouds`` -- one tile per material (uint8 RGB).
* :class:`TextureAtlas` -- the tiles and their mip chains in one image; ``sample`` filters.
* :class:`CoarseShading` -- a smooth brightness field for large-scale variation.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np


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


def texture_road(rng, size: int = 512) -> np.ndarray:
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


def texture_sidewalk(rng, size: int = 256, slabs: int = 6) -> np.ndarray:
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


def texture_brick(rng, size: int = 512) -> np.ndarray:
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


def texture_plaster(rng, size: int = 512) -> np.ndarray:
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


def texture_crate(rng, size: int = 256) -> np.ndarray:
    """Wooden planks 0.16 m wide with grain along them, 0.01 m/texel."""
    rows = np.mgrid[0:size, 0:size][0]
    grain = _tileable_noise(rng, size, size, 1.6, stretch=10.0)
    plank = rng.uniform(-0.1, 0.1, size=size // 16 + 1)[rows // 16]
    gaps = (rows % 16) < 1.5
    value = 1.0 + plank + 0.12 * grain + 0.05 * _tileable_noise(rng, size, size, 0.3)
    rgb = np.array([0.66, 0.50, 0.32]) * value[:, :, None]
    rgb = np.where(gaps[:, :, None], np.array([0.2, 0.15, 0.1]), rgb)
    return _to_uint8(rgb)


def texture_car(rng, size: int = 256) -> np.ndarray:
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


def texture_pole(rng, size: int = 128) -> np.ndarray:
    """Painted metal with rings every 0.32 m and rust blotches, 0.01 m/texel."""
    rows = np.mgrid[0:size, 0:size][0]
    value = 0.45 + 0.04 * _tileable_noise(rng, size, size, 0.3) + 0.05 * _tileable_noise(rng, size, size, 2.0)
    rings = (rows % 32) < 3
    rgb = np.array([0.55, 0.62, 0.58]) * (value / 0.45)[:, :, None]
    rgb = np.where(rings[:, :, None], np.array([0.20, 0.20, 0.22]), rgb)
    rust = _tileable_noise(rng, size, size, 2.5) > 1.3
    rgb = np.where(rust[:, :, None], np.array([0.45, 0.28, 0.16]), rgb)
    return _to_uint8(rgb)


def texture_clouds(rng, width: int = 512, height: int = 128) -> np.ndarray:
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
