#!/usr/bin/env python3
"""Where depth_node's time goes, per frame, on this machine.

1. Stages: image conversion, preprocessing, forward, depth upsampling, REP 118 masking,
   point-cloud packing, colourising, message building and publishing, timed one by one
   in this process with 640x480 and 1280x720 camera images (network input 640x192).
2. End to end over DDS: the real ``depth_node`` runs in a subprocess on a private ROS
   domain; each image is published after the previous frame's outputs arrived (no
   queueing) and the time from publishing it to receiving its ``points`` is measured.
3. Side by side, interleaved with (2) so that all see the same machine load: our forward
   alone, and Monodepth2's own ResNet-18 encoder + decoder from a local checkout.
4. With CUDA: frames per second of PyTorch in float32 and float16, and of onnxruntime's
   CUDAExecutionProvider (float32; .onnx models always run in float32) when onnxruntime-gpu is
   installed. ``--cuda-only`` runs just this part (benchmarks/gpu_check.sh uses it).

    benchmarks/bench_node.py [--frames N] [--monodepth2 PATH_TO_CHECKOUT] [--markdown] [--cuda-only]

Model weights are random (speed does not depend on them). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import array
import contextlib
import copy
import io
import os
import platform
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from common import Table, load_average, monodepth2_on_path  # noqa: E402
import torch

from mono_depth_ros.colorize import colorize_depth
from mono_depth_ros.image_conversion import image_to_rgb
from mono_depth_ros.inference import DepthEstimator, keep_freed_memory_in_process
from mono_depth_ros.model_file import load_model_file
from mono_depth_ros.pointcloud import pack_xyzrgb, unit_depth_rays
from mono_depth_ros.tools import create_model

CAMERA_SIZES = ((640, 480), (1280, 720))  # (width, height)
NETWORK_SIZE = (640, 192)
MIN_DEPTH, MAX_DEPTH = 0.1, 80.0  # depth_node's defaults
NODE_START_TIMEOUT_S = 120.0
FRAME_TIMEOUT_S = 5.0  # an image whose points have not arrived by then counts as lost
E2E_TARGET_RATIO = 1.15
# After a forward pass PyTorch's OpenMP threads spin-wait for more work, ~10 ms of one core here:
# measurements that follow each other in the two processes are spaced by this much, so that one
# does not run against the other's spinning threads.
SETTLE_S = 0.03


# ---- statistics and tables -------------------------------------------------------------------
def median_ms(samples: Sequence[float]) -> float:
    return float(np.median(samples)) * 1e3 if len(samples) else float("nan")


def p90_ms(samples: Sequence[float]) -> float:
    return float(np.percentile(samples, 90)) * 1e3 if len(samples) else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


# ---- inputs -----------------------------------------------------------------------------------
def make_model(directory: Path) -> Path:
    """A ResNet-18 640x192 model file with random weights, written by the documented create_model."""
    path = directory / "random_resnet18.safetensors"
    with contextlib.redirect_stdout(io.StringIO()):
        code = create_model.main(["--out", str(path), "--width", str(NETWORK_SIZE[0]), "--height", str(NETWORK_SIZE[1])])
    if code != 0 or not path.exists():
        raise SystemExit(f"create_model failed (exit {code})")
    return path


def scene_bgr(width: int, height: int) -> np.ndarray:
    """A textured BGR image (H, W, 3) uint8; content does not change the timings."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 17) * np.cos(y / 23)], axis=-1)
    image += rng.normal(0, 10, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def camera_matrix(width: int, height: int) -> np.ndarray:
    return np.array([[0.9 * width, 0, 0.48 * width], [0, 0.9 * width, 0.52 * height], [0, 0, 1]], dtype=np.float64)


# ---- machine facts ----------------------------------------------------------------------------
def cpu_model() -> str:
    """'model name (family F, model M)' from /proc/cpuinfo: VMs often show only a brand name."""
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(rmw: str) -> Table:
    table = Table("Machine", ["fact", "value"])
    table.add("CPU", cpu_model())
    table.add("logical cores", os.cpu_count())
    table.add("torch", f"{torch.__version__} (intra-op threads {torch.get_num_threads()}, "
              f"inter-op {torch.get_num_interop_threads()}, {torch.backends.cpu.get_cpu_capability()})")
    table.add("numpy / OpenCV", f"{np.__version__} / {cv2.__version__} (cv2 threads {cv2.getNumThreads()})")
    table.add("Python", platform.python_version())
    table.add("RMW", rmw)
    if torch.cuda.is_available():
        table.add("GPU", torch.cuda.get_device_name(0))
    return table



# ---- 1. stages --------------------------------------------------------------------------------
class StagePublisher:
    """rclpy publishers of the node's three outputs on topics nobody subscribes to."""

    def __init__(self, ros):
        from sensor_msgs.msg import Image, PointCloud2
        from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

        qos = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1, reliability=QoSReliabilityPolicy.RELIABLE)
        prefix = f"/bench_stages_{os.getpid()}"  # unique: no subscriber can exist
        self.depth = ros.node.create_publisher(Image, f"{prefix}/depth", qos)
        self.points = ros.node.create_publisher(PointCloud2, f"{prefix}/points", qos)
        self.colored = ros.node.create_publisher(Image, f"{prefix}/depth_colored", qos)


