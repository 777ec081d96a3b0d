"""Self-supervised training loop: Monodepth2 (mono, mono+stereo) and Monodepth v1-style stereo.

:func:`train` is the entry point (the CLI calls it): it reads bags through
:func:`mono_depth_ros_training.data.build_datasets`, trains, validates every epoch, writes checkpoints
atomically and exports the deployable model file the node loads.

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

Distributed: launched by ``torchrun`` (WORLD_SIZE > 1), every process trains on its own
shard with DistributedDataParallel (NCCL on CUDA, gloo on the CPU); only rank 0 logs and
writes files.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import math
import os
import pickle
import re
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from mono_depth_ros.devices import DeviceUnavailableError, parse_device, torch_device
from mono_depth_ros.geometry import DisparityRange, invert_transform, pose_vector_to_matrix
from mono_depth_ros.memory import keep_freed_memory_in_process
from mono_depth_ros.model_file import ModelMetadata, save_model_file
from mono_depth_ros.networks import (
    DepthNet,
    PoseNet,
    PretrainedWeightsUnavailable,
    SemanticWeightsUnavailable,
    intrinsics_from_camera_head,
)

from .config import (
    STEREO_MODES,
    TEMPORAL_MODES,
    ConfigError,
    TrainConfig,
    config_to_dict,
    save_config,
)
from .health import TrainingHealth, advice, depth_statistics, describe_problems, HealthReading
from .losses import lr_consistency, multiscale_view_loss, velocity_loss
from .metrics import DEPTH_METRIC_NAMES, MetricAverager, batch_depth_metrics
from .scale import (ScaleCheck, check_scale, derive_initial_depth, nominal_initial_depth, nominal_step, scale_sweep,
                    scale_verdict, translation_at_distance)

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
INTRINSICS_NAMES = ("fx", "fy", "cx", "cy")  # normalised: fx / W, fy / H, cx / W, cy / H
# Samples the camera head averages over for the learned K the model file records.
INTRINSICS_ESTIMATE_SAMPLES = 32


class RunError(RuntimeError):
    """The run cannot start or continue as asked (run directory, checkpoint or data size)."""


# --------------------------------------------------------------------------- distributed


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    initialized_here = False
    if not dist.is_initialized():
        if device.type == "cuda":
            try:  # binding the device up front lets NCCL set up eagerly (torch >= 2.3)
                dist.init_process_group(backend="nccl", device_id=device)
            except TypeError:
                dist.init_process_group(backend="nccl")
        else:
            dist.init_process_group(backend="gloo")
        initialized_here = True
    return DistributedContext(rank, world_size, local_rank, initialized_here)


def select_device(config: TrainConfig) -> torch.device:
    """config.device, or CUDA when available; under torchrun each process takes cuda:LOCAL_RANK."""
    try:  # the trainer never falls back: a run on the wrong device wastes hours
        device, _ = torch_device(parse_device(config.device), missing_cuda="raise")
    except (ValueError, DeviceUnavailableError) as error:
        raise ConfigError(str(error)) from error
    if device.type == "cuda":
        if device.index is None:
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    return device


# --------------------------------------------------------------------------- CPU performance

def keep_training_memory_in_process() -> None:
    """A CPU step at 640x192 batch 12 allocates and frees gigabytes in tensors of up to ~180 MB:
    keep all of it in the process for the next step (never trim), as the CUDA caching allocator
    does on the GPU. The process then keeps its peak training memory."""
    keep_freed_memory_in_process(mmap_threshold_bytes=1 << 30, trim_threshold_bytes=-1)


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


# --------------------------------------------------------------------------- sampling


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler whose epoch can start part-way, so a resumed run sees the
    same batches in the same order as an uninterrupted one (shuffle order = f(seed, epoch))."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.skip = 0

    def set_position(self, epoch: int, skip_samples: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip_samples

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class ShardSampler(Sampler):
    """Every world_size-th index from rank, in order, without padding (validation)."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def temporal_transforms(axis_angle: torch.Tensor, translation: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pose-network outputs for the (prev, target) then (target, next) pairs, (2B, 3) each
    -> (T_target_prev, T_next_target), (B, 4, 4) each. PoseNet(earlier, later) gives T_later_earlier."""
    batch_size = axis_angle.shape[0] // 2
    return (pose_vector_to_matrix(axis_angle[:batch_size], translation[:batch_size]),
            pose_vector_to_matrix(axis_angle[batch_size:], translation[batch_size:]))


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


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker; give NumPy and random the same per-worker seed.
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


# --------------------------------------------------------------------------- checkpoints


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


def _refused_pickle_detail(error: Exception) -> str:
    """The line of torch's weights_only refusal that says what was refused (without its advice to
    load the file unsafely)."""
    text = str(error)
    match = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\s*Please use|\n\n|$)", text, re.S)
    return " ".join((match.group(1) if match else (text.splitlines() or [""])[0]).split())


def _refused_global(error: Exception) -> str:
    """'io.open' when torch refused to unpickle a call of that function or class, else ''."""
    match = re.search(r"Unsupported global: GLOBAL (\S+?)\.? was not an allowed global", str(error))
    return match.group(1) if match else ""


def load_checkpoint(path) -> Dict[str, Any]:
    """Load a training checkpoint safely (weights_only: tensors and primitives, no code).

    A file that asks to build other objects when unpickled (which could run code) is refused
    without running anything: RunError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on the pickle protocol of foreign files
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(error)
        if refused:
            raise RunError(
                f"checkpoint {path} was refused and not loaded: unpickling it would call {refused}, i.e. run code, "
                f"which a mono_depth_ros checkpoint never does. It is damaged or was not written by the trainer; "
                f"do not load it elsewhere unless you know where it came from, and start a new run in another "
                f"--out directory (or restore this run's checkpoint)."
            ) from None
        raise RunError(
            f"checkpoint {path} cannot be read ({_refused_pickle_detail(error)}); it is damaged or not a checkpoint, "
            f"and was refused without running anything in it"
        ) from None
    except Exception as error:
        raise RunError(f"checkpoint {path} cannot be read ({error}); it is damaged or not a checkpoint") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a mono_depth_ros training checkpoint")
    if checkpoint.get("version", 0) > CHECKPOINT_VERSION:
        raise RunError(f"{path} was written by a newer mono_depth_ros; update it to resume this run")
    return checkpoint


