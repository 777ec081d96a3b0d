"""`make demo`: the whole product on a CPU in minutes, from nothing to a report.

1. generate the sample recording: a training drive and a held-out drive down another street;
2. train a small stereo model on the training drive (config/train_demo.yaml, the real trainer);
3. start the real `depth_node`, play the held-out drive into it over DDS at its recorded
   rate (bag_playback.BagPlayer) and record what the node publishes (BagRecorder);
4. evaluate what the node published against the ground-truth depth, next to two baselines
   that learn nothing (a constant depth; a flat ground plane seen from the known camera
   height), and write a report: comparison grid PNG, point cloud PLY + rendered PNG,
   metrics table (printed, report.json, report.md).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from mono_depth_ros.msgtypes import IMAGE_TYPE, OUTPUT_TYPES

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "train_demo.yaml"
STEPS = 4
NODE_START_TIMEOUT_S = 180.0  # loading torch and the model on a busy 2-core machine
OUTPUT_QUIET_S = 10.0  # after playback: no new depth for this long means the node is done
CROP = "garg"  # the KITTI Eigen protocol of `evaluate`: Garg crop, 80 m cap

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
DEPTH_TOPIC = "/camera/depth"
NODE_NAMESPACE = "/demo"
NODE_OUTPUTS = {f"{NODE_NAMESPACE}/{name}": msgtype for name, msgtype in OUTPUT_TYPES.items()}


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where its log is."""


def find_config(name: str) -> Path:
    """config/<name> of a source checkout, else of the installed ROS package (share/mono_depth_ros/config)."""
    candidates = [ROOT / "config" / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("mono_depth_ros")) / "config" / name)
    except Exception:  # not installed through colcon: the checkout is the only place
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DemoError(f"cannot find config/{name} (looked in {', '.join(str(c) for c in candidates)})")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder (replaced if it holds an earlier demo)")
    parser.add_argument("--train-frames", type=int, default=300, help="frames of the training drive")
    parser.add_argument("--heldout-frames", type=int, default=60, help="frames of the held-out drive")
    parser.add_argument("--width", type=int, default=320, help="rendered camera width")
    parser.add_argument("--height", type=int, default=192, help="rendered camera height")
    parser.add_argument("--config", default="", help=f"training config (default: config/{DEFAULT_CONFIG})")
    parser.add_argument("--play-rate", type=float, default=1.0, help="held-out playback speed (1 = recorded rate)")
    parser.add_argument("--report-frames", type=int, default=4, help="rows of the comparison grid")
    parser.add_argument("--no-check", action="store_true",
                        help="do not fail when the model does not beat both baselines (short test runs)")
    parser.add_argument("overrides", nargs="*", help="training config overrides key=value, e.g. optim.max_steps=20")
    return parser.parse_args(argv)


def announce(number: int, text: str) -> None:
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


def ros_environment(out: Path) -> Dict[str, str]:
    """Environment for the node and the player: a private DDS domain on loopback, the large-message profile."""
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 200)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_LOCALHOST_ONLY", "1")
    profile = find_config("fastdds_large_messages.xml")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))  # Fast DDS 3 (Jazzy, Kilted)
    if env.get("ROS_DISTRO") in ("humble", "iron"):  # Fast DDS 2 reads the older name; 3 warns about it
        env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(profile))
    return env


# --------------------------------------------------------------------------- 1. recording


def generate_recordings(out: Path, args) -> Tuple[Path, Path, float]:
    """-> (training bag, held-out bag, camera height in metres)."""
    from mono_depth_ros import simulation
    from mono_depth_ros.simulation.cli import main as sample_recording

    train_bag, heldout_bag = out / "sample_train", out / "sample_heldout"
    common = ["--width", str(args.width), "--height", str(args.height)]
    print(f"    training drive: {args.train_frames} stereo frames, street seed 0 -> {train_bag}", flush=True)
    if sample_recording(["--out", str(train_bag), "--frames", str(args.train_frames), "--seed", "0"] + common) != 0:
        raise DemoError("generating the training recording failed")
    print(f"    held-out drive: {args.heldout_frames} frames down another street (seed 1) -> {heldout_bag}", flush=True)
    if sample_recording(["--out", str(heldout_bag), "--frames", str(args.heldout_frames), "--seed", "1"] + common) != 0:
        raise DemoError("generating the held-out recording failed")
    return train_bag, heldout_bag, float(simulation.STREET_CAMERA_HEIGHT_M)


# --------------------------------------------------------------------------- 2. training


