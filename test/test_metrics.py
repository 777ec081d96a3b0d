"""Standard depth metrics against hand-computed values."""
import math

import pytest
import torch

from training.metrics import DEPTH_METRIC_NAMES, MetricAverager, batch_depth_metrics, image_depth_metrics


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
