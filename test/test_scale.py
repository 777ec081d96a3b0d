"""mono_depth_ros_training.scale and .health: the derived start, the held-out scale check and the collapse
detector, on rendered scenes with exact depth and poses (known geometry in, known answer out)."""
import math

import numpy as np
import pytest
import torch

from mono_depth_ros.geometry import disparity_to_depth, invert_transform
from mono_depth_ros.networks import DepthNet
from mono_depth_ros.simulation import render_recording
from mono_depth_ros_training.health import (
    CONSTANT_LOG_STD,
    HealthReading,
    TrainingHealth,
    depth_statistics,
    describe_problems,
)
from mono_depth_ros_training.scale import (
    INITIAL_DISPARITY_FRACTION,
    METRIC_TOLERANCE,
    SCALE_FACTORS,
    ScaleCheck,
    check_scale,
    derive_initial_depth,
    nominal_initial_depth,
    nominal_step,
    scale_sweep,
    scale_verdict,
    translation_at_distance,
)
from mono_depth_ros_training.trainer import initialise_disparity_heads

BASELINE = 0.3


@pytest.fixture(scope="module")
def street():
    return render_recording(num_frames=10, width=160, height=96, stereo=True, baseline_m=BASELINE, seed=2,
                            scene="street", speed_mps=8.0, stop_frames=0)


def _images(recording, which="images"):
    return torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 for image in getattr(recording, which)])


def _stereo_inputs(recording, frames):
    left, right = _images(recording)[frames], _images(recording, "right_images")[frames]
    depth = torch.from_numpy(np.stack([recording.depths[i] for i in frames]))[:, None].float()
    depth = torch.nan_to_num(depth, posinf=1000.0).clamp(max=1000.0)  # sky: far away
    K = torch.tensor(recording.K, dtype=torch.float32).expand(len(frames), 3, 3)
    T = torch.eye(4).repeat(len(frames), 1, 1)
    T[:, 0, 3] = -BASELINE  # left (target) -> right camera
    return depth, left, right, K, T


# --------------------------------------------------------------------------- derived start


@pytest.mark.parametrize("baseline", [0.05, 0.12, 0.3, 0.6])
@pytest.mark.parametrize("width, fx_ratio", [(192, 0.7), (640, 0.5), (1280, 1.2)])
def test_the_derived_start_puts_the_first_stereo_disparity_inside_the_image(baseline, width, fx_ratio):
    height = 64 if width < 640 else 192
    depth_m = derive_initial_depth(fx_ratio, baseline_m=baseline)
    torch.manual_seed(0)
    net = DepthNet(encoder="efficientnet_lite0").eval()
    initialise_disparity_heads(net, depth_m, 0.1, 100.0)
    with torch.no_grad():
        sigmoid = net(torch.rand(1, 3, height, width), output_scales=[0])[0]
    _, depth = disparity_to_depth(sigmoid, 0.1, 100.0)
    disparity_px = fx_ratio * width * baseline / depth
    # Inside the image everywhere, and a visible shift (not the zero-disparity start either).
    assert float(disparity_px.max()) < 0.5 * width
    assert float(disparity_px.median()) == pytest.approx(INITIAL_DISPARITY_FRACTION * width, rel=0.5)
    assert float(disparity_px.median()) > 1.0


def test_the_derived_start_prefers_the_baseline_then_odometry_and_stays_in_range():
    assert derive_initial_depth(0.7, baseline_m=0.54) == pytest.approx(0.7 * 0.54 / INITIAL_DISPARITY_FRACTION)
    assert derive_initial_depth(0.7, baseline_m=0.54, step_m=0.1) == derive_initial_depth(0.7, baseline_m=0.54)
    assert derive_initial_depth(0.7, step_m=0.1) == pytest.approx(0.7 * 0.1 / INITIAL_DISPARITY_FRACTION)
    assert derive_initial_depth(0.7) is None and derive_initial_depth(0.7, step_m=float("nan")) is None
    assert derive_initial_depth(0.7, baseline_m=100.0, max_depth=80.0) == 40.0  # max_depth / 2
    assert derive_initial_depth(0.7, baseline_m=0.001, min_depth=0.1) == pytest.approx(0.2)  # 2 * min_depth


