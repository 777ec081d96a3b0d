"""Checkpoints and the model file of a run: atomic writes, safe loading, resuming, export.

Run directory layout (``out_dir``)::

    config.yaml               resolved configuration
    checkpoints/last.pt       latest checkpoint (torch.save of tensors/primitives only)
    tensorboard/              TensorBoard event files
    model.safetensors         deployable model (mono_depth_ros.model_file)

Checkpoints and the model file are written to a temporary file and renamed into place: a
process killed mid-write leaves the previous file intact (and a ``.<name>.<pid>.tmp`` that the
next run in the directory removes); a write that fails (disk full, file too large, I/O error)
raises RunError saying what survived and how to continue. --resume loads checkpoints with
``weights_only``: a file that would run code when unpickled is refused without running it.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import os
import pickle
import random
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from mono_depth_ros.model_file import ModelMetadata, save_model_file
from mono_depth_ros.safe_loading import load_weights_only, refused_global, refused_pickle_detail

from .config import ConfigError, TrainConfig, config_to_dict
from .errors import RunError

CHECKPOINT_FORMAT = "mono_depth_ros.train_checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "last.pt"
MODEL_NAME = "model.safetensors"
# Settings a resumed run cannot change: they change what the saved weights mean, or the optimiser,
# scheduler and position in the epoch that the checkpoint restores.
STRUCTURAL_KEYS = (
    "mode", "model.encoder", "model.num_layers", "model.scales", "model.min_depth", "model.max_depth", "data.width", "data.height",
    "model.intrinsics", "model.upsampling", "model.semantic", "model.stereo_head",
    "optim.lr", "optim.batch_size", "optim.schedule", "optim.scheduler_step", "optim.scheduler_gamma",
    "optim.warmup_fraction",
)
# Defaults when these settings were introduced, for checkpoints written before they existed.
LEGACY_DEFAULTS = {"model.encoder": "resnet", "optim.schedule": "step"}


def match_optimizer_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each parameter's optimiser state tensors the parameter's memory layout.

    The fused Adam kernel walks parameter, gradient and state as flat arrays: a state saved from
    a channels_last run and loaded for a contiguous one (or the reverse) silently mixes elements.
    """
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == parameter.shape and value.stride() != parameter.stride():
                    state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def _fsync_directory(directory: Path) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


class _CompleteWriter:
    """File object for torch.save whose writes either complete or raise the system's OSError.

    torch's zip writer turns a failed write (disk full, file too large) into an opaque RuntimeError
    about byte positions; this keeps the OSError (ENOSPC, EFBIG, EIO, ...) so the caller can say what
    happened."""

    def __init__(self, raw):
        self.raw = raw  # unbuffered FileIO
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        written = 0
        try:
            while written < len(view):
                count = self.raw.write(view[written:])
                if not count:
                    raise OSError(errno.EIO, "the write made no progress")
                written += count
        except OSError as error:
            self.error = self.error or error
            raise
        return written

    def flush(self) -> None:
        pass  # unbuffered


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """torch.save to a temporary file in the same directory, fsync, then rename over ``path``.

    A crash at any point leaves either the previous file or the new one, never half of one; a
    failed write raises the OSError (ENOSPC, EFBIG, EIO, ...) and removes the temporary. A process
    killed mid-write leaves its temporary ``.<name>.<pid>.tmp`` (see remove_stale_temporary_files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb", buffering=0) as handle:
            writer = _CompleteWriter(handle)
            try:
                torch.save(obj, writer)
            except Exception:
                if writer.error is not None:
                    raise writer.error from None
                raise
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)
    return path


def stale_temporary_files(directory: Path, name: str) -> List[Path]:
    """Temporaries ``.<name>.<pid>.tmp`` / ``.<name>.<random>.tmp`` in ``directory`` whose writer is gone.

    atomic_torch_save and save_model_file remove their temporary on any error they see; one is left
    only when the process was killed (SIGKILL, power loss) mid-write. A temporary named after a
    process that is still running is kept: it may be writing right now.
    """
    stale = []
    for path in sorted(Path(directory).glob(f".{name}.*.tmp")):
        writer = path.name[len(name) + 2 : -len(".tmp")]  # a pid (checkpoints) or mkstemp's random part
        if writer.isdigit() and (int(writer) == os.getpid() or _process_running(int(writer))):
            continue
        stale.append(path)
    return stale


def _process_running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temporary_files(out_dir: Path, log: Callable[[str], None]) -> List[Path]:
    """Delete what a killed run left half-written in ``out_dir`` (checkpoint and model temporaries); log it."""
    out_dir = Path(out_dir)
    stale = stale_temporary_files(out_dir / "checkpoints", CHECKPOINT_NAME) + stale_temporary_files(out_dir, MODEL_NAME)
    removed = []
    for path in stale:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            log(f"WARNING: could not remove the incomplete file {path} ({error.strerror}); delete it by hand")
            continue
        removed.append((path, size))
    if removed:
        listing = ", ".join(f"{path.name} ({size / 1e6:.1f} MB)" for path, size in removed)
        log(
            f"removed {len(removed)} incomplete file(s) in {out_dir}: {listing}, left by a training process that was "
            f"killed while writing; the files they were to replace were never touched"
        )
    return [path for path, _ in removed]


_DISK_HINTS = {
    errno.ENOSPC: "is the disk full?",
    errno.EDQUOT: "is the disk quota used up?",
    errno.EFBIG: "is the file size limited (ulimit -f) or above the file system's maximum?",
    errno.EIO: "is the disk failing or disconnected?",
    errno.EROFS: "is the file system mounted read-only?",
    errno.EACCES: "is the run directory writable?",
    errno.EPERM: "is the run directory writable?",
}


def describe_write_error(error: OSError) -> str:
    """'No space left on device: is the disk full?' for an OSError of a file write."""
    text = error.strerror or str(error) or type(error).__name__
    hint = _DISK_HINTS.get(error.errno)
    return f"{text}: {hint}" if hint else text


def _fix_action(error: OSError) -> str:
    return "free space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that"


def load_checkpoint(path) -> Dict[str, Any]:
    """Load a training checkpoint safely (weights_only: tensors and primitives, no code).

    A file that asks to build other objects when unpickled (which could run code) is refused
    without running anything: RunError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        checkpoint = load_weights_only(path)
    except pickle.UnpicklingError as error:
        refused = refused_global(error)
        if refused:
            raise RunError(
                f"checkpoint {path} was refused and not loaded: unpickling it would call {refused}, i.e. run code, "
                f"which a mono_depth_ros checkpoint never does. It is damaged or was not written by the trainer; "
                f"do not load it elsewhere unless you know where it came from, and start a new run in another "
                f"--out directory (or restore this run's checkpoint)."
            ) from None
        raise RunError(
            f"checkpoint {path} cannot be read ({refused_pickle_detail(error)}); it is damaged or not a checkpoint, "
            f"and was refused without running anything in it"
        ) from None
    except Exception as error:
        raise RunError(f"checkpoint {path} cannot be read ({error}); it is damaged or not a checkpoint") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a mono_depth_ros training checkpoint")
    if checkpoint.get("version", 0) > CHECKPOINT_VERSION:
        raise RunError(f"{path} was written by a newer mono_depth_ros; update it to resume this run")
    return checkpoint


