"""One camera frame -> depth_node's outputs, without ROS: shared by depth_node and infer_bag.

The node and the offline tool call the same three steps, so a frame gives the same depth
image, point cloud and colour image in both. The steps are separate because the node
publishes each output as soon as it is ready (depth first); :meth:`FramePipeline.run` does
all three for offline use.

Lens distortion (camera_info's D): a raw image is undistorted before the network, and the depth
is mapped back onto the raw pixel grid; the cloud's points lie on the rays of their raw pixels
through K and D. Outputs therefore stay aligned with the input image and its camera_info.

Message-like inputs are duck-typed: rclpy's and rosbags' sensor_msgs objects both work.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from .camera import CameraInfoError, intrinsics_for_image
from .colorize import colorize_depth
from .config import DepthNodeConfig
from .distortion import DistortionError, LensDistortion, Undistorter, lens_distortion, raw_pixel_rays
from .image_conversion import image_to_rgb
from .inference.backend import DepthBackend, Prediction
from .pointcloud import PackedCloud, pack_xyzrgb, unit_depth_rays


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB; ImageFormatError says what is wrong."""
    return image_to_rgb(
        str(msg.encoding), int(msg.height), int(msg.width), int(msg.step), msg.data, bool(msg.is_bigendian)
    )


def camera_info_intrinsics(info, image_width: int, image_height: int, rectified: bool = False) -> np.ndarray:
    """sensor_msgs/CameraInfo + image size -> (3, 3) K of that image (binning and ROI applied).

    ``rectified``: the image is image_proc's rectified image (``image_rect``), whose camera is P's left
    3x3 (K when P is all zero), not K. Raises CameraInfoError when the camera_info cannot describe the
    image (wrong size, bad K).
    """
    roi = info.roi
    k = info.k
    if rectified and np.any(np.asarray(info.p, dtype=np.float64)):
        p = [float(value) for value in info.p]
        k = p[0:3] + p[4:7] + p[8:11]
    return intrinsics_for_image(
        k, int(info.width), int(info.height), int(image_width), int(image_height),
        int(info.binning_x), int(info.binning_y),
        int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height),
    )


def camera_info_lens(info, rectified: bool = False) -> Optional[LensDistortion]:
    """sensor_msgs/CameraInfo -> its lens distortion, or None when the image is pinhole (D zero, or
    ``rectified``: image_proc's rectified image, whose camera_info still carries the raw camera's D).

    Raises CameraInfoError (unusable D: not finite, unknown model, too few coefficients)."""
    if rectified:
        return None
    try:
        return lens_distortion(str(info.distortion_model), list(info.d))
    except DistortionError as error:
        raise CameraInfoError(str(error)) from None


@dataclass
class FrameOutputs:
    """depth_node's outputs for one frame (None where the config turns an output off)."""

    depth: np.ndarray  # (H, W) float32 metres, REP 118: -inf / +inf outside [output_min_depth, output_max_depth]
    cloud: Optional[PackedCloud]  # organised xyz+rgb, every points_stride-th pixel
    colored: Optional[np.ndarray]  # (H, W, 3) uint8 BGR


class FramePipeline:
    """The node's per-frame computation: depth, masked as REP 118 asks; cloud; colour image."""

    def __init__(self, estimator: DepthBackend):
        self.estimator = estimator
        self._rays_key: Optional[tuple] = None
        self._rays: Optional[np.ndarray] = None
        self._undistorter_key: Optional[tuple] = None
        self._undistorter: Optional[Undistorter] = None

    def undistorter(self, K: np.ndarray, lens: LensDistortion, height: int, width: int) -> Undistorter:
        """The Undistorter of this calibration and size, cached: built once per camera."""
        key = (np.asarray(K, dtype=np.float64).tobytes(), lens, height, width)
        if self._undistorter_key != key:
            self._undistorter = Undistorter(K, lens, width, height)
            self._undistorter_key = key
        return self._undistorter

    def prediction(self, rgb: np.ndarray, config: DepthNodeConfig, K: Optional[np.ndarray] = None,
                   lens: Optional[LensDistortion] = None) -> Prediction:
        """(H, W, 3) uint8 RGB -> the backend's Prediction, its depth (H, W) float32 metres with
        out-of-range marked -inf / +inf and pixels without an estimate NaN (REP 118); its network
        input feeds the node's odometry. With ``lens`` (and the image's K), the image is raw: the
        network sees it undistorted and the depth is returned on the raw pixel grid."""
        if lens is None:
            prediction = self.estimator.run(rgb, extra_scale=config.depth_scale)
        else:
            if K is None:
                raise ValueError("a distorted image needs its K as well as its lens")
            undistorter = self.undistorter(K, lens, rgb.shape[0], rgb.shape[1])
            prediction = self.estimator.run(undistorter.image(rgb), extra_scale=config.depth_scale)
            prediction = replace(prediction, depth=undistorter.depth_to_raw(prediction.depth))
        depth = prediction.depth
        # In place: no copy of a full-resolution map per frame; the cloud turns +-inf into NaN points.
        depth[depth < config.output_min_depth] = -np.inf
        depth[depth > config.output_max_depth] = np.inf
        return prediction

    def depth(self, rgb: np.ndarray, config: DepthNodeConfig, K: Optional[np.ndarray] = None,
              lens: Optional[LensDistortion] = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) float32 metres, out-of-range marked -inf / +inf (REP 118)."""
        return self.prediction(rgb, config, K, lens).depth

    def rays(self, K: np.ndarray, height: int, width: int, stride: int,
             lens: Optional[LensDistortion] = None) -> np.ndarray:
        """Rays (z == 1) of the sampled raw pixels through K (and D), cached: a camera rarely changes."""
        key = (np.asarray(K, dtype=np.float64).tobytes(), height, width, stride, lens)
        if self._rays_key != key:
            if lens is None:
                self._rays = unit_depth_rays(K, height, width, stride)
            elif stride == 1 and self._undistorter_key == (key[0], lens, height, width):
                self._rays = self._undistorter.rays
            else:
                self._rays = raw_pixel_rays(K, lens, height, width, stride)
            self._rays_key = key
        return self._rays

    def cloud(self, depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, config: DepthNodeConfig,
              lens: Optional[LensDistortion] = None) -> PackedCloud:
        """depth (H, W) from :meth:`depth`, rgb (H, W, 3), K (3, 3) and the lens (None: pinhole) ->
        cloud in the image's optical frame; each point lies on the ray of its raw pixel."""
        stride = config.points_stride
        height, width = depth.shape
        return pack_xyzrgb(
            depth[::stride, ::stride],
            self.rays(K, height, width, stride, lens),
            rgb[::stride, ::stride],
            config.output_min_depth,
            config.output_max_depth,
        )

    @staticmethod
    def colored(depth: np.ndarray) -> np.ndarray:
        """depth (H, W) -> (H, W, 3) uint8 BGR colour-mapped inverse depth."""
        return colorize_depth(depth)

    def run(self, rgb: np.ndarray, K: np.ndarray, config: DepthNodeConfig,
            lens: Optional[LensDistortion] = None) -> FrameOutputs:
        """All outputs the node would publish for this frame under ``config``."""
        depth = self.depth(rgb, config, K, lens)
        cloud = self.cloud(depth, rgb, K, config, lens) if config.publish_points else None
        colored = self.colored(depth) if config.publish_colored_depth else None
        return FrameOutputs(depth, cloud, colored)

