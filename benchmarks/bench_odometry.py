#!/usr/bin/env python3
"""Visual odometry from the pose network on a generated drive with a known trajectory.

Trains (or takes with --model) a mono+stereo model on a rendered street drive, then runs the
pose network frame to frame over a held-out drive down another street and compares with the
true camera poses: per-frame translation error, rotation error, scale (predicted / true step
length) and direction (angle between predicted and true step), and the drift of the chained
trajectory (end-point error / distance travelled).

    benchmarks/bench_odometry.py [--model M.safetensors] [--mode mono|mono+stereo] [--steps 400]
                                 [--width 96 --height 64] [--device cpu] [--out DIR] [--markdown]

Training uses config/train_demo.yaml's recipe with mode mono+stereo (the stereo baseline makes
depth and pose metric) or mono (the drive's odometry makes them metric). See docs/node.md, "Visual odometry".
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from common import Table  # noqa: E402

from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import load_model_file  # noqa: E402
from mono_depth_ros.config import DepthNodeConfig  # noqa: E402
from mono_depth_ros.visual_odometry import PoseRunner, StillGate  # noqa: E402
from mono_depth_ros import simulation as synthetic  # noqa: E402
from mono_depth_ros_training.odometry_metrics import OdometryErrors, compare_odometry, predict_motions  # noqa: E402

RATE_HZ = 10.0


def render_drive(path: Path, frames: int, seed: int, size, speed_mps: float):
    """A stereo street drive with depth and odometry -> SyntheticRecording (images and true poses)."""
    return synthetic.write_synthetic_bag(
        path, num_frames=frames, width=size[0], height=size[1], rate_hz=RATE_HZ, speed_mps=speed_mps,
        scene="street", seed=seed, baseline_m=0.25, return_recording=True,
    )


def train_model(bag: Path, out: Path, args: argparse.Namespace) -> Path:
    from mono_depth_ros_training.config import load_config
    from mono_depth_ros_training.run import train

    config_path = Path(__file__).resolve().parents[1] / "config" / "train_demo.yaml"
    overrides = [f"mode={args.mode}", f"optim.max_steps={args.steps}", f"data.width={args.width}",
                 f"data.height={args.height}", f"device={args.device}", f"data.cache_dir={out / 'cache'}"]
    config = load_config(config_path, overrides)
    result = train(config, out / "run", [str(bag)], log=lambda text: print(text, flush=True))
    return Path(result.model_path)


def evaluate_model(model_path: Path, recording, device: str = "cpu") -> Tuple[OdometryErrors, OdometryErrors]:
    """The model's pose network over consecutive frames of ``recording``, against its true poses
    -> (pose network alone, as depth_node publishes it with its standing-still test)."""
    model = load_model_file(model_path)
    if model.pose_net is None:
        raise SystemExit(f"{model_path} has no pose network (train with mode mono or mono+stereo)")
    estimator = DepthEstimator(model, torch.device(device))
    runner = PoseRunner(model.pose_net, torch.device(device))
    inputs = [estimator.preprocess(rgb) for rgb in recording.images]
    # The node's translation scale: the model file's depth_scale (metres per network unit).
    motions = predict_motions(runner.relative_pose, inputs, model.metadata.depth_scale)
    # As depth_node publishes it: no motion while the image stands still (odometry_still_threshold).
    node_motions = predict_motions(runner.relative_pose, inputs, model.metadata.depth_scale,
                                   StillGate(DepthNodeConfig().odometry_still_threshold))
    return compare_odometry(motions, recording.poses), compare_odometry(node_motions, recording.poses)


def errors_table(errors: OdometryErrors, title: str) -> Table:
    table = Table(title, ["measure", "median", "p90", "mean"])

    def row(name: str, values: np.ndarray, digits: int = 3) -> None:
        if len(values):
            table.add(name, f"{np.median(values):.{digits}f}", f"{np.percentile(values, 90):.{digits}f}",
                      f"{np.mean(values):.{digits}f}")

    row("translation error per frame, m", errors.translation_m)
    row("true step per frame, m", errors.true_step_m)
    row("rotation error per frame, deg", errors.rotation_deg, 2)
    row("scale (predicted / true step)", errors.scale)
    row("direction error per frame, deg", errors.direction_deg, 1)
    row("predicted step while standing still, m", errors.stopped_step_m)
    correlation = float(np.corrcoef(errors.true_step_m, errors.predicted_step_m)[0, 1]) \
        if len(errors.true_step_m) > 2 and np.std(errors.predicted_step_m) > 0 else float("nan")
    table.notes.append(
        f"chained over {len(errors.translation_m)} frames ({errors.distance_m:.1f} m): end-point error "
        f"{errors.end_error_m:.2f} m = drift {100 * errors.drift:.1f} % of the distance; direction of travel "
        f"{errors.travel_direction_deg:.1f} deg off; correlation of predicted with true step length {correlation:.2f} "
        "(near 1 when the network sees how far the camera moved, near 0 when it predicts a typical step)"
    )
    return table


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model file with a pose network (default: train one)")
    parser.add_argument("--mode", default="mono+stereo", choices=["mono", "mono+stereo"],
                        help="training mode when training (mono: metric from the drive's odometry; default mono+stereo)")
    parser.add_argument("--steps", type=int, default=400, help="training steps when training (default 400)")
    parser.add_argument("--width", type=int, default=96, help="network input width when training (default 96)")
    parser.add_argument("--height", type=int, default=64, help="network input height when training (default 64)")
    parser.add_argument("--speed", type=float, default=5.0, help="cruising speed of the drives, m/s (default 5)")
    parser.add_argument("--train-frames", type=int, default=200, help="frames of the training drive (default 200)")
    parser.add_argument("--frames", type=int, default=120, help="frames of the held-out drive (default 120)")
    parser.add_argument("--device", default="cpu", help="training and inference device (default cpu)")
    parser.add_argument("--out", type=Path, help="keep the drives, run and model here (default: a temporary folder)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/node.md, 'Visual odometry')")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_odometry_") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        model = args.model
        size = (args.width, args.height)
        trained = ""
        if model is None:
            started = time.perf_counter()
            train_bag = out / "train_drive"
            if not train_bag.exists():
                render_drive(train_bag, args.train_frames, 0, size, args.speed)
            model = train_model(train_bag, out, args)
            trained = (f"trained {args.steps} steps ({args.mode}, demo recipe at {args.width}x{args.height}) in "
                       f"{(time.perf_counter() - started) / 60:.1f} min; ")
        else:
            metadata = load_model_file(model).metadata
            size = (metadata.input_width, metadata.input_height)
        # Rendered into a fresh folder every time: the recording object holds the true poses.
        heldout = render_drive(Path(tmp) / f"heldout_{time.time_ns()}", args.frames, 1, size, args.speed)
        network, node = evaluate_model(model, heldout, args.device)
        title = f"Visual odometry on a held-out street drive ({args.frames} frames at {RATE_HZ:g} Hz)"
        table = errors_table(network, f"{title}: the pose network alone")
        table.notes.insert(0, f"{trained}model {model}")
        print(table.render(args.markdown))
        print(errors_table(node, f"{title}: as depth_node publishes it (no motion while the image stands still)")
              .render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
