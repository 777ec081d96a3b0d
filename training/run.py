"""The entry point of a run: :func:`train` (the CLI calls it) and the lines a run ends with."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from .checkpoints import CHECKPOINT_NAME, check_resume_compatible, describe_write_error, remove_stale_temporary_files, resume_checkpoint
from .config import ConfigError, TrainConfig, save_config
from .distributed import rank_zero_first, select_device, setup_distributed
from .errors import RunError
from .health import advice
from .trainer import Trainer, TrainResult


def final_lines(result: TrainResult, mode: str = "", has_odometry: bool = True) -> List[str]:
    """What a run ends with: whether it converged, the scale checks, what the model file says."""
    lines = []
    if not result.converged:
        lines.append("training did not converge: " + "; ".join(result.problems))
        lines.append(advice(mode, has_odometry))
    for check in result.scale_checks:
        ratio, spread = check.get("ratio"), check.get("spread")
        measured = (f"{ratio:.3f} ± {spread:.3f} on {check['samples']} held-out samples"
                    if ratio is not None else "not measured")
        lines.append(f"scale check ({check['source']}): {measured}: "
                     + ("passed" if check["passed"] else f"failed: {check['reason']}"
                        if check.get("conclusive", True) else f"inconclusive: {check['reason']}"))
    if result.metric:
        lines.append(f"model (metric: held-out scale within 20 %) written after {result.step} steps")
    else:
        lines.append(f"model (relative depth, NOT metric: {result.metric_reason}; set depth_scale on the node, "
                     f"see docs/node.md, 'Scale') written after {result.step} steps")
    return lines


def train(
    config: TrainConfig,
    out_dir,
    bag_paths: Sequence[str] = (),
    *,
    resume: bool = False,
    datasets: Optional[Tuple[Dataset, Optional[Dataset], Any]] = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train from bags (or from ready ``datasets`` = (train, val, report)) into ``out_dir``.

    Without ``resume`` the run directory must not hold a checkpoint yet; with it, training
    continues from ``out_dir/checkpoints/last.pt`` (same step count, optimiser, scheduler and
    random state). Either way, temporaries left by a process killed mid-write in ``out_dir`` are
    removed first (logged). Returns a :class:`TrainResult`; the model file is ``result.model_path``.
    """
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / "checkpoints" / CHECKPOINT_NAME
    checkpoint = None
    if resume:
        checkpoint = resume_checkpoint(out_dir)
        check_resume_compatible(config, checkpoint)
    elif checkpoint_path.exists():
        raise RunError(
            f"{out_dir} already holds a run (checkpoint {checkpoint_path}): pass --resume to continue it, "
            "or choose another --out directory"
        )
    if datasets is None and not bag_paths:
        raise ConfigError("no bag given: pass --bag PATH (a rosbag2 directory or file)")

    device = select_device(config)
    context = setup_distributed(device)
    try:
        main_log = log if context.is_main else (lambda message: None)
        if context.is_main:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                remove_stale_temporary_files(out_dir, main_log)
                save_config(config, out_dir / "config.yaml")
            except OSError as error:
                raise RunError(
                    f"cannot write to the run directory {out_dir} ({describe_write_error(error)})"
                ) from None
        if datasets is None:
            from .data import build_datasets

            datasets = rank_zero_first(
                context, lambda: build_datasets(
                    [str(path) for path in bag_paths], config.data, config.mode, log=main_log,
                    require_calibration=config.model.intrinsics != "learned",
                )
            )
        train_dataset, val_dataset, report = datasets
        if report is not None:
            main_log(str(report))
        if context.enabled:
            threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", context.world_size)))
            if device.type == "cpu":
                torch.set_num_threads(threads)
        trainer = Trainer(
            config, train_dataset, val_dataset, out_dir, report=report, bag_paths=bag_paths,
            log=log, context=context, device=device,
        )
        if checkpoint is not None:
            trainer.load_state(checkpoint)
            main_log(f"resuming at step {trainer.step} (epoch {trainer.epoch + 1}) from {checkpoint_path}")
            if checkpoint.get("bags") and sorted(checkpoint["bags"]) != sorted(str(path) for path in bag_paths) and bag_paths:
                main_log("WARNING: the bags differ from the checkpoint's; training continues on the bags given now")
        main_log(
            f"training {config.mode} at {config.data.width}x{config.data.height} on {trainer.device}"
            f"{' with AMP' if trainer.amp else ''}"
            f"{f' x{context.world_size} processes' if context.enabled else ''}: "
            f"{len(train_dataset)} training / {len(val_dataset) if val_dataset is not None else 0} validation samples, "
            f"{trainer.steps_per_epoch} steps per epoch, {trainer.total_steps} steps in total"
        )
        main_log(f"initial depth: {trainer.initial_depth:g} m ({trainer.initial_depth_origin})"
                 if trainer.initial_depth > 0 else f"initial depth: {trainer.initial_depth_origin}")
        result = trainer.fit()
        for line in final_lines(result, config.mode, trainer.has_scale_source() or config.mode == "stereo"):
            main_log(line)
        return result
    finally:
        if context.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
