#!/usr/bin/env python3
"""Training throughput (images/s) of our trainer and of Monodepth2's published trainer, side by side.

Both train the same thing on the same batch: mono mode, frames (0, -1, +1), ResNet-18 depth
network and a separate ResNet-18 pose encoder + decoder on frame pairs, random weights,
scales 0-3 upsampled to full resolution, per-pixel minimum reprojection with auto-masking,
0.85 SSIM + 0.15 L1, edge-aware smoothness 1e-3 / 2^scale, Adam lr 1e-4.

One step = forward of depth and pose networks, losses, backward and optimiser step, after
warm-up; images/s = batch / step time, median over ``--steps`` steps. Each trainer runs in a
process of its own (our trainer tunes its process's memory allocator on the CPU; in a shared
process that would speed up Monodepth2 as well), and the parent has them step in turn,
alternating which goes first, so that both see the same machine load.

* Monodepth2: its own ``trainer.Trainer`` imported at run time from a local checkout
  (``--monodepth2``, default /tmp/monodepth2; make one with ``mkdir -p /tmp/monodepth2 && git -C
  <monodepth2 repo> archive HEAD -- . ':(exclude)assets' | tar -x -C /tmp/monodepth2``; the
  exclusion skips images that partial clones lack).
  KITTI is not needed: while its trainer is constructed, its ``datasets`` package, tensorboardX
  and IPython are replaced by stand-ins, and the split file reader by a list of placeholder
  names; nothing in the checkout is modified. Each step calls its ``process_batch``, then
  ``zero_grad``, ``backward`` and ``step`` of its optimiser, as its ``run_epoch`` does, on the
  input layout its KITTI dataset produces (colour per scale, K and inv_K per scale).
* Ours: ``mono_depth_ros_training.trainer.Trainer.train_step`` on the same images.
* Ours with data loading: the trainer's own DataLoader over a synthetic bag read by
  ``mono_depth_ros_training.data.build_datasets`` (decode cache, augmentation, worker
  processes), timed from asking for a batch to the end of its optimiser step; plus the loader
  alone, which shows whether a GPU would ever wait for data.
* Loss check: Monodepth2's weights are copied into our networks and both losses are computed
  on the same batch. They differ by Monodepth2's pixel-coordinate normalisation (it divides by
  W - 1 where grid_sample expects W); with that one function replaced by an exact one they
  agree to float precision.

On the CPU both run in float32. With CUDA, ours runs with AMP (float16 autocast and gradient
scaling, as the trainer does by default) and Monodepth2 in float32, as published.

    benchmarks/bench_train.py [--steps N] [--monodepth2 PATH] [--sizes 640x192x12,320x96x4] [--markdown]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from common import Table, load_average, monodepth2_on_path  # noqa: E402
import torch
import torch.nn.functional as F

from mono_depth_ros.geometry import scale_intrinsics
from mono_depth_ros.simulation import render_recording
from mono_depth_ros_training.config import TrainConfig
from mono_depth_ros_training.trainer import Trainer

TARGET_RATIO = 1.3
SCALES = (0, 1, 2, 3)
FRAME_IDS = (0, -1, 1)
DEFAULT_SIZES = "640x192x12,320x96x4"
DEFAULT_CHECKOUT = Path("/tmp/monodepth2")


# ---- statistics and tables -------------------------------------------------------------------
def median(samples: Sequence[float]) -> float:
    return float(np.median(samples)) if len(samples) else float("nan")


def fmt(value: float, digits: int = 2, suffix: str = "") -> str:
    return "-" if value != value else f"{value:.{digits}f}{suffix}"


# ---- machine facts ----------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()



def machine_facts(device: torch.device) -> Table:
    table = Table("Machine", ["fact", "value"])
    table.add("CPU", cpu_model())
    table.add("logical cores", os.cpu_count())
    table.add("torch", f"{torch.__version__} (intra-op threads {torch.get_num_threads()}, "
              f"{torch.backends.cpu.get_cpu_capability()})")
    table.add("Python / numpy", f"{platform.python_version()} / {np.__version__}")
    table.add("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    table.add("load average at start", load_average())
    return table


# ---- inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    width: int
    height: int
    batch: int

    @staticmethod
    def parse(text: str) -> "Size":
        try:
            width, height, batch = (int(part) for part in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size '{text}' must be WIDTHxHEIGHTxBATCH, e.g. 640x192x12") from None
        if width % 32 or height % 32 or batch < 1:
            raise argparse.ArgumentTypeError(
                f"size '{text}': width and height must be multiples of 32 (Monodepth2 requires it) and batch >= 1"
            )
        return Size(width, height, batch)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def rendered_batch(size: Size) -> Dict[str, torch.Tensor]:
    """(t-1, t, t+1) triplets of a rendered drive: our sample layout, collated, unaugmented.

    -> {target, prev, next (+ *_aug): (B, 3, H, W) in [0, 1], K: (B, 3, 3)}.
    """
    recording = render_recording(num_frames=size.batch + 2, width=size.width, height=size.height, stereo=False)
    frames = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 for image in recording.images])
    batch = {
        "target": frames[1:-1].clone(),
        "prev": frames[:-2].clone(),
        "next": frames[2:].clone(),
        "K": torch.as_tensor(recording.K, dtype=torch.float32).expand(size.batch, 3, 3).clone(),
    }
    for name in ("target", "prev", "next"):
        batch[f"{name}_aug"] = batch[name]
    return batch


def monodepth2_inputs(batch: Dict[str, torch.Tensor]) -> Dict[Any, torch.Tensor]:
    """The same images in the layout Monodepth2's KITTI dataset yields.

    ("color", frame, scale) and ("color_aug", frame, scale): (B, 3, H / 2**s, W / 2**s);
    ("K", scale) and ("inv_K", scale): (B, 4, 4). Scaled images use area averaging, as our
    loss does for the smoothness term.
    """
    inputs: Dict[Any, torch.Tensor] = {}
    height, width = batch["target"].shape[-2:]
    for frame_id, name in zip(FRAME_IDS, ("target", "prev", "next")):
        for scale in SCALES:
            image = batch[name]
            if scale:
                image = F.interpolate(image, size=(height >> scale, width >> scale), mode="area")
            inputs[("color", frame_id, scale)] = image
            inputs[("color_aug", frame_id, scale)] = image
    for scale in SCALES:
        K = torch.eye(4).repeat(batch["K"].shape[0], 1, 1)
        K[:, :3, :3] = scale_intrinsics(batch["K"], 1.0 / 2 ** scale, 1.0 / 2 ** scale)
        inputs[("K", scale)] = K
        inputs[("inv_K", scale)] = torch.linalg.inv(K)
    return inputs


def to_device(tree: Dict[Any, torch.Tensor], device: torch.device) -> Dict[Any, torch.Tensor]:
    return {key: value.to(device) for key, value in tree.items()}


class FixedBatchDataset(torch.utils.data.Dataset):
    """``length`` copies of one sample (what our Trainer's constructor checks and sizes its epoch by)."""

    def __init__(self, batch: Dict[str, torch.Tensor], length: int):
        self.sample = {key: value[0] for key, value in batch.items()}
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return self.sample


# ---- Monodepth2 -------------------------------------------------------------------------------
def _stub_module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


class _NoWriter:
    """Stands in for tensorboardX.SummaryWriter (the benchmark logs nothing)."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class _PlaceholderKittiDataset(torch.utils.data.Dataset):
    """Stands in for Monodepth2's KITTI datasets: its trainer only builds DataLoaders from them."""

    def __init__(self, data_path, filenames, *args, **kwargs):
        self.filenames = list(filenames)

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int):
        raise RuntimeError("the benchmark feeds Monodepth2 its batches directly")