def time_stages(estimator: DepthEstimator, width: int, height: int, frames: int, warmup: int,
                publisher: Optional[StagePublisher]) -> Dict[str, List[float]]:
    """Seconds per stage per frame, in the order depth_node runs them."""
    if publisher is not None:
        from sensor_msgs.msg import Image
        from mono_depth_ros.ros.depth_node import DepthNode
    bgr = scene_bgr(width, height)
    data = array.array("B", bgr.tobytes())  # what rclpy hands the node's callback as Image.data
    rays = unit_depth_rays(camera_matrix(width, height), height, width, 1)  # cached by the node
    header_source = None
    if publisher is not None:
        header_source = Image(height=height, width=width, encoding="bgr8", step=3 * width)
        header_source.header.frame_id = "camera_optical_frame"
    times: Dict[str, List[float]] = {}

    for frame in range(warmup + frames):
        marks = [("start", time.perf_counter())]

        def mark(stage: str) -> None:
            marks.append((stage, time.perf_counter()))

        rgb = image_to_rgb("bgr8", height, width, 3 * width, data)
        mark("image conversion (bgr8 -> RGB)")
        image = estimator.preprocess(rgb)
        mark("preprocessing (resize, to tensor)")
        disparity = estimator.disparity(image)
        mark("forward (network)")
        depth = estimator.disparity_to_metric_depth(disparity, height, width)
        mark("depth upsampling + metric")
        published = depth.copy()  # as depth_node does: REP 118 marks out-of-range depth with +-inf
        published[depth < MIN_DEPTH] = -np.inf
        published[depth > MAX_DEPTH] = np.inf
        mark("REP 118 masking (node)")
        cloud = pack_xyzrgb(depth, rays, rgb, MIN_DEPTH, MAX_DEPTH)
        mark("point-cloud packing (stride 1)")
        colored = colorize_depth(published)
        mark("colourising (node)")
        if publisher is not None:
            depth_msg = DepthNode._depth_message(header_source, published)
            cloud_msg = DepthNode._cloud_message(header_source, cloud)
            colored_msg = DepthNode._colored_message(header_source, colored)
            mark("message building (3 messages)")
            publisher.depth.publish(depth_msg)
            publisher.points.publish(cloud_msg)
            publisher.colored.publish(colored_msg)
            mark("publish (3 topics, no subscriber)")
        if frame >= warmup:
            for (_, before), (stage, after) in zip(marks, marks[1:]):
                times.setdefault(stage, []).append(after - before)
            times.setdefault("total", []).append(marks[-1][1] - marks[0][1])
    return times


# ---- ROS helpers ------------------------------------------------------------------------------
# Fast DDS's shared-memory segment is 512 kB by default: a 0.9-15 MB image or cloud does not fit,
# best-effort images are then lost and reliable clouds wait for retransmission (seconds) on a
# loaded machine. A 64 MB segment (allocated lazily in /dev/shm) carries them in one piece.
# Fast DDS profile with a 64 MB shared-memory segment, shipped for users in config/.
FASTDDS_PROFILE_FILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_messages.xml"


