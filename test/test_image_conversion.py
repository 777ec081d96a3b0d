"""Tests of sensor_msgs/Image field decoding/encoding without cv_bridge."""
from __future__ import annotations

import array
import struct

import cv2
import numpy as np
import pytest

from mono_depth_ros.image_conversion import (
    SUPPORTED_ENCODINGS,
    ImageFormatError,
    compressed_image_size,
    compressed_to_rgb,
    depth_to_image_fields,
    image_to_rgb,
    rgb_to_image_fields,
)

# A 2x3 image with distinct colours (R, G, B) per pixel.
RGB = np.array(
    [
        [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
        [[10, 20, 30], [200, 100, 50], [1, 2, 3]],
    ],
    dtype=np.uint8,
)


def message_bytes(rows, step: int) -> bytes:
    """Pack rows (list of per-row byte strings) into step-sized rows padded with 0xEE."""
    return b"".join(row + b"\xee" * (step - len(row)) for row in rows)


def pixel_bytes(order: str) -> list:
    """Rows of RGB in a channel order such as 'bgra' (alpha 77)."""
    index = {"r": 0, "g": 1, "b": 2}
    rows = []
    for row in RGB:
        out = bytearray()
        for pixel in row:
            for channel in order:
                out.append(77 if channel == "a" else int(pixel[index[channel]]))
        rows.append(bytes(out))
    return rows


@pytest.mark.parametrize(
    "encoding, order",
    [("rgb8", "rgb"), ("bgr8", "bgr"), ("rgba8", "rgba"), ("bgra8", "bgra"), ("8UC3", "bgr"), ("8UC4", "bgra")],
)
@pytest.mark.parametrize("padding", [0, 5])
def test_colour_encodings_decode_to_rgb(encoding, order, padding):
    rows = pixel_bytes(order)
    step = len(rows[0]) + padding
    rgb = image_to_rgb(encoding, 2, 3, step, message_bytes(rows, step))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_is_replicated_to_three_channels(encoding):
    grey = np.array([[0, 7, 255], [128, 64, 1]], dtype=np.uint8)
    step = 4
    rgb = image_to_rgb(encoding, 2, 3, step, message_bytes([bytes(r) for r in grey], step))
    np.testing.assert_array_equal(rgb, np.repeat(grey[:, :, None], 3, axis=2))
    assert rgb.flags.c_contiguous


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_16_bit_grey_keeps_high_byte_in_either_byte_order(encoding, big_endian):
    values = np.array([[0x0000, 0x12FF, 0xFF00], [0x8001, 0x00FF, 0xABCD]])
    fmt = ">3H" if big_endian else "<3H"
    step = 3 * 2 + 3  # odd padding: rows are not 2-byte aligned in the buffer
    rows = [struct.pack(fmt, *row) for row in values.tolist()]
    rgb = image_to_rgb(encoding, 2, 3, step, message_bytes(rows, step), is_bigendian=big_endian)
    expected = (values >> 8).astype(np.uint8)
    np.testing.assert_array_equal(rgb, np.repeat(expected[:, :, None], 3, axis=2))


def test_byte_order_flag_matters_for_16_bit():
    data = struct.pack("<2H", 0x1234, 0xABCD)
    little = image_to_rgb("mono16", 1, 2, 4, data, is_bigendian=False)[0, :, 0]
    big = image_to_rgb("mono16", 1, 2, 4, data, is_bigendian=True)[0, :, 0]
    assert little.tolist() == [0x12, 0xAB] and big.tolist() == [0x34, 0xCD]


@pytest.mark.parametrize("container", [bytes, bytearray, lambda b: array.array("B", b), lambda b: np.frombuffer(b, np.uint8)])
def test_message_data_containers(container):
    # rclpy gives uint8[] as array.array('B'); other code may hand bytes or NumPy arrays.
    rows = pixel_bytes("bgr")
    rgb = image_to_rgb("bgr8", 2, 3, 9, container(message_bytes(rows, 9)))
    np.testing.assert_array_equal(rgb, RGB)


def test_extra_trailing_data_is_ignored():
    rows = pixel_bytes("rgb")
    rgb = image_to_rgb("rgb8", 2, 3, 9, message_bytes(rows, 9) + b"\x01" * 11)
    np.testing.assert_array_equal(rgb, RGB)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "encoding, hint",
    [
        ("bayer_rggb8", "debayer it first, e.g. with image_proc"),
        ("bayer_grbg16", "debayer it first"),
        ("32FC1", "this looks like a depth image, not a camera image"),
        ("16SC1", "depth image"),
        ("yuv422", "supported: rgb8, bgr8"),
    ],
)
def test_unsupported_encoding_names_it_with_a_hint(encoding, hint):
    with pytest.raises(ImageFormatError) as caught:
        image_to_rgb(encoding, 2, 2, 8, bytes(16))
    message = str(caught.value)
    assert f"unsupported encoding '{encoding}'" in message and hint in message
    assert all(name in message for name in SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("height, width", [(0, 3), (2, 0), (-1, 3)])
def test_empty_image_is_refused(height, width):
    with pytest.raises(ImageFormatError, match=rf"empty image \({width}x{height}\)"):
        image_to_rgb("rgb8", height, width, 9, bytes(18))


def test_step_too_small_names_the_numbers():
    with pytest.raises(ImageFormatError, match=r"step 8 is smaller than width x bytes per pixel = 3 x 3 = 9"):
        image_to_rgb("rgb8", 2, 3, 8, bytes(18))
    with pytest.raises(ImageFormatError, match=r"step 5 is smaller than width x bytes per pixel = 3 x 2 = 6"):
        image_to_rgb("mono16", 2, 3, 5, bytes(18))


def test_short_data_names_the_numbers():
    with pytest.raises(ImageFormatError, match=r"data has 17 bytes, fewer than step x height = 9 x 2 = 18"):
        image_to_rgb("rgb8", 2, 3, 9, bytes(17))


# --------------------------------------------------------------------------- encoding


def test_depth_fields_are_little_endian_float32_and_round_trip():
    depth = np.array([[0.5, 1.25, np.inf], [-np.inf, np.nan, 80.0]], dtype=np.float64)
    encoding, step, data = depth_to_image_fields(depth)
    assert encoding == "32FC1" and step == 3 * 4
    assert data.dtype == np.uint8 and data.size == 2 * 3 * 4
    raw = data.tobytes()
    assert raw[:8] == struct.pack("<2f", 0.5, 1.25)
    decoded = np.frombuffer(raw, dtype="<f4").reshape(2, 3)
    np.testing.assert_array_equal(decoded, depth.astype(np.float32))


def test_depth_fields_of_non_contiguous_input():
    depth = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]  # (4, 3) view with strides
    encoding, step, data = depth_to_image_fields(depth)
    assert step == 12
    np.testing.assert_array_equal(np.frombuffer(data.tobytes(), "<f4").reshape(4, 3), depth)


