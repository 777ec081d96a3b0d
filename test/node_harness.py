"""Shared harness for the tests of depth_node over real DDS (test_node_*.py): not a test module.

The node runs in its own process (NodeProcess: `python -m mono_depth_ros.ros.depth_node` with
parameters, remappings and a params file); the test talks to it with rclpy from a test-side node
in its own context (Ros). RunningNode is both together: the process plus the test's publishers to
and subscriptions on its topics.

Each node process gets its own namespace, so its topics and parameter services never meet
another's. Outputs are matched to inputs by header stamp, which is unique per published frame.
Helpers re-send a frame until its outputs arrive (best-effort camera_info may be lost);
re-sending is harmless because outputs are looked up by stamp.

Test modules import what they need (`from node_harness import ...`; test/ is on sys.path) and
turn the session helpers at the end (ros_session, started_node, ...) into module-scoped fixtures,
so that each file starts each of its node processes once.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

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

from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import load_model_file  # noqa: E402

from helpers import scene  # noqa: E402,F401  (re-exported: the node tests' test image)

try:
    from rclpy.event_handler import PublisherEventCallbacks  # noqa: F401  (re-exported for the tests)
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks  # noqa: F401

try:  # Iron and later; Humble's rclpy lacks it, then the service is called directly.
    from rclpy.parameter_client import AsyncParameterClient
except ImportError:  # pragma: no cover - depends on the ROS distribution
    AsyncParameterClient = None

NODE_MODULE = "mono_depth_ros.ros.depth_node"
START_TIMEOUT_S = 60.0  # node start is ~3-5 s; generous for a loaded 2-core machine
FRAME_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0  # bounds a hang, not a speed: exit time is measured in benchmarks
RESEND_PERIOD_S = 2.0

# Intrinsics with a principal point far from the centre and fx != fy, so swapped or
# centred terms show up in the projection checks.
FX, FY = 410.0, 377.5


# ---- messages -----------------------------------------------------------------------------------
def _stamps():
    for n in itertools.count(1):
        yield Time(sec=1_700_000_000 + n, nanosec=(n * 7919) % 1_000_000_000)


_STAMPS = _stamps()


def next_stamp() -> Time:
    """A stamp no other frame of this test session has."""
    return next(_STAMPS)


def same_stamp(a: Time, b: Time) -> bool:
    return a.sec == b.sec and a.nanosec == b.nanosec


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


def small_frame(width: int = 128, height: int = 96, frame_id: str = "cam") -> Tuple[Image, CameraInfo]:
    """(image, its camera_info) of a small scene with a fresh stamp."""
    stamp = next_stamp()
    return image_msg(scene(width, height, seed=9), stamp, frame_id), info_msg(width, height, stamp, frame_id)


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
    """depth_node as a subprocess; its console output goes to a file the tests read.

    ``parameters`` become `-p name:=value`, ``remappings`` `-r from:=to` (e.g. {"image": "/camera/image_raw"}),
    ``extra_ros_args`` go after them as they are; ``module`` is what `python -m` runs. ``launcher``: Python's
    arguments that run the node instead of `-m module`, e.g. ("-c", code) with code that prepares the
    process and then runs the module with runpy (test_torch_free: a node that cannot import torch).
    """

    def __init__(
        self,
        log_path: Path,
        namespace: str,
        parameters: Dict[str, object],
        params_file: Optional[Path] = None,
        remappings: Optional[Dict[str, str]] = None,
        extra_ros_args: Sequence[str] = (),
        module: str = NODE_MODULE,
        env: Optional[Dict[str, str]] = None,
        launcher: Sequence[str] = (),
    ):
        self.namespace = namespace
        self.log_path = Path(log_path)
        command = [sys.executable, *(launcher or ("-m", module)), "--ros-args", "-r", f"__ns:={namespace}"]
        for source, target in (remappings or {}).items():
            command += ["-r", f"{source}:={target}"]
        if params_file is not None:
            command += ["--params-file", str(params_file)]
        for name, value in parameters.items():
            command += ["-p", f"{name}:={_parameter_text(value)}"]
        command += list(extra_ros_args)
        self.command = command
        environment = dict(
            os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", RCUTILS_LOGGING_BUFFERED_STREAM="0"
        )
        environment.update(env or {})
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment
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

    def __init__(self, name: str = "depth_node_dds_test"):
        self.context = Context()
        try:
            from rclpy.signals import SignalHandlerOptions

            rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        except (ImportError, TypeError):  # older rclpy without the option
            rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
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
# The test's subscriptions on the node's outputs: reliable, deep enough to keep a test's worth.
KEEP_OUTPUTS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=200, reliability=QoSReliabilityPolicy.RELIABLE)
OUTPUTS = {"depth": Image, "points": PointCloud2, "depth_colored": Image}


class RunningNode:
    """A depth_node process plus the test's publishers to and subscriptions on its topics.

    By default the test publishes ``image`` (``image_qos``) and ``camera_info`` (best-effort, as
    drivers do) and records the node's ``OUTPUTS`` in ``received[name]``. Topic names are relative
    to the node's namespace unless they start with "/". ``image_topic``/``info_topic`` None: no such
    publisher (e.g. a test that feeds ``image/compressed`` through its own). ``add_publisher`` and
    ``add_subscription`` add more (CompressedImage, best-effort QoS, /diagnostics, ...): they are
    destroyed with the node. ``launcher``: how Python runs the node (see NodeProcess).
    """

    def __init__(
        self,
        ros: Ros,
        log_path: Path,
        namespace: str,
        parameters: Dict[str, object],
        image_qos: QoSProfile = RELIABLE_IMAGES,
        *,
        remappings: Optional[Dict[str, str]] = None,
        params_file: Optional[Path] = None,
        extra_ros_args: Sequence[str] = (),
        image_topic: Optional[str] = "image",
        info_topic: Optional[str] = "camera_info",
        info_qos: QoSProfile = qos_profile_sensor_data,
        outputs: Optional[Dict[str, type]] = None,
        output_qos: QoSProfile = KEEP_OUTPUTS,
        launcher: Sequence[str] = (),
    ):
        self.ros = ros
        self.namespace = namespace
        self.outputs = dict(OUTPUTS if outputs is None else outputs)
        self.process = NodeProcess(log_path, namespace, parameters, params_file, remappings, extra_ros_args,
                                   launcher=launcher)
        self._publishers: list = []
        self._subscriptions: list = []
        self.image_pub = None if image_topic is None else self.add_publisher(Image, image_topic, image_qos)
        self.info_pub = None if info_topic is None else self.add_publisher(CameraInfo, info_topic, info_qos)
        self.received: Dict[str, list] = {}
        for name, kind in self.outputs.items():
            self.add_subscription(kind, name, output_qos)

    @property
    def node_name(self) -> str:
        return f"{self.namespace}/depth_node"

    def topic(self, name: str) -> str:
        """The full name of a topic: relative names are in the node's namespace."""
        return name if name.startswith("/") else f"{self.namespace}/{name}"

    def add_publisher(self, kind, topic: str, qos: QoSProfile = RELIABLE_IMAGES, **kwargs):
        """A test-side publisher of ``kind`` on ``topic`` (kwargs go to create_publisher, e.g. event_callbacks)."""
        publisher = self.ros.node.create_publisher(kind, self.topic(topic), qos, **kwargs)
        self._publishers.append(publisher)
        return publisher

    def add_subscription(self, kind, topic: str, qos: QoSProfile = KEEP_OUTPUTS, key: Optional[str] = None) -> list:
        """Record the messages on ``topic`` in ``received[key or topic]`` (-> that list)."""
        messages = self.received.setdefault(key or topic, [])
        self._subscriptions.append(self.ros.node.create_subscription(kind, self.topic(topic), messages.append, qos))
        return messages

    def fail(self, what: str) -> None:
        pytest.fail(f"{what}\n--- depth_node output ---\n{self.process.output()[-4000:]}")

    def wait_ready(self, publishers: Sequence = (), ready_text: str = "loaded ") -> None:
        """Until the node has loaded its model and both ends of every topic have matched: the image and
        camera_info publishers, ``publishers`` (more of the test's) and the node's publishers of ``outputs``."""
        if not self.process.wait_for_output(ready_text, START_TIMEOUT_S, self.ros.spin_for):
            self.fail("depth_node did not start")
        node = self.ros.node
        ours = [pub for pub in (self.image_pub, self.info_pub) if pub is not None] + list(publishers)

        def matched() -> bool:
            return all(pub.get_subscription_count() > 0 for pub in ours) and all(
                node.count_publishers(self.topic(name)) > 0 for name in self.outputs
            )

        if not self.ros.spin_until(matched, START_TIMEOUT_S):
            self.fail("depth_node's topics were not discovered")
        self.ros.spin_for(0.3)  # let the reliable output readers finish matching too

    def clear(self) -> None:
        for messages in self.received.values():
            messages.clear()

    def outputs_for(self, name: str, stamp: Time) -> list:
        return [msg for msg in self.received[name] if same_stamp(msg.header.stamp, stamp)]

    def send(self, image, info: Optional[CameraInfo] = None, publisher=None) -> None:
        """Publish camera_info (if given), then the image on ``publisher`` (default: the image publisher)."""
        if info is not None:
            self.info_pub.publish(info)
            self.ros.spin_for(0.02)  # camera_info first, as a driver publishes it
        (publisher or self.image_pub).publish(image)

    def exchange(
        self,
        image,
        info: Optional[CameraInfo],
        outputs: Sequence[str] = ("depth", "points", "depth_colored"),
        timeout: float = FRAME_TIMEOUT_S,
        publisher=None,
    ) -> Dict[str, object]:
        """Send a frame (re-sending while unanswered) until every named output for its stamp arrived."""
        stamp = image.header.stamp
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(image, info, publisher)
            if self.ros.spin_until(
                lambda: all(self.outputs_for(name, stamp) for name in outputs),
                min(RESEND_PERIOD_S, deadline - time.monotonic()),
            ):
                return {name: self.outputs_for(name, stamp)[0] for name in outputs}
        self.fail(f"no {', '.join(outputs)} for the frame stamped {stamp.sec}.{stamp.nanosec:09d}")

    def send_until_logged(
        self, image, info: Optional[CameraInfo], text: str, timeout: float = 20.0, publisher=None
    ) -> None:
        """Send a (bad) frame, re-sending while ``text`` is not in the node's output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(image, info, publisher)
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
        for publisher in self._publishers:
            self.ros.node.destroy_publisher(publisher)
        self._subscriptions, self._publishers = [], []
        return code


# ---- what the node must publish ----------------------------------------------------------------
def reference_depth(estimator: DepthEstimator, bgr: np.ndarray, depth_scale: float) -> np.ndarray:
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return estimator.predict(rgb, extra_scale=depth_scale)


def check_depth_message(depth_msg: Image, source: Image) -> np.ndarray:
    assert depth_msg.encoding == "32FC1"
    assert depth_msg.is_bigendian == 0
    assert (depth_msg.width, depth_msg.height) == (source.width, source.height)
    assert depth_msg.step == 4 * source.width
    assert len(depth_msg.data) == depth_msg.step * depth_msg.height
    assert same_stamp(depth_msg.header.stamp, source.header.stamp)
    assert depth_msg.header.frame_id == source.header.frame_id
    return depth_array(depth_msg)


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


def check_good_frame_after(node: RunningNode, bad_stamp: Time) -> None:
    """A good frame after a bad one is published, and nothing was for the bad one."""
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "cam")
    outputs = node.exchange(image, info_msg(width, height, stamp, "cam"))
    check_depth_message(outputs["depth"], image)
    for name in node.outputs:
        assert node.outputs_for(name, bad_stamp) == [], f"{name} published for the bad frame"


def resident_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


# ---- session helpers: each test module makes module-scoped fixtures of these -------------------
MAIN_SCALE = 1.5  # the main node's depth_scale parameter, on top of the model file's own 2.0


def ros_session() -> Iterator[Ros]:
    """A test-side ROS node for a module: `yield from ros_session()` in a fixture."""
    ros = Ros()
    try:
        yield ros
    finally:
        ros.close()


@contextlib.contextmanager
def started_node(ros: Ros, log_path: Path, namespace: str, parameters: Dict[str, object], **kwargs) -> Iterator[RunningNode]:
    """A RunningNode, ready (kwargs go to RunningNode), closed on leaving, also when it failed to start."""
    node = RunningNode(ros, log_path, namespace, parameters, **kwargs)
    try:
        node.wait_ready()
        yield node
    finally:
        node.close()


def small_estimator(model_path: Path) -> DepthEstimator:
    """In-process inference with a model file, on CPU: the reference the node's outputs are held to."""
    return DepthEstimator(load_model_file(model_path), torch.device("cpu"))


def clip_range(estimator: DepthEstimator) -> Tuple[float, float]:
    """(min_depth, max_depth) that cut off the nearest and farthest ~20 % of the 640x480 scene."""
    depth = reference_depth(estimator, scene(640, 480), MAIN_SCALE)
    low, high = np.percentile(depth, [20, 80])
    return float(low), float(high)


def main_parameters(model_path: Path, depth_range: Tuple[float, float]) -> Dict[str, object]:
    """The main node of the output and bad-input tests: depth_scale MAIN_SCALE, min/max depth set to cut
    some pixels (under their old names, which test_node_outputs checks are still understood)."""
    return {
        "model_path": str(model_path),
        "device": "cpu",
        "depth_scale": MAIN_SCALE,
        "min_depth": depth_range[0],
        "max_depth": depth_range[1],
    }
