"""depth_node under load over real DDS: bursts (the newest frame is kept, older ones dropped, never
queued), 1000 images at 100 Hz, and memory over a long run.

The node process, the test-side ROS node and the message helpers are in test/node_harness.py.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from node_harness import (  # noqa: E402  (test/ is on sys.path)
    FRAME_TIMEOUT_S, image_msg, info_msg, next_stamp, resident_mb, ros_session, same_stamp, scene, started_node,
)


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


@pytest.fixture(scope="module")
def load_node(ros, small_model_path, tmp_path_factory):
    """A node of its own for the load tests, so that their memory figures start from a plain node."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads resident memory from Linux /proc")
    log_path = tmp_path_factory.mktemp("dds") / "load_node.log"
    with started_node(ros, log_path, "/dds_load", {"model_path": str(small_model_path), "device": "cpu"}) as node:
        yield node


def test_burst_keeps_the_newest_frame_and_drops_the_rest(load_node):
    width, height = 160, 120  # small enough for one datagram each: the burst is not lost in transport
    bgr = scene(width, height, seed=5)
    load_node.exchange(image_msg(bgr, next_stamp(), "cam"), info_msg(width, height, next_stamp(), "cam"), ("depth",))
    load_node.clear()
    burst = [image_msg(bgr, next_stamp(), "cam") for _ in range(30)]
    for image in burst:  # back to back: far faster than one inference
        load_node.image_pub.publish(image)
    last = burst[-1].header.stamp
    if not load_node.ros.spin_until(lambda: load_node.outputs_for("depth", last), FRAME_TIMEOUT_S):
        load_node.fail("the newest frame of the burst was not processed")
    load_node.ros.spin_for(2.0)  # a queue backlog would keep producing outputs now
    published = load_node.received["depth"]
    assert len(published) < len(burst)
    assert same_stamp(published[-1].header.stamp, last)  # nothing older came after the newest
    sent_order = [(image.header.stamp.sec, image.header.stamp.nanosec) for image in burst]
    got_order = [(msg.header.stamp.sec, msg.header.stamp.nanosec) for msg in published]
    assert all(stamp in sent_order for stamp in got_order)
    assert got_order == sorted(got_order)  # oldest first, no frame twice


def test_burst_at_100_hz_leaves_no_backlog(load_node):
    """1000 images at 100 Hz into a CPU node that manages a fraction of that: it keeps up by dropping
    frames, publishes the newest, builds no queue, and its memory stays flat."""
    width, height = 320, 240
    bgr = scene(width, height, seed=21)
    for _ in range(10):  # warm-up at this size (allocator pools, rays cache)
        stamp = next_stamp()
        load_node.exchange(image_msg(bgr, stamp, "cam"), info_msg(width, height, stamp, "cam"), ("depth",))
    load_node.ros.spin_for(1.0)
    before_mb = resident_mb(load_node.process.process.pid)
    load_node.clear()
    load_node.info_pub.publish(info_msg(width, height, next_stamp(), "cam"))
    burst = [image_msg(bgr, next_stamp(), "cam") for _ in range(1000)]
    start = time.monotonic()
    for index, image in enumerate(burst):
        load_node.ros.spin_for(max(0.0, start + 0.01 * index - time.monotonic()))
        if index % 50 == 0:  # camera_info at 2 Hz: it is best-effort, one may be lost
            load_node.info_pub.publish(info_msg(width, height, next_stamp(), "cam"))
        load_node.image_pub.publish(image)
    published_during_burst = len(load_node.received["depth"])
    last = burst[-1].header.stamp
    if not load_node.ros.spin_until(lambda: load_node.outputs_for("depth", last), FRAME_TIMEOUT_S):
        load_node.fail("the newest frame of the burst was not processed")
    load_node.ros.spin_for(2.0)  # a backlog would keep producing outputs now
    after_mb = resident_mb(load_node.process.process.pid)
    assert load_node.process.process.poll() is None
    published = load_node.received["depth"]
    sent_order = [(image.header.stamp.sec, image.header.stamp.nanosec) for image in burst]
    got_order = [(msg.header.stamp.sec, msg.header.stamp.nanosec) for msg in published]
    assert set(got_order) <= set(sent_order)
    assert got_order == sorted(set(got_order))  # oldest first, no frame twice
    assert got_order[-1] == sent_order[-1]
    # When the last image went out, at most the frame in flight and the newest waiting one remained
    # (plus one still in transport): a queue would leave hundreds.
    assert len(published) - published_during_burst <= 3, (len(published), published_during_burst)
    assert 10 <= len(published) < len(burst)
    assert after_mb - before_mb < 50.0, (before_mb, after_mb)


def test_long_run_memory_stays_flat(load_node):
    """The short version of benchmarks/bench_robustness.py's soak: frames one after another."""
    width, height = 160, 120
    bgr = scene(width, height, seed=22)

    def run(frames: int) -> None:
        for _ in range(frames):
            stamp = next_stamp()
            load_node.exchange(image_msg(bgr, stamp, "cam"), info_msg(width, height, stamp, "cam"), ("depth", "points", "depth_colored"))
            load_node.clear()

    run(40)  # warm-up
    warm_mb = resident_mb(load_node.process.process.pid)
    run(200)
    grown_mb = resident_mb(load_node.process.process.pid) - warm_mb
    print(f"resident memory after warm-up {warm_mb:.1f} MB, grew {grown_mb:+.1f} MB in 200 frames")
    assert grown_mb < 20.0