@pytest.mark.parametrize("fx_ratio", [0.35, 0.7, 1.2])
def test_the_nominal_step_moves_a_point_at_the_start_depth_by_the_derived_share_of_the_width(fx_ratio):
    start = nominal_initial_depth(0.1, 100.0)
    assert start == pytest.approx(10.0)
    step = nominal_step(fx_ratio, start)
    width = 640
    # A point at the start depth, seen from a camera that moved `step` sideways, shifts fx * step / depth pixels.
    assert fx_ratio * width * step / start == pytest.approx(INITIAL_DISPARITY_FRACTION * width)
    # It is derive_initial_depth's rule solved for the step: the two agree.
    assert derive_initial_depth(fx_ratio, step_m=step) == pytest.approx(start)
    assert nominal_initial_depth(0.1, 10.0) == pytest.approx(1.0)
    assert nominal_initial_depth(1.0, 10.0) == pytest.approx(2.0)  # never below 2 * min_depth
    with pytest.raises(ValueError):
        nominal_step(0.0, start)


def test_translation_at_distance_keeps_the_direction_and_takes_the_odometry_length():
    translation = torch.tensor([[0.0, 0.0, -0.02], [0.003, 0.0, 0.004], [0.01, 0.0, 0.0]], requires_grad=True)
    distance = torch.tensor([1.5, 0.5, float("nan")])
    scaled = translation_at_distance(translation, distance)
    assert torch.allclose(scaled[0], torch.tensor([0.0, 0.0, -1.5]))
    assert torch.allclose(scaled[1], torch.tensor([0.3, 0.0, 0.4]))
    assert torch.equal(scaled[2], translation[2])  # unknown distance: as predicted
    scaled[:2].sum().backward()
    # Only the direction is learned through the rescaling: moving along t changes nothing.
    assert float((translation.grad[1] * translation[1].detach()).sum()) == pytest.approx(0.0, abs=1e-5)


# --------------------------------------------------------------------------- scale check


def test_the_true_depth_passes_the_stereo_scale_check_and_wrong_scales_fail(street):
    frames = list(range(1, 9))
    depth, left, right, K, T = _stereo_inputs(street, frames)
    errors = scale_sweep(depth, left, [right], [T], K)
    assert errors.shape == (len(SCALE_FACTORS), len(frames))
    exact = check_scale(errors, "stereo baseline")
    assert exact.passed, exact.reason
    assert exact.ratio == pytest.approx(1.0, abs=0.06) and exact.spread < 0.1
    for wrong, expected in ((0.5, 2.0), (1.4, 1 / 1.4), (0.75, 1 / 0.75)):  # e.g. a halved baseline: 2x
        check = check_scale(scale_sweep(depth * wrong, left, [right], [T], K), "stereo baseline")
        assert not check.passed and check.conclusive and check.reason  # decided: the scale is wrong
        if expected < SCALE_FACTORS[-1]:
            assert check.ratio == pytest.approx(expected, rel=0.08)
    assert abs(1 / 0.75 - 1) > METRIC_TOLERANCE  # (0.75 is outside the tolerance)
    flat = check_scale(scale_sweep(torch.full_like(depth, 0.1), left, [right], [T], K), "stereo baseline")
    assert not flat.passed  # a collapsed model (depth at min_depth) is never metric


@pytest.mark.slow
def test_odometry_scale_check_with_known_motion_and_a_threefold_odometry_error(street):
    frames = list(range(1, 9))
    depth, left, _, K, _ = _stereo_inputs(street, frames)
    images = _images(street)
    poses = [torch.tensor(pose, dtype=torch.float32) for pose in street.poses]  # T_odom_optical
    T_prev = torch.stack([invert_transform(poses[i - 1][None])[0] @ poses[i] for i in frames])  # target -> prev
    T_next = torch.stack([invert_transform(poses[i + 1][None])[0] @ poses[i] for i in frames])
    sources = [images[[i - 1 for i in frames]], images[[i + 1 for i in frames]]]
    exact = check_scale(scale_sweep(depth, left, sources, [T_prev, T_next], K), "odometry")
    assert exact.passed, exact.reason
    assert exact.ratio == pytest.approx(1.0, abs=0.06)
    # Odometry three times too long, so the poses are: the depth looks 3x short, which the check refuses.
    tripled = [T.clone() for T in (T_prev, T_next)]
    for T in tripled:
        T[:, :3, 3] *= 3.0
    check = check_scale(scale_sweep(depth, left, sources, tripled, K), "odometry")
    assert not check.passed and check.conclusive and check.ratio > 1.8
    # A camera that barely moved (2 % of the motion; the neighbours are the same image) cannot tell
    # 0.8x from 1x: inconclusive, neither passed nor failed.
    crawling = [T.clone() for T in (T_prev, T_next)]
    for T in crawling:
        T[:, :3, 3] *= 0.02
    check = check_scale(scale_sweep(depth, left, [left, left], crawling, K), "odometry")
    assert not check.passed and not check.conclusive and check.reason


