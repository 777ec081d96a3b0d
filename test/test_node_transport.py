"""depth_node's image input over real DDS: a reliability that follows the camera (no override needed),
the explicit override, and the compressed transport (image_transport's `image/compressed`)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from node_harness import (  # noqa: E402  (skips the module without rclpy)
    PublisherEventCallbacks, RunningNode, check_depth_message, depth_array, image_msg, info_msg, next_stamp,
    reference_depth, ros_session, scene, small_estimator,
)
from rclpy.qos import QoSReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


@pytest.fixture(scope="module")
def estimator(small_model_path):
    return small_estimator(small_model_path)


def subscription_reliability(node: RunningNode, topic: str):
    infos = node.ros.node.get_subscriptions_info_by_topic(node.topic(topic))
    return [QoSReliabilityPolicy(info.qos_profile.reliability) for info in infos]


def frame(width=160, height=120, seed=3):
    bgr = scene(width, height, seed=seed)
    stamp = next_stamp()
    return bgr, image_msg(bgr, stamp, "cam"), info_msg(width, height, stamp, "cam")


def test_a_best_effort_camera_connects_without_any_override(ros, small_model_path, estimator, tmp_path):
    """The sensor-data profile (best effort) of many drivers and simulators: depth arrives, no warning."""
    node = RunningNode(ros, tmp_path / "node.log", "/dds_best_effort",
                       {"model_path": str(small_model_path), "device": "cpu"}, image_qos=qos_profile_sensor_data)
    try:
        node.wait_ready()
        bgr, image, info = frame()
        depth = check_depth_message(node.exchange(image, info, ("depth",))["depth"], image)
        np.testing.assert_allclose(depth, reference_depth(estimator, bgr, 1.0), rtol=1e-5)
        assert subscription_reliability(node, "image") == [QoSReliabilityPolicy.BEST_EFFORT]
        output = node.process.output()
        assert "offer best_effort: subscribed best_effort" in output
        assert "incompatible" not in output
    finally:
        node.close()


def test_a_reliable_camera_keeps_a_reliable_subscription_and_a_best_effort_one_joining_is_followed(
        ros, small_model_path, tmp_path):
    node = RunningNode(ros, tmp_path / "node.log", "/dds_reliable", {"model_path": str(small_model_path), "device": "cpu"})
    try:
        node.wait_ready()
        _, image, info = frame()
        node.exchange(image, info, ("depth",))
        assert subscription_reliability(node, "image") == [QoSReliabilityPolicy.RELIABLE]
        # A second, best-effort camera driver on the same topic: both must be heard.
        second = node.add_publisher(type(image), "image", qos_profile_sensor_data,
                                    event_callbacks=PublisherEventCallbacks(incompatible_qos=lambda event: None))
        assert node.ros.spin_until(
            lambda: subscription_reliability(node, "image") == [QoSReliabilityPolicy.BEST_EFFORT], 10.0)
        _, image, info = frame(seed=4)
        node.exchange(image, info, ("depth",), publisher=second)
    finally:
        node.close()


def test_an_explicit_reliability_override_is_kept_and_a_mismatch_is_reported(ros, small_model_path, tmp_path):
    override = "qos_overrides./dds_fixed/image.subscription.reliability"
    node = RunningNode(ros, tmp_path / "node.log", "/dds_fixed",
                       {"model_path": str(small_model_path), "device": "cpu", override: "reliable"},
                       image_qos=qos_profile_sensor_data)
    node.image_pub = None  # the best-effort publisher cannot match: do not wait for it
    try:
        node.wait_ready()
        hint = "qos_overrides./dds_fixed/image.subscription.reliability fixes it at reliable"
        if not node.process.wait_for_output(hint, 20.0, node.ros.spin_for):
            node.fail("no warning about the incompatible publisher under the override")
        assert subscription_reliability(node, "image") == [QoSReliabilityPolicy.RELIABLE]
    finally:
        node.close()


def compressed_msg(bgr: np.ndarray, stamp, extension: str) -> CompressedImage:
    ok, encoded = cv2.imencode(extension, bgr)
    assert ok
    message = CompressedImage(format=f"bgr8; {extension[1:]} compressed bgr8")
    message.header.stamp, message.header.frame_id = stamp, "cam"
    message.data = encoded.tobytes()
    return message


def test_compressed_transport_gives_the_depth_of_the_decoded_image(ros, small_model_path, estimator, tmp_path):
    node = RunningNode(ros, tmp_path / "node.log", "/dds_compressed",
                       {"model_path": str(small_model_path), "device": "cpu", "image_transport": "compressed"},
                       remappings={"image": "/dds_compressed/camera/image_raw"}, image_topic=None)
    publisher = node.add_publisher(CompressedImage, "/dds_compressed/camera/image_raw/compressed")
    try:
        node.wait_ready(publishers=[publisher])
        bgr = scene(200, 150, seed=7)
        stamp = next_stamp()
        message = compressed_msg(bgr, stamp, ".png")  # lossless: the same pixels as a raw image
        depth_msg = node.exchange(message, info_msg(200, 150, stamp, "cam"), ("depth",), publisher=publisher)["depth"]
        assert (depth_msg.width, depth_msg.height) == (200, 150) and depth_msg.header.frame_id == "cam"
        np.testing.assert_allclose(depth_array(depth_msg), reference_depth(estimator, bgr, 1.0), rtol=1e-5)
        # JPEG is lossy: same size, finite depth.
        stamp = next_stamp()
        depth_msg = node.exchange(compressed_msg(bgr, stamp, ".jpg"), info_msg(200, 150, stamp, "cam"), ("depth",),
                                  publisher=publisher)["depth"]
        assert np.isfinite(depth_array(depth_msg)).mean() > 0.5
        # An undecodable payload is skipped with a warning that says so.
        stamp = next_stamp()
        broken = CompressedImage(format="jpeg")
        broken.header.stamp, broken.header.frame_id = stamp, "cam"
        broken.data = b"\xff\xd8 not really a jpeg"
        node.send_until_logged(broken, info_msg(200, 150, stamp, "cam"), "could not decode", publisher=publisher)
    finally:
        node.close()
