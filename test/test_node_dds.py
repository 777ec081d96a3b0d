"""depth_node over real DDS: the node runs in its own process, the test talks to it with rclpy.

Each node process gets its own namespace, so its topics and parameter services never meet
another's. Outputs are matched to inputs by header stamp, which is unique per published frame.
Helpers re-send a frame until its outputs arrive (best-effort camera_info may be lost);
re-sending is harmless because outputs are looked up by stamp.
"""
from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters, SetParametersAtomically  # noqa: E402,E501
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402

from mono_depth_ros.camera_info_pairing import MATCHES_BEFORE_WAITING  # noqa: E402
from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import load_model_file  # noqa: E402

try:
    from rclpy.event_handler import PublisherEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks

try:  # Iron and later; Humble's rclpy lacks it, then the service is called directly.
    from rclpy.parameter_client import AsyncParameterClient
except ImportError:  # pragma: no cover - depends on the ROS distribution
    AsyncParameterClient = None

START_TIMEOUT_S = 60.0  # node start is ~3-5 s; generous for a loaded 2-core machine
FRAME_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0  # bounds a hang, not a speed: exit time is measured in benchmarks
RESEND_PERIOD_S = 2.0
STARTUP_BATCH = 4  # misconfigured nodes started at once

# Intrinsics with a principal point far from the centre and fx != fy, so swapped or
# centred terms show up in the projection checks.
FX, FY = 410.0, 377.5


def _stamps():
    for n in itertools.count(1):
        yield Time(sec=1_700_000_000 + n, nanosec=(n * 7919) % 1_000_000_000)


_STAMPS = _stamps()


def next_stamp() -> Time:
    return next(_STAMPS)


def same_stamp(a: Time, b: Time) -> bool:
    return a.sec == b.sec and a.nanosec == b.nanosec


def scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured BGR test image (H, W, 3) uint8 with B != R almost everywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    blue = 255.0 * x / max(width - 1, 1)
    green = 255.0 * y / max(height - 1, 1)
    red = 128.0 + 110.0 * np.sin(x / 17.0) * np.cos(y / 23.0)
    image = np.stack([blue, green, red], axis=-1) + rng.normal(0.0, 12.0, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def image_msg(bgr: np.ndarray, stamp: Time, frame_id: str, encoding: str = "bgr8") -> Image:
    msg = Image(height=bgr.shape[0], width=bgr.shape[1], encoding=encoding, is_bigendian=0)
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.step = bgr.shape[1] * 3
    msg.data = bgr.tobytes()
    return msg


def info_msg(width: int, height: int, stamp: Time, frame_id: str, k: Optional[Sequence[float]] = None) -> CameraInfo:
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    if k is None:
        k = default_k(width, height)
    msg.k = [float(v) for v in k]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    msg.d = [0.0] * 5
    return msg


def default_k(width: int, height: int) -> List[float]:
    return [FX, 0.0, 0.31 * width, 0.0, FY, 0.62 * height, 0.0, 0.0, 1.0]


def depth_array(msg: Image) -> np.ndarray:
    """32FC1 Image -> (H, W) float32, honouring step and endianness."""
    dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 4]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width).astype(np.float32)


def cloud_arrays(msg: PointCloud2):
    """PointCloud2 -> (xyz (h, w, 3) float32, rgb (h, w, 3) uint8), read through the declared field offsets."""
    offsets = {field.name: field.offset for field in msg.fields}
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.row_step)
    raw = raw[:, : msg.width * msg.point_step].reshape(msg.height, msg.width, msg.point_step)

    def column(name: str, dtype: str) -> np.ndarray:
        start = offsets[name]
        return np.ascontiguousarray(raw[:, :, start:start + 4]).view(dtype)[:, :, 0]

    xyz = np.stack([column("x", "<f4"), column("y", "<f4"), column("z", "<f4")], axis=-1)
    packed = column("rgb", "<u4")  # PCL convention: uint32 0x00RRGGBB stored in the float field
    rgb = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=-1).astype(np.uint8)
    return xyz, rgb


# ---- processes and the test-side ROS node ----------------------------------------------------
def _parameter_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.9f}"  # never scientific notation, which the YAML parser reads as a string
    return str(value)


def _parameter_msg(name: str, value):
    from rcl_interfaces.msg import Parameter as ParameterMsg

    return ParameterMsg(name=name, value=value)


class NodeProcess:
    """depth_node as a subprocess; its console output goes to a file the tests read."""

    def __init__(
        self, log_path: Path, namespace: str, parameters: Dict[str, object], params_file: Optional[Path] = None
    ):
        self.namespace = namespace
        self.log_path = Path(log_path)
        command = [sys.executable, "-m", "mono_depth_ros.ros.depth_node", "--ros-args", "-r", f"__ns:={namespace}"]
        if params_file is not None:
            command += ["--params-file", str(params_file)]
        for name, value in parameters.items():
            command += ["-p", f"{name}:={_parameter_text(value)}"]
        env = dict(
            os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", RCUTILS_LOGGING_BUFFERED_STREAM="0"
        )
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float, spin: Optional[Callable[[float], None]] = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.process.poll() is not None:
                return text in self.output()
            if spin:
                spin(0.1)
            else:
                time.sleep(0.1)
        return text in self.output()

    def wait_exit(self, timeout: float) -> Optional[int]:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> Optional[int]:
        """Signal the node and wait; -> its exit code, or None when it had to be killed."""
        code = self.process.poll()
        if code is None:
            self.process.send_signal(sig)
            code = self.wait_exit(timeout)
            if code is None:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return code


