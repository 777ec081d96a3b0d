"""Ctrl-C at any moment of depth_node's start-up ends it quietly, as the installed `depth_node`
command runs it (mono_depth_ros.ros.depth_node_main): while modules import, while rclpy starts, while
the model loads."""
from __future__ import annotations

import signal
import time

import pytest

from node_harness import EXIT_TIMEOUT_S, NodeProcess  # noqa: E402  (skips the module without rclpy)

# What the console script of setup.py does (`depth_node = mono_depth_ros.ros:depth_node_main`).
COMMAND = ("-c", "import sys; from mono_depth_ros.ros import depth_node_main; sys.exit(depth_node_main())")


@pytest.mark.parametrize("delay_s", [0.05, 0.3, 0.8, 1.5, 3.0])
def test_ctrl_c_during_start_up_exits_quietly(small_model_path, tmp_path, delay_s):
    process = NodeProcess(tmp_path / "node.log", f"/dds_early_{int(delay_s * 100)}",
                          {"model_path": str(small_model_path), "device": "cpu"}, launcher=COMMAND)
    time.sleep(delay_s)
    process.process.send_signal(signal.SIGINT)
    code = process.wait_exit(EXIT_TIMEOUT_S)
    process.stop()
    output = process.output()
    assert code in (0, -signal.SIGINT), output  # -SIGINT: the signal beat Python's own handler
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
