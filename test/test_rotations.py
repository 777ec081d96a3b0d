"""Numerical tests of mono_depth_ros.geometry.rotations: known rotations in, known numbers out."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mono_depth_ros import geometry as geo
from mono_depth_ros.geometry.rotations import (
    R_BODY_OPTICAL,
    angle_between_deg,
    matrix_to_quaternion,
    quaternion_to_matrix,
    rotation_angle_deg,
    rotation_log,
    rpy_to_matrix,
)

S45 = math.sin(math.pi / 4)


def rotation(axis_angle) -> np.ndarray:
    """(3,) axis * angle (radians) -> (3, 3) float64, through the batched PyTorch function."""
    return geo.axis_angle_to_matrix(torch.tensor(np.asarray(axis_angle, dtype=np.float64)[None]))[0].numpy()


def random_rotations(count: int, seed: int, near_half_turn: bool = False) -> np.ndarray:
    """(count, 3, 3): uniform axes; angles uniform in [0, pi), or within 1e-12..1e-2 of pi."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    if near_half_turn:
        angles = math.pi - 10.0 ** rng.uniform(-12, -2, size=(count, 1))
    else:
        angles = rng.uniform(0.0, math.pi, size=(count, 1))
    return geo.axis_angle_to_matrix(torch.from_numpy(axes * angles)).numpy()


# --------------------------------------------------------------------------- PyTorch: axis-angle


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


# --------------------------------------------------------------------------- NumPy: quaternions


@pytest.mark.parametrize(
    "axis_angle, expected",
    [
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)),
        ((0.0, 0.0, math.pi / 2), (0.0, 0.0, S45, S45)),  # 90 degrees about z
        ((0.0, -math.pi / 2, 0.0), (0.0, -S45, 0.0, S45)),  # -90 degrees about y
        ((math.pi / 3, 0.0, 0.0), (0.5, 0.0, 0.0, math.sqrt(3) / 2)),  # 60 degrees about x
        ((math.pi, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)),  # half turn about x
        ((0.0, 0.0, -math.pi), (0.0, 0.0, -1.0, 0.0)),  # w = cos(-pi / 2) rounds to +6e-17: no sign flip
    ],
)
def test_matrix_to_quaternion_of_known_rotations(axis_angle, expected):
    q = matrix_to_quaternion(rotation(axis_angle))
    assert q.shape == (4,) and q.dtype == np.float64
    np.testing.assert_allclose(q, expected, rtol=0, atol=1e-12)


