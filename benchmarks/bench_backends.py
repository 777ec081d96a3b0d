"""The depth network's forward on the CPU through each runtime the node could use.

A script, not a test: it asserts nothing, it prints a table. The same weights (a model file with
random weights, and its export_onnx export) run through:

* ``eager``: DepthEstimator as the node runs a ``.safetensors`` model (batch norms folded, channels_last);
* ``torch.compile``: the eager network compiled by Inductor with ``freezing`` (weights folded as
  constants), compile time reported apart;
* ``onnxruntime``: OnnxDepthEstimator (CPUExecutionProvider, all graph optimisations);
* ``OpenVINO``: the .onnx file compiled by OpenVINO for the CPU, when the ``openvino`` package imports
  (it is not a dependency of this package: ``pip install openvino`` to include it).

For each network input size and thread count, every runtime's forward runs on the same
preprocessed input, interleaved frame by frame so that other load on the machine hits all alike.
The last column is each runtime's largest |disparity - eager's| over the output. (The version of this
script that decided to remove the node's hand-written oneDNN twin, with the twin as a column, is in the
git history beside the removal.)

    .venv/bin/python benchmarks/bench_backends.py [--frames 20] [--encoder resnet] [--no-compile] [--markdown]

Run it on a quiet machine; results: docs/benchmarks.md, 'CPU forward paths'.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Table  # noqa: E402

from mono_depth_ros.inference import DepthEstimator, OnnxDepthEstimator  # noqa: E402
from mono_depth_ros.model_file import ModelMetadata, load_model_file, save_model_file  # noqa: E402
from mono_depth_ros.networks import ENCODERS, DepthNet, encoder_label  # noqa: E402
from mono_depth_ros.tools.export_onnx import export_onnx  # noqa: E402

SIZES = ((640, 192), (320, 192))
THREADS = (1, 2)
CAMERA = (640, 480)
Forward = Callable[[np.ndarray], np.ndarray]  # (1, 3, h, w) float32 in [0, 1] -> (h, w) sigmoid disparity


def median_ms(samples: List[float]) -> float:
    return statistics.median(samples) * 1e3


def camera_image(width: int, height: int) -> np.ndarray:
    """A textured (H, W, 3) uint8 RGB image (speed does not depend on content)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 17.0) * np.cos(y / 23.0)], axis=-1) * 255
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def torch_forward(estimator: DepthEstimator) -> Forward:
    def forward(image: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(image).contiguous(memory_format=torch.channels_last)
        return estimator.disparity(tensor)[0, 0].numpy()
    return forward


def compiled_forward(estimator: DepthEstimator, image: np.ndarray) -> Tuple[Forward, float]:
    """Inductor with freezing on the eager network; returns (forward, compile seconds)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    net = estimator.net
    compiled = torch.compile(lambda x: net(x, output_scales=(0,))[0])

    def forward(array: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return compiled(torch.from_numpy(array).contiguous(memory_format=torch.channels_last))[0, 0].numpy()

    start = time.perf_counter()
    forward(image)
    return forward, time.perf_counter() - start


def openvino_forward(onnx_path: Path, threads: int):
    """(forward, version) through OpenVINO's CPU plugin, or (None, why) when it is not installed."""
    try:
        import openvino as ov
    except ImportError as error:
        return None, f"not installed ({error})"
    core = ov.Core()
    model = core.compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                       "INFERENCE_PRECISION_HINT": "f32"})
    request = model.create_infer_request()

    def forward(image: np.ndarray) -> np.ndarray:
        return np.asarray(request.infer([image])[0])[0, 0]
    return forward, ov.__version__


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="measured frames per row and runtime (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured frames first (default 3)")
    parser.add_argument("--encoder", default="resnet", choices=ENCODERS)
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (it compiles for minutes)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    import onnxruntime

    rgb = camera_image(*CAMERA)
    runtimes: Dict[Tuple[int, int, int], Dict[str, Forward]] = {}
    inputs: Dict[Tuple[int, int], np.ndarray] = {}
    compile_seconds: Dict[Tuple[int, int], float] = {}
    openvino_note = ""
    with tempfile.TemporaryDirectory() as directory:
        for width, height in SIZES:
            torch.manual_seed(0)
            metadata = ModelMetadata(encoder=args.encoder, input_width=width, input_height=height,
                                     training={"source": "bench_backends"})
            source = save_model_file(Path(directory) / f"m{width}x{height}.safetensors", metadata,
                                     DepthNet(encoder=args.encoder))
            onnx_path = export_onnx(source, Path(directory) / f"m{width}x{height}.onnx").path
            model = load_model_file(source)
            eager = DepthEstimator(model, torch.device("cpu"))
            image = eager.preprocess(rgb).contiguous().numpy()  # NCHW float32, what every runtime takes
            inputs[(width, height)] = image
            compiled = None
            if not args.no_compile:
                torch.set_num_threads(max(THREADS))
                compiled, compile_seconds[(width, height)] = compiled_forward(eager, image)
            for threads in THREADS:
                row = {"eager": torch_forward(eager)}
                if compiled is not None:
                    row["torch.compile"] = compiled
                ort = OnnxDepthEstimator(onnx_path, "cpu", threads=threads)
                row["onnxruntime"] = lambda array, ort=ort: ort.disparity(array)[0, 0]
                openvino, openvino_note = openvino_forward(onnx_path, threads)
                if openvino is not None:
                    row["OpenVINO"] = openvino
                runtimes[(width, height, threads)] = row

        names = list(dict.fromkeys(name for row in runtimes.values() for name in row))
        times: Dict[Tuple[int, int, int, str], List[float]] = {}
        difference: Dict[Tuple[int, int, str], float] = {}
        for threads in THREADS:
            torch.set_num_threads(threads)
            rows = {key: row for key, row in runtimes.items() if key[2] == threads}
            for frame in range(args.warmup + args.frames):
                for key, row in rows.items():  # interleaved: every runtime of every size, frame by frame
                    image = inputs[key[:2]]
                    reference = None
                    for name, forward in row.items():
                        start = time.perf_counter()
                        output = forward(image)
                        elapsed = time.perf_counter() - start
                        if frame >= args.warmup:
                            times.setdefault(key + (name,), []).append(elapsed)
                        if frame == 0:
                            reference = output if reference is None else reference
                            difference[key[:2] + (name,)] = float(np.max(np.abs(output - reference)))

    table = Table(
        f"{encoder_label(args.encoder)} forward on the CPU, median ms over {args.frames} frames (interleaved); "
        f"in brackets: time / eager's",
        ["input", "threads"] + names + ["max |disparity - eager's|"],
    )
    for (width, height, threads), row in runtimes.items():
        eager_ms = median_ms(times[(width, height, threads, "eager")])
        cells = []
        for name in names:
            if name not in row:
                cells.append("-")
                continue
            ms = median_ms(times[(width, height, threads, name)])
            cells.append(f"{ms:.1f}" if name == "eager" else f"{ms:.1f} ({ms / eager_ms:.2f}x)")
        worst = max(value for key, value in difference.items() if key[:2] == (width, height))
        table.add(f"{width}x{height}", threads, *cells, f"{worst:.1e}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table.notes.append(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, OpenVINO {openvino_note or '-'}; "
        f"{os.cpu_count()} logical cores; load average after: {load:.2f}")
    if compile_seconds:
        table.notes.append("torch.compile (Inductor, freezing) compile time: " + ", ".join(
            f"{w}x{h} {seconds:.0f} s" for (w, h), seconds in compile_seconds.items()))
    print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
