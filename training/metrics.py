"""The seven standard depth metrics (Eigen et al. 2014), as self-supervised depth papers report them.

Per image: ground truth is kept where min_depth < gt < max_depth (and inside the crop, if
any); for non-metric models the prediction is first scaled by median(gt) / median(pred)
("median scaling"); predictions are clamped to [min_depth, max_depth]. Dataset figures are
the mean of the per-image figures. This is Monodepth2's evaluate_depth.py protocol.
NumPy only (torch is imported only to merge averages across ranks); the KITTI Eigen split's
protocol (mono_depth_ros_training.kitti.protocol) uses these functions.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
# Lower is better for the errors, higher for the threshold accuracies.
HIGHER_IS_BETTER = {"a1", "a2", "a3"}
# How people read the threshold accuracies: a1 is the share of pixels with max(gt/pred, pred/gt) < 1.25.
METRIC_LABELS = {
    "abs_rel": "abs_rel", "sq_rel": "sq_rel", "rmse": "rmse", "rmse_log": "rmse_log",
    "a1": "δ<1.25", "a2": "δ<1.25²", "a3": "δ<1.25³",
}

# Evaluation crops as fractions (top, bottom, left, right) of the ground truth's height and width;
# rows int(top * H) to int(bottom * H) (exclusive), likewise columns. "garg": Garg et al. (ECCV 2016),
# the crop of the KITTI Eigen split in Monodepth2's evaluate_depth.py; "eigen": the crop Monodepth (v1)
# found to reproduce Eigen et al. (NIPS 2014).
CROP_FRACTIONS: Dict[str, Tuple[float, float, float, float]] = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
CROPS = ("garg", "eigen", "none")


def crop_bounds(height: int, width: int, crop: str) -> Tuple[int, int, int, int]:
    """-> (top, bottom, left, right) pixel bounds of ``crop`` ('garg', 'eigen', 'none'), bottom/right exclusive."""
    if crop == "none":
        return 0, height, 0, width
    if crop not in CROP_FRACTIONS:
        raise ValueError(f"crop '{crop}' is not known; use one of {', '.join(CROPS)}")
    top, bottom, left, right = CROP_FRACTIONS[crop]
    # int() truncates, as Monodepth2's astype(np.int32) does.
    return int(top * height), int(bottom * height), int(left * width), int(right * width)


def crop_mask(height: int, width: int, crop: str) -> np.ndarray:
    """(height, width) bool array, True inside the evaluation crop ('none': everywhere)."""
    top, bottom, left, right = crop_bounds(height, width, crop)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def depth_errors(gt: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """The seven metrics (:data:`DEPTH_METRIC_NAMES`) of matched pixels: gt, pred arrays of the same
    shape, metres, > 0, already masked, scaled and clamped (Monodepth2's ``compute_errors``)."""
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ratio = np.maximum(gt / pred, pred / gt)
    difference = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(difference) / gt)),
        "sq_rel": float(np.mean(difference ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean(difference ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25 ** 2)),
        "a3": float(np.mean(ratio < 1.25 ** 3)),
    }


def _as_float64(values) -> np.ndarray:
    """NumPy float64 copy of an array or a (CPU or GPU) torch tensor, without importing torch."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def image_depth_metrics(
    gt,
    pred,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    median_scaling: bool = False,
    crop: str = "none",
) -> Optional[Dict[str, float]]:
    """Metrics of one image. gt, pred: same shape (NumPy arrays or torch tensors), metres (gt <= 0
    or non-finite = invalid).

    ``crop`` ('garg', 'eigen', 'none') keeps only ground truth inside that region of the last
    two dimensions (H, W). -> {name: value} for :data:`DEPTH_METRIC_NAMES` plus "scale" (the
    median ratio applied, 1.0 without median scaling), or None when no ground-truth pixel is left.
    Computed in float64 NumPy (a tensor is copied to the CPU).
    """
    gt = _as_float64(gt)
    pred = _as_float64(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {tuple(gt.shape)} and prediction {tuple(pred.shape)} differ in shape")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if crop != "none":
        if gt.ndim < 2:
            raise ValueError(f"a '{crop}' crop needs (..., H, W) images, got shape {tuple(gt.shape)}")
        valid &= crop_mask(gt.shape[-2], gt.shape[-1], crop)
    if not valid.any():
        return None
    gt = gt[valid]
    pred = pred[valid]
    scale = 1.0
    if median_scaling:
        scale = float(np.median(gt) / np.maximum(np.median(pred), 1e-12))
        pred = pred * scale
    pred = np.clip(pred, min_depth, max_depth)
    return {**depth_errors(gt, pred), "scale": scale}


def batch_depth_metrics(
    gt,
    pred,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    median_scaling: bool = False,
    crop: str = "none",
) -> List[Dict[str, float]]:
    """gt, pred: (B, 1, H, W) -> metrics of each image that has ground truth in range."""
    results = []
    for gt_image, pred_image in zip(gt, pred):
        metrics = image_depth_metrics(
            gt_image, pred_image, min_depth=min_depth, max_depth=max_depth, median_scaling=median_scaling,
            crop=crop,
        )
        if metrics is not None:
            results.append(metrics)
    return results


class MetricAverager:
    """Running mean of per-image metric dicts; mergeable across distributed ranks."""

    def __init__(self) -> None:
        self.sums: Dict[str, float] = {}
        self.count = 0

    def add(self, metrics: Dict[str, float]) -> None:
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.count += 1

    def all_reduce(self, names=DEPTH_METRIC_NAMES + ("scale",)) -> None:
        """Sum counts and sums over all ranks (no-op unless torch.distributed is initialised)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        values = torch.tensor([self.sums.get(name, 0.0) for name in names] + [float(self.count)], dtype=torch.float64)
        backend = dist.get_backend()
        if backend == "nccl":
            values = values.cuda()
        dist.all_reduce(values)
        values = values.cpu()
        self.count = int(round(float(values[-1])))
        self.sums = {name: float(values[index]) for index, name in enumerate(names)} if self.count else {}

    def mean(self) -> Dict[str, float]:
        if not self.count:
            return {}
        return {name: total / self.count for name, total in self.sums.items()}
