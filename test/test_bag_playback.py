"""The demo's bag player and recorder over real DDS: bag -> rclpy publishers -> subscribers -> bag."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from mono_depth_ros.ros.bag_playback import BagPlayer, BagRecorder, message_class, recorded_messages  # noqa: E402
from mono_depth_ros.simulation import write_synthetic_bag  # noqa: E402

RATE_HZ = 10.0
FRAMES = 5


@pytest.fixture
def ros_context():
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("playback") / "bag"
    return write_synthetic_bag(
        path, num_frames=FRAMES, width=64, height=48, stereo=False, odometry=False, rate_hz=RATE_HZ,
        return_recording=True,
    )


def test_message_class_resolves_and_explains():
    from sensor_msgs.msg import Image

    assert message_class("sensor_msgs/msg/Image") is Image
    with pytest.raises(ValueError, match="not a ROS 2 message type"):
        message_class("sensor_msgs/Image")
    with pytest.raises(ImportError, match="no_such_pkg"):
        message_class("no_such_pkg/msg/Thing")


def test_player_rejects_unknown_topic_naming_what_exists(ros_context, small_bag):
    node = rclpy.create_node("player_topics", context=ros_context)
    try:
        with pytest.raises(ValueError, match=r"no topic /nope.*/camera/image_raw"):
            BagPlayer(node, small_bag.path, topics=["/nope"])
        with pytest.raises(ValueError, match="rate"):
            BagPlayer(node, small_bag.path, rate=0.0)
    finally:
        node.destroy_node()


def test_played_messages_arrive_intact_at_bag_timing(ros_context, small_bag, tmp_path):
    player_node = rclpy.create_node("player", context=ros_context)
    recorder_node = rclpy.create_node("recorder", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(recorder_node)
    spinning = threading.Thread(target=executor.spin, daemon=True)
    topics = {"/camera/image_raw": "sensor_msgs/msg/Image", "/camera/camera_info": "sensor_msgs/msg/CameraInfo"}
    # Remapped on the way out: the recorder listens on /replay/..., which only the player feeds.
    remap = {t: "/replay" + t for t in topics}
    recorder = BagRecorder(recorder_node, tmp_path / "recorded", {remap[t]: m for t, m in topics.items()})
    spinning.start()
    try:
        player = BagPlayer(player_node, small_bag.path, topics=list(topics), rate=2.0, remap=remap)
        assert player.message_count("/camera/image_raw") == FRAMES
        assert player.wait_for_subscribers(topics, timeout=30.0), "recorder never matched the player"
        started = time.monotonic()
        assert player.play() == 2 * FRAMES
        elapsed = time.monotonic() - started
        assert player.published_on("/camera/camera_info") == FRAMES
        deadline = time.monotonic() + 30.0
        while sum(recorder.counts.values()) < 2 * FRAMES and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        path = recorder.close()
        executor.shutdown()
        player_node.destroy_node()
        recorder_node.destroy_node()
    # Stamps 0.1 s apart played at rate 2: the last message is due 0.2 s after the first.
    assert elapsed >= (FRAMES - 1) / RATE_HZ / 2.0 * 0.95
    images = recorded_messages(path, "/replay/camera/image_raw")
    infos = recorded_messages(path, "/replay/camera/camera_info")
    assert len(images) == len(infos) == FRAMES
    for image, rgb, stamp_ns in zip(images, small_bag.images, small_bag.stamps_ns):
        assert image.header.stamp.sec * 1_000_000_000 + image.header.stamp.nanosec == stamp_ns
        assert image.encoding == "rgb8"
        np.testing.assert_array_equal(np.frombuffer(bytes(image.data), np.uint8).reshape(rgb.shape), rgb)
    np.testing.assert_allclose(np.asarray(infos[0].k).reshape(3, 3), small_bag.K)


def test_recorder_refuses_to_overwrite(ros_context, tmp_path):
    node = rclpy.create_node("recorder_overwrite", context=ros_context)
    try:
        (tmp_path / "exists").mkdir()
        with pytest.raises(FileExistsError, match="exists"):
            BagRecorder(node, tmp_path / "exists", {"/x": "std_msgs/msg/String"})
        with pytest.raises(ValueError, match="mcap"):
            BagRecorder(node, tmp_path / "new", {"/x": "std_msgs/msg/String"}, storage="bag")
    finally:
        node.destroy_node()
