"""The network choices a model file's metadata names, and how messages spell them (no torch import).

Model metadata (:mod:`mono_depth_ros.model_file`) is checked against these without building a
network, so a process that only runs ``.onnx`` models never imports torch. The networks that
implement each choice live in :mod:`.encoders`, :mod:`.depth` and :mod:`.pose`.
"""
from __future__ import annotations

SUPPORTED_RESNETS = (18, 34, 50)
ENCODERS = ("resnet", "efficientnet_lite0")
DECODER_UPSAMPLING = ("nearest", "pixel_shuffle")
INTRINSICS_MODES = ("given", "learned", "refine")


def encoder_label(encoder: str, num_layers: int = 18) -> str:
    """Human-readable encoder name for messages: 'ResNet-18', 'EfficientNet-Lite0'."""
    if encoder == "resnet":
        return f"ResNet-{num_layers}"
    return {"efficientnet_lite0": "EfficientNet-Lite0"}.get(encoder, encoder)
