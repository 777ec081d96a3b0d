"""Rendering a recording frame by frame: :class:`RecordingPlan` (camera, scene and motion),
:func:`render_recording` (every frame in memory, no bag) and :class:`SyntheticRecording` (what
was rendered, for tests that compare against ground truth). Writing the bag: :mod:`.bag`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from .camera import camera_intrinsics, camera_rays
from .corridor import CorridorScene
from .street import StreetScene
from .trajectory import StreetTrajectory, Trajectory

STAMP_ORIGIN_NS = 1_700_000_000 * 1_000_000_000  # first image stamp (a plausible wall-clock time)
SCENES = ("corridor", "street")
STOP_RAMP_S = 1.5  # slowing down before / speeding up after a stop (street)


@dataclass
class SyntheticRecording:
    """What write_synthetic_bag rendered (for tests that compare against ground truth)."""

    path: Path
    K: np.ndarray
    stamps_ns: List[int]
    images: List[np.ndarray] = field(default_factory=list)  # left RGB (H, W, 3) uint8
    depths: List[np.ndarray] = field(default_factory=list)  # left depth (H, W) float32
    right_images: List[np.ndarray] = field(default_factory=list)
    right_stamps_ns: List[int] = field(default_factory=list)
    poses: List[np.ndarray] = field(default_factory=list)  # T_odom_optical (4, 4) of the left camera
    trajectory: Optional[Union[Trajectory, "StreetTrajectory"]] = None
    scene: Optional[Union[CorridorScene, StreetScene]] = None
    scene_name: str = "corridor"
    camera_height_m: float = 1.4  # camera_link above the ground plane z = 0
    surfaces: List[np.ndarray] = field(default_factory=list)  # street: left surface ids (H, W) (StreetScene)
    right_poses: List[np.ndarray] = field(default_factory=list)  # T_odom_optical of the right camera
    still_frames: List[int] = field(default_factory=list)  # frames (after the first) whose pose equals the previous one


@dataclass
class _Frame:
    index: int
    stamp_ns: int
    pose: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    surface: Optional[np.ndarray] = None
    right_stamp_ns: int = 0
    right_pose: Optional[np.ndarray] = None
    right_rgb: Optional[np.ndarray] = None


def street_stop_interval(num_frames: int, rate_hz: float, static_frames: int, stop_frames: int):
    """(start_s, end_s) of the mid-recording stop in which frames k .. k + stop_frames - 1 stand
    exactly still (k ~ 45 % into the recording), or None when stop_frames is 0.
    Raises ValueError when the recording is too short to slow down and speed up around it."""
    if stop_frames <= 0:
        return None
    first = max(int(round(0.45 * num_frames)), static_frames + 1)
    # Half a frame of margin on both sides: frame stamps never sit on a boundary.
    start, end = (first - 0.5) / rate_hz, (first + stop_frames - 0.5) / rate_hz
    moving_from = static_frames / rate_hz + STOP_RAMP_S if static_frames > 0 else 0.0
    if first + stop_frames > num_frames or start - STOP_RAMP_S < moving_from:
        raise ValueError(
            f"{num_frames} frames at {rate_hz} Hz are too few for a stop of {stop_frames} frames "
            f"(it needs {STOP_RAMP_S} s to slow down and to speed up): use more frames or stop_frames=0"
        )
    return start, end


def _auto_stop_frames(num_frames: int, rate_hz: float, static_frames: int) -> int:
    """Default street stop: ~7 % of the recording, at least 5 frames, when it fits."""
    frames = max(5, int(round(0.07 * num_frames)))
    try:
        street_stop_interval(num_frames, rate_hz, static_frames, frames)
    except ValueError:
        return 0
    return frames


class RecordingPlan:
    """Camera, scene and motion of a recording; renders frame by frame."""

    def __init__(self, *, num_frames, width, height, rate_hz, speed_mps, stereo, baseline_m, static_frames,
                 seed, distortion, distortion_model, stereo_offset_s, scene, stop_frames):
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {', '.join(SCENES)}, got '{scene}'")
        if num_frames < 1 or width < 8 or height < 8 or rate_hz <= 0:
            raise ValueError("need num_frames >= 1, width and height >= 8, rate_hz > 0")
        if static_frames < 0:
            raise ValueError(f"static_frames must be >= 0, got {static_frames}")
        self.num_frames, self.width, self.height, self.rate_hz = num_frames, width, height, rate_hz
        self.stereo, self.baseline_m, self.stereo_offset_s = stereo, baseline_m, stereo_offset_s
        self.scene_name = scene
        self.K = camera_intrinsics(width, height)
        self.rays = camera_rays(self.K, width, height, distortion, distortion_model)
        self.period_ns = int(round(1e9 / rate_hz))
        if scene == "corridor":
            if stop_frames:
                raise ValueError("stop_frames is for scene='street' (the corridor only stands still at the start)")
            self.scene = CorridorScene.with_boxes(seed)
            self.trajectory = Trajectory(speed_mps=speed_mps, static_s=static_frames / rate_hz)
        else:
            if stop_frames is None:
                stop_frames = _auto_stop_frames(num_frames, rate_hz, static_frames)
            # Frames 0 .. static_frames - 1 stand still.
            static_s = (static_frames - 0.5) / rate_hz if static_frames > 0 else 0.0
            self.trajectory = StreetTrajectory(
                speed_mps=speed_mps, static_s=static_s, ramp_s=STOP_RAMP_S, seed=seed,
                stop_s=street_stop_interval(num_frames, rate_hz, static_frames, stop_frames),
            )
            last = self.trajectory.T_odom_body((num_frames - 1) * self.period_ns * 1e-9)
            self.scene = StreetScene.generate(seed, length_m=float(last[0, 3]))

    def new_recording(self) -> SyntheticRecording:
        return SyntheticRecording(
            path=Path(), K=self.K, stamps_ns=[], trajectory=self.trajectory, scene=self.scene,
            scene_name=self.scene_name, camera_height_m=float(self.trajectory.camera_height),
        )

    def _render(self, pose):
        if isinstance(self.scene, StreetScene):
            view = self.scene.render_view(self.rays, pose, self.width, self.height, self.K[0, 0])
            return view.rgb, view.depth, view.surface
        rgb, depth = self.scene.render(self.rays, pose, self.width, self.height, self.K[0, 0])
        return rgb, depth, None

    def frame(self, index: int) -> _Frame:
        stamp_ns = STAMP_ORIGIN_NS + index * self.period_ns
        time_s = index * self.period_ns * 1e-9
        pose = self.trajectory.T_odom_optical(time_s)
        rgb, depth, surface = self._render(pose)
        frame = _Frame(index=index, stamp_ns=stamp_ns, pose=pose, rgb=rgb, depth=depth, surface=surface)
        if self.stereo:
            offset_ns = int(round(self.stereo_offset_s * 1e9))
            frame.right_pose = self.trajectory.T_odom_optical(time_s + offset_ns * 1e-9, offset_x_m=self.baseline_m)
            frame.right_rgb, _, _ = self._render(frame.right_pose)
            frame.right_stamp_ns = stamp_ns + offset_ns
        return frame

    def frames(self, recording: Optional[SyntheticRecording] = None, progress=None):
        """Render every frame in order; appended to `recording` when given; progress(1) after each."""
        previous = None
        for index in range(self.num_frames):
            frame = self.frame(index)
            if recording is not None:
                recording.stamps_ns.append(frame.stamp_ns)
                recording.images.append(frame.rgb)
                recording.depths.append(frame.depth)
                recording.poses.append(frame.pose)
                if frame.surface is not None:
                    recording.surfaces.append(frame.surface)
                if self.stereo:
                    recording.right_images.append(frame.right_rgb)
                    recording.right_stamps_ns.append(frame.right_stamp_ns)
                    recording.right_poses.append(frame.right_pose)
                if previous is not None and np.array_equal(previous, frame.pose):
                    recording.still_frames.append(index)
            previous = frame.pose
            if progress is not None:
                progress(1)
            yield frame


def render_recording(
    *,
    num_frames: int = 40,
    width: int = 160,
    height: int = 96,
    rate_hz: float = 10.0,
    speed_mps: float = 1.0,
    stereo: bool = True,
    baseline_m: float = 0.2,
    static_frames: int = 0,
    seed: int = 0,
    distortion: Optional[Sequence[float]] = None,
    distortion_model: str = "plumb_bob",
    stereo_offset_s: float = 0.0,
    scene: str = "corridor",
    stop_frames: Optional[int] = None,
    progress=None,
) -> SyntheticRecording:
    """Render the frames of a synthetic recording without writing a bag (path is empty).

    scene: "corridor" (the default, small and enclosed) or "street" (see StreetScene; speed
    varies between 0.4x and 1.6x speed_mps, and it stands still for `stop_frames` frames in
    the middle: None = about 7 % of the frames when the recording is long enough).
    """
    plan = RecordingPlan(
        num_frames=num_frames, width=width, height=height, rate_hz=rate_hz, speed_mps=speed_mps, stereo=stereo,
        baseline_m=baseline_m, static_frames=static_frames, seed=seed, distortion=distortion,
        distortion_model=distortion_model, stereo_offset_s=stereo_offset_s, scene=scene, stop_frames=stop_frames,
    )
    recording = plan.new_recording()
    for _ in plan.frames(recording, progress):
        pass
    return recording