def fastdds_profile_environment(directory: Path) -> Dict[str, str]:
    """Environment that makes Fast DDS (this process and the node) use config/fastdds_large_messages.xml."""
    path = FASTDDS_PROFILE_FILE
    environment = {"FASTDDS_DEFAULT_PROFILES_FILE": str(path)}  # Fast DDS 3 (Jazzy, Kilted)
    if os.environ.get("ROS_DISTRO") in ("humble", "iron"):  # Fast DDS 2 reads the older name
        environment["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(path)
    return environment


def private_ros_environment() -> Dict[str, str]:
    """A random private domain and localhost-only discovery, for this process and the node's."""
    return {
        "ROS_DOMAIN_ID": str(random.SystemRandom().randint(20, 99)),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",  # Jazzy and later
        "ROS_LOCALHOST_ONLY": "1",  # Humble
    }


class Ros:
    """This process's rclpy node, in its own context."""

    def __init__(self):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = Context()
        try:
            from rclpy.signals import SignalHandlerOptions

            rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        except (ImportError, TypeError):  # older rclpy
            rclpy.init(context=self.context)
        self.node = rclpy.create_node("depth_node_bench", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def rmw(self) -> str:
        try:
            from rclpy.utilities import get_rmw_implementation_identifier

            return get_rmw_implementation_identifier()
        except ImportError:
            return os.environ.get("RMW_IMPLEMENTATION", "default")

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(0.1, remaining))
        return True

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def depth_node_command() -> List[str]:
    """The depth_node console script next to this interpreter (same venv), else the module."""
    script = Path(sys.executable).with_name("depth_node")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mono_depth_ros.ros.depth_node"]


def stamp_of(serialized: bytes) -> Tuple[int, int]:
    """header.stamp (sec, nanosec) of a CDR-serialized message that starts with a std_msgs/Header."""
    little_endian = serialized[1] & 1  # encapsulation kind: CDR_BE = 0, CDR_LE = 1
    return struct.unpack_from("<iI" if little_endian else ">iI", serialized, 4)


class EndToEnd:
    """depth_node in a subprocess, fed one image at a time; measures image publish -> points received."""

    def __init__(self, ros: Ros, model_path: Path, log_path: Path, colored: bool,
                 extra_env: Optional[Dict[str, str]] = None):
        from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.ros, self.colored = ros, colored
        self.namespace = f"/bench_{os.getpid()}"
        command = depth_node_command() + [
            "--ros-args", "-r", f"__ns:={self.namespace}", "-p", f"model_path:={model_path}", "-p", "device:=cpu",
            "-p", f"publish_colored_depth:={'true' if colored else 'false'}",
        ]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", **(extra_env or {}))
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        node = ros.node
        # Reliable images match the node's subscription whether it is reliable (its default) or
        # best effort; a lost image would only cost a time-out here, not change a measurement.
        reliable = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1, reliability=QoSReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, f"{self.namespace}/image", reliable)
        self.info_pub = node.create_publisher(CameraInfo, f"{self.namespace}/camera_info", qos_profile_sensor_data)
        self.arrivals: Dict[str, Dict[Tuple[int, int], float]] = {"points": {}, "depth_colored": {}}
        # raw=True: the message stays serialized, so this process spends nothing decoding 5-15 MB clouds.
        self._subscriptions = [
            node.create_subscription(PointCloud2, f"{self.namespace}/points", self._arrived("points"), reliable, raw=True),
            node.create_subscription(Image, f"{self.namespace}/depth_colored", self._arrived("depth_colored"), reliable, raw=True),
        ]
        self._image_type, self._info_type = Image, CameraInfo
        self._stamp = 1_000_000
        self.lost_per_camera: Dict[Tuple[int, int], int] = {}

    def _arrived(self, topic: str):
        def callback(serialized: bytes) -> None:
            self.arrivals[topic][stamp_of(serialized)] = time.perf_counter()

        return callback

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """CPU time the node process used so far, all threads (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return float("nan")

    def fail(self, what: str) -> SystemExit:
        return SystemExit(f"{what}\n--- depth_node output ---\n{self.output()[-3000:]}")

    def wait_ready(self) -> None:
        """Until the topics matched and the node answered a first image (its model is loaded)."""
        deadline = time.monotonic() + NODE_START_TIMEOUT_S

        def matched() -> bool:
            if self.process.poll() is not None:
                raise self.fail("depth_node exited")
            return self.image_pub.get_subscription_count() > 0 and self.info_pub.get_subscription_count() > 0 \
                and self.ros.node.count_publishers(f"{self.namespace}/points") > 0
        if not self.ros.spin_until(matched, NODE_START_TIMEOUT_S):
            raise self.fail("depth_node's topics were not discovered")
        self.ros.spin_until(lambda: False, 0.5)  # let the reliable readers finish matching
        self.use_camera(*CAMERA_SIZES[0])
        while self.frame() is None:
            if time.monotonic() > deadline:
                raise self.fail("depth_node answered no image")

    def use_camera(self, width: int, height: int) -> None:
        Image, CameraInfo = self._image_type, self._info_type
        self.camera = (width, height)
        self.lost_per_camera[self.camera] = 0
        bgr = scene_bgr(width, height)
        self.image = Image(height=height, width=width, encoding="bgr8", is_bigendian=0, step=3 * width)
        self.image.header.frame_id = "camera_optical_frame"
        self.image.data = array.array("B", bgr.tobytes())
        self.info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        self.info.header.frame_id = "camera_optical_frame"
        self.info.k = [float(v) for v in camera_matrix(width, height).reshape(-1)]
        self.info.d = [0.0] * 5

    def frame(self) -> Optional[float]:
        """Publish one image -> seconds until its points arrived (None if the image was lost)."""
        self._stamp += 1
        key = (self._stamp, 0)
        self.image.header.stamp.sec = self.info.header.stamp.sec = self._stamp
        self.info_pub.publish(self.info)  # latest camera_info, as a driver sends it with each image
        sent = time.perf_counter()
        self.image_pub.publish(self.image)
        wanted = ["points"] + (["depth_colored"] if self.colored else [])
        # Wait for every output, not only points: the next image then finds the node idle.
        done = self.ros.spin_until(lambda: all(key in self.arrivals[t] for t in wanted), FRAME_TIMEOUT_S)
        if self.process.poll() is not None:
            raise self.fail("depth_node exited")
        if not done:
            self.lost_per_camera[self.camera] += 1
            return None
        return self.arrivals["points"][key] - sent

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        for subscription in self._subscriptions:
            self.ros.node.destroy_subscription(subscription)
        self.ros.node.destroy_publisher(self.image_pub)
        self.ros.node.destroy_publisher(self.info_pub)


# ---- 3. Monodepth2 ----------------------------------------------------------------------------
def load_monodepth2(checkout: Path) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """Monodepth2's own ResnetEncoder(18) + DepthDecoder, random weights, imported from ``checkout``.

    Imported through common.monodepth2_on_path (torchvision builder compatibility).
    """
    if not (checkout / "networks" / "depth_decoder.py").exists():
        raise SystemExit(f"{checkout} is not a monodepth2 checkout (no networks/depth_decoder.py)")
    with monodepth2_on_path(checkout):
        import networks as monodepth2_networks  # noqa: the checkout's package

        encoder = monodepth2_networks.ResnetEncoder(18, False)
        decoder = monodepth2_networks.DepthDecoder(encoder.num_ch_enc, scales=range(4))
    return encoder.eval(), decoder.eval()


def monodepth2_forwards(checkout: Path) -> Dict[str, Callable[[], None]]:
    """Monodepth2's bare forward at the network size, NCHW and channels_last, as callables."""
    torch.manual_seed(0)
    encoder, decoder = load_monodepth2(checkout)
    width, height = NETWORK_SIZE
    image = torch.rand(1, 3, height, width)
    encoder_cl = copy.deepcopy(encoder).to(memory_format=torch.channels_last)
    decoder_cl = copy.deepcopy(decoder).to(memory_format=torch.channels_last)
    image_cl = image.contiguous(memory_format=torch.channels_last)

    def nchw() -> None:
        with torch.no_grad():
            decoder(encoder(image))

    def channels_last() -> None:
        with torch.no_grad():
            decoder_cl(encoder_cl(image_cl))

    return {"Monodepth2 forward, NCHW": nchw, "Monodepth2 forward, channels_last": channels_last}


