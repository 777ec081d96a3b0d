"""Point-cloud math and PointCloud2 packing (plain NumPy, no ROS import).

Fields: x, y, z float32 at offsets 0, 4, 8 and ``rgb`` at offset 12, a float32
field whose bytes are b, g, r, 0 (the uint32 0x00RRGGBB), which is how
depth_image_proc's point_cloud_xyzrgb packs colour and what RViz's RGB8 colour
transformer reads. Unlike depth_image_proc we leave out PCL's padding: 16 bytes a
point instead of 32 halves the bytes on the wire (readers go by the field
offsets). Invalid points are NaN and the cloud is not dense.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import cv2
import numpy as np

POINT_STEP = 16
FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
# (name, offset, datatype, count) as sensor_msgs/PointField wants them
POINT_FIELDS: Tuple[Tuple[str, int, int, int], ...] = (
    ("x", 0, FLOAT32, 1),
    ("y", 4, FLOAT32, 1),
    ("z", 8, FLOAT32, 1),
    ("rgb", 12, FLOAT32, 1),
)


class PackedCloud(NamedTuple):
    height: int
    width: int
    data: np.ndarray  # uint8, height * width * POINT_STEP bytes, little-endian


def unit_depth_rays(K: np.ndarray, height: int, width: int, stride: int = 1) -> np.ndarray:
    """Rays with z == 1 for the sampled pixel centres (u, v) = (stride * j, stride * i).

    K: (3, 3) for the full image -> (ceil(H / stride), ceil(W / stride), 2) float32 holding
    ((u - cx) / fx, (v - cy) / fy); the skew term is honoured. Multiply by depth to get x, y.
    """
    fx, skew, cx = float(K[0, 0]), float(K[0, 1]), float(K[0, 2])
    fy, cy = float(K[1, 1]), float(K[1, 2])
    u = np.arange(0, width, stride, dtype=np.float64)
    v = np.arange(0, height, stride, dtype=np.float64)
    y_over_z = (v - cy) / fy
    x_over_z = (u[None, :] - cx - skew * y_over_z[:, None]) / fx
    rays = np.empty((v.size, u.size, 2), dtype=np.float32)
    rays[:, :, 0] = x_over_z
    rays[:, :, 1] = y_over_z[:, None]
    return rays


def pack_xyzrgb(
    depth: np.ndarray,
    rays: np.ndarray,
    rgb: np.ndarray,
    min_depth: float = 0.0,
    max_depth: float = np.inf,
) -> PackedCloud:
    """Build an organised xyz+rgb cloud from depth along the optical axis.

    depth: (h, w) float32 metres, already sampled at the ray pixels; rays: (h, w, 2) from
    :func:`unit_depth_rays`; rgb: (h, w, 3) uint8 at the same pixels. Depth that is not finite
    or outside [min_depth, max_depth] gives a NaN point. -> PackedCloud(h, w, h * w * 16 bytes).
    """
    height, width = depth.shape
    if rays.shape[:2] != (height, width) or rgb.shape[:2] != (height, width):
        raise ValueError(f"depth {depth.shape}, rays {rays.shape} and rgb {rgb.shape} differ in size")
    z = depth.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        # isfinite too: +inf passes the range test when max_depth is +inf (the default)
        z = np.where(np.isfinite(z) & (z >= min_depth) & (z <= max_depth), z, np.float32(np.nan))
    x = rays[:, :, 0] * z
    y = rays[:, :, 1] * z
    # b, g, r, 0 bytes == little-endian uint32 0x00RRGGBB; cv2.merge interleaves fast.
    red, green, blue = cv2.split(np.ascontiguousarray(rgb))
    colour = cv2.merge([blue, green, red, np.zeros_like(red)]).view(np.float32)[:, :, 0]
    points = cv2.merge([x, y, z, colour])
    return PackedCloud(height, width, points.reshape(-1).view(np.uint8))


def unpack_xyzrgb(data, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_xyzrgb`: -> (xyz (h, w, 3) float32, rgb (h, w, 3) uint8)."""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(height, width, POINT_STEP)
    xyz = raw[:, :, :12].copy().view(np.float32).reshape(height, width, 3)
    rgb = raw[:, :, [14, 13, 12]].copy()
    return xyz, rgb


def write_ply(path, xyz: np.ndarray, rgb: np.ndarray) -> int:
    """Write the finite points of (N, 3) float32 xyz with (N, 3) uint8 rgb as binary PLY.

    -> number of points written. Viewable in MeshLab, CloudCompare or Open3D.
    """
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    vertices = np.empty(int(keep.sum()), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                 ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[keep, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = rgb[keep, channel]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {vertices.size}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as stream:
        stream.write(header.encode("ascii"))
        stream.write(vertices.tobytes())
    return int(vertices.size)
