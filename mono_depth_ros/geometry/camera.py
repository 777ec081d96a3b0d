"""Camera geometry shared by the node and the trainer (plain PyTorch, no ROS).

Conventions
-----------
* Camera frames are ROS optical frames (REP 103): x right, y down, z forward.
* Pixel coordinates follow ROS ``CameraInfo`` / OpenCV: the centre of pixel
  (column u, row v) is at (u, v), so the top-left pixel centre is (0, 0).
* ``K`` is the 3x3 pinhole matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
* A pose ``T_b_a`` (4x4) maps points expressed in frame ``a`` into frame ``b``:
  ``p_b = R p_a + t``.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def scale_intrinsics(K: torch.Tensor, scale_x: float, scale_y: float) -> torch.Tensor:
    """Intrinsics of an image resized by (scale_x, scale_y), pixel-centre exact.

    K: (..., 3, 3) intrinsics of the original image -> (..., 3, 3) of the resized one.
    A resize maps pixel-centre coordinates as ``u' + 0.5 = (u + 0.5) * scale``, so the
    principal point moves by half a pixel as well as scaling (this matters for
    non-centred principal points and for large scale changes).
    """
    scaled = K.clone()
    scaled[..., 0, 0] = K[..., 0, 0] * scale_x
    scaled[..., 0, 1] = K[..., 0, 1] * scale_x
    scaled[..., 1, 1] = K[..., 1, 1] * scale_y
    scaled[..., 0, 2] = (K[..., 0, 2] + 0.5) * scale_x - 0.5
    scaled[..., 1, 2] = (K[..., 1, 2] + 0.5) * scale_y - 0.5
    return scaled


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel coordinates of every pixel centre.

    -> (3, H, W): rows are u (column), v (row) and 1.
    """
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=0)


def pixel_rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Unit-depth rays of every pixel centre in the camera optical frame.

    K: (B, 3, 3) -> (B, 3, H, W) with z == 1, so ``rays * depth`` are 3D points.
    Computed in float64 and cast back so that re-projection is exact to ~1e-4 px.
    """
    grid = pixel_grid(height, width, device=K.device, dtype=torch.float64).reshape(3, -1)
    rays = torch.linalg.inv(K.double()) @ grid  # (B, 3, H*W)
    rays = rays / rays[:, 2:3, :]
    return rays.reshape(K.shape[0], 3, height, width).to(K.dtype)


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Lift a depth map to 3D points in the camera optical frame.

    depth: (B, 1, H, W) metres along the optical axis (z), K: (B, 3, 3)
    -> points (B, 3, H, W) with ``points[:, 2] == depth``.
    """
    batch, _, height, width = depth.shape
    return pixel_rays(K.to(depth.dtype), height, width) * depth


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Project 3D points in a camera optical frame to pixel coordinates.

    points: (B, 3, N) camera frame, K: (B, 3, 3) -> pixels (B, 2, N) as (u, v).
    Points at or behind the camera get huge coordinates (z clamped to eps), which
    samplers treat as out of view.
    """
    cam = K @ points
    return cam[:, :2] / cam[:, 2:3].clamp(min=eps)


def transform_points(T_b_a: torch.Tensor, points_a: torch.Tensor) -> torch.Tensor:
    """Apply a rigid transform. T_b_a: (B, 4, 4), points_a: (B, 3, N) -> (B, 3, N) in frame b."""
    return T_b_a[:, :3, :3] @ points_a + T_b_a[:, :3, 3:4]


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. axis_angle: (B, 3) radians (direction = axis) -> R: (B, 3, 3)."""
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
    """Inverse of :func:`axis_angle_to_matrix` for angles in [0, pi). R: (B, 3, 3) -> (B, 3)."""
    cos_theta = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    theta = torch.acos(cos_theta)
    vee = torch.stack(
        [R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], dim=-1
    )
    sin_theta = torch.sin(theta)
    # theta / (2 sin theta) -> 1/2 as theta -> 0
    factor = torch.where(theta < 1e-4, 0.5 + theta * theta / 12.0, theta / (2.0 * sin_theta))
    return vee * factor[..., None]


def pose_vector_to_matrix(axis_angle: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Pose vector to homogeneous transform.

    axis_angle: (B, 3) radians, translation: (B, 3) metres -> T: (B, 4, 4) = [[R, t], [0, 1]].
    """
    batch = axis_angle.shape[0]
    T = torch.zeros(batch, 4, 4, dtype=axis_angle.dtype, device=axis_angle.device)
    T[:, :3, :3] = axis_angle_to_matrix(axis_angle)
    T[:, :3, 3] = translation
    T[:, 3, 3] = 1.0
    return T


def matrix_to_pose_vector(T: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Homogeneous transform to pose vector. T: (B, 4, 4) -> (axis_angle (B, 3), translation (B, 3))."""
    return matrix_to_axis_angle(T[:, :3, :3]), T[:, :3, 3].clone()


def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """Inverse of a rigid transform. T_b_a: (B, 4, 4) -> T_a_b: (B, 4, 4)."""
    R_t = T[:, :3, :3].transpose(1, 2)
    inverse = torch.zeros_like(T)
    inverse[:, :3, :3] = R_t
    inverse[:, :3, 3:4] = -R_t @ T[:, :3, 3:4]
    inverse[:, 3, 3] = 1.0
    return inverse


def disparity_to_depth(
    disparity: torch.Tensor, min_depth: float, max_depth: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Map the network's sigmoid output to inverse depth and depth.

    disparity: (B, 1, H, W) in [0, 1] -> (scaled_disparity, depth), both (B, 1, H, W);
    depth lies in [min_depth, max_depth] (in the model's units; metres for metric models).
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disparity = min_disp + (max_disp - min_disp) * disparity
    return scaled_disparity, 1.0 / scaled_disparity


def depth_to_disparity(depth: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Inverse of :func:`disparity_to_depth`: depth (B, 1, H, W) -> sigmoid-space disparity in [0, 1]."""
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    return (1.0 / depth - min_disp) / (max_disp - min_disp)


def reproject_coordinates(
    depth: torch.Tensor, T_source_target: torch.Tensor, K_target: torch.Tensor, K_source: torch.Tensor
) -> torch.Tensor:
    """Where each target pixel lands in the source image.

    depth: (B, 1, H, W) target depth, T_source_target: (B, 4, 4), K_*: (B, 3, 3)
    -> sampling grid (B, H, W, 2) in grid_sample's normalised [-1, 1] coordinates
    (align_corners=False, so pixel centre u maps to (2u + 1) / W - 1).
    """
    batch, _, height, width = depth.shape
    points = backproject(depth, K_target).reshape(batch, 3, -1)
    pixels = project(transform_points(T_source_target, points), K_source)
    u = (2.0 * pixels[:, 0] + 1.0) / width - 1.0
    v = (2.0 * pixels[:, 1] + 1.0) / height - 1.0
    return torch.stack([u, v], dim=-1).reshape(batch, height, width, 2)


def warp_image(source: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Sample the source image at reprojected coordinates.

    source: (B, C, H, W), grid: (B, H, W, 2) from :func:`reproject_coordinates` -> (B, C, H, W).
    """
    return F.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
