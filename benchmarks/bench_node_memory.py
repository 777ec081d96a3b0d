#!/usr/bin/env python3
"""depth_node's resident memory with each backend: PyTorch (.safetensors) and onnxruntime (.onnx).

The real node runs in a subprocess on a private ROS domain, once with a ResNet-18 640x192 model
file (random weights, create_model) on the CPU and once with its export_onnx export, and is fed
640x480 frames over DDS for ``--seconds`` (one image at a time, each after the previous frame's
outputs arrived; bench_node.py's EndToEnd). Per backend it prints the peak resident memory (VmHWM),
the steady one (median VmRSS over the second half of the frames), whether the PyTorch library was
mapped into the node process (/proc/PID/maps), and the frames processed.

    benchmarks/bench_node_memory.py [--seconds S] [--markdown]

A script, not a test: it asserts nothing. See benchmarks/README.md; results in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from bench_node import (  # noqa: E402
    CAMERA_SIZES,
    NETWORK_SIZE,
    EndToEnd,
    Ros,
    fastdds_profile_environment,
    make_model,
    median_ms,
    private_ros_environment,
)
from common import Table, load_average  # noqa: E402

from mono_depth_ros.tools.export_onnx import export_onnx  # noqa: E402

TARGET_ONNX_MB = 300.0


def proc_status_mb(pid: int) -> Dict[str, float]:
    """VmRSS, VmHWM (peak resident) and RssShmem (shared memory: DDS segments) of a process in MB, from
    /proc/PID/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssShmem"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values


def mapped_libraries(pid: int, names: List[str]) -> Dict[str, bool]:
    """Whether a shared library whose file name contains each of ``names`` is mapped into the process."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    files = {line.split()[-1].rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line}
    return {name: any(name in file for file in files) for name in names}


def measure(ros: Ros, model_path: Path, log_path: Path, seconds: float) -> Dict[str, object]:
    """Start the node on ``model_path``, feed it frames for ``seconds``; -> its memory figures."""
    node = EndToEnd(ros, model_path, log_path, colored=True)
    try:
        node.wait_ready()  # model loaded, first 640x480 frame answered
        node.lost_per_camera[node.camera] = 0  # count losses from here
        pid = node.process.pid
        after_start = proc_status_mb(pid)["VmRSS"]
        samples: List[float] = []
        latencies: List[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            latency = node.frame()
            if latency is not None:
                latencies.append(latency)
            samples.append(proc_status_mb(pid)["VmRSS"])
        status = proc_status_mb(pid)
        libraries = mapped_libraries(pid, ["libtorch", "onnxruntime"])
        output = node.output()
    finally:
        node.close()
    loaded = next((line for line in output.splitlines() if "loaded " in line), "")
    return {
        "after start": after_start,
        "peak": status["VmHWM"],
        "shared": status["RssShmem"],
        "steady": float(np.median(samples[len(samples) // 2:])) if samples else float("nan"),
        "frames": len(latencies),
        "lost": node.lost_per_camera.get(CAMERA_SIZES[0], 0),
        "latency": median_ms(latencies),
        "libraries": libraries,
        "backend": loaded.split(" with ", 1)[-1] if " with " in loaded else "?",
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each node is fed frames (default 10)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--fastdds-defaults", action="store_true",
                        help="keep Fast DDS's default 512 kB shared-memory segment instead of config/'s 64 MB one")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = load_average()
    width, height = CAMERA_SIZES[0]
    network = f"{NETWORK_SIZE[0]}x{NETWORK_SIZE[1]}"
    table = Table(f"depth_node resident memory ({width}x{height} camera, ResNet-18 {network}, "
                  f"{args.seconds:g} s of frames per backend)",
                  ["backend", "peak RSS MB", "steady RSS MB", "of it DDS shared memory MB", "RSS after start MB",
                   "libtorch mapped", "frames processed", "median ms/frame"])
    with tempfile.TemporaryDirectory(prefix="bench_node_memory_") as tmp:
        # Before rclpy starts, so that the nodes, started from this environment, share it.
        os.environ.update(private_ros_environment())
        dds_setup = "Fast DDS defaults (512 kB shared-memory segment)"
        if not args.fastdds_defaults and "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:
            os.environ.update(fastdds_profile_environment(Path(tmp)))
            dds_setup = "Fast DDS profile with a 64 MB shared-memory segment (config/fastdds_large_messages.xml)"
        model_path = make_model(Path(tmp))
        onnx_path = export_onnx(model_path, Path(tmp) / "random_resnet18.onnx").path
        ros = Ros()
        try:
            results = {model_path.name: measure(ros, model_path, Path(tmp) / "safetensors.log", args.seconds),
                       onnx_path.name: measure(ros, onnx_path, Path(tmp) / "onnx.log", args.seconds)}
            rmw = ros.rmw()
        finally:
            ros.close()
    for name, result in results.items():
        table.add(f"{result['backend']} ({Path(name).suffix})", f"{result['peak']:.0f}", f"{result['steady']:.0f}",
                  f"{result['shared']:.0f}", f"{result['after start']:.0f}",
                  "yes" if result["libraries"]["libtorch"] else "no",
                  f"{result['frames']}" + (f" ({result['lost']} lost)" if result["lost"] else ""),
                  f"{result['latency']:.0f}")
    onnx_result = results[onnx_path.name]
    verdict = "meets" if onnx_result["peak"] <= TARGET_ONNX_MB else "misses"
    table.notes += [
        f"peak: VmHWM at the end; steady: median VmRSS over the second half of the frames; DDS shared memory: "
        f"RssShmem at the end (segments shared with the subscribers, in VmRSS); after start: VmRSS once the first "
        f"frame was answered. libtorch mapped: /proc/PID/maps of the node. onnxruntime peak {verdict} the "
        f"{TARGET_ONNX_MB:.0f} MB target.",
        f"RMW {rmw} ({dds_setup}), OMP_NUM_THREADS "
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} logical cores, "
        f"load average before / after {load_before} / {load_average()}.",
    ]
    print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
