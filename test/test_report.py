"""Report pictures: fixed-scale depth colouring, comparison grid, rendered point cloud."""
from __future__ import annotations

import numpy as np
import pytest

from mono_depth_ros_training.report import colorize_inverse_depth, comparison_grid, look_at_view, render_point_cloud


def test_inverse_depth_colours_are_on_one_fixed_scale():
    depth = np.array([[2.0, 4.0, np.inf, np.nan, -np.inf, 1.0]], dtype=np.float32)
    colour = colorize_inverse_depth(depth, near_m=2.0)
    brightness = colour.astype(int).sum(axis=2)[0]
    assert brightness[0] > brightness[1] > brightness[2]  # nearer is brighter, +inf darkest of the valid
    assert brightness[0] == brightness[5]  # at or nearer than near_m: saturated
    assert brightness[3] == brightness[4] == 0  # NaN and -inf: black
    # The same depth gets the same colour in another map (no per-image normalisation).
    other = colorize_inverse_depth(np.array([[4.0, 100.0]], dtype=np.float32), near_m=2.0)
    assert np.array_equal(other[0, 0], colour[0, 1])


def test_comparison_grid_rows_and_columns():
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0] = 255  # pure red in RGB -> BGR (0, 0, 255) in the grid
    prediction = np.full((4, 5), 3.0, np.float32)  # a quarter of the size: resized to the image
    truth = np.full((8, 10), 3.0, np.float32)
    grid = comparison_grid([rgb, rgb], [prediction, prediction], [truth, truth], near_m=3.0)
    assert grid.shape == (16, 30, 3)
    assert tuple(grid[12, 2]) == (0, 0, 255)
    assert np.array_equal(grid[12, 12], grid[12, 22])  # same depth, same colour in both columns
    with pytest.raises(ValueError, match="same, non-zero number"):
        comparison_grid([rgb], [], [truth])


def test_look_at_view_puts_the_target_on_the_optical_axis():
    eye, target = np.array([1.0, -2.0, -3.0]), np.array([0.5, 0.0, 6.0])
    T = look_at_view(eye, target, np.array([0.0, -1.0, 0.0]))
    assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3))
    in_view = T[:3, :3] @ target + T[:3, 3]
    assert np.allclose(in_view[:2], 0.0, atol=1e-12) and in_view[2] == pytest.approx(np.linalg.norm(target - eye))


def test_rendered_cloud_draws_points_where_the_virtual_camera_projects_them():
    # A single green point straight ahead of a virtual camera at the sensor's origin lands in the centre.
    xyz = np.array([[0.0, 0.0, 5.0], [np.nan, np.nan, np.nan]])
    rgb = np.array([[0, 255, 0], [255, 0, 0]], np.uint8)
    image = render_point_cloud(xyz, rgb, width=64, height=48, eye=(0.0, 0.0, 0.0), target=(0.0, 0.0, 1.0), point_size=1)
    drawn = np.argwhere(~np.all(image == 40, axis=2))
    assert drawn.tolist() == [[24, 32]]
    assert tuple(image[24, 32]) == (0, 255, 0)
    # A nearer point in front of it wins (z-buffer), whatever the input order.
    xyz = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 5.0]])
    rgb = np.array([[0, 0, 255], [0, 255, 0]], np.uint8)
    image = render_point_cloud(xyz, rgb, width=64, height=48, eye=(0.0, 0.0, 0.0), target=(0.0, 0.0, 1.0), point_size=1)
    assert tuple(image[24, 32]) == (255, 0, 0)  # BGR of RGB (0, 0, 255)
    # Points behind the virtual camera are not drawn.
    behind = render_point_cloud(np.array([[0.0, 0.0, -5.0]]), np.array([[9, 9, 9]], np.uint8), width=64, height=48,
                                eye=(0.0, 0.0, 0.0), target=(0.0, 0.0, 1.0))
    assert np.all(behind == 40)
