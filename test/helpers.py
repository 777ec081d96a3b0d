"""Helpers shared by several test modules (not a test module; no rclpy: the DDS harness is node_harness.py).

Test modules import from here (`from helpers import ...`; test/ is on sys.path), never from each other.

* CreatesFileWhenUnpickled: a real code-running pickle payload, for the "never unpickle" tests.
* scene: a textured BGR test image.
* plausible_weights: weights of a trained network's scale for small random networks.
* read_bag, decode_depth_raw: what a bag holds, for the bag tools' tests.
* The trainer's test fixtures: BASELINE, RecordingDataset, small_recording, make_datasets,
  tiny_config, report, quiet.
* write_kitti_drive: a miniature KITTI raw drive (calibration, images, OXTS, velodyne) on disk.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn


# ---- pickles ------------------------------------------------------------------------------------
class CreatesFileWhenUnpickled:
    """Pickle payload: unpickling it calls open(marker, 'w'), i.e. runs code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---- images and networks ------------------------------------------------------------------------
def scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured BGR test image (H, W, 3) uint8 with B != R almost everywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    blue = 255.0 * x / max(width - 1, 1)
    green = 255.0 * y / max(height - 1, 1)
    red = 128.0 + 110.0 * np.sin(x / 17.0) * np.cos(y / 23.0)
    image = np.stack([blue, green, red], axis=-1) + rng.normal(0.0, 12.0, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def plausible_weights(module: nn.Module, seed: int, input_channels: int = 3, height: int = 64, width: int = 128) -> None:
    """Weights of a trained network's scale: He-initialised convolutions, random affine terms and
    biases, batch-norm statistics measured on random images (height x width). (Default or arbitrary
    statistics would saturate the sigmoids, and equal outputs would then prove nothing.)"""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.dim() == 4:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * (2.0 / parameter[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the calibration batch
        if norms:
            module.train()
            module(torch.rand((2, input_channels, height, width), generator=generator))
    module.eval()


# ---- bags ---------------------------------------------------------------------------------------
def read_bag(path):
    """-> {topic: [(bag_time, msgtype, msg), ...]} in bag order."""
    from mono_depth_ros.bagio import BagReader

    topics = {}
    with BagReader(path, log=lambda text: None) as reader:
        for topic, msgtype, bag_time, msg in reader.messages(list(reader.topics)):
            topics.setdefault(topic, []).append((bag_time, msgtype, msg))
    return topics


def decode_depth_raw(msg) -> np.ndarray:
    """32FC1 message -> (H, W) float32 as stored (decode_depth would zero the +-inf of REP 118)."""
    return np.frombuffer(np.asarray(msg.data).tobytes(), dtype="<f4").reshape(msg.height, msg.width)


# ---- the trainer on rendered recordings -----------------------------------------------------------
BASELINE = 0.2  # stereo baseline of small_recording, metres


def small_recording():
    """12 rendered 64x64 stereo frames with exact depth and poses (seed 1)."""
    from mono_depth_ros.simulation import render_recording

    return render_recording(num_frames=12, width=64, height=64, stereo=True, baseline_m=BASELINE, seed=1)


class RecordingDataset(torch.utils.data.Dataset):
    """Samples per the training/data/dataset.py contract from a rendered recording (no augmentation)."""

    def __init__(self, recording, indices, odometry=True):
        self.recording = recording
        self.indices = list(indices)
        self.odometry = odometry
        self.images = [torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 for image in recording.images]
        self.right = [torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 for image in recording.right_images]
        self.K = torch.tensor(recording.K, dtype=torch.float32)
        self.T_stereo_target = torch.eye(4)
        self.T_stereo_target[0, 3] = -BASELINE

    def __len__(self):
        return len(self.indices)

    def _distance(self, a, b):
        if not self.odometry:
            return torch.tensor(float("nan"))
        poses = self.recording.poses
        return torch.tensor(float(np.linalg.norm(poses[a][:3, 3] - poses[b][:3, 3])), dtype=torch.float32)

    def __getitem__(self, index):
        t = self.indices[index]
        return {
            "target": self.images[t], "target_aug": self.images[t],
            "prev": self.images[t - 1], "prev_aug": self.images[t - 1],
            "next": self.images[t + 1], "next_aug": self.images[t + 1],
            "stereo": self.right[t], "stereo_aug": self.right[t],
            "K": self.K, "T_stereo_target": self.T_stereo_target,
            "odom_distance_prev": self._distance(t - 1, t), "odom_distance_next": self._distance(t, t + 1),
            "depth_gt": torch.from_numpy(self.recording.depths[t])[None].float(),
            "has_depth_gt": torch.tensor(True),
            "stamp": torch.tensor(self.recording.stamps_ns[t] * 1e-9, dtype=torch.float64),
            "flipped": torch.tensor(False),
        }


def make_datasets(recording, odometry=True, train_count=6):
    train_ds = RecordingDataset(recording, range(1, 1 + train_count), odometry)
    val_ds = RecordingDataset(recording, range(1 + train_count, 1 + train_count + 2), odometry)
    return train_ds, val_ds


def tiny_config(mode="mono", **overrides):
    from mono_depth_ros_training.config import TrainConfig, apply_overrides

    items = [
        f"mode={mode}", "model.pretrained=false", "data.width=64", "data.height=64", "data.num_workers=0",
        "optim.batch_size=2", "optim.epochs=2", "optim.lr=1e-3", "optim.schedule=step", "log.log_every=1",
        "log.image_every=0",
    ] + [f"{key}={value}" for key, value in overrides.items()]
    return apply_overrides(TrainConfig(), items)


def report(has_odometry=True, rectified=True):
    """A data report as the trainer's data loading makes it, for a rectified stereo pair BASELINE apart."""
    return SimpleNamespace(
        has_odometry=has_odometry, rectified=rectified, baseline_m=BASELINE,
        normalized_intrinsics=[0.7, 1.4, 0.51, 0.49],
    )


def quiet(message):
    """A log function that drops everything."""


# ---- KITTI raw ------------------------------------------------------------------------------------
KITTI_DATE = "2011_09_26"
KITTI_DRIVE = f"{KITTI_DATE}_drive_0001_sync"


def write_kitti_drive(root, frames=3, width=40, height=24, f=20.0, points=None):
    """A KITTI raw drive in KITTI's on-disk format under ``root`` -> the drive folder
    (root/2011_09_26/2011_09_26_drive_0001_sync). Cameras 2 and 3 rectified with focal ``f``, principal
    point at the centre, baseline 0.54 m; velodyne x forward = camera z + 0.5; 1 m east per frame.
    ``points(i)`` -> (N, 4) float32 velodyne scan of frame i (default: a dense grid in front, depth
    growing with the frame and the column); image i is a flat colour that differs per frame."""
    import math
    from pathlib import Path

    import cv2

    from mono_depth_ros_training.kitti.raw import EARTH_RADIUS_M

    cx, cy, t_left, t_right, velo_z, lat0, lon0 = width / 2, height / 2, 0.06, -0.48, -0.5, 49.0, 8.4

    def line(key, values):
        return f"{key}: " + " ".join(f"{v:.12e}" for v in np.ravel(values)) + "\n"

    def P(tx):
        return np.array([[f, 0, cx, f * tx], [0, f, cy, 0], [0, 0, 1, 0]])

    def grid(i):
        u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
        z = 4.0 + 2.0 * i + 0.25 * u + 0.1 * v
        x2, y2 = (u - cx) * z / f, (v - cy) * z / f
        return np.stack([z - velo_z, -(x2 - t_left), -y2, np.full_like(z, 0.5)], -1).reshape(-1, 4).astype(np.float32)

    points = points or grid
    date = Path(root) / KITTI_DATE
    drive = date / KITTI_DRIVE
    date.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n" + line("S_rect_02", [width, height]) + line("R_rect_00", np.eye(3))
        + line("P_rect_02", P(t_left)) + line("S_rect_03", [width, height]) + line("P_rect_03", P(t_right))
    )
    R_velo = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    (date / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\n" + line("R", R_velo) + line("T", [0, 0, velo_z])
    )
    (date / "calib_imu_to_velo.txt").write_text(line("R", np.eye(3)) + line("T", [-0.8, 0.3, -0.7]))
    for name in ("image_02/data", "image_03/data", "oxts/data", "velodyne_points/data"):
        (drive / name).mkdir(parents=True)
    step_deg = math.degrees(1.0 / (math.cos(math.radians(lat0)) * EARTH_RADIUS_M))
    stamps = []
    for i in range(frames):
        stem = f"{i:010d}"
        image = np.full((height, width, 3), 40 * i, np.uint8)
        image[:, :, 2] = 200
        cv2.imwrite(str(drive / "image_02/data" / f"{stem}.png"), image)
        cv2.imwrite(str(drive / "image_03/data" / f"{stem}.png"), image[:, :, ::-1].copy())
        packet = [lat0, lon0 + i * step_deg, 110.0, 0, 0, 0, 0, 10.0, 10.0, 0.0, 0.0]
        packet += [0.0] * 9 + [0.0, 0.0, 0.05] + [0.1, 0.1, 4, 10, 4, 4, 4]
        (drive / "oxts/data" / f"{stem}.txt").write_text(" ".join(f"{v:.12f}" for v in packet) + "\n")
        np.asarray(points(i), dtype=np.float32).tofile(drive / "velodyne_points/data" / f"{stem}.bin")
        stamps.append(f"{KITTI_DATE.replace('_', '-')} 13:02:25.{100000000 * i + 964389:09d}")
    (drive / "image_02/timestamps.txt").write_text("\n".join(stamps) + "\n")
    return drive
