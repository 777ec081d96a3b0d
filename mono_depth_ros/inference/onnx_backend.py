"""Run .onnx models (written by export_onnx) through onnxruntime.

:class:`OnnxDepthEstimator` is a :class:`~.backend.DepthBackend`, as DepthEstimator is, so
FramePipeline, depth_node and infer_bag run either (:func:`~.loading.load_estimator` picks one by
the file name). onnxruntime is imported only when an .onnx file is loaded, so the package works
without it. Nothing here imports torch (neither does model_file, the metadata's home), so a
process that runs only .onnx models needs no PyTorch (docs/onnx.md, "Running without PyTorch").
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..devices import onnx_providers, parse_device
from ..geometry.disparity import DisparityRange, depth_from_scaled_disparity
from ..model_file import METADATA_KEY, ModelFileError, ModelMetadata
from .backend import Prediction, StageTimes, resize_to_network_input

ONNX_SUFFIX = ".onnx"
INPUT_NAME = "image"  # (B, 3, H, W) float32 RGB in [0, 1]
OUTPUT_NAME = "disparity"  # (B, 1, H, W) float32 sigmoid disparity (Monodepth2's scale 0)
EXPORT_INFO_KEY = "mono_depth_ros.export"  # how the file was exported (JSON), beside METADATA_KEY
ONNXRUNTIME_HINT = (
    "Install it in the Python that runs the node: `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` "
    "(CUDA; no rosdep key for either), or run the .safetensors model file instead"
)
HOW_TO_EXPORT = "Export one from a model file: `export_onnx MODEL.safetensors OUT.onnx` (see docs/onnx.md)"


class OnnxModelError(ModelFileError):
    """An .onnx model cannot be run: onnxruntime missing, not ONNX, or not exported by export_onnx."""


def is_onnx_path(path) -> bool:
    return Path(path).suffix.lower() == ONNX_SUFFIX


def import_onnxruntime(path=None):
    """The onnxruntime module, or OnnxModelError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as error:
        where = f"{path}: " if path is not None else ""
        raise OnnxModelError(
            f"{where}.onnx models run through onnxruntime, which is not installed ({error}). {ONNXRUNTIME_HINT}."
        ) from error
    return onnxruntime


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def default_threads() -> int:
    """As many intra-op threads as PyTorch uses, so both backends compare, without importing torch:
    PyTorch's count when torch is loaded already, else MKL_NUM_THREADS or OMP_NUM_THREADS (which
    PyTorch honours, in that order), else 0: onnxruntime's own default, one thread per physical core,
    as PyTorch's default is."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, torch.get_num_threads())
    for name in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


class OnnxDepthEstimator:
    """Runs an exported .onnx depth network and returns metric depth at the image's resolution.

    Same contract as DepthEstimator (a DepthBackend): depth in metres = network depth * the model's
    depth_scale * ``extra_scale``; the network sees the whole image resized to the model's input.
    """

    def __init__(self, path, device: str = "cpu", half: bool = False, threads: Optional[int] = None,
                 spinning: bool = False):
        """``threads``: intra-op threads (default: PyTorch's count, :func:`default_threads`). ``spinning``:
        let idle pool threads busy-wait for the next run (onnxruntime's default); off, they leave the cores
        to the rest of the node (point cloud, DDS) between frames."""
        self.path = Path(path)
        ort = import_onnxruntime(self.path)
        if not self.path.exists():
            raise OnnxModelError(f"model file {self.path} does not exist. {HOW_TO_EXPORT}.")
        if self.path.is_dir():
            raise OnnxModelError(f"model path {self.path} is a directory; give the .onnx file inside it")
        providers, self.device, warning = onnx_providers(parse_device(device), ort.get_available_providers(),
                                                          ort.__version__)
        self.warnings: List[str] = [warning] if warning else []
        if half:
            self.warnings.append(
                "half_precision is ignored for .onnx models (they run in float32); for float16 build a TensorRT "
                "engine (trtexec --fp16, see docs/onnx.md, 'TensorRT')"
            )
        self.half = False
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        if providers[0] == "CPUExecutionProvider":
            # Without the memory pattern the arena reuses activation blocks layer by layer instead of
            # planning one block that holds them all: less memory for a slightly slower forward
            # (measured in docs/benchmarks.md, "Node memory").
            options.enable_mem_pattern = False
        options.log_severity_level = 3  # errors only: the node reports what matters itself
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for every parse failure
            raise OnnxModelError(
                f"{self.path}: not a valid ONNX model ({_first_line(error)}). {HOW_TO_EXPORT}."
            ) from error
        self.providers = self.session.get_providers()
        if providers[0] != "CPUExecutionProvider" and self.providers[0] == "CPUExecutionProvider":
            self.device = "cpu"
            self.warnings.append(
                "onnxruntime could not start its CUDAExecutionProvider (see its log; CUDA or cuDNN libraries "
                "missing?); running on the CPU"
            )
        self.metadata = _session_metadata(self.session, self.path)
        self._input_name, self._output_name = _check_signature(self.session, self.metadata, self.path)
        self.times = StageTimes()
        self._disparity_range = DisparityRange(self.metadata.min_depth, self.metadata.max_depth)

    @property
    def backend(self) -> str:
        return f"onnxruntime ({self.providers[0]})"

    @property
    def input_size(self) -> Tuple[int, int]:
        """(width, height) the network runs at."""
        return self.metadata.input_width, self.metadata.input_height

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 in [0, 1], as DepthEstimator.preprocess computes it."""
        rgb = resize_to_network_input(rgb, *self.input_size)
        planar = np.ascontiguousarray(np.transpose(rgb, (2, 0, 1)))[None]
        return np.divide(planar, np.float32(255.0), dtype=np.float32)

    def disparity(self, image: np.ndarray) -> np.ndarray:
        """(B, 3, h, w) float32 -> sigmoid disparity (B, 1, h, w) at the network's full resolution."""
        return self.session.run([self._output_name], {self._input_name: image})[0]

    def disparity_to_metric_depth(
        self, disparity: np.ndarray, height: int, width: int, extra_scale: float = 1.0
    ) -> np.ndarray:
        """disparity (1, 1, h, w) -> (height, width) float32 metres, as DepthEstimator computes it."""
        # float32 throughout: NumPy rounds the range's constants to the array's dtype.
        scaled = self._disparity_range.sigmoid_to_scaled(np.asarray(disparity, dtype=np.float32)[0, 0])
        return depth_from_scaled_disparity(scaled, height, width, self.metadata.depth_scale * extra_scale)

    def run(self, rgb: np.ndarray, extra_scale: float = 1.0) -> Prediction:
        """(H, W, 3) uint8 RGB -> Prediction: depth (H, W) float32 in metres (or model units if not
        metric) and the network input."""
        start = time.perf_counter()
        image = self.preprocess(rgb)
        after_pre = time.perf_counter()
        disparity = self.disparity(image)
        after_forward = time.perf_counter()
        depth = self.disparity_to_metric_depth(disparity, rgb.shape[0], rgb.shape[1], extra_scale)
        end = time.perf_counter()
        self.times = StageTimes(after_pre - start, after_forward - after_pre, end - after_forward)
        return Prediction(depth, image, self.times)

    def predict(self, rgb: np.ndarray, extra_scale: float = 1.0) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> depth (H, W) float32 in metres (or model units if not metric)."""
        return self.run(rgb, extra_scale).depth


def _session_metadata(session, path: Path) -> ModelMetadata:
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise OnnxModelError(
            f"{path}: ONNX model without mono_depth_ros metadata (metadata_props '{METADATA_KEY}'), so its input "
            f"size, depth range and scale are unknown; it was not written by export_onnx. {HOW_TO_EXPORT}."
        )
    return ModelMetadata.from_json(text, source=str(path))


def _check_signature(session, metadata: ModelMetadata, path: Path) -> Tuple[str, str]:
    """The session's one image input and disparity output must fit the metadata -> their names."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected_in = [3, metadata.input_height, metadata.input_width]
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or list(inputs[0].shape[1:]) != expected_in:
        found = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise OnnxModelError(
            f"{path}: the network's input is {found}, but its metadata says (batch, 3, {metadata.input_height}, "
            f"{metadata.input_width}); the file was edited or its metadata belongs to another model. {HOW_TO_EXPORT}."
        )
    if len(outputs) < 1 or len(outputs[0].shape) != 4 or list(outputs[0].shape[1:]) != [1] + expected_in[1:]:
        found = ", ".join(f"{o.name} {o.shape}" for o in outputs)
        raise OnnxModelError(
            f"{path}: the network's output is {found}, expected a (batch, 1, {metadata.input_height}, "
            f"{metadata.input_width}) disparity. {HOW_TO_EXPORT}."
        )
    return inputs[0].name, outputs[0].name


def read_onnx_metadata(path) -> ModelMetadata:
    """The mono_depth_ros metadata stored in an .onnx file (needs onnxruntime; loads the model)."""
    return OnnxDepthEstimator(path, "cpu", threads=1).metadata
