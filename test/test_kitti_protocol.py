"""The KITTI Eigen split: the frame lists (package data) and the benchmark's protocol, on hand-made
ground truth and predictions whose metrics are known exactly."""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mono_depth_ros_training.kitti import (
    STEREO_SCALE_FACTOR,
    SplitFrame,
    eigen_errors,
    format_eigen_table,
    read_split,
    split_drives,
)
from mono_depth_ros_training.kitti.protocol import resize_prediction
from mono_depth_ros_training.kitti.splits import parse_split_line
from mono_depth_ros_training.metrics import DEPTH_METRIC_NAMES

KITTI_H, KITTI_W = 375, 1242
# Garg crop on 375x1242, by hand: rows int(0.40810811 * 375) = int(153.04) = 153 to int(371.96) = 371
# (excluded), columns int(44.65) = 44 to int(1197.35) = 1197 (excluded): 218 rows x 1153 columns.
GARG_ROWS, GARG_COLS = (153, 371), (44, 1197)
GARG_PIXELS = 218 * 1153


def kitti_gt(depth: float = 10.0) -> np.ndarray:
    return np.full((KITTI_H, KITTI_W), depth)


def assert_perfect(metrics):
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log"):
        assert metrics[name] == pytest.approx(0.0, abs=1e-12), name
    for name in ("a1", "a2", "a3"):
        assert metrics[name] == 1.0, name


# ---- the protocol -------------------------------------------------------------------------------
def test_prediction_equal_to_ground_truth_has_no_error():
    rng = np.random.default_rng(0)
    gts = [rng.uniform(1.0, 79.0, (KITTI_H, KITTI_W)) for _ in range(3)]
    metrics = eigen_errors(gts, [gt.copy() for gt in gts], median_scaling=False)
    assert_perfect(metrics)
    assert metrics["frames"] == 3
    assert "ratio_mean" not in metrics
    assert list(metrics)[:7] == list(DEPTH_METRIC_NAMES)  # the papers' order


def test_twice_the_ground_truth_median_scaled_back_and_unscaled():
    gt = kitti_gt(10.0)
    scaled = eigen_errors([gt, gt], [2 * gt, 2 * gt], median_scaling=True)
    assert_perfect(scaled)
    assert scaled["ratio_mean"] == pytest.approx(0.5) and scaled["ratio_std"] == pytest.approx(0.0)
    assert scaled["ratio_median"] == pytest.approx(0.5)
    unscaled = eigen_errors([gt], [2 * gt], median_scaling=False)
    assert unscaled["abs_rel"] == pytest.approx(1.0)
    assert unscaled["sq_rel"] == pytest.approx(10.0)  # (20 - 10)^2 / 10
    assert unscaled["rmse"] == pytest.approx(10.0)
    assert unscaled["rmse_log"] == pytest.approx(math.log(2.0))
    assert (unscaled["a1"], unscaled["a2"], unscaled["a3"]) == (0.0, 0.0, 0.0)  # 2 > 1.25^3 = 1.95


def test_ratio_mean_and_std_over_images():
    gt = kitti_gt(10.0)
    metrics = eigen_errors([gt, gt], [gt / 2, gt / 4], median_scaling=True)  # ratios 2 and 4
    assert metrics["ratio_mean"] == pytest.approx(3.0) and metrics["ratio_std"] == pytest.approx(1.0)
    assert metrics["ratio_median"] == pytest.approx(3.0)
    assert metrics["ratio_std_over_median"] == pytest.approx(1.0 / 3.0)
    assert_perfect(metrics)


def test_garg_crop_keeps_exactly_the_pixels_counted_by_hand():
    gt = kitti_gt(10.0)
    pred = gt.copy()
    top, bottom = GARG_ROWS
    left, right = GARG_COLS
    # Wrong predictions everywhere outside the crop are ignored.
    outside = np.ones_like(gt, dtype=bool)
    outside[top:bottom, left:right] = False
    pred[outside] = 1000.0
    assert_perfect(eigen_errors([gt], [pred], median_scaling=False))
    # One wrong pixel (twice the depth) on each corner of the crop counts: abs_rel = 4 / pixels kept.
    for row, col in ((top, left), (top, right - 1), (bottom - 1, left), (bottom - 1, right - 1)):
        pred[row, col] = 20.0
    metrics = eigen_errors([gt], [pred], median_scaling=False)
    assert metrics["abs_rel"] == pytest.approx(4 / GARG_PIXELS, rel=1e-12)
    assert metrics["a1"] == pytest.approx(1 - 4 / GARG_PIXELS, rel=1e-12)
    # Without the crop, every pixel counts.
    everything = eigen_errors([gt], [pred], median_scaling=False, crop="none")
    assert everything["abs_rel"] > 1.0


def test_ground_truth_out_of_range_is_ignored():
    gt = kitti_gt(10.0)
    pred = gt.copy()
    rows = slice(200, 210)
    for columns, value in ((slice(100, 200), 100.0),  # beyond 80 m
                           (slice(300, 400), 1e-4),  # below 1e-3
                           (slice(500, 600), 0.0),  # no lidar return
                           (slice(700, 800), np.nan),
                           (slice(900, 950), 80.0)):  # the cap itself is excluded (gt < 80)
        gt[rows, columns] = value
        pred[rows, columns] = 3.0  # wrong there, but ignored
    assert_perfect(eigen_errors([gt], [pred], median_scaling=False))


