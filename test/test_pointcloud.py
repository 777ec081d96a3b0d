"""Tests of point-cloud math and PointCloud2 packing."""
from __future__ import annotations

import numpy as np
import pytest

from mono_depth_ros.pointcloud import (
    FLOAT32,
    POINT_FIELDS,
    POINT_STEP,
    PackedCloud,
    pack_xyzrgb,
    unit_depth_rays,
    unpack_xyzrgb,
)

HEIGHT, WIDTH = 720, 1280
K = np.array([[1000.0, 0.0, 655.3], [0.0, 990.0, 341.8], [0.0, 0.0, 1.0]])  # principal point off centre


def structured_points(cloud: PackedCloud) -> np.ndarray:
    """Read the cloud the way PointCloud2 readers do: by the field table's names and offsets."""
    assert all(datatype == FLOAT32 and count == 1 for _, _, datatype, count in POINT_FIELDS)
    dtype = np.dtype(
        {
            "names": [name for name, *_ in POINT_FIELDS],
            "formats": ["<f4"] * len(POINT_FIELDS),
            "offsets": [offset for _, offset, *_ in POINT_FIELDS],
            "itemsize": POINT_STEP,
        }
    )
    return np.frombuffer(cloud.data.tobytes(), dtype=dtype).reshape(cloud.height, cloud.width)


