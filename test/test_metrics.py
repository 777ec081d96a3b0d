"""Standard depth metrics against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from mono_depth_ros_training.metrics import (
    DEPTH_METRIC_NAMES,
    MetricAverager,
    batch_depth_metrics,
    crop_bounds,
    crop_mask,
    image_depth_metrics,
)


def test_metrics_without_scaling_ignore_invalid_and_capped_ground_truth():
    # The last two pixels have no usable ground truth: 0 (invalid) and 100 m (beyond the 80 m cap).
    gt = torch.tensor([1.0, 2.0, 4.0, 0.0, 100.0])
    pred = torch.tensor([2.0, 2.0, 2.0, 5.0, 5.0])
    metrics = image_depth_metrics(gt, pred, max_depth=80.0)
    # Kept: gt (1, 2, 4), pred (2, 2, 2); errors (-1, 0, 2); ratios max(gt/pred, pred/gt) = (2, 1, 2).
    assert metrics["abs_rel"] == pytest.approx((1 / 1 + 0 + 2 / 4) / 3)
    assert metrics["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4) / 3)
    assert metrics["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert metrics["rmse_log"] == pytest.approx(math.log(2) * math.sqrt(2 / 3))
    assert metrics["a1"] == pytest.approx(1 / 3)
    assert metrics["a2"] == pytest.approx(1 / 3)  # 2 > 1.25^2 = 1.5625
    assert metrics["a3"] == pytest.approx(1 / 3)  # 2 > 1.25^3 = 1.953
    assert metrics["scale"] == 1.0
    assert set(DEPTH_METRIC_NAMES) <= set(metrics)


def test_median_scaling_removes_a_global_scale():
    gt = torch.tensor([1.0, 2.0, 4.0])
    pred = torch.tensor([0.5, 1.0, 2.0])  # exactly half the truth
    metrics = image_depth_metrics(gt, pred, median_scaling=True)
    assert metrics["scale"] == pytest.approx(2.0)
    assert metrics["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["a1"] == 1.0
    unscaled = image_depth_metrics(gt, pred)
    assert unscaled["abs_rel"] == pytest.approx(0.5)


def test_median_of_an_even_count_averages_the_middle_values():
    gt = torch.tensor([1.0, 2.0, 3.0, 4.0])
    pred = torch.ones(4)
    metrics = image_depth_metrics(gt, pred, median_scaling=True)
    assert metrics["scale"] == pytest.approx(2.5)  # median(gt) = 2.5, median(pred) = 1
    assert metrics["abs_rel"] == pytest.approx((1.5 / 1 + 0.5 / 2 + 0.5 / 3 + 1.5 / 4) / 4)


def test_predictions_are_clamped_to_the_depth_range():
    metrics = image_depth_metrics(torch.tensor([70.0, 10.0]), torch.tensor([200.0, 1e-6]), min_depth=1e-3, max_depth=80.0)
    # 200 -> 80, 1e-6 -> 1e-3.
    assert metrics["abs_rel"] == pytest.approx((10 / 70 + (10 - 1e-3) / 10) / 2)


def test_no_valid_ground_truth_gives_none_and_batches_skip_such_images():
    assert image_depth_metrics(torch.zeros(3), torch.ones(3)) is None
    gt = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 2.0)])
    pred = torch.full((2, 1, 2, 2), 1.0)
    results = batch_depth_metrics(gt, pred)
    assert len(results) == 1
    assert results[0]["abs_rel"] == pytest.approx(0.5)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        image_depth_metrics(torch.ones(2, 2), torch.ones(4))


def test_averager_means_per_image_values():
    averager = MetricAverager()
    averager.add({"abs_rel": 0.1, "a1": 1.0})
    averager.add({"abs_rel": 0.3, "a1": 0.5})
    assert averager.mean() == pytest.approx({"abs_rel": 0.2, "a1": 0.75})
    assert MetricAverager().mean() == {}


# ---- evaluation crops ---------------------------------------------------------------------------
def test_garg_crop_bounds_on_a_kitti_sized_image():
    # 375 x 1242 (KITTI): rows int(0.40810811 * 375) = int(153.04) .. int(0.99189189 * 375) = int(371.96),
    # columns int(0.03594771 * 1242) = int(44.65) .. int(0.96405229 * 1242) = int(1197.35).
    assert crop_bounds(375, 1242, "garg") == (153, 371, 44, 1197)
    # Eigen: int(0.3324324 * 375) = int(124.66), int(0.91351351 * 375) = int(342.57), columns as Garg.
    assert crop_bounds(375, 1242, "eigen") == (124, 342, 44, 1197)
    assert crop_bounds(375, 1242, "none") == (0, 375, 0, 1242)
    mask = crop_mask(375, 1242, "garg")
    assert mask.sum() == (371 - 153) * (1197 - 44)
    assert mask[153, 44] and not mask[152, 44] and not mask[153, 43] and not mask[371, 100] and not mask[200, 1197]


def test_crop_keeps_only_ground_truth_inside_it():
    # 10 x 10, Garg: rows int(4.08) = 4 .. int(9.92) = 9, columns int(0.36) = 0 .. int(9.64) = 9: 5 x 9 = 45 pixels.
    gt = torch.full((10, 10), 2.0)
    pred = torch.full((10, 10), 4.0)  # wrong by 100 % outside the crop
    pred[4:9, 0:9] = 2.0  # right inside it
    cropped = image_depth_metrics(gt, pred, crop="garg")
    assert cropped["abs_rel"] == pytest.approx(0.0)
    assert cropped["a1"] == 1.0
    everything = image_depth_metrics(gt, pred, crop="none")
    assert everything["abs_rel"] == pytest.approx(55 / 100 * (2 / 2))
    # The crop applies to the last two dimensions of a (B, 1, H, W) batch as well.
    batch = batch_depth_metrics(gt[None, None].repeat(2, 1, 1, 1), pred[None, None].repeat(2, 1, 1, 1), crop="garg")
    assert [m["abs_rel"] for m in batch] == pytest.approx([0.0, 0.0])


def test_median_scaling_uses_only_capped_and_cropped_ground_truth():
    # 10 x 10, Garg crop rows 4..8, columns 0..8. Inside: gt 4 on the first crop row, 8 elsewhere, except one
    # pixel at 90 m (beyond the 80 m cap, excluded). Outside the crop: gt 1000 (would dominate any median).
    gt = torch.full((10, 10), 1000.0)
    gt[4:9, 0:9] = 8.0
    gt[4, 0:9] = 4.0
    gt[8, 8] = 90.0
    pred = torch.full((10, 10), 1.0)
    pred[4, 0:9] = 0.5
    metrics = image_depth_metrics(gt, pred, crop="garg", max_depth=80.0, median_scaling=True)
    # Kept: 9 pixels gt 4 / pred 0.5 and 35 pixels gt 8 / pred 1: median(gt) = 8, median(pred) = 1.
    assert metrics["scale"] == pytest.approx(8.0)
    assert metrics["abs_rel"] == pytest.approx(0.0)
    # Scaled predictions beyond the cap are clamped to it: 8 * 20 = 160 -> 80 against gt 8.
    pred[5, 3] = 20.0
    metrics = image_depth_metrics(gt, pred, crop="garg", max_depth=80.0, median_scaling=True)
    assert metrics["abs_rel"] == pytest.approx((80 - 8) / 8 / 44)


def test_unknown_crop_and_crop_without_image_shape_are_refused():
    with pytest.raises(ValueError, match="crop 'kitti' is not known; use one of garg, eigen, none"):
        image_depth_metrics(torch.ones(4, 4), torch.ones(4, 4), crop="kitti")
    with pytest.raises(ValueError, match=r"needs \(\.\.\., H, W\) images"):
        image_depth_metrics(torch.ones(4), torch.ones(4), crop="garg")


def test_numpy_arrays_are_accepted():
    metrics = image_depth_metrics(np.array([[1.0, 2.0]]), np.array([[2.0, 2.0]]))
    assert metrics["abs_rel"] == pytest.approx(0.5)