@contextlib.contextmanager
def _monodepth2_import_context(checkout: Path):
    """Stand-in modules for Monodepth2's optional imports while its Trainer is imported and built."""
    stand_ins = {
        "tensorboardX": _stub_module("tensorboardX", SummaryWriter=_NoWriter),
        "IPython": _stub_module("IPython", embed=lambda *args, **kwargs: None),
        "datasets": _stub_module(
            "datasets", KITTIRAWDataset=_PlaceholderKittiDataset, KITTIOdomDataset=_PlaceholderKittiDataset,
            KITTIDepthDataset=_PlaceholderKittiDataset,
        ),
    }
    try:
        import six  # noqa: F401 (Monodepth2's utils needs six.moves.urllib for downloads only)
    except ImportError:
        import urllib

        stand_ins["six"] = _stub_module("six", moves=_stub_module("six.moves", urllib=urllib))
        stand_ins["six.moves"] = stand_ins["six"].moves
    with monodepth2_on_path(checkout, stand_ins):
        yield


def build_monodepth2_trainer(checkout: Path, size: Size, device: torch.device, log_dir: Path,
                             extra_arguments: Sequence[str] = ()):
    """Monodepth2's Trainer for mono training at ``size``, random weights, on ``device``.

    ``extra_arguments``: more of its command-line options, parsed after these (so they override
    them), e.g. ``["--use_stereo", "--frame_ids", "0"]`` for stereo training.
    """
    if not (checkout / "trainer.py").exists() or not (checkout / "layers.py").exists():
        raise SystemExit(f"{checkout} is not a monodepth2 checkout (no trainer.py / layers.py)")
    with _monodepth2_import_context(checkout):
        import options as monodepth2_options  # noqa: the checkout's modules
        import trainer as monodepth2_trainer

        arguments = [
            "--data_path", str(log_dir), "--log_dir", str(log_dir), "--model_name", f"bench_{size}",
            "--height", str(size.height), "--width", str(size.width), "--batch_size", str(size.batch),
            "--num_layers", "18", "--weights_init", "scratch", "--frame_ids", *map(str, FRAME_IDS),
            "--scales", *map(str, SCALES), "--learning_rate", "1e-4", "--disparity_smoothness", "1e-3",
            "--pose_model_type", "separate_resnet", "--pose_model_input", "pairs", "--num_workers", "0",
        ]
        if device.type != "cuda":
            arguments.append("--no_cuda")
        arguments += list(extra_arguments)
        opts = monodepth2_options.MonodepthOptions().parser.parse_args(arguments)
        # Its split files name KITTI frames; only their count matters here.
        monodepth2_trainer.readlines = lambda path: [f"placeholder {index} l" for index in range(size.batch)]
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = monodepth2_trainer.Trainer(opts)
    return trainer


