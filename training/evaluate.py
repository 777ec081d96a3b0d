"""evaluate: the seven standard depth metrics of a model on a bag with ground-truth depth.

    evaluate --bag BAG --model model.safetensors [--json metrics.json]
    evaluate --bag BAG --baseline constant --baseline ground-plane --camera-height 1.65

Protocol (Monodepth2's evaluate_depth.py on the KITTI Eigen split, by default):

* images and ground-truth depth (32FC1 metres or 16UC1 millimetres; 0, NaN, inf = no
  ground truth) are paired by header stamp;
* the prediction's disparity is resized bilinearly to the ground truth's size, then inverted;
* ground truth counts where min_depth < gt < max_depth (default 1e-3 and 80 m) inside the crop
  (default Garg: rows 0.40810811-0.99189189 of H, columns 0.03594771-0.96405229 of W);
* every method gets two rows: "median-scaled" (prediction times median(gt) / median(pred), per
  image) and "unscaled"; predictions are then clamped to [min_depth, max_depth];
* figures are means over images. The row that applies to a method is marked: unscaled for metric
  models and the ground-plane baseline, median-scaled for non-metric models and the constant.

Baselines without learning: ``constant`` (every pixel the same depth) and ``ground-plane``
(each pixel below the horizon sees a flat floor ``--camera-height`` metres below a camera whose
optical axis is parallel to it: depth = height * fy / (v - cy); the horizon and above: max_depth).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

from .metrics import CROP_FRACTIONS, CROPS, DEPTH_METRIC_NAMES, METRIC_LABELS, image_depth_metrics

DEFAULT_MIN_DEPTH = 1e-3
DEFAULT_MAX_DEPTH = 80.0  # KITTI Eigen protocol cap
DEFAULT_CROP = "garg"
DEFAULT_CONSTANT_DEPTH = 10.0
DEFAULT_MAX_STAMP_DIFF_S = 0.01
MEDIAN_SCALED = "median-scaled"
UNSCALED = "unscaled"
SCALINGS = (MEDIAN_SCALED, UNSCALED)
BASELINES = ("constant", "ground-plane")
PREDICTION_RESIZE = "disparity resized bilinearly to the ground truth's size, then inverted (as Monodepth2)"


class EvaluationError(RuntimeError):
    """Evaluation cannot run as asked; the text says what was wrong and what to do."""


# --------------------------------------------------------------------------- metrics over images


class DepthEvaluation:
    """Per-image metrics of one method, with and without median scaling, averaged over images."""

    def __init__(self, min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                 crop: str = DEFAULT_CROP):
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got min_depth {min_depth}, max_depth {max_depth}")
        if crop not in CROPS:
            raise ValueError(f"crop '{crop}' is not known; use one of {', '.join(CROPS)}")
        self.min_depth, self.max_depth, self.crop = float(min_depth), float(max_depth), crop
        self.per_image: Dict[str, List[Dict[str, float]]] = {scaling: [] for scaling in SCALINGS}
        self.images_without_ground_truth = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> bool:
        """gt, pred: (H, W) metres, same size. -> False when no ground-truth pixel is usable (not counted)."""
        results = {}
        for scaling in SCALINGS:
            results[scaling] = image_depth_metrics(
                gt, pred, min_depth=self.min_depth, max_depth=self.max_depth,
                median_scaling=scaling == MEDIAN_SCALED, crop=self.crop,
            )
        if results[UNSCALED] is None:
            self.images_without_ground_truth += 1
            return False
        for scaling, metrics in results.items():
            self.per_image[scaling].append(metrics)
        return True

    @property
    def frames(self) -> int:
        return len(self.per_image[UNSCALED])

    def summary(self, scaling: str) -> Dict[str, float]:
        """Mean of each metric over images (+ the median-scaling ratios' statistics); {} without images."""
        images = self.per_image[scaling]
        if not images:
            return {}
        result = {name: float(np.mean([m[name] for m in images])) for name in DEPTH_METRIC_NAMES}
        if scaling == MEDIAN_SCALED:
            ratios = np.array([m["scale"] for m in images])
            median = float(np.median(ratios))
            result.update(
                scale_mean=float(ratios.mean()),
                scale_std=float(ratios.std()),
                scale_median=median,
                # Monodepth2 prints the median ratio and std(ratios / median).
                scale_std_over_median=float(np.std(ratios / median)) if median > 0 else math.nan,
            )
        return result


def evaluate_predictions(
    gts: Iterable[np.ndarray],
    preds: Iterable[np.ndarray],
    *,
    min_depth: float = DEFAULT_MIN_DEPTH,
    max_depth: float = DEFAULT_MAX_DEPTH,
    crop: str = DEFAULT_CROP,
) -> Dict[str, object]:
    """Ground truths and predictions, pairs of (H, W) arrays in metres ->
    {"median-scaled": {metric: mean}, "unscaled": {...}, "frames": images with ground truth}."""
    evaluation = DepthEvaluation(min_depth, max_depth, crop)
    for gt, pred in zip(gts, preds):
        if np.shape(gt) != np.shape(pred):
            raise ValueError(f"ground truth {np.shape(gt)} and prediction {np.shape(pred)} differ in shape")
        evaluation.add(gt, pred)
    return {
        MEDIAN_SCALED: evaluation.summary(MEDIAN_SCALED),
        UNSCALED: evaluation.summary(UNSCALED),
        "frames": evaluation.frames,
    }


# --------------------------------------------------------------------------- baselines


def constant_depth(height: int, width: int, depth: float = DEFAULT_CONSTANT_DEPTH) -> np.ndarray:
    """-> (height, width) float32 filled with ``depth`` metres."""
    return np.full((height, width), depth, dtype=np.float32)


def ground_plane_depth(K: np.ndarray, height: int, width: int, camera_height: float,
                       max_depth: float = DEFAULT_MAX_DEPTH) -> np.ndarray:
    """Depth of a flat ground plane ``camera_height`` metres below a camera whose optical axis is level.

    K: (3, 3) of the (height, width) image, optical frame (x right, y down, z forward) ->
    (height, width) float32 depth along z: camera_height * fy / (v - cy) for rows v below the
    principal point, capped at max_depth; rows at or above the horizon (v <= cy) get max_depth.
    """
    if not camera_height > 0:
        raise ValueError(f"camera height must be > 0 metres, got {camera_height}")
    fy, cy = float(K[1, 1]), float(K[1, 2])
    below = np.arange(height, dtype=np.float64) - cy  # v - cy for each row (pixel centres at integers)
    depth_of_row = np.full(height, max_depth, dtype=np.float64)
    ground = below > 0
    depth_of_row[ground] = np.minimum(camera_height * fy / below[ground], max_depth)
    return np.repeat(depth_of_row.astype(np.float32)[:, None], width, axis=1)


# --------------------------------------------------------------------------- bags


@dataclass
class _Pending:
    stamp_ns: int
    msg: object
    msgtype: str
    info: object  # latest CameraInfo when the message arrived (None before any)


class StampPairs:
    """Pairs images with ground-truth depth by header stamp (nearest within ``max_diff_ns``).

    Keeps at most ``keep`` unpaired messages of each kind, so a long bag never fills memory.
    """

    def __init__(self, max_diff_ns: int, keep: int = 64):
        self.max_diff_ns = max_diff_ns
        self.keep = keep
        self.waiting: Dict[str, "OrderedDict[int, _Pending]"] = {"image": OrderedDict(), "depth": OrderedDict()}

    def add(self, kind: str, item: _Pending) -> Optional[tuple]:
        """kind 'image' or 'depth' -> (image item, depth item) when it completes a pair, else None."""
        other = self.waiting["depth" if kind == "image" else "image"]
        best = None
        for stamp in other:
            difference = abs(stamp - item.stamp_ns)
            if difference <= self.max_diff_ns and (best is None or difference < abs(best - item.stamp_ns)):
                best = stamp
        if best is not None:
            match = other.pop(best)
            return (item, match) if kind == "image" else (match, item)
        mine = self.waiting[kind]
        mine[item.stamp_ns] = item
        while len(mine) > self.keep:
            mine.popitem(last=False)
        return None


def _scaled_intrinsics(K: np.ndarray, from_size, to_size) -> np.ndarray:
    """K of a (w, h) image -> K of the same view at to_size (w', h'), pixel-centre exact."""
    from mono_depth_ros.geometry import scale_intrinsics

    if tuple(from_size) == tuple(to_size):
        return K
    scaled = scale_intrinsics(torch.from_numpy(np.asarray(K, dtype=np.float64)),
                              to_size[0] / from_size[0], to_size[1] / from_size[1])
    return scaled.numpy()


def _method_label(method: str, detail: str) -> str:
    return f"{method} ({detail})" if detail else method


def evaluate_bag(
    bag,
    *,
    model=None,
    baselines: Sequence[str] = (),
    image_topic: str = "",
    camera_info_topic: str = "",
    depth_topic: str = "",
    min_depth: float = DEFAULT_MIN_DEPTH,
    max_depth: float = DEFAULT_MAX_DEPTH,
    crop: str = DEFAULT_CROP,
    device: str = "",
    every: int = 1,
    max_frames: int = 0,
    constant: float = DEFAULT_CONSTANT_DEPTH,
    camera_height: Optional[float] = None,
    max_stamp_diff_s: float = DEFAULT_MAX_STAMP_DIFF_S,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> Dict[str, object]:
    """Evaluate a model file and/or baselines on a bag -> {"protocol": {...}, "rows": [...]} (the JSON).

    Each method gives a "median-scaled" and an "unscaled" row; "proper": true marks the one that
    applies to it. Raises EvaluationError, BagError (topics) or ModelFileError (model).
    """
    from mono_depth_ros.bagio import (
        BagReader,
        decode_depth,
        decode_image,
        header_stamp_ns,
        select_camera_topics,
        select_depth_topic,
    )
    from mono_depth_ros.frame_pipeline import camera_info_intrinsics
    from mono_depth_ros.devices import auto_device
    from mono_depth_ros.model_file import load_model_file

    baselines = list(dict.fromkeys(baselines))
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise EvaluationError(f"unknown baseline {unknown[0]!r}; use {' or '.join(BASELINES)}")
    if model is None and not baselines:
        raise EvaluationError("nothing to evaluate: give --model and/or --baseline")
    if "ground-plane" in baselines and (camera_height is None or not camera_height > 0):
        raise EvaluationError("--baseline ground-plane needs --camera-height H (metres above the ground, > 0)")
    if not constant > 0:
        raise EvaluationError(f"--constant-depth must be > 0 metres, got {constant}")
    if every < 1 or max_frames < 0:
        raise EvaluationError(f"--every must be >= 1 and --max-frames >= 0 (0: all), got {every} and {max_frames}")
    if crop not in CROPS:
        raise EvaluationError(f"--crop {crop!r} is not known; use one of {', '.join(CROPS)}")
    if not 0 < min_depth < max_depth:
        raise EvaluationError(f"need 0 < --min-depth < --max-depth, got {min_depth} and {max_depth}")

    estimator = None
    methods: Dict[str, Dict[str, object]] = {}  # method -> {detail, proper}
    if model is not None:
        from mono_depth_ros.inference import DepthEstimator

        loaded = load_model_file(model, device="cpu")
        torch_device, warning = auto_device(device)
        if warning:
            log(f"WARNING: {warning}")
        estimator = DepthEstimator(loaded, torch_device)
        metric = loaded.metadata.metric
        methods["model"] = {
            "detail": f"{Path(model).name}, {'metric' if metric else 'not metric'}",
            "proper": UNSCALED if metric else MEDIAN_SCALED,
        }
    if "constant" in baselines:
        methods["constant"] = {"detail": f"{constant:g} m", "proper": MEDIAN_SCALED}
    if "ground-plane" in baselines:
        methods["ground-plane"] = {"detail": f"camera {camera_height:g} m above the ground", "proper": UNSCALED}
    evaluations = {name: DepthEvaluation(min_depth, max_depth, crop) for name in methods}

    with BagReader(bag, log=log) as reader:
        need_info = "ground-plane" in methods
        topics = select_camera_topics(reader, image_topic, camera_info_topic, require_camera_info=need_info)
        depth_topic = select_depth_topic(reader, topics.image, depth_topic)
        pairs = StampPairs(int(round(max_stamp_diff_s * 1e9)))
        wanted = [topics.image, depth_topic] + ([topics.camera_info] if topics.camera_info else [])
        total = min(reader.topics[topics.image].count, reader.topics[depth_topic].count)
        total = -(-total // every)
        if max_frames:
            total = min(total, max_frames)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc="evaluate", file=sys.stderr, dynamic_ncols=True)
        info = None
        paired = used = 0
        problems: Dict[str, int] = {}

        def problem(kind: str, text: str) -> None:
            problems[kind] = problems.get(kind, 0) + 1
            if problems[kind] == 1:
                (bar.write if bar is not None else log)(f"skipping frames: {text}")

        for topic, msgtype, bag_time, msg in reader.messages(wanted):
            if topic == topics.camera_info:
                info = msg
                continue
            kind = "image" if topic == topics.image else "depth"
            pair = pairs.add(kind, _Pending(header_stamp_ns(msg, bag_time), msg, msgtype, info))
            if pair is None:
                continue
            paired += 1
            if (paired - 1) % every:
                continue
            image_item, depth_item = pair
            try:
                gt = decode_depth(depth_item.msg)
            except ValueError as error:
                problem("depth", f"ground truth on {depth_topic} cannot be read: {error}")
                continue
            height, width = gt.shape
            predictions = {}
            if estimator is not None or "ground-plane" in methods:
                try:
                    rgb = decode_image(image_item.msg, image_item.msgtype)
                except ValueError as error:
                    problem("image", f"an image on {topics.image} cannot be decoded: {error}")
                    continue
            if estimator is not None:
                disparity = estimator.disparity(estimator.preprocess(rgb))
                predictions["model"] = estimator.disparity_to_metric_depth(disparity, height, width)
            if "constant" in methods:
                predictions["constant"] = constant_depth(height, width, constant)
            if "ground-plane" in methods:
                frame_info = image_item.info or info
                if frame_info is None:
                    problem("camera_info", f"no CameraInfo on {topics.camera_info} before the image")
                    continue
                try:
                    K = camera_info_intrinsics(frame_info, rgb.shape[1], rgb.shape[0])
                except ValueError as error:
                    problem("camera_info", f"{topics.camera_info} does not fit the image: {error}")
                    continue
                K = _scaled_intrinsics(K, (rgb.shape[1], rgb.shape[0]), (width, height))
                predictions["ground-plane"] = ground_plane_depth(K, height, width, camera_height, max_depth)
            had_ground_truth = [evaluations[name].add(gt, pred) for name, pred in predictions.items()]
            if not all(had_ground_truth):
                problem("no_gt", f"a ground-truth image on {depth_topic} has no depth in ({min_depth:g}, "
                        f"{max_depth:g}) m inside the {crop} crop")
            used += 1
            if bar is not None:
                bar.update(1)
            if max_frames and used >= max_frames:
                break
        if bar is not None:
            bar.close()

    frames = max((e.frames for e in evaluations.values()), default=0)
    if frames == 0:
        raise EvaluationError(
            f"no frame of bag {bag} could be evaluated: {paired} image/ground-truth pairs matched by stamp "
            f"(within {max_stamp_diff_s:g} s) between {topics.image} and {depth_topic}"
            + (f"; skipped: {problems}" if problems else "")
            + ". Check that the depth is registered to this camera and stamped like its images "
            "(--max-stamp-diff)."
        )
    rows = []
    for name, method in methods.items():
        for scaling in (method["proper"],) + tuple(s for s in SCALINGS if s != method["proper"]):
            rows.append({
                "method": name,
                "detail": method["detail"],
                "scaling": scaling,
                "proper": scaling == method["proper"],
                "frames": evaluations[name].frames,
                **evaluations[name].summary(scaling),
            })
    protocol = {
        "bag": str(bag),
        "image_topic": topics.image,
        "depth_topic": depth_topic,
        "camera_info_topic": topics.camera_info,
        "min_depth": min_depth,
        "max_depth": max_depth,
        "crop": crop,
        "crop_fractions": list(CROP_FRACTIONS[crop]) if crop in CROP_FRACTIONS else None,
        "frames": frames,
        "pairs_matched": paired,
        "every": every,
        "max_frames": max_frames,
        "max_stamp_diff_s": max_stamp_diff_s,
        "prediction_resize": PREDICTION_RESIZE,
        "median_scaling": "per image: prediction * median(gt) / median(prediction) over the evaluated pixels",
        "skipped": problems,
    }
    return {"protocol": protocol, "rows": rows}


def evaluate_model(bag, model, **options) -> Dict[str, object]:
    """:func:`evaluate_bag` for one model file (baselines may be added with ``baselines=``)."""
    return evaluate_bag(bag, model=model, **options)


# --------------------------------------------------------------------------- output


def format_table(report: Dict[str, object]) -> str:
    """The report as a plain-text table: one row per method and scaling, '*' on each method's proper row."""
    protocol = report["protocol"]
    crop = protocol["crop"]
    crop_text = "no crop" if crop == "none" else f"{crop} crop"
    lines = [
        f"{protocol['frames']} frames of {protocol['bag']} ({protocol['image_topic']} against "
        f"{protocol['depth_topic']}); ground truth in ({protocol['min_depth']:g}, {protocol['max_depth']:g}) m, "
        f"{crop_text}"
    ]
    names = [f"{row['method']} ({row['detail']})" for row in report["rows"]]
    method_width = max([len("method")] + [len(n) for n in names])
    header = f"{'method':<{method_width}}  {'scaling':<15} {'frames':>6}" + "".join(
        f" {METRIC_LABELS[name]:>9}" for name in DEPTH_METRIC_NAMES
    )
    lines += [header, "-" * len(header)]
    for name, row in zip(names, report["rows"]):
        scaling = row["scaling"] + (" *" if row["proper"] else "")
        lines.append(
            f"{name:<{method_width}}  {scaling:<15} {row['frames']:>6}"
            + "".join(f" {row[metric]:>9.3f}" for metric in DEPTH_METRIC_NAMES)
        )
    lines.append("* the row that applies to the method: unscaled for metric models and the ground plane, "
                 "median-scaled for non-metric models and the constant")
    for row in report["rows"]:
        if row["scaling"] == MEDIAN_SCALED:
            lines.append(
                f"median scaling of {row['method']}: ratio mean {row['scale_mean']:.3f} std {row['scale_std']:.3f} "
                f"(median {row['scale_median']:.3f}, std/median {row['scale_std_over_median']:.3f})"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate",
        description="Standard depth metrics (abs_rel, sq_rel, rmse, rmse_log, δ<1.25, δ<1.25², δ<1.25³) of a "
        "model and/or no-learning baselines on a bag with ground-truth depth (KITTI Eigen protocol by default).",
    )
    parser.add_argument("--bag", required=True, nargs="+",
                        help="rosbag2 directory, .mcap or .db3 file (several only with --protocol kitti-eigen)")
    parser.add_argument(
        "--protocol", default="bag", choices=("bag", "kitti-eigen"),
        help="bag: the table below for a model and/or baselines (default); kitti-eigen: the KITTI Eigen split's "
        "benchmark table of --model on KITTI bags (docs/evaluation.md)",
    )
    parser.add_argument("--fixed-scale", type=float, default=None,
                        help="kitti-eigen: multiply predictions by this (default: 5.4 for imported Monodepth2 "
                        "stereo weights, else the model file's depth_scale)")
    parser.add_argument("--model", default=None, help="model file (.safetensors)")
    parser.add_argument(
        "--baseline", action="append", default=[], choices=BASELINES,
        help="also evaluate a no-learning baseline (repeatable): constant (--constant-depth) or ground-plane "
        "(--camera-height)",
    )
    parser.add_argument("--image-topic", default="", help="camera image topic (default: found as the trainer does)")
    parser.add_argument("--camera-info-topic", default="", help="its CameraInfo (needed by ground-plane only)")
    parser.add_argument(
        "--depth-topic", default="",
        help="ground-truth depth, sensor_msgs/Image 32FC1 m or 16UC1 mm (default: the depth image topic)",
    )
    parser.add_argument("--max-depth", type=float, default=DEFAULT_MAX_DEPTH, help="cap in metres (default 80)")
    parser.add_argument("--min-depth", type=float, default=DEFAULT_MIN_DEPTH, help="metres (default 1e-3)")
    parser.add_argument("--crop", default=DEFAULT_CROP, choices=CROPS, help="evaluation crop (default: garg)")
    parser.add_argument("--json", default=None, help="also write the table as JSON to this file")
    parser.add_argument("--device", default="", help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--every", type=int, default=1, help="evaluate every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (default 0: all)")
    parser.add_argument(
        "--constant-depth", type=float, default=DEFAULT_CONSTANT_DEPTH, help="depth of the constant baseline (m)"
    )
    parser.add_argument("--camera-height", type=float, default=None, help="camera height above the ground (m)")
    parser.add_argument(
        "--max-stamp-diff", type=float, default=DEFAULT_MAX_STAMP_DIFF_S,
        help="largest image/ground-truth stamp difference to pair them (s, default 0.01)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from mono_depth_ros.bagio import BagError
    from mono_depth_ros.model_file import ModelFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.protocol == "kitti-eigen":
        return _main_kitti(args, parser)
    if len(args.bag) != 1 or args.fixed_scale is not None:
        parser.error("several --bag and --fixed-scale need --protocol kitti-eigen")
    try:
        report = evaluate_bag(
            args.bag[0], model=args.model, baselines=args.baseline, image_topic=args.image_topic,
            camera_info_topic=args.camera_info_topic, depth_topic=args.depth_topic, min_depth=args.min_depth,
            max_depth=args.max_depth, crop=args.crop, device=args.device, every=args.every,
            max_frames=args.max_frames, constant=args.constant_depth, camera_height=args.camera_height,
            max_stamp_diff_s=args.max_stamp_diff, progress=not args.no_progress,
        )
    except (EvaluationError, BagError, ModelFileError, ValueError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 1
    print(format_table(report))
    _write_json(args.json, report)
    return 0


def _write_json(json_path: Optional[str], report: Dict[str, object]) -> None:
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")


def _main_kitti(args, parser) -> int:
    from mono_depth_ros.bagio import BagError
    from mono_depth_ros.model_file import ModelFileError

    from .kitti.evaluate import format_kitti_report, kitti_eigen_evaluate

    if args.model is None or args.baseline:
        parser.error("--protocol kitti-eigen evaluates one --model (no --baseline)")
    try:
        report = kitti_eigen_evaluate(
            args.bag, args.model, fixed_scale=args.fixed_scale, device=args.device, image_topic=args.image_topic,
            depth_topic=args.depth_topic, max_stamp_diff_s=args.max_stamp_diff, min_depth=args.min_depth,
            max_depth=args.max_depth, crop=args.crop,
        )
    except (EvaluationError, BagError, ModelFileError, ValueError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 1
    print(format_kitti_report(report))
    _write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
