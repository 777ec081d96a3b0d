"""depth_node: camera images in, metric depth images and point clouds out.

The ROS layer only: it wires topics and parameters to the rclpy-free modules
(image_conversion, camera, inference, pointcloud, colorize). Frames are handled
on a worker thread that always takes the newest image, so the executor keeps
receiving while the network runs and stale frames are dropped, not queued.
"""
from __future__ import annotations

import array
import math
import signal
import sys
import threading
import time
from typing import Dict, Optional, Tuple

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from ..camera import CameraInfoError, intrinsics_disagreement
from ..camera_info_pairing import CameraInfoPairing, header_stamp
from ..config import DepthNodeConfig
from ..frame_pipeline import FramePipeline, camera_info_intrinsics, camera_info_lens, image_msg_to_rgb
from ..geometry.rotations import matrix_to_quaternion
from ..image_conversion import ImageFormatError, compressed_image_size, compressed_to_rgb, depth_to_image_fields
from ..inference import describe, keep_freed_memory_in_process, load_estimator
from ..model_file import HOW_TO_GET_A_MODEL, ModelFileError
from ..msgtypes import COLORED_OUTPUT, DEPTH_OUTPUT, POINTS_OUTPUT
from ..pointcloud import POINT_FIELDS, POINT_STEP
from ..networks import encoder_label
from ..visual_odometry import PoseRunner, StillGate, VisualOdometry, chain_break_reason
from ..node_health import NodeHealth
from .diagnostics import DiagnosticsPublisher
from .image_subscription import ImageSubscription, ImageSubscriptionError
from .parameters import NodeParameters