class Ros:
    """A test-side rclpy node in its own context (no global state, no signal handlers)."""

    def __init__(self):
        self.context = Context()
        try:
            from rclpy.signals import SignalHandlerOptions

            rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        except (ImportError, TypeError):  # older rclpy without the option
            rclpy.init(context=self.context)
        self.node = rclpy.create_node("depth_node_dds_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.05, max(deadline - time.monotonic(), 0.0)))

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


# What camera drivers publish by default (and what the node subscribes with by default).
RELIABLE_IMAGES = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
OUTPUTS = {"depth": Image, "points": PointCloud2, "depth_colored": Image}


class RunningNode:
    """A depth_node process plus the test's publishers to and subscriptions on its topics."""

    def __init__(
        self,
        ros: Ros,
        log_path: Path,
        namespace: str,
        parameters: Dict[str, object],
        image_qos: QoSProfile = RELIABLE_IMAGES,
    ):
        self.ros = ros
        self.namespace = namespace
        self.process = NodeProcess(log_path, namespace, parameters)
        node = ros.node
        self.image_pub = node.create_publisher(Image, f"{namespace}/image", image_qos)
        self.info_pub = node.create_publisher(CameraInfo, f"{namespace}/camera_info", qos_profile_sensor_data)
        keep_all_outputs = QoSProfile(
            history=QoSHistoryPolicy.KEEP_LAST, depth=200, reliability=QoSReliabilityPolicy.RELIABLE
        )
        self.received: Dict[str, list] = {name: [] for name in OUTPUTS}
        self._subscriptions = [
            node.create_subscription(kind, f"{namespace}/{name}", self.received[name].append, keep_all_outputs)
            for name, kind in OUTPUTS.items()
        ]

    @property
    def node_name(self) -> str:
        return f"{self.namespace}/depth_node"

    def fail(self, what: str) -> None:
        pytest.fail(f"{what}\n--- depth_node output ---\n{self.process.output()[-4000:]}")

    def wait_ready(self) -> None:
        """Until the node has loaded its model and both ends of every topic have matched."""
        if not self.process.wait_for_output("loaded ", START_TIMEOUT_S, self.ros.spin_for):
            self.fail("depth_node did not start")
        node = self.ros.node

        def matched() -> bool:
            return (
                self.image_pub.get_subscription_count() > 0
                and self.info_pub.get_subscription_count() > 0
                and all(node.count_publishers(f"{self.namespace}/{name}") > 0 for name in OUTPUTS)
            )

        if not self.ros.spin_until(matched, START_TIMEOUT_S):
            self.fail("depth_node's topics were not discovered")
        self.ros.spin_for(0.3)  # let the reliable output readers finish matching too

    def clear(self) -> None:
        for messages in self.received.values():
            messages.clear()

    def outputs_for(self, name: str, stamp: Time) -> list:
        return [msg for msg in self.received[name] if same_stamp(msg.header.stamp, stamp)]

    def send(self, image: Image, info: Optional[CameraInfo] = None) -> None:
        if info is not None:
            self.info_pub.publish(info)
            self.ros.spin_for(0.02)  # camera_info first, as a driver publishes it
        self.image_pub.publish(image)

    def exchange(
        self,
        image: Image,
        info: Optional[CameraInfo],
        outputs: Sequence[str] = ("depth", "points", "depth_colored"),
        timeout: float = FRAME_TIMEOUT_S,
    ) -> Dict[str, object]:
        """Send a frame (re-sending while unanswered) until every named output for its stamp arrived."""
        stamp = image.header.stamp
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(image, info)
            if self.ros.spin_until(
                lambda: all(self.outputs_for(name, stamp) for name in outputs),
                min(RESEND_PERIOD_S, deadline - time.monotonic()),
            ):
                return {name: self.outputs_for(name, stamp)[0] for name in outputs}
        self.fail(f"no {', '.join(outputs)} for the frame stamped {stamp.sec}.{stamp.nanosec:09d}")

    def send_until_logged(self, image: Image, info: Optional[CameraInfo], text: str, timeout: float = 20.0) -> None:
        """Send a (bad) frame, re-sending while ``text`` is not in the node's output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(image, info)
            if self.process.wait_for_output(text, min(RESEND_PERIOD_S, deadline - time.monotonic()), self.ros.spin_for):
                return
        self.fail(f"the node did not log {text!r}")

    def set_parameters(self, values: Dict[str, object], timeout: float = 20.0):
        """Set parameters through the node's parameter service -> list of SetParametersResult."""
        parameters = [Parameter(name, value=value) for name, value in values.items()]
        if AsyncParameterClient is not None:
            client = AsyncParameterClient(self.ros.node, self.node_name)
            if not self.ros.spin_until(lambda: client.services_are_ready(), timeout):
                self.fail("parameter services not available")
            future = client.set_parameters(parameters)
        else:
            client = self.ros.node.create_client(SetParameters, f"{self.node_name}/set_parameters")
            if not self.ros.spin_until(client.service_is_ready, timeout):
                self.fail("set_parameters service not available")
            future = client.call_async(SetParameters.Request(parameters=[p.to_parameter_msg() for p in parameters]))
        if not self.ros.spin_until(future.done, timeout):
            self.fail("set_parameters did not answer")
        return list(future.result().results)

    def _call(self, kind, service: str, request, timeout: float = 20.0):
        client = self.ros.node.create_client(kind, f"{self.node_name}/{service}")
        try:
            if not self.ros.spin_until(client.service_is_ready, timeout):
                self.fail(f"{service} service not available")
            future = client.call_async(request)
            if not self.ros.spin_until(future.done, timeout):
                self.fail(f"{service} did not answer")
            return future.result()
        finally:
            self.ros.node.destroy_client(client)

    def get_parameters(self, names: Sequence[str]) -> Dict[str, object]:
        """{name: value} through the node's get_parameters service (None for a parameter not set)."""
        values = self._call(GetParameters, "get_parameters", GetParameters.Request(names=list(names))).values
        return {name: Parameter.from_parameter_msg(_parameter_msg(name, value)).value for name, value in zip(names, values)}

    def set_parameters_atomically(self, values: Dict[str, object]):
        """All or none, through the node's set_parameters_atomically service -> one SetParametersResult."""
        request = SetParametersAtomically.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        return self._call(SetParametersAtomically, "set_parameters_atomically", request).result

    def describe_parameters(self, names: Sequence[str]) -> list:
        return list(self._call(DescribeParameters, "describe_parameters",
                               DescribeParameters.Request(names=list(names))).descriptors)

    def close(self, sig: int = signal.SIGINT) -> Optional[int]:
        code = self.process.stop(sig)
        for subscription in self._subscriptions:
            self.ros.node.destroy_subscription(subscription)
        self.ros.node.destroy_publisher(self.image_pub)
        self.ros.node.destroy_publisher(self.info_pub)
        return code


@pytest.fixture(scope="module")
def ros():
    harness = Ros()
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def estimator(small_model_path):
    return DepthEstimator(load_model_file(small_model_path), torch.device("cpu"))


def reference_depth(estimator: DepthEstimator, bgr: np.ndarray, depth_scale: float) -> np.ndarray:
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return estimator.predict(rgb, extra_scale=depth_scale)


MAIN_SCALE = 1.5  # the node's depth_scale parameter, on top of the model file's own 2.0


@pytest.fixture(scope="module")
def main_range(estimator):
    """(min_depth, max_depth) that cut off the nearest and farthest ~20 % of the 640x480 scene."""
    depth = reference_depth(estimator, scene(640, 480), MAIN_SCALE)
    low, high = np.percentile(depth, [20, 80])
    return float(low), float(high)


@pytest.fixture(scope="module")
def main_node(ros, small_model_path, main_range, tmp_path_factory):
    """One node for the output and bad-input tests (min/max depth set to cut some pixels)."""
    node = RunningNode(
        ros,
        tmp_path_factory.mktemp("dds") / "main_node.log",
        "/dds_main",
        {
            "model_path": str(small_model_path),
            "device": "cpu",
            "depth_scale": MAIN_SCALE,
            "min_depth": main_range[0],
            "max_depth": main_range[1],
        },
    )
    node.wait_ready()
    yield node
    node.close()


def check_depth_message(depth_msg: Image, source: Image) -> np.ndarray:
    assert depth_msg.encoding == "32FC1"
    assert depth_msg.is_bigendian == 0
    assert (depth_msg.width, depth_msg.height) == (source.width, source.height)
    assert depth_msg.step == 4 * source.width
    assert len(depth_msg.data) == depth_msg.step * depth_msg.height
    assert same_stamp(depth_msg.header.stamp, source.header.stamp)
    assert depth_msg.header.frame_id == source.header.frame_id
    return depth_array(depth_msg)


# ---- depth ------------------------------------------------------------------------------------
@pytest.mark.parametrize("width, height", [(640, 480), (333, 251)])
def test_depth_matches_in_process_inference_and_marks_out_of_range(
    main_node, estimator, main_range, width, height
):
    bgr = scene(width, height, seed=width)
    stamp = next_stamp()
    image = image_msg(bgr, stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, "camera_optical_frame"), ("depth",))
    depth = check_depth_message(outputs["depth"], image)

    expected = reference_depth(estimator, bgr, MAIN_SCALE)
    min_depth, max_depth = main_range
    finite = np.isfinite(depth)
    # REP 118: every value is finite inside [min, max], or -inf (too close) / +inf (too far).
    assert not np.isnan(depth).any()
    assert np.all((depth[finite] >= min_depth) & (depth[finite] <= max_depth))
    # Pixels clearly inside / outside the range (1e-4 away from a limit) must be exactly classified.
    margin = 1e-4
    inside = (expected > min_depth * (1 + margin)) & (expected < max_depth * (1 - margin))
    too_close = expected < min_depth * (1 - margin)
    too_far = expected > max_depth * (1 + margin)
    assert np.all(depth[too_close] == -np.inf)
    assert np.all(depth[too_far] == np.inf)
    assert np.all(finite[inside])
    np.testing.assert_allclose(depth[inside], expected[inside], rtol=1e-4)
    if (width, height) == (640, 480):  # the range was cut from this image's percentiles
        assert too_close.mean() > 0.1 and too_far.mean() > 0.1 and inside.mean() > 0.5


