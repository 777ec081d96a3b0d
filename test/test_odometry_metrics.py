"""mono_depth_ros_training.odometry_metrics: known trajectories in, known errors out."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mono_depth_ros.geometry.rotations import angle_between_deg, rotation_angle_deg
from mono_depth_ros_training.odometry_metrics import compare_odometry, predict_motions, relative_motion


def yaw_pose(x: float, y: float, yaw_deg: float) -> np.ndarray:
    """T_odom_optical of a camera at (x, y) on the ground, optical axis yawed left by yaw_deg from odom +x."""
    R_body_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    R_odom_body = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = R_odom_body @ R_body_optical
    T[:3, 3] = (x, y, 1.5)
    return T


def drive(steps=(0.5, 0.5, 0.0, 0.5, 0.5), yaw_per_step_deg=2.0):
    """A camera driving forward along odom +x, turning left a little each step; one pair stands still."""
    poses, x, y, yaw = [yaw_pose(0.0, 0.0, 0.0)], 0.0, 0.0, 0.0
    for step in steps:
        if step:
            yaw += yaw_per_step_deg
        x += step * math.cos(math.radians(yaw))
        y += step * math.sin(math.radians(yaw))
        poses.append(yaw_pose(x, y, yaw))
    return poses


def true_motions(poses):
    return [relative_motion(a, b) for a, b in zip(poses[:-1], poses[1:])]


def test_forward_motion_is_minus_z_in_the_later_camera():
    T = relative_motion(yaw_pose(0, 0, 0), yaw_pose(1.0, 0, 0))
    np.testing.assert_allclose(T[:3, 3], [0.0, 0.0, -1.0], atol=1e-12)
    assert rotation_angle_deg(relative_motion(yaw_pose(0, 0, 0), yaw_pose(0, 0, 30.0))[:3, :3]) == pytest.approx(30.0)
    assert angle_between_deg(np.array([1.0, 0, 0]), np.array([1.0, 1.0, 0])) == pytest.approx(45.0)


def test_exact_motions_have_no_error_and_no_drift():
    poses = drive()
    errors = compare_odometry(true_motions(poses), poses)
    assert errors.translation_m.max() < 1e-12 and errors.rotation_deg.max() < 1e-5
    np.testing.assert_allclose(errors.scale, 1.0, atol=1e-12)
    assert errors.direction_deg.max() < 1e-5 and errors.travel_direction_deg < 1e-5
    assert errors.end_error_m < 1e-12 and errors.drift < 1e-12
    assert errors.distance_m == pytest.approx(2.0)
    assert len(errors.scale) == 4 and len(errors.stopped_step_m) == 1 and errors.stopped_step_m[0] < 1e-12  # stood still


def test_scaled_translations_show_as_scale_and_drift_but_not_as_direction():
    poses = drive(yaw_per_step_deg=0.0)  # straight: chaining a 1.5x scale ends 1.5x as far
    motions = true_motions(poses)
    for T in motions:
        T[:3, 3] *= 1.5
    errors = compare_odometry(motions, poses)
    np.testing.assert_allclose(errors.scale, 1.5, atol=1e-12)
    assert errors.direction_deg.max() < 1e-5
    assert errors.end_error_m == pytest.approx(1.0)  # 2 m travelled, 3 m predicted
    assert errors.drift == pytest.approx(0.5)


def test_a_sideways_prediction_is_ninety_degrees_off_and_a_reversed_one_180():
    poses = drive(steps=(1.0, 1.0), yaw_per_step_deg=0.0)
    sideways = [np.eye(4), np.eye(4)]
    for T in sideways:
        T[:3, 3] = (1.0, 0.0, 0.0)  # optical +x: to the right instead of forward
    errors = compare_odometry(sideways, poses)
    np.testing.assert_allclose(errors.direction_deg, 90.0, atol=1e-9)
    assert errors.travel_direction_deg == pytest.approx(90.0)
    reversed_motions = [np.linalg.inv(T) for T in true_motions(poses)]
    assert compare_odometry(reversed_motions, poses).travel_direction_deg == pytest.approx(180.0)


def test_predict_motions_scales_translation_only():
    calls = []

    def relative_pose(earlier, later):
        calls.append((earlier, later))
        T = np.eye(4)
        T[:3, :3] = relative_motion(yaw_pose(0, 0, 0), yaw_pose(0, 0, 10.0))[:3, :3]
        T[:3, 3] = (0.0, 0.0, -0.2)
        return T

    motions = predict_motions(relative_pose, ["a", "b", "c"], translation_scale=5.0)
    assert calls == [("a", "b"), ("b", "c")]
    np.testing.assert_allclose(motions[0][:3, 3], [0.0, 0.0, -1.0])
    assert rotation_angle_deg(motions[1][:3, :3]) == pytest.approx(10.0)


def test_compare_needs_one_motion_per_pair():
    with pytest.raises(ValueError, match="one per frame pair"):
        compare_odometry([np.eye(4)], drive())


def test_predict_motions_with_a_still_gate_reports_no_motion_while_the_image_stands():
    import torch

    from mono_depth_ros.visual_odometry import StillGate

    still, moved = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    inputs = [still, still, still, moved]
    calls = []

    def relative_pose(earlier, later):
        calls.append((earlier, later))
        T = np.eye(4)
        T[2, 3] = -1.0
        return T

    motions = predict_motions(relative_pose, inputs, 2.0, still_gate=StillGate(0.01))
    assert [m[2, 3] for m in motions] == [0.0, 0.0, -2.0]
    assert len(calls) == 1 and calls[0][0] is still and calls[0][1] is moved