def monodepth2_step(trainer, inputs: Dict[Any, torch.Tensor]) -> torch.Tensor:
    """One training step as its run_epoch does it. -> the loss (detached)."""
    trainer.set_train()
    _, losses = trainer.process_batch(dict(inputs))
    trainer.model_optimizer.zero_grad()
    losses["loss"].backward()
    trainer.model_optimizer.step()
    return losses["loss"].detach()


# ---- ours -------------------------------------------------------------------------------------
def our_config(size: Size, device: torch.device, num_workers: int = 0) -> TrainConfig:
    config = TrainConfig()
    config.mode = "mono"
    config.device = device.type
    config.amp = device.type == "cuda"
    config.model.pretrained = False
    config.model.scales = list(SCALES)
    config.loss.velocity_weight = 0.0  # Monodepth2 has no odometry term
    config.loss.lr_consistency = 0.0
    config.data.width, config.data.height = size.width, size.height
    config.data.num_workers = num_workers
    config.optim.batch_size = size.batch
    config.log.image_every = 0
    return config


def build_our_trainer(size: Size, device: torch.device, batch: Dict[str, torch.Tensor], out_dir: Path) -> Trainer:
    dataset = FixedBatchDataset(batch, size.batch)
    with contextlib.redirect_stdout(io.StringIO()):
        return Trainer(our_config(size, device), dataset, None, out_dir, log=lambda message: None, device=device)


