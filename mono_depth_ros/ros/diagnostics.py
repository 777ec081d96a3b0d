"""depth_node's /diagnostics: the node's health (mono_depth_ros.node_health) as a
diagnostic_msgs/DiagnosticArray once a second, for rqt_robot_monitor and the diagnostic aggregator."""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from ..node_health import NodeHealth

PERIOD_S = 1.0
TASK_NAME = "depth estimation"


class DiagnosticsPublisher:
    """Publishes ``health`` on /diagnostics every PERIOD_S, named '<node name>: depth estimation' as
    diagnostic_updater names its tasks; ``hardware_id`` is the device the network runs on."""

    def __init__(self, node: Node, health: NodeHealth, hardware_id: str = ""):
        self._node = node
        self._health = health
        self.hardware_id = hardware_id
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(PERIOD_S, self.publish)

    def publish(self) -> None:
        report = self._health.report(time.monotonic())
        status = DiagnosticStatus(
            level=bytes([report.level]),
            name=f"{self._node.get_name()}: {TASK_NAME}",
            message=report.message,
            hardware_id=self.hardware_id,
            values=[KeyValue(key=key, value=value) for key, value in report.values],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._publisher)
