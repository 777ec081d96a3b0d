"""Depth and pose networks (Monodepth2 architecture, plain PyTorch, no ROS).

DepthNet: ResNet encoder + U-Net decoder (ELU, reflection padding, nearest
upsampling, skip connections) with a sigmoid disparity head at 4 scales.
PoseNet: ResNet encoder on a pair of frames (6 input channels) + a small
convolutional decoder giving axis-angle and translation.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# ImageNet statistics as Monodepth2 approximates them; inputs are RGB in [0, 1].
IMAGENET_MEAN = 0.45
IMAGENET_STD = 0.225

SUPPORTED_RESNETS = (18, 34, 50)
DECODER_CHANNELS = (16, 32, 64, 128, 256)


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be loaded (usually: offline)."""


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
                # Spread the (pretrained or random) RGB filters over the stacked frames so
                # the response to a static pair equals the single-image response.
                stacked.weight.copy_(conv1.weight.repeat(1, num_input_images, 1, 1) / num_input_images)
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


class ReflectConv3x3(nn.Module):
    """3x3 convolution after one pixel of reflection padding (no border artefacts)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


def elu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """ELU (alpha 1). On the CPU, torch's ELU goes through expm1, which is not vectorised
    and costs ~8x more than exp; exp(x) - 1 differs from it by < 1e-7 here.

    ``inplace`` lets the result overwrite ``x`` when no gradient is recorded (callers that own
    ``x``, such as :class:`ConvELU`); by default ``x`` is never modified, like F.elu.
    """
    overwrite = inplace and not torch.is_grad_enabled()
    if x.is_cuda:
        return F.elu(x, inplace=overwrite)
    if not torch.is_grad_enabled():
        negative = torch.clamp(x, max=0.0).exp_().sub_(1.0)
        positive = x.clamp_(min=0.0) if overwrite else torch.clamp(x, min=0.0)
        return positive.add_(negative)
    positive = x > 0
    # where() rather than clamp(max=0): clamp's gradient is 0 at x == 0, ELU's is 1.
    negative = torch.where(positive, torch.zeros_like(x), x)
    return torch.where(positive, x, torch.exp(negative) - 1.0)


class ConvELU(nn.Module):
    """ReflectConv3x3 followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ReflectConv3x3(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elu(self.conv(x), inplace=True)  # the conv output is ours to overwrite


class DepthDecoder(nn.Module):
    """U-Net decoder producing sigmoid disparity.

    features: 5 maps from :class:`ResnetEncoder` -> {scale: (B, 1, H / 2**scale, W / 2**scale)}
    for the requested scales (scale 0 is the input resolution).
    """

    def __init__(self, encoder_channels: Sequence[int], scales: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        self.scales = tuple(scales)
        self.reduce = nn.ModuleList()  # conv before each 2x upsampling, level 4 -> 0
        self.fuse = nn.ModuleList()  # conv after concatenating the skip connection
        for level in range(4, -1, -1):
            in_channels = encoder_channels[-1] if level == 4 else DECODER_CHANNELS[level + 1]
            self.reduce.append(ConvELU(in_channels, DECODER_CHANNELS[level]))
            fuse_in = DECODER_CHANNELS[level] + (encoder_channels[level - 1] if level > 0 else 0)
            self.fuse.append(ConvELU(fuse_in, DECODER_CHANNELS[level]))
        self.disparity_heads = nn.ModuleDict(
            {str(scale): ReflectConv3x3(DECODER_CHANNELS[scale], 1) for scale in self.scales}
        )

    def forward(
        self, features: List[torch.Tensor], output_scales: Optional[Sequence[int]] = None
    ) -> Dict[int, torch.Tensor]:
        wanted = self.scales if output_scales is None else tuple(output_scales)
        outputs: Dict[int, torch.Tensor] = {}
        x = features[-1]
        for step, level in enumerate(range(4, -1, -1)):
            x = self.reduce[step](x)
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            if level > 0:
                x = torch.cat([x, features[level - 1]], dim=1)
            x = self.fuse[step](x)
            if level in wanted:
                outputs[level] = torch.sigmoid(self.disparity_heads[str(level)](x))
        return outputs


class DepthNet(nn.Module):
    """Encoder + decoder. image (B, 3, H, W) RGB in [0, 1] -> {scale: sigmoid disparity}."""

    def __init__(self, num_layers: int = 18, pretrained: bool = False, scales: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, pretrained)
        self.decoder = DepthDecoder(self.encoder.num_channels, scales)

    def forward(
        self, image: torch.Tensor, output_scales: Optional[Sequence[int]] = None
    ) -> Dict[int, torch.Tensor]:
        return self.decoder(self.encoder(image), output_scales)


class PoseDecoder(nn.Module):
    """Relative pose from the bottleneck features of a frame pair.

    features: (B, C, h, w) -> (axis_angle (B, 3), translation (B, 3)).
    """

    def __init__(self, encoder_channels: int):
        super().__init__()
        self.squeeze = nn.Conv2d(encoder_channels, 256, 1)
        self.conv1 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 256, 3, padding=1)
        self.head = nn.Conv2d(256, 6, 1)

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.squeeze(features))
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        # Small output scale keeps initial poses near identity, which stabilises early training.
        pose = 0.01 * self.head(x).mean(dim=(2, 3))
        return pose[:, :3], pose[:, 3:]


class PoseNet(nn.Module):
    """Pose of the later frame relative to the earlier one.

    (earlier, later): (B, 3, H, W) each, RGB in [0, 1] -> (axis_angle (B, 3), translation (B, 3))
    describing ``T_later_earlier``: it maps points from the earlier camera frame into the
    later one, so for a camera moving forward (+z) the translation is about (0, 0, -speed * dt).
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, pretrained, num_input_images=2)
        self.decoder = PoseDecoder(self.encoder.num_channels[-1])

    def forward(self, earlier: torch.Tensor, later: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder(torch.cat([earlier, later], dim=1))[-1])