def test_frame_id_follows_each_image(main_node):
    """Outputs carry the header of their own input, also when the camera's frame changes between images."""
    width, height = 160, 120
    bgr = scene(width, height)
    for frame_id in ("camera_a_optical_frame", "camera_b_optical_frame", "camera_a_optical_frame"):
        stamp = next_stamp()
        image = image_msg(bgr, stamp, frame_id)
        outputs = main_node.exchange(image, info_msg(width, height, stamp, frame_id))
        for name in OUTPUTS:
            assert outputs[name].header.frame_id == frame_id, name
            assert same_stamp(outputs[name].header.stamp, stamp), name


# ---- points -----------------------------------------------------------------------------------
def check_cloud_layout(cloud: PointCloud2, source: Image, rows: int, columns: int) -> None:
    fields = [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields]
    assert fields == [
        ("x", 0, PointField.FLOAT32, 1),
        ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1),
    ]
    assert cloud.point_step == 16
    assert (cloud.height, cloud.width) == (rows, columns)
    assert cloud.row_step == 16 * columns
    assert len(cloud.data) == cloud.row_step * cloud.height
    assert cloud.is_bigendian is False
    assert cloud.is_dense is False
    assert same_stamp(cloud.header.stamp, source.header.stamp)
    assert cloud.header.frame_id == source.header.frame_id


def check_points_project_to_their_pixels(
    cloud: PointCloud2, depth: np.ndarray, bgr: np.ndarray, k: Sequence[float], stride: int
) -> None:
    xyz, rgb = cloud_arrays(cloud)
    fx, skew, cx, fy, cy = k[0], k[1], k[2], k[4], k[5]
    rows, columns = xyz.shape[:2]
    v, u = np.mgrid[0:rows, 0:columns] * stride  # point (i, j) belongs to pixel (u, v) = (stride j, stride i)
    sampled_depth = depth[::stride, ::stride]
    valid = np.isfinite(xyz).all(axis=-1)
    # NaN points exactly where the published depth is out of range (+-inf).
    np.testing.assert_array_equal(valid, np.isfinite(sampled_depth))
    assert valid.any()
    x, y, z = (xyz[:, :, axis][valid].astype(np.float64) for axis in range(3))
    projected_u = (fx * x + skew * y) / z + cx
    projected_v = fy * y / z + cy
    assert np.abs(projected_u - u[valid]).max() < 0.01
    assert np.abs(projected_v - v[valid]).max() < 0.01
    np.testing.assert_array_equal(xyz[:, :, 2][valid], sampled_depth[valid])
    # Colour of every point (also invalid ones) is its input pixel's colour; the input is bgr8.
    np.testing.assert_array_equal(rgb, bgr[::stride, ::stride, ::-1])


def test_points_project_back_onto_their_pixels(main_node):
    width, height = 333, 251
    bgr = scene(width, height, seed=3)
    stamp = next_stamp()
    image = image_msg(bgr, stamp, "camera_optical_frame")
    info = info_msg(width, height, stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info, ("depth", "points"))
    depth = check_depth_message(outputs["depth"], image)
    check_cloud_layout(outputs["points"], image, height, width)
    check_points_project_to_their_pixels(outputs["points"], depth, bgr, info.k, stride=1)


def test_points_stride_subsamples_pixels(main_node):
    width, height = 333, 251
    bgr = scene(width, height, seed=4)
    results = main_node.set_parameters({"points_stride": 4})
    assert results[0].successful, results[0].reason
    try:
        stamp = next_stamp()
        image = image_msg(bgr, stamp, "camera_optical_frame")
        info = info_msg(width, height, stamp, "camera_optical_frame")
        outputs = main_node.exchange(image, info, ("depth", "points"))
        depth = check_depth_message(outputs["depth"], image)
        check_cloud_layout(outputs["points"], image, math.ceil(height / 4), math.ceil(width / 4))
        check_points_project_to_their_pixels(outputs["points"], depth, bgr, info.k, stride=4)
    finally:
        main_node.set_parameters({"points_stride": 1})


