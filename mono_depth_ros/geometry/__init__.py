"""Geometry shared by the node and the trainer (NumPy and PyTorch, no ROS): one home for each concept.

Submodules
----------
* :mod:`.intrinsics` -- :func:`~.intrinsics.scale_intrinsics`, the K of a resized image (NumPy
  arrays or PyTorch tensors). **Torch-free to import.**
* :mod:`.camera` -- pixel grids and rays, back-projection and projection (torch).
* :mod:`.transforms` -- rigid transforms and pose vectors (torch).
* :mod:`.rotations` -- rotation matrices, rotation vectors, quaternions, roll-pitch-yaw, angles
  (NumPy; batched PyTorch for axis-angle). **Torch-free to import.**
* :mod:`.disparity` -- sigmoid disparity <-> scaled disparity (inverse depth) <-> depth
  (:class:`~.disparity.DisparityRange`). **Torch-free to import.**
* :mod:`.warping` -- pixel -> grid_sample coordinates, reprojection and image warping (torch).

Every public name of the submodules is available here (``from mono_depth_ros.geometry import
backproject``). The torch-free submodules are imported with the package; the torch ones on first
use of one of their names, so ``import mono_depth_ros.geometry`` (or ``.disparity``, ``.rotations``,
``.intrinsics``) does not import torch.

Conventions
-----------
* Camera frames are ROS optical frames (REP 103): x right, y down, z forward.
* Pixel coordinates follow ROS ``CameraInfo`` / OpenCV: the centre of pixel
  (column u, row v) is at (u, v), so the top-left pixel centre is (0, 0).
* ``K`` is the 3x3 pinhole matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, in pixels.
* A pose ``T_b_a`` (4x4) maps points expressed in frame ``a`` into frame ``b``:
  ``p_b = R p_a + t``.
* Depth is the distance along the optical axis (z), in metres or the model's units.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_attributes

from .disparity import DisparityRange, depth_from_scaled_disparity, depth_to_disparity, disparity_to_depth
from .intrinsics import scale_intrinsics
from .rotations import (
    R_BODY_OPTICAL,
    angle_between_deg,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    quaternion_to_matrix,
    rotation_angle_deg,
    rotation_log,
    rpy_to_matrix,
)

if TYPE_CHECKING:
    from .camera import backproject, pixel_grid, pixel_rays, project
    from .transforms import invert_transform, matrix_to_pose_vector, pose_vector_to_matrix, transform_points
    from .warping import pixels_to_grid, pixels_to_grid_affine, reproject_coordinates, warp_image

# Names of the submodules that import torch, imported on first use (PEP 562).
_TORCH_EXPORTS = {
    "backproject": "camera",
    "pixel_grid": "camera",
    "pixel_rays": "camera",
    "project": "camera",
    "invert_transform": "transforms",
    "matrix_to_pose_vector": "transforms",
    "pose_vector_to_matrix": "transforms",
    "transform_points": "transforms",
    "pixels_to_grid": "warping",
    "pixels_to_grid_affine": "warping",
    "reproject_coordinates": "warping",
    "warp_image": "warping",
}


__all__ = [
    "DisparityRange",
    "R_BODY_OPTICAL",
    "angle_between_deg",
    "axis_angle_to_matrix",
    "backproject",
    "depth_from_scaled_disparity",
    "depth_to_disparity",
    "disparity_to_depth",
    "invert_transform",
    "matrix_to_axis_angle",
    "matrix_to_pose_vector",
    "matrix_to_quaternion",
    "pixel_grid",
    "pixel_rays",
    "pixels_to_grid",
    "pixels_to_grid_affine",
    "pose_vector_to_matrix",
    "project",
    "quaternion_to_matrix",
    "reproject_coordinates",
    "rotation_angle_deg",
    "rotation_log",
    "rpy_to_matrix",
    "scale_intrinsics",
    "transform_points",
    "warp_image",
]

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _TORCH_EXPORTS, __all__)
