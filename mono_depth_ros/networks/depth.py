"""The depth network: encoder + U-Net decoder (ELU, reflection padding, nearest upsampling, skip
connections) with a sigmoid disparity head at 4 scales, and the decoder's optional extensions
(sub-pixel upsampling, frozen semantic features, a stereo disparity head)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .choices import DECODER_UPSAMPLING
from .encoders import build_encoder
from .layers import ConvELU, PretrainedWeightsUnavailable, ReflectConv3x3

DECODER_CHANNELS = (16, 32, 64, 128, 256)

# Semantic guidance: torchvision's LR-ASPP MobileNetV3-Large (the cheapest of its segmentation
# networks on a CPU), COCO weights with the 21 VOC labels. Its weights expect per-channel
# ImageNet normalisation.
SEMANTIC_NETWORK = "lraspp_mobilenet_v3_large"
SEGMENTATION_MEAN = (0.485, 0.456, 0.406)
SEGMENTATION_STD = (0.229, 0.224, 0.225)


class SemanticWeightsUnavailable(PretrainedWeightsUnavailable):
    """The segmentation network's pretrained weights could not be loaded (usually: offline)."""


class PixelShuffleUpsample(nn.Module):
    """Sub-pixel 2x upsampling (ESPCN): a 3x3 convolution to 4x the channels, then nn.PixelShuffle(2).

    x: (B, C, h, w) -> (B, C, 2h, 2w). Starts out as nearest-neighbour upsampling: each of the 4
    sub-pixel filters is the identity (ICNR-style initialisation, so no checkerboard at the start);
    training then makes the 4 output phases differ.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = ReflectConv3x3(channels, 4 * channels)
        self.shuffle = nn.PixelShuffle(2)
        with torch.no_grad():
            weight = self.conv.conv.weight  # (4C, C, 3, 3); PixelShuffle reads channel 4c + phase for channel c
            weight.zero_()
            source = torch.arange(channels)
            for phase in range(4):
                weight[4 * source + phase, source, 1, 1] = 1.0
            self.conv.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class DepthDecoder(nn.Module):
    """U-Net decoder producing sigmoid disparity.

    features: 5 maps from an encoder (strides 2-32) -> {scale: (B, disparity_channels, H / 2**scale,
    W / 2**scale)} for the requested scales (scale 0 is the input resolution).
    ``upsampling``: "nearest" (Monodepth2) or "pixel_shuffle" (ESPCN sub-pixel convolution).
    ``disparity_channels``: 1, or 2 for a stereo head (left, right disparity of the left image).
    """

    def __init__(self, encoder_channels: Sequence[int], scales: Sequence[int] = (0, 1, 2, 3),
                 upsampling: str = "nearest", disparity_channels: int = 1):
        super().__init__()
        if upsampling not in DECODER_UPSAMPLING:
            raise ValueError(f"upsampling {upsampling!r} is not supported; choose one of {', '.join(DECODER_UPSAMPLING)}")
        self.scales = tuple(scales)
        self.upsampling = upsampling
        self.disparity_channels = int(disparity_channels)
        self.reduce = nn.ModuleList()  # conv before each 2x upsampling, level 4 -> 0
        self.fuse = nn.ModuleList()  # conv after concatenating the skip connection
        for level in range(4, -1, -1):
            in_channels = encoder_channels[-1] if level == 4 else DECODER_CHANNELS[level + 1]
            self.reduce.append(ConvELU(in_channels, DECODER_CHANNELS[level]))
            fuse_in = DECODER_CHANNELS[level] + (encoder_channels[level - 1] if level > 0 else 0)
            self.fuse.append(ConvELU(fuse_in, DECODER_CHANNELS[level]))
        self.disparity_heads = nn.ModuleDict(
            {str(scale): ReflectConv3x3(DECODER_CHANNELS[scale], self.disparity_channels) for scale in self.scales}
        )
        if upsampling == "pixel_shuffle":  # (absent otherwise: the default's weights keep their names)
            self.upsample = nn.ModuleList(PixelShuffleUpsample(DECODER_CHANNELS[level]) for level in range(4, -1, -1))

    def forward(
        self, features: List[torch.Tensor], output_scales: Optional[Sequence[int]] = None
    ) -> Dict[int, torch.Tensor]:
        wanted = self.scales if output_scales is None else tuple(output_scales)
        outputs: Dict[int, torch.Tensor] = {}
        x = features[-1]
        for step, level in enumerate(range(4, -1, -1)):
            x = self.reduce[step](x)
            if self.upsampling == "nearest":
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            else:
                x = self.upsample[step](x)
            if level > 0:
                x = torch.cat([x, features[level - 1]], dim=1)
            x = self.fuse[step](x)
            if level in wanted:
                outputs[level] = torch.sigmoid(self.disparity_heads[str(level)](x))
        return outputs


def _segmentation_backbone(pretrained: bool) -> nn.Module:
    """LR-ASPP MobileNetV3-Large's backbone: image -> {"low": stride 8, 40 ch; "high": stride 16, 960 ch}."""
    from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

    if not pretrained:
        return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).backbone
    weights = LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
    try:
        return lraspp_mobilenet_v3_large(weights=weights).backbone
    except Exception as error:  # download or cache failure: say what to do
        raise SemanticWeightsUnavailable(
            f"could not load the {SEMANTIC_NETWORK} segmentation weights ({error}). They are downloaded by "
            "torchvision on first use: connect to the internet once, or place the file in the torch hub cache "
            "($TORCH_HOME/hub/checkpoints), or train without pretrained weights (model.pretrained: false)."
        ) from error


