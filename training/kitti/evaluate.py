"""``evaluate --protocol kitti-eigen``: a model file on KITTI bags by the Eigen split's protocol.

    evaluate --protocol kitti-eigen --model M --bag B [B ...] [--fixed-scale S] [--json out.json]

Bags are those ``python -m mono_depth_ros_training.kitti.raw`` writes (left camera + ``depth_gt``,
found as ``evaluate`` finds them). Every left image that has ground truth (paired by header stamp)
runs through the network; its depth at the network's resolution, in model units (the model file's
``depth_scale`` not applied), goes with the ground truth to :func:`.protocol.eigen_errors`, which
resizes its disparity to the ground truth's size. Scaling, as Monodepth2's evaluate_depth.py:

* median scaling per image unless the model file says ``metric: true``;
* the fixed scale: ``--fixed-scale`` when given; else :data:`.protocol.STEREO_SCALE_FACTOR` (5.4) for
  imported Monodepth2 stereo weights (``training.source`` "monodepth2", ``training.trained_with``
  "stereo", as ``import_monodepth2`` records them); else the file's ``depth_scale``.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..metrics import crop_mask
from .protocol import MAX_DEPTH, MIN_DEPTH, STEREO_SCALE_FACTOR, eigen_errors, format_eigen_table

PROTOCOL = "kitti-eigen"


def is_imported_stereo(metadata) -> bool:
    """True for a model file ``import_monodepth2`` made from stereo-trained Monodepth2 weights."""
    training = metadata.training or {}
    return training.get("source") == "monodepth2" and training.get("trained_with") == "stereo"


def eigen_scaling(metadata, fixed_scale: Optional[float] = None) -> Tuple[bool, float, str]:
    """-> (median_scaling, fixed_scale, why) for a model file's metadata, as the module docstring says."""
    median_scaling = not metadata.metric
    if fixed_scale is not None:
        if not fixed_scale > 0:
            raise ValueError(f"--fixed-scale must be > 0, got {fixed_scale}")
        return median_scaling, float(fixed_scale), "--fixed-scale"
    if is_imported_stereo(metadata):
        return median_scaling, STEREO_SCALE_FACTOR, "imported Monodepth2 stereo weights"
    return median_scaling, float(metadata.depth_scale), "the model file's depth_scale"


def network_depth(estimator, rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w) float64 depth in model units at the network's resolution."""
    from mono_depth_ros.geometry.disparity import DisparityRange

    metadata = estimator.metadata
    sigmoid = estimator.disparity(estimator.preprocess(rgb))[0, 0].float().cpu().numpy().astype(np.float64)
    return 1.0 / DisparityRange(metadata.min_depth, metadata.max_depth).sigmoid_to_scaled(sigmoid)


def _has_ground_truth(gt: np.ndarray, min_depth: float, max_depth: float, crop: str) -> bool:
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & crop_mask(*gt.shape, crop)
    return bool(valid.any())


def kitti_eigen_evaluate(
    bags: Sequence,
    model,
    *,
    fixed_scale: Optional[float] = None,
    device: str = "",
    image_topic: str = "",
    depth_topic: str = "",
    max_stamp_diff_s: float = 0.01,
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    crop: str = "garg",
    log: Callable[[str], None] = print,
) -> Dict[str, object]:
    """A model file on KITTI bags -> {"protocol": {...}, "rows": [eigen_errors' dict + scaling fields]}.

    Raises EvaluationError when no image has ground truth, BagError / ModelFileError as ``evaluate``.
    """
    from mono_depth_ros.bagio import BagReader, decode_depth, decode_image, header_stamp_ns
    from mono_depth_ros.bagio import select_camera_topics, select_depth_topic
    from mono_depth_ros.devices import auto_device
    from mono_depth_ros.inference import DepthEstimator
    from mono_depth_ros.model_file import load_model_file

    from ..evaluate import EvaluationError, StampPairs

    loaded = load_model_file(model, device="cpu")
    median_scaling, scale, why = eigen_scaling(loaded.metadata, fixed_scale)
    torch_device, warning = auto_device(device)
    if warning:
        log(f"WARNING: {warning}")
    estimator = DepthEstimator(loaded, torch_device)
    gts: List[np.ndarray] = []
    preds: List[np.ndarray] = []
    without_ground_truth = 0
    topics_used = []
    for bag in bags:
        with BagReader(bag, log=log) as reader:
            topics = select_camera_topics(reader, image_topic, "", require_camera_info=False)
            gt_topic = select_depth_topic(reader, topics.image, depth_topic)
            topics_used.append({"bag": str(bag), "image_topic": topics.image, "depth_topic": gt_topic})
            pairs = StampPairs(int(round(max_stamp_diff_s * 1e9)))
            for topic, msgtype, bag_time, msg in reader.messages([topics.image, gt_topic]):
                kind = "image" if topic == topics.image else "depth"
                pair = pairs.add(kind, SimpleNamespace(stamp_ns=header_stamp_ns(msg, bag_time), msg=msg, msgtype=msgtype))
                if pair is None:
                    continue
                image_item, depth_item = pair
                gt = decode_depth(depth_item.msg).astype(np.float64)
                if not _has_ground_truth(gt, min_depth, max_depth, crop):
                    without_ground_truth += 1
                    continue
                gts.append(gt)
                preds.append(network_depth(estimator, decode_image(image_item.msg, image_item.msgtype)))
    if not gts:
        raise EvaluationError(
            f"no left image of {', '.join(map(str, bags))} has ground truth in ({min_depth:g}, {max_depth:g}) m "
            f"inside the {crop} crop (paired by stamp within {max_stamp_diff_s:g} s)"
        )
    if without_ground_truth:
        log(f"skipped {without_ground_truth} image(s) without ground truth in range inside the {crop} crop")
    metrics = eigen_errors(gts, preds, median_scaling=median_scaling, fixed_scale=scale,
                           min_depth=min_depth, max_depth=max_depth, crop=crop)
    row = {"method": "model", "detail": Path(model).name, "median_scaling": median_scaling,
           "fixed_scale": scale, "fixed_scale_from": why, **metrics}
    protocol = {
        "protocol": PROTOCOL, "bags": topics_used, "min_depth": min_depth, "max_depth": max_depth, "crop": crop,
        "frames": len(gts), "skipped_without_ground_truth": without_ground_truth,
        "prediction": "network resolution, model units; disparity resized bilinearly to the ground truth's size",
    }
    return {"protocol": protocol, "rows": [row]}


def format_kitti_report(report: Dict[str, object]) -> str:
    """The report as text: a line on what was measured, then :func:`format_eigen_table`."""
    protocol, row = report["protocol"], report["rows"][0]
    scaling = "median-scaled per image" if row["median_scaling"] else "not median-scaled"
    head = (f"KITTI Eigen protocol: {row['detail']} on {protocol['frames']} images of {len(protocol['bags'])} bag(s), "
            f"{scaling}, fixed scale {row['fixed_scale']:g} ({row['fixed_scale_from']}); ground truth in "
            f"({protocol['min_depth']:g}, {protocol['max_depth']:g}) m, {protocol['crop']} crop")
    return head + "\n" + format_eigen_table(row)
