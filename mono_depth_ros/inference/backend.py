"""What every inference backend provides: the :class:`DepthBackend` protocol, its :class:`Prediction`
and :class:`StageTimes`, and the resize both backends apply first. Torch-free (NumPy, OpenCV).

Backends: :class:`~.torch_backend.DepthEstimator` (PyTorch, a ``.safetensors`` model file) and
:class:`~.onnx_backend.OnnxDepthEstimator` (onnxruntime, an ``.onnx`` file from export_onnx);
:func:`~.loading.load_estimator` picks one by the file name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Protocol, Tuple

import cv2
import numpy as np

if TYPE_CHECKING:  # for annotations only
    from ..model_file import ModelMetadata


def resize_to_network_input(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8; INTER_AREA averages when shrinking (no aliasing)."""
    if rgb.shape[1] != width or rgb.shape[0] != height:
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return rgb


@dataclass
class StageTimes:
    """Seconds spent in each stage of a backend's last predict() / run()."""

    preprocess: float = 0.0
    forward: float = 0.0
    upsample: float = 0.0

    def as_dict(self) -> Dict[str, float]:
        return {"preprocess": self.preprocess, "forward": self.forward, "upsample": self.upsample}


@dataclass
class Prediction:
    """One image through a backend: the depth, and the network input it was computed from.

    ``network_input`` is :meth:`DepthBackend.preprocess`'s output, (1, 3, h, w) float RGB in [0, 1]
    (a torch tensor on the device for PyTorch, a NumPy array for onnxruntime): the node's visual
    odometry feeds the same input to the pose network.
    """

    depth: np.ndarray  # (H, W) float32 metres (or model units if not metric)
    network_input: Any
    times: StageTimes = field(default_factory=StageTimes)


class DepthBackend(Protocol):
    """Image -> metric depth at the image's resolution. Depth in metres = network depth * the model's
    depth_scale * ``extra_scale``; the network sees the whole image resized to the model's input size."""

    metadata: ModelMetadata
    half: bool  # runs in float16
    times: StageTimes  # of the latest predict() / run()

    @property
    def input_size(self) -> Tuple[int, int]:
        """(width, height) the network runs at."""

    def preprocess(self, rgb: np.ndarray) -> Any:
        """(H, W, 3) uint8 RGB -> (1, 3, h, w) float in [0, 1], the network's input."""

    def disparity(self, image: Any) -> Any:
        """preprocess() output -> sigmoid disparity (1, 1, h, w) at the network's full resolution."""

    def disparity_to_metric_depth(self, disparity: Any, height: int, width: int,
                                  extra_scale: float = 1.0) -> np.ndarray:
        """disparity (1, 1, h, w) -> (height, width) float32 metres."""

    def run(self, rgb: np.ndarray, extra_scale: float = 1.0) -> Prediction:
        """(H, W, 3) uint8 RGB -> Prediction (depth (H, W) float32, the network input, stage times)."""

    def predict(self, rgb: np.ndarray, extra_scale: float = 1.0) -> np.ndarray:
        """run(rgb, extra_scale).depth."""
