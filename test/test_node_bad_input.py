"""depth_node over real DDS with bad input: broken and unsupported images, bad camera_info, oversize
frames, frame_id checks, an image without frame_id, camera_info after its image, and one warning per
repeated problem. Each bad frame is skipped with a warning and the next good one is published.

The node process, the test-side ROS node and the message helpers are in test/node_harness.py.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from mono_depth_ros.camera_info_pairing import MATCHES_BEFORE_WAITING  # noqa: E402

from node_harness import (  # noqa: E402  (test/ is on sys.path)
    FRAME_TIMEOUT_S, FX, FY, RunningNode, check_depth_message, check_good_frame_after, clip_range, image_msg,
    info_msg, main_parameters, next_stamp, ros_session, scene, small_estimator, started_node,
)


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


@pytest.fixture(scope="module")
def main_node(ros, small_model_path, tmp_path_factory):
    """One node for this module's tests, configured as test_node_outputs' (min/max depth cut some pixels)."""
    log_path = tmp_path_factory.mktemp("dds") / "main_node.log"
    depth_range = clip_range(small_estimator(small_model_path))
    with started_node(ros, log_path, "/dds_bad_input", main_parameters(small_model_path, depth_range)) as node:
        yield node


def _bad_image(kind: str, stamp: Time) -> Image:
    width, height = 160, 120
    image = image_msg(scene(width, height), stamp, "cam")
    if kind == "bayer":
        image.encoding = "bayer_rggb8"
    elif kind == "float":
        image.encoding = "32FC1"
    elif kind == "short_data":
        image.data = bytes(image.step * height - 1)
    elif kind == "small_step":
        image.step = width * 3 - 3
    elif kind == "zero_size":
        image.width, image.step, image.data = 0, 0, b""
    elif kind == "zero_height":
        image.height, image.data = 0, b""
    return image


BAD_IMAGES = {
    "bayer": "unsupported encoding 'bayer_rggb8'",
    "float": "unsupported encoding '32FC1'",
    "short_data": "data has 57599 bytes, fewer than step x height",
    "small_step": "step 477 is smaller than width x bytes per pixel",
    "zero_size": "empty image (0x120)",
    "zero_height": "empty image (160x0)",
}


BAD_INFOS = {
    "other_size": ("camera_info describes 320x240 images but the image is 160x120", dict(width=320, height=240)),
    "zero_fx": ("fx=0.0", dict(k=[0.0, 0, 80, 0, FY, 60, 0, 0, 1])),
    "nan": ("non-finite entries", dict(k=[FX, 0, float("nan"), 0, FY, 60, 0, 0, 1])),
    "negative_fx": ("fx=-410.0", dict(k=[-FX, 0, 80, 0, FY, 60, 0, 0, 1])),
    "negative_fy": ("fy=-377.5", dict(k=[FX, 0, 80, 0, -FY, 60, 0, 0, 1])),
    "all_zero": ("fx=0.0, fy=0.0", dict(k=[0.0] * 9)),  # an uncalibrated driver's camera_info
}


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_image_is_skipped_with_a_warning(main_node, kind):
    width, height = 160, 120
    main_node.info_pub.publish(info_msg(width, height, next_stamp(), "cam"))
    stamp = next_stamp()
    main_node.send_until_logged(_bad_image(kind, stamp), info_msg(width, height, stamp, "cam"), BAD_IMAGES[kind])
    check_good_frame_after(main_node, stamp)


def pair_camera_info_stream(node: RunningNode, width: int = 160, height: int = 120) -> None:
    """Good frames, each with its own camera_info, until the node waits for an image's camera_info."""
    for _ in range(MATCHES_BEFORE_WAITING):
        stamp = next_stamp()
        node.exchange(image_msg(scene(width, height), stamp, "cam"), info_msg(width, height, stamp, "cam"))


@pytest.mark.parametrize("kind", sorted(BAD_INFOS))
def test_bad_camera_info_is_skipped_with_a_warning(main_node, kind):
    width, height = 160, 120
    text, fields = BAD_INFOS[kind]
    # The bad camera_info must be the image's own, whichever of the two the node gets first.
    pair_camera_info_stream(main_node)
    stamp = next_stamp()
    info = info_msg(fields.get("width", width), fields.get("height", height), stamp, "cam", fields.get("k"))
    main_node.send_until_logged(image_msg(scene(width, height), stamp, "cam"), info, text)
    check_good_frame_after(main_node, stamp)


