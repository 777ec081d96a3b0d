"""The trainer: Monodepth2 (mono, mono+stereo) and Monodepth v1-style stereo, one run's networks and loop.

:class:`Trainer` builds the networks and optimiser, runs the loop (:meth:`Trainer.fit`), validates
every epoch and writes checkpoints and the model file. Its parts live beside it: the loss in
objective.py, validation and the metric verdict in validation.py, checkpoints and export in
checkpoints.py, process set-up in distributed.py; :func:`mono_depth_ros_training.run.train` is the
entry point that reads the bags and drives it.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mono_depth_ros.geometry import DisparityRange
from mono_depth_ros.networks import DepthNet, PoseNet, PretrainedWeightsUnavailable, SemanticWeightsUnavailable

from .checkpoints import CHECKPOINT_NAME, MODEL_NAME, Checkpointing
from .config import STEREO_MODES, TEMPORAL_MODES, TrainConfig
from .distributed import (DistributedContext, ResumableDistributedSampler, keep_training_memory_in_process,
                          seed_worker, select_device)
from .errors import RunError
from .health import TrainingHealth
from .objective import INTRINSICS_NAMES, Objective, StepOutput
from .scale import ScaleCheck, derive_initial_depth, nominal_initial_depth, nominal_step
from .validation import Validation, describe_intrinsics

def median_odometry_step(dataset: Dataset, max_samples: int = 64) -> Optional[float]:
    """Median odometry distance (metres) between a training sample's neighbouring frames, or None.

    Reads the sample index of a BagDataset; any other dataset is sampled (up to max_samples items)."""
    refs = getattr(dataset, "samples", None)
    values: List[float] = []
    if refs and hasattr(refs[0], "odom_distance_prev"):
        for ref in refs:
            values += [ref.odom_distance_prev, ref.odom_distance_next]
    else:
        stride = max(1, len(dataset) // max_samples)
        for index in range(0, len(dataset), stride)[:max_samples]:
            sample = dataset[index]
            values += [float(sample.get("odom_distance_prev", math.nan)), float(sample.get("odom_distance_next", math.nan))]
    known = [value for value in values if math.isfinite(value) and value > 0]
    return float(np.median(known)) if known else None


def initialise_disparity_heads(depth_net: torch.nn.Module, depth_m: float, min_depth: float, max_depth: float) -> None:
    """Make a fresh network start out predicting about ``depth_m`` everywhere.

    Monodepth2 starts at sigmoid 0.5, i.e. ~2 * min_depth: stereo warps then land far outside
    the image, and short runs can fall into the zero-disparity solution and stay there.
    Sets each disparity head's bias to the logit of depth_m's scaled disparity.
    """
    fraction = DisparityRange(min_depth, max_depth).scaled_to_sigmoid(1.0 / depth_m)
    fraction = min(max(fraction, 1e-4), 1.0 - 1e-4)
    bias = math.log(fraction / (1.0 - fraction))
    with torch.no_grad():
        for head in depth_net.decoder.disparity_heads.values():
            conv = head.conv if hasattr(head, "conv") else head
            conv.bias.fill_(bias)


def _colourised(depth: torch.Tensor) -> np.ndarray:
    """(1, H, W) depth -> (H, W, 3) uint8 RGB (near bright, far dark)."""
    from mono_depth_ros.colorize import colorize_depth

    bgr = colorize_depth(depth[0].detach().float().cpu().numpy())
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _image(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    array = tensor.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).numpy()
    return (array * 255.0 + 0.5).astype(np.uint8)


@dataclass
class TrainResult:
    model_path: Path
    checkpoint_path: Path
    step: int
    epoch: int
    metric: bool
    losses: List[float] = field(default_factory=list)  # training loss of each step of this invocation
    converged: bool = True  # False: a degenerate solution was detected (problems says which)
    problems: List[str] = field(default_factory=list)
    metric_reason: str = ""  # why the model is (not) labelled metric
    scale_checks: List[Dict[str, Any]] = field(default_factory=list)  # ScaleCheck.to_dict() of each source
    validation: List[Dict[str, float]] = field(default_factory=list)  # one entry per validation
    # model.intrinsics learned/refine: {"learned": [fx/W, fy/H, cx/W, cy/H], "calibration": same or None}
    intrinsics: Dict[str, Optional[List[float]]] = field(default_factory=dict)


REQUIRED_KEYS = {
    "mono": ("target", "target_aug", "prev", "next", "prev_aug", "next_aug", "K"),
    "stereo": ("target", "target_aug", "stereo", "stereo_aug", "K", "T_stereo_target"),
    "mono+stereo": ("target", "target_aug", "prev", "next", "prev_aug", "next_aug", "stereo", "stereo_aug", "K", "T_stereo_target"),
}


class Trainer(Objective, Validation, Checkpointing):
    """Owns the networks, optimiser and loops of one run.

    train_dataset / val_dataset yield samples as described in training/data/dataset.py (dicts of
    tensors). ``report`` is the data report (rectification, intrinsics, odometry) or None.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_dataset: Dataset,
        val_dataset: Optional[Dataset],
        out_dir,
        *,
        report: Any = None,
        bag_paths: Sequence[str] = (),
        log: Callable[[str], None] = print,
        context: Optional[DistributedContext] = None,
        device: Optional[torch.device] = None,
    ):
        self.config = config
        self.context = context or DistributedContext()
        self.device = device or select_device(config)
        self.out_dir = Path(out_dir)
        self.report = report
        self.bag_paths = [str(path) for path in bag_paths]
        self._log = log
        self.mode = config.mode
        self.temporal = config.mode in TEMPORAL_MODES
        self.stereo = config.mode in STEREO_MODES
        self.use_lr = self.stereo and config.loss.lr_consistency > 0
        # Monodepth v1's stereo head: both views' disparities from the target alone (one forward pass).
        self.stereo_head = self.stereo and config.model.stereo_head
        # The other camera's image is a reconstruction target too: with left-right consistency, or
        # always with the stereo head (it is what trains the head's second channel).
        self.other_view = self.use_lr or self.stereo_head
        self.learn_intrinsics = self.temporal and config.model.intrinsics != "given"
        self.learned_intrinsics: Optional[List[float]] = None  # estimated when the model is exported
        # Velocity supervision needs odometry; the data report says whether the bags have it.
        bag_has_odometry = report is None or bool(getattr(report, "has_odometry", True))
        self.use_velocity = self.temporal and config.loss.velocity_weight > 0 and bag_has_odometry
        # Warps at the odometry's distance (the pose network gives the direction).
        self.use_odometry_distance = self.temporal and config.loss.odometry_distance and bag_has_odometry
        # Mono without odometry: warps at a nominal step per frame (a constant speed).
        self.use_constant_speed = (self.temporal and not self.stereo and not self.use_odometry_distance
                                   and config.loss.constant_speed)
        self.amp = bool(config.amp and self.device.type == "cuda")
        self.train_dataset = train_dataset
        self.val_dataset = val_dataset if val_dataset is not None and len(val_dataset) > 0 else None
        self._check_sample(train_dataset, "training")
        self.initial_depth, self.initial_depth_origin = self._initial_depth()
        self.nominal_step = 0.0
        if self.use_constant_speed:
            sample = self.train_dataset[0]
            fx_over_width = float(sample["K"][0, 0]) / float(sample["target"].shape[-1])
            start = self.initial_depth if self.initial_depth > 0 else nominal_initial_depth(
                self.config.model.min_depth, self.config.model.max_depth)
            self.nominal_step = nominal_step(fx_over_width, start)

        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
        else:
            keep_training_memory_in_process()
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.pretrained_used = self._build_networks()
        torch.manual_seed(config.seed + 7919 * self.context.rank)  # per-rank randomness from here on
        np.random.seed((config.seed + 7919 * self.context.rank) % 2 ** 32)
        random.seed(config.seed + 7919 * self.context.rank)

        parameters = list(self.depth_net.parameters())
        if self.pose_net is not None:
            parameters += list(self.pose_net.parameters())
        parameters = [parameter for parameter in parameters if parameter.requires_grad]  # not the frozen semantic branch
        try:
            # The fused kernel is ~6x faster than the default per-tensor loop on the CPU too.
            self.optimizer = torch.optim.Adam(parameters, lr=config.optim.lr, fused=True)
        except (RuntimeError, TypeError, ValueError):  # older torch: no fused Adam on this device
            self.optimizer = torch.optim.Adam(parameters, lr=config.optim.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.depth_train: torch.nn.Module = self.depth_net
        self.pose_train: Optional[torch.nn.Module] = self.pose_net
        if self.context.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.depth_train = DDP(self.depth_net, device_ids=device_ids)
            if self.pose_net is not None:
                self.pose_train = DDP(self.pose_net, device_ids=device_ids)

        self.sampler = ResumableDistributedSampler(
            train_dataset, self.context.world_size, self.context.rank, config.seed
        )
        self.steps_per_epoch = self.sampler.num_samples // config.optim.batch_size
        if self.steps_per_epoch == 0:
            raise RunError(
                f"the training split has {len(train_dataset)} samples"
                + (f" ({self.sampler.num_samples} per process)" if self.context.enabled else "")
                + f", fewer than optim.batch_size={config.optim.batch_size}: lower optim.batch_size "
                "or record a longer bag"
            )
        total = config.optim.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.optim.max_steps) if config.optim.max_steps else total
        # A step schedule advances once per epoch, one-cycle once per optimiser step.
        self.scheduler_per_step = config.optim.schedule == "onecycle"
        if self.scheduler_per_step:
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=config.optim.lr, total_steps=max(self.total_steps, 2),
                pct_start=config.optim.warmup_fraction, anneal_strategy="cos",
                cycle_momentum=False,  # Adam's betas stay as they are
            )
        else:
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                self.optimizer, step_size=config.optim.scheduler_step, gamma=config.optim.scheduler_gamma
            )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.writer = None
        self.checkpoint_path = self.out_dir / "checkpoints" / CHECKPOINT_NAME
        self.saved_step: Optional[int] = None  # step of the checkpoint on disk, once known
        # Frame pairs with a known odometry distance so far (a device tensor: no per-step sync).
        self.odometry_pairs = torch.zeros((), device=self.device)
        self.model_path = self.out_dir / MODEL_NAME
        self.health = TrainingHealth(config.model.min_depth, config.model.max_depth)
        # Set at the end of fit(): held-out scale checks, and the training verdict.
        self.scale_checks: List[ScaleCheck] = []
        self.problems: List[str] = []
        self.metric_reason = "the scale was not checked"
        self.validated_step: Optional[int] = None
        self.last_validation: Dict[str, float] = {}

    # ------------------------------------------------------------------ setup

    def log(self, message: str) -> None:
        if self.context.is_main:
            self._log(message)

    def _check_sample(self, dataset: Dataset, split: str) -> None:
        if len(dataset) == 0:
            raise RunError(f"the {split} split is empty: record a longer bag or lower data.val_fraction")
        sample = dataset[0]
        missing = [key for key in REQUIRED_KEYS[self.mode] if key not in sample]
        if missing:
            raise RunError(
                f"{split} samples lack {', '.join(missing)}, which mode '{self.mode}' needs; "
                "build the datasets with the same mode"
            )

    def _initial_depth(self) -> Tuple[float, str]:
        """(depth fresh networks start at, where it came from); 0 = Monodepth2's start."""
        configured = self.config.model.initial_depth
        if configured is not None:
            return float(configured), "model.initial_depth" if configured > 0 else "Monodepth2's initialisation"
        sample = self.train_dataset[0]
        fx_over_width = float(sample["K"][0, 0]) / float(sample["target"].shape[-1])
        baseline = None
        if self.stereo:
            baseline = float(torch.linalg.vector_norm(sample["T_stereo_target"][:3, 3]))
        step = None
        if self.temporal and self.use_odometry_distance:
            step = median_odometry_step(self.train_dataset)
        depth = derive_initial_depth(fx_over_width, baseline_m=baseline, step_m=step,
                                     min_depth=self.config.model.min_depth, max_depth=self.config.model.max_depth)
        if depth is None and self.use_constant_speed:
            return (nominal_initial_depth(self.config.model.min_depth, self.config.model.max_depth),
                    "no scale in the bag: depth in units of a nominal camera step per frame")
        if depth is None:
            return 0.0, "Monodepth2's initialisation (the bag gives no scale)"
        if baseline:
            origin = f"the stereo baseline {baseline:.3g} m and fx/W {fx_over_width:.3g}"
        else:
            origin = f"the odometry's {step:.3g} m between frames and fx/W {fx_over_width:.3g}"
        return depth, origin

    def _build_networks(self) -> bool:
        config = self.config.model
        pretrained = config.pretrained
        semantic_pretrained = pretrained

        def build(use_pretrained: bool, use_semantic_pretrained: bool):
            depth = DepthNet(
                config.num_layers, pretrained=use_pretrained, scales=config.scales, encoder=config.encoder,
                upsampling=config.upsampling, semantic=config.semantic, stereo_head=self.stereo_head,
                semantic_pretrained=use_semantic_pretrained,
            )
            pose = None
            if self.temporal:
                pose = PoseNet(config.num_layers, pretrained=use_pretrained, encoder=config.encoder,
                               camera_head=self.learn_intrinsics)
            return depth, pose

        # Rank 0 first, so only one process downloads ImageNet weights into the shared cache.
        if not self.context.is_main:
            self.context.barrier()
        while True:  # each failure below switches one kind of weights off, so this ends
            try:
                depth, pose = build(pretrained, semantic_pretrained)
                break
            except SemanticWeightsUnavailable as error:
                self.log(
                    f"WARNING: {error}\nWARNING: the semantic branch starts from random weights and stays frozen: "
                    "its features carry no semantics, so expect no gain from model.semantic. The model file "
                    "records semantic_pretrained: false."
                )
                semantic_pretrained = False
            except PretrainedWeightsUnavailable as error:
                self.log(
                    f"WARNING: {error}\nWARNING: training starts from random weights; expect clearly worse "
                    "depth than with ImageNet initialisation. The model file records pretrained: false."
                )
                pretrained = False
            torch.manual_seed(self.config.seed)
        self.semantic_pretrained_used = bool(config.semantic and semantic_pretrained)
        if self.context.is_main:
            self.context.barrier()
        if self.initial_depth > 0:
            initialise_disparity_heads(depth, self.initial_depth, config.min_depth, config.max_depth)
        # channels_last: oneDNN's convolutions (forward and backward) run faster on NHWC on the CPU.
        memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.depth_net = depth.to(self.device, memory_format=memory_format)
        self.pose_net = pose.to(self.device, memory_format=memory_format) if pose is not None else None
        return pretrained

    def data_loader(self, dataset: Dataset, sampler: Sampler, epoch: int, drop_last: bool) -> DataLoader:
        workers = int(getattr(self.config.data, "num_workers", 0) or 0)
        generator = torch.Generator()
        # Worker seeds depend only on (seed, epoch, rank), never on the global RNG.
        generator.manual_seed(self.config.seed * 1_000_003 + epoch * 7919 + self.context.rank)
        return DataLoader(
            dataset,
            batch_size=self.config.optim.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            worker_init_fn=seed_worker if workers > 0 else None,
            generator=generator,
        )

    # ------------------------------------------------------------------ training

    def train_step(self, batch: Dict[str, Any]) -> StepOutput:
        """One optimiser step on a batch (moved to the device here)."""
        self.depth_net.train()
        if self.pose_net is not None:
            self.pose_net.train()
        batch = self.to_device(batch)
        output = self.compute_losses(batch, training=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(output.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return output

    def fit(self) -> TrainResult:
        """Train until config.optim.epochs (or max_steps) are done; returns what happened."""
        config = self.config
        result = TrainResult(self.model_path, self.checkpoint_path, self.step, self.epoch, False)
        if self.context.is_main:
            self._open_writer()
        images_per_step = config.optim.batch_size * self.context.world_size
        progress = self._progress_bar()
        window_start, window_steps = time.perf_counter(), 0
        images_per_s = 0.0
        window_losses: List[torch.Tensor] = []  # read back every few steps, not every step (GPU sync)
        window_health: List[torch.Tensor] = []
        reported_problems: List[str] = []
        done = self.step >= self.total_steps
        try:
            while not done and self.epoch < config.optim.epochs:
                self.sampler.set_position(self.epoch, self.batch_in_epoch * config.optim.batch_size)
                loader = self.data_loader(self.train_dataset, self.sampler, self.epoch, drop_last=True)
                for batch in loader:
                    output = self.train_step(batch)
                    # A resumed run given more steps than its one-cycle schedule was built for keeps the
                    # schedule's final rate (OneCycleLR cannot be stretched).
                    if self.scheduler_per_step and self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
                        self.scheduler.step()
                    self.step += 1
                    self.batch_in_epoch += 1
                    window_steps += 1
                    window_losses.append(output.parts["total"])
                    window_health.append(torch.stack([output.parts[key].float() for key in TrainingHealth.KEYS]))
                    if progress is not None:
                        progress.update(1)
                    epoch_done = self.batch_in_epoch >= self.steps_per_epoch
                    done = self.step >= self.total_steps
                    if self.step % config.log.log_every == 0 or window_steps >= 10 or done or epoch_done:
                        values = torch.stack(window_losses).tolist()
                        window_losses = []
                        for row in torch.stack(window_health).tolist():
                            self.health.add(dict(zip(TrainingHealth.KEYS, row)))
                        window_health = []
                        problems = self.health.problems()
                        if problems and problems != reported_problems:
                            self.log(f"WARNING: step {self.step}: training is collapsing: {'; '.join(problems)}")
                        reported_problems = problems
                        result.losses.extend(values)
                        if not all(math.isfinite(value) for value in values):
                            raise RunError(
                                f"the loss became {values[-1]} by step {self.step}; lower optim.lr (or set amp=false) "
                                "and resume from the last checkpoint"
                            )
                        elapsed = time.perf_counter() - window_start
                        images_per_s = window_steps * images_per_step / max(elapsed, 1e-9)
                        if progress is not None:
                            # refresh=False: tqdm's own interval decides when to redraw (one line per
                            # 30 s in log files, not one per update).
                            progress.set_postfix(
                                loss=f"{sum(values) / len(values):.4f}", img_s=f"{images_per_s:.1f}", epoch=self.epoch + 1,
                                warp_vs_identity=f"{self.health.reading().identity_ratio:.2f}",
                                health="COLLAPSED" if problems else "ok", refresh=False,
                            )
                        window_start, window_steps = time.perf_counter(), 0
                    if self.writer is not None and self.step % config.log.log_every == 0:
                        self._log_scalars("train", output.parts)
                        self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
                        self.writer.add_scalar("train/images_per_s", images_per_s, self.step)
                        for name, value in self.health.scalars().items():
                            self.writer.add_scalar(f"health/{name}", value, self.step)
                        self.writer.add_scalar("health/collapsed", float(bool(self.health.problems())), self.step)
                    if self.writer is not None and config.log.image_every and self.step % config.log.image_every == 0:
                        self.log_images("train", batch, output)
                    if epoch_done:
                        self._end_epoch(result)  # scheduler step, validation, checkpoint
                        window_start, window_steps = time.perf_counter(), 0  # images/s: training time only
                    elif done or (config.log.checkpoint_every and self.step % config.log.checkpoint_every == 0):
                        self.save_checkpoint()
                        window_start, window_steps = time.perf_counter(), 0
                    if done or epoch_done:
                        break
        finally:
            if progress is not None:
                progress.close()
        result.step, result.epoch = self.step, self.epoch
        self.judge(result)
        if self.context.is_main:
            self.export_model()
            if self.learned_intrinsics is not None:
                calibration = self.calibration_intrinsics()
                result.intrinsics = {"learned": list(self.learned_intrinsics), "calibration": calibration}
                self.log(f"camera: {describe_intrinsics(self.learned_intrinsics, calibration)}")
                if self.writer is not None:
                    for index, name in enumerate(INTRINSICS_NAMES):
                        self.writer.add_scalar(f"intrinsics/{name}_learned", self.learned_intrinsics[index], self.step)
                        if calibration is not None:
                            self.writer.add_scalar(f"intrinsics/{name}_calibration", calibration[index], self.step)
        self.context.barrier()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
        return result

    def _end_epoch(self, result: TrainResult) -> None:
        if not self.scheduler_per_step:
            self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.config.val.enabled and self.val_dataset is not None:
            metrics = self.validate()
            result.validation.append(metrics)
            self.log(self.format_validation(metrics))
        self.save_checkpoint()

    def _progress_bar(self):
        if not self.context.is_main:
            return None
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()
        return tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            desc="train",
            dynamic_ncols=True,
            mininterval=0.5 if interactive else 30.0,
            file=sys.stderr,
        )

    # ------------------------------------------------------------------ logging

    def _open_writer(self) -> None:
        if self.writer is not None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step or None)

    def _log_scalars(self, prefix: str, parts: Dict[str, torch.Tensor]) -> None:
        for name, value in parts.items():
            self.writer.add_scalar(f"{prefix}/{name}", float(value), self.step)

    def log_images(self, prefix: str, batch: Dict[str, Any], output: StepOutput) -> None:
        writer = self.writer
        writer.add_image(f"{prefix}/target", _image(batch["target"][0]), self.step, dataformats="HWC")
        writer.add_image(f"{prefix}/depth", _colourised(output.depth[0]), self.step, dataformats="HWC")
        for index, name in enumerate(output.source_names):
            writer.add_image(f"{prefix}/reconstruction_from_{name}", _image(output.warped[index][0]), self.step, dataformats="HWC")
        mask = output.automask[0, 0].float().cpu().numpy()
        writer.add_image(f"{prefix}/automask", (mask * 255).astype(np.uint8)[None], self.step, dataformats="CHW")
        if "depth_gt" in batch and bool((batch["depth_gt"][0] > 0).any()):
            writer.add_image(f"{prefix}/depth_gt", _colourised(batch["depth_gt"][0]), self.step, dataformats="HWC")
