"""Feature-pyramid encoders: ResNet-18/34/50 (Monodepth2's, ImageNet weights from torchvision) and
the choice between it and EfficientNet-Lite0 (:func:`build_encoder`)."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn
import torchvision

from .choices import ENCODERS, SUPPORTED_RESNETS, encoder_label
from .efficientnet_lite0 import EfficientNetLite0Encoder
from .layers import PretrainedWeightsUnavailable, stacked_frame_filters

# ImageNet statistics as Monodepth2 approximates them; inputs are RGB in [0, 1].
IMAGENET_MEAN = 0.45
IMAGENET_STD = 0.225


def _build_resnet(num_layers: int, pretrained: bool) -> torchvision.models.ResNet:
    if num_layers not in SUPPORTED_RESNETS:
        raise ValueError(
            f"ResNet-{num_layers} is not supported; choose one of {SUPPORTED_RESNETS}"
        )
    builder = getattr(torchvision.models, f"resnet{num_layers}")
    if not pretrained:
        return builder(weights=None)
    weights = getattr(torchvision.models, f"ResNet{num_layers}_Weights").IMAGENET1K_V1
    try:
        return builder(weights=weights)
    except Exception as error:  # download or cache failure: say what to do
        raise PretrainedWeightsUnavailable(
            f"could not load ImageNet weights for ResNet-{num_layers} ({error}). "
            "They are downloaded by torchvision on first use: connect to the internet once, "
            "or place the file in the torch hub cache ($TORCH_HOME/hub/checkpoints), "
            "or train without pretrained weights (pretrained: false)."
        ) from error


class ResnetEncoder(nn.Module):
    """ResNet feature pyramid.

    image: (B, 3 * num_input_images, H, W) RGB in [0, 1]
    -> 5 feature maps at strides 2, 4, 8, 16, 32 with ``num_channels`` channels.
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, num_input_images: int = 1):
        super().__init__()
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        self.resnet = _build_resnet(num_layers, pretrained)
        del self.resnet.fc  # classification head is never used
        if num_input_images > 1:
            conv1 = self.resnet.conv1
            stacked = nn.Conv2d(
                3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False
            )
            with torch.no_grad():
                stacked.weight.copy_(stacked_frame_filters(conv1.weight, num_input_images))
            self.resnet.conv1 = stacked
        expansion = 4 if num_layers >= 50 else 1
        self.num_channels: Tuple[int, ...] = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        net = self.resnet
        x = (image - IMAGENET_MEAN) / IMAGENET_STD
        stride2 = net.relu(net.bn1(net.conv1(x)))
        stride4 = net.layer1(net.maxpool(stride2))
        stride8 = net.layer2(stride4)
        stride16 = net.layer3(stride8)
        stride32 = net.layer4(stride16)
        return [stride2, stride4, stride8, stride16, stride32]


def build_encoder(encoder: str = "resnet", num_layers: int = 18, pretrained: bool = False,
                  num_input_images: int = 1) -> nn.Module:
    """The feature-pyramid encoder called ``encoder`` (see ENCODERS); ``num_layers`` is the ResNet depth."""
    if encoder == "resnet":
        return ResnetEncoder(num_layers, pretrained, num_input_images)
    if encoder == "efficientnet_lite0":
        return EfficientNetLite0Encoder(pretrained, num_input_images)
    raise ValueError(f"encoder {encoder!r} is not supported; choose one of {', '.join(ENCODERS)}")
