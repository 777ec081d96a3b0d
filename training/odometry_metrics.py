"""Visual odometry against a known trajectory: per-frame relative pose errors and drift.

Used by benchmarks/bench_odometry.py and the trained-odometry test. Poses are 4x4
T_odom_optical (the camera's optical frame in a fixed world frame, REP 103 optical axes);
relative motions are T_later_earlier, the convention of PoseNet and VisualOdometry.update.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mono_depth_ros.geometry.rotations import angle_between_deg, rotation_angle_deg

MOVING_STEP_M = 0.02  # true steps shorter than this count as standing still (no direction, no scale)


def relative_motion(T_odom_earlier: np.ndarray, T_odom_later: np.ndarray) -> np.ndarray:
    """(4, 4) world poses of two frames -> (4, 4) T_later_earlier (earlier-frame points into the later frame)."""
    return np.linalg.inv(T_odom_later) @ T_odom_earlier


@dataclass
class OdometryErrors:
    """Predicted vs true motion over a sequence; per-frame arrays have one entry per frame pair."""

    translation_m: np.ndarray  # |t_pred - t_true| per frame pair
    rotation_deg: np.ndarray  # angle of R_pred^T R_true per frame pair
    true_step_m: np.ndarray  # |t_true| per frame pair
    predicted_step_m: np.ndarray  # |t_pred| per frame pair
    scale: np.ndarray  # |t_pred| / |t_true| for pairs that moved
    direction_deg: np.ndarray  # angle between t_pred and t_true for pairs that moved
    stopped_step_m: np.ndarray  # |t_pred| for pairs that stood still (0 for a network that sees motion)
    end_error_m: float  # chained end point vs true end point, in the first camera's frame
    distance_m: float  # true distance travelled
    travel_direction_deg: float  # angle between chained and true end-point displacement

    @property
    def drift(self) -> float:
        """End-point error as a fraction of the distance travelled."""
        return self.end_error_m / max(self.distance_m, 1e-9)


def compare_odometry(predicted: Sequence[np.ndarray], true_poses: Sequence[np.ndarray]) -> OdometryErrors:
    """Predicted T_later_earlier per frame pair (N - 1 of them, metres) vs N true T_odom_optical poses."""
    if len(predicted) != len(true_poses) - 1:
        raise ValueError(f"{len(predicted)} predicted motions for {len(true_poses)} poses; need one per frame pair")
    translation, rotation, true_steps, predicted_steps, scales, directions, stopped = [], [], [], [], [], [], []
    T_first_current = np.eye(4)  # chained prediction: current camera in the first camera's frame
    for k, T_pred in enumerate(predicted, start=1):
        T_true = relative_motion(true_poses[k - 1], true_poses[k])
        t_pred, t_true = T_pred[:3, 3], T_true[:3, 3]
        translation.append(float(np.linalg.norm(t_pred - t_true)))
        rotation.append(rotation_angle_deg(T_pred[:3, :3].T @ T_true[:3, :3]))
        true_step, predicted_step = float(np.linalg.norm(t_true)), float(np.linalg.norm(t_pred))
        true_steps.append(true_step)
        predicted_steps.append(predicted_step)
        if true_step >= MOVING_STEP_M:
            scales.append(predicted_step / true_step)
            directions.append(angle_between_deg(t_pred, t_true))
        else:
            stopped.append(predicted_step)
        T_first_current = T_first_current @ np.linalg.inv(T_pred)
    T_first_last = np.linalg.inv(true_poses[0]) @ true_poses[-1]
    end_error = float(np.linalg.norm(T_first_current[:3, 3] - T_first_last[:3, 3]))
    travel = angle_between_deg(T_first_current[:3, 3], T_first_last[:3, 3]) \
        if np.linalg.norm(T_first_current[:3, 3]) > 0 and np.linalg.norm(T_first_last[:3, 3]) > 0 else float("nan")
    return OdometryErrors(
        np.array(translation), np.array(rotation), np.array(true_steps), np.array(predicted_steps), np.array(scales),
        np.array(directions), np.array(stopped), end_error, float(sum(true_steps)), travel,
    )


def predict_motions(relative_pose: Callable[[object, object], np.ndarray], inputs: Sequence[object],
                    translation_scale: float = 1.0, still_gate=None) -> list:
    """relative_pose(earlier, later) -> T_later_earlier in network units, over consecutive inputs
    -> N - 1 motions with translations times ``translation_scale`` (metres for a metric model).

    With ``still_gate`` (mono_depth_ros.visual_odometry.StillGate) the motions are depth_node's:
    identity while the image stands still, else the motion since the frame last measured from.
    """
    motions = []
    if still_gate is not None:
        still_gate.reset()
        still_gate.pair(inputs[0], 0.0)
    for k, (earlier, later) in enumerate(zip(inputs[:-1], inputs[1:]), start=1):
        if still_gate is not None:
            pair = still_gate.pair(later, float(k))
            if pair.still:
                motions.append(np.eye(4))
                continue
            earlier = pair.earlier
        T = np.array(relative_pose(earlier, later), dtype=np.float64)
        T[:3, 3] *= translation_scale
        motions.append(T)
    return motions
