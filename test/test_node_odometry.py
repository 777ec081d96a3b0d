"""depth_node's visual odometry over real DDS: `odom` matches the pose network chained in-process.

Reuses the node-process and test-side ROS helpers of test/node_harness.py. The model has random weights:
these tests check the plumbing, frames, chaining, restarts and covariances; how good the motion is
with a trained model is measured in benchmarks/bench_odometry.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rclpy", reason="rclpy is not installed")

import node_harness as dds  # noqa: E402  (test/ is on sys.path)
from builtin_interfaces.msg import Time  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy  # noqa: E402

from mono_depth_ros.config import DepthNodeConfig  # noqa: E402
from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import ModelMetadata, load_model_file, save_model_file  # noqa: E402
from mono_depth_ros.networks import DepthNet, PoseNet  # noqa: E402
from mono_depth_ros.geometry.rotations import matrix_to_quaternion  # noqa: E402
from mono_depth_ros.visual_odometry import PoseRunner, VisualOdometry  # noqa: E402

DEPTH_SCALE = 1.5  # the node's parameter; the model file's own depth_scale is 2.0


@pytest.fixture(scope="module")
def pose_model_path(tmp_path_factory):
    """ResNet-18 at 128x64 with a pose network, metric, depth_scale 2.0 (random weights)."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("odometry") / "with_pose.safetensors"
    metadata = ModelMetadata(input_width=128, input_height=64, metric=True, depth_scale=2.0, has_pose=True)
    save_model_file(path, metadata, DepthNet(18), PoseNet(18))
    return path


@pytest.fixture(scope="module")
def odometry_node(pose_model_path, tmp_path_factory):
    ros = dds.Ros()
    node = dds.RunningNode(
        ros, tmp_path_factory.mktemp("odometry") / "node.log", "/dds_odometry",
        {"model_path": str(pose_model_path), "device": "cpu", "publish_odometry": True, "depth_scale": DEPTH_SCALE,
         "odom_frame": "vo_odom", "publish_colored_depth": False, "publish_points": False},
    )
    keep = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
    received = []
    subscription = ros.node.create_subscription(Odometry, "/dds_odometry/odom", received.append, keep)
    node.received_odometry = received
    try:
        node.wait_ready()
        yield node
    finally:
        ros.node.destroy_subscription(subscription)
        node.close()
        ros.close()


def frames(count: int, start_sec: int, step_ns: int = 100_000_000):
    """Images of a scene sliding sideways, stamped 0.1 s apart -> [(bgr, Time)]."""
    base = dds.scene(200, 96, seed=12)
    out = []
    for index in range(count):
        stamp_ns = start_sec * 1_000_000_000 + index * step_ns
        out.append((np.ascontiguousarray(base[:, 4 * index: 4 * index + 128]),
                    Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)))
    return out


def send_frames(node, sequence, frame_id="cam"):
    for bgr, stamp in sequence:
        image = dds.image_msg(bgr, stamp, frame_id)
        node.exchange(image, dds.info_msg(128, 96, stamp, frame_id), ("depth",))


def odometry_for(node, stamp: Time):
    matches = [msg for msg in node.received_odometry if dds.same_stamp(msg.header.stamp, stamp)]
    if not matches and not node.ros.spin_until(
        lambda: any(dds.same_stamp(m.header.stamp, stamp) for m in node.received_odometry), 10.0
    ):
        node.fail("no odom for the frame")
    return [msg for msg in node.received_odometry if dds.same_stamp(msg.header.stamp, stamp)][0]


def test_odometry_equals_the_pose_network_chained_in_process(odometry_node, pose_model_path):
    sequence = frames(4, start_sec=1_800_000_000)
    send_frames(odometry_node, sequence)
    messages = [odometry_for(odometry_node, stamp) for _, stamp in sequence[1:]]  # the first sets the origin

    model = load_model_file(pose_model_path)
    estimator = DepthEstimator(model, torch.device("cpu"))
    runner = PoseRunner(model.pose_net, torch.device("cpu"))
    reference = VisualOdometry(translation_scale=2.0 * DEPTH_SCALE)
    inputs = [estimator.preprocess(np.ascontiguousarray(bgr[:, :, ::-1])) for bgr, _ in sequence]
    previous_variance = 0.0
    for k, msg in enumerate(messages, start=1):
        expected = reference.update(runner.relative_pose(inputs[k - 1], inputs[k]), 0.1)
        assert msg.header.frame_id == "vo_odom" and msg.child_frame_id == "cam"
        position = msg.pose.pose.position
        np.testing.assert_allclose([position.x, position.y, position.z], expected.T_odom_camera[:3, 3], atol=1e-5)
        q = msg.pose.pose.orientation
        np.testing.assert_allclose([q.x, q.y, q.z, q.w], matrix_to_quaternion(expected.T_odom_camera[:3, :3]), atol=1e-5)
        twist = msg.twist.twist.linear
        np.testing.assert_allclose([twist.x, twist.y, twist.z], expected.linear_velocity, rtol=1e-4, atol=1e-5)
        covariance = np.array(msg.pose.covariance).reshape(6, 6)
        assert np.all(np.diag(covariance) > 0) and covariance[0, 0] >= previous_variance
        previous_variance = covariance[0, 0]