def test_colored_depth_is_a_bgr8_image_of_the_input_size(main_node):
    width, height = 333, 251
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, "camera_optical_frame"), ("depth", "depth_colored"))
    colored = outputs["depth_colored"]
    assert colored.encoding == "bgr8"
    assert (colored.width, colored.height, colored.step) == (width, height, 3 * width)
    assert len(colored.data) == 3 * width * height
    pixels = np.frombuffer(colored.data, np.uint8).reshape(height, width, 3)
    invalid = ~np.isfinite(depth_array(outputs["depth"]))
    assert np.all(pixels[invalid] == 0)  # out-of-range depth is black
    assert pixels[~invalid].any()


# ---- dropped frames ------------------------------------------------------------------------------
def test_burst_keeps_the_newest_frame_and_drops_the_rest(main_node):
    width, height = 160, 120  # small enough for one datagram each: the burst is not lost in transport
    bgr = scene(width, height, seed=5)
    main_node.exchange(image_msg(bgr, next_stamp(), "cam"), info_msg(width, height, next_stamp(), "cam"), ("depth",))
    main_node.clear()
    burst = [image_msg(bgr, next_stamp(), "cam") for _ in range(30)]
    for image in burst:  # back to back: far faster than one inference
        main_node.image_pub.publish(image)
    last = burst[-1].header.stamp
    if not main_node.ros.spin_until(lambda: main_node.outputs_for("depth", last), FRAME_TIMEOUT_S):
        main_node.fail("the newest frame of the burst was not processed")
    main_node.ros.spin_for(2.0)  # a queue backlog would keep producing outputs now
    published = main_node.received["depth"]
    assert len(published) < len(burst)
    assert same_stamp(published[-1].header.stamp, last)  # nothing older came after the newest
    sent_order = [(image.header.stamp.sec, image.header.stamp.nanosec) for image in burst]
    got_order = [(msg.header.stamp.sec, msg.header.stamp.nanosec) for msg in published]
    assert all(stamp in sent_order for stamp in got_order)
    assert got_order == sorted(got_order)  # oldest first, no frame twice


# ---- load: bursts and long runs ---------------------------------------------------------------------
def resident_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def load_node(ros, small_model_path, tmp_path_factory):
    """A node of its own for the load tests, so that their memory figures start from a plain node."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads resident memory from Linux /proc")
    node = RunningNode(
        ros, tmp_path_factory.mktemp("dds") / "load_node.log", "/dds_load",
        {"model_path": str(small_model_path), "device": "cpu"},
    )
    node.wait_ready()
    yield node
    node.close()


def test_burst_at_100_hz_leaves_no_backlog(load_node):
    """1000 images at 100 Hz into a CPU node that manages a fraction of that: it keeps up by dropping
    frames, publishes the newest, builds no queue, and its memory stays flat."""
    width, height = 320, 240
    bgr = scene(width, height, seed=21)
    for _ in range(10):  # warm-up at this size (allocator pools, rays cache)
        stamp = next_stamp()
        load_node.exchange(image_msg(bgr, stamp, "cam"), info_msg(width, height, stamp, "cam"), ("depth",))
    load_node.ros.spin_for(1.0)
    before_mb = resident_mb(load_node.process.process.pid)
    load_node.clear()
    load_node.info_pub.publish(info_msg(width, height, next_stamp(), "cam"))
    burst = [image_msg(bgr, next_stamp(), "cam") for _ in range(1000)]
    start = time.monotonic()
    for index, image in enumerate(burst):
        load_node.ros.spin_for(max(0.0, start + 0.01 * index - time.monotonic()))
        if index % 50 == 0:  # camera_info at 2 Hz: it is best-effort, one may be lost
            load_node.info_pub.publish(info_msg(width, height, next_stamp(), "cam"))
        load_node.image_pub.publish(image)
    published_during_burst = len(load_node.received["depth"])
    last = burst[-1].header.stamp
    if not load_node.ros.spin_until(lambda: load_node.outputs_for("depth", last), FRAME_TIMEOUT_S):
        load_node.fail("the newest frame of the burst was not processed")
    load_node.ros.spin_for(2.0)  # a backlog would keep producing outputs now
    after_mb = resident_mb(load_node.process.process.pid)
    assert load_node.process.process.poll() is None
    published = load_node.received["depth"]
    sent_order = [(image.header.stamp.sec, image.header.stamp.nanosec) for image in burst]
    got_order = [(msg.header.stamp.sec, msg.header.stamp.nanosec) for msg in published]
    assert set(got_order) <= set(sent_order)
    assert got_order == sorted(set(got_order))  # oldest first, no frame twice
    assert got_order[-1] == sent_order[-1]
    # When the last image went out, at most the frame in flight and the newest waiting one remained
    # (plus one still in transport): a queue would leave hundreds.
    assert len(published) - published_during_burst <= 3, (len(published), published_during_burst)
    assert 10 <= len(published) < len(burst)
    assert after_mb - before_mb < 50.0, (before_mb, after_mb)


def test_long_run_memory_stays_flat(load_node):
    """The short version of benchmarks/bench_robustness.py's soak: frames one after another."""
    width, height = 160, 120
    bgr = scene(width, height, seed=22)

    def run(frames: int) -> None:
        for _ in range(frames):
            stamp = next_stamp()
            load_node.exchange(image_msg(bgr, stamp, "cam"), info_msg(width, height, stamp, "cam"), ("depth", "points", "depth_colored"))
            load_node.clear()

    run(40)  # warm-up
    warm_mb = resident_mb(load_node.process.process.pid)
    run(200)
    grown_mb = resident_mb(load_node.process.process.pid) - warm_mb
    print(f"resident memory after warm-up {warm_mb:.1f} MB, grew {grown_mb:+.1f} MB in 200 frames")
    assert grown_mb < 20.0


# ---- bad input --------------------------------------------------------------------------------
def _bad_image(kind: str, stamp: Time) -> Image:
    width, height = 160, 120
    image = image_msg(scene(width, height), stamp, "cam")
    if kind == "bayer":
        image.encoding = "bayer_rggb8"
    elif kind == "float":
        image.encoding = "32FC1"
    elif kind == "short_data":
        image.data = bytes(image.step * height - 1)
    elif kind == "small_step":
        image.step = width * 3 - 3
    elif kind == "zero_size":
        image.width, image.step, image.data = 0, 0, b""
    elif kind == "zero_height":
        image.height, image.data = 0, b""
    return image


