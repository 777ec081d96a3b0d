"""BagReader: one rosbag2 bag (directory, .mcap or .db3), read with rosbags, salvaged when damaged.

Lists the topics (:class:`TopicSummary`: name, type, message count) and yields deserialized
messages in bag order. When rosbags cannot read the bag, or stops partway, the rest is read by
the salvage scanners of :mod:`.scan`, and what failed is listed in :attr:`BagReader.damage`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

from .errors import BagError
from .scan import ScanDamage, scan_mcap, scan_sqlite, seconds_text, storage_files


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    count: int

    def __str__(self) -> str:
        return f"{self.name} [{self.msgtype}, {self.count} messages]"


class BagReader:
    """One bag (directory, .mcap or .db3), read with rosbags, salvaged when damaged.

    `damage` lists what could not be read (file, byte offset or time, error).
    """

    def __init__(self, path, log: Callable[[str], None] = print):
        self.path = Path(path).expanduser()
        self.log = log
        self.damage: List[str] = []
        self.salvaged = False
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist (pass a rosbag2 directory, a .mcap or a .db3 file)")
        if self.path.is_file() and self.path.suffix not in (".mcap", ".db3"):
            raise BagError(f"{self.path} is not a rosbag2 bag: expected a directory, a .mcap or a .db3 file")
        if not storage_files(self.path):
            raise BagError(f"{self.path} contains no .mcap or .db3 storage file; is it a rosbag2 directory?")
        self._typestore = None
        self._any_reader = None  # rosbags AnyReader, kept open while the bag is healthy
        self._first_raw: Dict[str, Tuple[str, bytes]] = {}  # salvage scans remember first messages
        self._first: Dict[str, object] = {}
        self.topics = self._read_topics()

    def close(self) -> None:
        if getattr(self, "_any_reader", None) is not None:
            try:
                self._any_reader.close()
            except Exception:
                pass
            self._any_reader = None

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # -- topic listing
    def _read_topics(self) -> Dict[str, TopicSummary]:
        from rosbags.highlevel import AnyReader

        try:
            reader = AnyReader([self.path], default_typestore=self._default_typestore())
            reader.open()
            self._any_reader = reader
            return {
                name: TopicSummary(name, info.msgtype or "", int(info.msgcount))
                for name, info in reader.topics.items()
            }
        except Exception as error:  # damaged or incomplete bag: scan what is there
            self.close()
            self.salvaged = True
            self._open_error = f"{type(error).__name__}: {error}"
            damage: List[str] = []
            try:
                topics = self._salvage_topics(damage)
            except ScanDamage as salvage_error:
                raise BagError(f"cannot read bag {self.path}: {error}; {salvage_error}") from None
            if not topics:
                raise BagError(f"cannot read bag {self.path}: {error} (no messages could be salvaged)")
            return {name: TopicSummary(name, msgtype, count) for name, (msgtype, count) in topics.items()}

    def _salvage_topics(self, damage: List[str]) -> Dict[str, Tuple[str, int]]:
        counts: Dict[str, List] = {}
        for storage in storage_files(self.path):
            scanner = scan_mcap if storage.suffix == ".mcap" else scan_sqlite
            for topic, msgtype, _, raw in scanner(storage, damage):
                entry = counts.setdefault(topic, [msgtype, 0])
                entry[1] += 1
                self._first_raw.setdefault(topic, (msgtype, raw))
        return {topic: (msgtype, count) for topic, (msgtype, count) in counts.items()}

    def _default_typestore(self):
        if self._typestore is None:
            from rosbags.typesys import Stores, get_typestore

            self._typestore = get_typestore(Stores.ROS2_HUMBLE)
        return self._typestore

    def describe_topics(self) -> str:
        if not self.topics:
            return "  (none)"
        return "\n".join(f"  {summary}" for summary in sorted(self.topics.values(), key=lambda s: s.name))

    def topics_of_type(self, *msgtypes: str, with_messages: bool = True) -> List[str]:
        return sorted(
            name
            for name, summary in self.topics.items()
            if summary.msgtype in msgtypes and (summary.count > 0 or not with_messages)
        )

    # -- messages
    def messages(self, topics: Sequence[str]) -> Iterator[Tuple[str, str, int, object]]:
        """Deserialized messages of `topics` in bag order -> (topic, msgtype, bag_time_ns, msg).

        On damage the rest is salvaged (messages already yielded are not repeated) and the
        problem is recorded in self.damage and logged.
        """
        wanted = set(topics)
        yielded: Counter = Counter()
        reader = self._any_reader
        if not self.salvaged and reader is not None:
            try:
                connections = [c for c in reader.connections if c.topic in wanted]
                for connection, bag_time, raw in reader.messages(connections=connections):
                    msg = reader.deserialize(raw, connection.msgtype)
                    yielded[(connection.topic, bag_time)] += 1
                    yield connection.topic, connection.msgtype, bag_time, msg
                return
            except Exception as error:  # damage found while reading: salvage the rest
                self.close()
                self.salvaged = True
                self._open_error = f"{type(error).__name__}: {error}"
        yield from self._salvage_messages(wanted, yielded)

    def _salvage_messages(self, wanted, yielded: Counter):
        typestore = self._default_typestore()
        damage: List[str] = []
        for storage in storage_files(self.path):
            scanner = scan_mcap if storage.suffix == ".mcap" else scan_sqlite
            try:
                for topic, msgtype, bag_time, raw in scanner(storage, damage):
                    if topic not in wanted:
                        continue
                    key = (topic, bag_time)
                    if yielded[key] > 0:
                        yielded[key] -= 1
                        continue
                    try:
                        msg = typestore.deserialize_cdr(raw, msgtype)
                    except Exception as error:
                        damage.append(
                            f"{storage}: message on {topic} at {seconds_text(bag_time)} cannot be deserialized "
                            f"({error})"
                        )
                        continue
                    yield topic, msgtype, bag_time, msg
            except ScanDamage as error:
                damage.append(str(error))
        if not damage:
            damage.append(f"{self.path}: rosbags could not read it ({self._open_error}); salvaged by scanning")
        for problem in damage:
            if self.path.is_file():
                problem = problem.replace(f"{self.path}: ", "", 1)  # the bag is the file: name it once
            text = f"bag {self.path} is damaged: {problem}"
            if text not in self.damage:  # first_message() rescans; report each problem once
                self.damage.append(text)
                self.log(f"WARNING: {text}")

    def first_message(self, topic: str):
        """First deserialized message of a topic, or None (remembered; used to inspect topics)."""
        if topic not in self._first:
            message = None
            if self.salvaged and topic in self._first_raw:
                msgtype, raw = self._first_raw[topic]
                try:
                    message = self._default_typestore().deserialize_cdr(raw, msgtype)
                except Exception:
                    message = None
            elif not self.salvaged:
                for _, _, _, message in self.messages([topic]):
                    break
            self._first[topic] = message
        return self._first[topic]