def test_stamp_going_back_restarts_at_the_origin(odometry_node):
    send_frames(odometry_node, frames(2, start_sec=1_800_000_100))
    replay = frames(2, start_sec=1_800_000_050)  # earlier stamps: a bag played again
    send_frames(odometry_node, replay)
    if not odometry_node.process.wait_for_output("odometry restarts at the origin: the image stamp went back", 10.0,
                                                 odometry_node.ros.spin_for):
        odometry_node.fail("no restart warning")
    # After the restart the first replayed frame is the origin: the next one is one step from it.
    msg = odometry_for(odometry_node, replay[1][1])
    position = msg.pose.pose.position
    step = np.linalg.norm([position.x, position.y, position.z])
    # Distance travelled since the restart is that one step, so the reported variance is of one step.
    variance = np.array(msg.pose.covariance).reshape(6, 6)[0, 0]
    assert variance == pytest.approx(max(0.01, DepthNodeConfig().odometry_drift * step) ** 2, rel=1e-5)


def test_a_standing_camera_reports_no_motion_until_the_image_changes(odometry_node, pose_model_path):
    """The pose network never saw a standing camera (the trainer drops such pairs): the node reports no
    motion while the image stays the same, then the motion from the last frame it measured from."""
    moving = frames(3, start_sec=1_800_000_200)
    first, later = moving[0][0], moving[2][0]  # 8 pixels apart: well over the still threshold
    stamps = [stamp for _, stamp in frames(5, start_sec=1_800_000_200)]
    sequence = [(first, stamps[0]), (first, stamps[1]), (first, stamps[2]), (first, stamps[3]), (later, stamps[4])]
    send_frames(odometry_node, sequence)
    for _, stamp in sequence[1:4]:
        msg = odometry_for(odometry_node, stamp)
        position, twist = msg.pose.pose.position, msg.twist.twist.linear
        assert [position.x, position.y, position.z] == [0.0, 0.0, 0.0]
        assert [twist.x, twist.y, twist.z] == [0.0, 0.0, 0.0]
    model = load_model_file(pose_model_path)
    estimator = DepthEstimator(model, torch.device("cpu"))
    runner = PoseRunner(model.pose_net, torch.device("cpu"))
    inputs = [estimator.preprocess(np.ascontiguousarray(bgr[:, :, ::-1])) for bgr in (first, later)]
    expected = VisualOdometry(translation_scale=2.0 * DEPTH_SCALE).update(runner.relative_pose(*inputs), 0.4)
    msg = odometry_for(odometry_node, stamps[4])
    position, twist = msg.pose.pose.position, msg.twist.twist.linear
    np.testing.assert_allclose([position.x, position.y, position.z], expected.T_odom_camera[:3, 3], atol=1e-5)
    # The motion spans the 0.4 s since the frame it was measured from.
    np.testing.assert_allclose([twist.x, twist.y, twist.z], expected.linear_velocity, rtol=1e-4, atol=1e-5)

    # Threshold 0 switches the test off: the same image twice gets the network's (random) motion.
    assert all(result.successful for result in odometry_node.set_parameters({"odometry_still_threshold": 0.0}))
    try:
        again = [(first, stamp) for _, stamp in frames(2, start_sec=1_800_000_300)]
        send_frames(odometry_node, again)
        position = odometry_for(odometry_node, again[1][1]).pose.pose.position
        assert np.linalg.norm([position.x, position.y, position.z]) > 1e-6
    finally:
        assert all(result.successful for result in odometry_node.set_parameters({"odometry_still_threshold": 0.01}))


def test_tf_needs_tf2_ros_and_says_so(odometry_node):
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        assert "publish_tf is set but tf2_ros cannot be imported" in odometry_node.process.output()
    else:  # a ROS 2 install: the broadcaster exists and nothing is said
        assert "publish_tf is set but tf2_ros" not in odometry_node.process.output()


def test_camera_info_far_from_the_learned_intrinsics_is_used_with_one_warning(tmp_path):
    """A model that learned its K (fx = 0.9 W) meets a camera_info with fx = 3.2 W: warned once, still used."""
    torch.manual_seed(3)
    path = tmp_path / "learned_k.safetensors"
    metadata = ModelMetadata(input_width=128, input_height=64, metric=True, has_pose=True, intrinsics="learned",
                             normalized_intrinsics=[0.9, 1.2, 0.5, 0.5])
    save_model_file(path, metadata, DepthNet(18), PoseNet(18, camera_head=True))
    ros = dds.Ros()
    node = dds.RunningNode(ros, tmp_path / "node.log", "/dds_learned_k", {"model_path": str(path), "device": "cpu"})
    try:
        node.wait_ready()
        for bgr, stamp in frames(2, start_sec=1_800_000_200):
            image = dds.image_msg(bgr, stamp, "cam")
            node.exchange(image, dds.info_msg(128, 96, stamp, "cam"), ("depth",))  # published despite it
        output = node.process.output()
    finally:
        node.close()
        ros.close()
    warning = "camera_info disagrees with the intrinsics the model learned in training (128x96 image): fx 410.0 vs learned 115.2"
    assert output.count(warning) == 1, output[-3000:]
