"""depth_node's image input: the transport (raw or compressed) and a reliability that follows the camera.

A RELIABLE subscription does not match a BEST_EFFORT publisher (the sensor-data profile of many
drivers, simulators and bridges), and a BEST_EFFORT one loses large images that lose a fragment.
So, as rosbag2 does, the subscription adapts to the QoS the publishers offer: reliable while every
publisher is reliable, best effort as soon as one is best effort. It looks at the publishers when it
starts and once a second after (from a timer: a subscription is never replaced from inside one of
its own callbacks).

An explicit ``qos_overrides.<topic>.subscription.reliability`` parameter (the standard name, declared
here) fixes the reliability: the subscription is then never changed, and an incompatible publisher is
reported with the fix. No subscription exists before the node knows which case it is in, so a
camera never sees a subscription it cannot match.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSHistoryPolicy, QoSPolicyKind, QoSProfile, QoSReliabilityPolicy
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
    # Older rclpy: a momentary subscription reports the name it resolved to (best effort: it matches
    # any camera, which therefore never sees an incompatible reader).
    probe = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT)
    subscription = node.create_subscription(Image, name, lambda message: None, probe)
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
        # image_transport's naming: the transport's topic is the (remapped) base topic + "/compressed".
        base = resolved_name(node, "image")
        self.topic_name = base if transport == "raw" else f"{base}/compressed"
        reliability, self._depth = self._declare_overrides()
        self.fixed = reliability is not None
        self._subscription = None
        self._timer = None
        if self.fixed:
            self._replace(reliability)
        else:
            self._replace(reliability_for(self._offered()) or QoSReliabilityPolicy.RELIABLE)
            self._timer = node.create_timer(RECHECK_PERIOD_S, self.adapt)

    def _declare_overrides(self) -> Tuple[Optional[QoSReliabilityPolicy], int]:
        """The standard QoS override parameters of this subscription (the names rclpy's
        QoSOverridingOptions uses), declared here so that no subscription exists before the node knows
        whether the user fixed the reliability -> (fixed reliability or None, history depth)."""
        prefix = f"qos_overrides.{self.topic_name}.subscription."
        values = {}
        for policy, default in (("reliability", ""), ("history", "keep_last"), ("depth", 1)):
            descriptor = ParameterDescriptor(
                read_only=True, description=f"{policy} of the image subscription" + (
                    " (empty: follow the publishers)" if policy == "reliability" else ""))
            try:
                values[policy] = self._node.declare_parameter(prefix + policy, default, descriptor).value
            except (ValueError, TypeError, RuntimeError) as error:  # e.g. a value of the wrong type
                raise ImageSubscriptionError(self._override_problem(f"{prefix}{policy}: {error}")) from error
        reliability = str(values["reliability"]).strip().lower()
        if reliability not in ("", "reliable", "best_effort"):
            raise ImageSubscriptionError(self._override_problem(f"{prefix}reliability is '{values['reliability']}'"))
        if str(values["history"]).strip().lower() != "keep_last":
            raise ImageSubscriptionError(self._override_problem(f"{prefix}history is '{values['history']}'"))
        if not isinstance(values["depth"], int) or values["depth"] < 1:
            raise ImageSubscriptionError(self._override_problem(f"{prefix}depth is {values['depth']!r}"))
        fixed = {"reliable": QoSReliabilityPolicy.RELIABLE, "best_effort": QoSReliabilityPolicy.BEST_EFFORT}
        return fixed.get(reliability), int(values["depth"])

    @staticmethod
    def _override_problem(what: str) -> str:
        return (f"invalid qos_overrides for the image subscription ({what}): reliability is 'reliable' or "
                "'best_effort' (or left out: the node follows the camera), history 'keep_last', depth a "
                "positive integer")

    def _offered(self):
        return [info.qos_profile.reliability for info in self._node.get_publishers_info_by_topic(self.topic_name)]

    def _replace(self, reliability: QoSReliabilityPolicy) -> None:
        profile = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=self._depth, reliability=reliability)
        if self._subscription is not None:
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