def _rng_state() -> Dict[str, Any]:
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


def _set_rng_state(state: Dict[str, Any]) -> None:
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


# --------------------------------------------------------------------------- visualisation


def _colourised(depth: torch.Tensor) -> np.ndarray:
    """(1, H, W) depth -> (H, W, 3) uint8 RGB (near bright, far dark)."""
    from mono_depth_ros.colorize import colorize_depth

    bgr = colorize_depth(depth[0].detach().float().cpu().numpy())
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _image(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    array = tensor.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).numpy()
    return (array * 255.0 + 0.5).astype(np.uint8)


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


# --------------------------------------------------------------------------- results


@dataclass
class StepOutput:
    """Losses of one batch (tensors, detached for logging except ``total``) and visuals."""

    total: torch.Tensor
    parts: Dict[str, torch.Tensor]
    depth: torch.Tensor  # (B, 1, H, W) scale-0 depth of the target
    warped: torch.Tensor  # (S, B, 3, H, W) scale-0 reconstructions of the target
    automask: torch.Tensor  # (B, 1, H, W)
    source_names: List[str]
    intrinsics: Optional[torch.Tensor] = None  # (B, 4) learned fx/W, fy/H, cx/W, cy/H (unmirrored), detached
    # Temporal modes: the pose network's (axis_angle, translation) for the (prev, target) then the
    # (target, next) pairs, (2B, 3) each, as predicted (before any odometry rescaling), detached.
    pose: Optional[Tuple[torch.Tensor, torch.Tensor]] = None


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


# --------------------------------------------------------------------------- trainer


