"""Visual odometry maths: chaining, frames, velocities, covariances (no ROS)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mono_depth_ros.geometry import axis_angle_to_matrix
from mono_depth_ros.networks import PoseNet
from mono_depth_ros.geometry import R_BODY_OPTICAL
from mono_depth_ros.visual_odometry import (
    MIN_POSITION_STDDEV_M, PoseRunner, StillGate, VisualOdometry, chain_break_reason, image_change,
)


def transform(rotation_axis_angle=(0.0, 0.0, 0.0), translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_matrix(torch.tensor([rotation_axis_angle], dtype=torch.float64))[0].numpy()
    T[:3, 3] = translation
    return T


def test_forward_motion_becomes_x_in_a_z_up_odom_frame():
    """A camera driving forward along its optical axis moves along odom +x (REP 103 body axes)."""
    odometry = VisualOdometry(translation_scale=2.0)
    # T_later_earlier of a camera that moved 0.5 network units forward: earlier points are 0.5 closer.
    step = transform(translation=(0.0, 0.0, -0.5))
    for _ in range(4):
        estimate = odometry.update(step, dt_s=0.1)
    np.testing.assert_allclose(estimate.T_odom_camera[:3, 3], [4.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(estimate.T_odom_camera[:3, :3], R_BODY_OPTICAL, atol=1e-12)
    np.testing.assert_allclose(estimate.linear_velocity, [0.0, 0.0, 10.0], atol=1e-9)  # camera frame: +z
    assert estimate.distance_m == pytest.approx(4.0)


def test_turning_left_on_a_quarter_circle():
    """Four frames of a 90 degree left turn on a circle of radius 2 m end at (2, 2) facing +y."""
    odometry = VisualOdometry()
    radius, steps = 2.0, 4
    angle = math.pi / 2 / steps
    # Camera motion in its own (earlier) frame: a left turn is a rotation about optical -y.
    chord = 2 * radius * math.sin(angle / 2)
    T_earlier_later = transform((0.0, -angle, 0.0), (-chord * math.sin(angle / 2), 0.0, chord * math.cos(angle / 2)))
    T_later_earlier = np.linalg.inv(T_earlier_later)
    for _ in range(steps):
        estimate = odometry.update(T_later_earlier, dt_s=0.5)
    np.testing.assert_allclose(estimate.T_odom_camera[:3, 3], [radius, radius, 0.0], atol=1e-9)
    forward = estimate.T_odom_camera[:3, :3] @ np.array([0.0, 0.0, 1.0])  # optical z in odom
    np.testing.assert_allclose(forward, [0.0, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(estimate.angular_velocity, [0.0, -angle / 0.5, 0.0], atol=1e-9)


def test_covariance_grows_with_distance_and_has_a_floor():
    odometry = VisualOdometry(drift=0.1, rotation_drift=0.02)
    still = odometry.update(np.eye(4), dt_s=0.1)
    assert still.pose_covariance[0, 0] == pytest.approx(MIN_POSITION_STDDEV_M ** 2)
    for _ in range(10):
        moving = odometry.update(transform(translation=(0.0, 0.0, -1.0)), dt_s=0.1)
    assert moving.pose_covariance[0, 0] == pytest.approx((0.1 * 10.0) ** 2)
    assert moving.pose_covariance[5, 5] == pytest.approx((0.02 * 10.0) ** 2)
    assert np.count_nonzero(moving.pose_covariance - np.diag(np.diag(moving.pose_covariance))) == 0
    assert moving.twist_covariance[0, 0] == pytest.approx((0.1 * 1.0 / 0.1) ** 2)


def test_reset_starts_again_at_the_origin():
    odometry = VisualOdometry()
    odometry.update(transform(translation=(0.0, 0.0, -1.0)), dt_s=0.1)
    odometry.reset()
    assert odometry.update(np.eye(4), dt_s=0.1).T_odom_camera[:3, 3].tolist() == [0.0, 0.0, 0.0]


def test_chain_break_reasons():
    assert chain_break_reason(None, 10.0, 0.5) is None
    assert chain_break_reason(10.0, 10.1, 0.5) is None
    assert chain_break_reason(10.0, 9.5, 0.5)[0] == "stamp went back"
    assert "went back by 0.500 s" in chain_break_reason(10.0, 9.5, 0.5)[1]
    assert chain_break_reason(10.0, 12.0, 0.5) == (
        "gap", "2.00 s since the previous frame, more than odometry_max_gap (0.5 s)")


def test_pose_runner_returns_the_networks_rigid_motion():
    torch.manual_seed(0)
    net = PoseNet(18)
    runner = PoseRunner(net, torch.device("cpu"))
    earlier, later = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    T = runner.relative_pose(earlier, later)
    with torch.no_grad():
        axis_angle, translation = net(earlier, later)
    np.testing.assert_allclose(T[:3, 3], translation[0].double().numpy(), atol=1e-7)
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])


# --------------------------------------------------------------------------- standing still


def _network_input(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def test_image_change_is_the_trainers_static_frame_measure():
    """The node's test and the trainer's (mono_depth_ros_training.data.thumbnail, uint8 grey, area resize) agree."""
    from mono_depth_ros_training.data import thumbnail

    rng = np.random.default_rng(3)
    earlier = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    for later in (np.roll(earlier, 1, axis=1), np.clip(earlier.astype(int) + 3, 0, 255).astype(np.uint8), earlier):
        trainer = float(np.abs(thumbnail(later).astype(np.float32) - thumbnail(earlier)).mean()) / 255.0
        node = image_change(_network_input(earlier), _network_input(later))
        assert node == pytest.approx(trainer, abs=2.5e-3)  # the trainer rounds its thumbnails to uint8
    assert image_change(_network_input(earlier), _network_input(earlier)) == 0.0
    brighter = np.clip(earlier.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 0.03 < image_change(_network_input(earlier), _network_input(brighter)) <= 10 / 255 + 1e-6


def test_still_gate_keeps_its_reference_so_a_slow_creep_adds_up():
    import cv2

    coarse = np.random.default_rng(4).integers(0, 256, size=(8, 20, 3), dtype=np.uint8)
    base = cv2.resize(coarse, (160, 64), interpolation=cv2.INTER_CUBIC)  # smooth: change grows with the shift
    crops = [_network_input(np.ascontiguousarray(base[:, shift: shift + 96])) for shift in range(8)]
    step = image_change(crops[0], crops[1])
    gate = StillGate(threshold=2.5 * step)  # one-pixel steps are "still"; three add up to motion
    first = gate.pair(crops[0], 0.0)
    assert first.earlier is None and not first.still
    for k in (1, 2):
        pair = gate.pair(crops[k], 0.1 * k)
        assert pair.still and pair.earlier is crops[0] and pair.earlier_stamp_s == 0.0
    moved = gate.pair(crops[3], 0.3)
    assert not moved.still and moved.earlier is crops[0] and moved.earlier_stamp_s == 0.0
    assert gate.reference is crops[3]
    gate.threshold = 0.0  # off: every frame pairs with the one before
    pair = gate.pair(crops[3], 0.4)
    assert not pair.still and pair.earlier is crops[3]
    gate.reset()
    assert gate.pair(crops[4], 0.5).earlier is None
