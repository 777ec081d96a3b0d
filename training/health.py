"""Is training learning? Detectors for the degenerate solutions of self-supervised depth.

A photometric objective has cheap ways out that look like a falling loss: the depth runs into a
bound of the network's range (warps leave the image, or stop moving it at all), the depth becomes
one value everywhere, or the warped views stop explaining the target better than the unwarped
ones (auto-masking then hides every pixel and the loss still looks fine). :class:`TrainingHealth`
watches the statistics :func:`depth_statistics` and the loss provide per step and names what it
sees; the trainer shows it in the progress line, TensorBoard and the final lines of the run.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Tuple

import torch

# Share of pixels within 5 % of a depth bound above which the depth counts as saturated.
SATURATED_FRACTION = 0.5
# Per-image standard deviation of log depth below which the depth counts as constant (a street
# or a room spans a factor of several in depth: std of log depth well above 0.3).
CONSTANT_LOG_STD = 0.05
# Warped error over identity (unwarped) error at or above which the warps explain nothing.
NO_BETTER_THAN_IDENTITY = 0.98
# Steps averaged for a verdict, and steps at the start during which no verdict is given.
WINDOW = 20


def depth_statistics(depth: torch.Tensor, min_depth: float, max_depth: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """depth: (B, 1, H, W) metres (model units) -> (share of pixels within 5 % of either bound of
    [min_depth, max_depth], mean over images of the std of log depth). Both 0-d tensors, detached,
    on depth's device (no host synchronisation)."""
    depth = depth.detach().float()
    saturated = ((depth <= min_depth * 1.05) | (depth >= max_depth * 0.95)).float().mean()
    log_std = depth.clamp(min=1e-6).log().flatten(1).std(dim=1).mean()
    return saturated, log_std


@dataclass
class HealthReading:
    saturated: float
    log_depth_std: float
    reprojection: float
    identity: float

    @property
    def identity_ratio(self) -> float:
        """Warped error / unwarped error: < 1 when the predicted depth explains the views."""
        return self.reprojection / self.identity if self.identity > 0 else float("inf")


def describe_problems(reading: HealthReading, min_depth: float, max_depth: float) -> List[str]:
    """The degenerate solutions ``reading`` shows, as sentences (empty when none)."""
    problems = []
    if reading.saturated >= SATURATED_FRACTION:
        problems.append(
            f"depth is saturated: {reading.saturated:.0%} of pixels sit at a bound of the network's range "
            f"[{min_depth:g}, {max_depth:g}] m"
        )
    if reading.log_depth_std < CONSTANT_LOG_STD:
        problems.append(f"depth is nearly constant over each image (std of log depth {reading.log_depth_std:.3f})")
    if reading.identity_ratio >= NO_BETTER_THAN_IDENTITY:
        problems.append(
            f"the warped views are no better than the unwarped ones (photometric error {reading.reprojection:.4f} "
            f"vs {reading.identity:.4f} without warping)"
        )
    return problems


class TrainingHealth:
    """Rolling view of the last WINDOW steps' statistics; :meth:`problems` is the verdict."""

    KEYS = ("saturated_fraction", "log_depth_std", "reprojection_error", "identity_error")

    def __init__(self, min_depth: float, max_depth: float, window: int = WINDOW):
        self.min_depth, self.max_depth = min_depth, max_depth
        self.values: Deque[Tuple[float, ...]] = deque(maxlen=window)
        self.seen = 0

    def add(self, parts: Mapping[str, float]) -> None:
        if all(key in parts for key in self.KEYS):
            self.values.append(tuple(float(parts[key]) for key in self.KEYS))
            self.seen += 1

    def reading(self) -> HealthReading:
        if not self.values:
            return HealthReading(0.0, float("inf"), 0.0, 1.0)
        means = [sum(column) / len(column) for column in zip(*self.values)]
        return HealthReading(*means)

    def problems(self) -> List[str]:
        """What is wrong now (empty before the window has filled once)."""
        if self.seen < self.values.maxlen:
            return []
        return describe_problems(self.reading(), self.min_depth, self.max_depth)

    def scalars(self) -> Dict[str, float]:
        reading = self.reading()
        return {
            "saturated_fraction": reading.saturated, "log_depth_std": reading.log_depth_std,
            "identity_ratio": reading.identity_ratio,
        }


def advice(mode: str, has_odometry: bool) -> str:
    """What to try after a run that did not converge."""
    tips = ["check the calibration (camera_info K; data.baseline_m or the right camera's P[3] for stereo)",
            "train longer (optim.max_steps / optim.epochs)", "lower optim.lr",
            "set model.initial_depth to a typical distance in the scene (metres)"]
    if mode != "stereo":
        tips.append("make sure the camera moves in the bag (see the dropped-frame counts above)")
        if not has_odometry:
            tips.append("record odometry (nav_msgs/Odometry) or train mode=stereo for metric depth")
    return "try: " + "; ".join(tips)
