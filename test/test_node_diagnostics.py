"""depth_node publishes its health on /diagnostics at 1 Hz (over real DDS)."""
from __future__ import annotations

import pytest

from node_harness import RunningNode, ros_session, small_frame  # noqa: E402  (skips the module without rclpy)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


def own_statuses(messages, name="depth_node: depth estimation"):
    return [status for message in messages for status in message.status if status.name == name]


def level(status) -> int:
    return status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)


def test_diagnostics_report_rates_device_and_warnings_in_force(ros, small_model_path, tmp_path):
    node = RunningNode(ros, tmp_path / "node.log", "/dds_diagnostics", {"model_path": str(small_model_path),
                                                                        "device": "cpu"})
    diagnostics = node.add_subscription(DiagnosticArray, "/diagnostics", key="diagnostics")
    try:
        node.wait_ready()
        # Frames without camera_info: skipped, and the warning is in force on /diagnostics.
        image, _ = small_frame()
        node.send_until_logged(image, None, "no CameraInfo received")
        diagnostics.clear()
        assert node.ros.spin_until(lambda: len(own_statuses(diagnostics)) >= 2, 10.0), node.process.output()[-2000:]
        status = own_statuses(diagnostics)[-1]
        values = {item.key: item.value for item in status.values}
        assert level(status) == level(DiagnosticStatus(level=DiagnosticStatus.WARN))
        assert "no CameraInfo received" in status.message and int(values["frames skipped"]) >= 1
        assert status.hardware_id.startswith("PyTorch on cpu") or "cpu" in status.hardware_id
        # Good frames: published, rates and latency reported.
        for _ in range(3):
            node.exchange(*small_frame(), outputs=("depth",))
        diagnostics.clear()
        assert node.ros.spin_until(lambda: len(own_statuses(diagnostics)) >= 1, 5.0)
        values = {item.key: item.value for item in own_statuses(diagnostics)[-1].values}
        assert int(values["frames published"]) >= 3 and float(values["output rate (Hz)"]) > 0
        assert float(values["latency mean (ms)"]) > 0 and values["image topic"] == "/dds_diagnostics/image"
        assert "cpu" in values["device"]
    finally:
        node.close()


def test_a_stream_that_starts_with_an_image_before_its_camera_info_is_not_warned_about(ros, small_model_path, tmp_path):
    """Drivers publish the image, then its camera_info: the first frame finds none yet. That is a
    normal start, not a remapping problem: no warning, and /diagnostics stays OK."""
    node = RunningNode(ros, tmp_path / "node.log", "/dds_info_late", {"model_path": str(small_model_path),
                                                                     "device": "cpu"})
    diagnostics = node.add_subscription(DiagnosticArray, "/diagnostics", key="diagnostics")
    try:
        node.wait_ready()
        image, info = small_frame()
        node.image_pub.publish(image)
        node.ros.spin_for(0.05)
        node.info_pub.publish(info)
        node.exchange(*small_frame(), outputs=("depth",))
        diagnostics.clear()
        assert node.ros.spin_until(lambda: len(own_statuses(diagnostics)) >= 1, 5.0)
        assert level(own_statuses(diagnostics)[-1]) == level(DiagnosticStatus(level=DiagnosticStatus.OK))
        assert "no CameraInfo received" not in node.process.output()
    finally:
        node.close()
