"""Pick the inference backend by the model file's name and load it: ``.onnx`` through onnxruntime
(:class:`~.onnx_backend.OnnxDepthEstimator`), anything else as a ``.safetensors`` model file run by
PyTorch (:class:`~.torch_backend.DepthEstimator`, imported only then: an ``.onnx`` model runs
without torch installed)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

from ..devices import auto_device
from ..memory import release_freed_memory
from ..model_file import ModelFileError, ModelMetadata
from .backend import DepthBackend
from .onnx_backend import HOW_TO_EXPORT, OnnxDepthEstimator, is_onnx_path


@dataclass
class LoadedEstimator:
    """An estimator ready to run, and what to tell the user about it."""

    estimator: DepthBackend  # DepthEstimator or OnnxDepthEstimator
    metadata: ModelMetadata
    path: Path
    backend: str  # "PyTorch" or "onnxruntime (CPUExecutionProvider)", ...
    device: str  # where the network runs: "cpu", "cuda:0"
    warnings: List[str] = field(default_factory=list)
    model: Optional[object] = None  # the model_file.LoadedModel of a .safetensors file (its pose_net too); None for .onnx


def load_estimator(path: Union[str, Path], device: str = "cuda", half: bool = False,
                   threads: Optional[int] = None) -> LoadedEstimator:
    """Load a model file for inference, choosing the backend by its extension.

    ``.onnx``: onnxruntime (CUDAExecutionProvider when ``device`` asks for CUDA and onnxruntime
    has it, else the CPU); anything else: a ``.safetensors`` model file run by PyTorch.
    ``device``: 'cuda', 'cuda:N', 'cpu', or '' for CUDA when available. Raises ModelFileError
    (with what to do) for missing or bad files, ValueError for a device it does not understand.
    ``threads`` sets onnxruntime's thread count (PyTorch's is process-wide: torch.set_num_threads).
    """
    path = Path(path)
    if is_onnx_path(path):
        onnx_estimator = OnnxDepthEstimator(path, device, half, threads)
        release_freed_memory()  # what reading the file and building the session freed
        return LoadedEstimator(onnx_estimator, onnx_estimator.metadata, path, onnx_estimator.backend,
                               onnx_estimator.device, list(onnx_estimator.warnings))
    try:
        import torch  # noqa: F401  (imported here to say what to do when it is missing)
    except ImportError as error:
        raise ModelFileError(
            f"{path}: .safetensors models run through PyTorch, which cannot be imported ({error}). Install it "
            f"(`pip install torch`), or run the model's .onnx export through onnxruntime, which needs no PyTorch. "
            f"{HOW_TO_EXPORT}, on a machine with PyTorch."
        ) from error
    from ..model_file import load_model_file
    from .torch_backend import DepthEstimator

    torch_device, warning = auto_device(device)
    model = load_model_file(path, device="cpu")
    estimator = DepthEstimator(model, torch_device, half=half)
    release_freed_memory()  # the file's bytes, read in one piece and copied into the network
    return LoadedEstimator(estimator, model.metadata, model.path, "PyTorch", str(torch_device),
                           [warning] if warning else [], model)


def describe(loaded: LoadedEstimator) -> str:
    """'PyTorch on cpu', 'onnxruntime (CUDAExecutionProvider) on cuda:0' (+ ' in float16')."""
    half = getattr(loaded.estimator, "half", False)
    return f"{loaded.backend} on {loaded.device}" + (" in float16" if half else "")