# ---- 4. CUDA ----------------------------------------------------------------------------------
def cuda_table(model_path: Path, frames: int, warmup: int, onnx: bool = True) -> Table:
    table = Table("CUDA frames per second (640x480 camera, 640x192 network)",
                  ["backend, precision", "forward fps", "forward median ms", "predict fps", "predict median ms"])
    model = load_model_file(model_path)
    rgb = cv2.cvtColor(scene_bgr(640, 480), cv2.COLOR_BGR2RGB)
    for half in (False, True):
        estimator = DepthEstimator(model, torch.device("cuda"), half=half)
        image = estimator.preprocess(rgb)
        samples: Dict[str, List[float]] = {"forward": [], "predict": []}
        for frame in range(warmup + frames):
            torch.cuda.synchronize()
            start = time.perf_counter()
            estimator.disparity(image)
            torch.cuda.synchronize()
            middle = time.perf_counter()
            estimator.predict(rgb)  # synchronises: the depth comes back to the CPU
            end = time.perf_counter()
            if frame >= warmup:
                samples["forward"].append(middle - start)
                samples["predict"].append(end - middle)
        forward, predict = median_ms(samples["forward"]), median_ms(samples["predict"])
        table.add("PyTorch float16" if half else "PyTorch float32", fmt(1e3 / forward), fmt(forward, 2),
                  fmt(1e3 / predict), fmt(predict, 2))
    table.notes.append("forward: DepthEstimator.disparity on a preprocessed tensor; predict: RGB in, metric depth out "
                       "(preprocessing, copies both ways, upsampling).")
    if onnx:
        onnx_cuda_rows(table, model_path, rgb, frames, warmup)
    return table


