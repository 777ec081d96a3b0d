"""Writing rosbag2 bags with ``rosbags``: one home for the writer's set-up.

* :class:`BagWriter` -- a new bag directory (never an existing one) in one of :data:`STORAGES`,
  written in rosbag2 format :data:`WRITER_VERSION`; a connection per topic, declared up front
  or added on the topic's first message; messages written as rosbags objects (serialized
  with the typestore) or as CDR bytes. Used by ``infer_bag``, the bag recorder of
  :mod:`mono_depth_ros.ros.bag_playback` and the functions below.
* :func:`write_bag` -- a list of :class:`BagEntry`, sorted by stamp first.
* :func:`write_sorted_bag` -- a stream of :class:`BagEntry` already in stamp order (nothing held in memory).
* :func:`make_typestore` -- the ROS 2 Humble message definitions.
* :func:`storage_file` -- the one ``.mcap`` / ``.db3`` file of a bag directory.

rosbags is imported on first use. Message objects are built in :mod:`.messages`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Sequence, Tuple, Union

STORAGES = ("mcap", "sqlite3")
WRITER_VERSION = 8  # rosbag2 metadata version of the bags written


def make_typestore():
    """rosbags typestore with the ROS 2 Humble message definitions."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def check_storage(storage: str) -> None:
    """ValueError unless ``storage`` is one of :data:`STORAGES`."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got '{storage}'")


class BagWriter:
    """A new rosbag2 directory being written; use as a context manager (or open() / close()).

    Raises ValueError for an unknown storage and FileExistsError, ending with ``exists_hint``,
    when ``path`` exists; nothing is created before open(). Connections: add_connection()
    declares one; write() and write_cdr() add one on a topic's first message.
    """

    def __init__(self, path: Union[str, Path], storage: str = "mcap", typestore=None, *, exists_hint: str):
        from rosbags.rosbag2 import StoragePlugin, Writer

        check_storage(storage)
        self.typestore = typestore or make_typestore()
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; {exists_hint}")
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self._writer = Writer(self.path, version=WRITER_VERSION, storage_plugin=plugin)
        self._connections: Dict[str, object] = {}

    def open(self) -> "BagWriter":
        self._writer.open()
        return self

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def add_connection(self, topic: str, msgtype: str) -> None:
        """Declare a connection now (connections are numbered in the order they are added)."""
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def write_cdr(self, topic: str, msgtype: str, stamp_ns: int, data) -> None:
        """Write serialized (CDR) message bytes with bag time ``stamp_ns``."""
        if topic not in self._connections:
            self.add_connection(topic, msgtype)
        self._writer.write(self._connections[topic], stamp_ns, data)

    def write(self, topic: str, msgtype: str, stamp_ns: int, message) -> None:
        """Write a rosbags message object with bag time ``stamp_ns``."""
        self.write_cdr(topic, msgtype, stamp_ns, self.typestore.serialize_cdr(message, msgtype))


@dataclass
class BagEntry:
    """One message to write: bag receive time = header stamp unless given."""

    topic: str
    msgtype: str
    stamp_ns: int
    message: object


def write_bag(
    path: Union[str, Path],
    entries: Iterable[BagEntry],
    storage: str = "mcap",
    typestore=None,
    empty_topics: Sequence[Tuple[str, str]] = (),
) -> Path:
    """Write messages into a new rosbag2 directory (sorted by stamp).

    empty_topics: (topic, msgtype) connections to declare without messages.
    -> the bag directory.
    """
    writer = BagWriter(path, storage, typestore, exists_hint="write_bag creates a new bag directory")
    entries = sorted(entries, key=lambda entry: entry.stamp_ns)  # stable: keeps topic order per stamp
    with writer:
        for entry in entries:
            if not writer.has_topic(entry.topic):
                writer.add_connection(entry.topic, entry.msgtype)
        for topic, msgtype in empty_topics:
            if not writer.has_topic(topic):
                writer.add_connection(topic, msgtype)
        for entry in entries:
            writer.write(entry.topic, entry.msgtype, entry.stamp_ns, entry.message)
    return writer.path


def write_sorted_bag(
    path: Union[str, Path],
    entries: Iterable[BagEntry],
    topics: Sequence[Tuple[str, str]],
    storage: str = "mcap",
    typestore=None,
) -> Path:
    """Stream messages already in stamp order into a new rosbag2 directory (nothing is held in
    memory). topics: every (topic, msgtype) that occurs, declared in this order.
    -> the bag directory."""
    with BagWriter(path, storage, typestore, exists_hint="write_sorted_bag creates a new bag directory") as writer:
        for topic, msgtype in topics:
            writer.add_connection(topic, msgtype)
        last_stamp = None
        for entry in entries:
            if not writer.has_topic(entry.topic):
                raise ValueError(f"topic {entry.topic} was not declared in topics")
            if last_stamp is not None and entry.stamp_ns < last_stamp:
                raise ValueError(f"entries out of stamp order at {entry.topic} {entry.stamp_ns} < {last_stamp}")
            last_stamp = entry.stamp_ns
            writer.write(entry.topic, entry.msgtype, entry.stamp_ns, entry.message)
    return writer.path


def storage_file(bag_dir: Union[str, Path]) -> Path:
    """The single .mcap or .db3 storage file inside a bag directory written by write_bag."""
    files = sorted(Path(bag_dir).glob("*.mcap")) + sorted(Path(bag_dir).glob("*.db3"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one storage file in {bag_dir}, found {[f.name for f in files]}")
    return files[0]
