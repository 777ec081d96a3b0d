"""Visual odometry from the pose network: frame-to-frame motion chained into a trajectory (no ROS import).

Frames (REP 103 / 105):
* camera: the image's optical frame (x right, y down, z forward), the ``child_frame_id``.
* odom: the camera's body frame (x forward, y left, z up) at the first frame, so a level camera
  gives an odom frame with z up. It drifts, as REP 105 allows for odom.

The pose network predicts ``T_later_earlier`` (points of the earlier camera frame in the later one);
the camera's new pose is ``T_odom_camera[k] = T_odom_camera[k-1] @ inverse(T_later_earlier)``.

Importing this module does not import torch (depth_node imports it with an .onnx model too, which
has no pose network): the functions that need torch import it when first called.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np

from .geometry.rotations import R_BODY_OPTICAL, matrix_to_axis_angle

if TYPE_CHECKING:
    import torch

    from .networks import PoseNet

# Floors of the standard deviations reported in the covariances: even a standing camera is not
# known better than this.
MIN_POSITION_STDDEV_M = 0.01
MIN_ANGLE_STDDEV_RAD = 0.005


@dataclass
class OdometryEstimate:
    """One update of :class:`VisualOdometry`. Poses are 4x4 float64, velocities in the camera frame."""

    T_odom_camera: np.ndarray  # (4, 4) camera pose in odom
    linear_velocity: np.ndarray  # (3,) m/s (model units/s when not metric), camera frame
    angular_velocity: np.ndarray  # (3,) rad/s, camera frame
    pose_covariance: np.ndarray  # (6, 6) row-major x y z rot_x rot_y rot_z, odom frame
    twist_covariance: np.ndarray  # (6, 6) camera frame
    distance_m: float  # path length so far


class VisualOdometry:
    """Chains relative poses into ``T_odom_camera`` with a covariance that grows with the distance.

    ``translation_scale`` turns the network's translation into metres (model depth_scale times the
    node's depth_scale; the pose network shares the depth network's scale). ``drift`` is the
    position error per metre travelled (e.g. 0.5 = 50 %), ``rotation_drift`` radians per metre;
    both set the reported covariances and are meant to come from a benchmark on similar data.
    """

    def __init__(self, translation_scale: float = 1.0, drift: float = 0.5, rotation_drift: float = 0.02):
        self.translation_scale = float(translation_scale)
        self.drift = float(drift)
        self.rotation_drift = float(rotation_drift)
        self.reset()

    def reset(self) -> None:
        self.T_odom_camera = np.eye(4)
        self.T_odom_camera[:3, :3] = R_BODY_OPTICAL
        self.distance_m = 0.0
        self.frames = 0

    def update(self, T_later_earlier: np.ndarray, dt_s: float) -> OdometryEstimate:
        """T_later_earlier: (4, 4) network motion (unscaled), dt_s > 0 between the frames -> the new estimate."""
        motion = np.array(T_later_earlier, dtype=np.float64)
        motion[:3, 3] *= self.translation_scale
        T_earlier_later = _invert(motion)  # the later camera's pose in the earlier camera's frame
        self.T_odom_camera = self.T_odom_camera @ T_earlier_later
        step = float(np.linalg.norm(T_earlier_later[:3, 3]))
        self.distance_m += step
        self.frames += 1
        import torch  # here, not at the top: see the module's docstring

        rotation = matrix_to_axis_angle(torch.from_numpy(T_earlier_later[None, :3, :3]))[0].numpy()
        linear = T_earlier_later[:3, 3] / dt_s
        angular = rotation / dt_s
        return OdometryEstimate(
            T_odom_camera=self.T_odom_camera.copy(),
            linear_velocity=linear,
            angular_velocity=angular,
            pose_covariance=_diagonal_covariance(
                max(MIN_POSITION_STDDEV_M, self.drift * self.distance_m),
                max(MIN_ANGLE_STDDEV_RAD, self.rotation_drift * self.distance_m),
            ),
            twist_covariance=_diagonal_covariance(
                max(MIN_POSITION_STDDEV_M, self.drift * step) / dt_s,
                max(MIN_ANGLE_STDDEV_RAD, self.rotation_drift * step) / dt_s,
            ),
            distance_m=self.distance_m,
        )


def _invert(T: np.ndarray) -> np.ndarray:
    import torch

    from .geometry.transforms import invert_transform

    return invert_transform(torch.from_numpy(T[None]))[0].numpy()


def _diagonal_covariance(position_stddev: float, angle_stddev: float) -> np.ndarray:
    return np.diag([position_stddev ** 2] * 3 + [angle_stddev ** 2] * 3)


# Grey-level weights (ITU-R BT.601, as cv2.cvtColor's RGB2GRAY) and the thumbnail reduction of the
# trainer's static-frame test (mono_depth_ros_training.data.thumbnail), so the node calls "standing still" what the
# trainer left out of the pose network's training.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
STILL_THUMBNAIL_FACTOR = 4


def image_change(earlier: torch.Tensor, later: torch.Tensor) -> float:
    """Mean absolute grey-level change between two network inputs, in [0, 1].

    earlier, later: (1, 3, h, w) RGB in [0, 1] -> float. Grey thumbnails 4x smaller (area average)
    as in the trainer's static-frame test (data.min_photometric_change compares the same number).
    """
    import torch.nn.functional as F

    weights = earlier.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)

    def thumbnail(image: torch.Tensor) -> torch.Tensor:
        grey = (image.float() * weights).sum(dim=1, keepdim=True)
        size = (max(1, grey.shape[-2] // STILL_THUMBNAIL_FACTOR), max(1, grey.shape[-1] // STILL_THUMBNAIL_FACTOR))
        return F.adaptive_avg_pool2d(grey, size)

    return float((thumbnail(later) - thumbnail(earlier)).abs().mean())


@dataclass
class FramePair:
    """What to run the pose network on for a new frame (see StillGate.pair)."""

    earlier: Optional[torch.Tensor]  # network input to pair the new frame with; None: no motion to estimate
    earlier_stamp_s: float  # its stamp (the twist divides the motion by the time since)
    still: bool  # True: the image changed less than the threshold since ``earlier``: standing still


class StillGate:
    """Keeps the frame the pose network last measured from and says when the camera stands still.

    The trainer drops frame pairs whose images barely change (data.min_photometric_change), so the
    pose network never saw a standing camera and reports a typical step for one. Frames that changed
    less than ``threshold`` (image_change) from the reference frame count as standing still (no
    motion); the reference stays, so a slow creep is measured once it adds up. ``threshold`` 0: off.
    """

    def __init__(self, threshold: float = 0.01):
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        self.reference: Optional[torch.Tensor] = None
        self.reference_stamp_s = 0.0

    def pair(self, network_input: torch.Tensor, stamp_s: float) -> FramePair:
        """The new frame's pairing; it becomes the reference unless it counts as standing still."""
        reference, reference_stamp_s = self.reference, self.reference_stamp_s
        if reference is not None and self.threshold > 0 and image_change(reference, network_input) < self.threshold:
            return FramePair(reference, reference_stamp_s, still=True)
        self.reference, self.reference_stamp_s = network_input, stamp_s
        return FramePair(reference, reference_stamp_s, still=False)