def onnx_cuda_rows(table: Table, model_path: Path, rgb: np.ndarray, frames: int, warmup: int) -> None:
    """onnxruntime's CUDAExecutionProvider on the export of ``model_path`` (float32: .onnx models run in
    float32; the node ignores half_precision for them). Without onnxruntime-gpu a row says so."""
    try:
        import onnxruntime
    except ImportError:
        table.add("onnxruntime CUDA float32: onnxruntime is not installed (pip install onnxruntime-gpu)", "-", "-", "-", "-")
        return
    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        table.add(f"onnxruntime CUDA float32: onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider "
                  f"(onnxruntime-gpu is not installed: pip install onnxruntime-gpu)", "-", "-", "-", "-")
        return
    from mono_depth_ros.inference import OnnxDepthEstimator
    from mono_depth_ros.tools.export_onnx import export_onnx

    onnx_path = model_path.with_suffix(".onnx")
    export_onnx(model_path, onnx_path, verify=False)
    estimator = OnnxDepthEstimator(onnx_path, device="cuda")
    if estimator.providers[0] != "CUDAExecutionProvider":
        table.add("onnxruntime CUDA float32: " + "; ".join(estimator.warnings), "-", "-", "-", "-")
        return
    image = estimator.preprocess(rgb)
    samples: Dict[str, List[float]] = {"forward": [], "predict": []}
    for frame in range(warmup + frames):
        start = time.perf_counter()
        estimator.disparity(image)  # NumPy in and out: synchronous
        middle = time.perf_counter()
        estimator.predict(rgb)
        end = time.perf_counter()
        if frame >= warmup:
            samples["forward"].append(middle - start)
            samples["predict"].append(end - middle)
    forward, predict = median_ms(samples["forward"]), median_ms(samples["predict"])
    table.add("onnxruntime CUDA float32", fmt(1e3 / forward), fmt(forward, 2), fmt(1e3 / predict), fmt(predict, 2))
    table.notes.append("onnxruntime CUDA: OnnxDepthEstimator on the export_onnx export, CUDAExecutionProvider; its "
                       "forward includes the copies of the input and the disparity (NumPy in and out). .onnx models "
                       "run in float32 only (float16: a TensorRT engine, docs/onnx.md).")


# ---- main -------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50, help="measured frames per size and stage (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured frames first (default 5)")
    parser.add_argument("--monodepth2", type=Path, help="local checkout of nianticlabs/monodepth2, for the side-by-side")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for benchmarks/README.md and docs/benchmarks.md)")
    parser.add_argument("--no-dds", action="store_true", help="skip everything that needs rclpy (stages only)")
    parser.add_argument("--fastdds-defaults", action="store_true",
                        help="keep Fast DDS's default 512 kB shared-memory segment (large messages get lost)")
    parser.add_argument("--node-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the depth_node process, e.g. OMP_WAIT_POLICY=PASSIVE (repeatable)")
    parser.add_argument("--cuda-only", action="store_true",
                        help="only the CUDA table (PyTorch float32/float16, onnxruntime's CUDA provider); needs CUDA")
    parser.add_argument("--no-onnx", action="store_true", help="leave onnxruntime out of the CUDA table")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        parser.error("--frames must be >= 1 and --warmup >= 0")
    for item in args.node_env:
        if "=" not in item or not item.split("=", 1)[0]:
            parser.error(f"--node-env takes NAME=VALUE, got {item!r}")
    return args


