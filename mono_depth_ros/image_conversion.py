"""sensor_msgs/Image <-> NumPy without cv_bridge (plain NumPy, no ROS import).

Functions take the message's fields rather than the message, so they are
testable without rclpy and the node stays a thin wrapper.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

# encoding -> (channels, bytes per channel, index of R, G, B or None for grey)
_COLOUR_LAYOUTS = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "8UC3": (3, 1, (2, 1, 0)),  # OpenCV's default channel order, as cv_bridge treats it
    "8UC4": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, None),
    "8UC1": (1, 1, None),
    "mono16": (1, 2, None),
    "16UC1": (1, 2, None),
}
SUPPORTED_ENCODINGS = tuple(_COLOUR_LAYOUTS)


class ImageFormatError(ValueError):
    """An Image message that cannot be interpreted; the text says what is wrong."""


def image_to_rgb(
    encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False
) -> np.ndarray:
    """Decode image message fields into an RGB array.

    -> (H, W, 3) uint8, C-contiguous. 16-bit grey images keep their 8 most significant bits.
    Raises ImageFormatError naming the problem (unsupported encoding, bad step, short data...).
    """
    layout = _COLOUR_LAYOUTS.get(encoding)
    if layout is None:
        hint = ""
        if encoding.startswith("bayer"):
            hint = " (debayer it first, e.g. with image_proc, and remap image to image_color)"
        elif encoding in ("32FC1", "16SC1", "64FC1"):
            hint = " (this looks like a depth image, not a camera image)"
        raise ImageFormatError(
            f"unsupported encoding '{encoding}'{hint}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    channels, channel_bytes, rgb_index = layout
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"empty image ({width}x{height})")
    row_bytes = width * channels * channel_bytes
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than width x bytes per pixel = {width} x {channels * channel_bytes} = {row_bytes}"
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < step * height:
        raise ImageFormatError(
            f"data has {buffer.size} bytes, fewer than step x height = {step} x {height} = {step * height}"
        )
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    if channel_bytes == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        grey = (np.ascontiguousarray(rows).view(dtype) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    pixels = rows.reshape(height, width, channels)
    if rgb_index is None:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    if rgb_index == (0, 1, 2) and channels == 3:
        return np.ascontiguousarray(pixels)
    # OpenCV's conversions are ~50x faster than NumPy fancy indexing (1 ms -> 0.02 ms at 640x480).
    code = {(3, True): cv2.COLOR_BGR2RGB, (4, True): cv2.COLOR_BGRA2RGB, (4, False): cv2.COLOR_RGBA2RGB}
    return cv2.cvtColor(np.ascontiguousarray(pixels), code[(channels, rgb_index == (2, 1, 0))])


def depth_to_image_fields(depth: np.ndarray) -> Tuple[str, int, np.ndarray]:
    """Depth (H, W) float32 metres -> (encoding '32FC1', step, little-endian bytes as uint8 array)."""
    depth = np.ascontiguousarray(depth, dtype="<f4")
    return "32FC1", depth.shape[1] * 4, depth.reshape(-1).view(np.uint8)


def rgb_to_image_fields(rgb: np.ndarray) -> Tuple[str, int, np.ndarray]:
    """RGB (H, W, 3) uint8 -> (encoding 'rgb8', step, bytes as uint8 array)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return "rgb8", rgb.shape[1] * 3, rgb.reshape(-1)
