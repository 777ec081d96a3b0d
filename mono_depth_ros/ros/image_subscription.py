"""depth_node's image input: the transport (raw or compressed) and a reliability that follows the camera.

A RELIABLE subscription does not match a BEST_EFFORT publisher (the sensor-data profile of many
drivers, simulators and bridges), and a BEST_EFFORT one loses large images that lose a fragment.
So, as rosbag2 does, the subscription adapts to the QoS the publishers offer: reliable while every
publisher is reliable, best effort as soon as one is best effort. It looks at the publishers when it
starts and once a second after (from a timer: a subscription is never replaced from inside one of
its own callbacks).

An explicit ``qos_overrides.<topic>.subscription.reliability`` parameter fixes the reliability: the
subscription is then never changed, and an incompatible publisher is reported with the fix.
"""
from __future__ import annotations

from typing import Callable, Optional

from rclpy.node import Node
from rclpy.qos import QoSHistoryPolicy, QoSPolicyKind, QoSProfile, QoSReliabilityPolicy
from rclpy.qos_overriding_options import InvalidQosOverridesError, QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

RECHECK_PERIOD_S = 1.0


class ImageSubscriptionError(ValueError):
    """The image subscription cannot be created as configured (a bad qos_overrides parameter)."""


def reliability_for(offered) -> Optional[QoSReliabilityPolicy]:
    """The reliability that matches every publisher: offered reliabilities -> RELIABLE when all are
    reliable, BEST_EFFORT when any is best effort, None when there is no publisher to go by."""
    offered = [QoSReliabilityPolicy(value) for value in offered]
    if not offered:
        return None
    if any(value == QoSReliabilityPolicy.BEST_EFFORT for value in offered):
        return QoSReliabilityPolicy.BEST_EFFORT
    return QoSReliabilityPolicy.RELIABLE


def resolved_name(node: Node, name: str) -> str:
    """``name`` after the node's namespace and remapping rules, as a subscription would use it."""
    if hasattr(node, "resolve_topic_name"):
        return node.resolve_topic_name(name)
    # Older rclpy: a momentary subscription reports the name it resolved to.
    subscription = node.create_subscription(Image, name, lambda message: None, 1)
    try:
        return subscription.topic_name
    finally:
        node.destroy_subscription(subscription)


class ImageSubscription:
    """The subscription to ``image`` (raw) or ``image/compressed`` (compressed), newest frame only.

    ``warn(problem, text)`` is the node's throttled warning; ``log_info`` logs a change of reliability.
    """

    def __init__(self, node: Node, transport: str, callback: Callable, warn: Callable[[str, str], None]):
        self._node = node
        self._callback = callback
        self._warn = warn
        self.message_type = CompressedImage if transport == "compressed" else Image
        # Created with the system default so that an explicit qos_overrides parameter shows as a change.
        probe = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1,
                           reliability=QoSReliabilityPolicy.SYSTEM_DEFAULT)
        # image_transport's naming: the transport's topic is the (remapped) base topic + "/compressed".
        name = "image" if transport == "raw" else f"{resolved_name(node, 'image')}/compressed"
        try:
            self._subscription = node.create_subscription(
                self.message_type, name, callback, probe,
                qos_overriding_options=QoSOverridingOptions.with_default_policies(),
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos),
            )
        except (InvalidQosOverridesError, KeyError, ValueError, TypeError, RuntimeError) as error:
            # (RuntimeError: rclpy's 'Unexpected QoS override', or the context shutting down, which the
            # node tells apart by context.ok())
            raise ImageSubscriptionError(
                f"invalid qos_overrides for the image subscription ({error}): reliability is 'reliable' or "
                "'best_effort', history 'keep_last', depth a positive integer"
            ) from error
        self.topic_name = self._subscription.topic_name
        chosen = self._subscription.qos_profile
        self.fixed = chosen.reliability != QoSReliabilityPolicy.SYSTEM_DEFAULT
        self.reliability = chosen.reliability
        self._depth = chosen.depth
        self._timer = None
        if not self.fixed:
            offered = reliability_for(self._offered())
            self._replace(offered or QoSReliabilityPolicy.RELIABLE)
            self._timer = node.create_timer(RECHECK_PERIOD_S, self.adapt)

    def _offered(self):
        return [info.qos_profile.reliability for info in self._node.get_publishers_info_by_topic(self.topic_name)]

    def _replace(self, reliability: QoSReliabilityPolicy) -> None:
        profile = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=self._depth, reliability=reliability)
        self._node.destroy_subscription(self._subscription)
        self._subscription = self._node.create_subscription(
            self.message_type, self.topic_name, self._callback, profile,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos),
        )
        self.reliability = reliability

    def adapt(self) -> bool:
        """Follow the publishers' reliability; True when the subscription changed."""
        if self.fixed:
            return False
        wanted = reliability_for(self._offered())
        if wanted is None or wanted == self.reliability:
            return False
        self._replace(wanted)
        self._node.get_logger().info(
            f"image publishers on {self.topic_name} offer {wanted.name.lower()}: subscribed {wanted.name.lower()}")
        return True

    def _on_incompatible_qos(self, event) -> None:
        policy = QoSPolicyKind(event.last_policy_kind)  # a plain int on some distributions
        if not self.fixed and policy == QoSPolicyKind.RELIABILITY:
            return  # a best-effort publisher appeared: the next check (within a second) follows it
        hint = ""
        if policy == QoSPolicyKind.RELIABILITY:
            hint = (
                f" The parameter qos_overrides.{self.topic_name}.subscription.reliability fixes it at "
                f"{self.reliability.name.lower()}: set it to best_effort for a best-effort camera, or leave it "
                "out and the node follows the camera."
            )
        self._warn(
            f"incompatible QoS: {policy.name} on {self.topic_name}",
            f"a publisher on {self.topic_name} offers a QoS incompatible with this subscription "
            f"({policy.name}); no images arrive from it.{hint}",
        )

    def destroy(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        self._node.destroy_subscription(self._subscription)