OURS = "our forward (DepthEstimator.disparity)"


def stage_table(stage_times: Dict[Tuple[int, int], Dict[str, List[float]]], frames: int, warmup: int) -> Table:
    header = ["stage"]
    for width, height in CAMERA_SIZES:
        header += [f"{width}x{height} median", "p90"]
    table = Table(f"Stages, ms per frame ({frames} frames after {warmup} warm-up; network 640x192)", header)
    for stage in stage_times[CAMERA_SIZES[0]]:
        cells = [stage]
        for size in CAMERA_SIZES:
            cells += [fmt(median_ms(stage_times[size][stage]), 2), fmt(p90_ms(stage_times[size][stage]), 2)]
        table.add(*cells)
    table.notes.append("total: the whole frame (the median of sums, not the sum of medians).")
    return table


def run_interleaved(forwards: Dict[str, Callable[[], None]], frames: int, warmup: int,
                    end_to_end: Optional[EndToEnd]) -> Dict[Tuple[int, int], Dict[str, List[float]]]:
    """Per camera size: end-to-end latencies, and after each frame (node idle) every forward once."""
    results = {}
    for size in CAMERA_SIZES if end_to_end else CAMERA_SIZES[:1]:
        if end_to_end:
            end_to_end.use_camera(*size)
        samples: Dict[str, List[float]] = {name: [] for name in ["end to end", "node CPU"] + list(forwards)}
        jobs = list(forwards.items())
        node_cpu_start = float("nan")
        for frame in range(warmup + frames):
            if frame == warmup and end_to_end:
                node_cpu_start = end_to_end.cpu_seconds()
            latency = end_to_end.frame() if end_to_end else None
            timed = []
            for name, run in jobs:
                time.sleep(SETTLE_S)
                start = time.perf_counter()
                run()
                timed.append((name, time.perf_counter() - start))
            jobs = jobs[1:] + jobs[:1]  # rotate, so that no variant always runs first
            time.sleep(SETTLE_S)
            if frame >= warmup:
                if latency is not None:
                    samples["end to end"].append(latency)
                for name, seconds in timed:
                    samples[name].append(seconds)
        if end_to_end:  # all the node's threads, averaged: /proc counts 10 ms clock ticks
            samples["node CPU"].append((end_to_end.cpu_seconds() - node_cpu_start) / frames)
        results[size] = samples
    return results


def end_to_end_table(results, lost: Dict[Tuple[int, int], int]) -> Table:
    table = Table("End to end over DDS, ms (image published -> its points received)",
                  ["camera", "end to end median", "p90", "our forward median", "p90", "end to end - forward",
                   "end to end / forward", "node CPU / frame", "lost"])
    for size, samples in results.items():
        end, forward = median_ms(samples["end to end"]), median_ms(samples[OURS])
        node_cpu = samples["node CPU"][0] * 1e3 if samples["node CPU"] else float("nan")
        table.add(f"{size[0]}x{size[1]}", fmt(end), fmt(p90_ms(samples["end to end"])), fmt(forward),
                  fmt(p90_ms(samples[OURS])), fmt(end - forward), f"{end / forward:.2f}", fmt(node_cpu), lost[size])
    table.notes.append(f"Target: end to end / forward <= {E2E_TARGET_RATIO}. depth_node runs with its defaults "
                       "(device cpu, points stride 1, depth_colored on); the next image is sent once all outputs "
                       "of the previous one arrived. Forward measured in this process between frames.")
    return table


