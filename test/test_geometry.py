"""Numerical tests of mono_depth_ros.geometry (intrinsics, projection, poses, disparity, warping;
rotations are in test_rotations.py)."""
from __future__ import annotations

import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mono_depth_ros import geometry as geo


def make_K(fx=120.0, fy=110.0, cx=70.3, cy=41.7, skew=0.0, dtype=torch.float64) -> torch.Tensor:
    """(1, 3, 3) pinhole matrix; the defaults have a principal point far from the image centre."""
    return torch.tensor([[[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]], dtype=dtype)


def gaussian_blob(height: int, width: int, u0: float, v0: float, sigma: float) -> np.ndarray:
    """Image (H, W) float64 of a Gaussian sampled at pixel centres (u, v) = (column, row)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.exp(-((u - u0) ** 2 + (v - v0) ** 2) / (2.0 * sigma**2))


def centroid(image: np.ndarray) -> np.ndarray:
    v, u = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float64)
    total = image.sum()
    return np.array([(u * image).sum() / total, (v * image).sum() / total])


# --------------------------------------------------------------------------- intrinsics


class TestScaleIntrinsics:
    height, width = 96, 160
    point = torch.tensor([[[0.4], [-0.2], [3.0]]], dtype=torch.float64)  # (1, 3, 1) camera frame

    def _blob_at_point(self, K):
        u0, v0 = geo.project(self.point, K)[0, :, 0].tolist()
        return gaussian_blob(self.height, self.width, u0, v0, sigma=4.0), (u0, v0)

    def test_area_downsample_moves_blob_where_scaled_K_projects(self):
        K = make_K()
        image, _ = self._blob_at_point(K)
        # Integer factors: INTER_AREA averages 4x2 blocks, the ideal pixel-centre-exact resize.
        small = cv2.resize(image, (self.width // 4, self.height // 2), interpolation=cv2.INTER_AREA)
        K_small = geo.scale_intrinsics(K, 0.25, 0.5)
        predicted = geo.project(self.point, K_small)[0, :, 0].numpy()
        measured = centroid(small)
        assert np.abs(predicted - measured).max() < 0.01
        # Sensitivity: scaling cx, cy without the half-pixel shift is off by 0.375 / 0.25 px.
        naive = K.clone()
        naive[0, 0] *= 0.25
        naive[0, 1] *= 0.25
        naive[0, 0, 2] *= 0.25
        naive[0, 1, 2] *= 0.5
        naive_error = np.abs(geo.project(self.point, naive)[0, :, 0].numpy() - measured)
        assert naive_error[0] > 0.3 and naive_error[1] > 0.2

    def test_bilinear_upsample_moves_blob_where_scaled_K_projects(self):
        K = make_K()
        image, _ = self._blob_at_point(K)
        big = F.interpolate(
            torch.from_numpy(image)[None, None], scale_factor=(3.0, 2.0), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        K_big = geo.scale_intrinsics(K, 2.0, 3.0)
        predicted = geo.project(self.point, K_big)[0, :, 0].numpy()
        assert np.abs(predicted - centroid(big)).max() < 0.02

    def test_formula_on_batch_with_skew(self):
        K = torch.cat([make_K(skew=0.7), make_K(fx=300.0, fy=280.0, cx=10.0, cy=200.0)])  # (2, 3, 3)
        scaled = geo.scale_intrinsics(K, 0.5, 2.0)
        expected = torch.tensor(
            [
                [[60.0, 0.35, (70.3 + 0.5) * 0.5 - 0.5], [0.0, 220.0, (41.7 + 0.5) * 2.0 - 0.5], [0.0, 0.0, 1.0]],
                [[150.0, 0.0, 10.5 * 0.5 - 0.5], [0.0, 560.0, 200.5 * 2.0 - 0.5], [0.0, 0.0, 1.0]],
            ],
            dtype=torch.float64,
        )
        torch.testing.assert_close(scaled, expected, rtol=0, atol=1e-12)
        assert K[0, 0, 0] == 120.0  # input untouched

    def test_scaling_there_and_back_is_identity(self):
        K = make_K(skew=0.3)
        torch.testing.assert_close(geo.scale_intrinsics(geo.scale_intrinsics(K, 0.3, 1.7), 1 / 0.3, 1 / 1.7), K)


# --------------------------------------------------------------------------- projection


@pytest.mark.parametrize("skew", [0.0, 1.5])
def test_backproject_then_project_returns_every_pixel(skew):
    torch.manual_seed(0)
    height, width = 48, 64
    K = torch.cat([make_K(skew=skew, dtype=torch.float32), make_K(90.0, 95.0, 20.0, 30.0, skew, torch.float32)])
    depth = 0.5 + 79.5 * torch.rand(2, 1, height, width)
    points = geo.backproject(depth, K)
    assert points.shape == (2, 3, height, width)
    torch.testing.assert_close(points[:, 2:3], depth, rtol=1e-6, atol=0)
    pixels = geo.project(points.reshape(2, 3, -1), K)
    grid = geo.pixel_grid(height, width)[:2].reshape(1, 2, -1)
    assert (pixels - grid).abs().max().item() < 1e-3


def test_backproject_project_float32_at_720p():
    K = make_K(fx=900.0, fy=905.0, cx=611.3, cy=377.9, dtype=torch.float32)
    depth = torch.full((1, 1, 720, 1280), 37.0)
    pixels = geo.project(geo.backproject(depth, K).reshape(1, 3, -1), K)
    grid = geo.pixel_grid(720, 1280)[:2].reshape(1, 2, -1)
    assert (pixels - grid).abs().max().item() < 1e-3


def test_pixel_rays_are_unit_depth_and_match_K():
    K = make_K(skew=0.5)
    rays = geo.pixel_rays(K, 5, 7)
    assert rays.shape == (1, 3, 5, 7)
    torch.testing.assert_close(rays[:, 2], torch.ones(1, 5, 7, dtype=torch.float64))
    # Pixel (u=6, v=4): y = (4 - cy) / fy, x = (6 - cx - skew * y) / fx.
    y = (4 - 41.7) / 110.0
    x = (6 - 70.3 - 0.5 * y) / 120.0
    assert rays[0, 0, 4, 6].item() == pytest.approx(x, abs=1e-12)
    assert rays[0, 1, 4, 6].item() == pytest.approx(y, abs=1e-12)


def test_points_behind_camera_project_far_outside():
    K = make_K()
    pixels = geo.project(torch.tensor([[[0.1], [0.1], [-1.0]]], dtype=torch.float64), K)
    assert pixels.abs().min().item() > 1e5


# --------------------------------------------------------------------------- poses


def random_pose(batch=8, seed=5, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    axis_angle = F.normalize(torch.randn(batch, 3, generator=generator, dtype=dtype), dim=1)
    axis_angle = axis_angle * torch.rand(batch, 1, generator=generator, dtype=dtype) * 3.0
    translation = torch.randn(batch, 3, generator=generator, dtype=dtype) * 2.0
    return axis_angle, translation


def test_pose_vector_round_trip_and_layout():
    axis_angle, translation = random_pose()
    T = geo.pose_vector_to_matrix(axis_angle, translation)
    assert T.shape == (8, 4, 4)
    torch.testing.assert_close(T[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(8, 4))
    torch.testing.assert_close(T[:, :3, 3], translation)
    back_axis_angle, back_translation = geo.matrix_to_pose_vector(T)
    torch.testing.assert_close(back_axis_angle, axis_angle, rtol=0, atol=1e-9)
    torch.testing.assert_close(back_translation, translation, rtol=0, atol=0)


def test_invert_transform():
    T = geo.pose_vector_to_matrix(*random_pose())
    inverse = geo.invert_transform(T)
    eye = torch.eye(4, dtype=torch.float64).expand(8, 4, 4)
    torch.testing.assert_close(T @ inverse, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(inverse @ T, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(geo.invert_transform(inverse), T, rtol=0, atol=1e-12)
    points = torch.randn(8, 3, 10, dtype=torch.float64)
    torch.testing.assert_close(geo.transform_points(inverse, geo.transform_points(T, points)), points)


def test_transform_points_follows_p_b_equals_R_p_a_plus_t():
    # Frame b is frame a rotated 90 degrees about z and shifted by (1, 2, 3).
    T_b_a = geo.pose_vector_to_matrix(
        torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64), torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    )
    point_a = torch.tensor([[[1.0], [0.0], [0.0]]], dtype=torch.float64)
    point_b = geo.transform_points(T_b_a, point_a)
    torch.testing.assert_close(point_b[0, :, 0], torch.tensor([1.0, 3.0, 3.0], dtype=torch.float64))


# --------------------------------------------------------------------------- disparity


def test_disparity_to_depth_range_and_inverse():
    disparity = torch.linspace(0.0, 1.0, 101, dtype=torch.float64).reshape(1, 1, 1, -1)
    scaled, depth = geo.disparity_to_depth(disparity, 0.1, 100.0)
    assert depth[..., 0].item() == pytest.approx(100.0)
    assert depth[..., -1].item() == pytest.approx(0.1)
    assert (depth.diff(dim=-1) < 0).all()  # more disparity = nearer
    torch.testing.assert_close(scaled * depth, torch.ones_like(depth))
    torch.testing.assert_close(geo.depth_to_disparity(depth, 0.1, 100.0), disparity)
    # Midpoint in disparity is the harmonic mean-ish depth 2 / (1/0.1 + 1/100).
    assert depth[..., 50].item() == pytest.approx(2.0 / (10.0 + 0.01))


def test_disparity_range_known_values_and_round_trip():
    r = geo.DisparityRange(0.1, 100.0)
    assert (r.min_disparity, r.max_disparity) == (0.01, 10.0) and r.span == 10.0 - 0.01
    assert r.sigmoid_to_scaled(0.0) == 0.01 and r.sigmoid_to_scaled(1.0) == 10.0
    assert r.sigmoid_to_scaled(0.5) == pytest.approx(5.005, abs=1e-15)
    assert r.scaled_to_sigmoid(0.01) == 0.0 and r.scaled_to_sigmoid(10.0) == 1.0
    assert r.scaled_to_sigmoid(1.0 / 2.0) == pytest.approx((0.5 - 0.01) / 9.99, abs=1e-15)  # depth 2 m
    sigmoid = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_allclose(r.scaled_to_sigmoid(r.sigmoid_to_scaled(sigmoid)), sigmoid, rtol=0, atol=1e-14)


def test_disparity_mapping_keeps_the_array_type_and_dtype():
    r = geo.DisparityRange(0.5, 40.0)
    as_array = r.sigmoid_to_scaled(np.full((2, 3), 0.25, dtype=np.float32))
    assert isinstance(as_array, np.ndarray) and as_array.dtype == np.float32
    as_tensor = r.sigmoid_to_scaled(torch.full((2, 3), 0.25))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    np.testing.assert_array_equal(as_array, as_tensor.numpy())
    np.testing.assert_allclose(as_array, 1 / 40 + 0.25 * (2.0 - 1 / 40), rtol=1e-7)
    scaled, depth = geo.disparity_to_depth(np.array([0.0, 1.0]), 0.5, 40.0)
    np.testing.assert_allclose(depth, [40.0, 0.5], rtol=1e-15)
    assert geo.depth_to_disparity(2.0, 0.5, 40.0) == pytest.approx((0.5 - 0.025) / (2.0 - 0.025), abs=1e-15)


def test_depth_from_scaled_disparity_inverts_and_upsamples_in_disparity():
    constant = np.full((3, 4), 0.25, dtype=np.float32)
    depth = geo.depth_from_scaled_disparity(constant.copy(), 6, 8, scale=1.5)
    assert depth.shape == (6, 8) and depth.dtype == np.float32
    np.testing.assert_array_equal(depth, np.float32(1.5) / np.float32(0.25))
    # Disparities 0.5 and 0.1 (depths 2 and 10) upsampled 2x: the inner pixels sit a quarter of the
    # way from each source pixel, so they get disparity 0.4 and 0.2 (depths 2.5 and 5), not depth 4 and 8.
    scaled = np.array([[0.5, 0.1]], dtype=np.float32)
    wide = geo.depth_from_scaled_disparity(scaled.copy(), 1, 4, scale=1.0)
    np.testing.assert_allclose(wide[0], [2.0, 1 / 0.4, 1 / 0.2, 10.0], rtol=1e-6)
    same = geo.depth_from_scaled_disparity(scaled, 1, 2, scale=2.0)  # same size: divided in place
    assert same is scaled
    np.testing.assert_allclose(same[0], [4.0, 20.0], rtol=1e-6)


def test_torch_free_submodules_import_without_torch():
    code = (
        "import sys\n"
        "import mono_depth_ros.geometry.disparity, mono_depth_ros.geometry.rotations\n"
        "from mono_depth_ros.geometry import DisparityRange, matrix_to_quaternion\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_package_exports_every_submodule_name():
    from mono_depth_ros.geometry import camera, disparity, rotations, transforms, warping

    for name in geo.__all__:
        value = getattr(geo, name)
        submodules = (camera, disparity, rotations, transforms, warping)
        assert any(getattr(module, name, None) is value for module in submodules), name
    with pytest.raises(AttributeError):
        geo.not_a_geometry_function  # noqa: B018


# --------------------------------------------------------------------------- warping

HEIGHT, WIDTH = 96, 128
WARP_K = make_K(fx=100.0, fy=100.0, cx=60.2, cy=50.7)


def plane_texture(points: np.ndarray) -> np.ndarray:
    """Smooth texture painted on the plane (wavelengths >= ~17 px at 4 m): points (..., 3) -> (...)."""
    x, y = points[..., 0], points[..., 1]
    return (
        0.5
        + 0.2 * np.sin(2 * np.pi * x / 0.7 + 0.3)
        + 0.15 * np.cos(2 * np.pi * y / 0.8)
        + 0.1 * np.sin(2 * np.pi * (x + 0.6 * y) / 0.9)
    )


def render_plane(T_camera_target: np.ndarray, normal, distance: float):
    """Render the textured plane n . p = distance (target frame) in a camera at T_camera_target.

    -> (image (H, W) float64, depth of the plane along the camera's optical axis (H, W)).
    """
    K = WARP_K[0].numpy()
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays_camera = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T
    R, t = T_camera_target[:3, :3], T_camera_target[:3, 3]
    centre_target = -R.T @ t
    rays_target = rays_camera @ R  # R^T r for each ray
    normal = np.asarray(normal, dtype=np.float64)
    scale = (distance - normal @ centre_target) / (rays_target @ normal)
    points_target = centre_target + scale[..., None] * rays_target
    return plane_texture(points_target), scale  # z of rays_camera is 1, so scale is depth


def warp_case(axis_angle, translation, normal):
    normal = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
    axis_angle = torch.tensor([axis_angle], dtype=torch.float64)
    translation = torch.tensor([translation], dtype=torch.float64)
    T_source_target = geo.pose_vector_to_matrix(axis_angle, translation)
    target, target_depth = render_plane(np.eye(4), normal, 4.0 * normal[2])
    source, _ = render_plane(T_source_target[0].numpy(), normal, 4.0 * normal[2])
    as_tensor = lambda a: torch.from_numpy(a).float()[None, None]  # noqa: E731
    return as_tensor(target), as_tensor(target_depth), as_tensor(source), axis_angle.float(), translation.float()


def visible(grid: torch.Tensor, margin_px: float = 1.5) -> torch.Tensor:
    """Target pixels whose source sample lies inside the source image (grid (B, H, W, 2)) -> (B, 1, H, W)."""
    u = (grid[..., 0] + 1) * WIDTH / 2 - 0.5
    v = (grid[..., 1] + 1) * HEIGHT / 2 - 0.5
    inside = (u >= margin_px) & (u <= WIDTH - 1 - margin_px) & (v >= margin_px) & (v <= HEIGHT - 1 - margin_px)
    return inside[:, None]


WARP_CASES = {
    "translation": ((0.0, 0.0, 0.0), (0.25, -0.1, 0.3), (0.0, 0.0, 1.0)),
    "rotation": ((0.03, -0.04, 0.02), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "both_tilted_plane": ((-0.02, 0.03, 0.01), (-0.2, 0.05, -0.15), (0.3, -0.2, 1.0)),
}


@pytest.mark.parametrize("case", sorted(WARP_CASES))
def test_warp_with_true_depth_and_pose_reproduces_target(case):
    target, depth, source, axis_angle, translation = warp_case(*WARP_CASES[case])
    T_source_target = geo.pose_vector_to_matrix(axis_angle, translation)
    grid = geo.reproject_coordinates(depth, T_source_target, WARP_K.float(), WARP_K.float())
    assert grid.shape == (1, HEIGHT, WIDTH, 2)
    warped = geo.warp_image(source, grid)
    mask = visible(grid)
    assert mask.float().mean().item() > 0.7
    error = (warped - target).abs()[mask]
    assert error.max().item() < 0.02  # bilinear interpolation error of the texture
    assert error.mean().item() < 0.003
    # The test can fail: the opposite motion warps to the wrong place.
    wrong = geo.pose_vector_to_matrix(-axis_angle, -translation)
    wrong_error = (geo.warp_image(source, geo.reproject_coordinates(depth, wrong, WARP_K.float(), WARP_K.float())) - target).abs()
    assert wrong_error[mask].mean().item() > 10 * error.mean().item()


def test_warp_with_identity_pose_returns_source_exactly():
    source = torch.rand(2, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(6))
    depth = torch.rand(2, 1, HEIGHT, WIDTH) * 10 + 1
    K = WARP_K.float().expand(2, 3, 3)
    grid = geo.reproject_coordinates(depth, torch.eye(4).expand(2, 4, 4), K, K)
    torch.testing.assert_close(geo.warp_image(source, grid), source, rtol=0, atol=1e-4)


@pytest.mark.parametrize("depth_factor, x_offset", [(1.1, 0.0), (0.9, 0.0), (1.0, 0.03), (1.0, -0.03)])
def test_warp_gradients_reach_depth_and_pose_and_point_back_to_the_truth(depth_factor, x_offset):
    target, true_depth, source, axis_angle, translation = warp_case(*WARP_CASES["translation"])
    depth = (true_depth * depth_factor).requires_grad_()
    wrong_translation = (translation + torch.tensor([[x_offset, 0.0, 0.0]])).requires_grad_()
    rotation = axis_angle.clone().requires_grad_()
    T_source_target = geo.pose_vector_to_matrix(rotation, wrong_translation)
    grid = geo.reproject_coordinates(depth, T_source_target, WARP_K.float(), WARP_K.float())
    mask = visible(grid.detach(), margin_px=3)
    loss = ((geo.warp_image(source, grid) - target) ** 2)[mask].mean()
    loss.backward()
    for gradient in (depth.grad, wrong_translation.grad, rotation.grad):
        assert torch.isfinite(gradient).all()
        assert gradient.abs().sum().item() > 0
    assert (depth.grad[mask] != 0).float().mean().item() > 0.9
    # One gradient-descent step moves the wrong quantity towards the truth.
    if depth_factor != 1.0:
        assert depth.grad.sum().item() * (depth_factor - 1.0) > 0
    else:
        assert wrong_translation.grad[0, 0].item() * x_offset > 0


def test_pixels_to_grid_maps_image_edges_to_minus_and_plus_one():
    height, width = 4, 10
    # u = -0.5 and W - 0.5 are the outer edges of the first and last pixel (align_corners=False).
    pixels = torch.tensor([[[-0.5, width - 0.5, 0.0, width - 1.0], [-0.5, height - 0.5, 0.0, height - 1.0]]],
                          dtype=torch.float64)
    grid = geo.pixels_to_grid(pixels, height, width)
    assert grid.shape == (1, 4, 2)
    torch.testing.assert_close(grid[0, 0], torch.tensor([-1.0, -1.0], dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(grid[0, 1], torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(grid[0, 2], torch.tensor([-1 + 1 / width, -1 + 1 / height], dtype=torch.float64))
    torch.testing.assert_close(grid[0, 3], torch.tensor([1 - 1 / width, 1 - 1 / height], dtype=torch.float64))


def test_grid_of_pixel_centres_samples_the_image_exactly():
    height, width = 5, 7
    image = torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(7))
    pixels = geo.pixel_grid(height, width)[:2].reshape(1, 2, -1)
    grid = geo.pixels_to_grid(pixels, height, width).reshape(1, height, width, 2)
    torch.testing.assert_close(geo.warp_image(image, grid), image, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-15), (torch.float32, 1e-6)])
def test_affine_grid_form_matches_pixels_to_grid(dtype, tolerance):
    height, width = 48, 80
    scale, shift = geo.pixels_to_grid_affine(height, width, dtype=dtype)
    torch.testing.assert_close(scale, torch.tensor([2 / width, 2 / height], dtype=dtype), rtol=0, atol=0)
    torch.testing.assert_close(shift, torch.tensor([1 / width - 1, 1 / height - 1], dtype=dtype), rtol=0, atol=0)
    generator = torch.Generator().manual_seed(8)
    pixels = (torch.rand(3, 2, 500, generator=generator, dtype=torch.float64) * 100 - 10).to(dtype)
    affine = torch.addcmul(shift, pixels.transpose(-1, -2), scale)
    assert (affine - geo.pixels_to_grid(pixels, height, width)).abs().max().item() < tolerance
