"""Self-supervised losses: known inputs, known outputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from mono_depth_ros.geometry import (
    depth_to_disparity,
    invert_transform,
    pose_vector_to_matrix,
    reproject_coordinates,
    warp_image,
)
from mono_depth_ros_training.losses import (
    edge_aware_smoothness,
    lr_consistency,
    multiscale_view_loss,
    photometric_error,
    reduce_reprojection,
    ssim_distance,
    velocity_loss,
)

MIN_DEPTH, MAX_DEPTH = 0.1, 100.0
HEIGHT, WIDTH = 32, 64


def texture(batch=1, height=HEIGHT, width=WIDTH, seed=0):
    """Smooth random RGB texture in [0, 1] (features of a few pixels, so SSIM and warps see structure)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 4, width // 4, generator=generator)
    fine = torch.rand(batch, 3, height, width, generator=generator)
    return (0.8 * F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False) + 0.2 * fine).clamp(0, 1)


def intrinsics(batch=1, height=HEIGHT, width=WIDTH):
    K = torch.tensor([[0.8 * width, 0.0, (width - 1) / 2], [0.0, 0.8 * width, (height - 1) / 2], [0.0, 0.0, 1.0]])
    return K.expand(batch, 3, 3).clone()


def constant_disparity(depth, batch=1, height=HEIGHT, width=WIDTH):
    return depth_to_disparity(torch.full((batch, 1, height, width), float(depth)), MIN_DEPTH, MAX_DEPTH)


def pose(axis_angle, translation):
    return pose_vector_to_matrix(torch.tensor([axis_angle], dtype=torch.float32), torch.tensor([translation], dtype=torch.float32))


def rendered_pair(depth=5.0, T=None):
    """A target synthesised exactly from a source through a plane at `depth` and pose T_source_target."""
    source = texture()
    K = intrinsics()
    T = pose([0.0, 0.02, 0.0], [0.1, 0.0, -0.3]) if T is None else T
    grid = reproject_coordinates(torch.full((1, 1, HEIGHT, WIDTH), depth), T, K, K)
    target = warp_image(source, grid)
    return source, target, T, K


# --------------------------------------------------------------------------- photometric


def test_ssim_of_identical_images_is_zero_and_of_different_images_positive():
    image = texture()
    assert torch.equal(ssim_distance(image, image), torch.zeros_like(image))
    other = texture(seed=1)
    distance = ssim_distance(image, other)
    assert distance.shape == image.shape
    assert distance.min() >= 0 and distance.max() <= 1
    assert distance.mean() > 0.1