BAD_IMAGES = {
    "bayer": "unsupported encoding 'bayer_rggb8'",
    "float": "unsupported encoding '32FC1'",
    "short_data": "data has 57599 bytes, fewer than step x height",
    "small_step": "step 477 is smaller than width x bytes per pixel",
    "zero_size": "empty image (0x120)",
    "zero_height": "empty image (160x0)",
}

BAD_INFOS = {
    "other_size": ("camera_info describes 320x240 images but the image is 160x120", dict(width=320, height=240)),
    "zero_fx": ("fx=0.0", dict(k=[0.0, 0, 80, 0, FY, 60, 0, 0, 1])),
    "nan": ("non-finite entries", dict(k=[FX, 0, float("nan"), 0, FY, 60, 0, 0, 1])),
    "negative_fx": ("fx=-410.0", dict(k=[-FX, 0, 80, 0, FY, 60, 0, 0, 1])),
    "negative_fy": ("fy=-377.5", dict(k=[FX, 0, 80, 0, -FY, 60, 0, 0, 1])),
    "all_zero": ("fx=0.0, fy=0.0", dict(k=[0.0] * 9)),  # an uncalibrated driver's camera_info
}


def check_good_frame_after(node: RunningNode, bad_stamp: Time) -> None:
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "cam")
    outputs = node.exchange(image, info_msg(width, height, stamp, "cam"))
    check_depth_message(outputs["depth"], image)
    for name in OUTPUTS:
        assert node.outputs_for(name, bad_stamp) == [], f"{name} published for the bad frame"


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_image_is_skipped_with_a_warning(main_node, kind):
    width, height = 160, 120
    main_node.info_pub.publish(info_msg(width, height, next_stamp(), "cam"))
    stamp = next_stamp()
    main_node.send_until_logged(_bad_image(kind, stamp), info_msg(width, height, stamp, "cam"), BAD_IMAGES[kind])
    check_good_frame_after(main_node, stamp)


def pair_camera_info_stream(node: RunningNode, width: int = 160, height: int = 120) -> None:
    """Good frames, each with its own camera_info, until the node waits for an image's camera_info."""
    for _ in range(MATCHES_BEFORE_WAITING):
        stamp = next_stamp()
        node.exchange(image_msg(scene(width, height), stamp, "cam"), info_msg(width, height, stamp, "cam"))


@pytest.mark.parametrize("kind", sorted(BAD_INFOS))
def test_bad_camera_info_is_skipped_with_a_warning(main_node, kind):
    width, height = 160, 120
    text, fields = BAD_INFOS[kind]
    # The bad camera_info must be the image's own, whichever of the two the node gets first.
    pair_camera_info_stream(main_node)
    stamp = next_stamp()
    info = info_msg(fields.get("width", width), fields.get("height", height), stamp, "cam", fields.get("k"))
    main_node.send_until_logged(image_msg(scene(width, height), stamp, "cam"), info, text)
    check_good_frame_after(main_node, stamp)


def test_image_published_before_its_camera_info_uses_it(main_node):
    """Drivers publish the image, then its camera_info: when the camera changes size, the first image
    of the new size must be paired with its own camera_info, not skipped for the previous one."""
    pair_camera_info_stream(main_node)
    log_start = len(main_node.process.output())
    for width, height in ((128, 96), (160, 120)):
        stamp = next_stamp()
        image = image_msg(scene(width, height), stamp, "cam")
        main_node.image_pub.publish(image)
        main_node.ros.spin_for(0.03)
        main_node.info_pub.publish(info_msg(width, height, stamp, "cam"))
        # Sent once: a re-send would find the camera_info already there.
        assert main_node.ros.spin_until(lambda: main_node.outputs_for("depth", stamp), FRAME_TIMEOUT_S), (
            f"no depth for the {width}x{height} image sent before its camera_info"
        )
        check_depth_message(main_node.outputs_for("depth", stamp)[0], image)
    assert "describes" not in main_node.process.output()[log_start:]


def test_repeated_problem_warns_once_per_period(main_node):
    """A camera stuck on a bad frame must not flood the log: the same warning is throttled."""
    width, height = 160, 120
    image = image_msg(scene(width, height), next_stamp(), "cam")
    image.encoding = "yuv422_yuy2"
    text = "unsupported encoding 'yuv422_yuy2'"
    main_node.send_until_logged(image, info_msg(width, height, next_stamp(), "cam"), text)
    for _ in range(5):
        main_node.send(image)
        main_node.ros.spin_for(0.2)
    check_good_frame_after(main_node, image.header.stamp)  # the repeats were handled before this
    assert main_node.process.output().count(text) == 1


# ---- every encoding over DDS ------------------------------------------------------------------------
def encoded_image(bgr: np.ndarray, encoding: str, big_endian: bool, padding: int, stamp: Time):
    """Encode a BGR scene as ``encoding`` -> (Image message, the RGB the node must see), built independently
    of mono_depth_ros.image_conversion."""
    height, width = bgr.shape[:2]
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    alpha = np.random.default_rng(3).integers(0, 256, (height, width, 1), dtype=np.uint8)  # must be ignored
    grey = bgr[:, :, 1]
    grey16 = grey.astype(np.uint16) * 256 + np.random.default_rng(4).integers(0, 256, (height, width), dtype=np.uint16)
    pixels = {
        "rgb8": rgb, "bgr8": bgr, "8UC3": bgr,
        "rgba8": np.concatenate([rgb, alpha], axis=2), "bgra8": np.concatenate([bgr, alpha], axis=2),
        "8UC4": np.concatenate([bgr, alpha], axis=2),
        "mono8": grey, "8UC1": grey,
        "mono16": grey16.astype(">u2" if big_endian else "<u2"), "16UC1": grey16.astype(">u2" if big_endian else "<u2"),
    }[encoding]
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    rows = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)  # step > width x bpp
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian), step=rows.shape[1])
    msg.header.stamp = stamp
    msg.header.frame_id = "cam"
    msg.data = rows.tobytes()
    expected = rgb if pixels.ndim == 3 else np.repeat(grey[:, :, None], 3, axis=2)  # 16-bit: top 8 bits = grey
    return msg, expected