class SemanticBranch(nn.Module):
    """Frozen segmentation features fused into the depth encoder's pyramid.

    (image (B, 3, H, W) RGB in [0, 1], features: 5 maps at strides 2-32) -> the same 5 maps, with a
    1x1 convolution of the segmentation backbone's stride-8 and stride-16 features added to the
    encoder's maps at those strides. The backbone never trains (no gradients, batch norms keep their
    statistics in train mode too); the 1x1 convolutions start at zero, so a fresh branch leaves the
    encoder's features as they are and training decides how much semantics to mix in.
    """

    def __init__(self, encoder_channels: Sequence[int], pretrained: bool = False):
        super().__init__()
        self.backbone = _segmentation_backbone(pretrained)
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        self.backbone.eval()
        self.fuse_low = nn.Conv2d(40, encoder_channels[2], 1)  # stride 8
        self.fuse_high = nn.Conv2d(960, encoder_channels[3], 1)  # stride 16
        for conv in (self.fuse_low, self.fuse_high):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def train(self, mode: bool = True) -> "SemanticBranch":
        super().train(mode)
        self.backbone.eval()  # frozen: batch norms use their stored statistics
        return self

    def forward(self, image: torch.Tensor, features: List[torch.Tensor]) -> List[torch.Tensor]:
        mean = image.new_tensor(SEGMENTATION_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(SEGMENTATION_STD).view(1, 3, 1, 1)
        with torch.no_grad():
            semantic = self.backbone((image - mean) / std)
        fused = list(features)
        for index, conv, name in ((2, self.fuse_low, "low"), (3, self.fuse_high, "high")):
            extra = conv(semantic[name])
            if extra.shape[-2:] != fused[index].shape[-2:]:  # sizes that are not multiples of 32
                extra = F.interpolate(extra, size=fused[index].shape[-2:], mode="nearest")
            fused[index] = fused[index] + extra
        return fused


class DepthNet(nn.Module):
    """Encoder + decoder. image (B, 3, H, W) RGB in [0, 1] -> {scale: sigmoid disparity (B, 1, h, w)}.

    ``encoder``: one of ENCODERS; ``num_layers`` is the ResNet depth (unused by other encoders).
    ``upsampling``: decoder upsampling, one of DECODER_UPSAMPLING. ``semantic``: fuse frozen segmentation
    features (SemanticBranch; its weights pretrained when ``semantic_pretrained``, default ``pretrained``).
    ``stereo_head``: the decoder predicts (left, right) disparities from the left image (Monodepth v1);
    forward returns the left one unless ``both_views`` asks for both channels.
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, scales: Sequence[int] = (0, 1, 2, 3),
                 encoder: str = "resnet", upsampling: str = "nearest", semantic: bool = False,
                 stereo_head: bool = False, semantic_pretrained: Optional[bool] = None):
        super().__init__()
        self.encoder = build_encoder(encoder, num_layers, pretrained)
        self.decoder = DepthDecoder(self.encoder.num_channels, scales, upsampling, 2 if stereo_head else 1)
        self.stereo_head = bool(stereo_head)
        if semantic:  # built last: the default network's initialisation draws the same random numbers
            self.semantic = SemanticBranch(
                self.encoder.num_channels, pretrained if semantic_pretrained is None else semantic_pretrained
            )
        else:
            self.semantic = None

    @property
    def is_default_architecture(self) -> bool:
        """Monodepth2's decoder on a plain encoder (what inference's fast CPU path and importers assume)."""
        return self.decoder.upsampling == "nearest" and self.semantic is None and not self.stereo_head

    def forward(
        self, image: torch.Tensor, output_scales: Optional[Sequence[int]] = None, both_views: bool = False
    ) -> Dict[int, torch.Tensor]:
        features = self.encoder(image)
        if self.semantic is not None:
            features = self.semantic(image, features)
        outputs = self.decoder(features, output_scales)
        if both_views:
            if not self.stereo_head:
                raise ValueError("both_views needs a network built with stereo_head=True")
            return outputs
        if self.stereo_head:
            return {scale: value[:, :1] for scale, value in outputs.items()}
        return outputs