WARNING_PERIOD_S = 5.0
SPIN_PERIOD_S = 0.25  # longest a missed shutdown wake-up can delay exit
MAX_THROTTLED_PROBLEMS = 64
# Drivers publish an image just before its camera_info: the first frames may find none yet.
CAMERA_INFO_GRACE_S = 1.0


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, missing or mismatched model); the text says what to do."""


def _to_uint8_array(buffer: np.ndarray) -> array.array:
    # rclpy stores uint8[] as array('B'); giving it one avoids a per-element check (one memcpy).
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(buffer).reshape(-1).view(np.uint8))
    return out


def image_size(image) -> Optional[Tuple[int, int]]:
    """(width, height) of an Image, or of a CompressedImage from its jpeg/png header (None: unreadable)."""
    if hasattr(image, "width"):
        return int(image.width), int(image.height)
    return compressed_image_size(image.data)


def frame_problem(image, info: CameraInfo, config: DepthNodeConfig) -> Optional[Tuple[str, str]]:
    """Why this image (Image or CompressedImage) must be skipped before it is decoded -> (throttle key,
    text), or None. The key names the cause, so that each cause is reported on its own.

    Checked first because they are cheap and guard what decoding would cost (a huge image)
    or what it would get wrong (intrinsics of another camera).
    """
    width, height = image_size(image) or (0, 0)
    pixels = width * height
    if pixels > config.max_image_pixels:
        return (
            f"image too large: {image.header.frame_id} {width}x{height}",
            f"the image is {width}x{height} ({pixels / 1e6:.1f} MP), more than max_image_pixels "
            f"({config.max_image_pixels}); raise max_image_pixels or publish a resized image (image_proc resize)",
        )
    frame_id = image.header.frame_id
    info_frame = info.header.frame_id
    if config.require_matching_frame_id and info_frame and info_frame != frame_id:
        return (
            f"frame_id {frame_id} vs {info_frame}",
            f"the image is in frame '{frame_id}' but the latest camera_info is for '{info_frame}': intrinsics of "
            "another camera (or from before a frame_id change). Remap camera_info to this camera's, or set "
            "require_matching_frame_id false if the two ids differ on purpose",
        )
    return None


class DepthNode(Node):
    def __init__(self, **kwargs):
        # Set before anything can fail: destroy_node() (also called by rclpy's shutdown) relies on them.
        self._condition = threading.Condition()
        self._stopping = False
        self._worker: Optional[threading.Thread] = None
        super().__init__("depth_node", **kwargs)
        try:
            self._setup()
        except BaseException:
            # A half-built node must not stay registered with the context: rclpy's shutdown would
            # destroy it again later, after the caller has already reported the error.
            super().destroy_node()
            raise

    def _setup(self) -> None:
        self._config = self._declare_parameters()
        if not self._config.model_path.strip():
            raise StartupError(
                "parameter 'model_path' is empty: pass model:=/path/to/model.safetensors. " + HOW_TO_GET_A_MODEL
            )
        self._last_warning: Dict[str, float] = {}
        self._health = NodeHealth(time.monotonic())
        self._camera_infos: CameraInfoPairing[CameraInfo] = CameraInfoPairing()
        self._pending: Optional[Image] = None
        self._pending_received_s = 0.0
        self._checked_intrinsics: Optional[tuple] = None
        self.frames_received = 0
        self.frames_dropped = 0
        self.frames_published = 0
        # Topics before the model: a bad QoS override fails at once, not after seconds of loading.
        # Callbacks only run once the node spins, after _setup.
        self._create_endpoints()

        try:
            # The backend follows the file name: .onnx through onnxruntime, .safetensors through PyTorch.
            model = load_estimator(self._config.model_path, self._config.device, half=self._config.half_precision)
        except ModelFileError as error:
            raise StartupError(str(error)) from error
        for warning in model.warnings:
            self.get_logger().warning(warning)
        self._estimator = model.estimator
        self._pipeline = FramePipeline(self._estimator)
        if not self.context.ok():
            raise ExternalShutdownException()  # a signal arrived while the model was loading
        meta = model.metadata
        self.get_logger().info(
            f"loaded {model.path} ({encoder_label(meta.encoder, meta.num_layers)}, {meta.input_width}x{meta.input_height}, "
            f"{'metric' if meta.metric else 'NOT metric: depth_scale sets the scale'}) with {describe(model)}"
        )
        if not meta.metric and self._config.depth_scale == 1.0:
            self.get_logger().warning(
                "this model's depth is not metric and depth_scale is 1.0: distances are relative, not metres "
                "(see docs/node.md, 'Scale')"
            )
        self._setup_odometry(model)
        self._health.facts.update({
            "device": describe(model), "model": str(model.path),
            "depth": "metric" if meta.metric else f"relative (depth_scale {self._config.depth_scale:g})",
            "image topic": self._image_input.topic_name, "camera_info topic": self._info_sub.topic_name,
        })
        self._diagnostics = DiagnosticsPublisher(self, self._health, hardware_id=describe(model))
        self._parameter_binding.watch()
        self._worker = threading.Thread(target=self._work, name="depth_inference", daemon=True)
        self._worker.start()

    def _setup_odometry(self, model) -> None:
        """Pose network, odometry state, `odom` publisher and tf broadcaster, when publish_odometry is set."""
        self._odometry: Optional[VisualOdometry] = None
        if not self._config.publish_odometry:
            return
        loaded = getattr(model, "model", None)
        if loaded is None:
            raise StartupError(
                f"publish_odometry needs the pose network, which {model.path.name} does not carry (.onnx files hold "
                "the depth network only): run the .safetensors model file"
            )
        if loaded.pose_net is None:
            raise StartupError(
                f"publish_odometry is set but {model.path} has no pose network: train with mode mono or mono+stereo "
                "(stereo-only training has none), or set publish_odometry false"
            )
        self._pose_runner = PoseRunner(loaded.pose_net, self._estimator.device)
        # The pose network shares the depth network's scale: metres for metric models.
        self._odometry = VisualOdometry(translation_scale=model.metadata.depth_scale * self._config.depth_scale,
                                        drift=self._config.odometry_drift)
        self._still_gate = StillGate(self._config.odometry_still_threshold)
        self._previous_stamp_s: Optional[float] = None
        self._previous_frame_id = ""
        self._odom_pub = self.create_publisher(Odometry, "odom", 10)
        self._tf_broadcaster = None
        if self._config.publish_tf:
            try:
                from tf2_ros import TransformBroadcaster
            except ImportError as error:
                self.get_logger().warning(
                    f"publish_tf is set but tf2_ros cannot be imported ({error}); only `odom` is published"
                )
            else:
                self._tf_broadcaster = TransformBroadcaster(self)
        if not model.metadata.metric and self._config.depth_scale == 1.0:
            self.get_logger().warning("odometry of a non-metric model is in model units, not metres (set depth_scale)")

    def _create_endpoints(self) -> None:
        output_qos = QoSProfile(
            history=QoSHistoryPolicy.KEEP_LAST, depth=1, reliability=QoSReliabilityPolicy.RELIABLE
        )
        self._depth_pub = self.create_publisher(Image, DEPTH_OUTPUT, output_qos)
        self._points_pub = self.create_publisher(PointCloud2, POINTS_OUTPUT, output_qos)
        self._colored_pub = self.create_publisher(Image, COLORED_OUTPUT, output_qos)
        self._info_sub = self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data
        )
        # Newest frame only; reliability follows the camera's publishers (image_subscription.py).
        try:
            self._image_input = ImageSubscription(self, self._config.image_transport, self._on_image, self._warn)
        except ImageSubscriptionError as error:
            if not self.context.ok():
                raise ExternalShutdownException() from error
            raise StartupError(str(error)) from error

    # ---- parameters -------------------------------------------------------------------------
    def _declare_parameters(self) -> DepthNodeConfig:
        self._parameter_binding = NodeParameters(self, on_change=self._set_config)
        try:
            return self._parameter_binding.declare()
        except ValueError as error:
            raise StartupError(str(error)) from error

    def _set_config(self, config: DepthNodeConfig) -> None:
        self._config = config  # a run-time change, picked up by the next frame

    @property
    def config(self) -> DepthNodeConfig:
        return self._config

    # ---- callbacks (executor thread) ---------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos.add(header_stamp(msg), msg)

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        self._health.image_received(now)
        with self._condition:
            self.frames_received += 1
            if self._pending is not None:
                self.frames_dropped += 1  # the worker was busy: keep only the newest frame
                self._health.frame_dropped()
            self._pending, self._pending_received_s = msg, now
            self._condition.notify()

    # ---- worker thread -----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                msg, self._pending = self._pending, None
                received_s = self._pending_received_s
            try:
                published = self.process(msg)
                if published:
                    now = time.monotonic()
                    self._health.frame_published(now, now - received_s)
                elif not self._shutting_down():
                    self._health.frame_skipped()
            except Exception as error:  # never let one frame stop the node
                if self._shutting_down():
                    return  # the publishers went away under us during shutdown: nothing to report
                stamp = msg.header.stamp
                self._warn(
                    f"processing: {type(error).__name__}: {error}",
                    f"frame {stamp.sec}.{stamp.nanosec:09d} on {self._image_input.topic_name} failed: {error!r}",
                )

    def _shutting_down(self) -> bool:
        # A signal shuts the context down before main() gets to stop(): check both.
        return self._stopping or not self.context.ok()

    def _warn(self, problem: str, text: str) -> None:
        """Log ``text`` at most once per WARNING_PERIOD_S for each distinct ``problem``.

        A camera stuck on one problem logs it every few seconds, and a different problem
        (another bad field, another camera_info) is reported at once instead of being hidden.
        """
        now = time.monotonic()
        self._health.warned(now, problem, text)  # /diagnostics lists it while in force, throttled or not
        if len(self._last_warning) >= MAX_THROTTLED_PROBLEMS:  # bound memory: forget expired problems
            self._last_warning = {
                key: when for key, when in self._last_warning.items() if now - when < WARNING_PERIOD_S
            }
            if len(self._last_warning) >= MAX_THROTTLED_PROBLEMS:
                problem = "too many different problems"
        if now - self._last_warning.get(problem, -math.inf) >= WARNING_PERIOD_S:
            self._last_warning[problem] = now
            self.get_logger().warning(text)

    def process(self, msg: Image) -> bool:
        """Handle one image; returns True when outputs were published."""
        config = self._config
        # The camera_info with the image's stamp (it may follow the image by a moment), else the newest.
        info = self._camera_infos.info_for(header_stamp(msg))
        topic = self._image_input.topic_name
        if info is None:
            first_image_s = self._health.first_image_s
            if first_image_s is not None and time.monotonic() - first_image_s < CAMERA_INFO_GRACE_S:
                return False  # the stream is starting: its camera_info is on the way
            self._warn(
                "no_camera_info",
                f"no CameraInfo received on {self._info_sub.topic_name} yet; frames on {topic} are skipped "
                "until it arrives (check the camera_info remapping)",
            )
            return False
        problem = frame_problem(msg, info, config)
        if problem is not None:
            key, text = problem
            self._warn(key, f"skipping image on {topic}: {text}")
            return False
        if not msg.header.frame_id:  # still useful as an image: published, but said once per period
            self._warn(
                "empty frame_id",
                f"images on {topic} have an empty header.frame_id: the outputs cannot be placed in tf (RViz will "
                "not show them); set the camera driver's frame_id (e.g. camera_optical_frame)",
            )
        try:
            rgb = image_msg_to_rgb(msg) if hasattr(msg, "encoding") else compressed_to_rgb(msg.format, msg.data)
        except ImageFormatError as error:
            self._warn(f"image: {msg.header.frame_id}: {error}", f"skipping image on {topic}: {error}")
            return False
        height, width = rgb.shape[:2]
        try:
            K = camera_info_intrinsics(info, width, height, config.image_is_rectified)
            lens = camera_info_lens(info, config.image_is_rectified)
        except CameraInfoError as error:
            self._warn(f"camera_info: {info.header.frame_id}: {error}", f"skipping image on {topic}: {error}")
            return False
        self._check_learned_intrinsics(K, width, height)
        if lens is not None and "rect" in topic.rsplit("/", 1)[-1]:
            self._warn(f"rectified topic with D: {topic}", (
                f"{topic} looks like a rectified image, but its camera_info has a non-zero D, so the node "
                "undistorts it again; if it is image_proc's image_rect, set image_is_rectified true"))

        # The steps of FramePipeline.run (what infer_bag calls), each output published when ready.
        prediction = self._pipeline.prediction(rgb, config, K, lens)
        depth = prediction.depth
        if self._shutting_down():
            return False
        self._depth_pub.publish(self._depth_message(msg, depth))

        if config.publish_points and not self._shutting_down():  # a big cloud takes a while: not when stopping
            self._points_pub.publish(self._cloud_message(msg, self._pipeline.cloud(depth, rgb, K, config, lens)))
        if config.publish_colored_depth:
            self._colored_pub.publish(self._colored_message(msg, self._pipeline.colored(depth)))
        if self._odometry is not None and not self._shutting_down():
            self._update_odometry(msg, config, prediction.network_input)
        self.frames_published += 1
        return True

    def _update_odometry(self, msg: Image, config: DepthNodeConfig, network_input) -> None:
        """Chain this frame's motion from the previous processed frame and publish odom (+ tf).

        ``network_input``: this frame's depth-network input (Prediction.network_input), fed to the pose network.
        """
        stamp_s = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        reason = chain_break_reason(self._previous_stamp_s, stamp_s, config.odometry_max_gap)
        if reason is None and self._previous_frame_id and msg.header.frame_id != self._previous_frame_id:
            reason = "frame", f"the camera frame changed from '{self._previous_frame_id}' to '{msg.header.frame_id}'"
        if reason is not None:
            kind, text = reason
            self._warn(f"odometry restart: {kind}", f"odometry restarts at the origin: {text}")
            self._odometry.reset()
            self._still_gate.reset()
        self._odometry.translation_scale = self._estimator.metadata.depth_scale * config.depth_scale
        self._odometry.drift = config.odometry_drift
        self._still_gate.threshold = config.odometry_still_threshold
        pair = self._still_gate.pair(network_input, stamp_s)
        previous_stamp_s, self._previous_stamp_s = self._previous_stamp_s, stamp_s
        self._previous_frame_id = msg.header.frame_id
        if pair.earlier is None:
            return  # the first frame sets the origin
        if pair.still:  # standing: no motion since the previous frame (see StillGate)
            estimate = self._odometry.update(np.eye(4), stamp_s - previous_stamp_s)
        else:  # the motion since the frame the pose network last measured from
            motion = self._pose_runner.relative_pose(pair.earlier, network_input)
            estimate = self._odometry.update(motion, stamp_s - pair.earlier_stamp_s)
        child = config.odometry_child_frame or msg.header.frame_id
        odometry = Odometry()
        odometry.header.stamp = msg.header.stamp
        odometry.header.frame_id = config.odom_frame
        odometry.child_frame_id = child
        position, orientation = odometry.pose.pose.position, odometry.pose.pose.orientation
        position.x, position.y, position.z = (float(v) for v in estimate.T_odom_camera[:3, 3])
        orientation.x, orientation.y, orientation.z, orientation.w = (
            float(v) for v in matrix_to_quaternion(estimate.T_odom_camera[:3, :3])
        )
        odometry.pose.covariance = [float(v) for v in estimate.pose_covariance.reshape(-1)]
        linear, angular = odometry.twist.twist.linear, odometry.twist.twist.angular
        linear.x, linear.y, linear.z = (float(v) for v in estimate.linear_velocity)
        angular.x, angular.y, angular.z = (float(v) for v in estimate.angular_velocity)
        odometry.twist.covariance = [float(v) for v in estimate.twist_covariance.reshape(-1)]
        self._odom_pub.publish(odometry)
        if self._tf_broadcaster is not None:
            from geometry_msgs.msg import TransformStamped

            transform = TransformStamped()
            transform.header = odometry.header
            transform.child_frame_id = child
            transform.transform.translation.x = position.x
            transform.transform.translation.y = position.y
            transform.transform.translation.z = position.z
            transform.transform.rotation = orientation
            self._tf_broadcaster.sendTransform(transform)

    def _check_learned_intrinsics(self, K: np.ndarray, width: int, height: int) -> None:
        """Warn once per camera K when it disagrees with the K the model learned (camera_info is still used)."""
        key = (np.asarray(K).tobytes(), width, height)
        if key == self._checked_intrinsics:
            return
        self._checked_intrinsics = key
        text = intrinsics_disagreement(K, self._estimator.metadata, width, height)
        if text:
            self.get_logger().warning(text)

    # ---- messages ----------------------------------------------------------------------------
    @staticmethod
    def _depth_message(source: Image, depth: np.ndarray) -> Image:
        encoding, step, data = depth_to_image_fields(depth)
        out = Image(header=source.header, height=depth.shape[0], width=depth.shape[1], encoding=encoding)
        out.is_bigendian = 0
        out.step = step
        out.data = _to_uint8_array(data)
        return out

    @staticmethod
    def _colored_message(source: Image, bgr: np.ndarray) -> Image:
        out = Image(header=source.header, height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8")
        out.step = bgr.shape[1] * 3
        out.data = _to_uint8_array(bgr)
        return out

    @staticmethod
    def _cloud_message(source: Image, cloud) -> PointCloud2:
        out = PointCloud2(header=source.header, height=cloud.height, width=cloud.width)
        out.fields = [PointField(name=n, offset=o, datatype=t, count=c) for n, o, t, c in POINT_FIELDS]
        out.is_bigendian = False
        out.point_step = POINT_STEP
        out.row_step = POINT_STEP * cloud.width
        out.is_dense = False
        out.data = _to_uint8_array(cloud.data)
        return out

    # ---- shutdown ----------------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._camera_infos.close()
        if self._worker is not None:
            self._worker.join(timeout)

    def destroy_node(self):
        self.stop()
        return super().destroy_node()


def main(args=None) -> int:
    # Before rclpy starts its threads, so they share the tuned malloc arena (see the function).
    keep_freed_memory_in_process()
    try:
        rclpy.init(args=args)
    except KeyboardInterrupt:  # Ctrl-C while rclpy starts
        rclpy.try_shutdown()
        return 0
    try:
        node = DepthNode()
    except StartupError as error:
        rclpy.logging.get_logger("depth_node").fatal(str(error))
        rclpy.try_shutdown()
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        _ignore_further_interrupts()
        rclpy.try_shutdown()  # Ctrl-C while the model was loading
        return 0
    except Exception:
        if not rclpy.ok():
            # SIGTERM while the model was loading: rclpy shut the context down, so creating the
            # publishers failed. That is a requested stop, not an error.
            return 0
        raise
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        # Not rclpy.spin(): on SIGTERM rclpy wakes the executor *before* it shuts the context down, so
        # an executor that blocks without a timeout can go back to waiting and never see the shutdown
        # (the node then hangs until SIGKILL, ~1 in 5 tries here). A timeout bounds that to one period.
        while rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        _ignore_further_interrupts()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _ignore_further_interrupts() -> None:
    # Ctrl-C on `ros2 launch` in a terminal delivers SIGINT twice (the terminal's, then the one launch
    # forwards). Once stopping has begun, the second must not abort the clean-up with a traceback;
    # SIGTERM and SIGKILL still end a clean-up that hangs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
