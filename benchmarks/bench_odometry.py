#!/usr/bin/env python3
"""Visual odometry from the pose network on a generated drive with a known trajectory.

Trains (or takes with --model) a mono+stereo model on a rendered street drive, then runs the
pose network frame to frame over a held-out drive down another street and compares with the
true camera poses: per-frame translation error, rotation error, scale (predicted / true step
length) and direction (angle between predicted and true step), and the drift of the chained
trajectory (end-point error / distance travelled).

    benchmarks/bench_odometry.py [--model M.safetensors] [--steps 200] [--out DIR] [--markdown]

Training uses config/train_demo.yaml's recipe with mode mono+stereo (the stereo baseline makes
depth and pose metric). See README, "Visual odometry".
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from common import Table  # noqa: E402

from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import load_model_file  # noqa: E402
from mono_depth_ros.visual_odometry import PoseRunner, VisualOdometry  # noqa: E402
from training import synthetic  # noqa: E402

RATE_HZ = 10.0
RENDER_SIZE = (320, 192)


@dataclass
class OdometryErrors:
    translation_m: np.ndarray  # per frame |t_pred - t_true|
    rotation_deg: np.ndarray  # per frame angle of R_pred^T R_true
    scale: np.ndarray  # per frame |t_pred| / |t_true| (frames that moved)
    direction_deg: np.ndarray  # per frame angle between t_pred and t_true (frames that moved)
    end_error_m: float
    distance_m: float
    true_steps_m: np.ndarray

    @property
    def drift(self) -> float:
        return self.end_error_m / max(self.distance_m, 1e-9)


def render_drive(path: Path, frames: int, seed: int, speed_mps: float = 1.25):
    """A stereo street drive with depth and odometry -> SyntheticRecording (images and true poses)."""
    return synthetic.write_synthetic_bag(
        path, num_frames=frames, width=RENDER_SIZE[0], height=RENDER_SIZE[1], rate_hz=RATE_HZ, speed_mps=speed_mps,
        scene="street", seed=seed, baseline_m=0.25, return_recording=True,
    )


def train_model(bag: Path, out: Path, steps: int) -> Path:
    from training.config import load_config
    from training.trainer import train

    config_path = Path(__file__).resolve().parents[1] / "config" / "train_demo.yaml"
    config = load_config(config_path, ["mode=mono+stereo", f"optim.max_steps={steps}",
                                       f"data.cache_dir={out / 'cache'}"])
    result = train(config, out / "run", [str(bag)], log=lambda text: print(text, flush=True))
    return Path(result.model_path)


def relative_true_motion(poses: Sequence[np.ndarray], k: int) -> np.ndarray:
    """T_later_earlier of frames k-1 -> k from true T_odom_optical poses."""
    return np.linalg.inv(poses[k]) @ poses[k - 1]


def rotation_angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(R) - 1.0) / 2.0))))


def evaluate_odometry(model_path: Path, recording, device: str = "cpu", scale: float = 1.0) -> OdometryErrors:
    """Run the pose network over consecutive frames of ``recording`` and compare with its true poses."""
    model = load_model_file(model_path)
    if model.pose_net is None:
        raise SystemExit(f"{model_path} has no pose network (train with mode mono or mono+stereo)")
    estimator = DepthEstimator(model, torch.device(device))
    runner = PoseRunner(model.pose_net, torch.device(device))
    odometry = VisualOdometry(translation_scale=model.metadata.depth_scale * scale)
    inputs = [estimator.preprocess(rgb) for rgb in recording.images]
    translation, rotation, scales, directions, true_steps = [], [], [], [], []
    for k in range(1, len(inputs)):
        T_pred = runner.relative_pose(inputs[k - 1], inputs[k])
        T_pred[:3, 3] *= odometry.translation_scale
        T_true = relative_true_motion(recording.poses, k)
        odometry.update(runner.relative_pose(inputs[k - 1], inputs[k]), 1.0 / RATE_HZ)
        t_pred, t_true = T_pred[:3, 3], T_true[:3, 3]
        translation.append(float(np.linalg.norm(t_pred - t_true)))
        rotation.append(rotation_angle_deg(T_pred[:3, :3].T @ T_true[:3, :3]))
        true_steps.append(float(np.linalg.norm(t_true)))
        if np.linalg.norm(t_true) > 1e-3:
            scales.append(float(np.linalg.norm(t_pred) / np.linalg.norm(t_true)))
            cosine = float(t_pred @ t_true / max(np.linalg.norm(t_pred) * np.linalg.norm(t_true), 1e-12))
            directions.append(math.degrees(math.acos(max(-1.0, min(1.0, cosine)))))
    # Chained trajectory vs truth, both relative to the first frame.
    T_true_total = np.linalg.inv(recording.poses[0]) @ recording.poses[-1]  # last camera in first camera's frame
    T_pred_total = np.linalg.inv(_start(odometry)) @ odometry.T_odom_camera
    end_error = float(np.linalg.norm(T_pred_total[:3, 3] - T_true_total[:3, 3]))
    return OdometryErrors(np.array(translation), np.array(rotation), np.array(scales), np.array(directions),
                          end_error, float(sum(true_steps)), np.array(true_steps))


def _start(odometry: VisualOdometry) -> np.ndarray:
    start = VisualOdometry()
    return start.T_odom_camera


def errors_table(errors: OdometryErrors, title: str) -> Table:
    table = Table(title, ["measure", "median", "p90", "mean"])

    def row(name: str, values: np.ndarray, digits: int = 3) -> None:
        if len(values):
            table.add(name, f"{np.median(values):.{digits}f}", f"{np.percentile(values, 90):.{digits}f}",
                      f"{np.mean(values):.{digits}f}")

    row("translation error per frame, m", errors.translation_m)
    row("true step per frame, m", errors.true_steps_m)
    row("rotation error per frame, deg", errors.rotation_deg, 2)
    row("scale (predicted / true step)", errors.scale)
    row("direction error per frame, deg", errors.direction_deg, 1)
    table.notes.append(
        f"chained over {len(errors.translation_m)} frames ({errors.distance_m:.1f} m): end-point error "
        f"{errors.end_error_m:.2f} m = drift {100 * errors.drift:.1f} % of the distance"
    )
    return table


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model file with a pose network (default: train one)")
    parser.add_argument("--steps", type=int, default=200, help="training steps when training (default 200)")
    parser.add_argument("--train-frames", type=int, default=300, help="frames of the training drive (default 300)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the held-out drive (default 60)")
    parser.add_argument("--out", type=Path, help="keep the drives, run and model here (default: a temporary folder)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_odometry_") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        model = args.model
        trained = ""
        if model is None:
            started = time.perf_counter()
            train_bag = out / "train_drive"
            if not train_bag.exists():
                render_drive(train_bag, args.train_frames, seed=0)
            model = train_model(train_bag, out, args.steps)
            trained = f"trained {args.steps} steps (mono+stereo, demo recipe) in {(time.perf_counter() - started) / 60:.1f} min; "
        heldout = render_drive(out / "heldout_drive" if args.out else Path(tmp) / "heldout", args.frames, seed=1) \
            if not (args.out and (out / "heldout_drive").exists()) else None
        if heldout is None:  # re-render in memory: the recording object holds the true poses
            heldout = render_drive(Path(tmp) / "heldout_again", args.frames, seed=1)
        errors = evaluate_odometry(model, heldout)
        table = errors_table(errors, f"Visual odometry on a held-out street drive ({args.frames} frames at {RATE_HZ:g} Hz)")
        table.notes.insert(0, f"{trained}model {model}")
        print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