def test_matrix_to_quaternion_of_exact_matrices():
    np.testing.assert_array_equal(matrix_to_quaternion(np.eye(3)), [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(matrix_to_quaternion(np.diag([-1.0, 1.0, -1.0])), [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(matrix_to_quaternion(np.diag([-1.0, -1.0, 1.0])), [0.0, 0.0, 1.0, 0.0])
    # R_BODY_OPTICAL: optical -> body is -90 degrees about x, then -90 degrees about the new z.
    np.testing.assert_allclose(matrix_to_quaternion(R_BODY_OPTICAL), [-0.5, 0.5, -0.5, 0.5], atol=1e-15)


@pytest.mark.parametrize("near_half_turn", [False, True])
def test_quaternion_matrix_round_trip(near_half_turn):
    for R in random_rotations(2000, seed=7, near_half_turn=near_half_turn):
        q = matrix_to_quaternion(R)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1.0) < 1e-15
        np.testing.assert_allclose(quaternion_to_matrix(q), R, rtol=0, atol=1e-14)


def test_quaternion_matches_half_angle_construction_near_a_half_turn():
    # q = (axis sin(angle / 2), cos(angle / 2)): w is tiny and every component must still be right.
    rng = np.random.default_rng(8)
    for _ in range(500):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = math.pi - 10.0 ** rng.uniform(-12, -2)
        expected = np.append(axis * math.sin(angle / 2), math.cos(angle / 2))
        np.testing.assert_allclose(matrix_to_quaternion(rotation(axis * angle)), expected, rtol=0, atol=1e-12)


def test_quaternion_to_matrix_of_known_quaternions():
    quarter_turn_z = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(quaternion_to_matrix((0.0, 0.0, S45, S45)), quarter_turn_z, atol=1e-15)
    np.testing.assert_allclose(quaternion_to_matrix((1.0, 0.0, 0.0, 0.0)), np.diag([1.0, -1.0, -1.0]), atol=0)
    q = np.array([0.1, -0.7, 0.3, 0.64])
    q /= np.linalg.norm(q)
    np.testing.assert_allclose(quaternion_to_matrix(-q), quaternion_to_matrix(q), atol=1e-15)  # q and -q


@pytest.mark.parametrize("axis_angle", [(0.0, 0.0, 0.0), (0.3, -0.2, 0.1), (math.pi - 1e-3, 0.0, 0.0), (0.0, 2.5, 1.0)])
def test_quaternion_rotates_like_the_matrix(axis_angle):
    R = rotation(axis_angle)
    x, y, z, w = matrix_to_quaternion(R)
    assert w >= 0 and math.isclose(x * x + y * y + z * z + w * w, 1.0, rel_tol=1e-12)
    # Rotation matrix of the quaternion, written out.
    Q = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    np.testing.assert_allclose(Q, R, atol=1e-9)


# --------------------------------------------------------------------------- NumPy: log, rpy, angles


def test_rotation_log_of_known_rotations():
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    np.testing.assert_allclose(rotation_log(rotation(0.3 * axis)), 0.3 * axis, rtol=0, atol=1e-15)
    quarter_turn_z = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(rotation_log(quarter_turn_z), [0, 0, math.pi / 2], atol=1e-15)
    np.testing.assert_array_equal(rotation_log(np.eye(3)), [0.0, 0.0, 0.0])
    tiny = np.array([1e-10, -2e-10, 3e-11])
    np.testing.assert_allclose(rotation_log(rotation(tiny)), tiny, rtol=1e-6, atol=0)


def test_rotation_log_agrees_with_the_batched_torch_version():
    Rs = random_rotations(300, seed=9)
    expected = geo.matrix_to_axis_angle(torch.from_numpy(Rs)).numpy()
    np.testing.assert_allclose(np.stack([rotation_log(R) for R in Rs]), expected, rtol=0, atol=1e-9)


def test_rpy_to_matrix_follows_rep_103():
    yaw = rpy_to_matrix(0.0, 0.0, math.pi / 2)
    np.testing.assert_allclose(yaw @ [1.0, 0, 0], [0.0, 1.0, 0.0], atol=1e-15)  # yaw left: x -> y
    pitch = rpy_to_matrix(0.0, math.pi / 2, 0.0)
    np.testing.assert_allclose(pitch @ [1.0, 0, 0], [0.0, 0.0, -1.0], atol=1e-15)  # pitch down: x -> -z
    roll = rpy_to_matrix(math.pi / 2, 0.0, 0.0)
    np.testing.assert_allclose(roll @ [0.0, 1.0, 0], [0.0, 0.0, 1.0], atol=1e-15)  # roll: y -> z
    # Fixed axes, roll first: R = Rz(yaw) Ry(pitch) Rx(roll).
    roll, pitch, yaw = 0.2, -0.4, 1.1
    expected = rotation((0, 0, yaw)) @ rotation((0, pitch, 0)) @ rotation((roll, 0, 0))
    np.testing.assert_allclose(rpy_to_matrix(roll, pitch, yaw), expected, rtol=0, atol=1e-15)


def test_rotation_angle_and_angle_between():
    assert rotation_angle_deg(np.eye(3)) == 0.0
    assert rotation_angle_deg(rotation((0.0, 0.0, math.radians(30.0)))) == pytest.approx(30.0, abs=1e-12)
    assert rotation_angle_deg(np.diag([1.0, -1.0, -1.0])) == pytest.approx(180.0, abs=1e-12)
    assert angle_between_deg(np.array([1.0, 0, 0]), np.array([0.0, 3.0, 0])) == pytest.approx(90.0, abs=1e-12)
    assert angle_between_deg(np.array([1.0, 0, 0]), np.array([-2.0, 0, 0])) == pytest.approx(180.0, abs=1e-12)
    assert angle_between_deg(np.array([0.0, 1, 1]), np.array([0.0, 0, 5])) == pytest.approx(45.0, abs=1e-12)


def test_body_optical_rotation_maps_rep_103_axes():
    np.testing.assert_array_equal(R_BODY_OPTICAL @ [0.0, 0, 1], [1.0, 0, 0])  # optical forward = body x
    np.testing.assert_array_equal(R_BODY_OPTICAL @ [1.0, 0, 0], [0.0, -1, 0])  # optical right = body -y
    np.testing.assert_array_equal(R_BODY_OPTICAL @ [0.0, 1, 0], [0.0, 0, -1])  # optical down = body -z
    assert np.linalg.det(R_BODY_OPTICAL) == pytest.approx(1.0)
