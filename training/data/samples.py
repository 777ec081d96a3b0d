"""Which frames become training samples: triplets by timestamp, stereo pairs, the validation split.

:func:`select_samples` picks one bag's target frames in time order (with their previous and next
frames, right image and ground-truth depth) and counts every frame it leaves out by reason;
:func:`split_samples` splits them into a training head and a validation tail by time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from mono_depth_ros import bagio

from .cache import BagCache
from .config import DataConfig


@dataclass(frozen=True)
class SampleRef:
    """Indices into one bag's cached arrays (-1 = not used)."""

    bag: int
    target: int
    prev: int = -1
    next: int = -1
    right: int = -1
    depth: int = -1
    odom_distance_prev: float = math.nan
    odom_distance_next: float = math.nan


def _nearest(sorted_stamps: np.ndarray, query: int) -> Tuple[int, float]:
    """Index in sorted_stamps nearest to query and |difference| in seconds (-1, inf if empty)."""
    if sorted_stamps.size == 0:
        return -1, math.inf
    position = int(np.searchsorted(sorted_stamps, query))
    best, best_diff = -1, math.inf
    for candidate in (position - 1, position):
        if 0 <= candidate < sorted_stamps.size:
            diff = abs(int(sorted_stamps[candidate]) - int(query)) * 1e-9
            if diff < best_diff:
                best, best_diff = candidate, diff
    return best, best_diff


def select_samples(bag_index: int, cache: BagCache, config: DataConfig, mode: str,
                   dropped: Dict[str, int]) -> List[SampleRef]:
    """Targets of one bag in time order; every other image is counted in `dropped` by reason."""
    meta = cache.meta

    def drop(reason: str, count: int = 1) -> None:
        if count:
            dropped[reason] = dropped.get(reason, 0) + count

    drop("decode_error", meta["decode_failures"].get(meta["topics"]["image_topic"], 0))
    for reason, count in meta.get("skipped", {}).get(meta["topics"]["image_topic"], {}).items():
        drop(reason, count)  # calibration_changed, size_changed
    stamps = np.asarray(meta["stamps_left"], dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    sorted_stamps = stamps[order]
    unique = np.ones(order.size, dtype=bool)
    unique[1:] = np.diff(sorted_stamps) > 0
    drop("duplicate_stamp", int((~unique).sum()))
    order, sorted_stamps = order[unique], sorted_stamps[unique]
    strided = order[:: config.frame_stride]
    drop("frame_stride", order.size - strided.size)
    frame_stamps = stamps[strided]

    temporal = mode in ("mono", "mono+stereo")
    stereo = mode in ("stereo", "mono+stereo")
    right_stamps = np.asarray(meta["stamps_right"], dtype=np.int64)
    right_order = np.argsort(right_stamps, kind="stable")
    right_sorted = right_stamps[right_order]
    depth_stamps = np.asarray(meta["stamps_depth"], dtype=np.int64)
    depth_order = np.argsort(depth_stamps, kind="stable")
    depth_sorted = depth_stamps[depth_order]

    positions = None
    if meta["odometry_stamps"]:
        positions = bagio.interpolate_positions(
            np.asarray(meta["odometry_stamps"], dtype=np.int64), np.asarray(meta["odometry_positions"]), frame_stamps
        )
    thumbs = cache.array("thumbs") if temporal else None
    max_gap_ns = config.max_gap_s * 1e9

    samples: List[SampleRef] = []
    for j, target in enumerate(strided):
        prev_index = next_index = -1
        distance_prev = distance_next = math.nan
        if temporal:
            if j == 0 or j == strided.size - 1:
                drop("no_neighbours")
                continue
            if frame_stamps[j] - frame_stamps[j - 1] > max_gap_ns or frame_stamps[j + 1] - frame_stamps[j] > max_gap_ns:
                drop("gap")
                continue
            prev_index, next_index = int(strided[j - 1]), int(strided[j + 1])
            if positions is not None and np.all(np.isfinite(positions[j - 1 : j + 2])):
                distance_prev = float(np.linalg.norm(positions[j] - positions[j - 1]))
                distance_next = float(np.linalg.norm(positions[j + 1] - positions[j]))
                moving = min(distance_prev, distance_next) >= config.min_motion_m
            else:
                centre = thumbs[target].astype(np.float32)
                change_prev = float(np.abs(centre - thumbs[prev_index]).mean()) / 255.0
                change_next = float(np.abs(centre - thumbs[next_index]).mean()) / 255.0
                moving = min(change_prev, change_next) >= config.min_photometric_change
            if not moving:
                drop("static")
                continue
        right_index = -1
        if stereo:
            position, offset = _nearest(right_sorted, int(stamps[target]))
            if offset > config.stereo_max_offset_s:
                drop("no_stereo_pair")
                continue
            right_index = int(right_order[position])
        depth_index = -1
        position, offset = _nearest(depth_sorted, int(stamps[target]))
        if offset <= config.stereo_max_offset_s:
            depth_index = int(depth_order[position])
        samples.append(SampleRef(bag_index, int(target), prev_index, next_index, right_index, depth_index,
                                 distance_prev, distance_next))
    return samples


def split_samples(samples: List[SampleRef], stamps: np.ndarray, val_fraction: float,
                  dropped: Dict[str, int]) -> Tuple[List[SampleRef], List[SampleRef]]:
    """Training head and validation tail of one bag's samples (time order).

    Training samples whose frames reach into the validation segment are dropped
    ('split_boundary') so no image is in both sets.
    """
    if val_fraction <= 0 or len(samples) < 2:
        return samples, []
    count = min(len(samples) - 1, max(1, int(round(val_fraction * len(samples)))))
    train, val = samples[:-count], samples[-count:]

    def frames(sample: SampleRef) -> List[int]:
        return [i for i in (sample.prev, sample.target, sample.next) if i >= 0]

    first_val_stamp = min(int(stamps[i]) for i in frames(val[0]))
    kept = [s for s in train if max(int(stamps[i]) for i in frames(s)) < first_val_stamp]
    if len(kept) < len(train):
        dropped["split_boundary"] = dropped.get("split_boundary", 0) + len(train) - len(kept)
    return kept, val
