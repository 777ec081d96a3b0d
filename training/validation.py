"""Validation of a run: held-out losses and depth metrics, the scale checks, and the verdict.

:meth:`Validation.judge` decides whether training converged (mono_depth_ros_training.health) and
whether the model may be labelled metric (mono_depth_ros_training.scale's held-out checks).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from mono_depth_ros.geometry import invert_transform

from .distributed import ShardSampler, gather_columns
from .health import HealthReading, TrainingHealth, describe_problems
from .metrics import DEPTH_METRIC_NAMES, MetricAverager, batch_depth_metrics
from .objective import INTRINSICS_NAMES, StepOutput, temporal_transforms
from .scale import check_scale, scale_sweep, scale_verdict, translation_at_distance

if TYPE_CHECKING:  # the trainer imports this module
    from .trainer import TrainResult

# Samples the camera head averages over for the learned K the model file records.
INTRINSICS_ESTIMATE_SAMPLES = 32


def describe_intrinsics(learned: Sequence[float], calibration: Optional[Sequence[float]] = None) -> str:
    """'learned K fx/W 0.712 (calibration 0.700), ...' for logs and reports."""
    labels = ("fx/W", "fy/H", "cx/W", "cy/H")
    parts = []
    for index, label in enumerate(labels):
        text = f"{label} {learned[index]:.3f}"
        if calibration is not None:
            text += f" (calibration {calibration[index]:.3f})"
        parts.append(text)
    return "learned K " + ", ".join(parts) + ("" if calibration is not None else " (no calibration to compare with)")


class Validation:
    """validate, judge and the scale sources. A mixin of :class:`mono_depth_ros_training.trainer.Trainer`."""

    def format_validation(self, metrics: Dict[str, float]) -> str:
        text = f"epoch {self.epoch}/{self.config.optim.epochs} (step {self.step}): val loss {metrics.get('loss', float('nan')):.4f}"
        if "identity_ratio" in metrics:
            text += (f", photometric {metrics['reprojection_error']:.4f} warped vs {metrics['identity_error']:.4f} "
                     f"unwarped ({100 * (metrics['identity_ratio'] - 1):+.0f} %)")
        for check in self.scale_checks:
            text += "; " + check.describe()
        if "abs_rel" in metrics:
            scaled = "median-scaled" if not self.has_scale_source() else "unscaled"
            text += ", " + ", ".join(f"{name} {metrics[name]:.3f}" for name in DEPTH_METRIC_NAMES)
            count = int(metrics.get("depth_images", 0))
            text += f" ({scaled}, {count} image{'s' if count != 1 else ''} with ground truth)"
        if "intrinsics_fx" in metrics:
            text += "; " + describe_intrinsics(
                [metrics[f"intrinsics_{name}"] for name in INTRINSICS_NAMES],
                [metrics[f"intrinsics_{name}_calibration"] for name in INTRINSICS_NAMES]
                if "intrinsics_fx_calibration" in metrics else None,
            )
        return text

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Photometric loss (and depth metrics where samples carry ground truth) on the validation split."""
        if self.val_dataset is None:
            return {}
        self.depth_net.eval()
        if self.pose_net is not None:
            self.pose_net.eval()
        sampler = ShardSampler(len(self.val_dataset), self.context.rank, self.context.world_size)
        loader = self.data_loader(self.val_dataset, sampler, 0, drop_last=False)
        losses = MetricAverager()
        depth_metrics = MetricAverager()
        intrinsics = MetricAverager()  # learned K, one entry per sample
        sweeps: Dict[str, List[torch.Tensor]] = {}  # scale source -> (F, B) errors per batch
        metric = self.has_scale_source()
        devices = [self.device] if self.device.type == "cuda" else []
        # Validation must not change the training run's random stream (resume equivalence).
        with torch.random.fork_rng(devices=devices):
            last = None
            for index, batch in enumerate(loader):
                if self.config.val.max_batches and index >= self.config.val.max_batches:
                    break
                batch = self.to_device(batch)
                output = self.compute_losses(batch, training=False)
                values = {"loss": float(output.parts["total"]), "photometric": float(output.parts["photometric"])}
                values.update({key: float(output.parts[key]) for key in TrainingHealth.KEYS})
                for sample in range(batch["target"].shape[0]):
                    losses.add(values)
                for source, errors in self._scale_errors(batch, output).items():
                    sweeps.setdefault(source, []).append(errors.cpu())
                if output.intrinsics is not None:
                    for values in output.intrinsics.tolist():
                        intrinsics.add(dict(zip(INTRINSICS_NAMES, values)))
                if "depth_gt" in batch:
                    has_gt = batch.get("has_depth_gt")
                    keep = has_gt.bool().reshape(-1) if torch.is_tensor(has_gt) else torch.ones(
                        batch["target"].shape[0], dtype=torch.bool, device=self.device
                    )
                    if bool(keep.any()):
                        for values in batch_depth_metrics(
                            batch["depth_gt"][keep].float(),
                            output.depth[keep].float(),
                            min_depth=self.config.val.min_gt_depth,
                            max_depth=self.config.val.max_gt_depth,
                            median_scaling=not metric,
                        ):
                            depth_metrics.add(values)
                last = (batch, output)
        losses.all_reduce(names=("loss", "photometric") + TrainingHealth.KEYS)
        depth_metrics.all_reduce()
        result = losses.mean()
        if "identity_error" in result:
            result["identity_ratio"] = HealthReading(
                *(result[key] for key in TrainingHealth.KEYS)).identity_ratio
        self.scale_checks = []
        for source in self.scale_sources():
            errors = gather_columns(self.context, sweeps.get(source, []))
            check = check_scale(errors, source)
            self.scale_checks.append(check)
            key = source.split()[0]  # "stereo" | "odometry"
            result[f"scale_{key}_ratio"] = check.ratio
            result[f"scale_{key}_spread"] = check.spread
            result[f"scale_{key}_passed"] = float(check.passed)
        if depth_metrics.count:
            result.update(depth_metrics.mean())
            result["depth_images"] = float(depth_metrics.count)
        if self.learn_intrinsics:
            intrinsics.all_reduce(names=INTRINSICS_NAMES)
            learned = intrinsics.mean()
            true = self.calibration_intrinsics()
            for index, name in enumerate(INTRINSICS_NAMES):
                if name in learned:
                    result[f"intrinsics_{name}"] = learned[name]
                if true is not None:
                    result[f"intrinsics_{name}_calibration"] = float(true[index])
        self.validated_step, self.last_validation = self.step, result
        if self.writer is not None:
            for name, value in result.items():
                self.writer.add_scalar(f"val/{name}", value, self.step)
            if last is not None and self.config.log.image_every:
                self.log_images("val", *last)
        return result

    def calibration_intrinsics(self) -> Optional[List[float]]:
        """The recording's calibrated K as fx/W, fy/H, cx/W, cy/H (None when the bags have none)."""
        report = self.report
        if report is None or not getattr(report, "calibrated", True):
            return None
        values = getattr(report, "normalized_intrinsics", None)
        return [float(value) for value in values] if values is not None else None

    @torch.no_grad()
    def estimate_intrinsics(self, max_samples: int = INTRINSICS_ESTIMATE_SAMPLES) -> Optional[List[float]]:
        """What the camera head says about the camera: mean normalised intrinsics (fx/W, fy/H, cx/W, cy/H)
        over up to ``max_samples`` samples of the validation split (else the training split), eval mode.
        None without a camera head."""
        if not self.learn_intrinsics or self.pose_net is None:
            return None
        dataset = self.val_dataset if self.val_dataset is not None else self.train_dataset
        count = min(len(dataset), max_samples)
        if count == 0:
            return None
        self.pose_net.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        total, seen = torch.zeros(4, dtype=torch.float64), 0
        with torch.random.fork_rng(devices=devices):  # (augmented samples draw random numbers)
            loader = DataLoader(torch.utils.data.Subset(dataset, range(count)),
                                batch_size=self.config.optim.batch_size, num_workers=0)
            for batch in loader:
                batch = self.to_device(batch)
                _, _, raw = self.pose_net(
                    torch.cat([batch["prev_aug"], batch["target_aug"]], 0),
                    torch.cat([batch["target_aug"], batch["next_aug"]], 0),
                    with_intrinsics=True,
                )
                _, normalised = self.camera_intrinsics(raw.float(), batch)
                total += normalised.double().sum(0).cpu()
                seen += normalised.shape[0]
        return (total / seen).tolist()

    def scale_sources(self) -> List[str]:
        """What can teach (and check) metres: the stereo baseline, the odometry's distances."""
        sources = ["stereo baseline"] if self.stereo else []
        if self.temporal and (self.use_velocity or self.use_odometry_distance):
            has_odometry = (bool(self.report.has_odometry) if self.report is not None and hasattr(self.report, "has_odometry")
                            else bool(self.odometry_pairs > 0))
            if has_odometry:
                sources.append("odometry")
        return sources

    def has_scale_source(self) -> bool:
        """The run could learn metres (whether it did is :meth:`judge`'s held-out check)."""
        return bool(self.scale_sources())

    def is_metric(self) -> bool:
        """The model file's label: set by :meth:`judge` from the held-out scale checks."""
        return bool(self._metric)

    _metric = False

    def _scale_errors(self, batch: Dict[str, torch.Tensor], output: StepOutput) -> Dict[str, torch.Tensor]:
        """Scale sweeps (mono_depth_ros_training.scale) of one validation batch: {source: errors (F, B)}, NaN for
        samples a source cannot check (no odometry distance for the pair)."""
        sweeps: Dict[str, torch.Tensor] = {}
        sources = self.scale_sources()
        target, K, depth = batch["target"].float(), batch["K"].float(), output.depth.float()
        if "stereo baseline" in sources:
            sweeps["stereo baseline"] = scale_sweep(depth, target, [batch["stereo"].float()],
                                                    [batch["T_stereo_target"].float()], K)
        if "odometry" in sources and output.pose is not None and "odom_distance_prev" in batch:
            distances = torch.cat([batch["odom_distance_prev"], batch["odom_distance_next"]], 0).float()
            axis_angle, translation = output.pose
            T_target_prev, T_next_target = temporal_transforms(axis_angle, translation_at_distance(translation, distances))
            errors = scale_sweep(depth, target, [batch["prev"].float(), batch["next"].float()],
                                 [invert_transform(T_target_prev), T_next_target], K)
            batch_size = target.shape[0]
            known = (torch.isfinite(distances[:batch_size]) & torch.isfinite(distances[batch_size:])).to(errors.device)
            sweeps["odometry"] = torch.where(known.unsqueeze(0), errors, torch.full_like(errors, float("nan")))
        return sweeps

    def judge(self, result: "TrainResult") -> None:
        """Did training converge, and is the model metric? Runs a last validation when the last one is
        not of this step; fills result (converged, problems, metric, metric_reason, scale_checks)."""
        heldout: Dict[str, float] = {}
        if self.val_dataset is not None:
            heldout = self.last_validation if self.validated_step == self.step else self.validate()
        problems = self.health.problems()
        if "identity_error" in heldout:
            reading = HealthReading(*(heldout[key] for key in TrainingHealth.KEYS))
            problems += [f"held out: {text}" for text in describe_problems(
                reading, self.config.model.min_depth, self.config.model.max_depth)]
        self.problems = problems
        checks = self.scale_checks if self.val_dataset is not None else []
        if problems:
            reason = "training did not converge"
        elif not self.has_scale_source():
            reason = ("mono without odometry learns depth only up to an unknown scale"
                      if self.temporal else "no stereo baseline")
        elif self.val_dataset is None:
            reason = "no held-out frames to check the scale on (data.val_fraction is 0 or the bag is too short)"
        else:
            reason = scale_verdict(checks)
        self._metric = not reason
        self.metric_reason = reason or "; ".join(check.describe() for check in checks)
        result.converged, result.problems = not problems, list(problems)
        result.metric, result.metric_reason = self._metric, self.metric_reason
        result.scale_checks = [check.to_dict() for check in checks]
