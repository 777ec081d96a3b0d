"""Helpers shared by several test modules (not a test module; no rclpy: the DDS harness is node_harness.py).

Test modules import from here (`from helpers import ...`; test/ is on sys.path), never from each other.

* CreatesFileWhenUnpickled: a real code-running pickle payload, for the "never unpickle" tests.
* scene: a textured BGR test image.
* plausible_weights: weights of a trained network's scale for small random networks.
* read_bag, decode_depth_raw: what a bag holds, for the bag tools' tests.
* The trainer's test fixtures: BASELINE, RecordingDataset, small_recording, make_datasets,
  tiny_config, report, quiet.
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
