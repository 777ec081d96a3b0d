"""The datasets the trainer iterates: :func:`build_datasets` over rosbag2 recordings -> :class:`BagDataset`.

build_datasets loads each bag through the frame cache, selects and splits its samples and returns
the training and validation datasets with a :class:`DataReport` of what was read and used. A
BagDataset sample is a dict of tensors (the trainer's interface), augmented for training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from mono_depth_ros.bagio import BagError
from mono_depth_ros.geometry import scale_intrinsics

from .augmentation import COLOUR_JITTER_PROBABILITY, ColourJitter, flip_intrinsics, flip_transform
from .cache import BagCache, load_bag
from .config import MODES, DataConfig
from .samples import SampleRef, select_samples, split_samples
from .weather import sample_weather


@dataclass
class DataReport:
    """What build_datasets read and used; print it for the user."""

    frames_read: int = 0
    frames_used: int = 0
    dropped: Dict[str, int] = field(default_factory=dict)
    K_native: Optional[List[List[float]]] = None
    native_size: Optional[Tuple[int, int]] = None  # (w, h)
    distortion_model: str = ""
    rectified: bool = False
    baseline_m: Optional[float] = None
    has_odometry: bool = False
    has_depth_gt: bool = False
    normalized_intrinsics: Optional[List[float]] = None  # [fx/W, fy/H, cx/W, cy/H] of the native image
    # False: no bag had a calibration (camera_info or data.K); K is a placeholder that only learned
    # intrinsics (model.intrinsics: learned) may replace, and normalized_intrinsics is None.
    calibrated: bool = True
    train_samples: int = 0
    val_samples: int = 0
    mode: str = "mono"
    training_size: Tuple[int, int] = (0, 0)
    bags: List[str] = field(default_factory=list)
    topics: List[Dict[str, str]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    cache_hits: int = 0

    def __str__(self) -> str:
        lines = [
            f"data ({self.mode}): {self.frames_used} of {self.frames_read} frames used "
            f"({self.train_samples} train, {self.val_samples} validation) from {len(self.bags)} bag(s)",
        ]
        for path, topics in zip(self.bags, self.topics):
            chosen = ", ".join(f"{k.replace('_topic', '')}={v}" for k, v in topics.items() if v)
            lines.append(f"  {path}: {chosen}")
        if self.dropped:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.dropped.items()))
            lines.append(f"  dropped: {reasons}")
        if self.native_size is not None:
            lines.append(
                f"  camera {self.native_size[0]}x{self.native_size[1]} -> "
                f"{self.training_size[0]}x{self.training_size[1]}, "
                f"distortion {self.distortion_model or 'none'}{' (undistorted)' if self.rectified else ''}"
            )
        if self.K_native is not None and not self.calibrated:
            lines.append("  K unknown (no camera_info, no data.K): the intrinsics are learned")
        elif self.K_native is not None:
            lines.append(f"  K {np.round(np.asarray(self.K_native), 3).tolist()}")
        lines.append(
            f"  odometry {'yes' if self.has_odometry else 'no'}, "
            f"ground-truth depth {'yes' if self.has_depth_gt else 'no'}"
            + (f", stereo baseline {self.baseline_m:.4f} m" if self.baseline_m else "")
        )
        for warning in self.warnings:
            lines.append(f"  WARNING: {warning}")
        return "\n".join(lines)


class BagDataset(Dataset):
    """Samples (dicts of tensors, see the trainer interface) from cached bag frames."""

    def __init__(self, caches: Sequence[BagCache], samples: Sequence[SampleRef], config: DataConfig, mode: str,
                 intrinsics: Sequence[np.ndarray], baselines: Sequence[Optional[float]], augment: bool):
        self.caches = list(caches)
        self.samples = list(samples)
        self.config = config
        self.mode = mode
        self.augment = augment
        self.width, self.height = config.width, config.height
        # Training-resolution K per bag (pixel-centre exact scaling of the native K).
        self.intrinsics = [torch.as_tensor(K, dtype=torch.float32) for K in intrinsics]
        self.baselines = list(baselines)
        self._arrays: Optional[List[Dict[str, np.ndarray]]] = None
        self._stamps = [np.asarray(c.meta["stamps_left"], dtype=np.int64) for c in self.caches]

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None  # each worker maps the cache files itself
        return state

    def _bag_arrays(self, bag: int) -> Dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = [dict() for _ in self.caches]
        arrays = self._arrays[bag]
        if not arrays:
            directory = self.caches[bag].directory
            for name in ("left", "right", "depth"):
                if (directory / f"{name}.npy").exists():
                    arrays[name] = np.load(directory / f"{name}.npy", mmap_mode="r")
        return arrays

    @staticmethod
    def _to_tensor(frame: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(frame)).permute(2, 0, 1).float().div_(255.0)  # copy out of the memmap

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        ref = self.samples[index]
        arrays = self._bag_arrays(ref.bag)
        names = ["target"]
        frames = [arrays["left"][ref.target]]
        if self.mode in ("mono", "mono+stereo"):
            names += ["prev", "next"]
            frames += [arrays["left"][ref.prev], arrays["left"][ref.next]]
        if self.mode in ("stereo", "mono+stereo"):
            names.append("stereo")
            frames.append(arrays["right"][ref.right])
        images = torch.stack([self._to_tensor(f) for f in frames])  # (N, 3, H, W)
        if ref.depth >= 0 and "depth" in arrays:
            depth = torch.from_numpy(np.array(arrays["depth"][ref.depth], dtype=np.float32))[None]
            has_depth = True
        else:
            depth = torch.zeros(1, self.height, self.width)
            has_depth = False
        K = self.intrinsics[ref.bag].clone()
        T_stereo_target = torch.eye(4)
        baseline = self.baselines[ref.bag]
        if baseline is not None:
            T_stereo_target[0, 3] = -baseline  # left target -> right camera
        flipped = False
        augmented = images
        if self.augment:
            flipped = bool(torch.rand(()) < self.config.flip_probability)
            if flipped:
                images = torch.flip(images, dims=[-1])
                depth = torch.flip(depth, dims=[-1])
                K = flip_intrinsics(K, self.width)
                T_stereo_target = flip_transform(T_stereo_target)
            augmented = images
            if torch.rand(()) < COLOUR_JITTER_PROBABILITY:
                augmented = ColourJitter.sample(self.config)(images)
            # (no random number is drawn when weather is off: the other augmentations stay as they were)
            weather_probability = getattr(self.config, "weather_probability", 0.0)
            if weather_probability > 0 and torch.rand(()) < weather_probability:
                augmented = sample_weather(self.config.weather, self.height, self.width)(augmented)
        sample: Dict[str, torch.Tensor] = {}
        for position, name in enumerate(names):
            sample[name] = images[position]
            sample[f"{name}_aug"] = augmented[position]
        sample["K"] = K
        sample["T_stereo_target"] = T_stereo_target
        sample["odom_distance_prev"] = torch.tensor(ref.odom_distance_prev, dtype=torch.float32)
        sample["odom_distance_next"] = torch.tensor(ref.odom_distance_next, dtype=torch.float32)
        sample["depth_gt"] = depth
        sample["has_depth_gt"] = torch.tensor(has_depth)
        sample["stamp"] = torch.tensor(int(self._stamps[ref.bag][ref.target]) * 1e-9, dtype=torch.float64)
        sample["flipped"] = torch.tensor(flipped)
        return sample


def build_datasets(bag_paths: Sequence[str], config: DataConfig, mode: str,
                   log: Callable[[str], None] = print,
                   require_calibration: bool = True) -> Tuple[BagDataset, BagDataset, DataReport]:
    """Training and validation datasets from rosbag2 recordings, plus a report of what was used.

    Raises BagError for unusable input (no images, too few frames, camera_info missing without
    config K, ambiguous topics, nothing left after damage). Frames taken while the calibration
    or the image size differed from the bag's first are left out (report.dropped) and explained
    in report.warnings. ``require_calibration=False`` (model.intrinsics: learned) accepts bags without
    camera_info and data.K: their K is a placeholder and report.calibrated is False.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if not bag_paths:
        raise BagError("no bags given; pass --bag PATH (a rosbag2 directory, .mcap or .db3 file)")
    config.validate()
    report = DataReport(mode=mode, training_size=(config.width, config.height))
    caches: List[BagCache] = []
    intrinsics: List[np.ndarray] = []
    baselines: List[Optional[float]] = []
    train: List[SampleRef] = []
    val: List[SampleRef] = []
    for bag_index, path in enumerate(bag_paths):
        cache = load_bag(path, config, mode, log, require_calibration)
        meta = cache.meta
        if require_calibration and not meta.get("calibrated", True):  # decoded earlier for learned intrinsics
            raise BagError(
                f"bag {meta['bag']} has no usable calibration (no camera_info with a non-zero K); give the "
                f"intrinsics as K in the config (3x3 row-major), or learn them (model.intrinsics=learned)"
            )
        caches.append(cache)
        report.cache_hits += int(meta.get("cache_hit", False))
        report.bags.append(meta["bag"])
        report.topics.append(meta["topics"])
        report.warnings.extend(meta["damage"] + meta["notes"])  # load_bag logged them
        K_native = np.asarray(meta["K_native"], dtype=np.float64)
        native_w, native_h = meta["native_size"]
        scale_x, scale_y = config.width / native_w, config.height / native_h
        K_training = scale_intrinsics(torch.from_numpy(K_native), scale_x, scale_y).numpy()
        intrinsics.append(K_training)
        baseline = None
        if mode != "mono":
            baseline = config.baseline_m if config.baseline_m is not None else meta["baseline_m"]
            if baseline is None:
                raise BagError(
                    f"stereo baseline unknown for bag {meta['bag']}: the right camera_info "
                    f"({meta['topics']['right_camera_info_topic'] or 'none'}) has P[3] = 0. "
                    f"Set baseline_m in the config (metres between the cameras)."
                )
        baselines.append(baseline)
        calibrated = bool(meta.get("calibrated", True))
        if report.K_native is None:
            report.K_native = K_native.tolist()
            report.native_size = (int(native_w), int(native_h))
            report.distortion_model = meta["distortion_model"]
            report.rectified = bool(meta["rectified"])
            report.baseline_m = baseline
            report.calibrated = calibrated
            report.normalized_intrinsics = [
                K_native[0, 0] / native_w, K_native[1, 1] / native_h,
                K_native[0, 2] / native_w, K_native[1, 2] / native_h,
            ] if calibrated else None
        elif not np.allclose(K_native, report.K_native, rtol=1e-4) or tuple(meta["native_size"]) != report.native_size:
            report.warnings.append(f"bag {meta['bag']} has a different camera (K or size) than the first bag")
        report.has_odometry = report.has_odometry or bool(meta["odometry_stamps"])
        report.has_depth_gt = report.has_depth_gt or bool(meta["stamps_depth"])
        image_topic = meta["topics"]["image_topic"]
        report.frames_read += (
            len(meta["stamps_left"]) + meta["decode_failures"].get(image_topic, 0)
            + sum(meta.get("skipped", {}).get(image_topic, {}).values())
        )
        samples = select_samples(bag_index, cache, config, mode, report.dropped)
        stamps = np.asarray(meta["stamps_left"], dtype=np.int64)
        bag_train, bag_val = split_samples(samples, stamps, config.val_fraction, report.dropped)
        train += bag_train
        val += bag_val
    report.train_samples, report.val_samples = len(train), len(val)
    report.frames_used = len(train) + len(val)
    if not train:
        needs = "three consecutive frames (t-1, t, t+1) within max_gap_s" if mode != "stereo" else "a left/right pair"
        raise BagError(
            f"too few frames to train: every target needs {needs}, and none is left.\n{report}\n"
            f"Record a longer bag with the camera moving, or relax max_gap_s / min_motion_m / stereo_max_offset_s."
        )
    train_set = BagDataset(caches, train, config, mode, intrinsics, baselines, augment=True)
    val_set = BagDataset(caches, val, config, mode, intrinsics, baselines, augment=False)
    return train_set, val_set, report
