"""depth_node's outputs over real DDS: the depth image (values, out-of-range marks, header), the point
cloud, the coloured depth, every accepted image encoding, a 12-megapixel frame, and the depth clip's old
parameter names given at start-up.

The node process, the test-side ROS node and the message helpers are in test/node_harness.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from node_harness import (  # noqa: E402  (test/ is on sys.path)
    MAIN_SCALE, OUTPUTS, check_cloud_layout, check_depth_message, check_points_project_to_their_pixels, clip_range,
    depth_array, image_msg, info_msg, main_parameters, next_stamp, reference_depth, ros_session, same_stamp, scene,
    small_estimator, started_node,
)


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


@pytest.fixture(scope="module")
def estimator(small_model_path):
    return small_estimator(small_model_path)


@pytest.fixture(scope="module")
def main_range(estimator):
    """(min_depth, max_depth) that cut off the nearest and farthest ~20 % of the 640x480 scene."""
    return clip_range(estimator)


@pytest.fixture(scope="module")
def main_node(ros, small_model_path, main_range, tmp_path_factory):
    """One node for this module's tests (min/max depth set to cut some pixels)."""
    log_path = tmp_path_factory.mktemp("dds") / "main_node.log"
    with started_node(ros, log_path, "/dds_outputs", main_parameters(small_model_path, main_range)) as node:
        yield node


@pytest.mark.parametrize("width, height", [(640, 480), (333, 251)])
def test_depth_matches_in_process_inference_and_marks_out_of_range(
    main_node, estimator, main_range, width, height
):
    bgr = scene(width, height, seed=width)
    stamp = next_stamp()
    image = image_msg(bgr, stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, "camera_optical_frame"), ("depth",))
    depth = check_depth_message(outputs["depth"], image)

    expected = reference_depth(estimator, bgr, MAIN_SCALE)
    min_depth, max_depth = main_range
    finite = np.isfinite(depth)
    # REP 118: every value is finite inside [min, max], or -inf (too close) / +inf (too far).
    assert not np.isnan(depth).any()
    assert np.all((depth[finite] >= min_depth) & (depth[finite] <= max_depth))
    # Pixels clearly inside / outside the range (1e-4 away from a limit) must be exactly classified.
    margin = 1e-4
    inside = (expected > min_depth * (1 + margin)) & (expected < max_depth * (1 - margin))
    too_close = expected < min_depth * (1 - margin)
    too_far = expected > max_depth * (1 + margin)
    assert np.all(depth[too_close] == -np.inf)
    assert np.all(depth[too_far] == np.inf)
    assert np.all(finite[inside])
    np.testing.assert_allclose(depth[inside], expected[inside], rtol=1e-4)
    if (width, height) == (640, 480):  # the range was cut from this image's percentiles
        assert too_close.mean() > 0.1 and too_far.mean() > 0.1 and inside.mean() > 0.5


def test_frame_id_follows_each_image(main_node):
    """Outputs carry the header of their own input, also when the camera's frame changes between images."""
    width, height = 160, 120
    bgr = scene(width, height)
    for frame_id in ("camera_a_optical_frame", "camera_b_optical_frame", "camera_a_optical_frame"):
        stamp = next_stamp()
        image = image_msg(bgr, stamp, frame_id)
        outputs = main_node.exchange(image, info_msg(width, height, stamp, frame_id))
        for name in OUTPUTS:
            assert outputs[name].header.frame_id == frame_id, name
            assert same_stamp(outputs[name].header.stamp, stamp), name


def test_points_project_back_onto_their_pixels(main_node):
    width, height = 333, 251
    bgr = scene(width, height, seed=3)
    stamp = next_stamp()
    image = image_msg(bgr, stamp, "camera_optical_frame")
    info = info_msg(width, height, stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info, ("depth", "points"))
    depth = check_depth_message(outputs["depth"], image)
    check_cloud_layout(outputs["points"], image, height, width)
    check_points_project_to_their_pixels(outputs["points"], depth, bgr, info.k, stride=1)


def test_points_stride_subsamples_pixels(main_node):
    width, height = 333, 251
    bgr = scene(width, height, seed=4)
    results = main_node.set_parameters({"points_stride": 4})
    assert results[0].successful, results[0].reason
    try:
        stamp = next_stamp()
        image = image_msg(bgr, stamp, "camera_optical_frame")
        info = info_msg(width, height, stamp, "camera_optical_frame")
        outputs = main_node.exchange(image, info, ("depth", "points"))
        depth = check_depth_message(outputs["depth"], image)
        check_cloud_layout(outputs["points"], image, math.ceil(height / 4), math.ceil(width / 4))
        check_points_project_to_their_pixels(outputs["points"], depth, bgr, info.k, stride=4)
    finally:
        main_node.set_parameters({"points_stride": 1})