def rng_state() -> Dict[str, Any]:
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": [list(item) if isinstance(item, tuple) else item for item in random.getstate()],
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
         numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    )
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_checkpoint(out_dir) -> Dict[str, Any]:
    """The checkpoint that --resume continues in run directory ``out_dir``."""
    path = Path(out_dir) / "checkpoints" / CHECKPOINT_NAME
    if not path.exists():
        raise RunError(f"--resume: {out_dir} has no checkpoint ({path}); run without --resume to start")
    return load_checkpoint(path)


def _get_path(config_dict: Dict[str, Any], dotted: str) -> Any:
    node: Any = config_dict
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def check_resume_compatible(config: TrainConfig, checkpoint: Dict[str, Any]) -> None:
    """Refuse to resume with settings that change what the saved weights mean."""
    saved = checkpoint.get("config", {})
    current = config_to_dict(config)
    defaults = config_to_dict(TrainConfig())

    def saved_value(key: str) -> Any:
        # A setting added after the checkpoint was written had its default value then (for settings
        # whose default changed since, the value of that time).
        value = _get_path(saved, key)
        if value is None:
            return LEGACY_DEFAULTS.get(key, _get_path(defaults, key))
        return value

    changed = [
        f"{key} (checkpoint {saved_value(key)!r}, now {_get_path(current, key)!r})"
        for key in STRUCTURAL_KEYS
        if saved_value(key) != _get_path(current, key)
    ]
    if changed:
        raise ConfigError(
            "cannot resume: these settings differ from the checkpoint's: " + "; ".join(changed)
            + ". Resume with the run's own settings (leave them out), or start a new run in another --out directory."
        )


