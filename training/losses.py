"""Self-supervised losses (Monodepth2 photometric terms, Monodepth v1 left-right consistency,
PackNet-SfM velocity supervision), written from the papers' published descriptions.

Everything here is plain tensors in, tensors out; :mod:`training.trainer` decides which
terms a training mode uses. Images are RGB in [0, 1]; disparities are the depth network's
sigmoid output ("sigmoid space", mapped to inverse depth by
:func:`mono_depth_ros.geometry.disparity_to_depth`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from mono_depth_ros.geometry import (
    backproject,
    disparity_to_depth,
    project,
    reproject_coordinates,
    transform_points,
    warp_image,
)

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
# Monodepth2 breaks ties between identity and warped reprojection with noise this small.
AUTOMASK_NOISE = 1e-5


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity (1 - SSIM) / 2 over 3x3 windows, clamped to [0, 1].

    x, y: (B, C, H, W) -> (B, C, H, W). Windows are reflection padded at the border, so
    identical images give exactly 0 everywhere.
    """
    channels = x.shape[1]
    # One pooling call for all five local moments (fewer kernel launches than five calls).
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    moments = F.avg_pool2d(F.pad(stacked, (1, 1, 1, 1), mode="reflect"), kernel_size=3, stride=1)
    mu_x, mu_y, xx, yy, xy = torch.split(moments, channels, dim=1)
    sigma_x = xx - mu_x * mu_x
    sigma_y = yy - mu_y * mu_y
    sigma_xy = xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def photometric_error(prediction: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.85) -> torch.Tensor:
    """Per-pixel photometric error ssim_weight * (1 - SSIM) / 2 + (1 - ssim_weight) * |L1|.

    prediction, target: (B, C, H, W) -> (B, 1, H, W), averaged over channels.
    """
    l1 = (prediction - target).abs().mean(1, keepdim=True)
    if ssim_weight == 0:
        return l1
    ssim = ssim_distance(prediction, target).mean(1, keepdim=True)
    return ssim_weight * ssim + (1 - ssim_weight) * l1


