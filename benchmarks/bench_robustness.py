#!/usr/bin/env python3
"""depth_node under load and at shutdown: burst, soak and signal figures for the reliability table in docs/reliability.md.

1. Burst: 1000 camera images (640x480 bgr8) published at 100 Hz into a CPU node that manages a
   few frames per second. Measured: how many frames it published, image -> points latency of the
   first and the last outputs (a queue would make the last ones seconds late), outputs that came
   after the last image (the backlog), resident memory before and after.
2. Soak: several thousand frames, each published when the previous frame's outputs arrived.
   Resident memory of the node after warm-up and as the run goes on (issue target: < 50 MB growth).
3. Shutdown: SIGINT and SIGTERM sent while a large frame is mid-inference; exit code and the
   time from the signal to the process having exited.

    benchmarks/bench_robustness.py [--burst 1000] [--rate 100] [--soak 3000] [--shutdowns 3] [--markdown]

The real depth_node runs in a subprocess on a private ROS domain; the model is a ResNet-18 640x192
with random weights (speed and memory do not depend on the weights). Linux only (/proc).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from bench_node import (  # noqa: E402
    EndToEnd, Ros, fastdds_profile_environment, load_average, machine_facts, make_model, median_ms, p90_ms,
    private_ros_environment,
)
from common import Table  # noqa: E402

from mono_depth_ros.inference import keep_freed_memory_in_process  # noqa: E402

BURST_SIZE = (640, 480)
SOAK_SIZE = (640, 480)
SHUTDOWN_SIZE = (2000, 1500)  # slow enough (a 3 M point cloud) that the signal lands mid-frame
DRAIN_S = 3.0  # after a burst: time for a backlog, if there were one, to show


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def burst(node: EndToEnd, count: int, rate_hz: float) -> Table:
    ros = node.ros
    node.use_camera(*BURST_SIZE)
    for _ in range(10):  # warm-up at this size
        node.frame()
    ros.spin_until(lambda: False, 1.0)
    before_mb = resident_mb(node.process.pid)
    arrivals = node.arrivals["points"]
    arrivals.clear()
    sent = {}
    start = time.perf_counter()
    for index in range(count):
        ros.spin_until(lambda: time.perf_counter() >= start + index / rate_hz, 1.0)
        node._stamp += 1
        key = (node._stamp, 0)
        node.image.header.stamp.sec = node.info.header.stamp.sec = node._stamp
        if index % 10 == 0:
            node.info_pub.publish(node.info)
        sent[key] = time.perf_counter()
        node.image_pub.publish(node.image)
    publishing_s = time.perf_counter() - start
    during = len(arrivals)
    last_key = max(sent)
    ros.spin_until(lambda: last_key in arrivals, 30.0)
    ros.spin_until(lambda: False, DRAIN_S)
    after_mb = resident_mb(node.process.pid)
    alive = node.process.poll() is None
    outputs = sorted(key for key in arrivals if key in sent)
    latencies = [arrivals[key] - sent[key] for key in outputs]
    window = max(1, min(50, len(latencies) // 3))
    table = Table(
        f"Burst: {count} images {BURST_SIZE[0]}x{BURST_SIZE[1]} at {rate_hz:g} Hz into the CPU node",
        ["measure", "value"],
    )
    table.add("published at", f"{count / publishing_s:.1f} Hz over {publishing_s:.1f} s")
    table.add("frames with outputs", f"{len(outputs)} ({100.0 * len(outputs) / count:.1f} %; the rest dropped, newest kept)")
    table.add("newest image processed", "yes" if last_key in arrivals else "NO")
    table.add(f"latency image -> points, first {window} outputs: median / p90 ms",
              f"{median_ms(latencies[:window]):.0f} / {p90_ms(latencies[:window]):.0f}")
    table.add(f"latency image -> points, last {window} outputs: median / p90 ms",
              f"{median_ms(latencies[-window:]):.0f} / {p90_ms(latencies[-window:]):.0f}")
    table.add("outputs after the last image (backlog)", str(len(outputs) - during))
    table.add("node resident memory before / after, MB", f"{before_mb:.0f} / {after_mb:.0f} ({after_mb - before_mb:+.1f})")
    table.add("node still running", "yes" if alive else "NO")
    return table


def soak(node: EndToEnd, frames: int) -> Table:
    node.use_camera(*SOAK_SIZE)
    warmup = min(100, frames // 10)
    checkpoints = sorted({warmup, frames // 4, frames // 2, 3 * frames // 4, frames})
    memory = {}
    latencies: List[float] = []
    lost = 0
    started = time.perf_counter()
    for index in range(1, frames + 1):
        latency = node.frame()
        if latency is None:
            lost += 1
        elif index > warmup:
            latencies.append(latency)
        node.arrivals["points"].clear()
        node.arrivals["depth_colored"].clear()
        if index in checkpoints:
            memory[index] = resident_mb(node.process.pid)
    elapsed = time.perf_counter() - started
    table = Table(f"Soak: {frames} frames {SOAK_SIZE[0]}x{SOAK_SIZE[1]}, one after another", ["after frame", "node resident MB", "vs warm-up"])
    for index in checkpoints:
        table.add(index, f"{memory[index]:.1f}", f"{memory[index] - memory[warmup]:+.1f}")
    growth = memory[frames] - memory[warmup]
    peak = max(memory.values()) - memory[warmup]
    table.notes.append(
        f"growth after warm-up {growth:+.1f} MB (largest {peak:+.1f} MB; target < 50 MB); {frames} frames in "
        f"{elapsed / 60:.1f} min, latency median {median_ms(latencies):.0f} ms, p90 {p90_ms(latencies):.0f} ms; "
        f"lost {lost}"
    )
    return table


def shutdown_once(ros: Ros, model_path: Path, log_path: Path, sig: int) -> tuple:
    node = EndToEnd(ros, model_path, log_path, colored=True)
    try:
        node.wait_ready()
        node.use_camera(*SHUTDOWN_SIZE)
        node.info_pub.publish(node.info)
        node._stamp += 1
        node.image.header.stamp.sec = node.info.header.stamp.sec = node._stamp
        node.image_pub.publish(node.image)
        ros.spin_until(lambda: False, 0.5)  # the frame is now being processed
        busy = node.cpu_seconds()
        ros.spin_until(lambda: False, 0.2)
        mid_frame = node.cpu_seconds() - busy > 0.05  # the node was computing, not idle
        signalled = time.perf_counter()
        node.process.send_signal(sig)
        try:
            code = node.process.wait(60)
        except Exception:
            code = None
        seconds = time.perf_counter() - signalled
        output = node.output()
    finally:
        node.close()
    clean = code == 0 and "Traceback" not in output
    return seconds, code, clean, mid_frame


def shutdowns(ros: Ros, model_path: Path, directory: Path, repeats: int) -> Table:
    table = Table(
        f"Shutdown while a {SHUTDOWN_SIZE[0]}x{SHUTDOWN_SIZE[1]} frame is mid-inference ({repeats} runs each)",
        ["signal", "exit code", "clean (no traceback)", "signal -> exited, median s", "max s", "mid-frame"],
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        results = [shutdown_once(ros, model_path, directory / f"{sig.name}_{n}.log", sig) for n in range(repeats)]
        times = [r[0] for r in results]
        codes = sorted({str(r[1]) for r in results})
        table.add(sig.name, "/".join(codes), f"{sum(r[2] for r in results)}/{repeats}",
                  f"{np.median(times):.2f}", f"{max(times):.2f}", f"{sum(r[3] for r in results)}/{repeats}")
    return table


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=1000, help="images in the burst (default 1000)")
    parser.add_argument("--rate", type=float, default=100.0, help="burst rate in Hz (default 100)")
    parser.add_argument("--soak", type=int, default=3000, help="frames in the soak run (default 3000)")
    parser.add_argument("--shutdowns", type=int, default=3, help="runs per signal (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/reliability.md)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this benchmark reads memory from Linux /proc")
    keep_freed_memory_in_process()
    load_before = load_average()
    tables: List[Table] = []
    with tempfile.TemporaryDirectory(prefix="bench_robustness_") as tmp:
        directory = Path(tmp)
        os.environ.update(private_ros_environment())
        if "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:
            os.environ.update(fastdds_profile_environment(directory))
        ros = Ros()
        try:
            model_path = make_model(directory)
            tables.append(machine_facts(ros.rmw()))
            node = EndToEnd(ros, model_path, directory / "depth_node.log", colored=True)
            try:
                node.wait_ready()
                if args.burst:
                    tables.append(burst(node, args.burst, args.rate))
                if args.soak:
                    tables.append(soak(node, args.soak))
            finally:
                node.close()
            if args.shutdowns:
                tables.append(shutdowns(ros, model_path, directory, args.shutdowns))
        finally:
            ros.close()
    tables[0].add("load average before / after", f"{load_before} / {load_average()}")
    for table in tables:
        print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