def test_predictions_are_clipped_to_80_after_scaling():
    gt = np.full((4, 4), 40.0)
    pred = gt.copy()
    pred[:2] = 200.0  # clipped to 80: |80 - 40| / 40 = 1 on half the pixels
    metrics = eigen_errors([gt], [pred], median_scaling=False, crop="none")
    assert metrics["abs_rel"] == pytest.approx(0.5)
    assert metrics["rmse"] == pytest.approx(math.sqrt(40.0 ** 2 / 2))
    tiny = eigen_errors([gt], [np.full((4, 4), 1e-9)], median_scaling=False, crop="none")
    assert tiny["abs_rel"] == pytest.approx(abs(1e-3 - 40.0) / 40.0)  # clipped up to 1e-3


def test_stereo_factor_multiplies_before_clipping():
    assert STEREO_SCALE_FACTOR == 5.4
    gt = np.full((2, 2), 54.0)
    exact = eigen_errors([gt], [np.full((2, 2), 10.0)], median_scaling=False, fixed_scale=STEREO_SCALE_FACTOR,
                         crop="none")
    assert_perfect(exact)  # 10 * 5.4 = 54
    far = eigen_errors([gt], [np.full((2, 2), 20.0)], median_scaling=False, fixed_scale=STEREO_SCALE_FACTOR,
                       crop="none")
    assert far["abs_rel"] == pytest.approx((80.0 - 54.0) / 54.0)  # 108 clipped to 80, not 20 * 5.4 = 108 kept


def test_fixed_scale_comes_before_the_median_ratio():
    gt = kitti_gt(10.0)
    metrics = eigen_errors([gt], [gt], median_scaling=True, fixed_scale=2.0)
    assert metrics["ratio_mean"] == pytest.approx(0.5)
    assert_perfect(metrics)


def test_prediction_is_resized_to_the_ground_truth_as_disparity():
    # cv2.resize INTER_LINEAR, 1x2 -> 1x4: sources x = -0.25 (edge), 0.25, 0.75, 1.25 (edge) of disparities 1, 1/4.
    resized = resize_prediction(np.array([[1.0, 4.0]]), 1, 4)
    np.testing.assert_allclose(1.0 / resized, [[1.0, 0.8125, 0.4375, 0.25]], rtol=1e-6)
    gt = kitti_gt(10.0)
    assert_perfect(eigen_errors([gt], [np.full((192, 640), 10.0)], median_scaling=False))


def test_images_of_different_sizes_and_bad_input():
    gts = [kitti_gt(10.0), np.full((370, 1224), 20.0)]
    assert_perfect(eigen_errors(gts, [np.full((192, 640), 5.0), np.full((192, 640), 1.0)], median_scaling=True))
    with pytest.raises(ValueError, match="2 ground-truth maps but 1 predictions"):
        eigen_errors(gts, gts[:1], median_scaling=False)
    with pytest.raises(ValueError, match="image 0: no ground truth"):
        eigen_errors([np.zeros((KITTI_H, KITTI_W))], [kitti_gt()], median_scaling=False)
    with pytest.raises(ValueError, match="crop"):
        eigen_errors(gts, gts, median_scaling=False, crop="kitti")


def test_table_as_papers_print_it():
    metrics = dict(abs_rel=0.11549, sq_rel=0.9031, rmse=4.863, rmse_log=0.1933, a1=0.8771, a2=0.9591, a3=0.9813)
    lines = format_eigen_table(metrics).splitlines()
    assert [cell.strip() for cell in lines[0].split("|")] == list(DEPTH_METRIC_NAMES)
    assert [cell.strip() for cell in lines[1].split("|")] == ["0.115", "0.903", "4.863", "0.193", "0.877", "0.959",
                                                               "0.981"]
    assert len(lines) == 2
    scaled = format_eigen_table(dict(metrics, ratio_mean=31.2, ratio_std=2.5, ratio_median=31.0,
                                     ratio_std_over_median=0.08))
    assert "mean 31.200 std 2.500" in scaled


# ---- the split lists ----------------------------------------------------------------------------
def test_eigen_test_split_has_697_frames_of_28_drives():
    frames = read_split("eigen_test")
    assert len(frames) == 697
    assert len(split_drives("eigen_test")) == 28
    assert frames[0] == SplitFrame("2011_09_26/2011_09_26_drive_0002_sync", 69, "l")
    assert {frame.side for frame in frames} == {"l"}


def test_no_test_drive_is_in_the_training_or_validation_split():
    test_drives = split_drives("eigen_test")
    train = read_split("eigen_zhou_train")
    val = read_split("eigen_zhou_val")
    assert len(train) == 39810 and len(val) == 4424
    assert not test_drives & {frame.drive for frame in train}
    assert not test_drives & {frame.drive for frame in val}


def test_split_lines_parse():
    assert parse_split_line("2011_09_26/2011_09_26_drive_0022_sync 473 r\n") == SplitFrame(
        "2011_09_26/2011_09_26_drive_0022_sync", 473, "r")
    frame = parse_split_line("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l")
    assert frame.frame == 69 and frame.date == "2011_09_26"
    assert frame.image_path() == "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png"
    for bad in ("2011_09_26/2011_09_26_drive_0002_sync 69", "2011_09_26/x 69 c", "drive 69 l", "a/b x l"):
        with pytest.raises(ValueError):
            parse_split_line(bad)
    with pytest.raises(ValueError, match="not known"):
        read_split("eigen_full")


def test_split_files_are_package_data():
    splits = resources.files("mono_depth_ros_training.kitti") / "splits"
    names = {entry.name for entry in splits.iterdir()}
    assert {"eigen_test.txt", "eigen_zhou_train.txt.gz", "eigen_zhou_val.txt"} <= names
    setup_py = (Path(__file__).resolve().parents[1] / "setup.py").read_text(encoding="utf-8")
    assert '"splits/*.txt", "splits/*.txt.gz"' in setup_py
