"""Image -> metric depth, the code path shared by the node and offline tools (no ROS import)."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .model_file import LoadedModel

_LOG = logging.getLogger(__name__)


def resolve_device(requested: str) -> Tuple[torch.device, Optional[str]]:
    """Turn the ``device`` parameter into a torch device.

    -> (device, warning or None). 'cuda' / 'cuda:N' fall back to the CPU with a warning
    when CUDA is unavailable; anything else that is not 'cpu' raises ValueError.
    """
    text = requested.strip().lower()
    if text == "cpu":
        return torch.device("cpu"), None
    if text == "cuda" or text.startswith("cuda:"):
        try:
            device = torch.device(text)
        except RuntimeError as error:
            raise ValueError(f"device '{requested}' is not a valid device ({error})") from error
        if not torch.cuda.is_available():
            return torch.device("cpu"), (
                f"device '{requested}' requested but CUDA is not available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); running on the CPU, "
                "which is much slower. Set device:=cpu to silence this warning."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            return torch.device("cuda:0"), (
                f"device '{requested}' does not exist ({torch.cuda.device_count()} GPU(s)); using cuda:0"
            )
        return device, None
    raise ValueError(f"device '{requested}' is not understood; use 'cuda', 'cuda:N' or 'cpu'")


def _fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a Conv2d in a ResNet into that conv (eval only)."""
    for name, child in module.named_children():
        _fold_batch_norms(child)
    pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]
    for conv_name, bn_name in pairs:
        conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
    downsample = getattr(module, "downsample", None)
    if isinstance(downsample, nn.Sequential) and len(downsample) == 2 and isinstance(downsample[1], nn.BatchNorm2d):
        module.downsample = nn.Sequential(fuse_conv_bn_eval(downsample[0], downsample[1]))
    return module


@dataclass
class StageTimes:
    """Seconds spent in each stage of the last :meth:`DepthEstimator.predict`."""

    preprocess: float = 0.0
    forward: float = 0.0
    upsample: float = 0.0

    def as_dict(self) -> Dict[str, float]:
        return {"preprocess": self.preprocess, "forward": self.forward, "upsample": self.upsample}


class DepthEstimator:
    """Runs a loaded model on RGB images and returns metric depth at the image's resolution.

    Depth in metres = network depth * model depth_scale * ``extra_scale`` (for non-metric models,
    the user's scale factor). The network sees the whole image resized to the model's input size.
    """

    def __init__(self, model: LoadedModel, device: torch.device, half: bool = False):
        self.metadata = model.metadata
        self.device = torch.device(device)
        self.half = bool(half) and self.device.type == "cuda"
        net = copy.deepcopy(model.depth_net).eval()
        net.encoder.resnet = _fold_batch_norms(net.encoder.resnet)
        net = net.to(self.device, memory_format=torch.channels_last)
        if self.half:
            net = net.half()
        self.net = net
        self.dtype = torch.float16 if self.half else torch.float32
        self.times = StageTimes()
        min_depth, max_depth = self.metadata.min_depth, self.metadata.max_depth
        self._min_disparity = 1.0 / max_depth
        self._disparity_span = 1.0 / min_depth - 1.0 / max_depth

    @property
    def input_size(self) -> Tuple[int, int]:
        """(width, height) the network runs at."""
        return self.metadata.input_width, self.metadata.input_height

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, 3, h, w) in [0, 1], channels_last, on the device."""
        width, height = self.input_size
        if rgb.shape[1] != width or rgb.shape[0] != height:
            # INTER_AREA averages when shrinking (no aliasing); uint8 resize is cheap.
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        # HWC memory viewed as NCHW is already channels_last: no copy needed.
        tensor = tensor.permute(2, 0, 1).unsqueeze(0)
        return tensor.to(self.dtype).div_(255.0)

    @torch.inference_mode()
    def disparity(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) -> sigmoid disparity (1, 1, h, w) at the network's full resolution."""
        return self.net(image, output_scales=(0,))[0]

    @torch.inference_mode()
    def disparity_to_metric_depth(
        self, disparity: torch.Tensor, height: int, width: int, extra_scale: float = 1.0
    ) -> np.ndarray:
        """Upsample disparity to (height, width) and convert -> (height, width) float32 metres."""
        disparity = disparity.float()
        if disparity.shape[-2:] != (height, width):
            # Interpolate in disparity (inverse depth), as Monodepth2 evaluates: depth edges stay sharp.
            disparity = F.interpolate(disparity, size=(height, width), mode="bilinear", align_corners=False)
        scaled = disparity.mul_(self._disparity_span).add_(self._min_disparity)
        depth = scaled.reciprocal_().mul_(self.metadata.depth_scale * extra_scale)
        return depth[0, 0].cpu().numpy()

    def predict(self, rgb: np.ndarray, extra_scale: float = 1.0) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> depth (H, W) float32 in metres (or model units if not metric)."""
        start = time.perf_counter()
        image = self.preprocess(rgb)
        after_pre = time.perf_counter()
        disparity = self.disparity(image)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        after_forward = time.perf_counter()
        depth = self.disparity_to_metric_depth(disparity, rgb.shape[0], rgb.shape[1], extra_scale)
        end = time.perf_counter()
        self.times = StageTimes(after_pre - start, after_forward - after_pre, end - after_forward)
        return depth
