"""The KITTI Eigen split's depth evaluation, as the benchmark computes it (Monodepth2's evaluate_depth.py).

Per image, in this order:

1. the prediction is resized to its ground truth's size: its disparity (1 / depth) is resized
   bilinearly (OpenCV's ``INTER_LINEAR``, as Monodepth2's ``cv2.resize``) and inverted back;
2. ground truth counts where ``min_depth < gt < max_depth`` (1e-3 and 80 m) inside the Garg crop
   (rows ``int(0.40810811 H)`` to ``int(0.99189189 H)``, columns ``int(0.03594771 W)`` to
   ``int(0.96405229 W)``, ends excluded; on a 375x1242 image rows 153-370 and columns 44-1196 inclusive,
   218 x 1153 = 251354 pixels);
3. the prediction is multiplied by ``fixed_scale`` (:data:`STEREO_SCALE_FACTOR`, 5.4, for stereo-trained
   Monodepth2 weights, whose baseline was a nominal 0.1 against KITTI's 0.54 m), then, with median
   scaling, by ratio = median(gt) / median(pred) over the counted pixels;
4. the prediction is clipped to ``[min_depth, max_depth]`` and the seven metrics computed.

The figures are means over images; with median scaling the ratios' mean and std are reported (and,
as Monodepth2 prints them, their median and std(ratio / median)). The per-image steps 2-4 and the
metric formulas are :func:`mono_depth_ros_training.metrics.image_depth_metrics`'s; NumPy, no torch.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import cv2
import numpy as np

from ..metrics import CROPS, DEPTH_METRIC_NAMES, image_depth_metrics

# Monodepth2's factor from stereo-trained predictions (baseline 0.1 units) to metres (KITTI's 0.54 m).
STEREO_SCALE_FACTOR = 5.4
MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0


def resize_prediction(pred_depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Depth (h, w) -> (height, width): its disparity resized bilinearly, then inverted (as Monodepth2)."""
    pred_depth = np.asarray(pred_depth, dtype=np.float64)
    if pred_depth.shape == (height, width):
        return pred_depth
    with np.errstate(divide="ignore"):
        disparity = 1.0 / pred_depth
    resized = cv2.resize(disparity, (width, height), interpolation=cv2.INTER_LINEAR)
    with np.errstate(divide="ignore"):
        return 1.0 / resized


def eigen_errors(
    gt_depths: Sequence[np.ndarray],
    pred_depths: Sequence[np.ndarray],
    *,
    median_scaling: bool,
    fixed_scale: float = 1.0,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    crop: str = "garg",
) -> Dict[str, float]:
    """The seven metrics of predictions against ground truth, averaged over images, by the Eigen protocol.

    gt_depths: one (H, W) depth map in metres per image (0 = no ground truth; sizes may differ between
    images, as KITTI's drives do); pred_depths: one (h, w) predicted depth per image, resized to its
    ground truth's size when it differs. ``median_scaling`` for relative (monocular) models;
    ``fixed_scale=STEREO_SCALE_FACTOR`` with ``median_scaling=False`` for stereo Monodepth2 weights.
    -> {abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3 (in that order), "frames", and with median
    scaling "ratio_mean", "ratio_std", "ratio_median", "ratio_std_over_median"}.
    Raises ValueError for an image without any ground truth in range (the benchmark has none such).
    """
    if len(gt_depths) != len(pred_depths):
        raise ValueError(f"{len(gt_depths)} ground-truth maps but {len(pred_depths)} predictions")
    if not gt_depths:
        raise ValueError("no images to evaluate")
    if crop not in CROPS:
        raise ValueError(f"crop '{crop}' is not known; use one of {', '.join(CROPS)}")
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    if not fixed_scale > 0:
        raise ValueError(f"fixed_scale must be > 0, got {fixed_scale}")
    per_image: List[Dict[str, float]] = []
    for index, (gt, pred) in enumerate(zip(gt_depths, pred_depths)):
        gt = np.asarray(gt, dtype=np.float64)
        if gt.ndim != 2:
            raise ValueError(f"image {index}: ground truth must be (H, W), got shape {gt.shape}")
        pred = resize_prediction(pred, *gt.shape) * fixed_scale
        metrics = image_depth_metrics(gt, pred, min_depth=min_depth, max_depth=max_depth,
                                      median_scaling=median_scaling, crop=crop)
        if metrics is None:
            raise ValueError(f"image {index}: no ground truth in ({min_depth:g}, {max_depth:g}) m inside the "
                             f"{crop} crop")
        per_image.append(metrics)
    result = {name: float(np.mean([metrics[name] for metrics in per_image])) for name in DEPTH_METRIC_NAMES}
    result["frames"] = len(per_image)
    if median_scaling:
        ratios = np.array([metrics["scale"] for metrics in per_image])
        median = float(np.median(ratios))
        result.update(ratio_mean=float(ratios.mean()), ratio_std=float(ratios.std()), ratio_median=median,
                      ratio_std_over_median=float(np.std(ratios / median)))
    return result


def format_eigen_table(metrics: Dict[str, float]) -> str:
    """The metrics as papers print them: a header ``abs_rel | sq_rel | ... | a3`` and one row, 3 decimals
    (and the scale ratios' line, when median-scaled)."""
    header = " | ".join(f"{name:>8}" for name in DEPTH_METRIC_NAMES)
    row = " | ".join(f"{metrics[name]:8.3f}" for name in DEPTH_METRIC_NAMES)
    lines = [header, row]
    if "ratio_mean" in metrics:
        lines.append(f"scale ratios: mean {metrics['ratio_mean']:.3f} std {metrics['ratio_std']:.3f} "
                     f"(median {metrics['ratio_median']:.3f}, std/median {metrics['ratio_std_over_median']:.3f})")
    return "\n".join(lines)
