"""Tests of the depth colour map for people."""
from __future__ import annotations

import cv2
import numpy as np

from mono_depth_ros.colorize import colorize_depth

MAGMA = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_MAGMA)[:, 0]  # (256, 3) BGR


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)


def depth_ramp(height=40, width=64, near=0.5, far=50.0) -> np.ndarray:
    """Depth growing from left (near) to right (far)."""
    return np.tile(np.geomspace(near, far, width, dtype=np.float32), (height, 1))


def test_shape_dtype_and_colour_map():
    depth = depth_ramp()
    colour = colorize_depth(depth)
    assert colour.shape == (40, 64, 3) and colour.dtype == np.uint8
    # Every pixel is a magma colour (BGR).
    palette = {tuple(c) for c in MAGMA.tolist()}
    assert {tuple(c) for c in colour.reshape(-1, 3).tolist()} <= palette


def test_nearer_is_brighter():
    colour = colorize_depth(depth_ramp())
    brightness = grey(colour).mean(axis=0)  # per column, near to far
    assert brightness[:16].mean() > brightness[-16:].mean() + 50
    assert np.all(np.diff(brightness) <= 1.0)  # non-increasing with depth (up to rounding)
    random_depth = np.random.default_rng(0).uniform(1.0, 30.0, size=(48, 48)).astype(np.float32)
    random_grey = grey(colorize_depth(random_depth))
    assert random_grey[random_depth < 3.0].mean() > random_grey[random_depth > 20.0].mean()


def test_invalid_pixels_are_black():
    depth = depth_ramp()
    invalid = np.zeros(depth.shape, dtype=bool)
    for value, (row, column) in zip([np.nan, np.inf, -np.inf, 0.0, -3.0], [(0, 0), (5, 1), (10, 2), (20, 3), (39, 4)]):
        depth[row, column] = value
        invalid[row, column] = True
    colour = colorize_depth(depth)
    assert (colour[invalid] == 0).all()
    assert (colour[~invalid].sum(axis=-1) > 0).all()


def test_nearest_pixels_saturate_at_percentile():
    depth = depth_ramp(width=100)
    colour = colorize_depth(depth, percentile=95.0)
    np.testing.assert_array_equal(colour[:, 0], np.tile(MAGMA[255], (40, 1)))  # nearest: top colour
    assert not (colour[:, -1] == MAGMA[255]).all()


def test_normalised_per_image():
    depth = depth_ramp()
    np.testing.assert_array_equal(colorize_depth(depth * 4.0), colorize_depth(depth))


def test_all_invalid_is_all_black():
    depth = np.full((8, 8), np.nan, dtype=np.float32)
    assert (colorize_depth(depth) == 0).all()


def test_sparse_valid_pixels_off_the_subsample_grid_are_normalised_too():
    depth = np.full((9, 9), np.nan, dtype=np.float32)
    depth[1, 2] = 10.0  # not on the [::4, ::4] grid
    depth[5, 7] = 20.0
    colour = colorize_depth(depth, percentile=100.0)
    np.testing.assert_array_equal(colour[1, 2], MAGMA[255])  # nearest valid pixel: brightest
    np.testing.assert_array_equal(colour[5, 7], MAGMA[127])  # half the inverse depth