def test_ssim_matches_hand_computed_window():
    # Constant images a and b: mu = a, b, sigma = 0 -> SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    # (float64: in float32, E[x^2] - mu^2 cancels to ~1e-8, comparable to C2 * 1e-5.)
    a, b = 0.2, 0.6
    x = torch.full((1, 1, 5, 5), a, dtype=torch.float64)
    y = torch.full((1, 1, 5, 5), b, dtype=torch.float64)
    c1 = 0.01 ** 2
    expected = (1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2
    assert torch.allclose(ssim_distance(x, y), torch.full_like(x, expected), atol=1e-7)


def test_photometric_error_is_zero_for_itself_and_grows_with_noise():
    image = texture()
    assert photometric_error(image, image).abs().max() == 0
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(image.shape, generator=generator)
    errors = [photometric_error((image + level * noise).clamp(0, 1), image).mean().item() for level in (0.01, 0.05, 0.2)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_photometric_error_weights_ssim_and_l1():
    # Constant images: SSIM term from the closed form above, L1 = |a - b|.
    a, b = 0.3, 0.5
    x = torch.full((1, 3, 4, 4), a, dtype=torch.float64)
    y = torch.full((1, 3, 4, 4), b, dtype=torch.float64)
    c1 = 0.01 ** 2
    ssim = (1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2
    error = photometric_error(x, y)
    assert error.shape == (1, 1, 4, 4)
    assert torch.allclose(error, torch.full_like(error, 0.85 * ssim + 0.15 * abs(a - b)), atol=1e-7)
    assert torch.allclose(photometric_error(x, y, ssim_weight=0.0), torch.full_like(error, abs(a - b)))


# --------------------------------------------------------------------------- reprojection


def test_true_depth_and_pose_reconstruct_the_target_exactly():
    source, target, T, K = rendered_pair(depth=5.0)
    loss = multiscale_view_loss(
        {0: constant_disparity(5.0)}, target, [source], [T], K, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
        smoothness_weight=0.0, automask=False,
    )
    assert loss.photometric.item() < 1e-5
    wrong = multiscale_view_loss(
        {0: constant_disparity(1.5)}, target, [source], [T], K, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
        smoothness_weight=0.0, automask=False,
    )
    assert wrong.photometric.item() > 0.02


def test_minimum_reprojection_picks_the_smaller_error_per_pixel():
    target = texture()
    noise = texture(seed=5)
    left = torch.zeros(1, 1, HEIGHT, WIDTH, dtype=torch.bool)
    left[..., : WIDTH // 2] = True
    source_a = torch.where(left, target, noise)  # correct on the left half only
    source_b = torch.where(left, noise, target)  # correct on the right half only
    identity = torch.eye(4).unsqueeze(0)
    K = intrinsics()
    errors = torch.stack([photometric_error(source_a, target), photometric_error(source_b, target)])
    loss, mask = reduce_reprojection(errors, None, min_reprojection=True)
    assert torch.equal(loss, torch.minimum(errors[0], errors[1]))
    assert mask.all()
    # Away from the seam (3x3 SSIM windows) every pixel finds its correct source.
    interior = torch.ones_like(left)
    interior[..., WIDTH // 2 - 2 : WIDTH // 2 + 2] = False
    assert loss[interior].abs().max() < 1e-6
    options = dict(min_depth=MIN_DEPTH, max_depth=MAX_DEPTH, smoothness_weight=0.0, automask=False)
    disparity = {0: constant_disparity(5.0)}
    minimum = multiscale_view_loss(disparity, target, [source_a, source_b], [identity, identity], K, **options)
    average = multiscale_view_loss(
        disparity, target, [source_a, source_b], [identity, identity], K, min_reprojection=False, **options
    )
    assert minimum.photometric.item() < 0.1 * average.photometric.item()


def test_automask_ignores_a_static_scene():
    # Camera did not move (source == target) while the pose guess says it did: every pixel is
    # explained better by the unwarped source, so auto-masking drops them all and no depth
    # gradient flows.
    target = texture()
    disparity = constant_disparity(5.0).requires_grad_()
    moved = pose([0.0, 0.0, 0.0], [0.3, 0.0, -0.5])
    loss = multiscale_view_loss(
        {0: disparity}, target, [target.clone()], [moved], intrinsics(), min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
        smoothness_weight=0.0,
    )
    assert loss.automask.float().mean().item() < 0.01
    assert loss.photometric.abs().item() < 1e-4  # the identity error of a static scene is ~0
    loss.total.backward()
    assert disparity.grad.abs().sum().item() < 1e-3


def test_automask_keeps_pixels_that_the_warp_explains():
    source, target, T, K = rendered_pair(depth=5.0)
    loss = multiscale_view_loss(
        {0: constant_disparity(5.0)}, target, [source], [T], K, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
    )
    assert loss.automask.float().mean().item() > 0.9
    assert loss.automask_fraction.item() == pytest.approx(loss.automask.float().mean().item())


def test_multiscale_upsamples_each_scale_to_full_resolution():
    source, target, T, K = rendered_pair(depth=5.0)
    # A coarse scale with the true (constant) depth reconstructs as well as full resolution.
    disparities = {0: constant_disparity(5.0), 2: constant_disparity(5.0, height=HEIGHT // 4, width=WIDTH // 4)}
    loss = multiscale_view_loss(
        disparities, target, [source], [T], K, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH, smoothness_weight=0.0,
        automask=False,
    )
    assert loss.warped.shape == (1, 1, 3, HEIGHT, WIDTH)
    assert set(loss.per_scale) == {0, 2}
    assert loss.per_scale[2].item() < 1e-5


def test_total_is_mean_over_scales_with_halved_smoothness_weights():
    source, target, T, K = rendered_pair(depth=5.0)
    generator = torch.Generator().manual_seed(9)
    disparities = {scale: torch.rand(1, 1, HEIGHT >> scale, WIDTH >> scale, generator=generator) for scale in (0, 1, 2, 3)}
    weight = 1e-3
    loss = multiscale_view_loss(
        disparities, target, [source], [T], K, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH, smoothness_weight=weight,
        automask=False,
    )
    expected_smoothness = sum(
        edge_aware_smoothness(disp, F.interpolate(target, size=disp.shape[-2:], mode="area")) * weight / 2 ** scale
        for scale, disp in disparities.items()
    ) / 4
    expected_photometric = sum(loss.per_scale.values()) / 4
    assert loss.smoothness.item() == pytest.approx(expected_smoothness.item(), rel=1e-5)
    assert loss.photometric.item() == pytest.approx(expected_photometric.item(), rel=1e-5)
    assert loss.total.item() == pytest.approx(expected_smoothness.item() + expected_photometric.item(), rel=1e-5)


# --------------------------------------------------------------------------- smoothness


def test_smoothness_is_zero_for_constant_disparity():
    assert edge_aware_smoothness(torch.full((2, 1, 8, 8), 0.3), texture(2, 8, 8)).item() == 0


def test_smoothness_is_down_weighted_at_image_edges():
    height, width = 6, 10
    disparity = torch.ones(1, 1, height, width)
    disparity[..., 5:] = 2.0  # normalised by its mean 1.5: a step of 2/3 between columns 4 and 5
    flat = torch.full((1, 3, height, width), 0.5)
    edge = flat.clone()
    edge[..., 5:] = 1.5  # an image edge of 1.0 at the same place
    step = (2.0 / 3.0) * height / (height * (width - 1))  # mean |dx| of the normalised disparity
    assert edge_aware_smoothness(disparity, flat).item() == pytest.approx(step, rel=1e-5)
    assert edge_aware_smoothness(disparity, edge).item() == pytest.approx(step * math.exp(-1.0), rel=1e-5)


# --------------------------------------------------------------------------- left-right consistency


def _plane_disparity(z0, slope, K, height=HEIGHT, width=WIDTH):
    """Sigmoid disparity of the plane Z = slope * X + z0 seen by a camera with K: 1/Z = (1 - slope * x_n) / z0."""
    u = torch.arange(width, dtype=torch.float32).expand(height, width)
    x_n = (u - K[0, 0, 2]) / K[0, 0, 0]
    depth = z0 / (1 - slope * x_n)
    return depth_to_disparity(depth[None, None], MIN_DEPTH, MAX_DEPTH)


@pytest.mark.parametrize("slope", [0.0, 0.3])
def test_lr_consistency_is_zero_for_consistent_disparities(slope):
    K = intrinsics()
    baseline = 0.5
    T_right_left = torch.eye(4).unsqueeze(0)
    T_right_left[0, 0, 3] = -baseline  # right camera is +baseline along the left camera's x
    z0 = 6.0
    left = _plane_disparity(z0, slope, K)
    # In the right camera the same plane is Z = slope * (X_r + baseline) + z0.
    right = _plane_disparity(z0 + slope * baseline, slope, K)
    options = dict(min_depth=MIN_DEPTH, max_depth=MAX_DEPTH)
    # Disparities here are ~0.07 image widths; float32 round trips leave ~1e-6.
    assert lr_consistency(left, right, T_right_left, K, **options).item() < 1e-5
    assert lr_consistency(right, left, invert_transform(T_right_left), K, **options).item() < 1e-5
    inconsistent = _plane_disparity(z0 * 1.5, slope, K)
    assert lr_consistency(left, inconsistent, T_right_left, K, **options).item() > 1e-2


def test_lr_consistency_is_measured_in_image_widths_of_stereo_disparity():
    # Monodepth v1's unit: disparity fx * baseline / (depth * W). Left sees 4 m, right claims 5 m.
    K = intrinsics()
    baseline = 0.5
    T_right_left = torch.eye(4).unsqueeze(0)
    T_right_left[0, 0, 3] = -baseline
    value = lr_consistency(
        constant_disparity(4.0), constant_disparity(5.0), T_right_left, K, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH
    )
    fx = K[0, 0, 0].item()
    assert value.item() == pytest.approx(fx * baseline / WIDTH * (1 / 4 - 1 / 5), rel=1e-4)


# --------------------------------------------------------------------------- velocity and gradients


def test_velocity_loss_compares_translation_norm_with_odometry_distance():
    translation = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], requires_grad=True)
    distance = torch.tensor([4.0, 1.5, float("nan")])
    loss = velocity_loss(translation, distance)
    assert loss.item() == pytest.approx((1.0 + 0.5) / 2)
    loss.backward()
    assert torch.allclose(translation.grad[0], torch.tensor([3.0, 4.0, 0.0]) / 5 / 2)
    assert torch.equal(translation.grad[2], torch.zeros(3))  # unknown distance: no gradient
    unknown = velocity_loss(translation, torch.full((3,), float("nan")))
    assert unknown.item() == 0 and unknown.requires_grad


def test_gradients_flow_to_depth_and_pose():
    source, target, _, K = rendered_pair(depth=5.0)
    disparity = constant_disparity(3.0).requires_grad_()
    axis_angle = torch.tensor([[0.0, 0.01, 0.0]], requires_grad=True)
    translation = torch.tensor([[0.05, 0.0, -0.1]], requires_grad=True)
    T = pose_vector_to_matrix(axis_angle, translation)
    loss = multiscale_view_loss({0: disparity}, target, [source], [T], K, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH)
    loss.total.backward()
    for tensor in (disparity, axis_angle, translation):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum().item() > 0


def test_view_loss_needs_a_source():
    with pytest.raises(ValueError, match="at least one source"):
        multiscale_view_loss({0: constant_disparity(5.0)}, texture(), [], [], intrinsics(), min_depth=0.1, max_depth=100.0)
