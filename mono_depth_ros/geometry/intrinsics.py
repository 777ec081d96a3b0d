"""Intrinsics of a resized image, on NumPy arrays or PyTorch tensors (torch-free to import).

Conventions are those of :mod:`mono_depth_ros.geometry` (pixel centres at integer coordinates,
``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels). The node turns camera_info's K into the K
of a binned image with it (NumPy, no torch); the trainer scales batches of K tensors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import torch


def scale_intrinsics(K: Union["torch.Tensor", np.ndarray], scale_x: float,
                     scale_y: float) -> Union["torch.Tensor", np.ndarray]:
    """Intrinsics of an image resized by (scale_x, scale_y), pixel-centre exact.

    Args:
        K: (..., 3, 3) intrinsics of the original image, pixels: a tensor, or a NumPy array.
        scale_x, scale_y: new width / old width and new height / old height.

    Returns:
        (..., 3, 3) intrinsics of the resized image, pixels: a new tensor for a tensor, a new
        float64 NumPy array otherwise (K is not modified).

    A resize maps pixel-centre coordinates as ``u' + 0.5 = (u + 0.5) * scale``, so the
    principal point moves by half a pixel as well as scaling (this matters for
    non-centred principal points and for large scale changes).
    """
    scaled = K.clone() if hasattr(K, "clone") else np.array(K, dtype=np.float64)
    scaled[..., 0, 0] = K[..., 0, 0] * scale_x
    scaled[..., 0, 1] = K[..., 0, 1] * scale_x
    scaled[..., 1, 1] = K[..., 1, 1] * scale_y
    scaled[..., 0, 2] = (K[..., 0, 2] + 0.5) * scale_x - 0.5
    scaled[..., 1, 2] = (K[..., 1, 2] + 0.5) * scale_y - 0.5
    return scaled