def edge_aware_smoothness(disparity: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of mean-normalised disparity.

    disparity: (B, 1, h, w), image: (B, C, h, w) at the same resolution -> scalar.
    Disparity gradients are down-weighted by exp(-|image gradient|), so depth may change
    where the image has an edge. Normalising by the mean keeps the term from favouring
    shrinking disparities (Monodepth2).
    """
    normalised = disparity / (disparity.mean(dim=(2, 3), keepdim=True) + 1e-7)
    disp_dx = (normalised[:, :, :, 1:] - normalised[:, :, :, :-1]).abs()
    disp_dy = (normalised[:, :, 1:, :] - normalised[:, :, :-1, :]).abs()
    image_dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean(1, keepdim=True)
    image_dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().mean(1, keepdim=True)
    return (disp_dx * torch.exp(-image_dx)).mean() + (disp_dy * torch.exp(-image_dy)).mean()


def warp_sources(
    depth: torch.Tensor,
    sources: Sequence[torch.Tensor],
    T_source_target: Sequence[torch.Tensor],
    K: torch.Tensor,
) -> torch.Tensor:
    """Synthesise the target view from each source view.

    depth: (B, 1, H, W) target depth, sources: S x (B, C, H, W), T_source_target: S x (B, 4, 4),
    K: (B, 3, 3) shared by all views -> (S, B, C, H, W). All sources go through one
    grid_sample call.
    """
    count = len(sources)
    batch = depth.shape[0]
    grid = reproject_coordinates(
        depth.repeat(count, 1, 1, 1), torch.cat(list(T_source_target), 0), K.repeat(count, 1, 1), K.repeat(count, 1, 1)
    )
    warped = warp_image(torch.cat(list(sources), 0), grid, padding_mode="border")
    return warped.reshape(count, batch, *warped.shape[1:])


def stacked_photometric_error(
    images: torch.Tensor, target: torch.Tensor, ssim_weight: float
) -> torch.Tensor:
    """images: (S, B, C, H, W), target: (B, C, H, W) -> errors (S, B, 1, H, W)."""
    count, batch = images.shape[:2]
    errors = photometric_error(
        images.flatten(0, 1), target.unsqueeze(0).expand_as(images).flatten(0, 1), ssim_weight
    )
    return errors.reshape(count, batch, *errors.shape[1:])


def identity_errors(sources: Sequence[torch.Tensor], target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """Photometric error of the unwarped sources: S x (B, C, H, W) -> (S, B, 1, H, W).

    Where this is lower than the warped error the pixel looks static (camera not moving,
    object moving with the camera, textureless region) and auto-masking ignores it.
    """
    return stacked_photometric_error(torch.stack(list(sources), 0), target, ssim_weight)


def reduce_reprojection(
    reprojection: torch.Tensor,
    identity: Optional[torch.Tensor],
    min_reprojection: bool = True,
    noise: bool = True,
) -> tuple:
    """Combine per-source errors into one per-pixel loss.

    reprojection: (S, B, 1, H, W) warped errors; identity: (S, B, 1, H, W) or None (no auto-masking).
    -> (loss (B, 1, H, W), mask (B, 1, H, W) bool: True where a warped source won, i.e. the pixel trains depth).
    With ``min_reprojection`` the per-pixel minimum over sources is taken (occlusion handling),
    otherwise their average.
    """
    if not min_reprojection:
        reprojection = reprojection.mean(0, keepdim=True)
        if identity is not None:
            identity = identity.mean(0, keepdim=True)
    if identity is None:
        loss = reprojection.min(0).values
        return loss, torch.ones_like(loss, dtype=torch.bool)
    if noise:
        identity = identity + torch.randn_like(identity) * AUTOMASK_NOISE
    combined = torch.cat([identity, reprojection], 0)
    loss, index = combined.min(0)
    return loss, index >= identity.shape[0]


@dataclass
class ViewLoss:
    """Loss of one target view over all scales, plus what the trainer logs."""

    total: torch.Tensor
    photometric: torch.Tensor
    smoothness: torch.Tensor
    automask_fraction: torch.Tensor  # share of pixels kept by auto-masking (scale 0)
    depth: torch.Tensor  # (B, 1, H, W) scale-0 depth
    warped: torch.Tensor  # (S, B, C, H, W) scale-0 reconstructions
    automask: torch.Tensor  # (B, 1, H, W) bool, scale 0
    per_scale: Dict[int, torch.Tensor] = field(default_factory=dict)  # detached photometric loss per scale


def multiscale_view_loss(
    disparities: Dict[int, torch.Tensor],
    target: torch.Tensor,
    sources: Sequence[torch.Tensor],
    T_source_target: Sequence[torch.Tensor],
    K: torch.Tensor,
    *,
    min_depth: float,
    max_depth: float,
    ssim_weight: float = 0.85,
    smoothness_weight: float = 1e-3,
    automask: bool = True,
    min_reprojection: bool = True,
) -> ViewLoss:
    """Monodepth2's loss for one target view.

    disparities: {scale: (B, 1, H / 2**scale, W / 2**scale)} sigmoid disparity of the target,
    target: (B, 3, H, W), sources: S x (B, 3, H, W) with T_source_target: S x (B, 4, 4)
    (maps target-frame points into each source frame), K: (B, 3, 3) at (H, W).
    Each scale's disparity is upsampled to (H, W) before warping; smoothness uses the scale's
    own resolution and weight smoothness_weight / 2**scale; the total averages the scales.
    """
    if not sources:
        raise ValueError("multiscale_view_loss needs at least one source view")
    height, width = target.shape[-2:]
    identity = identity_errors(sources, target, ssim_weight) if automask else None
    if identity is not None:
        # The same noise for all scales, so auto-masking decisions agree between them.
        identity = identity + torch.randn_like(identity) * AUTOMASK_NOISE
    photometric_sum = target.new_zeros(())
    smoothness_sum = target.new_zeros(())
    per_scale: Dict[int, torch.Tensor] = {}
    outputs = {}
    scales = sorted(disparities)
    for scale in scales:
        disparity = disparities[scale]
        full = disparity
        if full.shape[-2:] != (height, width):
            full = F.interpolate(disparity, size=(height, width), mode="bilinear", align_corners=False)
        _, depth = disparity_to_depth(full, min_depth, max_depth)
        warped = warp_sources(depth, sources, T_source_target, K)
        reprojection = stacked_photometric_error(warped, target, ssim_weight)
        pixel_loss, mask = reduce_reprojection(reprojection, identity, min_reprojection, noise=False)
        photometric = pixel_loss.mean()
        own_image = target
        if disparity.shape[-2:] != (height, width):
            own_image = F.interpolate(target, size=disparity.shape[-2:], mode="area")
        smooth = edge_aware_smoothness(disparity, own_image) * (smoothness_weight / 2 ** scale)
        photometric_sum = photometric_sum + photometric
        smoothness_sum = smoothness_sum + smooth
        per_scale[scale] = photometric.detach()
        if scale == scales[0]:
            outputs = {"depth": depth, "warped": warped, "automask": mask}
    count = len(scales)
    photometric_mean = photometric_sum / count
    smoothness_mean = smoothness_sum / count
    return ViewLoss(
        total=photometric_mean + smoothness_mean,
        photometric=photometric_mean,
        smoothness=smoothness_mean,
        automask_fraction=outputs["automask"].float().mean().detach(),
        depth=outputs["depth"],
        warped=outputs["warped"],
        automask=outputs["automask"],
        per_scale=per_scale,
    )


def lr_consistency(
    disparity: torch.Tensor,
    other_disparity: torch.Tensor,
    T_other_this: torch.Tensor,
    K: torch.Tensor,
    K_other: Optional[torch.Tensor] = None,
    *,
    min_depth: float,
    max_depth: float,
) -> torch.Tensor:
    """Left-right disparity consistency (Monodepth v1), for general stereo extrinsics.

    disparity: (B, 1, H, W) sigmoid disparity of this view, other_disparity: (B, 1, H, W) of the
    other camera, T_other_this: (B, 4, 4), K: (B, 3, 3) -> scalar: mean disagreement over pixels
    that land inside the other image, in Monodepth v1's unit (stereo disparity as a fraction of
    the image width: fx * baseline / (depth * W)), so its weight means the same at any depth range.
    Each pixel of this view is moved into the other camera with its own depth; the other
    network's inverse depth sampled there must equal the inverse depth of that point in the
    other camera. For a rectified pair (pure x baseline) this is exactly v1's
    |d_left - d_right(warped by d_left)|.
    """
    batch, _, height, width = disparity.shape
    K_other = K if K_other is None else K_other
    _, depth = disparity_to_depth(disparity, min_depth, max_depth)
    points = transform_points(T_other_this, backproject(depth, K).reshape(batch, 3, -1))
    pixels = project(points, K_other)
    u = (2.0 * pixels[:, 0] + 1.0) / width - 1.0
    v = (2.0 * pixels[:, 1] + 1.0) / height - 1.0
    grid = torch.stack([u, v], dim=-1).reshape(batch, height, width, 2)
    z_other = points[:, 2].reshape(batch, 1, height, width)
    valid = (u.abs() <= 1) & (v.abs() <= 1) & (points[:, 2] > 1e-3)
    valid = valid.reshape(batch, 1, height, width).to(disparity.dtype)
    expected = 1.0 / z_other.clamp(min=1e-3)
    other_inverse, _ = disparity_to_depth(other_disparity, min_depth, max_depth)
    sampled = warp_image(other_inverse, grid, padding_mode="border")
    baseline = torch.linalg.vector_norm(T_other_this[:, :3, 3], dim=-1)  # (B,)
    to_width_fraction = (K_other[:, 0, 0] * baseline / width).reshape(batch, 1, 1, 1)
    difference = (sampled - expected).abs() * to_width_fraction * valid
    return difference.sum() / valid.sum().clamp(min=1.0)


def velocity_loss(translation: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Velocity supervision (PackNet-SfM): | ||t_pred|| - odometry distance |.

    translation: (N, 3) predicted translations in metres, distance: (N,) metres travelled
    between the same frames per odometry, NaN where unknown -> scalar mean over known pairs
    (0, still attached to the graph, when none is known).
    """
    # Masked rather than indexed, so no host synchronisation is needed.
    known = torch.isfinite(distance).to(translation.dtype)
    norms = torch.linalg.vector_norm(translation, dim=-1)
    errors = (norms - torch.nan_to_num(distance.to(translation.dtype), nan=0.0, posinf=0.0, neginf=0.0)).abs()
    return (errors * known).sum() / known.sum().clamp(min=1.0)
