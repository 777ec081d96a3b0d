"""evaluate: metrics over images, the no-learning baselines, and the command line on bags."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from mono_depth_ros.inference import DepthEstimator
from mono_depth_ros.model_file import ModelMetadata, load_model_file, save_model_file
from mono_depth_ros.bagio.messages import camera_info_message, depth_message, image_message
from mono_depth_ros.bagio.writer import BagEntry, make_typestore, write_bag
from mono_depth_ros.msgtypes import CAMERA_INFO_TYPE, IMAGE_TYPE
from mono_depth_ros.networks import DepthNet
from mono_depth_ros.simulation import write_synthetic_bag
from mono_depth_ros_training.evaluate import (
    EvaluationError,
    constant_depth,
    evaluate_bag,
    evaluate_predictions,
    ground_plane_depth,
    main,
)


# ---- metrics over several images ----------------------------------------------------------------
def test_evaluate_predictions_means_per_image_metrics_with_both_scalings():
    # Image 1: prediction half the truth everywhere. Image 2: exact except one pixel 2x too far.
    gt1, pred1 = np.array([[1.0, 2.0], [4.0, 8.0]]), np.array([[0.5, 1.0], [2.0, 4.0]])
    gt2, pred2 = np.array([[2.0, 2.0], [2.0, 4.0]]), np.array([[2.0, 2.0], [2.0, 8.0]])
    result = evaluate_predictions([gt1, gt2], [pred1, pred2], crop="none")
    assert result["frames"] == 2
    unscaled, scaled = result["unscaled"], result["median-scaled"]
    # Unscaled: image 1 abs_rel 0.5 (ratio 2 everywhere), image 2 abs_rel (4 / 4) / 4 = 0.25.
    assert unscaled["abs_rel"] == pytest.approx((0.5 + 0.25) / 2)
    # sq_rel: image 1 mean(d^2 / gt) = (0.25 / 1 + 1 / 2 + 4 / 4 + 16 / 8) / 4; image 2 (16 / 4) / 4.
    assert unscaled["sq_rel"] == pytest.approx(((0.25 + 0.5 + 1 + 2) / 4 + 1.0) / 2)
    assert unscaled["rmse"] == pytest.approx((math.sqrt((0.25 + 1 + 4 + 16) / 4) + math.sqrt(16 / 4)) / 2)
    assert unscaled["rmse_log"] == pytest.approx((math.log(2) + math.log(2) * math.sqrt(1 / 4)) / 2)
    assert unscaled["a1"] == pytest.approx((0.0 + 0.75) / 2)
    assert unscaled["a3"] == pytest.approx((0.0 + 0.75) / 2)  # ratio 2 > 1.25^3 = 1.953
    # Median-scaled: image 1 scale median(1, 2, 4, 8) / median(0.5, 1, 2, 4) = 3 / 1.5 = 2 -> exact;
    # image 2 scale median(2, 2, 2, 4) / median(2, 2, 2, 8) = 2 / 2 = 1 -> as unscaled.
    assert scaled["abs_rel"] == pytest.approx((0.0 + 0.25) / 2)
    assert scaled["a1"] == pytest.approx((1.0 + 0.75) / 2)
    assert scaled["scale_mean"] == pytest.approx(1.5)
    assert scaled["scale_std"] == pytest.approx(0.5)
    assert scaled["scale_median"] == pytest.approx(1.5)
    assert scaled["scale_std_over_median"] == pytest.approx(np.std([2 / 1.5, 1 / 1.5]))
    assert "scale_mean" not in unscaled


def test_images_without_ground_truth_are_not_counted():
    gt_empty = np.zeros((2, 2))
    gt = np.full((2, 2), 3.0)
    result = evaluate_predictions([gt_empty, gt], [np.ones((2, 2)), np.full((2, 2), 6.0)], crop="none")
    assert result["frames"] == 1
    assert result["unscaled"]["abs_rel"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_predictions([gt], [np.ones((3, 2))])


def test_constant_baseline_median_scaled_predicts_the_ground_truth_median():
    gt = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])  # 100 m: beyond the 80 m cap, not evaluated
    result = evaluate_predictions([gt], [constant_depth(2, 3, 10.0)], crop="none")
    # Evaluated gt 1..5, median 3: the scaled constant is 3 everywhere.
    assert result["median-scaled"]["scale_mean"] == pytest.approx(0.3)
    assert result["median-scaled"]["abs_rel"] == pytest.approx((2 / 1 + 1 / 2 + 0 + 1 / 4 + 2 / 5) / 5)
    assert result["unscaled"]["abs_rel"] == pytest.approx((9 / 1 + 8 / 2 + 7 / 3 + 6 / 4 + 5 / 5) / 5)


# ---- ground-plane baseline ----------------------------------------------------------------------
def test_ground_plane_depth_matches_projected_ground_points():
    fx, fy, cx, cy = 150.0, 200.0, 31.7, 40.0
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    camera_height = 1.5
    depth = ground_plane_depth(K, 200, 64, camera_height, max_depth=80.0)
    assert depth.shape == (200, 64) and depth.dtype == np.float32
    # Ground points (X, camera_height, Z) in the optical frame (y down) project to v = fy * h / Z + cy.
    for X, Z in [(-2.0, 3.0), (0.5, 7.5), (1.0, 10.0), (0.0, 30.0), (3.0, 6.0)]:
        u = fx * X / Z + cx
        v = fy * camera_height / Z + cy
        assert float(v).is_integer()
        column = int(np.clip(round(u), 0, 63))
        assert depth[int(v), column] == pytest.approx(Z, rel=1e-6)
    # At and above the horizon (v <= cy = 40), and where the floor is beyond the cap: the cap.
    assert np.all(depth[:41] == 80.0)
    assert depth[41, 0] == pytest.approx(80.0)  # 1.5 * 200 / 1 = 300 m -> 80
    assert depth[44, 5] == pytest.approx(75.0)  # 1.5 * 200 / 4
    with pytest.raises(ValueError, match="camera height must be > 0"):
        ground_plane_depth(K, 10, 10, 0.0)


def _ground_plane_bag(path, num_frames=3, width=96, height=64, gt_scale=2, camera_height=1.2):
    """A camera over a flat floor: ground truth (at 1/gt_scale resolution) from ray-plane intersection."""
    typestore = make_typestore()
    K = np.array([[80.0, 0.0, 47.3], [0.0, 90.0, 22.1], [0.0, 0.0, 1.0]])
    gt_h, gt_w = height // gt_scale, width // gt_scale
    # Ground-truth pixel (u', v') covers image coordinates centred on v = gt_scale * (v' + 0.5) - 0.5.
    v = gt_scale * (np.arange(gt_h) + 0.5) - 0.5
    u = gt_scale * (np.arange(gt_w) + 0.5) - 0.5
    rays = np.linalg.inv(K) @ np.stack(
        [np.tile(u, gt_h), np.repeat(v, gt_w), np.ones(gt_h * gt_w)]
    )  # (3, N) with z = 1
    with np.errstate(divide="ignore"):
        t = np.where(rays[1] > 0, camera_height / rays[1], 0.0)  # floor y = camera_height
    gt = (t * rays[2]).reshape(gt_h, gt_w).astype(np.float32)  # 0 (no ground truth) above the horizon
    rng = np.random.default_rng(0)
    entries = []
    for index in range(num_frames):
        stamp = 1_700_000_000_000_000_000 + index * 100_000_000
        rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        entries.append(BagEntry("/cam/image_raw", IMAGE_TYPE, stamp, image_message(typestore, rgb, stamp)))
        entries.append(BagEntry("/cam/camera_info", CAMERA_INFO_TYPE, stamp,
                                camera_info_message(typestore, K, width, height, stamp)))
        entries.append(BagEntry("/cam/depth", IMAGE_TYPE, stamp, depth_message(typestore, gt, stamp)))
    return write_bag(path, entries, typestore=typestore), gt


def test_ground_plane_baseline_is_exact_on_a_floor_bag_with_half_resolution_ground_truth(tmp_path):
    bag, gt = _ground_plane_bag(tmp_path / "floor", camera_height=1.2)
    assert (gt > 0).sum() > 100 and (gt >= 80).sum() > 0  # floor pixels, some beyond the cap
    report = evaluate_bag(bag, baselines=["ground-plane"], camera_height=1.2, crop="none")
    row = next(r for r in report["rows"] if r["method"] == "ground-plane" and r["proper"])
    assert row["scaling"] == "unscaled"
    assert row["frames"] == 3
    assert row["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert row["rmse"] == pytest.approx(0.0, abs=1e-4)
    assert row["a1"] == 1.0
    # A wrong height is off by exactly that factor: 0.6 m predicts half the depth (abs_rel 0.5).
    wrong = evaluate_bag(bag, baselines=["ground-plane"], camera_height=0.6, crop="none")["rows"]
    unscaled = next(r for r in wrong if r["scaling"] == "unscaled")
    median_scaled = next(r for r in wrong if r["scaling"] == "median-scaled")
    assert unscaled["abs_rel"] == pytest.approx(0.5, abs=1e-6)
    assert median_scaled["scale_mean"] == pytest.approx(2.0, rel=1e-5)
    assert median_scaled["abs_rel"] == pytest.approx(0.0, abs=1e-5)


# ---- the model on a synthetic bag ---------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_recording(tmp_path_factory):
    return write_synthetic_bag(
        tmp_path_factory.mktemp("evaluate") / "bag", num_frames=4, stereo=False, odometry=False,
        return_recording=True,
    )


def _monodepth2_reference(model_path, images, depths, max_depth=80.0, min_depth=1e-3):
    """Unscaled mean metrics computed as Monodepth2's evaluate_depth.py does, in NumPy (Garg crop)."""
    estimator = DepthEstimator(load_model_file(model_path), torch.device("cpu"))
    meta = estimator.metadata
    errors = []
    for rgb, gt in zip(images, depths):
        with torch.inference_mode():
            sigmoid = estimator.net(estimator.preprocess(rgb), output_scales=(0,))[0][0, 0].numpy()
        scaled_disparity = 1 / meta.max_depth + (1 / meta.min_depth - 1 / meta.max_depth) * sigmoid
        height, width = gt.shape
        pred = meta.depth_scale / cv2.resize(scaled_disparity, (width, height))
        mask = (gt > min_depth) & (gt < max_depth)
        crop = np.array([0.40810811 * height, 0.99189189 * height, 0.03594771 * width, 0.96405229 * width]).astype(int)
        crop_mask = np.zeros_like(mask)
        crop_mask[crop[0]:crop[1], crop[2]:crop[3]] = True
        mask &= crop_mask
        g, p = gt[mask].astype(np.float64), np.clip(pred[mask].astype(np.float64), min_depth, max_depth)
        thresh = np.maximum(g / p, p / g)
        errors.append([
            np.mean(np.abs(g - p) / g), np.mean((g - p) ** 2 / g), np.sqrt(np.mean((g - p) ** 2)),
            np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
            (thresh < 1.25).mean(), (thresh < 1.25 ** 2).mean(), (thresh < 1.25 ** 3).mean(),
        ])
    return dict(zip(("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"), np.mean(errors, axis=0)))


