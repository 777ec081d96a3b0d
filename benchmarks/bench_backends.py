"""PyTorch (DepthEstimator, oneDNN fast path) vs onnxruntime (OnnxDepthEstimator) on the CPU.

A script, not a test: it asserts nothing, it prints a table. The same weights run in both backends:
a model file with random weights, and its export_onnx export. For each network input size and
thread count it measures, interleaved frame by frame (so that other load hits both backends alike):
* forward: ``disparity`` on an already preprocessed input (the network alone);
* predict: ``predict`` on a 640x480 RGB camera image (resize, network, upsampling to metres),
  what the node calls per frame.

    .venv/bin/python benchmarks/bench_backends.py [--frames 20] [--encoder resnet] [--markdown]

PyTorch's thread count is torch.set_num_threads; onnxruntime's is its session's intra-op pool
(threads are not shared between the two). Run it on a quiet machine; results: docs/onnx.md, 'Speed on the CPU'.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Table  # noqa: E402

from mono_depth_ros.tools.export_onnx import export_onnx  # noqa: E402
from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import ModelMetadata, load_model_file, save_model_file  # noqa: E402
from mono_depth_ros.networks import ENCODERS, DepthNet, encoder_label  # noqa: E402
from mono_depth_ros.inference import OnnxDepthEstimator  # noqa: E402

SIZES = ((640, 192), (320, 192))
THREADS = (1, 2)
CAMERA = (640, 480)


def median_ms(samples: List[float]) -> float:
    return statistics.median(samples) * 1e3


def camera_image(width: int, height: int) -> np.ndarray:
    """A textured (H, W, 3) uint8 RGB image (speed does not depend on content)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 17.0) * np.cos(y / 23.0)], axis=-1) * 255
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="measured frames per row and backend (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured frames first (default 3)")
    parser.add_argument("--encoder", default="resnet", choices=ENCODERS)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    import onnxruntime

    rgb = camera_image(*CAMERA)
    with tempfile.TemporaryDirectory() as directory:
        backends: Dict[tuple, Dict[str, object]] = {}
        agreement = {}
        for width, height in SIZES:
            torch.manual_seed(0)
            metadata = ModelMetadata(encoder=args.encoder, input_width=width, input_height=height,
                                     training={"source": "bench_backends"})
            source = save_model_file(Path(directory) / f"m{width}x{height}.safetensors", metadata,
                                     DepthNet(encoder=args.encoder))
            onnx_path = export_onnx(source, Path(directory) / f"m{width}x{height}.onnx").path
            pytorch = DepthEstimator(load_model_file(source), torch.device("cpu"))
            for threads in THREADS:
                onnx_estimator = OnnxDepthEstimator(onnx_path, "cpu", threads=threads)
                backends[(width, height, threads)] = {"PyTorch": pytorch, "onnxruntime": onnx_estimator}
            reference = pytorch.predict(rgb)
            agreement[(width, height)] = float(np.max(np.abs(onnx_estimator.predict(rgb) - reference) / reference))

        results: Dict[tuple, Dict[str, List[float]]] = {}
        for threads in THREADS:
            torch.set_num_threads(threads)
            rows = {key: value for key, value in backends.items() if key[2] == threads}
            inputs = {key: {name: estimator.preprocess(rgb) for name, estimator in pair.items()}
                      for key, pair in rows.items()}
            for frame in range(args.warmup + args.frames):
                for key, pair in rows.items():  # interleaved: size, backend, size, backend, ...
                    for name, estimator in pair.items():
                        times = results.setdefault(key + (name,), {"forward": [], "predict": []})
                        start = time.perf_counter()
                        estimator.disparity(inputs[key][name])
                        middle = time.perf_counter()
                        estimator.predict(rgb)
                        end = time.perf_counter()
                        if frame >= args.warmup:
                            times["forward"].append(middle - start)
                            times["predict"].append(end - middle)

    table = Table(
        f"{encoder_label(args.encoder)} on the CPU, PyTorch vs onnxruntime, median ms over {args.frames} frames "
        f"(interleaved)",
        ["input", "threads", "PyTorch forward", "onnxruntime forward", "onnxruntime / PyTorch",
         f"PyTorch predict ({CAMERA[0]}x{CAMERA[1]})", "onnxruntime predict", "max depth difference"],
    )
    for (width, height, threads) in backends:
        pytorch, ort = results[(width, height, threads, "PyTorch")], results[(width, height, threads, "onnxruntime")]
        forward_pt, forward_ort = median_ms(pytorch["forward"]), median_ms(ort["forward"])
        table.add(f"{width}x{height}", threads, f"{forward_pt:.1f}", f"{forward_ort:.1f}",
                  f"{forward_ort / forward_pt:.2f}x", f"{median_ms(pytorch['predict']):.1f}",
                  f"{median_ms(ort['predict']):.1f}", f"{agreement[(width, height)]:.1e} rel")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table.notes.append(
        f"torch {torch.__version__} (DepthEstimator: batch norms folded, oneDNN fast path), onnxruntime "
        f"{onnxruntime.__version__} (CPUExecutionProvider, all graph optimisations), {os.cpu_count()} logical "
        f"cores, load average after: {load:.2f}"
    )
    table.notes.append("forward: disparity on a preprocessed input; predict: RGB camera image in, metres out; "
                       "max depth difference: |onnxruntime - PyTorch| / PyTorch over the predicted depth")
    print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
