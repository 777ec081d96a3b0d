"""Disparity <-> depth: the depth network's output, inverse depth and depth. Torch-free.

Three quantities, as in Monodepth2:

* sigmoid disparity ``s`` in [0, 1]: what the depth network outputs;
* scaled disparity ``d = 1 / max_depth + (1 / min_depth - 1 / max_depth) * s``, inverse depth in
  1 / model units, in [1 / max_depth, 1 / min_depth];
* depth ``z = 1 / d`` in [min_depth, max_depth], model units along the optical axis (metres for
  a metric model; metres = model units * the model's depth_scale).

The mappings use arithmetic operators only, so they take torch tensors (keeping autograd),
NumPy arrays or Python floats alike; this module imports NumPy and OpenCV, never torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class DisparityRange:
    """The depth network's range [min_depth, max_depth] (model units) and the sigmoid <-> scaled
    disparity mapping it fixes.

    ``min_disparity = 1 / max_depth``, ``max_disparity = 1 / min_depth`` and
    ``span = max_disparity - min_disparity`` are computed once, at construction.
    """

    min_depth: float
    max_depth: float
    min_disparity: float = field(init=False, repr=False)
    max_disparity: float = field(init=False, repr=False)
    span: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        min_disparity = 1.0 / self.max_depth
        max_disparity = 1.0 / self.min_depth
        object.__setattr__(self, "min_disparity", min_disparity)
        object.__setattr__(self, "max_disparity", max_disparity)
        object.__setattr__(self, "span", max_disparity - min_disparity)

    def sigmoid_to_scaled(self, sigmoid):
        """Sigmoid disparity in [0, 1] (tensor, array or float, any shape) -> scaled disparity
        (inverse depth, 1 / model units) of the same shape and type: ``min_disparity + span * s``.

        For a float32 tensor or array the result is float32 (the constants are rounded to it).
        """
        return self.min_disparity + self.span * sigmoid

    def scaled_to_sigmoid(self, scaled):
        """Scaled disparity (inverse depth, 1 / model units; tensor, array or float, any shape) ->
        sigmoid disparity of the same shape: ``(d - min_disparity) / span``, in [0, 1] for depths
        inside the range."""
        return (scaled - self.min_disparity) / self.span


def disparity_to_depth(disparity, min_depth: float, max_depth: float):
    """Map the network's sigmoid output to inverse depth and depth.

    Args:
        disparity: (B, 1, H, W) sigmoid disparity in [0, 1] (tensor or array; any shape works).
        min_depth, max_depth: the network's depth range, model units (metres for metric models).

    Returns:
        (scaled_disparity, depth), both shaped like disparity: scaled disparity in
        [1 / max_depth, 1 / min_depth] (1 / model units) and depth = 1 / scaled disparity in
        [min_depth, max_depth] (model units, along the optical axis).
    """
    scaled_disparity = DisparityRange(min_depth, max_depth).sigmoid_to_scaled(disparity)
    return scaled_disparity, 1.0 / scaled_disparity


def depth_to_disparity(depth, min_depth: float, max_depth: float):
    """Inverse of :func:`disparity_to_depth`.

    Args:
        depth: (B, 1, H, W) depth along the optical axis, model units (tensor or array; any shape).
        min_depth, max_depth: the network's depth range, model units.

    Returns:
        sigmoid-space disparity shaped like depth; in [0, 1] for depths in [min_depth, max_depth].
    """
    return DisparityRange(min_depth, max_depth).scaled_to_sigmoid(1.0 / depth)


def depth_from_scaled_disparity(scaled: np.ndarray, height: int, width: int, scale: float) -> np.ndarray:
    """Upsample a scaled-disparity map and turn it into depth.

    Args:
        scaled: (h, w) float32 scaled disparity (inverse depth, 1 / model units), e.g. from
            :meth:`DisparityRange.sigmoid_to_scaled`; may be overwritten.
        height, width: output size in pixels.
        scale: metres per model unit (the model's depth_scale times any extra factor).

    Returns:
        (height, width) float32 depth = scale / disparity (metres), upsampled bilinearly in
        disparity (OpenCV, pixel-centre aligned) so depth edges stay sharp.
    """
    if scaled.shape != (height, width):
        scaled = cv2.resize(scaled, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.divide(np.float32(scale), scaled, out=scaled)
