"""A pose network trained on a rendered drive gives the direction of travel and metric scale.

The real trainer (config/train_demo.yaml's recipe, mode mono: the drive's /odom supervises the
step length, so the model is metric) learns 400 steps at 96x64 on a street drive (about 2 minutes
on 2 CPU cores); the model's pose network then runs frame to frame over a held-out drive down
another street, chained by VisualOdometry as depth_node chains it, and is compared with the true
poses. The tolerances are wide on purpose: at this budget the network has learned the drive's
typical step (measured: direction error ~9 deg, scale ~1.4-1.6 per frame, still ~0.5 m per frame
while the car stands; docs/node.md, "Visual odometry"). What the test guards is what a user relies on:
forward is forward, in metres, not a random or unit-less output. benchmarks/bench_odometry.py
measures the errors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mono_depth_ros.inference import DepthEstimator
from mono_depth_ros.model_file import load_model_file
from mono_depth_ros.geometry.rotations import R_BODY_OPTICAL, angle_between_deg
from mono_depth_ros.visual_odometry import PoseRunner, VisualOdometry
from mono_depth_ros import simulation as synthetic
from mono_depth_ros_training.config import load_config
from mono_depth_ros_training.odometry_metrics import compare_odometry, predict_motions
from mono_depth_ros_training.run import train

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, RATE_HZ, SPEED_MPS = 96, 64, 10.0, 5.0


def render(path: Path, frames: int, seed: int):
    return synthetic.write_synthetic_bag(
        path, num_frames=frames, width=WIDTH, height=HEIGHT, rate_hz=RATE_HZ, speed_mps=SPEED_MPS,
        scene="street", seed=seed, baseline_m=0.25, return_recording=True,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, held-out recording) after 400 steps of mono training with odometry supervision."""
    out = tmp_path_factory.mktemp("odometry_trained")
    render(out / "train_drive", 200, seed=0)
    config = load_config(ROOT / "config" / "train_demo.yaml", [
        "mode=mono", "optim.max_steps=400", f"data.width={WIDTH}", f"data.height={HEIGHT}",
        f"data.cache_dir={out / 'cache'}", "log.image_every=0", "device=cpu",
    ])
    result = train(config, out / "run", [str(out / "train_drive")], log=lambda text: None)
    return load_model_file(result.model_path), render(out / "heldout_drive", 60, seed=1)


@pytest.fixture(scope="module")
def predicted(trained):
    model, heldout = trained
    estimator = DepthEstimator(model, torch.device("cpu"))
    runner = PoseRunner(model.pose_net, torch.device("cpu"))
    inputs = [estimator.preprocess(rgb) for rgb in heldout.images]
    return predict_motions(runner.relative_pose, inputs, model.metadata.depth_scale)


def test_the_trained_model_has_a_pose_network_and_an_honest_label(trained):
    model, _ = trained
    assert model.metadata.has_pose and model.pose_net is not None
    # The label is the trainer's held-out odometry scale check, recorded beside it.
    checks = model.metadata.training["scale_checks"]
    assert [check["source"] for check in checks] == ["odometry"]
    assert model.metadata.metric is (checks[0]["passed"] and model.metadata.training["converged"])


def test_each_step_points_the_way_the_camera_moved_at_about_the_true_length(trained, predicted):
    _, heldout = trained
    errors = compare_odometry(predicted, heldout.poses)
    assert len(errors.direction_deg) >= 40  # the held-out drive moves in most frames
    assert np.median(errors.direction_deg) < 25.0, errors.direction_deg
    assert 0.5 < np.median(errors.scale) < 2.0, errors.scale  # metres, not network units (~0.01x) or random
    assert np.median(errors.rotation_deg) < 3.0, errors.rotation_deg  # the drive yaws only a few degrees


def test_chained_odometry_moves_forward_in_the_odom_frame(trained, predicted):
    """VisualOdometry (depth_node's chaining): odom is the camera body frame at the first frame, so a
    camera driving forward ends at +x, as far as it really went within a factor of two."""
    _, heldout = trained
    odometry = VisualOdometry(translation_scale=1.0)
    for T in predicted:
        estimate = odometry.update(T, 1.0 / RATE_HZ)
    position = estimate.T_odom_camera[:3, 3]
    true_optical = (np.linalg.inv(heldout.poses[0]) @ heldout.poses[-1])[:3, 3]
    true_body = R_BODY_OPTICAL @ true_optical  # the first camera's body frame: x forward, y left, z up
    assert true_body[0] > 5.0  # the drive itself goes forward
    assert angle_between_deg(position, true_body) < 30.0, (position, true_body)
    assert 0.5 * true_body[0] < position[0] < 2.0 * true_body[0], (position, true_body)