class Checkpointing:
    """The trainer's files: checkpoints (state_dict, save_checkpoint, load_state) and the model file.

    A mixin of :class:`mono_depth_ros_training.trainer.Trainer`, whose attributes it reads.
    """

    def state_dict(self) -> Dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "depth_net": self.depth_net.state_dict(),
            "pose_net": self.pose_net.state_dict() if self.pose_net is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "config": config_to_dict(self.config),
            "bags": list(self.bag_paths),
            "world_size": self.context.world_size,
            "pretrained": self.pretrained_used,
            "odometry_pairs": int(self.odometry_pairs),
        }

    def save_checkpoint(self) -> Optional[Path]:
        """Write checkpoints/last.pt atomically. A failed write (disk full, I/O error) raises RunError
        saying so; the previous checkpoint is left as it was and no temporary file remains."""
        if not self.context.is_main:
            return None
        try:
            path = atomic_torch_save(self.state_dict(), self.checkpoint_path)
        except OSError as error:
            raise RunError(
                f"could not write checkpoint {self.checkpoint_path} at step {self.step} ({describe_write_error(error)}); "
                + self._previous_checkpoint_text(error)
            ) from None
        self.saved_step = self.step
        return path

    def _previous_checkpoint_text(self, error: OSError) -> str:
        """What survives a failed write and how to continue."""
        if self.saved_step is not None and self.checkpoint_path.is_file():
            return (
                f"the previous checkpoint (step {self.saved_step}) is intact at {self.checkpoint_path}; "
                f"{_fix_action(error)} and continue with --resume"
            )
        if self.checkpoint_path.is_file():  # written by an earlier process of this run
            return (
                f"the previous checkpoint is intact at {self.checkpoint_path}; "
                f"{_fix_action(error)} and continue with --resume"
            )
        return (
            f"there is no previous checkpoint in {self.out_dir} yet, so nothing of this run can be resumed; "
            f"{_fix_action(error)} and start it again (without --resume)"
        )

    def load_state(self, checkpoint: Dict[str, Any]) -> None:
        """Continue a run from a checkpoint (same step count, optimiser, scheduler and RNG)."""
        check_resume_compatible(self.config, checkpoint)
        self.depth_net.load_state_dict(checkpoint["depth_net"])
        if self.pose_net is not None:
            self.pose_net.load_state_dict(checkpoint["pose_net"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        match_optimizer_state_layout(self.optimizer)  # the checkpoint may come from another device's layout
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = int(checkpoint["step"])
        self.saved_step = self.step
        self.epoch = int(checkpoint["epoch"])
        self.batch_in_epoch = int(checkpoint["batch_in_epoch"])
        self.pretrained_used = bool(checkpoint.get("pretrained", self.pretrained_used))
        self.odometry_pairs.fill_(int(checkpoint.get("odometry_pairs", 0)))
        if self.context.rank == 0:
            set_rng_state(checkpoint["rng"])
        else:  # other ranks: a fresh stream that depends on where the run resumed
            seed = self.config.seed + 7919 * self.context.rank + 104729 * self.step
            torch.manual_seed(seed)
            np.random.seed(seed % 2 ** 32)
            random.seed(seed)
        if self.batch_in_epoch >= self.steps_per_epoch:  # the split changed size since the checkpoint
            self.batch_in_epoch = 0
            self.epoch += 1

    # ------------------------------------------------------------------ export

    def model_metadata(self) -> ModelMetadata:
        config = self.config
        report = self.report
        training = {
            "mode": config.mode,
            "bags": list(self.bag_paths),
            "steps": self.step,
            "epochs": self.epoch,
            "seed": config.seed,
            "pretrained": self.pretrained_used,
            "velocity_supervision": bool(self.use_velocity and "odometry" in self.scale_sources()),
            "odometry_distance": bool(self.use_odometry_distance and "odometry" in self.scale_sources()),
            "initial_depth": self.initial_depth,
            "converged": not self.problems,
            "problems": list(self.problems),
            "metric_reason": self.metric_reason,
            "scale_checks": [check.to_dict() for check in self.scale_checks] if self.val_dataset is not None else [],
            "world_size": self.context.world_size,
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if report is not None and getattr(report, "baseline_m", None) is not None and self.stereo:
            training["baseline_m"] = float(report.baseline_m)
        intrinsics = self.calibration_intrinsics()
        if config.model.semantic:
            training["semantic_pretrained"] = bool(self.semantic_pretrained_used)
        if self.learn_intrinsics:
            self.learned_intrinsics = self.estimate_intrinsics()
            training["calibration_normalized_intrinsics"] = intrinsics  # what the bags' camera_info said (or None)
            intrinsics = self.learned_intrinsics
        return ModelMetadata(
            num_layers=config.model.num_layers,
            encoder=config.model.encoder,
            input_width=int(config.data.width),
            input_height=int(config.data.height),
            min_depth=config.model.min_depth,
            max_depth=config.model.max_depth,
            metric=self.is_metric(),
            depth_scale=1.0,
            rectified_input=bool(getattr(report, "rectified", False)) if report is not None else False,
            normalized_intrinsics=[float(value) for value in intrinsics] if intrinsics is not None else None,
            upsampling=config.model.upsampling,
            semantic=bool(config.model.semantic),
            stereo_head=bool(self.stereo_head),
            intrinsics=config.model.intrinsics if self.learn_intrinsics else "given",
            training=training,
        )

    def export_model(self, path=None) -> Path:
        """Write the deployable model file (depth network, plus the pose network in mono modes).

        A failed write (disk full, I/O error) raises RunError naming the file; an existing model
        file is left as it was and no temporary file remains."""
        path = Path(path) if path is not None else self.model_path
        try:
            return save_model_file(path, self.model_metadata(), self.depth_net, self.pose_net)
        except OSError as error:
            if self.saved_step is not None and self.checkpoint_path.is_file():
                then = (
                    f"the checkpoint {self.checkpoint_path} (step {self.saved_step}) holds the trained weights: "
                    f"{_fix_action(error)} and run again with --resume to write the model file"
                )
            else:
                then = f"{_fix_action(error)} and run again"
            raise RunError(f"could not write the model file {path} ({describe_write_error(error)}); {then}") from None