def side_by_side_table(results) -> Table:
    table = Table("Side by side, ms (network 640x192, measured interleaved in one run)",
                  ["what", "median", "p90", "vs Monodepth2 NCHW"])
    pooled: Dict[str, List[float]] = {}
    for samples in results.values():
        for name, values in samples.items():
            pooled.setdefault(name, []).extend(values)
    reference = pooled.get("Monodepth2 forward, NCHW")
    rows = [(name, pooled[name]) for name in pooled if name.startswith("Monodepth2")] + [(OURS, pooled[OURS])]
    rows += [(f"our end to end, {w}x{h} camera", samples["end to end"])
             for (w, h), samples in results.items() if samples["end to end"]]
    for name, values in rows:
        speedup = f"{median_ms(reference) / median_ms(values):.2f}x" if reference else "-"
        table.add(name, fmt(median_ms(values)), fmt(p90_ms(values)), speedup)
    if not reference:
        table.notes.append("Pass --monodepth2 PATH (a checkout of nianticlabs/monodepth2) to compare with it.")
    table.notes.append("Monodepth2: its own ResnetEncoder(18) + DepthDecoder (all 4 scales, as it runs), eval, "
                       "torch.no_grad, random weights. Ours: scale 0 only, what the node uses.")
    return table


def cuda_only(args: argparse.Namespace) -> int:
    """--cuda-only: the machine facts and the CUDA table."""
    if not torch.cuda.is_available():
        print(f"bench_node: --cuda-only needs a CUDA device; torch {torch.__version__} (built for CUDA "
              f"{torch.version.cuda}) sees none", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:
        model_path = make_model(Path(tmp))
        tables = [machine_facts("rclpy not used"), cuda_table(model_path, args.frames, args.warmup, not args.no_onnx)]
    for table in tables:
        print(table.render(args.markdown))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cuda_only:
        return cuda_only(args)
    # As the node does (DepthEstimator on the CPU): without it, receiving a 15 MB cloud here page-faults
    # ~10-40 ms per frame into the measured latency. First, so that rclpy's threads get it too.
    keep_freed_memory_in_process()
    load_before = load_average()
    tables: List[Table] = []
    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:
        # Before rclpy starts, so that the node, started from this environment, shares it.
        os.environ.update(private_ros_environment())
        dds_setup = "Fast DDS defaults"
        if not args.fastdds_defaults and "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:
            os.environ.update(fastdds_profile_environment(Path(tmp)))
            dds_setup = "Fast DDS profile with a 64 MB shared-memory segment (see docs/node.md, 'Image QoS')"
        ros = None
        if not args.no_dds:
            try:
                ros = Ros()
            except ImportError as error:
                print(f"rclpy is not importable ({error}): publishing and end-to-end are skipped", file=sys.stderr)
        try:
            model_path = make_model(Path(tmp))
            estimator = DepthEstimator(load_model_file(model_path), torch.device("cpu"))
            facts = machine_facts(f"{ros.rmw()}; {dds_setup}" if ros else "rclpy not used")
            if args.node_env:
                facts.add("depth_node environment", " ".join(args.node_env))
            tables.append(facts)

            publisher = StagePublisher(ros) if ros else None
            stage_times = {size: time_stages(estimator, *size, args.frames, args.warmup, publisher)
                           for size in CAMERA_SIZES}
            tables.append(stage_table(stage_times, args.frames, args.warmup))

            width, height = NETWORK_SIZE
            network_input = estimator.preprocess(cv2.resize(scene_bgr(width, height), (width, height))[:, :, ::-1])
            forwards: Dict[str, Callable[[], None]] = {OURS: lambda: estimator.disparity(network_input)}
            if args.monodepth2:
                forwards.update(monodepth2_forwards(args.monodepth2))
            end_to_end = None
            if ros:
                node_env = dict(item.split("=", 1) for item in args.node_env)
                end_to_end = EndToEnd(ros, model_path, Path(tmp) / "depth_node.log", colored=True, extra_env=node_env)
            try:
                if end_to_end:
                    end_to_end.wait_ready()
                results = run_interleaved(forwards, args.frames, args.warmup, end_to_end)
            finally:
                if end_to_end:
                    end_to_end.close()
            if end_to_end:
                tables.append(end_to_end_table(results, end_to_end.lost_per_camera))
            tables.append(side_by_side_table(results))
            if torch.cuda.is_available():
                tables.append(cuda_table(model_path, args.frames, args.warmup, not args.no_onnx))
        finally:
            if ros:
                ros.close()
    tables[0].add("load average before / after", f"{load_before} / {load_average()}")
    for table in tables:
        print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
