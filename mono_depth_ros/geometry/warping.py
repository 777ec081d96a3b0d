"""Pixel coordinates -> ``grid_sample`` coordinates, and view synthesis by reprojection.

``torch.nn.functional.grid_sample`` with ``align_corners=False`` addresses an image of width W
by x in [-1, 1], where -1 and +1 are the outer edges of the first and last pixels. With pixel
centres at integer u (ROS / OpenCV), pixel u maps to ``x = (2u + 1) / W - 1``: the centre of
pixel 0 is -1 + 1/W, the left edge (u = -0.5) is -1 and the right edge (u = W - 0.5) is +1.
Likewise for rows with H.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .camera import backproject, project
from .transforms import transform_points


def pixels_to_grid(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates to grid_sample's normalised coordinates (align_corners=False).

    Args:
        pixels: (B, 2, N) pixel coordinates (u, v), pixels, pixel centres at integers.
        height, width: size in pixels of the image that will be sampled.

    Returns:
        (B, N, 2) (x, y) with ``x = (2u + 1) / W - 1`` and ``y = (2v + 1) / H - 1``; inside the
        image when both are in [-1, 1].
    """
    u = (2.0 * pixels[:, 0] + 1.0) / width - 1.0
    v = (2.0 * pixels[:, 1] + 1.0) / height - 1.0
    return torch.stack([u, v], dim=-1)


def pixels_to_grid_affine(
    height: int, width: int, dtype: torch.dtype = torch.float32, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pixels_to_grid` as an affine map, for one fused multiply-add per use.

    Args:
        height, width: size in pixels of the image that will be sampled.
        dtype, device: of the result.

    Returns:
        (scale, shift), each (2,) for (x, y): ``grid = pixels * scale + shift`` with pixels (..., 2)
        as (u, v); ``scale = (2 / W, 2 / H)``, ``shift = (1 / W - 1, 1 / H - 1)``. Equal to
        :func:`pixels_to_grid` up to rounding (not bit for bit).
    """
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=dtype, device=device)
    shift = torch.tensor([1.0 / width - 1.0, 1.0 / height - 1.0], dtype=dtype, device=device)
    return scale, shift


def reproject_coordinates(
    depth: torch.Tensor, T_source_target: torch.Tensor, K_target: torch.Tensor, K_source: torch.Tensor
) -> torch.Tensor:
    """Where each target pixel lands in the source image.

    Args:
        depth: (B, 1, H, W) target depth along the optical axis, metres (or model units).
        T_source_target: (B, 4, 4) target optical frame -> source optical frame, depth's units.
        K_target, K_source: (B, 3, 3) intrinsics, pixels; the source image is H x W too.

    Returns:
        (B, H, W, 2) sampling grid in grid_sample's normalised [-1, 1] coordinates
        (align_corners=False, see :func:`pixels_to_grid`).
    """
    batch, _, height, width = depth.shape
    points = backproject(depth, K_target).reshape(batch, 3, -1)
    pixels = project(transform_points(T_source_target, points), K_source)
    return pixels_to_grid(pixels, height, width).reshape(batch, height, width, 2)


def warp_image(source: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Sample the source image at reprojected coordinates (bilinear, align_corners=False).

    Args:
        source: (B, C, H_s, W_s) image.
        grid: (B, H, W, 2) normalised coordinates, e.g. from :func:`reproject_coordinates`.
        padding_mode: grid_sample's padding for samples outside the source.

    Returns:
        (B, C, H, W) the source as seen from the target pixels.
    """
    return F.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
