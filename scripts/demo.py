#!/usr/bin/env python3
"""`make demo`: run the real depth_node over DDS on rendered sample frames.

1. makes a model file (random weights unless --model is given);
2. renders a short drive down a textured corridor (training.synthetic, exact K);
3. starts `depth_node` in its own process on a private ROS_DOMAIN_ID (loopback only),
   publishes each frame with its CameraInfo and waits for depth + points back;
4. writes out/demo/: input and colour-mapped depth PNGs, the last point cloud as PLY,
   and summary.json with sizes, latencies and depth ranges.
"""
from __future__ import annotations

import argparse
import array
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder")
    parser.add_argument("--model", default="", help="model file to run (default: random weights)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the node per frame")
    return parser.parse_args(argv)


def step(number: int, text: str) -> None:
    print(f"[{number}/4] {text}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(20, 99)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    # Large images and clouds between two local processes: the shipped 64 MB shared-memory profile.
    profile = str(ROOT / "config" / "fastdds_large_messages.xml")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", profile)
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", profile)

    model = Path(args.model) if args.model else out / "random_model.safetensors"
    if not args.model:
        step(1, f"creating a model with random weights: {model} (depth will be meaningless; "
                "`make demo` after the trainer lands trains a real one)")
        from mono_depth_ros.create_model import main as create_model

        if create_model(["--out", str(model)]) != 0:
            return 1
    else:
        step(1, f"using model {model}")

    step(2, f"rendering {args.frames} sample frames ({args.width}x{args.height})")
    from training.synthetic import render_recording

    recording = render_recording(num_frames=args.frames, width=args.width, height=args.height, stereo=False)

    step(3, f"starting depth_node (ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}) and streaming frames over DDS")
    node_log = open(out / "depth_node.log", "w")
    node = subprocess.Popen(
        [sys.executable, "-m", "mono_depth_ros.depth_node", "--ros-args",
         "-p", f"model_path:={model}", "-p", "device:=cuda", "-r", "image:=/camera/image_raw",
         "-r", "camera_info:=/camera/camera_info"],
        stdout=node_log, stderr=subprocess.STDOUT,
    )
    try:
        results = stream_frames(recording, args.timeout, node)
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.kill()
        node_log.close()

    step(4, f"writing results to {out}")
    summary = write_outputs(out, recording, results)
    print(json.dumps(summary["frames"][-1], indent=2))
    print(f"depth PNGs, input PNGs, points.ply and summary.json are in {out}")
    return 0 if summary["frames_received"] == len(recording.images) else 1


def stream_frames(recording, timeout: float, node: subprocess.Popen):
    import rclpy
    from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    rclpy.init()
    client = rclpy.create_node("mono_depth_demo")
    received = {}
    current = {"stamp": None}

    def keep(kind):
        # Only outputs of the frame being waited for count (a re-sent frame may answer late).
        def callback(msg):
            if (msg.header.stamp.sec, msg.header.stamp.nanosec) == current["stamp"]:
                received[kind] = msg
        return callback

    client.create_subscription(Image, "/depth", keep("depth"), 5)
    client.create_subscription(PointCloud2, "/points", keep("points"), 5)
    client.create_subscription(Image, "/depth_colored", keep("colored"), 5)
    # Reliable, as camera drivers and `ros2 bag play` publish by default (see README, "Image QoS").
    image_qos = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1, reliability=QoSReliabilityPolicy.RELIABLE)
    image_pub = client.create_publisher(Image, "/camera/image_raw", image_qos)
    info_pub = client.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
    height, width = recording.images[0].shape[:2]
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.header.frame_id = "camera_optical_frame"
    info.k = [float(v) for v in recording.K.reshape(-1)]
    info.d = [0.0] * 5
    info.p = [float(v) for v in np.hstack([recording.K, np.zeros((3, 1))]).reshape(-1)]
    results = []
    try:
        for index, (rgb, stamp_ns) in enumerate(zip(recording.images, recording.stamps_ns)):
            image = Image(height=height, width=width, encoding="rgb8", step=width * 3)
            image.header.frame_id = info.header.frame_id
            image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            info.header.stamp = image.header.stamp
            data = array.array("B")
            data.frombytes(rgb.tobytes())
            image.data = data
            received.clear()
            current["stamp"] = (image.header.stamp.sec, image.header.stamp.nanosec)
            sent = time.monotonic()
            last_sent = -1e9
            deadline = sent + timeout
            while time.monotonic() < deadline and not all(k in received for k in ("depth", "points", "colored")):
                if node.poll() is not None:
                    raise RuntimeError(f"depth_node exited with code {node.returncode}; see depth_node.log")
                # Re-send until the node answers: the first frames may be sent before DDS discovery.
                if not received and time.monotonic() - last_sent > 2.0:
                    info_pub.publish(info)
                    image_pub.publish(image)
                    last_sent = time.monotonic()
                rclpy.spin_once(client, timeout_sec=0.05)
            if "depth" not in received:
                raise RuntimeError(f"no depth received for frame {index} within {timeout:.0f} s")
            results.append((time.monotonic() - sent, dict(received)))
            print(f"    frame {index + 1}/{len(recording.images)}: depth + points back in "
                  f"{results[-1][0] * 1000:.0f} ms", flush=True)
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
    return results


def write_outputs(out: Path, recording, results):
    from mono_depth_ros.pointcloud import unpack_xyzrgb, write_ply

    frames = []
    for index, (latency, messages) in enumerate(results):
        depth_msg = messages["depth"]
        depth = np.frombuffer(depth_msg.data, dtype="<f4").reshape(depth_msg.height, depth_msg.width)
        colored = messages["colored"]
        colored_bgr = np.frombuffer(colored.data, dtype=np.uint8).reshape(colored.height, colored.width, 3)
        cv2.imwrite(str(out / f"frame{index:02d}_input.png"), cv2.cvtColor(recording.images[index], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / f"frame{index:02d}_depth.png"), colored_bgr)
        finite = depth[np.isfinite(depth)]
        frames.append({
            "frame": index,
            "size": [depth_msg.width, depth_msg.height],
            "encoding": depth_msg.encoding,
            "latency_ms": round(latency * 1000, 1),
            "depth_min_m": float(finite.min()) if finite.size else None,
            "depth_max_m": float(finite.max()) if finite.size else None,
            "ground_truth_median_m": float(np.median(recording.depths[index])),
        })
    last = results[-1][1]["points"]
    xyz, rgb = unpack_xyzrgb(last.data, last.height, last.width)
    points = write_ply(out / "points.ply", xyz, rgb)
    summary = {"frames_sent": len(recording.images), "frames_received": len(results),
               "points_in_ply": points, "frames": frames}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    sys.exit(main())