def our_step(trainer: Trainer, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    return trainer.train_step(batch).parts["total"]


# ---- loss agreement ---------------------------------------------------------------------------
def copy_monodepth2_weights(monodepth2, ours: Trainer) -> None:
    """Load Monodepth2's (random) weights into our networks (same architecture, other names)."""
    models = monodepth2.models

    def copy_resnet(source: torch.nn.Module, target: torch.nn.Module) -> None:
        state = {key: value for key, value in source.state_dict().items() if not key.startswith("fc.")}
        target.load_state_dict(state, strict=True)

    def copy_conv(source: torch.nn.Conv2d, target: torch.nn.Conv2d, channels: Optional[int] = None) -> None:
        with torch.no_grad():
            target.weight.copy_(source.weight[:channels])
            target.bias.copy_(source.bias[:channels])

    copy_resnet(models["encoder"].encoder, ours.depth_net.encoder.resnet)
    decoder, convs = ours.depth_net.decoder, models["depth"].convs
    for step, level in enumerate(range(4, -1, -1)):
        copy_conv(convs[("upconv", level, 0)].conv.conv, decoder.reduce[step].conv.conv)
        copy_conv(convs[("upconv", level, 1)].conv.conv, decoder.fuse[step].conv.conv)
    for scale in SCALES:
        copy_conv(convs[("dispconv", scale)].conv, decoder.disparity_heads[str(scale)].conv)
    copy_resnet(models["pose_encoder"].encoder, ours.pose_net.encoder.resnet)
    pose, pose_convs = ours.pose_net.decoder, models["pose"].convs
    copy_conv(pose_convs["squeeze"], pose.squeeze)
    copy_conv(pose_convs[("pose", 0)], pose.conv1)
    copy_conv(pose_convs[("pose", 1)], pose.conv2)
    copy_conv(pose_convs[("pose", 2)], pose.head, channels=6)  # its first frame's (axis-angle, translation)


# ---- workers ----------------------------------------------------------------------------------
# Each trainer runs in its own process, as it would in real use: our trainer tunes the process's
# memory allocator on the CPU, which would otherwise speed up Monodepth2 too. The parent tells the
# workers in turn to run one step, so both see the same machine load (interleaved).


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> Tuple[float, float]:
    """-> (wall seconds, process CPU seconds) of one call."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _quiet() -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*align_corners.*")  # Monodepth2's grid_sample call
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def _loader_worker(size: Size, device: torch.device, work_dir: Path, steps: int, warmup: int, conn) -> None:
    """Our trainer fed by its own DataLoader from a synthetic bag (decode cache, augmentation, workers)."""
    from mono_depth_ros_training.data import build_datasets
    from mono_depth_ros.simulation import write_synthetic_bag

    # Enough samples for one epoch to cover start-up, warm-up and timed batches: DataLoader workers
    # restart every epoch, which a real (long) epoch amortises.
    frames = size.batch * (steps + warmup + 2) + 4
    bag = write_synthetic_bag(work_dir / f"bag_{size}", num_frames=frames, width=size.width, height=size.height,
                              stereo=False, odometry=False, depth=False)
    config = our_config(size, device, num_workers=TrainConfig().data.num_workers)
    config.data.cache_dir = str(work_dir / "cache")
    config.data.val_fraction = 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        train_set, _, _ = build_datasets([str(bag)], config.data, config.mode, log=lambda message: None)
        trainer = Trainer(config, train_set, None, work_dir / f"run_loader_{size}", log=lambda message: None,
                          device=device)

    def batches():
        trainer.sampler.set_position(0, 0)
        return iter(trainer.data_loader(train_set, trainer.sampler, 0, drop_last=True))

    iterator = batches()
    next(iterator)  # worker start-up, not timed
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    loader_rate = steps * size.batch / (time.perf_counter() - start)
    del iterator
    iterator = batches()
    for _ in range(1 + warmup):  # the first batch includes worker start-up
        trainer.train_step(next(iterator))
    times = [timed(lambda: trainer.train_step(next(iterator)), device) for _ in range(steps)]
    del iterator  # stops the DataLoader's worker processes before this process exits
    conn.send(("result", (loader_rate, times, config.data.num_workers)))


def _exact_pixel_centre_projection(self, points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Stand-in for Monodepth2's Project3D.forward that normalises pixel centres as ours does.

    points: (B, 4, H*W) homogeneous, K, T: (B, 4, 4) -> grid (B, H, W, 2) for grid_sample with
    align_corners=False: u -> (2u + 1) / W - 1 (Monodepth2 uses 2u / (W - 1) - 1).
    """
    camera = (K @ T)[:, :3, :] @ points
    pixels = camera[:, :2] / (camera[:, 2:3] + self.eps)
    u = (2.0 * pixels[:, 0] + 1.0) / self.width - 1.0
    v = (2.0 * pixels[:, 1] + 1.0) / self.height - 1.0
    return torch.stack([u, v], dim=-1).reshape(self.batch_size, self.height, self.width, 2)


def _agreement_worker(size: Size, device: torch.device, checkout: Path, work_dir: Path, conn) -> None:
    """Both losses on one batch with Monodepth2's weights copied into ours (eval mode, no step).

    -> (Monodepth2's loss, Monodepth2's loss with exact pixel centres, ours).
    """
    torch.manual_seed(0)
    batch = to_device(rendered_batch(size), device)
    ours = build_our_trainer(size, device, batch, work_dir / f"run_agree_{size}")
    monodepth2 = build_monodepth2_trainer(checkout, size, device, work_dir / "monodepth2_agree")
    copy_monodepth2_weights(monodepth2, ours)
    inputs = to_device(monodepth2_inputs(batch), device)
    with torch.no_grad():
        # Eval mode: BatchNorm uses the (identical) running statistics. In train mode our pose
        # encoder normalises both frame pairs as one batch, Monodepth2 each pair on its own.
        monodepth2.set_eval()
        ours.depth_net.eval()
        ours.pose_net.eval()
        own = float(ours.compute_losses(batch, training=False).total)
        reference = float(monodepth2.process_batch(dict(inputs))[1]["loss"])
        for projection in monodepth2.project_3d.values():
            projection.forward = types.MethodType(_exact_pixel_centre_projection, projection)
        exact = float(monodepth2.process_batch(dict(inputs))[1]["loss"])
    conn.send(("result", (reference, exact, own)))


def _worker_main(role: str, size: Size, device_name: str, checkout: Optional[str], work_dir: str,
                 steps: int, warmup: int, threads: int, conn) -> None:
    """Entry point of a worker process: build one trainer, then run steps on request."""
    import traceback

    try:
        _quiet()
        if threads:
            torch.set_num_threads(threads)
        device = torch.device(device_name)
        work = Path(work_dir)
        if role == "loader":
            return _loader_worker(size, device, work, steps, warmup, conn)
        if role == "agreement":
            return _agreement_worker(size, device, Path(checkout), work, conn)
        torch.manual_seed(0)
        # Inputs live on the device before timing (the DataLoader measurement includes the transfer).
        batch = to_device(rendered_batch(size), device)
        if role == "monodepth2":
            trainer = build_monodepth2_trainer(Path(checkout), size, device, work / "monodepth2_logs")
            inputs = to_device(monodepth2_inputs(batch), device)
            step = lambda: monodepth2_step(trainer, inputs)  # noqa: E731
        else:
            trainer = build_our_trainer(size, device, batch, work / f"run_{size}")
            step = lambda: our_step(trainer, batch)  # noqa: E731
        conn.send(("ready", None))
        while True:
            command = conn.recv()
            if command != "step":
                break
            conn.send(("result", timed(step, device)))
    except Exception:  # report it to the parent instead of dying silently
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class Worker:
    """A worker process and its end of the pipe."""

    def __init__(self, role: str, size: Size, args: argparse.Namespace, device: torch.device, work_dir: Path):
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
        self.role = role
        self.conn, child = context.Pipe()
        checkout = str(args.monodepth2) if args.monodepth2 is not None else None
        self.process = context.Process(
            target=_worker_main,
            args=(role, size, str(device), checkout, str(work_dir), args.steps, args.warmup, args.threads, child),
            daemon=False,  # the loader worker starts DataLoader processes of its own
        )
        self.process.start()
        child.close()

    def receive(self) -> Any:
        while not self.conn.poll(1.0):
            if not self.process.is_alive():
                raise SystemExit(f"the {self.role} worker died (exit code {self.process.exitcode}); "
                                 "out of memory? try a smaller --sizes batch")
        kind, value = self.conn.recv()
        if kind == "error":
            raise SystemExit(f"the {self.role} worker failed:\n{value}")
        return value

    def step(self) -> Tuple[float, float]:
        self.conn.send("step")
        return self.receive()

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send("stop")
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def run_interleaved(workers: Dict[str, Worker], count: int, warmup: int,
                    log: Callable[[str], None]) -> Dict[str, List[Tuple[float, float]]]:
    """Step each worker ``count`` times after ``warmup``, alternating which goes first."""
    names = list(workers)
    for _ in range(warmup):
        for name in names:
            workers[name].step()
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in names}
    for round_index in range(count):
        for name in names if round_index % 2 == 0 else names[::-1]:
            times[name].append(workers[name].step())
        log(f"  step {round_index + 1}/{count}: "
            + ", ".join(f"{name} {times[name][-1][0]:.2f} s" for name in names))
    return times


