"""Rigid transforms on batched tensors: applying, inverting, and pose vectors (axis-angle, translation).

A pose ``T_b_a`` (4x4, ``[[R, t], [0, 1]]``) maps points expressed in frame ``a`` into frame ``b``:
``p_b = R p_a + t``; translations are in metres (or the depth network's units).
"""
from __future__ import annotations

import torch

from .rotations import axis_angle_to_matrix, matrix_to_axis_angle


def transform_points(T_b_a: torch.Tensor, points_a: torch.Tensor) -> torch.Tensor:
    """Apply a rigid transform to points.

    Args:
        T_b_a: (B, 4, 4) transform from frame a to frame b.
        points_a: (B, 3, N) points in frame a.

    Returns:
        (B, 3, N) the same points in frame b (``R p_a + t``), same units.
    """
    return T_b_a[:, :3, :3] @ points_a + T_b_a[:, :3, 3:4]


def pose_vector_to_matrix(axis_angle: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Pose vector to homogeneous transform.

    Args:
        axis_angle: (B, 3) rotation vector (axis * angle), radians.
        translation: (B, 3) metres (or model units).

    Returns:
        (B, 4, 4) ``T = [[R, t], [0, 1]]`` (R from :func:`~.rotations.axis_angle_to_matrix`),
        dtype and device of axis_angle.
    """
    batch = axis_angle.shape[0]
    T = torch.zeros(batch, 4, 4, dtype=axis_angle.dtype, device=axis_angle.device)
    T[:, :3, :3] = axis_angle_to_matrix(axis_angle)
    T[:, :3, 3] = translation
    T[:, 3, 3] = 1.0
    return T


def matrix_to_pose_vector(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Homogeneous transform to pose vector, the inverse of :func:`pose_vector_to_matrix`.

    Args:
        T: (B, 4, 4) rigid transform, rotation angle in [0, pi).

    Returns:
        (axis_angle (B, 3) radians, translation (B, 3) in T's units; a copy).
    """
    return matrix_to_axis_angle(T[:, :3, :3]), T[:, :3, 3].clone()


def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """Inverse of a rigid transform.

    Args:
        T: (B, 4, 4) ``T_b_a`` (rotation orthonormal, last row (0, 0, 0, 1)).

    Returns:
        (B, 4, 4) ``T_a_b = [[R^T, -R^T t], [0, 1]]``.
    """
    R_t = T[:, :3, :3].transpose(1, 2)
    inverse = torch.zeros_like(T)
    inverse[:, :3, :3] = R_t
    inverse[:, :3, 3:4] = -R_t @ T[:, :3, 3:4]
    inverse[:, 3, 3] = 1.0
    return inverse