def _check(source: str, passed: bool, conclusive: bool) -> ScaleCheck:
    return ScaleCheck(source=source, ratios=[1.0] * 5, passed=passed, conclusive=conclusive,
                      reason="" if passed else f"{source} said no")


def test_the_verdict_needs_one_passed_check_and_no_conclusive_failure():
    stereo_ok, odometry_ok = _check("stereo baseline", True, True), _check("odometry", True, True)
    odometry_unsure = _check("odometry", False, False)
    odometry_wrong = _check("odometry", False, True)
    assert scale_verdict([stereo_ok]) == ""
    assert scale_verdict([stereo_ok, odometry_ok]) == ""
    assert scale_verdict([stereo_ok, odometry_unsure]) == ""  # stereo alone verified it
    assert "odometry said no" in scale_verdict([stereo_ok, odometry_wrong])  # the two sources disagree
    assert "odometry said no" in scale_verdict([odometry_unsure])  # nothing verified the scale
    assert scale_verdict([_check("stereo baseline", False, False), odometry_unsure]).count("said no") == 2
    assert scale_verdict([]) != ""


def test_too_few_samples_decide_nothing():
    errors = torch.rand(len(SCALE_FACTORS), 2)
    check = check_scale(errors, "stereo baseline")
    assert not check.passed and "only 2" in check.reason and check.samples == 0
    assert math.isnan(check.ratio)


# --------------------------------------------------------------------------- collapse detector


def test_depth_statistics_on_known_depth_maps():
    constant = torch.full((2, 1, 8, 8), 7.0)
    saturated, log_std = depth_statistics(constant, 0.1, 100.0)
    assert float(saturated) == 0.0 and float(log_std) == pytest.approx(0.0, abs=1e-6)
    at_bound = torch.full((2, 1, 8, 8), 0.1)
    at_bound[:, :, :2] = 5.0  # a quarter of the pixels away from the bound
    saturated, _ = depth_statistics(at_bound, 0.1, 100.0)
    assert float(saturated) == pytest.approx(0.75)
    ramp = torch.logspace(0, 1, 8).reshape(1, 1, 1, 8).expand(1, 1, 8, 8)  # 1 .. 10 m
    _, log_std = depth_statistics(ramp, 0.1, 100.0)
    assert float(log_std) == pytest.approx(float(torch.log(ramp).std()), rel=1e-5)


def test_the_collapse_detector_fires_on_degenerate_readings_and_stays_quiet_on_a_sane_one():
    sane = HealthReading(saturated=0.02, log_depth_std=0.6, reprojection=0.10, identity=0.16)
    assert describe_problems(sane, 0.1, 100.0) == []
    at_min = describe_problems(HealthReading(0.97, 0.01, 0.30, 0.26), 0.1, 100.0)
    assert len(at_min) == 3 and "saturated" in at_min[0] and "constant" in at_min[1] and "no better" in at_min[2]
    assert describe_problems(HealthReading(0.0, CONSTANT_LOG_STD / 2, 0.1, 0.2), 0.1, 100.0)[0].startswith("depth is nearly")

    health = TrainingHealth(0.1, 100.0, window=4)
    keys = TrainingHealth.KEYS
    for _ in range(3):
        health.add(dict(zip(keys, (1.0, 0.0, 0.3, 0.2))))
    assert health.problems() == []  # no verdict before a full window
    health.add(dict(zip(keys, (1.0, 0.0, 0.3, 0.2))))
    assert len(health.problems()) == 3
    for _ in range(4):  # recovers: the window forgets
        health.add(dict(zip(keys, (0.0, 0.5, 0.1, 0.2))))
    assert health.problems() == []
    assert health.scalars()["identity_ratio"] == pytest.approx(0.5)
