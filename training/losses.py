"""Self-supervised losses (Monodepth2 photometric terms, Monodepth v1 left-right consistency,
PackNet-SfM velocity supervision), written from the papers' published descriptions.

Everything here is plain tensors in, tensors out; :mod:`mono_depth_ros_training.trainer` decides which
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
    pixel_rays,
    pixels_to_grid,
    pixels_to_grid_affine,
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


# --------------------------------------------------------------------------- fast photometric path
# multiscale_view_loss compares one target with S x B images at every scale. The functions above
# build SSIM from generic autograd ops: every step then re-derives the target's moments, and
# autograd stores and revisits ~40 full-resolution intermediates per comparison, which makes
# training memory-bound on the CPU. The path below computes the same numbers with the target's
# moments computed once, 3x3 box sums instead of pooling over a padded copy, and a hand-written
# backward (the target is a constant: only the compared images get gradients).


def _sum3(values: torch.Tensor, dim: int, adjoint: bool = False) -> torch.Tensor:
    """Sums over 3 neighbours along ``dim`` with reflection at both ends (or that operator's adjoint).

    Forward: out[i] = v[i-1] + v[i] + v[i+1], with v[-1] = v[1] and v[n] = v[n-2] (reflection, as
    F.pad(mode="reflect")). Adjoint: zero-padded sums, plus the reflected taps folded back
    (out[1] += v[0], out[n-2] += v[n-1]). Needs n >= 2 along ``dim``.
    """
    size = values.shape[dim]
    out = torch.empty_like(values)
    torch.add(values.narrow(dim, 0, size - 2), values.narrow(dim, 2, size - 2), out=out.narrow(dim, 1, size - 2))
    first, last = out.narrow(dim, 0, 1), out.narrow(dim, size - 1, 1)
    if adjoint:
        first.copy_(values.narrow(dim, 1, 1))
        last.copy_(values.narrow(dim, size - 2, 1))
    else:
        torch.mul(values.narrow(dim, 1, 1), 2.0, out=first)
        torch.mul(values.narrow(dim, size - 2, 1), 2.0, out=last)
    out.add_(values)
    if adjoint:
        out.narrow(dim, 1, 1).add_(values.narrow(dim, 0, 1))
        out.narrow(dim, size - 2, 1).add_(values.narrow(dim, size - 1, 1))
    return out


def _box3(values: torch.Tensor) -> torch.Tensor:
    """3x3 mean with reflection padding (== avg_pool2d(F.pad(v, (1, 1, 1, 1), "reflect"), 3, 1)). (..., H, W)."""
    return _sum3(_sum3(values, -1), -2).mul_(1.0 / 9.0)


def _box3_adjoint(grad: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_box3` (its backward). (..., H, W) -> (..., H, W)."""
    return _sum3(_sum3(grad, -2, adjoint=True), -1, adjoint=True).mul_(1.0 / 9.0)


class _PhotometricAgainstTarget(torch.autograd.Function):
    """photometric_error(images, target) for images (S, B, C, H, W) against target (B, C, H, W).

    Forward and backward are written out (target constant): SSIM terms a = 2 mx my + C1,
    b = 2 cov + C2, c = mx^2 + my^2 + C1, d = var_x + var_y + C2, s = ab / (cd).
    """

    @staticmethod
    def forward(ctx, images, target, mu_y, c_y, var_y, ssim_weight: float):
        channels = images.shape[2]
        l1 = (images - target).abs_().mean(2, keepdim=True)
        ctx.ssim_weight = ssim_weight
        if ssim_weight == 0:
            ctx.save_for_backward(images, target)
            return l1
        mu_x = _box3(images)
        var_x = _box3(images * images).addcmul_(mu_x, mu_x, value=-1.0)
        cov = _box3(images * target).addcmul_(mu_x, mu_y, value=-1.0)
        a = (mu_x * mu_y).mul_(2.0).add_(SSIM_C1)
        b = cov.mul_(2.0).add_(SSIM_C2)
        c = torch.addcmul(c_y, mu_x, mu_x)
        d = var_x.add_(var_y)
        s = (a * b).div_(c * d)
        ssim = torch.clamp(1.0 - s, 0.0, 2.0).mean(2, keepdim=True)  # 2 * mean((1 - s) / 2 clamped to [0, 1])
        ctx.save_for_backward(images, target, mu_x, mu_y, a, b, c, d, s)
        ctx.channels = channels
        return ssim.mul_(ssim_weight / 2.0).add_(l1, alpha=1.0 - ssim_weight)

    @staticmethod
    def backward(ctx, grad):
        ssim_weight = ctx.ssim_weight
        if ssim_weight == 0:
            images, target = ctx.saved_tensors
            channels = images.shape[2]
            return (images - target).sign_().mul_(grad / channels), None, None, None, None, None
        images, target, mu_x, mu_y, a, b, c, d, s = ctx.saved_tensors
        channels = ctx.channels
        # d loss / d s per channel; clamp((1 - s) / 2, 0, 1) passes gradient for -1 <= s <= 1.
        inside = (s >= -1.0) & (s <= 1.0)
        q = torch.where(inside, grad * (-ssim_weight / (2.0 * channels)), 0.0).div_(c * d)
        grad_cov = q * a  # d/d box(x y) = 2 q a, the factor 2 applied below
        grad_sq = (q * s).mul_(c)  # d/d box(x^2) = -q s c
        # d/d mu_x = 2 q (my (b - a) + mx s (c - d))
        grad_mu = (b - a).mul_(mu_y).add_((c - d).mul_(s).mul_(mu_x)).mul_(q)
        result = _box3_adjoint(grad_mu)
        result.addcmul_(_box3_adjoint(grad_sq), images, value=-1.0)
        result.addcmul_(_box3_adjoint(grad_cov), target)
        result.mul_(2.0)
        result.addcmul_((images - target).sign_(), grad, value=(1.0 - ssim_weight) / channels)
        return result, None, None, None, None, None


class PhotometricReference:
    """A target view prepared for many photometric comparisons (its SSIM moments computed once).

    target: (B, C, H, W), no gradient needed. :meth:`error` gives the same values as
    :func:`photometric_error` against every image of a stack, with gradients for the images.
    """

    def __init__(self, target: torch.Tensor, ssim_weight: float = 0.85):
        self.target = target.detach()
        self.ssim_weight = float(ssim_weight)
        height, width = target.shape[-2:]
        # The written-out path needs reflection padding to exist (>= 2 pixels a side).
        self.fast = height >= 2 and width >= 2 and self.target.dtype in (torch.float32, torch.float64)
        if self.fast and self.ssim_weight != 0:
            y = self.target
            self.mu = _box3(y)
            self.c = (self.mu * self.mu).add_(SSIM_C1)
            self.var = _box3(y * y).addcmul_(self.mu, self.mu, value=-1.0).add_(SSIM_C2)
        else:
            self.mu = self.c = self.var = self.target

    def error(self, images: torch.Tensor) -> torch.Tensor:
        """images: (S, B, C, H, W) -> errors (S, B, 1, H, W)."""
        if not self.fast:
            return stacked_photometric_error(images, self.target, self.ssim_weight)
        return _PhotometricAgainstTarget.apply(
            images.contiguous(), self.target, self.mu, self.c, self.var, self.ssim_weight
        )


class _Reprojector:
    """Where target pixels land in each source, for many depth maps of the same views.

    K: (B, 3, 3), T_source_target: S x (B, 4, 4). The unit-depth rays and K_s R rays are computed
    once, so each depth map costs one multiply-add: K_s (R (depth * ray) + t) = depth * (K_s R ray) + K_s t.
    """

    def __init__(self, K: torch.Tensor, T_source_target: Sequence[torch.Tensor], height: int, width: int):
        count, batch = len(T_source_target), K.shape[0]
        T = torch.stack(list(T_source_target), 0)  # (S, B, 4, 4)
        K = K.to(T.dtype)
        rays = pixel_rays(K, height, width).reshape(1, batch, 3, height * width)
        self.rotated = (K @ T[:, :, :3, :3]) @ rays  # (S, B, 3, H*W)
        self.offset = K @ T[:, :, :3, 3:4]  # (S, B, 3, 1)
        self.count, self.batch, self.height, self.width = count, batch, height, width
        # pixel centre u -> (2u + 1) / W - 1 (grid_sample, align_corners=False) as one multiply-add
        self.scale, self.shift = pixels_to_grid_affine(height, width, dtype=T.dtype, device=T.device)

    def grid(self, depth: torch.Tensor) -> torch.Tensor:
        """depth: (B, 1, H, W) -> sampling grid (S * B, H, W, 2) as geometry.reproject_coordinates."""
        camera = torch.addcmul(self.offset, self.rotated, depth.reshape(1, self.batch, 1, -1))
        pixels = camera[:, :, :2] / camera[:, :, 2:3].clamp(min=1e-7)  # (S, B, 2, H*W)
        grid = torch.addcmul(self.shift, pixels.transpose(-1, -2), self.scale)
        return grid.reshape(self.count * self.batch, self.height, self.width, 2)


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
    # Scale 0, detached: mean per-pixel minimum over sources of the warped error, and of the unwarped
    # (identity) error. reprojection_error >= identity_error means the depth explains nothing.
    reprojection_error: Optional[torch.Tensor] = None
    identity_error: Optional[torch.Tensor] = None
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
    count, batch = len(sources), target.shape[0]
    source_stack = torch.cat(list(sources), 0)  # (S * B, C, H, W), one grid_sample for all sources
    reference = PhotometricReference(target, ssim_weight) if not target.requires_grad else None

    def errors(images: torch.Tensor) -> torch.Tensor:  # (S, B, C, H, W) -> (S, B, 1, H, W)
        if reference is None:
            return stacked_photometric_error(images, target, ssim_weight)
        return reference.error(images)

    # Computed even without auto-masking: it is the baseline that tells whether training learns.
    identity_plain = errors(source_stack.reshape(count, batch, *source_stack.shape[1:]))
    identity = None
    if automask:
        # The same noise for all scales, so auto-masking decisions agree between them.
        identity = identity_plain + torch.randn_like(identity_plain) * AUTOMASK_NOISE
    reprojector = _Reprojector(K, T_source_target, height, width)
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
        warped = warp_image(source_stack, reprojector.grid(depth), padding_mode="border")
        warped = warped.reshape(count, batch, *warped.shape[1:])
        reprojection = errors(warped)
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
            outputs = {"depth": depth, "warped": warped, "automask": mask,
                       "reprojection_error": reprojection.detach().min(0).values.mean()}
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
        reprojection_error=outputs["reprojection_error"],
        identity_error=identity_plain.detach().min(0).values.mean(),
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
    grid = pixels_to_grid(pixels, height, width)  # (B, H*W, 2)
    u, v = grid.unbind(dim=-1)
    grid = grid.reshape(batch, height, width, 2)
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
