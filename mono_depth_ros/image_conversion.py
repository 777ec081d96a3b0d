"""sensor_msgs/Image and CompressedImage <-> NumPy without cv_bridge (plain NumPy, no ROS import).

Functions take the message's fields rather than the message, so they are
testable without rclpy and the node stays a thin wrapper.
"""
from __future__ import annotations

from typing import Optional, Tuple

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
    buffer = _byte_array(data)
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


def _byte_array(data) -> np.ndarray:
    """A message's uint8[] (bytes, array('B') from rclpy, a NumPy array from rosbags) -> 1-D uint8 view."""
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "typecode"):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def compressed_image_size(data) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG or JPEG header, without decoding; None when the header says neither.

    Lets a consumer refuse an oversized image before it spends the memory and time to decode it."""
    head = _byte_array(data)[:65536].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(head):  # JPEG segments up to the frame header (SOFn)
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            position += 2
            continue
        length = int.from_bytes(head[position + 2:position + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and position + 9 <= len(head):
            return int.from_bytes(head[position + 7:position + 9], "big"), int.from_bytes(head[position + 5:position + 7], "big")
        position += 2 + length
    return None


def compressed_to_rgb(image_format: str, data) -> np.ndarray:
    """sensor_msgs/CompressedImage (format, data: jpeg or png, 8 or 16 bit, grey, colour or with alpha)
    -> (H, W, 3) uint8 RGB. Raises ImageFormatError saying what is wrong."""
    image_format = str(image_format)
    if "compresseddepth" in image_format.lower():
        raise ImageFormatError(f"'{image_format}' is a compressed depth image, not a camera image")
    buffer = _byte_array(data)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if decoded is None:
        raise ImageFormatError(
            f"cv2.imdecode could not decode {buffer.size} bytes of format '{image_format}' (jpeg or png expected)"
        )
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