@pytest.mark.slow
def test_cli_writes_both_rows_as_json_and_prints_the_table(synthetic_recording, small_model_path, tmp_path, capsys):
    json_path = tmp_path / "out" / "metrics.json"
    code = main([
        "--bag", str(synthetic_recording.path), "--model", str(small_model_path), "--json", str(json_path),
        "--baseline", "constant", "--no-progress",
    ])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(json_path.read_text())
    assert report["protocol"]["max_depth"] == 80.0
    assert report["protocol"]["crop"] == "garg"
    assert report["protocol"]["crop_fractions"] == [0.40810811, 0.99189189, 0.03594771, 0.96405229]
    assert report["protocol"]["frames"] == 4
    rows = {(row["method"], row["scaling"]): row for row in report["rows"]}
    assert set(rows) == {
        ("model", "unscaled"), ("model", "median-scaled"), ("constant", "unscaled"), ("constant", "median-scaled"),
    }
    # The fixture's model is metric: its unscaled row is the proper one; the constant's is median-scaled.
    assert rows[("model", "unscaled")]["proper"] and not rows[("model", "median-scaled")]["proper"]
    assert rows[("constant", "median-scaled")]["proper"]
    reference = _monodepth2_reference(small_model_path, synthetic_recording.images, synthetic_recording.depths)
    for name, value in reference.items():
        assert rows[("model", "unscaled")][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert rows[("model", "median-scaled")]["scale_mean"] > 0
    # The table: a header with the metric labels, one line per row, the proper row starred.
    assert "δ<1.25" in printed and "δ<1.25³" in printed and "abs_rel" in printed
    model_line = next(line for line in printed.splitlines() if line.startswith("model") and "unscaled *" in line)
    assert f"{rows[('model', 'unscaled')]['abs_rel']:.3f}" in model_line
    assert "median scaling of model: ratio mean" in printed


def test_every_and_max_frames_select_frames(synthetic_recording):
    report = evaluate_bag(synthetic_recording.path, baselines=["constant"], every=2)
    assert report["protocol"]["frames"] == 2
    report = evaluate_bag(synthetic_recording.path, baselines=["constant"], max_frames=3)
    assert report["protocol"]["frames"] == 3


# ---- errors -------------------------------------------------------------------------------------
def test_missing_model_file_is_reported(synthetic_recording, tmp_path, capsys):
    code = main(["--bag", str(synthetic_recording.path), "--model", str(tmp_path / "none.safetensors"), "--no-progress"])
    assert code == 1
    assert "none.safetensors does not exist" in capsys.readouterr().err


def test_mismatched_model_file_is_reported(synthetic_recording, tmp_path, capsys, drop_large_outputs):
    path = tmp_path / "mismatched.safetensors"
    save_model_file(path, ModelMetadata(num_layers=34, input_width=128, input_height=64), DepthNet(18))
    code = main(["--bag", str(synthetic_recording.path), "--model", str(path), "--no-progress"])
    assert code == 1
    assert "do not match the architecture" in capsys.readouterr().err


def test_missing_image_topic_lists_the_image_topics(synthetic_recording, capsys):
    code = main(["--bag", str(synthetic_recording.path), "--baseline", "constant", "--image-topic", "/nope"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--image-topic /nope is not in bag" in err
    assert "/camera/image_raw [sensor_msgs/msg/Image" in err


def test_missing_depth_topic_is_reported(tmp_path, capsys):
    bag = write_synthetic_bag(tmp_path / "no_depth", num_frames=2, stereo=False, odometry=False, depth=False)
    code = main(["--bag", str(bag), "--baseline", "constant"])
    err = capsys.readouterr().err
    assert code == 1
    assert "has no ground-truth depth topic" in err and "/camera/image_raw" in err
    code = main(["--bag", str(bag), "--baseline", "constant", "--depth-topic", "/camera/depth"])
    assert code == 1
    assert "--depth-topic /camera/depth is not in bag" in capsys.readouterr().err


def test_bad_requests_are_refused(synthetic_recording):
    with pytest.raises(EvaluationError, match="needs --camera-height"):
        evaluate_bag(synthetic_recording.path, baselines=["ground-plane"])
    with pytest.raises(EvaluationError, match="nothing to evaluate"):
        evaluate_bag(synthetic_recording.path)
    with pytest.raises(EvaluationError, match="--every must be >= 1"):
        evaluate_bag(synthetic_recording.path, baselines=["constant"], every=0)


def test_non_metric_model_marks_its_median_scaled_row(synthetic_recording, tmp_path, drop_large_outputs):
    path = tmp_path / "relative.safetensors"
    torch.manual_seed(2)
    save_model_file(path, ModelMetadata(input_width=128, input_height=64, metric=False), DepthNet(18))
    report = evaluate_bag(synthetic_recording.path, model=path, max_frames=1)
    proper = [(row["scaling"], row["detail"]) for row in report["rows"] if row["proper"]]
    assert proper == [("median-scaled", "relative.safetensors, not metric")]


def test_a_stereo_bag_evaluates_its_left_camera_without_naming_it(tmp_path):
    # Both cameras have a CameraInfo; the right one says so through P[3] = -fx * baseline.
    bag = write_synthetic_bag(tmp_path / "stereo", num_frames=2, width=64, height=48, stereo=True, odometry=False)
    report = evaluate_bag(bag, baselines=["constant"], crop="none")
    assert report["protocol"]["image_topic"] == "/camera/image_raw"
    assert report["protocol"]["camera_info_topic"] == "/camera/camera_info"
    assert report["rows"][0]["frames"] == 2