class Trainer:
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

    def _loader(self, dataset: Dataset, sampler: Sampler, epoch: int, drop_last: bool) -> DataLoader:
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
            worker_init_fn=_seed_worker if workers > 0 else None,
            generator=generator,
        )

    # ------------------------------------------------------------------ losses

    def _to_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        non_blocking = self.device.type == "cuda"
        return {
            key: value.to(self.device, non_blocking=non_blocking) if torch.is_tensor(value) else value
            for key, value in batch.items()
        }

    def compute_losses(self, batch: Dict[str, torch.Tensor], training: bool = True) -> StepOutput:
        """Forward both networks on a batch (already on the device) and build the loss."""
        config = self.config
        depth_net = self.depth_train if training else self.depth_net
        pose_net = self.pose_train if training else self.pose_net
        target = batch["target"].float()
        K = batch["K"].float()
        batch_size = target.shape[0]
        min_depth, max_depth = config.model.min_depth, config.model.max_depth
        autocast = torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)

        with autocast:
            if self.stereo_head:  # (left, right) disparity from the target alone
                disparities = depth_net(batch["target_aug"], both_views=True)
            elif self.other_view:  # one forward for both views (one DDP call)
                disparities = depth_net(torch.cat([batch["target_aug"], batch["stereo_aug"]], 0))
            else:
                disparities = depth_net(batch["target_aug"])
        disparities = {scale: value.float() for scale, value in disparities.items()}
        if self.stereo_head:
            target_disp = {scale: value[:, :1] for scale, value in disparities.items()}
            stereo_disp = {scale: value[:, 1:2] for scale, value in disparities.items()}
        else:
            target_disp = {scale: value[:batch_size] for scale, value in disparities.items()}
            stereo_disp = {scale: value[batch_size:] for scale, value in disparities.items()}
        intrinsics = None

        sources: List[torch.Tensor] = []
        transforms: List[torch.Tensor] = []
        names: List[str] = []
        parts: Dict[str, torch.Tensor] = {}
        total = target.new_zeros(())
        if self.temporal:
            with autocast:
                pose_outputs = pose_net(
                    torch.cat([batch["prev_aug"], batch["target_aug"]], 0),
                    torch.cat([batch["target_aug"], batch["next_aug"]], 0),
                    with_intrinsics=self.learn_intrinsics,
                )
            axis_angle, translation = pose_outputs[0].float(), pose_outputs[1].float()
            if self.learn_intrinsics:
                K, intrinsics = self.camera_intrinsics(pose_outputs[2].float(), batch)
            distances = None
            if (self.use_velocity or self.use_odometry_distance) and "odom_distance_prev" in batch:
                distances = torch.cat([batch["odom_distance_prev"], batch["odom_distance_next"]], 0).float()
                if training:
                    self.odometry_pairs += torch.isfinite(distances).sum()
            warp_translation = translation
            if self.use_odometry_distance and distances is not None:
                warp_translation = translation_at_distance(translation, distances)
            elif self.use_constant_speed:
                distances = translation.new_full((translation.shape[0],), self.nominal_step)
                warp_translation = translation_at_distance(translation, distances)
            T_target_prev, T_next_target = temporal_transforms(axis_angle, warp_translation)
            sources += [batch["prev"].float(), batch["next"].float()]
            transforms += [invert_transform(T_target_prev), T_next_target]
            names += ["prev", "next"]
            # With a constant speed the pose network learns the nominal step, so its translations
            # stay in the depth's units (the node's visual odometry relies on it).
            if (self.use_velocity or self.use_constant_speed) and distances is not None:
                velocity = velocity_loss(translation, distances)
                parts["velocity"] = velocity.detach()
                total = total + config.loss.velocity_weight * velocity
        if self.stereo:
            sources.append(batch["stereo"].float())
            transforms.append(batch["T_stereo_target"].float())
            names.append("stereo")

        loss_options = dict(
            min_depth=min_depth,
            max_depth=max_depth,
            ssim_weight=config.loss.ssim_weight,
            smoothness_weight=config.loss.smoothness,
            automask=config.loss.automask,
            min_reprojection=config.loss.min_reprojection,
        )
        view = multiscale_view_loss(target_disp, target, sources, transforms, K, **loss_options)
        photometric, smoothness = view.photometric, view.smoothness
        view_total = view.total
        keep = self._other_view_samples(batch) if self.other_view else None
        if keep is not None and keep.numel() > 0:
            # Monodepth v1: the other camera's image is a target too (reconstructed from this one),
            # and the two disparity maps must agree.
            def chosen(value: torch.Tensor) -> torch.Tensor:
                return value if keep.numel() == batch_size else value.index_select(0, keep)

            this_view = {scale: chosen(value) for scale, value in target_disp.items()}
            other_view = {scale: chosen(value) for scale, value in stereo_disp.items()}
            T_stereo_target = chosen(batch["T_stereo_target"].float())
            T_target_stereo = invert_transform(T_stereo_target)
            K_pair = chosen(K)
            other = multiscale_view_loss(
                other_view, chosen(batch["stereo"].float()), [chosen(target)], [T_target_stereo], K_pair, **loss_options
            )
            view_total = (view_total + other.total) / 2
            photometric = (photometric + other.photometric) / 2
            smoothness = (smoothness + other.smoothness) / 2
            if self.use_lr:
                height, width = target.shape[-2:]
                consistency = target.new_zeros(())
                for scale in this_view:
                    this_disp, other_disp = this_view[scale], other_view[scale]
                    if this_disp.shape[-2:] != (height, width):
                        this_disp = F.interpolate(this_disp, size=(height, width), mode="bilinear", align_corners=False)
                        other_disp = F.interpolate(other_disp, size=(height, width), mode="bilinear", align_corners=False)
                    consistency = consistency + lr_consistency(
                        this_disp, other_disp, T_stereo_target, K_pair, min_depth=min_depth, max_depth=max_depth
                    ) + lr_consistency(
                        other_disp, this_disp, T_target_stereo, K_pair, min_depth=min_depth, max_depth=max_depth
                    )
                consistency = consistency / (2 * len(this_view))
                parts["lr_consistency"] = consistency.detach()
                total = total + config.loss.lr_consistency * consistency
        total = total + view_total
        parts["photometric"] = photometric.detach()
        parts["smoothness"] = smoothness.detach()
        parts["automask_fraction"] = view.automask_fraction
        parts["reprojection_error"] = view.reprojection_error
        parts["identity_error"] = view.identity_error
        parts["saturated_fraction"], parts["log_depth_std"] = depth_statistics(view.depth, min_depth, max_depth)
        parts["total"] = total.detach()
        if intrinsics is not None:
            intrinsics = intrinsics.detach()
            for index, name in enumerate(INTRINSICS_NAMES):
                parts[f"intrinsics_{name}"] = intrinsics[:, index].mean()
        pose = (axis_angle.detach(), translation.detach()) if self.temporal else None
        return StepOutput(total, parts, view.depth, view.warped, view.automask, names, intrinsics, pose)

    def _other_view_samples(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Indices of the samples whose other camera view is a reconstruction target (see other_view).

        All samples with two forward passes. With the stereo head, only unmirrored ones: in a mirrored
        sample the other camera sits on the target's left, which a network seeing only the (mirrored)
        target cannot know, so its second channel learns from unmirrored samples (as Monodepth v1, which
        swaps the views instead; here the target must stay the temporal frames' camera).
        """
        batch_size = batch["target"].shape[0]
        flipped = batch.get("flipped")
        if not self.stereo_head or not torch.is_tensor(flipped):
            return torch.arange(batch_size, device=self.device)
        return (~flipped.reshape(-1).bool()).nonzero().reshape(-1).to(self.device)

    def camera_intrinsics(self, raw_pairs: torch.Tensor, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Camera-head codes of the (prev, target) and (target, next) pairs (2B, 4)
        -> (K (B, 3, 3) for the loss, in the sample's possibly mirrored image; the camera's normalised
        intrinsics (B, 4) fx/W, fy/H, cx/W, cy/H of the unmirrored image).

        The head describes the camera, not the picture: its K is that of the unmirrored image, and a
        mirrored sample uses cx -> (W - 1) - cx (as data.flip_intrinsics). refine corrects the given K
        (unmirrored first) the same way.
        """
        batch_size = raw_pairs.shape[0] // 2
        raw = (raw_pairs[:batch_size] + raw_pairs[batch_size:]) / 2  # both pairs see the target's camera
        height, width = self.config.data.height, self.config.data.width
        flipped = batch.get("flipped")
        flipped = (flipped.reshape(-1).bool() if torch.is_tensor(flipped)
                   else torch.zeros(batch_size, dtype=torch.bool, device=raw.device))

        def mirror(K: torch.Tensor) -> torch.Tensor:
            mirrored = K.clone()
            mirrored[:, 0, 2] = torch.where(flipped, (width - 1) - K[:, 0, 2], K[:, 0, 2])
            return mirrored

        given = mirror(batch["K"].float()) if self.config.model.intrinsics == "refine" else None
        K_camera = intrinsics_from_camera_head(raw, width, height, given)
        normalised = torch.stack(
            [K_camera[:, 0, 0] / width, K_camera[:, 1, 1] / height, K_camera[:, 0, 2] / width, K_camera[:, 1, 2] / height],
            dim=-1,
        )
        return mirror(K_camera), normalised

    # ------------------------------------------------------------------ training

    def train_step(self, batch: Dict[str, Any]) -> StepOutput:
        """One optimiser step on a batch (moved to the device here)."""
        self.depth_net.train()
        if self.pose_net is not None:
            self.pose_net.train()
        batch = self._to_device(batch)
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
                loader = self._loader(self.train_dataset, self.sampler, self.epoch, drop_last=True)
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
                        self._log_images("train", batch, output)
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
            self.log(self._format_validation(metrics))
        self.save_checkpoint()

    def _format_validation(self, metrics: Dict[str, float]) -> str:
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

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Photometric loss (and depth metrics where samples carry ground truth) on the validation split."""
        if self.val_dataset is None:
            return {}
        self.depth_net.eval()
        if self.pose_net is not None:
            self.pose_net.eval()
        sampler = ShardSampler(len(self.val_dataset), self.context.rank, self.context.world_size)
        loader = self._loader(self.val_dataset, sampler, 0, drop_last=False)
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
                batch = self._to_device(batch)
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
            errors = self._gather_columns(sweeps.get(source, []))
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
                self._log_images("val", *last)
        return result

    # ------------------------------------------------------------------ logging

    def _open_writer(self) -> None:
        if self.writer is not None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step or None)

    def _log_scalars(self, prefix: str, parts: Dict[str, torch.Tensor]) -> None:
        for name, value in parts.items():
            self.writer.add_scalar(f"{prefix}/{name}", float(value), self.step)

    def _log_images(self, prefix: str, batch: Dict[str, Any], output: StepOutput) -> None:
        writer = self.writer
        writer.add_image(f"{prefix}/target", _image(batch["target"][0]), self.step, dataformats="HWC")
        writer.add_image(f"{prefix}/depth", _colourised(output.depth[0]), self.step, dataformats="HWC")
        for index, name in enumerate(output.source_names):
            writer.add_image(f"{prefix}/reconstruction_from_{name}", _image(output.warped[index][0]), self.step, dataformats="HWC")
        mask = output.automask[0, 0].float().cpu().numpy()
        writer.add_image(f"{prefix}/automask", (mask * 255).astype(np.uint8)[None], self.step, dataformats="CHW")
        if "depth_gt" in batch and bool((batch["depth_gt"][0] > 0).any()):
            writer.add_image(f"{prefix}/depth_gt", _colourised(batch["depth_gt"][0]), self.step, dataformats="HWC")

    # ------------------------------------------------------------------ state

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
                batch = self._to_device(batch)
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

    def _gather_columns(self, parts: List[torch.Tensor]) -> torch.Tensor:
        """Concatenate (F, B) blocks along samples, over all ranks."""
        local = torch.cat(parts, 1) if parts else torch.empty(0, 0)
        if self.context.enabled:
            gathered: List[Any] = [None] * self.context.world_size
            dist.all_gather_object(gathered, local)
            local = torch.cat([block for block in gathered if block.numel()], 1) if any(
                block.numel() for block in gathered) else local
        return local

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
            "rng": _rng_state(),
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
            _set_rng_state(checkpoint["rng"])
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


# --------------------------------------------------------------------------- entry point


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


def _rank_zero_first(context: DistributedContext, function: Callable[[], Any]) -> Any:
    """Run ``function`` on rank 0 first (it fills shared caches), then on the other ranks."""
    if not context.is_main:
        context.barrier()
    value = function()
    if context.is_main:
        context.barrier()
    return value


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

            datasets = _rank_zero_first(
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
