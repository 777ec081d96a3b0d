"""depth_node's life over real DDS: start-up errors (bad parameters, missing or malicious model files),
the deprecated module path, a fresh node on a best-effort camera with CUDA requested, and signals
during operation.

The node process, the test-side ROS node and the message helpers are in test/node_harness.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest
import torch

pytest.importorskip("rclpy")

from rclpy.qos import qos_profile_sensor_data  # noqa: E402

from helpers import CreatesFileWhenUnpickled  # noqa: E402  (test/ is on sys.path)

from node_harness import (  # noqa: E402  (test/ is on sys.path)
    EXIT_TIMEOUT_S, START_TIMEOUT_S, NodeProcess, RunningNode, check_depth_message, ros_session, small_frame,
)

STARTUP_BATCH = 4  # misconfigured nodes started at once


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


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


def _bad_model_files(directory: Path, good: Path) -> Dict[str, str]:
    """{placeholder: path} of model files that must be refused: a code-running pickle, a file whose
    metadata declares another architecture than its weights, a safetensors file of another program."""
    import json
    import pickle

    from mono_depth_ros.model_file import METADATA_KEY
    from mono_depth_ros.safetensors_io import read_safetensors, write_safetensors

    malicious = directory / "evil.safetensors"
    malicious.write_bytes(pickle.dumps(CreatesFileWhenUnpickled(directory / "pwned"), protocol=2))
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
        image, _ = small_frame()
        node.send_until_logged(image, None, "no CameraInfo received on /dds_fresh/camera_info")
        node.ros.spin_for(1.0)
        assert all(not messages for messages in node.received.values())
        image, info = small_frame()
        check_depth_message(node.exchange(image, info)["depth"], image)
        output = node.process.output()
        assert output.count("CUDA is not available") == 1
        assert "on cpu" in output
    finally:
        node.close()


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
        node.exchange(*small_frame())
        for _ in range(3):  # keep frames coming so the signals land while the node is busy
            node.send(*small_frame())
            node.ros.spin_for(0.05)
        node.send(*small_frame(2000, 1500))  # slow enough (upsampling, a 3 M point cloud) to be mid-frame
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

