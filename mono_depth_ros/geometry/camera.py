"""Pinhole camera geometry on batched tensors: pixel rays, back-projection, projection (and
:func:`~.intrinsics.scale_intrinsics`, re-exported from its torch-free home :mod:`.intrinsics`).

Frames and pixel conventions are those of :mod:`mono_depth_ros.geometry` (ROS optical frames,
pixel centres at integer coordinates, ``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels).
"""
from __future__ import annotations

import torch

from .intrinsics import scale_intrinsics  # noqa: F401  (its home: .intrinsics, torch-free)


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel coordinates of every pixel centre.

    Args:
        height, width: image size in pixels.
        device, dtype: of the result.

    Returns:
        (3, H, W): rows are u (column, pixels), v (row, pixels) and 1; ``[:, v, u] == (u, v, 1)``.
    """
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=0)


def pixel_rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Unit-depth rays of every pixel centre in the camera optical frame.

    Args:
        K: (B, 3, 3) intrinsics, pixels.
        height, width: image size in pixels.

    Returns:
        (B, 3, H, W) rays in the optical frame with z == 1 (dimensionless), so ``rays * depth``
        are 3D points in the depth's units. Same dtype and device as K.

    Computed in float64 and cast back so that re-projection is exact to ~1e-4 px.
    """
    grid = pixel_grid(height, width, device=K.device, dtype=torch.float64).reshape(3, -1)
    rays = torch.linalg.inv(K.double()) @ grid  # (B, 3, H*W)
    rays = rays / rays[:, 2:3, :]
    return rays.reshape(K.shape[0], 3, height, width).to(K.dtype)


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Lift a depth map to 3D points in the camera optical frame.

    Args:
        depth: (B, 1, H, W) distance along the optical axis (z), metres (or model units).
        K: (B, 3, 3) intrinsics, pixels.

    Returns:
        (B, 3, H, W) points (x, y, z) in the optical frame, depth's units, with
        ``points[:, 2] == depth``; dtype of depth.
    """
    batch, _, height, width = depth.shape
    return pixel_rays(K.to(depth.dtype), height, width) * depth


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Project 3D points in a camera optical frame to pixel coordinates.

    Args:
        points: (B, 3, N) points (x, y, z) in the camera's optical frame, any length unit.
        K: (B, 3, 3) intrinsics, pixels.
        eps: smallest z divided by (same unit as points).

    Returns:
        (B, 2, N) pixel coordinates (u, v) in pixels (pixel centres at integers).
        Points at or behind the camera get huge coordinates (z clamped to eps), which
        samplers treat as out of view.
    """
    cam = K @ points
    return cam[:, :2] / cam[:, 2:3].clamp(min=eps)
