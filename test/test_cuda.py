"""Tests that need a CUDA device (marker ``cuda``): skipped, with the reason, on a machine without one.

``benchmarks/gpu_check.sh`` runs them on a GPU machine together with the GPU benchmarks. What they
hold: the node's PyTorch backend gives the CPU's depth on CUDA (float32 and float16), the node's
CPU fallback stays off when CUDA is there, a trainer step with AMP gives finite losses, and
onnxruntime's CUDAExecutionProvider gives its CPU provider's depth (with onnxruntime-gpu).

Tolerances: PyTorch runs float32 convolutions in TF32 on Ampere and later GPUs by default (so does
the node), and float16 rounds every activation, so depth is compared by its relative error
|cuda - cpu| / cpu, median and worst pixel.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mono_depth_ros.devices import resolve_device
from mono_depth_ros.inference import describe, load_estimator

from helpers import make_datasets, quiet, report, small_recording, tiny_config  # test/ is on sys.path

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"needs a CUDA device: torch.cuda.is_available() is False on this machine (torch {torch.__version__}, "
        f"built for CUDA {torch.version.cuda}); benchmarks/gpu_check.sh runs these on a GPU machine",
    ),
]

# (median, worst pixel) relative depth error allowed against the CPU.
FLOAT32_TOLERANCE = (2e-3, 2e-2)
FLOAT16_TOLERANCE = (1e-2, 1e-1)


def scene(width: int = 320, height: int = 240) -> np.ndarray:
    """A textured (H, W, 3) uint8 RGB image (deterministic)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 9.0) * np.cos(y / 13.0)], axis=-1) * 255
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def relative_error(depth: np.ndarray, reference: np.ndarray):
    """-> (median, worst) of |depth - reference| / reference over pixels finite in both."""
    assert depth.shape == reference.shape and depth.dtype == np.float32
    finite = np.isfinite(depth) & np.isfinite(reference) & (reference > 0)
    assert finite.mean() > 0.99, "depth should be finite almost everywhere"
    error = np.abs(depth[finite] - reference[finite]) / reference[finite]
    return float(np.median(error)), float(error.max())


def assert_close(depth: np.ndarray, reference: np.ndarray, tolerance, what: str) -> None:
    median, worst = relative_error(depth, reference)
    assert median <= tolerance[0] and worst <= tolerance[1], (
        f"{what}: relative depth error median {median:.2e}, worst {worst:.2e}; "
        f"allowed {tolerance[0]:.0e}, {tolerance[1]:.0e}"
    )


@pytest.fixture(scope="module")
def cpu_depth(small_model_path):
    loaded = load_estimator(small_model_path, "cpu")
    return loaded.estimator.predict(scene())


@pytest.mark.parametrize("half, tolerance", [(False, FLOAT32_TOLERANCE), (True, FLOAT16_TOLERANCE)],
                         ids=["float32", "float16"])
def test_pytorch_backend_on_cuda_gives_the_cpu_depth(small_model_path, cpu_depth, half, tolerance):
    loaded = load_estimator(small_model_path, "cuda", half=half)  # as depth_node loads its model
    estimator = loaded.estimator
    assert next(estimator.net.parameters()).device.type == "cuda"
    assert next(estimator.net.parameters()).dtype == (torch.float16 if half else torch.float32)
    depths = [estimator.predict(scene()) for _ in range(2)]
    np.testing.assert_allclose(depths[0], depths[1], rtol=1e-5)  # the same frame twice: the same depth
    assert_close(depths[0], cpu_depth, tolerance, "float16" if half else "float32")


def test_device_fallback_does_not_trigger_when_cuda_is_present(small_model_path):
    for requested in ("cuda", "cuda:0"):
        device, warning = resolve_device(requested)  # the node's parameter
        assert device.type == "cuda" and warning is None
    loaded = load_estimator(small_model_path, "cuda")
    assert loaded.warnings == [] and loaded.device.startswith("cuda")
    assert describe(loaded) == f"PyTorch on {loaded.device}"
    assert describe(load_estimator(small_model_path, "cuda:0", half=True)) == "PyTorch on cuda:0 in float16"


@pytest.mark.parametrize("mode", ["mono", "stereo"])
def test_trainer_amp_step_on_cuda_gives_finite_losses(tmp_path, mode):
    from mono_depth_ros_training.trainer import Trainer

    train_ds, val_ds = make_datasets(small_recording())
    trainer = Trainer(tiny_config(mode, device="cuda", amp="true"), train_ds, val_ds, tmp_path,
                      report=report(), log=quiet)
    assert trainer.amp and trainer.device.type == "cuda" and trainer.scaler.is_enabled()
    batch = torch.utils.data.default_collate([train_ds[0], train_ds[3]])
    before = [p.detach().clone() for p in trainer.depth_net.parameters()]
    losses = [float(trainer.train_step(batch).total.detach()) for _ in range(4)]
    assert all(np.isfinite(losses)), losses
    after = list(trainer.depth_net.parameters())
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in after)  # AMP keeps float32 weights
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # the optimiser stepped


def test_onnxruntime_cuda_provider_gives_the_cpu_providers_depth(small_model_path, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (available: "
                    f"{', '.join(ort.get_available_providers())}): install onnxruntime-gpu instead of onnxruntime")
    from mono_depth_ros.tools.export_onnx import export_onnx

    path = tmp_path / "small.onnx"
    export_onnx(small_model_path, path, verify=False)
    on_cpu = load_estimator(path, "cpu")
    on_cuda = load_estimator(path, "cuda")
    assert on_cuda.backend == "onnxruntime (CUDAExecutionProvider)" and on_cuda.device == "cuda:0"
    assert on_cuda.warnings == []
    image = scene()
    assert_close(on_cuda.estimator.predict(image), on_cpu.estimator.predict(image), FLOAT32_TOLERANCE,
                 "onnxruntime CUDAExecutionProvider")
