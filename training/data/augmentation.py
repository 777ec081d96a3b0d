"""Photometric and geometric augmentation of training samples: colour jitter and horizontal flips.

Colour jitter changes only the networks' input, never the images the photometric loss compares;
a flip mirrors the images, the intrinsics and the stereo transform together. Weather effects are
in :mod:`.weather`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .config import DataConfig

COLOUR_JITTER_PROBABILITY = 0.5  # Monodepth2 jitters half of the training samples


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def hue_rotation_matrix(hue: float) -> np.ndarray:
    """(3, 3) RGB matrix that turns the hue by `hue` turns (+ = red towards yellow) and keeps luma.

    A rotation of the chroma plane in YIQ: far cheaper than an HSV round trip per pixel and
    what matters for augmentation (a plausible colour-cast change) is the same.
    """
    angle = -2.0 * math.pi * hue
    rotation = np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)], [0.0, math.sin(angle), math.cos(angle)]]
    )
    return np.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ


@dataclass(frozen=True)
class ColourJitter:
    """One set of colour-jitter factors, applied identically to every frame of a sample."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    @staticmethod
    def sample(config: DataConfig, generator: Optional[torch.Generator] = None) -> "ColourJitter":
        def uniform(low: float, high: float) -> float:
            return float(low + (high - low) * torch.rand((), generator=generator))

        return ColourJitter(
            brightness=uniform(max(0.0, 1 - config.brightness), 1 + config.brightness),
            contrast=uniform(max(0.0, 1 - config.contrast), 1 + config.contrast),
            saturation=uniform(max(0.0, 1 - config.saturation), 1 + config.saturation),
            hue=uniform(-config.hue, config.hue),
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, 3, H, W) in [0, 1] -> jittered (N, 3, H, W) in [0, 1]."""
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
        out = (images * self.brightness).clamp(0.0, 1.0)
        grey = (out * weights).sum(dim=1, keepdim=True)
        mean = grey.mean(dim=(2, 3), keepdim=True)
        out = ((out - mean) * self.contrast + mean).clamp(0.0, 1.0)
        grey = (out * weights).sum(dim=1, keepdim=True)
        out = ((out - grey) * self.saturation + grey).clamp(0.0, 1.0)
        if self.hue != 0.0:
            matrix = torch.as_tensor(hue_rotation_matrix(self.hue), dtype=images.dtype)
            out = torch.einsum("ij,njhw->nihw", matrix, out).clamp(0.0, 1.0)
        return out


FLIP_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


def flip_intrinsics(K: torch.Tensor, width: int) -> torch.Tensor:
    """K (3, 3) of an image -> K of its horizontal mirror: cx -> (W - 1) - cx (pixel-centre convention)."""
    flipped = K.clone()
    flipped[0, 2] = (width - 1) - K[0, 2]
    return flipped


def flip_transform(T: torch.Tensor) -> torch.Tensor:
    """T_b_a (4, 4) between two cameras -> the same relation in the mirrored world (x -> -x in both frames).

    For a stereo pair the translation's x flips sign: the mirrored left camera sees what a
    right camera would, so the other camera ends up on its left.
    """
    return FLIP_X @ T @ FLIP_X