ACCEPTED = [
    (encoding, False, 0) for encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "8UC4", "mono8", "8UC1", "mono16", "16UC1")
] + [
    ("mono16", True, 0),  # big-endian 16-bit: bytes swapped in the message
    ("rgb8", True, 0),  # the flag means nothing for 8-bit data
    ("bgr8", False, 12),  # padded rows
    ("mono16", True, 6),
]


@pytest.mark.parametrize(
    "encoding, big_endian, padding", ACCEPTED,
    ids=[f"{e}{'-be' if b else ''}{f'-pad{p}' if p else ''}" for e, b, p in ACCEPTED],
)
def test_each_accepted_encoding_gives_the_depth_of_its_pixels(main_node, estimator, main_range, encoding, big_endian, padding):
    width, height = 160, 120
    stamp = next_stamp()
    image, rgb = encoded_image(scene(width, height, seed=11), encoding, big_endian, padding, stamp)
    depth = depth_array(main_node.exchange(image, info_msg(width, height, stamp, "cam"), ("depth",))["depth"])
    expected = estimator.predict(rgb, extra_scale=MAIN_SCALE)
    min_depth, max_depth = main_range
    inside = (expected > min_depth * 1.0001) & (expected < max_depth * 0.9999)
    assert inside.mean() > 0.2
    np.testing.assert_allclose(depth[inside], expected[inside], rtol=1e-4)


UNSUPPORTED = ["", "rgb16", "bgra16", "yuv422", "yuv422_yuy2", "nv21", "bayer_grbg16", "16SC1", "64FC1", "8SC3", "jpeg"]


@pytest.mark.parametrize("encoding", UNSUPPORTED, ids=[e or "empty" for e in UNSUPPORTED])
def test_each_unsupported_encoding_is_named_and_skipped(main_node, encoding):
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "cam")
    image.encoding = encoding
    main_node.send_until_logged(image, info_msg(width, height, stamp, "cam"), f"unsupported encoding '{encoding}'")
    check_good_frame_after(main_node, stamp)


def test_image_over_max_image_pixels_is_skipped_before_decoding(main_node):
    """An 8000x6000 frame (48 MB mono8) would need ~1 GB for its cloud: skipped, named, the node goes on."""
    width, height = 8000, 6000
    stamp = next_stamp()
    image = Image(height=height, width=width, encoding="mono8", is_bigendian=0, step=width)
    image.header.stamp, image.header.frame_id = stamp, "cam"
    image.data = np.full(width * height, 128, np.uint8).tobytes()
    main_node.send_until_logged(
        image, info_msg(width, height, stamp, "cam"), "8000x6000 (48.0 MP), more than max_image_pixels (16000000)",
        timeout=60.0,
    )
    check_good_frame_after(main_node, stamp)


def test_camera_info_of_another_frame_is_not_used(main_node):
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "camera_b_optical_frame")
    main_node.send_until_logged(
        image, info_msg(width, height, stamp, "camera_a_optical_frame"),
        "the image is in frame 'camera_b_optical_frame' but the latest camera_info is for 'camera_a_optical_frame'",
    )
    check_good_frame_after(main_node, stamp)
    # A camera_info without a frame_id (some calibration tools) fits any image.
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "camera_b_optical_frame")
    check_depth_message(main_node.exchange(image, info_msg(width, height, stamp, ""), ("depth",))["depth"], image)


def test_image_without_frame_id_is_published_with_a_warning(main_node):
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, ""), ("depth",))
    assert outputs["depth"].header.frame_id == ""
    assert "empty header.frame_id" in main_node.process.output()


# ---- parameters at run time ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def param_node(ros, small_model_path, tmp_path_factory):
    node = RunningNode(
        ros,
        tmp_path_factory.mktemp("dds") / "param_node.log",
        "/dds_params",
        {"model_path": str(small_model_path), "device": "cpu", "depth_scale": 2.0},
    )
    node.wait_ready()
    yield node
    node.close()


def _frame(width: int = 128, height: int = 96):
    stamp = next_stamp()
    return image_msg(scene(width, height, seed=9), stamp, "cam"), info_msg(width, height, stamp, "cam")


def test_depth_scale_change_applies_to_the_next_frame(param_node):
    image, info = _frame()
    before = depth_array(param_node.exchange(image, info, ("depth",))["depth"])
    results = param_node.set_parameters({"depth_scale": 4.0})
    assert results[0].successful, results[0].reason
    try:
        image, info = _frame()
        after = depth_array(param_node.exchange(image, info, ("depth",))["depth"])
    finally:
        param_node.set_parameters({"depth_scale": 2.0})
    both = np.isfinite(before) & np.isfinite(after)
    assert both.mean() > 0.9
    np.testing.assert_allclose(after[both], 2.0 * before[both], rtol=1e-4)


def test_publish_points_false_stops_points(param_node):
    results = param_node.set_parameters({"publish_points": False})
    assert results[0].successful, results[0].reason
    try:
        image, info = _frame()
        # depth_colored goes out after points would have: once it is here, points are not coming.
        param_node.exchange(image, info, ("depth", "depth_colored"))
        param_node.ros.spin_for(0.5)
        assert param_node.outputs_for("points", image.header.stamp) == []
    finally:
        param_node.set_parameters({"publish_points": True})
    image, info = _frame()
    assert param_node.exchange(image, info, ("points",))["points"].height == 96


def test_frame_checks_follow_their_parameters_at_run_time(param_node):
    image, info = _frame()
    info.header.frame_id = "other_camera"
    results = param_node.set_parameters({"require_matching_frame_id": False, "max_image_pixels": 128 * 96})
    assert all(result.successful for result in results), [r.reason for r in results]
    try:
        param_node.exchange(image, info, ("depth",))  # mismatched frame_id now accepted
        assert param_node.set_parameters({"max_image_pixels": 128 * 96 - 1})[0].successful
        image, info = _frame()
        param_node.send_until_logged(image, info, "128x96 (0.0 MP), more than max_image_pixels (12287)")
        param_node.ros.spin_for(0.5)
        assert param_node.outputs_for("depth", image.header.stamp) == []
    finally:
        results = param_node.set_parameters({"require_matching_frame_id": True, "max_image_pixels": 16_000_000})
        assert all(result.successful for result in results)
    image, info = _frame()
    param_node.exchange(image, info, ("depth",))


