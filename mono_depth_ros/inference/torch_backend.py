"""The PyTorch backend: :class:`DepthEstimator` runs a loaded ``.safetensors`` model on RGB images
(batch norms folded, channels_last). On a CPU, onnxruntime runs the same network's ``.onnx`` export as
fast or faster without PyTorch (benchmarks/bench_backends.py)."""
from __future__ import annotations

import copy
import time
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..geometry.disparity import DisparityRange, depth_from_scaled_disparity
from ..model_file import LoadedModel
from .backend import Prediction, StageTimes, resize_to_network_input


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a Conv2d (ResNet blocks, EfficientNet's ConvBN) into
    that conv (eval only)."""
    for name, child in module.named_children():
        fold_batch_norms(child)
    pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv", "bn")]
    for conv_name, bn_name in pairs:
        conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
    downsample = getattr(module, "downsample", None)
    if isinstance(downsample, nn.Sequential) and len(downsample) == 2 and isinstance(downsample[1], nn.BatchNorm2d):
        module.downsample = nn.Sequential(fuse_conv_bn_eval(downsample[0], downsample[1]))
    return module


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
        net.encoder = fold_batch_norms(net.encoder)
        net = net.to(self.device, memory_format=torch.channels_last)
        if self.half:
            net = net.half()
        self.net = net
        self.dtype = torch.float16 if self.half else torch.float32
        self.times = StageTimes()
        self._disparity_range = DisparityRange(self.metadata.min_depth, self.metadata.max_depth)

    @property
    def input_size(self) -> Tuple[int, int]:
        """(width, height) the network runs at."""
        return self.metadata.input_width, self.metadata.input_height

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, 3, h, w) in [0, 1], channels_last, on the device."""
        rgb = resize_to_network_input(rgb, *self.input_size)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        # HWC memory viewed as NCHW is already channels_last: no copy needed.
        tensor = tensor.permute(2, 0, 1).unsqueeze(0)
        return tensor.to(self.dtype).div_(255.0)

    @torch.inference_mode()
    def disparity(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) -> sigmoid disparity (1, 1, h, w) at the network's full resolution
        (a stereo-head network's left-view channel)."""
        return self.net(image, output_scales=(0,))[0]

    @torch.inference_mode()
    def disparity_to_metric_depth(
        self, disparity: torch.Tensor, height: int, width: int, extra_scale: float = 1.0
    ) -> np.ndarray:
        """Upsample disparity to (height, width) and convert -> (height, width) float32 metres.

        disparity: (1, 1, h, w) sigmoid output (not modified).
        """
        # Interpolate in disparity (inverse depth), as Monodepth2 evaluates: depth edges stay sharp.
        # The affine scaling commutes with interpolation, so it runs on the small map, and only that
        # comes to the CPU. OpenCV's float bilinear resize equals F.interpolate(align_corners=False)
        # to 1e-7 (F.interpolate's own float32 coordinates err by up to 4e-5) and is ~4x faster.
        scaled = self._disparity_range.sigmoid_to_scaled(disparity[0, 0].float()).cpu().numpy()
        return depth_from_scaled_disparity(scaled, height, width, self.metadata.depth_scale * extra_scale)

    def run(self, rgb: np.ndarray, extra_scale: float = 1.0) -> Prediction:
        """(H, W, 3) uint8 RGB -> Prediction: depth (H, W) float32 in metres (or model units if not
        metric) and the network input (the node's odometry feeds it to the pose network)."""
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
        return Prediction(depth, image, self.times)

    def predict(self, rgb: np.ndarray, extra_scale: float = 1.0) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> depth (H, W) float32 in metres (or model units if not metric)."""
        return self.run(rgb, extra_scale).depth