def test_colored_depth_is_a_bgr8_image_of_the_input_size(main_node):
    width, height = 333, 251
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, "camera_optical_frame"), ("depth", "depth_colored"))
    colored = outputs["depth_colored"]
    assert colored.encoding == "bgr8"
    assert (colored.width, colored.height, colored.step) == (width, height, 3 * width)
    assert len(colored.data) == 3 * width * height
    pixels = np.frombuffer(colored.data, np.uint8).reshape(height, width, 3)
    invalid = ~np.isfinite(depth_array(outputs["depth"]))
    assert np.all(pixels[invalid] == 0)  # out-of-range depth is black
    assert pixels[~invalid].any()


def test_very_large_image_is_processed(main_node):
    """A 12-megapixel frame (36 MB in, 48 MB depth, 192 MB cloud) goes through without crashing the node."""
    width, height = 4000, 3000
    bgr = np.ascontiguousarray(np.broadcast_to(scene(400, 300, seed=6)[:, None, :, None, :], (300, 10, 400, 10, 3)))
    bgr = bgr.reshape(height, width, 3)
    stamp = next_stamp()
    image = image_msg(bgr, stamp, "camera_optical_frame")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, "camera_optical_frame"), timeout=180)
    depth = check_depth_message(outputs["depth"], image)
    check_cloud_layout(outputs["points"], image, height, width)
    assert np.isfinite(depth).any()
    main_node.clear()


def encoded_image(bgr: np.ndarray, encoding: str, big_endian: bool, padding: int, stamp: Time):
    """Encode a BGR scene as ``encoding`` -> (Image message, the RGB the node must see), built independently
    of mono_depth_ros.image_conversion."""
    height, width = bgr.shape[:2]
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    alpha = np.random.default_rng(3).integers(0, 256, (height, width, 1), dtype=np.uint8)  # must be ignored
    grey = bgr[:, :, 1]
    grey16 = grey.astype(np.uint16) * 256 + np.random.default_rng(4).integers(0, 256, (height, width), dtype=np.uint16)
    pixels = {
        "rgb8": rgb, "bgr8": bgr, "8UC3": bgr,
        "rgba8": np.concatenate([rgb, alpha], axis=2), "bgra8": np.concatenate([bgr, alpha], axis=2),
        "8UC4": np.concatenate([bgr, alpha], axis=2),
        "mono8": grey, "8UC1": grey,
        "mono16": grey16.astype(">u2" if big_endian else "<u2"), "16UC1": grey16.astype(">u2" if big_endian else "<u2"),
    }[encoding]
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    rows = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)  # step > width x bpp
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian), step=rows.shape[1])
    msg.header.stamp = stamp
    msg.header.frame_id = "cam"
    msg.data = rows.tobytes()
    expected = rgb if pixels.ndim == 3 else np.repeat(grey[:, :, None], 3, axis=2)  # 16-bit: top 8 bits = grey
    return msg, expected


ACCEPTED = [
    (encoding, False, 0) for encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "8UC4", "mono8", "8UC1", "mono16", "16UC1")
] + [
    ("mono16", True, 0),  # big-endian 16-bit: bytes swapped in the message
    ("rgb8", True, 0),  # the flag means nothing for 8-bit data
    ("bgr8", False, 12),  # padded rows
    ("mono16", True, 6),
]


@pytest.mark.parametrize(
    "encoding, big_endian, padding", ACCEPTED,
    ids=[f"{e}{'-be' if b else ''}{f'-pad{p}' if p else ''}" for e, b, p in ACCEPTED],
)
def test_each_accepted_encoding_gives_the_depth_of_its_pixels(main_node, estimator, main_range, encoding, big_endian, padding):
    width, height = 160, 120
    stamp = next_stamp()
    image, rgb = encoded_image(scene(width, height, seed=11), encoding, big_endian, padding, stamp)
    depth = depth_array(main_node.exchange(image, info_msg(width, height, stamp, "cam"), ("depth",))["depth"])
    expected = estimator.predict(rgb, extra_scale=MAIN_SCALE)
    min_depth, max_depth = main_range
    inside = (expected > min_depth * 1.0001) & (expected < max_depth * 0.9999)
    assert inside.mean() > 0.2
    np.testing.assert_allclose(depth[inside], expected[inside], rtol=1e-4)


def test_old_clip_names_at_startup_warn_once_and_show_under_the_new_names(main_node, main_range):
    output = main_node.process.output()
    for old, new in (("min_depth", "output_min_depth"), ("max_depth", "output_max_depth")):
        assert output.count(f"parameter '{old}' is deprecated: it is now '{new}'") == 1, output
    values = main_node.get_parameters(["output_min_depth", "output_max_depth", "min_depth", "max_depth"])
    assert values["output_min_depth"] == pytest.approx(main_range[0])
    assert values["output_max_depth"] == pytest.approx(main_range[1])
    assert values["min_depth"] == pytest.approx(main_range[0])

