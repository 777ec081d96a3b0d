"""Metric scale from the bag's own geometry: where training starts, and whether it ended in metres.

Two jobs, both plain tensors in and numbers out (the trainer wires them in):

* :func:`derive_initial_depth` picks the depth a fresh network starts at from what the bag
  says about scale: the stereo baseline, or the distance the camera moves between frames
  (odometry). It puts the first warps a few percent of the image width away from the
  identity: inside the image, whatever the baseline (a 5 cm robot head or a 60 cm car rig)
  and image size. Monodepth2's start (~2 x min_depth) with a real baseline of half a metre
  lands most warps outside the image, where the photometric loss has no gradient.
* :func:`scale_sweep` / :func:`check_scale` measure, on held-out frames, which multiple of the
  predicted depth best explains the other view when the other view is placed with the bag's
  own metric information (stereo baseline, or odometry distance). A metric model's best
  multiple is 1; a model whose scale is off shows it as a best multiple away from 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mono_depth_ros.geometry import reproject_coordinates, warp_image

from .losses import stacked_photometric_error

# The derived start: the initial disparity (stereo) or motion parallax (odometry) in pixels is
# this share of the image width.
INITIAL_DISPARITY_FRACTION = 0.03

# Depth multiples tried by the scale check: 1.25 ** (k / 4) for k = -12 .. 12, i.e. 0.51 .. 1.95
# in steps of 5.7 %, with 0.8, 1 and 1.25 on the grid.
SCALE_STEP = 1.25 ** 0.25
SCALE_FACTORS = tuple(float(SCALE_STEP ** k) for k in range(-12, 13))
# A model is labelled metric only if its held-out scale ratio is within this of 1.
METRIC_TOLERANCE = 0.2
# Fewer held-out samples than this decide nothing.
MIN_CHECK_SAMPLES = 4
# When the photometric error changes by less than this (relative) over the whole sweep, the
# frames do not constrain the scale (textureless, or the camera did not move).
MIN_SWEEP_CONTRAST = 0.005
# How sure the check must be that the predicted depth rebuilds the other view better (or worse)
# than 0.8x and 1.25x of it: the mean per-sample difference over its standard error (a paired
# t statistic). Below it the held-out frames cannot tell the scale within the tolerance: the
# check is inconclusive (e.g. small forward motion seen by a poorly trained pose network).
MIN_T_STATISTIC = 2.0


def derive_initial_depth(
    fx_over_width: float,
    *,
    baseline_m: Optional[float] = None,
    step_m: Optional[float] = None,
    min_depth: float = 0.1,
    max_depth: float = 100.0,
) -> Optional[float]:
    """Starting depth (metres) from the camera geometry, or None when the bag gives no scale.

    fx_over_width: focal length over image width (any resolution: the ratio is size-free).
    baseline_m: stereo baseline; step_m: typical distance between consecutive frames (odometry).
    The baseline wins when both are known. Returns the depth at which the disparity
    fx * length / depth is INITIAL_DISPARITY_FRACTION of the width, kept inside
    [2 * min_depth, max_depth / 2].
    """
    length = baseline_m if baseline_m is not None and baseline_m > 0 else step_m
    if length is None or not math.isfinite(length) or length <= 0 or not fx_over_width > 0:
        return None
    depth = fx_over_width * length / INITIAL_DISPARITY_FRACTION
    return float(min(max(depth, 2.0 * min_depth), max_depth / 2.0))


def nominal_initial_depth(min_depth: float, max_depth: float) -> float:
    """Starting depth (model units) when the bag gives no scale and the warps assume a constant speed.

    A tenth of max_depth: where a metric street scene starts with the default range, leaving the
    scene a decade of range above and more below; kept inside [2 * min_depth, max_depth / 2].
    """
    return float(min(max(max_depth / 10.0, 2.0 * min_depth), max_depth / 2.0))


def nominal_step(fx_over_width: float, initial_depth: float) -> float:
    """Camera step per frame (model units) that moves a point at ``initial_depth`` by
    INITIAL_DISPARITY_FRACTION of the image width: derive_initial_depth's rule solved for the step.

    Mono without odometry warps at this step (a constant speed), so depth comes out in units in
    which the first warps are as large as with odometry or stereo.
    """
    if not fx_over_width > 0 or not initial_depth > 0:
        raise ValueError(f"fx/W {fx_over_width} and initial depth {initial_depth} must be > 0")
    return float(initial_depth * INITIAL_DISPARITY_FRACTION / fx_over_width)


def translation_at_distance(translation: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """The predicted direction of travel, at the odometry's length.

    translation: (N, 3) pose-network translations, distance: (N,) metres travelled per odometry,
    NaN (or <= 0) where unknown -> (N, 3): translation / |translation| * distance where the
    distance is known, the translation unchanged elsewhere. Gradients reach the direction only.
    """
    distance = distance.to(translation.dtype)
    known = torch.isfinite(distance) & (distance > 0)
    norm = torch.linalg.vector_norm(translation, dim=-1).clamp(min=1e-8)
    factor = torch.where(known, torch.nan_to_num(distance, nan=0.0) / norm, torch.ones_like(norm))
    return translation * factor.unsqueeze(-1)


@torch.no_grad()
def scale_sweep(
    depth: torch.Tensor,
    target: torch.Tensor,
    sources: Sequence[torch.Tensor],
    T_source_target: Sequence[torch.Tensor],
    K: torch.Tensor,
    factors: Sequence[float] = SCALE_FACTORS,
    ssim_weight: float = 0.85,
) -> torch.Tensor:
    """Photometric error of the target rebuilt from the sources with depth x each factor.

    depth: (B, 1, H, W) predicted depth of the target view (model units), target: (B, 3, H, W),
    sources: S x (B, 3, H, W) placed by T_source_target: S x (B, 4, 4) (target frame -> source
    frame, metres), K: (B, 3, 3) -> errors (F, B): per factor and sample, the mean over pixels of
    the per-pixel minimum over sources (as the training loss), counting only pixels that land
    inside every source image at every factor (the same pixels for all factors).
    """
    count, batch = len(sources), depth.shape[0]
    height, width = depth.shape[-2:]
    source_stack = torch.cat(list(sources), 0)
    T = torch.cat(list(T_source_target), 0)
    K_stack = K.repeat(count, 1, 1)
    errors, inside = [], None
    for factor in factors:
        grid = reproject_coordinates((depth * factor).repeat(count, 1, 1, 1), T, K_stack, K_stack)
        # Inside by at least half a pixel, so border padding never decides a pixel's error.
        margin = torch.tensor([1.0 - 1.0 / width, 1.0 - 1.0 / height], dtype=grid.dtype, device=grid.device)
        here = (grid.abs() <= margin).all(-1).reshape(count, batch, 1, height, width).all(0)
        inside = here if inside is None else inside & here
        warped = warp_image(source_stack, grid).reshape(count, batch, *source_stack.shape[1:])
        errors.append(stacked_photometric_error(warped, target, ssim_weight).min(0).values)  # (B, 1, H, W)
    stack = torch.stack(errors, 0)  # (F, B, 1, H, W)
    mask = inside.unsqueeze(0).to(stack.dtype)
    pixels = mask.sum(dim=(2, 3, 4))
    per_sample = (stack * mask).sum(dim=(2, 3, 4)) / pixels.clamp(min=1.0)
    # Samples with (almost) no pixel inside at every factor carry no information: NaN.
    return torch.where(pixels >= 0.01 * height * width, per_sample, torch.full_like(per_sample, float("nan")))


@dataclass
class ScaleCheck:
    """The held-out scale of a model against one source of metric truth (stereo or odometry).

    ratio: the median over samples of the depth multiple that best rebuilt the other view (1 =
    metric; 1.3 = the model's depth is 30 % short). spread: their standard deviation.
    conclusive: the frames decided the question, either way. An inconclusive check (too few
    samples, a flat error curve, no significant difference between 1x and 0.8x/1.25x) says
    neither that the scale is right nor that it is wrong.
    """

    source: str  # "stereo baseline" | "odometry"
    factors: List[float] = field(default_factory=list)
    curve: List[float] = field(default_factory=list)  # mean error per factor over the samples
    ratios: List[float] = field(default_factory=list)  # per-sample best factor
    passed: bool = False
    conclusive: bool = False
    reason: str = ""

    @property
    def samples(self) -> int:
        return len(self.ratios)

    @property
    def ratio(self) -> float:
        return float(np.median(self.ratios)) if self.ratios else float("nan")

    @property
    def spread(self) -> float:
        return float(np.std(self.ratios)) if self.ratios else float("nan")

    def describe(self) -> str:
        if not self.ratios:
            return f"{self.source} scale: not measured ({self.reason})"
        verdict = ("metric" if self.passed else f"NOT metric: {self.reason}" if self.conclusive
                   else f"inconclusive: {self.reason}")
        return (f"{self.source} scale {self.ratio:.3f} ± {self.spread:.3f} on {self.samples} held-out "
                f"sample{'s' if self.samples != 1 else ''} ({verdict})")

    def to_dict(self) -> Dict[str, object]:
        return {
            "source": self.source, "ratio": _finite_or_none(self.ratio), "spread": _finite_or_none(self.spread),
            "samples": self.samples, "passed": self.passed, "conclusive": self.conclusive, "reason": self.reason,
        }


def _finite_or_none(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None


def check_scale(errors: torch.Tensor, source: str, factors: Sequence[float] = SCALE_FACTORS) -> ScaleCheck:
    """Judge a sweep: errors (F, N) from :func:`scale_sweep` over N held-out samples.

    Passes when there are at least MIN_CHECK_SAMPLES usable samples, the error curve is not flat,
    the predicted depth (factor 1) rebuilds the other view significantly better than 0.8x and
    1.25x of it (paired over the samples, t >= MIN_T_STATISTIC), and the median best factor is
    within METRIC_TOLERANCE of 1. Fails conclusively when the best factor is at the sweep's edge,
    when 0.8x or 1.25x is significantly better, or when the ratio is out of tolerance; otherwise
    (too few samples, flat, no significant difference) the check is inconclusive. ``reason`` says
    what failed (empty when passed).
    """
    factors = [float(value) for value in factors]
    errors = errors.double().cpu()
    usable = torch.isfinite(errors).all(0)
    errors = errors[:, usable]
    check = ScaleCheck(source=source, factors=factors)
    if errors.shape[1] < MIN_CHECK_SAMPLES:
        check.reason = (f"only {errors.shape[1]} held-out sample(s) could be checked against the {source} "
                        f"(at least {MIN_CHECK_SAMPLES} needed)")
        return check
    curve = errors.mean(1)
    check.curve = curve.tolist()
    check.ratios = [factors[index] for index in errors.argmin(0).tolist()]
    one, low, high = factors.index(1.0), _nearest(factors, 0.8), _nearest(factors, 1.25)
    best = int(curve.argmin())
    contrast = float((curve.max() - curve.min()) / curve.min().clamp(min=1e-12))
    t_low = _paired_t(errors[low], errors[one])  # > 0: factor 1 is better than 0.8x
    t_high = _paired_t(errors[high], errors[one])
    check.conclusive = True
    if contrast < MIN_SWEEP_CONTRAST:
        check.conclusive = False
        check.reason = (f"the photometric error barely depends on the depth scale ({100 * contrast:.2f} % over "
                        f"{factors[0]:.2f}-{factors[-1]:.2f}x): the held-out frames do not constrain it")
    elif best in (0, len(factors) - 1):
        check.reason = (f"the {source} is best explained at the sweep's edge ({factors[best]:.2f}x the predicted "
                        "depth): the depth is off by more than that")
    elif t_low <= -MIN_T_STATISTIC or t_high <= -MIN_T_STATISTIC:
        check.reason = (f"the predicted depth rebuilds the other view worse than {factors[low]:.2f}x or "
                        f"{factors[high]:.2f}x of it")
    elif t_low < MIN_T_STATISTIC or t_high < MIN_T_STATISTIC:
        check.conclusive = False
        check.reason = (f"the held-out frames do not tell the predicted depth from {factors[low]:.2f}x or "
                        f"{factors[high]:.2f}x of it (paired t {t_low:.1f} / {t_high:.1f}, "
                        f"{MIN_T_STATISTIC:.0f} needed)")
    elif abs(check.ratio - 1.0) > METRIC_TOLERANCE:
        check.reason = f"held-out scale ratio {check.ratio:.2f} is more than {METRIC_TOLERANCE:.0%} from 1"
    else:
        check.passed = True
    return check


def scale_verdict(checks: Sequence[ScaleCheck]) -> str:
    """Why the model is not metric after these checks ("" = it is).

    A conclusive failure of any source refuses the label (e.g. a baseline and an odometry that
    disagree); an inconclusive source counts neither for nor against; at least one must pass.
    """
    if not checks:
        return "no scale check was made"
    failed = [check for check in checks if check.conclusive and not check.passed]
    if not failed and not any(check.passed for check in checks):
        failed = list(checks)
    return "; ".join(f"{check.source}: {check.reason}" for check in failed)


def _paired_t(worse: torch.Tensor, better: torch.Tensor) -> float:
    """Paired t statistic of the relative differences worse / better - 1 over samples (+inf when
    they are all equal and positive, 0 when all zero)."""
    difference = worse / better.clamp(min=1e-12) - 1.0
    mean = float(difference.mean())
    error = float(difference.std(unbiased=True)) / math.sqrt(difference.numel()) if difference.numel() > 1 else 0.0
    if error <= 1e-12:
        return 0.0 if abs(mean) <= 1e-12 else math.copysign(math.inf, mean)
    return mean / error


def _nearest(values: Sequence[float], wanted: float) -> int:
    return int(np.argmin([abs(value - wanted) for value in values]))