def test_rgb_fields_round_trip_through_decoder():
    encoding, step, data = rgb_to_image_fields(RGB)
    assert (encoding, step) == ("rgb8", 9)
    np.testing.assert_array_equal(image_to_rgb(encoding, 2, 3, step, data.tobytes()), RGB)


@pytest.mark.parametrize("extension, channels", [(".png", 3), (".png", 1), (".jpg", 3), (".png", 4)])
def test_compressed_header_size_and_decoding(extension, channels):
    rng = np.random.default_rng(4)
    shape = (37, 53) if channels == 1 else (37, 53, channels)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    ok, encoded = cv2.imencode(extension, image)
    assert ok
    assert compressed_image_size(encoded) == (53, 37)
    rgb = compressed_to_rgb(f"bgr8; {extension[1:]} compressed bgr8", encoded)
    assert rgb.shape == (37, 53, 3) and rgb.dtype == np.uint8
    if extension == ".png":  # lossless: the exact pixels, as RGB
        expected = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}[channels]
        np.testing.assert_array_equal(rgb, cv2.cvtColor(image, expected))


def test_compressed_problems_are_named():
    assert compressed_image_size(b"not an image") is None
    with pytest.raises(ImageFormatError, match="could not decode 12 bytes of format 'jpeg'"):
        compressed_to_rgb("jpeg", np.frombuffer(b"not an image", np.uint8))
    with pytest.raises(ImageFormatError, match="compressed depth image"):
        compressed_to_rgb("16UC1; compressedDepth", np.zeros(4, np.uint8))
