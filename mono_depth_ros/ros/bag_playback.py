"""A small rosbag2 player and recorder on rosbags + rclpy (the demo's `ros2 bag play` / `record`).

Neither needs rosbag2_py: the player reads a bag with rosbags and publishes each message
with rclpy at the time its bag stamp says (scaled by ``rate``), as ``ros2 bag play`` does;
the recorder subscribes to topics and writes what arrives into a new mcap (or sqlite3)
bag with rosbags. Messages pass through as CDR bytes, so any type rclpy can import works
and nothing is converted field by field.
"""
from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from rclpy.node import Node
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

from ..bagio.writer import BagWriter

# What `ros2 bag play` offers when the recording has no QoS of its own: reliable, keep last 10.
DEFAULT_QOS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=10, reliability=QoSReliabilityPolicy.RELIABLE)


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class (ImportError names the package)."""
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ValueError(f"'{msgtype}' is not a ROS 2 message type name (package/msg/Name)")
    try:
        module = importlib.import_module(f"{parts[0]}.msg")
    except ImportError as error:
        raise ImportError(f"message type {msgtype}: cannot import {parts[0]}.msg ({error}); "
                          f"install the {parts[0]} package") from error
    try:
        return getattr(module, parts[2])
    except AttributeError:
        raise ImportError(f"message type {msgtype}: {parts[0]}.msg has no {parts[2]}") from None


def _open_reader(bag: Union[str, Path]):
    from rosbags.highlevel import AnyReader

    return AnyReader([Path(bag)])


class BagPlayer:
    """Publishes a bag's messages on `node`, honouring their bag stamps.

    topics: which topics to play (None: all); remap: {bag topic: published topic}.
    """

    def __init__(
        self,
        node: Node,
        bag: Union[str, Path],
        topics: Optional[Sequence[str]] = None,
        rate: float = 1.0,
        remap: Optional[Dict[str, str]] = None,
        qos: QoSProfile = DEFAULT_QOS,
    ):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.node = node
        self.bag = Path(bag)
        self.rate = rate
        self.remap = dict(remap or {})
        self.published = 0
        with _open_reader(self.bag) as reader:
            available = {c.topic: c.msgtype for c in reader.connections}
            counts: Dict[str, int] = {}
            for connection in reader.connections:
                counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
        wanted = list(available) if topics is None else list(topics)
        missing = [t for t in wanted if t not in available]
        if missing:
            raise ValueError(f"{self.bag} has no topic {', '.join(missing)}; it has: {', '.join(sorted(available))}")
        self.topics = {t: available[t] for t in wanted}
        self._message_counts = {t: counts[t] for t in wanted}
        self._published_counts = {t: 0 for t in wanted}
        self._classes = {t: message_class(m) for t, m in self.topics.items()}
        self._publishers = {
            t: node.create_publisher(self._classes[t], self.remap.get(t, t), qos) for t in self.topics
        }

    def message_count(self, topic: str) -> int:
        """Messages the bag holds on `topic`."""
        return self._message_counts[topic]

    def published_on(self, topic: str) -> int:
        """Messages published so far on `topic`."""
        return self._published_counts[topic]

    def subscriber_count(self, topic: str) -> int:
        return self._publishers[topic].get_subscription_count()

    def wait_for_subscribers(self, topics: Iterable[str], timeout: float) -> bool:
        """Block until every topic has a matched subscriber (DDS discovery) or timeout."""
        deadline = time.monotonic() + timeout
        topics = list(topics)
        while time.monotonic() < deadline:
            if all(self.subscriber_count(t) > 0 for t in topics):
                return True
            time.sleep(0.05)
        return False

    def play(
        self,
        stop: Optional[threading.Event] = None,
        on_message: Optional[Callable[[str, int], None]] = None,
    ) -> int:
        """Publish every message at start + (stamp - first stamp) / rate. -> messages published."""
        stop = stop or threading.Event()
        with _open_reader(self.bag) as reader:
            connections = [c for c in reader.connections if c.topic in self.topics]
            start_wall = None
            first_stamp = None
            for connection, stamp_ns, raw in reader.messages(connections=connections):
                if stop.is_set():
                    break
                if start_wall is None:
                    start_wall, first_stamp = time.monotonic(), stamp_ns
                due = start_wall + (stamp_ns - first_stamp) * 1e-9 / self.rate
                # Sleep in short slices so a stop request is honoured promptly.
                while not stop.is_set() and time.monotonic() < due:
                    time.sleep(min(0.01, max(0.0, due - time.monotonic())))
                message = deserialize_message(bytes(raw), self._classes[connection.topic])
                self._publishers[connection.topic].publish(message)
                self.published += 1
                self._published_counts[connection.topic] += 1
                if on_message is not None:
                    on_message(connection.topic, stamp_ns)
        return self.published


class BagRecorder:
    """Subscribes to topics on `node` and writes every message it receives into a new bag.

    topics: {topic: msgtype}. Bag stamps are receive times (as ``ros2 bag record``);
    the messages keep their own header stamps. Call close() to finish the file.
    """

    def __init__(
        self,
        node: Node,
        out: Union[str, Path],
        topics: Dict[str, str],
        storage: str = "mcap",
        qos: QoSProfile = DEFAULT_QOS,
    ):
        self.path = Path(out)
        self._writer = BagWriter(self.path, storage, exists_hint="choose a new output folder").open()
        self.counts: Dict[str, int] = {topic: 0 for topic in topics}
        self._lock = threading.Lock()
        for topic, msgtype in topics.items():
            self._writer.add_connection(topic, msgtype)
        self._msgtypes = dict(topics)
        self._subscriptions = [
            node.create_subscription(message_class(msgtype), topic, self._callback(topic), qos)
            for topic, msgtype in topics.items()
        ]
        self._clock = node.get_clock()
        self._closed = False

    def _callback(self, topic: str):
        def record(message) -> None:
            data = serialize_message(message)
            stamp_ns = self._clock.now().nanoseconds
            with self._lock:
                if self._closed:
                    return
                self._writer.write_cdr(topic, self._msgtypes[topic], stamp_ns, data)
                self.counts[topic] += 1

        return record

    def close(self) -> Path:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()
        return self.path


def recorded_messages(bag: Union[str, Path], topic: str) -> List[object]:
    """Every message on `topic` of a bag, deserialised to rclpy messages (tests and reports)."""
    with _open_reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            raise ValueError(f"{bag} has no topic {topic}")
        cls = message_class(connections[0].msgtype)
        return [deserialize_message(bytes(raw), cls) for _, _, raw in reader.messages(connections=connections)]
