"""Camera motion: :class:`Trajectory` (corridor) and :class:`StreetTrajectory` (street).

Both give T_odom_body (camera_link in odom) and T_odom_optical (an optical frame, the right
camera's included) at any time in seconds from the first frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from mono_depth_ros.geometry.rotations import rpy_to_matrix

from .camera import body_to_optical

STREET_CAMERA_HEIGHT_M = 1.5  # camera_link above the ground (z = 0) in street recordings


@dataclass(frozen=True)
class Trajectory:
    """Camera motion: forward along odom x with varying speed, small sway and yaw.

    The camera stands still for the first ``static_s`` seconds.
    """

    speed_mps: float = 1.0
    static_s: float = 0.0
    camera_height: float = 1.4
    start_x: float = 0.0

    def body_pose(self, time_s: float) -> Tuple[np.ndarray, float]:
        """-> (position (3,) of camera_link in odom, yaw radians)."""
        tau = max(0.0, time_s - self.static_s)
        amplitude, period = 0.25, 3.0
        x = self.start_x + self.speed_mps * (
            tau + amplitude * period / (2 * math.pi) * (1.0 - math.cos(2 * math.pi * tau / period))
        )
        y = 0.12 * math.sin(2 * math.pi * tau / 4.0) * min(1.0, self.speed_mps)
        yaw = 0.04 * math.sin(2 * math.pi * tau / 2.7) * min(1.0, self.speed_mps)
        return np.array([x, y, self.camera_height]), yaw

    def T_odom_body(self, time_s: float) -> np.ndarray:
        position, yaw = self.body_pose(time_s)
        T = np.eye(4)
        c, s = math.cos(yaw), math.sin(yaw)
        T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        T[:3, 3] = position
        return T

    def T_odom_optical(self, time_s: float, offset_x_m: float = 0.0) -> np.ndarray:
        """Pose (4, 4) of an optical frame offset by offset_x_m along the left optical x axis."""
        return self.T_odom_body(time_s) @ body_to_optical(offset_x_m)


def _smoothstep_integral(u: float) -> float:
    """Integral over [0, u] of the smoothstep 3x^2 - 2x^3 (u in [0, 1]; 0.5 at u = 1)."""
    return u ** 3 - 0.5 * u ** 4


@dataclass(frozen=True)
class StreetTrajectory:
    """Camera motion down a street: forward along odom +x at a smoothly varying speed
    (mean ``speed_mps``, between 0.4x and 1.6x of it), drifting a little across the lane, with
    small yaw sway (a few degrees) and pitch/roll wobble (< 1 degree); height fixed at
    ``camera_height``.

    It stands still until ``static_s`` and during ``stop_s`` = (start, end) seconds in the
    middle, slowing down and speeding up over ``ramp_s`` around each stop. Standing still
    freezes everything (the pose is exactly constant), because every motion is a function of
    a "motion clock" that stops.
    """

    speed_mps: float = 1.25
    static_s: float = 0.0
    stop_s: Optional[Tuple[float, float]] = None
    ramp_s: float = 1.5
    camera_height: float = STREET_CAMERA_HEIGHT_M
    lane_y: float = -0.8  # right-hand lane (REP 103: y to the left)
    start_x: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.stop_s is not None:
            start, end = self.stop_s
            moving_from = self.static_s + self.ramp_s if self.static_s > 0.0 else 0.0
            if not (end >= start and start - self.ramp_s >= moving_from):
                raise ValueError(
                    f"stop_s {self.stop_s} must end after it starts and its slow-down ({self.ramp_s} s) "
                    f"must begin after the start-up, at {moving_from} s or later"
                )

    def _phases(self) -> np.ndarray:
        return np.random.default_rng([self.seed, 3]).uniform(0.0, 2.0 * math.pi, size=8)

    def motion_time(self, time_s: float) -> float:
        """The motion clock: time_s minus the time spent standing (smoothly)."""
        r = self.ramp_s
        lost = 0.0
        if self.static_s > 0.0:
            if time_s < self.static_s:
                return 0.0
            if time_s < self.static_s + r:
                u = (time_s - self.static_s) / r
                return r * (u - _smoothstep_integral(u))
            lost = self.static_s + 0.5 * r
        if self.stop_s is not None:
            start, end = self.stop_s
            still = start - lost - 0.5 * r  # the clock while standing
            if time_s < start - r:
                return time_s - lost
            if time_s < start:
                return time_s - lost - r * _smoothstep_integral((time_s - (start - r)) / r)
            if time_s < end:
                return still
            if time_s < end + r:
                u = (time_s - end) / r
                return still + r * (u - _smoothstep_integral(u))
            lost += (end - start) + r
        return time_s - lost

    def body_pose(self, time_s: float) -> Tuple[np.ndarray, np.ndarray]:
        """-> (position (3,) of camera_link in odom, rotation (3, 3) odom <- camera_link)."""
        tau = self.motion_time(time_s)
        phase = self._phases()
        two_pi = 2.0 * math.pi
        # Speed v = V (1 + a1 sin(2 pi tau / p1 + phi1) + a2 sin(...)), integrated in closed form.
        distance = tau
        for amplitude, period, phi in ((0.45, 10.0, phase[0]), (0.15, 3.3, phase[1])):
            distance += amplitude * period / two_pi * (math.cos(phi) - math.cos(two_pi * tau / period + phi))
        x = self.start_x + self.speed_mps * distance
        y = self.lane_y + 0.25 * math.sin(two_pi * tau / 12.0 + phase[2])
        yaw = math.radians(3.0) * math.sin(two_pi * tau / 8.0 + phase[3]) + math.radians(1.0) * math.sin(two_pi * tau / 2.1 + phase[4])
        pitch = math.radians(0.8) * math.sin(two_pi * tau / 1.7 + phase[5])
        roll = math.radians(0.6) * math.sin(two_pi * tau / 2.3 + phase[6])
        return np.array([x, y, self.camera_height]), rpy_to_matrix(roll, pitch, yaw)

    def T_odom_body(self, time_s: float) -> np.ndarray:
        position, rotation = self.body_pose(time_s)
        T = np.eye(4)
        T[:3, :3] = rotation
        T[:3, 3] = position
        return T

    def T_odom_optical(self, time_s: float, offset_x_m: float = 0.0) -> np.ndarray:
        """Pose (4, 4) of an optical frame offset by offset_x_m along the left optical x axis."""
        return self.T_odom_body(time_s) @ body_to_optical(offset_x_m)
