"""depth_node running an .onnx model through onnxruntime, over real DDS (loopback, private domain).

Reuses the node-process and test-side ROS helpers of test/node_harness.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("onnx", reason="onnx is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

import node_harness as dds  # noqa: E402  (test/ is on sys.path)

from mono_depth_ros.tools.export_onnx import export_onnx  # noqa: E402
from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import load_model_file  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def onnx_model(small_model_path, tmp_path_factory):
    """The conftest's small model (ResNet-18, 128x64, metric, depth_scale 2.0) as .onnx."""
    return export_onnx(small_model_path, tmp_path_factory.mktemp("node_onnx") / "small.onnx").path


def test_node_runs_an_onnx_model_as_it_runs_the_safetensors_one(onnx_model, small_model_path, tmp_path):
    width, height = 333, 251
    bgr = dds.scene(width, height, seed=3)
    ros = dds.Ros()
    node = None
    try:
        node = dds.RunningNode(ros, tmp_path / "node.log", "/dds_onnx",
                               {"model_path": str(onnx_model), "device": "cpu", "depth_scale": 1.5})
        node.wait_ready()
        stamp = dds.next_stamp()
        image = dds.image_msg(bgr, stamp, "camera_optical_frame")
        outputs = node.exchange(image, dds.info_msg(width, height, stamp, "camera_optical_frame"))
        output = node.process.output()
    finally:
        if node is not None:
            node.close()
        ros.close()
    assert f"loaded {onnx_model} (ResNet-18, 128x64, metric) with onnxruntime (CPUExecutionProvider) on cpu" in output
    depth = dds.check_depth_message(outputs["depth"], image)
    pytorch = DepthEstimator(load_model_file(small_model_path), torch.device("cpu"))
    expected = pytorch.predict(np.ascontiguousarray(bgr[:, :, ::-1]), extra_scale=1.5)
    # Node defaults: output_min_depth 0.1, output_max_depth 80; the pixels inside that range must match the PyTorch backend.
    inside = (expected > 0.1 * 1.001) & (expected < 80.0 * 0.999)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(depth[inside], expected[inside], rtol=1e-4)
    assert outputs["points"].width == width and outputs["depth_colored"].encoding == "bgr8"


def test_bad_onnx_file_stops_the_node_with_the_reason(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf" * 20)
    process = dds.NodeProcess(tmp_path / "node.log", "/dds_onnx_bad", {"model_path": str(bad), "device": "cpu"})
    try:
        code = process.wait_exit(dds.START_TIMEOUT_S)
        output = process.output()
    finally:
        process.stop()
    assert code is not None and code != 0, output
    assert f"{bad}: not a valid ONNX model" in output and "export_onnx MODEL.safetensors OUT.onnx" in output
    assert "Traceback" not in output
