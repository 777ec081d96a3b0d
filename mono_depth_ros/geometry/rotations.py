"""Rotations: matrices, rotation vectors (axis-angle), quaternions, roll-pitch-yaw, angles.

Two kinds of function live here:

* NumPy, one rotation at a time (float64): :func:`rpy_to_matrix`, :func:`matrix_to_quaternion`,
  :func:`quaternion_to_matrix`, :func:`rotation_log`, :func:`rotation_angle_deg`,
  :func:`angle_between_deg`. Used by the odometry publisher, the synthetic recordings and the
  odometry metrics.
* PyTorch, batched and differentiable: :func:`axis_angle_to_matrix`, :func:`matrix_to_axis_angle`.
  Used by the pose network's outputs and the trainer.

Importing this module does not import torch: the PyTorch functions import it when first called,
so the NumPy half works in a process without torch.

Conventions: a rotation matrix ``R`` (3, 3) maps vectors of frame ``a`` into frame ``b``
(``v_b = R v_a``, as the rotation part of ``T_b_a``). A rotation vector is axis * angle in
radians (right-handed). Quaternions are (x, y, z, w), the order of ``geometry_msgs/Quaternion``,
with w >= 0.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

# REP 103 frames: the rotation taking optical-frame vectors (x right, y down, z forward) into the
# body frame (x forward, y left, z up); its columns are optical x, y, z in body axes.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# --------------------------------------------------------------------------- NumPy, one rotation


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """REP 103 fixed-axis roll, pitch, yaw to a rotation matrix.

    Args:
        roll, pitch, yaw: radians, about the fixed x, y and z axes, applied in that order.

    Returns:
        (3, 3) float64 ``R = Rz(yaw) Ry(pitch) Rx(roll)``.
    """
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix to unit quaternion.

    Args:
        R: (3, 3) rotation matrix (any float dtype; computed in float64).

    Returns:
        (4,) float64 unit quaternion (x, y, z, w) with w >= 0 (geometry_msgs order; q and -q
        are the same rotation).

    Shepperd's method: the largest of |w|, |x|, |y|, |z| comes from the diagonal and the others
    from off-diagonal sums divided by it, so it is accurate at every angle, 180 degrees included.
    """
    R = np.asarray(R, dtype=np.float64)
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    # Shepperd: divide by the largest of the four candidates for accuracy.
    candidates = [trace, R[0, 0], R[1, 1], R[2, 2]]
    largest = int(np.argmax(candidates))
    if largest == 0:
        w = 0.5 * math.sqrt(max(1.0 + trace, 0.0))
        x, y, z = (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)
    elif largest == 1:
        x = 0.5 * math.sqrt(max(1.0 + R[0, 0] - R[1, 1] - R[2, 2], 0.0))
        w, y, z = (R[2, 1] - R[1, 2]) / (4 * x), (R[0, 1] + R[1, 0]) / (4 * x), (R[0, 2] + R[2, 0]) / (4 * x)
    elif largest == 2:
        y = 0.5 * math.sqrt(max(1.0 - R[0, 0] + R[1, 1] - R[2, 2], 0.0))
        w, x, z = (R[0, 2] - R[2, 0]) / (4 * y), (R[0, 1] + R[1, 0]) / (4 * y), (R[1, 2] + R[2, 1]) / (4 * y)
    else:
        z = 0.5 * math.sqrt(max(1.0 - R[0, 0] - R[1, 1] + R[2, 2], 0.0))
        w, x, y = (R[1, 0] - R[0, 1]) / (4 * z), (R[0, 2] + R[2, 0]) / (4 * z), (R[1, 2] + R[2, 1]) / (4 * z)
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return q


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Unit quaternion to rotation matrix, the inverse of :func:`matrix_to_quaternion`.

    Args:
        q: (x, y, z, w), unit norm (not renormalised); q and -q give the same matrix.

    Returns:
        (3, 3) float64 rotation matrix.
    """
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rotation_log(R: np.ndarray) -> np.ndarray:
    """Rotation matrix to rotation vector (the SO(3) logarithm).

    Args:
        R: (3, 3) rotation matrix with angle < pi (the axis is ill-defined at pi).

    Returns:
        (3,) float64 axis * angle, radians. The NumPy counterpart of :func:`matrix_to_axis_angle`.
    """
    cos_angle = min(1.0, max(-1.0, (float(np.trace(R)) - 1.0) / 2.0))
    angle = math.acos(cos_angle)
    vee = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    return vee if angle < 1e-9 else vee * (angle / math.sin(angle))


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation.

    Args:
        R: (3, 3) rotation matrix.

    Returns:
        its rotation angle in degrees, in [0, 180] (from the trace, clamped).
    """
    return math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(R)) - 1.0) / 2.0))))


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors.

    Args:
        a, b: (3,) non-zero vectors in the same frame, any units.

    Returns:
        the angle between their directions in degrees, in [0, 180].
    """
    cosine = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


# --------------------------------------------------------------------------- PyTorch, batched


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation vectors to rotation matrices (Rodrigues' formula), differentiable everywhere.

    Args:
        axis_angle: (B, 3) axis * angle, radians.

    Returns:
        (B, 3, 3) rotation matrices, dtype and device of axis_angle.
    """
    import torch  # here, not at the top: the NumPy functions of this module work without torch

    theta_sq = (axis_angle * axis_angle).sum(dim=-1, keepdim=True)  # (B, 1)
    theta = torch.sqrt(theta_sq.clamp(min=1e-12))
    small = theta_sq < 1e-8
    # sin(t)/t with its Taylor series near 0 so gradients stay finite. (1-cos(t))/t^2 is
    # written as (sin(t/2)/(t/2))^2 / 2: 1 - cos(t) cancels catastrophically in float32
    # for t < ~1e-2 (typical early pose outputs) and made its gradient wrong by ~1e-4.
    sin_over_theta = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(theta) / theta)
    half_sinc = torch.where(small, 1.0 - theta_sq / 24.0, torch.sin(0.5 * theta) / (0.5 * theta))
    one_minus_cos_over_theta_sq = 0.5 * half_sinc * half_sinc
    x, y, z = axis_angle.unbind(dim=-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    return (
        eye
        + sin_over_theta[..., None] * skew
        + one_minus_cos_over_theta_sq[..., None] * (skew @ skew)
    )


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices to rotation vectors, the inverse of :func:`axis_angle_to_matrix`.

    Args:
        R: (B, 3, 3) rotation matrices with angles in [0, pi).

    Returns:
        (B, 3) axis * angle, radians, dtype and device of R. The batched counterpart of
        :func:`rotation_log`.
    """
    import torch  # here, not at the top: the NumPy functions of this module work without torch

    cos_theta = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    theta = torch.acos(cos_theta)
    vee = torch.stack(
        [R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], dim=-1
    )
    sin_theta = torch.sin(theta)
    # theta / (2 sin theta) -> 1/2 as theta -> 0
    factor = torch.where(theta < 1e-4, 0.5 + theta * theta / 12.0, theta / (2.0 * sin_theta))
    return vee * factor[..., None]