class PoseRunner:
    """The model's pose network on consecutive network inputs (the tensors DepthEstimator.preprocess makes).

    earlier, later: (1, 3, h, w) in [0, 1] -> T_later_earlier (4, 4) float64, unscaled network units.
    """

    def __init__(self, pose_net: PoseNet, device: torch.device):
        import torch

        self.net = pose_net.eval().to(device)
        self.device = torch.device(device)

    def relative_pose(self, earlier: torch.Tensor, later: torch.Tensor) -> np.ndarray:
        import torch

        from .geometry.transforms import pose_vector_to_matrix

        with torch.inference_mode():
            axis_angle, translation = self.net(earlier.float(), later.float())
            return pose_vector_to_matrix(axis_angle.double(), translation.double())[0].cpu().numpy()


def chain_break_reason(previous_stamp_s: Optional[float], stamp_s: float, max_gap_s: float) -> Optional[Tuple[str, str]]:
    """Why the odometry must restart before this frame -> (kind, text), or None when it can chain: time
    went backwards (a bag restarted) or too long since the previous frame for frame-to-frame motion."""
    if previous_stamp_s is None:
        return None
    dt = stamp_s - previous_stamp_s
    if dt <= 0.0:
        return "stamp went back", f"the image stamp went back by {-dt:.3f} s (a replayed bag?)"
    if dt > max_gap_s:
        return "gap", f"{dt:.2f} s since the previous frame, more than odometry_max_gap ({max_gap_s} s)"
    return None
