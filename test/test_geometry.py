"""Numerical tests of mono_depth_ros.geometry (intrinsics, projection, rotations, warping)."""
from __future__ import annotations

import math

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


# --------------------------------------------------------------------------- rotations


def quaternion_rotation(axis_angle: np.ndarray) -> np.ndarray:
    """Independent construction: unit quaternion (w, x, y, z) -> rotation matrix."""
    angle = np.linalg.norm(axis_angle)
    axis = axis_angle / angle if angle > 0 else np.array([1.0, 0.0, 0.0])
    w = math.cos(angle / 2)
    x, y, z = axis * math.sin(angle / 2)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@pytest.mark.parametrize(
    "axis_angle, source, target",
    [
        ((0, 0, math.pi / 2), (1, 0, 0), (0, 1, 0)),  # about z: x -> y
        ((0, 0, math.pi / 2), (0, 1, 0), (-1, 0, 0)),  # about z: y -> -x
        ((math.pi / 2, 0, 0), (0, 1, 0), (0, 0, 1)),  # about x: y -> z
        ((0, math.pi / 2, 0), (0, 0, 1), (1, 0, 0)),  # about y: z -> x
        ((0, math.pi, 0), (1, 0, 0), (-1, 0, 0)),  # half turn
    ],
)
def test_axis_angle_rotates_known_axes(axis_angle, source, target):
    R = geo.axis_angle_to_matrix(torch.tensor([axis_angle], dtype=torch.float64))
    moved = R[0] @ torch.tensor(source, dtype=torch.float64)
    torch.testing.assert_close(moved, torch.tensor(target, dtype=torch.float64), rtol=0, atol=1e-12)


def test_axis_angle_matches_quaternion_construction_and_is_a_rotation():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(64, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    vectors = axes * rng.uniform(0.0, 2 * math.pi, size=(64, 1))
    vectors[0] = 0.0
    vectors[1] = [1e-5, -2e-5, 3e-6]
    R = geo.axis_angle_to_matrix(torch.from_numpy(vectors)).numpy()
    expected = np.stack([quaternion_rotation(v) for v in vectors])
    np.testing.assert_allclose(R, expected, atol=1e-12)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)


@pytest.mark.parametrize("dtype, max_angle, tolerance", [(torch.float64, math.pi - 1e-3, 1e-8), (torch.float32, 3.0, 2e-4)])
def test_matrix_to_axis_angle_round_trip(dtype, max_angle, tolerance):
    generator = torch.Generator().manual_seed(2)
    axes = F.normalize(torch.randn(500, 3, generator=generator, dtype=torch.float64), dim=1)
    angles = torch.rand(500, 1, generator=generator, dtype=torch.float64) * max_angle
    angles[:5, 0] = torch.tensor([0.0, 1e-7, 1e-5, 1e-4, 1e-3], dtype=torch.float64)
    vectors = (axes * angles).to(dtype)
    recovered = geo.matrix_to_axis_angle(geo.axis_angle_to_matrix(vectors))
    assert (recovered - vectors).abs().max().item() < tolerance


def test_rotation_gradient_at_zero_is_the_generator():
    # Near identity R = I + [w]x, so d sum(W * R) / dw = (W21 - W12, W02 - W20, W10 - W01).
    weights = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    (geo.axis_angle_to_matrix(zero)[0] * weights).sum().backward()
    W = weights
    expected = torch.stack([W[2, 1] - W[1, 2], W[0, 2] - W[2, 0], W[1, 0] - W[0, 1]])
    torch.testing.assert_close(zero.grad[0], expected, rtol=0, atol=1e-12)


def test_rotation_gradient_at_identity_from_matrix_side_is_finite():
    R = torch.eye(3, dtype=torch.float64)[None].clone().requires_grad_()
    geo.matrix_to_axis_angle(R).sum().backward()
    assert torch.isfinite(R.grad).all()


@pytest.mark.parametrize("angle", [0.0, 1e-6, 5e-5, 1.2e-4, 1e-3, 1e-2, 0.3])
def test_float32_rotation_gradient_matches_float64(angle):
    # Pose networks start near identity; float32 gradients there must be as good as float64's.
    generator = torch.Generator().manual_seed(4)
    axes = F.normalize(torch.randn(200, 3, generator=generator, dtype=torch.float64), dim=1)
    weights = torch.randn(200, 3, 3, generator=generator, dtype=torch.float64)
    grads = {}
    for dtype in (torch.float32, torch.float64):
        vector = (axes * angle).to(dtype).requires_grad_()
        (geo.axis_angle_to_matrix(vector) * weights.to(dtype)).sum().backward()
        assert torch.isfinite(vector.grad).all()
        grads[dtype] = vector.grad.double()
    assert (grads[torch.float32] - grads[torch.float64]).abs().max().item() < 5e-6


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
