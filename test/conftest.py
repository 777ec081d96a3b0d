"""Shared fixtures. ROS tests get a private DDS domain on loopback so parallel runs never meet."""
from __future__ import annotations

import os
import random

import pytest
import torch

from mono_depth_ros.model_file import ModelMetadata, save_model_file
from mono_depth_ros.networks import DepthNet, PoseNet

# The shared helper modules (not test modules) report failed asserts with their operands, as tests do.
pytest.register_assert_rewrite("node_harness")


# Tiers (setup.cfg declares the markers): `make test-fast` runs neither. Whole files here; single tests that
# train for several steps, spawn processes or talk DDS in otherwise quick files carry @pytest.mark.slow
# or @pytest.mark.ros themselves, so that the fast tier stays about a minute on 2 cores.
ROS_TEST_FILES = {"test_bag_playback.py", "test_demo.py", "test_launch.py", "test_node_bad_input.py",
                  "test_node_lifecycle.py", "test_node_load.py", "test_node_odometry.py", "test_node_onnx.py",
                  "test_node_diagnostics.py", "test_node_distortion.py", "test_node_outputs.py", "test_node_parameters.py", "test_node_startup_signals.py",
                  "test_node_transport.py"}
SLOW_TEST_FILES = {"test_demo.py", "test_distributed.py", "test_odometry_trained.py", "test_train_cli.py",
                   "test_trainer_faults.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if name in ROS_TEST_FILES:
            item.add_marker(pytest.mark.ros)
        if name in SLOW_TEST_FILES:
            item.add_marker(pytest.mark.slow)


def intra_op_threads() -> int:
    """OMP_NUM_THREADS when it is set (1 is far steadier on a busy 2-core machine: OpenMP threads wait
    for each other), else one per core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, os.cpu_count() or 1)


def pytest_configure(config):
    # One DDS domain per test session, traffic kept on this machine. pytest-xdist workers inherit the
    # controller's environment: each takes its own domain next to it, so parallel node tests never meet.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(20, 99)))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        os.environ["ROS_DOMAIN_ID"] = str(20 + (int(os.environ["ROS_DOMAIN_ID"]) - 20 + 1 + int(worker[2:])) % 80)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and later
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")  # Humble
    torch.set_num_threads(intra_op_threads())


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory):
    """A valid model file with random weights (ResNet-18, 640x192, with pose network)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "random.safetensors"
    save_model_file(path, ModelMetadata(training={"source": "test"}), DepthNet(18), PoseNet(18))
    return path


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory):
    """A fast model file: ResNet-18 at 128x64 input, metric, depth_scale 2.0."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("models") / "small.safetensors"
    metadata = ModelMetadata(input_width=128, input_height=64, metric=True, depth_scale=2.0, max_depth=50.0)
    save_model_file(path, metadata, DepthNet(18))
    return path


@pytest.fixture
def drop_large_outputs(tmp_path):
    """Delete checkpoints and model files a test wrote: pytest keeps old tmp dirs, and
    training checkpoints are ~100-300 MB each."""
    yield
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".pt", ".safetensors", ".tmp"):
            path.unlink()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread (here and in child processes, via OMP_NUM_THREADS) for a module of small
    networks: as fast as two on a quiet machine, and not slowed many times over when other processes
    load the cores (OpenMP threads wait for each other). Use with pytest.mark.usefixtures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)
