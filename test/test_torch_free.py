"""With an .onnx model, depth_node and infer_bag run without PyTorch (docs/onnx.md, "Running without PyTorch").

Each check runs in a child process where torch cannot be imported (WITHOUT_TORCH: an import hook
that refuses ``torch`` and ``torch.*``), as on a robot with only onnxruntime installed. The .onnx
files and bags are made here, in the test process, which has torch.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mono_depth_ros.bagio import BagReader
from mono_depth_ros.simulation import write_synthetic_bag
from mono_depth_ros.tools.infer_bag import main as infer_bag_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the child's onnxruntime gets OMP_NUM_THREADS=1 too

# Python code that makes torch unimportable for the rest of the process (put it before the code to test).
WITHOUT_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r} (torch is blocked: this process must run without it)")
        return None

sys.meta_path.insert(0, _NoTorch())
"""
# Modules that a node or infer_bag with an .onnx model imports, and the homes of what they use.
TORCH_FREE_MODULES = (
    "mono_depth_ros.camera",
    "mono_depth_ros.frame_pipeline",
    "mono_depth_ros.geometry",
    "mono_depth_ros.geometry.intrinsics",
    "mono_depth_ros.inference",
    "mono_depth_ros.inference.loading",
    "mono_depth_ros.inference.onnx_backend",
    "mono_depth_ros.model_file",
    "mono_depth_ros.networks",
    "mono_depth_ros.networks.choices",
    "mono_depth_ros.safetensors_io",
    "mono_depth_ros.visual_odometry",
    "mono_depth_ros.tools.infer_bag",
)
HAS_RCLPY = importlib.util.find_spec("rclpy") is not None
NO_RCLPY = "rclpy (ROS 2's Python client library) is not installed: depth_node cannot be imported"


def run_without_torch(code: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``code`` (with ``args`` as sys.argv[1:]) in a child Python where torch cannot be imported."""
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH + code, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def check(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (
        f"exit code {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def small_onnx(small_model_path, tmp_path_factory) -> Path:
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from mono_depth_ros.tools.export_onnx import export_onnx

    path = tmp_path_factory.mktemp("torch_free") / "small.onnx"
    export_onnx(small_model_path, path)
    return path


@pytest.fixture(scope="module")
def raw_bag(tmp_path_factory) -> Path:
    return write_synthetic_bag(tmp_path_factory.mktemp("torch_free") / "raw", num_frames=3, stereo=False,
                               odometry=False)


def test_the_child_process_really_has_no_torch():
    # Without this the other tests could pass vacuously.
    result = run_without_torch("import torch")
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_the_modules_of_the_onnx_path_import_without_torch(small_model_path):
    code = (
        "import importlib\n"
        f"for name in {TORCH_FREE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "from mono_depth_ros.model_file import read_model_metadata\n"
        "from mono_depth_ros.networks import encoder_label\n"
        "meta = read_model_metadata(sys.argv[1])\n"
        "print(encoder_label(meta.encoder, meta.num_layers), meta.input_width, meta.input_height)\n"
        "assert 'torch' not in sys.modules\n"
    )
    # The metadata of a .safetensors model file is read without torch too (its header is JSON).
    assert check(run_without_torch(code, str(small_model_path))).split() == ["ResNet-18", "128", "64"]


@pytest.mark.skipif(not HAS_RCLPY, reason=NO_RCLPY)
def test_depth_node_imports_without_torch():
    check(run_without_torch("import mono_depth_ros.ros.depth_node\nassert 'torch' not in sys.modules\n"))


def depth_messages(bag: Path) -> list:
    with BagReader(bag, log=lambda text: None) as reader:
        return [(msg.header.stamp.sec, msg.header.stamp.nanosec, msg.width, msg.height, bytes(msg.data))
                for _, _, _, msg in reader.messages(["/depth"])]


def test_infer_bag_with_an_onnx_model_writes_the_same_depth_without_torch(small_onnx, raw_bag, tmp_path):
    with_torch, without_torch = tmp_path / "with_torch", tmp_path / "without_torch"
    assert infer_bag_main(["--bag", str(raw_bag), "--model", str(small_onnx), "--out", str(with_torch),
                           "--no-progress"]) == 0
    code = (
        "from mono_depth_ros.tools.infer_bag import main\n"
        "code = main(sys.argv[1:])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    printed = check(run_without_torch(code, "--bag", str(raw_bag), "--model", str(small_onnx), "--out",
                                      str(without_torch), "--no-progress"))
    assert "wrote 3 of 3 frames" in printed
    expected, written = depth_messages(with_torch), depth_messages(without_torch)
    assert len(expected) == 3 and written == expected  # stamps, sizes and every depth byte


def test_a_safetensors_model_without_torch_says_to_install_it_or_use_onnx(small_model_path, raw_bag, tmp_path):
    code = "from mono_depth_ros.tools.infer_bag import main\nsys.exit(main(sys.argv[1:]))\n"
    result = run_without_torch(code, "--bag", str(raw_bag), "--model", str(small_model_path), "--out",
                               str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 1, result.stderr
    assert ".safetensors models run through PyTorch, which cannot be imported" in result.stderr
    assert "pip install torch" in result.stderr and "export_onnx" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.ros
@pytest.mark.skipif(not HAS_RCLPY, reason=NO_RCLPY)
def test_depth_node_runs_an_onnx_model_without_torch_over_dds(small_onnx, tmp_path):
    import node_harness as dds  # here: it needs rclpy, which the other tests of this file do not

    from mono_depth_ros.inference import OnnxDepthEstimator

    run_node = f"import runpy\nrunpy.run_module({dds.NODE_MODULE!r}, run_name='__main__', alter_sys=True)\n"
    width, height = 160, 120
    bgr = dds.scene(width, height, seed=5)
    stamp = dds.next_stamp()
    image = dds.image_msg(bgr, stamp, "camera_optical_frame")
    ros = dds.Ros()
    try:
        with dds.started_node(ros, tmp_path / "node.log", "/torch_free",
                              {"model_path": str(small_onnx), "device": "cpu", "depth_scale": 1.5},
                              launcher=("-c", WITHOUT_TORCH + run_node)) as node:
            outputs = node.exchange(image, dds.info_msg(width, height, stamp, "camera_optical_frame"))
            maps = Path(f"/proc/{node.process.process.pid}/maps").read_text()
            output = node.process.output()
    finally:
        ros.close()
    assert "with onnxruntime (CPUExecutionProvider) on cpu" in output
    assert "torch is blocked" not in output and "Traceback" not in output
    assert "libtorch" not in maps  # no PyTorch library in the node process
    depth = dds.check_depth_message(outputs["depth"], image)
    expected = OnnxDepthEstimator(small_onnx, threads=1).predict(np.ascontiguousarray(bgr[:, :, ::-1]), 1.5)
    # Node defaults: output_min_depth 0.1, output_max_depth 80; inside that range the depth is the model's.
    inside = (expected > 0.1 * 1.001) & (expected < 80.0 * 0.999)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(depth[inside], expected[inside], rtol=1e-5)
    assert outputs["points"].width == width and outputs["depth_colored"].encoding == "bgr8"