@pytest.mark.parametrize(
    "values, named",
    [
        ({"max_depth": 0.05}, "max_depth"),  # below min_depth (0.1)
        ({"points_stride": 0}, "points_stride"),
        ({"depth_scale": -1.0}, "depth_scale"),
        ({"max_image_pixels": 0}, "max_image_pixels"),
        ({"require_matching_frame_id": "yes"}, "require_matching_frame_id"),
        ({"model_path": "/tmp/other.safetensors"}, "model_path"),  # read-only
    ],
)
def test_invalid_parameter_change_is_refused_naming_the_parameter(param_node, values, named):
    results = param_node.set_parameters(values)
    assert len(results) == 1
    assert not results[0].successful
    assert named in results[0].reason
    # The node keeps running on its previous settings.
    image, info = _frame()
    outputs = param_node.exchange(image, info, ("depth", "points"))
    assert outputs["points"].height == 96


def test_old_clip_names_at_startup_warn_once_and_show_under_the_new_names(main_node, main_range):
    output = main_node.process.output()
    for old, new in (("min_depth", "output_min_depth"), ("max_depth", "output_max_depth")):
        assert output.count(f"parameter '{old}' is deprecated: it is now '{new}'") == 1, output
    values = main_node.get_parameters(["output_min_depth", "output_max_depth", "min_depth", "max_depth"])
    assert values["output_min_depth"] == pytest.approx(main_range[0])
    assert values["output_max_depth"] == pytest.approx(main_range[1])
    assert values["min_depth"] == pytest.approx(main_range[0])


def test_old_clip_name_at_run_time_sets_the_new_one_with_one_warning(param_node):
    try:
        for value in (30.0, 20.0):
            results = param_node.set_parameters({"max_depth": value})
            assert results[0].successful, results[0].reason
            # The node brings the new name to the same value just after the change.
            assert param_node.ros.spin_until(
                lambda: param_node.get_parameters(["output_max_depth"])["output_max_depth"] == value, 10.0)
        image, info = _frame()
        depth = depth_array(param_node.exchange(image, info, ("depth",))["depth"])
        assert np.all(depth[np.isfinite(depth)] <= 20.0)
        assert param_node.process.output().count("parameter 'max_depth' is deprecated") == 1
        # Old and new name with different values in one atomic change: refused, naming both.
        result = param_node.set_parameters_atomically({"max_depth": 25.0, "output_max_depth": 35.0})
        assert not result.successful and "set only 'output_max_depth'" in result.reason
        # A change under the new name carries over to the old one, which the user set.
        assert param_node.set_parameters({"output_max_depth": 50.0})[0].successful
        assert param_node.ros.spin_until(
            lambda: param_node.get_parameters(["max_depth"])["max_depth"] == 50.0, 10.0)
    finally:
        param_node.set_parameters({"output_max_depth": 80.0})


def test_descriptors_carry_description_read_only_flag_and_range(param_node):
    stride, model_path, clip, old = param_node.describe_parameters(
        ["points_stride", "model_path", "output_min_depth", "min_depth"])
    assert [(r.from_value, r.to_value) for r in stride.integer_range] == [(1, 64)]
    assert stride.additional_constraints == "[1, 64]" and not stride.read_only
    assert model_path.read_only and "Model file to run" in model_path.description
    assert "output clip" in clip.description and clip.additional_constraints == "> 0, < output_max_depth"
    assert "old name of output_min_depth" in old.description
    results = param_node.set_parameters({"points_stride": 65})
    assert not results[0].successful and "points_stride" in results[0].reason


# ---- startup ----------------------------------------------------------------------------------
# name -> (parameters, texts the output must contain); "{missing}" stands for a path that does not exist.
STARTUP_ERRORS = {
    "missing_model": ({"model_path": "{missing}"}, ["{missing}", "does not exist", "create_model"]),
    "bad_device": ({"device": "gpu"}, ["parameter 'device'", "'gpu'"]),
    "zero_stride": ({"points_stride": 0}, ["parameter 'points_stride'", "got 0"]),
    "text_for_number": ({"min_depth": "near"}, ["parameter 'min_depth' must be a number"]),
    "old_and_new_clip_names_disagree": (
        {"max_depth": 30.0, "output_max_depth": 40.0},
        ["'max_depth' (30.0) and 'output_max_depth' (40.0) are both set", "set only 'output_max_depth'"]),
    "bad_qos_override": (
        {"qos_overrides./dds_startup_bad_qos_override/image.subscription.reliability": "bogus"},
        ["qos_overrides", "reliability", "bogus"],
    ),
    # config/depth.yaml ships model_path "": what `ros2 launch` without model:= gives.
    "no_model_in_params_file": ({}, ["'model_path' is empty", "create_model"]),
    # Model files: "{malicious}" etc. are written by the fixture.
    "malicious_pickle": ({"model_path": "{malicious}"}, ["{malicious}", "not a mono_depth_ros model file"]),
    "other_architecture": ({"model_path": "{liar}"}, ["{liar}", "depth network weights do not match", "missing"]),
    "no_metadata": ({"model_path": "{foreign}"}, ["{foreign}", "without mono_depth_ros metadata"]),
    # The small model has no pose network.
    "odometry_without_pose_network": ({"publish_odometry": True}, ["publish_odometry is set but", "has no pose network"]),
}


