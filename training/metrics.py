"""The seven standard depth metrics (Eigen et al. 2014), as self-supervised depth papers report them.

Per image: ground truth is kept where min_depth < gt < max_depth (and inside the crop, if
any); for non-metric models the prediction is first scaled by median(gt) / median(pred)
("median scaling"); predictions are clamped to [min_depth, max_depth]. Dataset figures are
the mean of the per-image figures. This is Monodepth2's evaluate_depth.py protocol.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

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


def image_depth_metrics(
    gt: torch.Tensor,
    pred: torch.Tensor,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    median_scaling: bool = False,
    crop: str = "none",
) -> Optional[Dict[str, float]]:
    """Metrics of one image. gt, pred: same shape, metres (gt <= 0 or non-finite = invalid).

    ``crop`` ('garg', 'eigen', 'none') keeps only ground truth inside that region of the last
    two dimensions (H, W). -> {name: value} for :data:`DEPTH_METRIC_NAMES` plus "scale" (the
    median ratio applied, 1.0 without median scaling), or None when no ground-truth pixel is left.
    """
    gt = torch.as_tensor(gt)
    pred = torch.as_tensor(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {tuple(gt.shape)} and prediction {tuple(pred.shape)} differ in shape")
    inside = None
    if crop != "none":
        if gt.dim() < 2:
            raise ValueError(f"a '{crop}' crop needs (..., H, W) images, got shape {tuple(gt.shape)}")
        inside = torch.from_numpy(crop_mask(gt.shape[-2], gt.shape[-1], crop)).expand(gt.shape).flatten()
    gt = gt.detach().double().flatten()
    pred = pred.detach().double().flatten()
    valid = torch.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if inside is not None:
        valid &= inside.to(valid.device)
    if not bool(valid.any()):
        return None
    gt = gt[valid]
    pred = pred[valid]
    scale = 1.0
    if median_scaling:
        # quantile(0.5) averages the two middle values, like numpy.median.
        scale = float(torch.quantile(gt, 0.5) / torch.quantile(pred, 0.5).clamp(min=1e-12))
        pred = pred * scale
    pred = pred.clamp(min_depth, max_depth)
    ratio = torch.maximum(gt / pred, pred / gt)
    difference = gt - pred
    return {
        "abs_rel": float((difference.abs() / gt).mean()),
        "sq_rel": float((difference ** 2 / gt).mean()),
        "rmse": float(torch.sqrt((difference ** 2).mean())),
        "rmse_log": float(torch.sqrt(((torch.log(gt) - torch.log(pred)) ** 2).mean())),
        "a1": float((ratio < 1.25).double().mean()),
        "a2": float((ratio < 1.25 ** 2).double().mean()),
        "a3": float((ratio < 1.25 ** 3).double().mean()),
        "scale": scale,
    }


def batch_depth_metrics(
    gt: torch.Tensor,
    pred: torch.Tensor,
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