def train_model(out: Path, train_bag: Path, args) -> Path:
    from .config import load_config
    from .run import train

    config_path = Path(args.config) if args.config else find_config(DEFAULT_CONFIG)
    # The frame cache lives in the demo folder: a fresh demo never reuses another run's frames.
    overrides = [f"data.cache_dir={out / 'frame_cache'}"] + list(args.overrides)
    config = load_config(str(config_path), overrides)
    print(f"    config {config_path}: mode {config.mode}, {config.data.width}x{config.data.height}, "
          f"batch {config.optim.batch_size}, {config.optim.max_steps or 'all'} steps", flush=True)
    result = train(config, out / "training", [str(train_bag)])
    return Path(result.model_path)


# --------------------------------------------------------------------------- 3. node over DDS


def run_node_on_recording(out: Path, model: Path, heldout_bag: Path, env: Dict[str, str], rate: float) -> Tuple[Path, Dict]:
    """Start depth_node, play the held-out images into it, record its outputs. -> (output bag, stats)."""
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY",
                                            "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
                       if k in env})
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from mono_depth_ros.ros.bag_playback import BagPlayer, BagRecorder

    log_path = out / "depth_node.log"
    node_log = open(log_path, "w")
    command = [
        sys.executable, "-m", "mono_depth_ros.ros.depth_node", "--ros-args",
        "-r", f"__ns:={NODE_NAMESPACE}", "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={CAMERA_INFO_TOPIC}",
        "--params-file", str(find_config("depth.yaml")),
        "-p", f"model_path:={model}", "-p", "device:=cpu",
    ]
    print(f"    $ ros2 run mono_depth_ros depth_node --ros-args -r __ns:={NODE_NAMESPACE} -r image:={IMAGE_TOPIC} "
          f"-r camera_info:={CAMERA_INFO_TOPIC} -p model_path:={model} -p device:=cpu   (log: {log_path})", flush=True)
    node_process = subprocess.Popen(command, stdout=node_log, stderr=subprocess.STDOUT, env=env)
    rclpy.init()
    player_node = rclpy.create_node("demo_player")
    recorder_node = rclpy.create_node("demo_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(recorder_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    output_bag = out / "node_output"
    stats: Dict = {}
    try:
        recorder = BagRecorder(recorder_node, output_bag, NODE_OUTPUTS)
        spinner.start()
        player = BagPlayer(player_node, heldout_bag, topics=[IMAGE_TOPIC, CAMERA_INFO_TOPIC], rate=rate)
        # The node subscribes before it loads its model (a bad QoS override fails at once): it is ready when it
        # has logged "loaded" and the player and recorder have matched its endpoints. Images sent earlier
        # would wait in a one-deep queue and all but the last be dropped.
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if node_process.poll() is not None:
                raise DemoError(f"depth_node exited with code {node_process.returncode}; see {log_path}")
            ready = "loaded " in log_path.read_text(errors="replace") and player.subscriber_count(IMAGE_TOPIC) > 0 \
                and all(recorder_node.count_publishers(topic) > 0 for topic in NODE_OUTPUTS)
            if ready:
                break
            time.sleep(0.1)
        else:
            raise DemoError(f"depth_node was not ready within {NODE_START_TIMEOUT_S:.0f} s; see {log_path}")
        time.sleep(0.5)  # let the reverse discovery (node -> recorder) settle too
        from tqdm import tqdm

        with tqdm(total=player.message_count(IMAGE_TOPIC), desc="    playing held-out images", unit="frame") as bar:
            def progress(topic: str, stamp_ns: int) -> None:
                if topic == IMAGE_TOPIC:
                    bar.update(1)
            started = time.monotonic()
            player.play(on_message=progress)
            play_s = time.monotonic() - started
        # The node may still be working on the last frames: wait until every image was answered, or until
        # nothing new came for OUTPUT_QUIET_S (frames the node dropped while busy never will be).
        last_count, quiet_since = -1, time.monotonic()
        played = player.published_on(IMAGE_TOPIC)
        while time.monotonic() - quiet_since < OUTPUT_QUIET_S:
            count = recorder.counts[f"{NODE_NAMESPACE}/depth"]
            if count >= played:
                break
            if count != last_count:
                last_count, quiet_since = count, time.monotonic()
            time.sleep(0.1)
        stats = {"images_played": player.published_on(IMAGE_TOPIC), "play_seconds": round(play_s, 2),
                 "depth_received": recorder.counts[f"{NODE_NAMESPACE}/depth"],
                 "points_received": recorder.counts[f"{NODE_NAMESPACE}/points"],
                 "colored_received": recorder.counts[f"{NODE_NAMESPACE}/depth_colored"]}
    finally:
        try:
            recorder.close()
        except NameError:
            pass
        executor.shutdown()
        player_node.destroy_node()
        recorder_node.destroy_node()
        rclpy.try_shutdown()
        node_process.send_signal(signal.SIGINT)
        try:
            node_process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node_process.kill()
        node_log.close()
    return output_bag, stats


# --------------------------------------------------------------------------- 4. evaluation + report


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def read_frames(bag: Path, topics: Sequence[str]) -> Dict[str, Dict[int, object]]:
    """{topic: {header stamp: message}} of a bag (rosbags messages)."""
    from mono_depth_ros.bagio import BagReader

    frames: Dict[str, Dict[int, object]] = {topic: {} for topic in topics}
    with BagReader(bag) as reader:
        for topic, _, _, msg in reader.messages(list(topics)):
            frames[topic][_stamp(msg)] = msg
    return frames


def _depth_array(msg) -> np.ndarray:
    """32FC1 node output -> (H, W) float32 metres with REP 118's +-inf kept."""
    return np.frombuffer(bytes(msg.data), dtype="<f4").reshape(int(msg.height), int(msg.width)).copy()


def collect_frames(heldout_bag: Path, output_bag: Path) -> Tuple[List[Dict], np.ndarray]:
    """Pair what the node published with the held-out ground truth by header stamp.

    -> (frames: dicts of stamp, rgb, prediction, gt, points message; K of the camera).
    """
    from mono_depth_ros.bagio import decode_depth, decode_image

    truth = read_frames(heldout_bag, [IMAGE_TOPIC, CAMERA_INFO_TOPIC, DEPTH_TOPIC])
    published = read_frames(output_bag, list(NODE_OUTPUTS))
    depth_topic = f"{NODE_NAMESPACE}/depth"
    stamps = sorted(set(published[depth_topic]) & set(truth[DEPTH_TOPIC]))
    if not stamps:
        raise DemoError(f"none of the node's depth images in {output_bag} matches a ground-truth stamp")
    info = next(iter(truth[CAMERA_INFO_TOPIC].values()))
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    frames = []
    for stamp in stamps:
        frames.append({
            "stamp": stamp,
            "rgb": decode_image(truth[IMAGE_TOPIC][stamp], IMAGE_TYPE),
            "prediction": _depth_array(published[depth_topic][stamp]),
            "gt": decode_depth(truth[DEPTH_TOPIC][stamp]),
            "points": published[f"{NODE_NAMESPACE}/points"].get(stamp),
        })
    return frames, K


def write_report(out: Path, frames: List[Dict], table: str, rows: List[Dict], stats: Dict,
                 protocol: Dict, report_frames: int) -> Dict[str, str]:
    """comparison.png, points.ply, points.png, report.json, report.md in `out`. -> {what: path}."""
    from mono_depth_ros.pointcloud import unpack_xyzrgb, write_ply
    from .report import comparison_grid, render_point_cloud

    picks = np.linspace(0, len(frames) - 1, num=min(report_frames, len(frames))).round().astype(int)
    chosen = [frames[i] for i in sorted(set(picks.tolist()))]
    grid = comparison_grid([f["rgb"] for f in chosen], [f["prediction"] for f in chosen], [f["gt"] for f in chosen])
    paths = {"comparison": out / "comparison.png"}
    cv2.imwrite(str(paths["comparison"]), grid)
    with_points = [f for f in chosen if f["points"] is not None]
    if with_points:
        cloud = with_points[len(with_points) // 2]["points"]
        xyz, rgb = unpack_xyzrgb(bytes(cloud.data), int(cloud.height), int(cloud.width))
        paths["ply"] = out / "points.ply"
        write_ply(paths["ply"], xyz, rgb)
        paths["cloud_render"] = out / "points.png"
        cv2.imwrite(str(paths["cloud_render"]), render_point_cloud(xyz, rgb))
    report = {"protocol": protocol, "node": stats, "rows": rows,
              "files": {name: str(path) for name, path in paths.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    lines = ["# mono_depth_ros demo report", "", "Held-out drive, depth published by depth_node over DDS:", "",
             "```", table, "```", "", f"Node: {json.dumps(stats)}", "", "![comparison](comparison.png)", ""]
    if "cloud_render" in paths:
        lines += ["![point cloud](points.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    paths["json"], paths["markdown"] = out / "report.json", out / "report.md"
    return {name: str(path) for name, path in paths.items()}


def evaluate_frames(frames: List[Dict], K: np.ndarray, camera_height_m: float, model_metric: bool,
                    output_bag: Path, max_depth: float = 80.0) -> Dict:
    """Metrics of the node's depth and of the two baselines on the same frames, in evaluate's report format."""
    from .evaluate import (MEDIAN_SCALED, SCALINGS, UNSCALED, DepthEvaluation, constant_depth,
                           ground_plane_depth)

    height, width = frames[0]["gt"].shape
    methods = {
        "depth_node": (UNSCALED if model_metric else MEDIAN_SCALED, "trained model, as published over DDS"),
        "constant": (MEDIAN_SCALED, "10 m everywhere"),
        "ground-plane": (UNSCALED, f"flat ground {camera_height_m:g} m below a level camera"),
    }
    evaluations = {name: DepthEvaluation(max_depth=max_depth, crop=CROP) for name in methods}
    plane = ground_plane_depth(K, height, width, camera_height_m, max_depth)
    constant = constant_depth(height, width)
    for frame in frames:
        gt, prediction = frame["gt"], frame["prediction"]
        if prediction.shape != gt.shape:
            raise DemoError(f"node depth {prediction.shape} and ground truth {gt.shape} differ in size")
        # REP 118's -inf (closer than the node's output_min_depth) and +inf (farther than its output_max_depth)
        # become the range limits.
        prediction = np.nan_to_num(prediction, nan=max_depth, posinf=max_depth, neginf=1e-3)
        evaluations["depth_node"].add(gt, prediction)
        evaluations["constant"].add(gt, constant)
        evaluations["ground-plane"].add(gt, plane)
    rows = []
    for name, (proper, detail) in methods.items():
        for scaling in (proper,) + tuple(s for s in SCALINGS if s != proper):
            rows.append({"method": name, "detail": detail, "scaling": scaling, "proper": scaling == proper,
                         "frames": evaluations[name].frames, **evaluations[name].summary(scaling)})
    protocol = {"bag": str(output_bag), "image_topic": f"{NODE_NAMESPACE}/depth", "depth_topic": DEPTH_TOPIC,
                "min_depth": 1e-3, "max_depth": max_depth, "crop": CROP, "frames": len(frames)}
    return {"protocol": protocol, "rows": rows}


def proper_abs_rel(report: Dict, method: str) -> float:
    return next(row["abs_rel"] for row in report["rows"] if row["method"] == method and row["proper"])


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists():
        if not (out / "report.json").exists() and any(out.iterdir()) and not (out / "sample_train").exists():
            print(f"demo: {out} exists and is not an earlier demo's folder; choose another --out", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.monotonic()
    try:
        announce(1, "generating the sample recording (rendered street, exact depth, stereo, odometry)")
        train_bag, heldout_bag, camera_height = generate_recordings(out, args)

        announce(2, "training a small stereo model on the training drive (the real trainer with its defaults, a CPU-sized budget)")
        model = train_model(out, train_bag, args)
        from mono_depth_ros.model_file import read_model_metadata

        metric = read_model_metadata(model).metric

        announce(3, "running depth_node on the held-out drive over DDS (bag player -> node -> recorder)")
        output_bag, stats = run_node_on_recording(out, model, heldout_bag, ros_environment(out), args.play_rate)
        print(f"    node published depth for {stats['depth_received']} of {stats['images_played']} images "
              f"-> {output_bag}", flush=True)

        announce(4, "evaluating against ground truth and writing the report")
        from .evaluate import format_table

        frames, K = collect_frames(heldout_bag, output_bag)
        report = evaluate_frames(frames, K, camera_height, metric, output_bag)
        table = format_table(report)
        report["model"] = str(model)
        files = write_report(out, frames, table, report["rows"], stats, report["protocol"], args.report_frames)
    except DemoError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 1
    print()
    print(table)
    model_error = proper_abs_rel(report, "depth_node")
    baseline_error = min(proper_abs_rel(report, "constant"), proper_abs_rel(report, "ground-plane"))
    verdict = model_error < 0.8 * baseline_error  # "clearly": at least 20 % lower abs_rel than the better baseline
    print(f"\nabs_rel: trained model {model_error:.3f}, best baseline {baseline_error:.3f} -> "
          + ("the model beats both baselines clearly" if verdict else "the model does NOT beat both baselines clearly"))
    print(f"report: {files['markdown']} (comparison {files['comparison']}"
          + (f", point cloud {files['ply']} and {files['cloud_render']}" if "ply" in files else "") + ")")
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    if not verdict and not args.no_check:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