def test_image_published_before_its_camera_info_uses_it(main_node):
    """Drivers publish the image, then its camera_info: when the camera changes size, the first image
    of the new size must be paired with its own camera_info, not skipped for the previous one."""
    pair_camera_info_stream(main_node)
    log_start = len(main_node.process.output())
    for width, height in ((128, 96), (160, 120)):
        stamp = next_stamp()
        image = image_msg(scene(width, height), stamp, "cam")
        main_node.image_pub.publish(image)
        main_node.ros.spin_for(0.03)
        main_node.info_pub.publish(info_msg(width, height, stamp, "cam"))
        # Sent once: a re-send would find the camera_info already there.
        assert main_node.ros.spin_until(lambda: main_node.outputs_for("depth", stamp), FRAME_TIMEOUT_S), (
            f"no depth for the {width}x{height} image sent before its camera_info"
        )
        check_depth_message(main_node.outputs_for("depth", stamp)[0], image)
    assert "describes" not in main_node.process.output()[log_start:]


def test_repeated_problem_warns_once_per_period(main_node):
    """A camera stuck on a bad frame must not flood the log: the same warning is throttled."""
    width, height = 160, 120
    image = image_msg(scene(width, height), next_stamp(), "cam")
    image.encoding = "yuv422_yuy2"
    text = "unsupported encoding 'yuv422_yuy2'"
    main_node.send_until_logged(image, info_msg(width, height, next_stamp(), "cam"), text)
    for _ in range(5):
        main_node.send(image)
        main_node.ros.spin_for(0.2)
    check_good_frame_after(main_node, image.header.stamp)  # the repeats were handled before this
    assert main_node.process.output().count(text) == 1


UNSUPPORTED = ["", "rgb16", "bgra16", "yuv422", "yuv422_yuy2", "nv21", "bayer_grbg16", "16SC1", "64FC1", "8SC3", "jpeg"]


@pytest.mark.parametrize("encoding", UNSUPPORTED, ids=[e or "empty" for e in UNSUPPORTED])
def test_each_unsupported_encoding_is_named_and_skipped(main_node, encoding):
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "cam")
    image.encoding = encoding
    main_node.send_until_logged(image, info_msg(width, height, stamp, "cam"), f"unsupported encoding '{encoding}'")
    check_good_frame_after(main_node, stamp)


def test_image_over_max_image_pixels_is_skipped_before_decoding(main_node):
    """An 8000x6000 frame (48 MB mono8) would need ~1 GB for its cloud: skipped, named, the node goes on."""
    width, height = 8000, 6000
    stamp = next_stamp()
    image = Image(height=height, width=width, encoding="mono8", is_bigendian=0, step=width)
    image.header.stamp, image.header.frame_id = stamp, "cam"
    image.data = np.full(width * height, 128, np.uint8).tobytes()
    main_node.send_until_logged(
        image, info_msg(width, height, stamp, "cam"), "8000x6000 (48.0 MP), more than max_image_pixels (16000000)",
        timeout=60.0,
    )
    check_good_frame_after(main_node, stamp)


def test_camera_info_of_another_frame_is_not_used(main_node):
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "camera_b_optical_frame")
    main_node.send_until_logged(
        image, info_msg(width, height, stamp, "camera_a_optical_frame"),
        "the image is in frame 'camera_b_optical_frame' but the latest camera_info is for 'camera_a_optical_frame'",
    )
    check_good_frame_after(main_node, stamp)
    # A camera_info without a frame_id (some calibration tools) fits any image.
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "camera_b_optical_frame")
    check_depth_message(main_node.exchange(image, info_msg(width, height, stamp, ""), ("depth",))["depth"], image)


def test_image_without_frame_id_is_published_with_a_warning(main_node):
    width, height = 160, 120
    stamp = next_stamp()
    image = image_msg(scene(width, height), stamp, "")
    outputs = main_node.exchange(image, info_msg(width, height, stamp, ""), ("depth",))
    assert outputs["depth"].header.frame_id == ""
    assert "empty header.frame_id" in main_node.process.output()