def project(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) -> pixels (..., 2) as (u, v), in float64."""
    xyz = xyz.astype(np.float64)
    x, y, z = xyz[..., 0] / xyz[..., 2], xyz[..., 1] / xyz[..., 2], 1.0
    return np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2] * z, K[1, 1] * y + K[1, 2] * z], axis=-1)


def test_field_table():
    assert POINT_STEP == 16
    assert POINT_FIELDS == (("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1))


def test_rgb_bytes_are_b_g_r_0_at_offset_12():
    depth = np.array([[2.0, 3.0]], dtype=np.float32)
    rays = np.array([[[0.5, -0.25], [0.0, 0.0]]], dtype=np.float32)
    rgb = np.array([[[0x12, 0x34, 0x56], [255, 0, 1]]], dtype=np.uint8)
    cloud = pack_xyzrgb(depth, rays, rgb)
    assert (cloud.height, cloud.width) == (1, 2)
    assert cloud.data.dtype == np.uint8 and cloud.data.size == 2 * POINT_STEP
    raw = cloud.data.tobytes()
    assert raw[0:12] == np.array([1.0, -0.5, 2.0], dtype="<f4").tobytes()
    assert raw[12:16] == bytes([0x56, 0x34, 0x12, 0x00])
    assert int.from_bytes(raw[12:16], "little") == 0x00123456
    assert int.from_bytes(raw[28:32], "little") == 0x00FF0001
    points = structured_points(cloud)
    assert points["rgb"].view("<u4").tolist() == [[0x00123456, 0x00FF0001]]


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 80.0, size=(7, 11)).astype(np.float32)
    rays = rng.uniform(-1.0, 1.0, size=(7, 11, 2)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)
    cloud = pack_xyzrgb(depth, rays, rgb)
    xyz, rgb_back = unpack_xyzrgb(cloud.data, cloud.height, cloud.width)
    np.testing.assert_array_equal(rgb_back, rgb)
    np.testing.assert_array_equal(xyz[:, :, 2], depth)
    np.testing.assert_array_equal(xyz[:, :, :2], rays * depth[:, :, None])
    points = structured_points(cloud)
    np.testing.assert_array_equal(np.stack([points["x"], points["y"], points["z"]], axis=-1), xyz)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_every_point_reprojects_onto_its_own_pixel(stride):
    rng = np.random.default_rng(stride)
    rays = unit_depth_rays(K, HEIGHT, WIDTH, stride)
    rows, cols = -(-HEIGHT // stride), -(-WIDTH // stride)
    assert rays.shape == (rows, cols, 2) and rays.dtype == np.float32
    full_depth = rng.uniform(0.5, 80.0, size=(HEIGHT, WIDTH)).astype(np.float32)
    full_rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth, rgb = full_depth[::stride, ::stride], full_rgb[::stride, ::stride]
    cloud = pack_xyzrgb(depth, rays, rgb, min_depth=0.1, max_depth=100.0)
    xyz, rgb_back = unpack_xyzrgb(cloud.data, cloud.height, cloud.width)
    v, u = np.mgrid[0:rows, 0:cols] * stride  # pixel = stride * index
    error = np.abs(project(xyz, K) - np.stack([u, v], axis=-1))
    assert error.max() < 0.01
    np.testing.assert_array_equal(xyz[:, :, 2], depth)
    np.testing.assert_array_equal(rgb_back, rgb)


def test_unit_depth_rays_honour_skew():
    skewed = K.copy()
    skewed[0, 1] = 3.5
    rays = unit_depth_rays(skewed, 40, 60)
    xyz = np.concatenate([rays, np.ones(rays.shape[:2] + (1,), np.float32)], axis=-1) * 7.0
    v, u = np.mgrid[0:40, 0:60]
    assert np.abs(project(xyz, skewed) - np.stack([u, v], axis=-1)).max() < 1e-3
    # Ignoring the skew would be off by skew * y / fx pixels: the test notices.
    assert np.abs(unit_depth_rays(K, 40, 60) - rays).max() > 1e-3


def test_invalid_depth_gives_nan_points_and_keeps_valid_ones():
    depth = np.array([[0.05, 0.1, 5.0, 50.0, 50.001, np.nan, np.inf, -np.inf, 0.0, -2.0]], dtype=np.float32)
    rays = np.full((1, depth.shape[1], 2), 0.25, dtype=np.float32)
    rgb = np.full((1, depth.shape[1], 3), 9, dtype=np.uint8)
    xyz, rgb_back = unpack_xyzrgb(pack_xyzrgb(depth, rays, rgb, min_depth=0.1, max_depth=50.0).data, 1, depth.shape[1])
    valid = [False, True, True, True, False, False, False, False, False, False]
    for index, is_valid in enumerate(valid):
        if is_valid:
            np.testing.assert_array_equal(xyz[0, index], np.float32([0.25, 0.25, 1.0]) * depth[0, index])
        else:
            assert np.isnan(xyz[0, index]).all(), index
    assert (rgb_back == 9).all()


def test_default_range_accepts_every_positive_finite_depth():
    depth = np.array([[1e-6, 1e6, np.inf]], dtype=np.float32)
    xyz, _ = unpack_xyzrgb(
        pack_xyzrgb(depth, np.zeros((1, 3, 2), np.float32), np.zeros((1, 3, 3), np.uint8)).data, 1, 3
    )
    assert xyz[0, 0, 2] == np.float32(1e-6) and xyz[0, 1, 2] == np.float32(1e6)
    assert np.isnan(xyz[0, 2]).all()  # +inf is not finite, although max_depth defaults to +inf


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match=r"depth \(2, 3\), rays \(2, 4, 2\) and rgb \(2, 3, 3\) differ in size"):
        pack_xyzrgb(np.ones((2, 3), np.float32), np.ones((2, 4, 2), np.float32), np.ones((2, 3, 3), np.uint8))


def test_write_ply_keeps_finite_points_with_colours(tmp_path):
    from mono_depth_ros.pointcloud import write_ply

    xyz = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan], [-1.5, 0.25, 7.0]], dtype=np.float32)
    rgb = np.array([[255, 0, 10], [1, 2, 3], [0, 128, 255]], dtype=np.uint8)
    path = tmp_path / "cloud.ply"
    assert write_ply(path, xyz, rgb) == 2
    raw = path.read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    assert b"element vertex 2" in header and b"binary_little_endian" in header
    vertices = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("r", "u1"), ("g", "u1"), ("b", "u1")])
    np.testing.assert_array_equal(np.stack([vertices["x"], vertices["y"], vertices["z"]], 1), xyz[[0, 2]])
    np.testing.assert_array_equal(np.stack([vertices["r"], vertices["g"], vertices["b"]], 1), rgb[[0, 2]])