class _CreatesFileWhenUnpickled:
    """Pickle payload: unpickling it runs open(marker, 'w')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_model_files(directory: Path, good: Path) -> Dict[str, str]:
    """{placeholder: path} of model files that must be refused: a code-running pickle, a file whose
    metadata declares another architecture than its weights, a safetensors file of another program."""
    import json
    import pickle

    from mono_depth_ros.model_file import METADATA_KEY
    from mono_depth_ros.safetensors_io import read_safetensors, write_safetensors

    malicious = directory / "evil.safetensors"
    malicious.write_bytes(pickle.dumps(_CreatesFileWhenUnpickled(directory / "pwned"), protocol=2))
    tensors, metadata = read_safetensors(good)
    declared = dict(json.loads(metadata[METADATA_KEY]), num_layers=34)
    liar = directory / "liar.safetensors"
    write_safetensors(liar, tensors, metadata={METADATA_KEY: json.dumps(declared)})
    foreign = directory / "foreign.safetensors"
    write_safetensors(foreign, {"weight": torch.zeros(2)}, metadata={"format": "pt"})
    return {"{malicious}": str(malicious), "{liar}": str(liar), "{foreign}": str(foreign)}


@pytest.fixture(scope="module")
def startup_failures(small_model_path, tmp_path_factory):
    """Start every misconfigured node (each only loads Python and exits) -> name -> (code, output)."""
    directory = tmp_path_factory.mktemp("startup")
    placeholders = {"{missing}": str(directory / "no_such_model.safetensors")}
    placeholders.update(_bad_model_files(directory, small_model_path))

    def fill(value):
        if isinstance(value, str):
            for placeholder, path in placeholders.items():
                value = value.replace(placeholder, path)
        return value

    params_file = directory / "params.yaml"
    params_file.write_text('/**:\n  ros__parameters:\n    model_path: ""\n    device: cpu\n')
    names = list(STARTUP_ERRORS)
    results = {}
    for first in range(0, len(names), STARTUP_BATCH):  # a few at a time: each loads torch
        processes = {}
        for name in names[first:first + STARTUP_BATCH]:
            if name == "no_model_in_params_file":
                values, extra = {}, params_file
            else:
                values = {"model_path": str(small_model_path), "device": "cpu"}
                values.update({key: fill(value) for key, value in STARTUP_ERRORS[name][0].items()})
                extra = None
            processes[name] = NodeProcess(directory / f"{name}.log", f"/dds_startup_{name}", values, extra)
        for name, process in processes.items():
            code = process.wait_exit(START_TIMEOUT_S)
            results[name] = (code, process.output())
            process.stop()
    return fill, results


@pytest.mark.parametrize("name", sorted(STARTUP_ERRORS))
def test_startup_error_exits_nonzero_naming_the_problem(startup_failures, name):
    fill, results = startup_failures
    code, output = results[name]
    assert code is not None, f"the node kept running:\n{output}"
    assert code != 0, output
    for text in STARTUP_ERRORS[name][1]:
        assert fill(text) in output
    assert "Traceback" not in output


def test_malicious_model_file_runs_no_code(startup_failures):
    fill, results = startup_failures
    assert results["malicious_pickle"][0] not in (None, 0)
    # The payload is real: unpickling it would have created this file.
    assert not (Path(fill("{malicious}")).parent / "pwned").exists()


def test_old_module_path_still_runs_the_node_with_a_deprecation_warning(tmp_path):
    """`python -m mono_depth_ros.depth_node` (users' scripts) runs mono_depth_ros.ros.depth_node.main."""
    command = [sys.executable, "-m", "mono_depth_ros.depth_node", "--ros-args", "-r", "__ns:=/dds_old_path"]
    completed = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=START_TIMEOUT_S, env=dict(os.environ, RCUTILS_COLORIZED_OUTPUT="0"))
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output  # no model given: the node's own startup error
    assert "'model_path' is empty" in output and "Traceback" not in output
    assert "DeprecationWarning: mono_depth_ros.depth_node moved to mono_depth_ros.ros.depth_node" in output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback; this machine has CUDA")
def test_fresh_node_on_a_best_effort_camera_with_cuda_requested(ros, small_model_path, tmp_path):
    """A node as a robot would start it: device cuda (none here), a best-effort camera, camera_info late.

    One process covers three start-up behaviours: the single CPU-fallback warning, the
    reliability override for best-effort cameras, and skipping frames until camera_info arrives.
    """
    override = "qos_overrides./dds_fresh/image.subscription.reliability"
    node = RunningNode(
        ros,
        tmp_path / "node.log",
        "/dds_fresh",
        {"model_path": str(small_model_path), "device": "cuda", override: "best_effort"},
        image_qos=qos_profile_sensor_data,
    )
    try:
        node.wait_ready()
        image, _ = _frame()
        node.send_until_logged(image, None, "no CameraInfo received on /dds_fresh/camera_info")
        node.ros.spin_for(1.0)
        assert all(not messages for messages in node.received.values())
        image, info = _frame()
        check_depth_message(node.exchange(image, info)["depth"], image)
        output = node.process.output()
        assert output.count("CUDA is not available") == 1
        assert "on cpu" in output
    finally:
        node.close()


def test_best_effort_camera_without_override_is_reported(param_node):
    """The default subscription is reliable; a best-effort camera cannot match it and must not go unnoticed."""
    publisher = param_node.ros.node.create_publisher(
        Image,
        f"{param_node.namespace}/image",
        qos_profile_sensor_data,
        event_callbacks=PublisherEventCallbacks(incompatible_qos=lambda event: None),  # expected here
    )
    try:
        hint = f"qos_overrides.{param_node.namespace}/image.subscription.reliability: best_effort"
        if not param_node.process.wait_for_output(hint, 20.0, param_node.ros.spin_for):
            param_node.fail("no warning about the best-effort image publisher")
    finally:
        param_node.ros.node.destroy_publisher(publisher)


# ---- shutdown ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
    ids=["SIGINT", "SIGTERM", "SIGINT-twice"],
)
def test_signal_during_operation_exits_cleanly(ros, small_model_path, tmp_path, signals):
    """ros2 launch stops nodes with SIGINT (then SIGTERM); systemd and docker send SIGTERM. Ctrl-C on
    `ros2 launch` in a terminal delivers SIGINT twice: the terminal's, then the one launch forwards."""
    name = "_".join(sig.name.lower() for sig in signals)
    node = RunningNode(ros, tmp_path / "node.log", f"/dds_{name}", {"model_path": str(small_model_path), "device": "cpu"})
    try:
        node.wait_ready()
        node.exchange(*_frame())
        for _ in range(3):  # keep frames coming so the signals land while the node is busy
            node.send(*_frame())
            node.ros.spin_for(0.05)
        node.send(*_frame(2000, 1500))  # slow enough (upsampling, a 3 M point cloud) to be mid-frame
        node.ros.spin_for(0.3)
        for sig in signals:
            node.process.process.send_signal(sig)
            time.sleep(0.1)
        # Typically ~2.5 s, most of it Python and torch tearing down; far longer on an overloaded machine.
        code = node.process.wait_exit(EXIT_TIMEOUT_S)
        output = node.process.output()
    finally:
        node.close()
    assert code == 0, output
    assert "Traceback" not in output
    assert "failed" not in output


def test_very_large_image_is_processed(main_node):
    """A 12-megapixel frame (36 MB in, 48 MB depth, 192 MB cloud) goes through without crashing the node."""
    width, height = 4000, 3000
    bgr = np.ascontiguousarray(np.broadcast_to(scene(400, 300, seed=6)[:, None, :, None, :], (300, 10, 400, 10, 3)))
    bgr = bgr.reshape(height, width, 3)
    stamp = next_stamp()
    image = image_msg(bgr, stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, "camera_optical_frame"), timeout=180)
    depth = check_depth_message(outputs["depth"], image)
    check_cloud_layout(outputs["points"], image, height, width)
    assert np.isfinite(depth).any()
    main_node.clear()