# ---- main -------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per trainer and size (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--monodepth2", type=Path, default=DEFAULT_CHECKOUT,
                        help="Monodepth2 checkout (default /tmp/monodepth2); 'none' skips it")
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"comma-separated WIDTHxHEIGHTxBATCH (default {DEFAULT_SIZES})")
    parser.add_argument("--device", default="", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-data-loading", action="store_true", help="skip the DataLoader measurement")
    parser.add_argument("--no-loss-check", action="store_true", help="skip the loss agreement check")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    try:
        args.sizes = [Size.parse(text) for text in args.sizes.split(",") if text.strip()]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if not args.sizes:
        parser.error("--sizes is empty")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if str(args.monodepth2).lower() == "none":
        args.monodepth2 = None
    elif not (args.monodepth2 / "trainer.py").exists() or not (args.monodepth2 / "layers.py").exists():
        parser.error(
            f"{args.monodepth2} is not a monodepth2 checkout (no trainer.py / layers.py); make one with\n"
            "  mkdir -p /tmp/monodepth2 && git -C <monodepth2 repo> archive HEAD -- . ':(exclude)assets' "
            "| tar -x -C /tmp/monodepth2\n"
            "or pass --monodepth2 none to time ours alone"
        )
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    facts = machine_facts(device)
    cpu = device.type == "cpu"
    ours_precision = "fp32" if cpu else "AMP fp16"
    header = ["size", "batch", "precision (Monodepth2 / ours)", "Monodepth2", "ours", "ratio"]
    if cpu:
        header.append("ratio of CPU time")
    header += ["ours + DataLoader", "DataLoader alone"]
    throughput = Table("Training throughput (images/s, median over steps)", header)
    agreement = Table("Loss on the same batch with identical weights (eval-mode BatchNorm)",
                      ["size", "Monodepth2", "ours", "rel. diff", "Monodepth2, exact pixel centres", "rel. diff"])
    with tempfile.TemporaryDirectory(prefix="bench_train_") as work:
        work_dir = Path(work)
        for size in args.sizes:
            log(f"{size} batch {size.batch}")
            if args.monodepth2 is not None and not args.no_loss_check:
                checker = Worker("agreement", size, args, device, work_dir)
                try:
                    reference, exact, own = checker.receive()
                finally:
                    checker.close()
                agreement.add(f"{size}x{size.batch}", f"{reference:.6f}", f"{own:.6f}",
                              f"{abs(own - reference) / abs(reference):.3%}", f"{exact:.6f}",
                              f"{abs(own - exact) / abs(exact):.4%}")
            workers: Dict[str, Worker] = {}
            try:
                roles = (["monodepth2"] if args.monodepth2 is not None else []) + ["ours"]
                for role in roles:
                    workers[role] = Worker(role, size, args, device, work_dir)
                for worker in workers.values():
                    worker.receive()  # built
                times = run_interleaved(workers, args.steps, args.warmup, log)
            finally:
                for worker in workers.values():
                    worker.close()
            rates = {name: median([size.batch / wall for wall, _ in values]) for name, values in times.items()}
            cpu_times = {name: median([cpu_s for _, cpu_s in values]) for name, values in times.items()}
            with_loader = loader_alone = float("nan")
            if not args.no_data_loading:
                loader = Worker("loader", size, args, device, work_dir)
                try:
                    loader_alone, loader_times, _ = loader.receive()
                finally:
                    loader.close()
                with_loader = median([size.batch / wall for wall, _ in loader_times])
                log("  ours with DataLoader: " + ", ".join(f"{wall:.2f} s" for wall, _ in loader_times))
            md2_rate = rates.get("monodepth2", float("nan"))
            row = [str(size), size.batch, f"fp32 / {ours_precision}", fmt(md2_rate), fmt(rates["ours"]),
                   fmt(rates["ours"] / md2_rate, suffix="x")]
            if cpu:
                row.append(fmt(cpu_times.get("monodepth2", float("nan")) / cpu_times["ours"], suffix="x"))
            row += [fmt(with_loader), fmt(loader_alone)]
            throughput.add(*row)
    throughput.notes.append(
        f"Target: ours >= {TARGET_RATIO}x Monodepth2. A step = depth + pose forward, losses, backward, Adam step; "
        f"median of {args.steps} steps after {args.warmup} warm-up, each trainer in its own process, interleaved."
    )
    if cpu:
        throughput.notes.append(
            "Ratio of CPU time: Monodepth2's median process CPU seconds per step / ours (less sensitive to other "
            "load on a shared machine than wall time)."
        )
    if not args.no_data_loading:
        throughput.notes.append(
            "ours + DataLoader: the trainer's own loader over a synthetic bag "
            f"(mono_depth_ros_training.data.build_datasets, augmentation on, {TrainConfig().data.num_workers} worker processes), timed from asking for a batch "
            "to the end of the step, measured after the interleaved steps; on the CPU its workers compete with "
            "training for the cores. "
            "DataLoader alone: images/s it delivers without training, the most a GPU could be fed at this setting."
        )
    agreement.notes.append(
        "Monodepth2 divides pixel coordinates by (W - 1, H - 1) before grid_sample with align_corners=False (its "
        "warps are up to half a pixel off at the borders); ours maps pixel centres exactly. With its Project3D "
        "swapped for an exact one (last columns) the two losses agree to float precision."
    )
    print(facts.render(args.markdown))
    print(throughput.render(args.markdown))
    if agreement.rows:
        print(agreement.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
