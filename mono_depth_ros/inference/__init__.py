"""Image -> metric depth, the code path shared by the node and offline tools (no ROS import).

Submodules
----------
* :mod:`.backend` -- the :class:`DepthBackend` protocol every backend follows, its
  :class:`Prediction` (depth + the network input the node's odometry reuses) and
  :class:`StageTimes`, and :func:`resize_to_network_input`. **Torch-free to import.**
* :mod:`.torch_backend` -- :class:`DepthEstimator`: a ``.safetensors`` model file run by PyTorch.
* :mod:`.onnx_backend` -- :class:`OnnxDepthEstimator`: an ``.onnx`` file run by onnxruntime.
* :mod:`.loading` -- :func:`load_estimator`: the backend chosen by the file name.

Device strings are parsed by :mod:`mono_depth_ros.devices` (:func:`resolve_device` and
:func:`auto_device` are re-exported here). Every public name of the submodules is available here;
the torch-free ones are imported with the package, the others on first use (PEP 562), so
``import mono_depth_ros.inference.backend`` does not import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_attributes

from ..devices import auto_device, resolve_device
from ..memory import keep_freed_memory_in_process
from .backend import DepthBackend, Prediction, StageTimes, resize_to_network_input

if TYPE_CHECKING:
    from .loading import LoadedEstimator, describe, load_estimator
    from .onnx_backend import (
        EXPORT_INFO_KEY,
        INPUT_NAME,
        ONNX_SUFFIX,
        OUTPUT_NAME,
        OnnxDepthEstimator,
        OnnxModelError,
        import_onnxruntime,
        is_onnx_path,
        read_onnx_metadata,
    )
    from .torch_backend import DepthEstimator, fold_batch_norms

# Names imported on first use: torch_backend imports torch; loading and onnx_backend do not (an .onnx
# model runs without torch), and need not load with the package.
_LAZY_EXPORTS = {
    "DepthEstimator": "torch_backend",
    "fold_batch_norms": "torch_backend",
    "EXPORT_INFO_KEY": "onnx_backend",
    "INPUT_NAME": "onnx_backend",
    "ONNX_SUFFIX": "onnx_backend",
    "OUTPUT_NAME": "onnx_backend",
    "OnnxDepthEstimator": "onnx_backend",
    "OnnxModelError": "onnx_backend",
    "import_onnxruntime": "onnx_backend",
    "is_onnx_path": "onnx_backend",
    "read_onnx_metadata": "onnx_backend",
    "LoadedEstimator": "loading",
    "describe": "loading",
    "load_estimator": "loading",
}


__all__ = [
    "DepthBackend",
    "Prediction",
    "StageTimes",
    "auto_device",
    "keep_freed_memory_in_process",
    "resize_to_network_input",
    "resolve_device",
    *_LAZY_EXPORTS,
]

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY_EXPORTS, __all__)
