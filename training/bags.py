"""Reading rosbag2 recordings for training (PyPI ``rosbags``; no ROS installation needed).

* Bags: a rosbag2 directory, or a single ``.mcap`` / ``.db3`` storage file.
* Topics are found automatically when unambiguous; otherwise :class:`BagError` lists the
  topics found and names the DataConfig option to set.
* Damaged bags (cut-off recordings, corrupt chunks) are read as far as possible by a
  salvage scanner; what failed, and where, is reported in :attr:`BagReader.damage`.
* A camera recalibrated or resized mid-bag: :func:`stream_recording` keeps the frames that
  match the first calibration and size, skips the others and explains it in one note each.

Everything user-facing raises :class:`BagError` (a RuntimeError) with a message that
says what was wrong and what to do.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import mmap
import os
import sqlite3
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.request import pathname2url

import cv2
import numpy as np

from mono_depth_ros.camera import intrinsics_for_image
from mono_depth_ros.image_conversion import ImageFormatError, image_to_rgb

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
DEPTH_ENCODINGS = ("32FC1", "16UC1")
# image_transport suffixes: /camera/image_raw/compressed belongs to /camera/image_raw.
TRANSPORT_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd", "ffmpeg")
MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagError(RuntimeError):
    """A bag cannot be used for training; the message says why and what to do."""


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class CameraModel:
    """Calibration from one sensor_msgs/CameraInfo (native resolution)."""

    K: np.ndarray  # (3, 3) float64
    D: np.ndarray  # (n,) float64
    distortion_model: str
    width: int
    height: int
    P: np.ndarray  # (3, 4) float64
    binning: Tuple[int, int] = (0, 0)
    roi: Tuple[int, int, int, int] = (0, 0, 0, 0)  # x_offset, y_offset, width, height

    @property
    def is_distorted(self) -> bool:
        return bool(np.any(self.D != 0.0))

    @property
    def baseline_m(self) -> Optional[float]:
        """Stereo baseline from P[3] = -fx' * baseline (right camera); None for a left/mono camera."""
        if self.P[0, 0] <= 0.0 or self.P[0, 3] == 0.0:
            return None
        return float(-self.P[0, 3] / self.P[0, 0])

    def same_calibration(self, other: "CameraModel") -> bool:
        return (
            self.width == other.width
            and self.height == other.height
            and self.distortion_model == other.distortion_model
            and self.binning == other.binning
            and self.roi == other.roi
            and self.D.shape == other.D.shape
            and np.allclose(self.K, other.K, rtol=1e-6, atol=1e-6)
            and np.allclose(self.D, other.D, rtol=1e-6, atol=1e-9)
        )

    def K_for_image(self, image_width: int, image_height: int) -> np.ndarray:
        """K (3, 3) of the published image (binning and ROI applied); ValueError if sizes disagree."""
        if self.width == 0 and self.height == 0:  # some drivers leave the size unset
            return self.K.copy()
        return intrinsics_for_image(
            self.K.reshape(-1), self.width, self.height, image_width, image_height,
            self.binning[0], self.binning[1], *self.roi,
        )


def camera_model_from_msg(msg) -> Optional[CameraModel]:
    """CameraInfo message -> CameraModel, or None for an uncalibrated camera (K all zeros)."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if K[0, 0] <= 0.0 or K[1, 1] <= 0.0:
        return None
    return CameraModel(
        K=K,
        D=np.asarray(msg.d, dtype=np.float64).reshape(-1),
        distortion_model=str(msg.distortion_model or "plumb_bob"),
        width=int(msg.width),
        height=int(msg.height),
        P=np.asarray(msg.p, dtype=np.float64).reshape(3, 4),
        binning=(int(msg.binning_x), int(msg.binning_y)),
        roi=(int(msg.roi.x_offset), int(msg.roi.y_offset), int(msg.roi.width), int(msg.roi.height)),
    )


def header_stamp_ns(msg, bag_time_ns: int) -> int:
    """Header stamp in ns; the bag's receive time when the driver left the stamp at zero."""
    stamp = msg.header.stamp
    value = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return value if value > 0 else int(bag_time_ns)


def decode_image(msg, msgtype: str) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8, ...) or CompressedImage (jpeg, png)
    -> (H, W, 3) uint8 RGB. Raises ValueError saying what is wrong."""
    if msgtype == IMAGE_TYPE:
        return image_to_rgb(
            str(msg.encoding), int(msg.height), int(msg.width), int(msg.step), msg.data, bool(msg.is_bigendian)
        )
    if msgtype == COMPRESSED_TYPE:
        image_format = str(msg.format)
        if "compresseddepth" in image_format.lower():
            raise ImageFormatError(f"'{image_format}' is a compressed depth image, not a camera image")
        buffer = np.asarray(msg.data, dtype=np.uint8)
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise ImageFormatError(
                f"cv2.imdecode could not decode {buffer.size} bytes of format '{image_format}' (jpeg or png expected)"
            )
        if decoded.dtype == np.uint16:
            decoded = (decoded >> 8).astype(np.uint8)
        if decoded.ndim == 2:
            return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
        if decoded.shape[2] == 4:
            return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    raise ImageFormatError(f"message type {msgtype} is not an image")


def decode_depth(msg) -> np.ndarray:
    """Depth image (32FC1 metres, 16UC1 / mono16 millimetres) -> (H, W) float32 metres, 0 = invalid."""
    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if encoding == "32FC1":
        dtype, scale = np.dtype(">f4" if msg.is_bigendian else "<f4"), 1.0
    elif encoding in ("16UC1", "mono16"):
        dtype, scale = np.dtype(">u2" if msg.is_bigendian else "<u2"), 0.001
    else:
        raise ImageFormatError(f"depth encoding '{encoding}' is not supported (32FC1 metres, 16UC1 millimetres)")
    buffer = np.asarray(msg.data, dtype=np.uint8)
    if step < width * dtype.itemsize or buffer.size < step * height:
        raise ImageFormatError(f"depth image {width}x{height} step {step} has only {buffer.size} bytes")
    rows = buffer[: step * height].reshape(height, step)[:, : width * dtype.itemsize]
    depth = np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth <= 0.0)] = 0.0
    return depth


def odometry_position(msg) -> np.ndarray:
    """nav_msgs/Odometry -> (3,) position of child_frame_id in the odometry frame."""
    position = msg.pose.pose.position
    return np.array([position.x, position.y, position.z], dtype=np.float64)


def interpolate_positions(
    stamps_ns: np.ndarray, positions: np.ndarray, query_ns: np.ndarray, max_extrapolation_s: float = 0.05
) -> np.ndarray:
    """Linear interpolation of positions (N, 3) at stamps (N,) to query stamps (M,) -> (M, 3).

    Queries more than max_extrapolation_s outside the odometry's time range get NaN.
    """
    query_ns = np.asarray(query_ns, dtype=np.int64)
    result = np.full((query_ns.size, 3), np.nan)
    if len(stamps_ns) == 0:
        return result
    order = np.argsort(stamps_ns, kind="stable")
    stamps = (np.asarray(stamps_ns, dtype=np.int64)[order] - stamps_ns[order][0]).astype(np.float64)
    values = np.asarray(positions, dtype=np.float64)[order]
    query = (query_ns - stamps_ns[order][0]).astype(np.float64)
    for axis in range(3):
        result[:, axis] = np.interp(query, stamps, values[:, axis])
    margin = max_extrapolation_s * 1e9
    outside = (query < stamps[0] - margin) | (query > stamps[-1] + margin)
    result[outside] = np.nan
    return result


# --------------------------------------------------------------------------- files


def storage_files(bag_path: Path) -> List[Path]:
    """Storage files of a bag: the file itself, or the .mcap/.db3 files of a bag directory."""
    if bag_path.is_file():
        return [bag_path]
    listed: List[Path] = []
    metadata = bag_path / "metadata.yaml"
    if metadata.exists():
        try:
            import yaml

            info = yaml.safe_load(metadata.read_text()) or {}
            names = info.get("rosbag2_bagfile_information", {}).get("relative_file_paths", [])
            listed = [bag_path / Path(name).name for name in names if (bag_path / Path(name).name).exists()]
        except Exception:  # unreadable metadata: fall back to the files present
            listed = []
    if not listed:
        listed = sorted(list(bag_path.glob("*.mcap")) + list(bag_path.glob("*.db3")))
    return listed


def bag_fingerprint(bag_path: Path) -> str:
    """Cache key of a bag's content: name, size, mtime and the first and last 64 KiB of each file."""
    digest = hashlib.sha256()
    for path in storage_files(bag_path):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(65536))
            if stat.st_size > 65536:
                handle.seek(max(65536, stat.st_size - 65536))
                digest.update(handle.read())
    return digest.hexdigest()[:20]


# --------------------------------------------------------------------------- salvage scanners


class _Damage(Exception):
    """Raised inside the scanners; text says what and where."""


def _zstd_decompress(data: bytes, size: int) -> bytes:
    try:
        from backports import zstd  # what rosbags uses on Python < 3.14
    except ImportError:
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    return zstd.decompress(data)


def _decompress_chunk(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        return _zstd_decompress(data, size)
    if compression == "lz4":
        from lz4.frame import decompress

        return decompress(data)
    raise _Damage(f"unsupported chunk compression '{compression}'")


def _read_string(buffer: memoryview, offset: int) -> Tuple[str, int]:
    (length,) = struct.unpack_from("<I", buffer, offset)
    end = offset + 4 + length
    if end > len(buffer):
        raise _Damage("string runs past its record")
    return bytes(buffer[offset + 4 : end]).decode("utf-8"), end


def _scan_mcap(path: Path, damage: List[str]) -> Iterator[Tuple[str, str, int, bytes]]:
    """Sequentially read an MCAP file record by record (no summary needed).

    Yields (topic, msgtype, log_time_ns, cdr bytes). A corrupt chunk is skipped; a cut-off
    file stops the scan. Each problem is appended to `damage` with its byte offset.
    """
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise _Damage(f"{path} is empty")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)  # large bags: no full read
        try:
            yield from _scan_mcap_buffer(path, mapped, damage)
        finally:
            try:
                mapped.close()
            except BufferError:  # a view is still referenced; the mapping closes when it is freed
                pass


def _scan_mcap_buffer(path: Path, data, damage: List[str]) -> Iterator[Tuple[str, str, int, bytes]]:
    view = memoryview(data)
    if bytes(view[:8]) != MCAP_MAGIC:
        raise _Damage(f"{path} does not start with the MCAP magic bytes")
    schemas: Dict[int, str] = {}
    channels: Dict[int, Tuple[str, str]] = {}

    def records(buffer: memoryview, base_offset: int, in_chunk: bool):
        """Yield (opcode, body, offset, complete); an uncompressed chunk cut off by the end of
        the file is yielded with complete=False so its whole records can still be read."""
        offset = 0
        end = len(buffer)
        while offset < end:
            if offset + 9 > end:
                raise _Damage(f"record header cut off at byte {base_offset + offset}")
            opcode = buffer[offset]
            (length,) = struct.unpack_from("<Q", buffer, offset + 1)
            if opcode == 0 or offset + 9 + length > end:
                problem = (
                    f"record (opcode 0x{opcode:02x}, {length} bytes) at byte {base_offset + offset} runs past the "
                    f"end of the {'chunk' if in_chunk else 'file'} ({base_offset + end} bytes)"
                )
                if opcode == 0x06 and not in_chunk:
                    yield opcode, buffer[offset + 9 :], base_offset + offset, False
                raise _Damage(problem)
            yield opcode, buffer[offset + 9 : offset + 9 + length], base_offset + offset, True
            offset += 9 + length

    def handle(opcode: int, body: memoryview, offset: int):
        if opcode == 0x03:  # Schema
            (schema_id,) = struct.unpack_from("<H", body, 0)
            name, _ = _read_string(body, 2)
            schemas[schema_id] = name
        elif opcode == 0x04:  # Channel
            channel_id, schema_id = struct.unpack_from("<HH", body, 0)
            topic, _ = _read_string(body, 4)
            channels[channel_id] = (topic, schemas.get(schema_id, ""))
        elif opcode == 0x05:  # Message
            if len(body) < 22:
                raise _Damage(f"message record at byte {offset} is too short")
            channel_id, _, log_time, _ = struct.unpack_from("<HIQQ", body, 0)
            if channel_id not in channels:
                raise _Damage(f"message at byte {offset} names unknown channel {channel_id}")
            topic, msgtype = channels[channel_id]
            return topic, msgtype, log_time, bytes(body[22:])
        return None

    last_time = None
    try:
        for opcode, body, offset, complete in records(view[8:], 8, in_chunk=False):
            if opcode == 0x06:  # Chunk: decompress and walk its records; skip it when corrupt
                chunk_start_ns = None
                messages = []
                try:
                    chunk_start_ns, _, size, _crc = struct.unpack_from("<QQQI", body, 0)
                    compression, position = _read_string(body, 28)
                    (compressed_size,) = struct.unpack_from("<Q", body, position)
                    payload = bytes(body[position + 8 : position + 8 + compressed_size])
                    if not complete and compression == "":
                        # Cut-off uncompressed chunk: keep its whole records, then stop.
                        try:
                            for inner in records(memoryview(payload), offset + 9 + position + 8, in_chunk=True):
                                item = handle(*inner[:3])
                                if item is not None:
                                    messages.append(item)
                        except (_Damage, struct.error, UnicodeDecodeError):
                            pass
                        for item in messages:
                            last_time = item[2]
                            yield item
                        continue
                    if len(payload) != compressed_size:
                        raise _Damage("compressed data runs past the chunk")
                    content = _decompress_chunk(payload, compression, size)
                    if len(content) != size:
                        raise _Damage(f"chunk decompressed to {len(content)} bytes, expected {size}")
                    for inner in records(memoryview(content), 0, in_chunk=True):
                        item = handle(*inner[:3])
                        if item is not None:
                            messages.append(item)
                except (_Damage, struct.error, UnicodeDecodeError, RuntimeError, ValueError) as error:
                    if not complete:
                        continue  # the outer scanner reports the cut-off file
                    stamped = f" with messages from bag time {_seconds(chunk_start_ns)}" if chunk_start_ns else ""
                    damage.append(f"{path}: corrupt chunk at byte {offset}{stamped} skipped: {error}")
                    continue
                for item in messages:
                    last_time = item[2]
                    yield item
            elif opcode == 0x02:  # Footer
                return
            else:
                item = handle(opcode, body, offset)
                if item is not None:
                    last_time = item[2]
                    yield item
    except (_Damage, struct.error, UnicodeDecodeError) as error:
        kept = f"; messages up to bag time {_seconds(last_time)} were read" if last_time is not None else ""
        damage.append(f"{path}: {error}{kept}")


def _seconds(stamp_ns: int) -> str:
    return f"{stamp_ns * 1e-9:.3f} s"


def _scan_sqlite(path: Path, damage: List[str]) -> Iterator[Tuple[str, str, int, bytes]]:
    """Read a rosbag2 .db3 file row by row, tolerating a cut-off file.

    writable_schema makes SQLite use the pages present instead of refusing a file shorter
    than its header says; rows are read until the first unreadable page.
    """
    connection = None
    try:
        connection = sqlite3.connect(f"file:{pathname2url(str(path.resolve()))}?mode=ro", uri=True)
        connection.execute("PRAGMA writable_schema=ON")
        topics = {
            int(row[0]): (str(row[1]), str(row[2]))
            for row in connection.execute("SELECT id, name, type FROM topics")
        }
    except sqlite3.DatabaseError as error:
        if connection is not None:
            connection.close()
        raise _Damage(f"{path} is not a readable rosbag2 sqlite3 file ({error})") from None
    last_time = None
    count = 0
    try:
        for topic_id, timestamp, data in connection.execute(
            "SELECT topic_id, timestamp, data FROM messages ORDER BY id"
        ):
            if topic_id not in topics or timestamp is None or not isinstance(data, bytes):
                raise sqlite3.DatabaseError("row with missing fields")
            topic, msgtype = topics[topic_id]
            last_time = int(timestamp)
            count += 1
            yield topic, msgtype, last_time, data
    except sqlite3.DatabaseError as error:
        where = f"after message {count}" + (f" stamped {_seconds(last_time)}" if last_time is not None else "")
        damage.append(f"{path}: unreadable from {where}: {error}")
    finally:
        connection.close()


# --------------------------------------------------------------------------- reader


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
            except _Damage as salvage_error:
                raise BagError(f"cannot read bag {self.path}: {error}; {salvage_error}") from None
            if not topics:
                raise BagError(f"cannot read bag {self.path}: {error} (no messages could be salvaged)")
            return {name: TopicSummary(name, msgtype, count) for name, (msgtype, count) in topics.items()}

    def _salvage_topics(self, damage: List[str]) -> Dict[str, Tuple[str, int]]:
        counts: Dict[str, List] = {}
        for storage in storage_files(self.path):
            scanner = _scan_mcap if storage.suffix == ".mcap" else _scan_sqlite
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
            scanner = _scan_mcap if storage.suffix == ".mcap" else _scan_sqlite
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
                            f"{storage}: message on {topic} at {_seconds(bag_time)} cannot be deserialized ({error})"
                        )
                        continue
                    yield topic, msgtype, bag_time, msg
            except _Damage as error:
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


# --------------------------------------------------------------------------- topic discovery


@dataclass
class TopicSelection:
    """Topics chosen in one bag; "" means not used."""

    image: str = ""
    camera_info: str = ""
    right_image: str = ""
    right_camera_info: str = ""
    odometry: str = ""
    depth: str = ""
    image_type: str = ""
    right_image_type: str = ""

    def as_dict(self) -> Dict[str, str]:
        return {
            "image_topic": self.image,
            "camera_info_topic": self.camera_info,
            "right_image_topic": self.right_image,
            "right_camera_info_topic": self.right_camera_info,
            "odometry_topic": self.odometry,
            "depth_topic": self.depth,
        }


def camera_namespace(topic: str) -> str:
    """/cam/image_raw/compressed -> /cam; /cam/camera_info -> /cam."""
    parts = topic.rstrip("/").split("/")
    if len(parts) > 2 and parts[-1] in TRANSPORT_SUFFIXES:
        parts = parts[:-1]
    return "/".join(parts[:-1]) or "/"


def _require_topic(reader: BagReader, topic: str, option: str, msgtypes: Sequence[str]) -> None:
    summary = reader.topics.get(topic)
    if summary is None:
        raise BagError(
            f"{option}='{topic}' is not in bag {reader.path}. Topics found:\n{reader.describe_topics()}\n"
            f"Set data.{option}= to one of them (a train override, or the data: section of the config)."
        )
    if summary.msgtype not in msgtypes:
        raise BagError(
            f"{option}='{topic}' in bag {reader.path} has type {summary.msgtype}, expected {' or '.join(msgtypes)}"
        )
    if summary.count == 0:
        raise BagError(
            f"topic {topic} ({option}) is listed in bag {reader.path} but has no messages. Topics found:\n"
            f"{reader.describe_topics()}"
        )


def _image_is_depth(reader: BagReader, topic: str) -> bool:
    summary = reader.topics[topic]
    if summary.msgtype == COMPRESSED_TYPE:
        return "depth" in topic.lower().split("/")[-1] or topic.endswith("compressedDepth")
    msg = reader.first_message(topic)
    if msg is None:
        return False
    encoding = str(msg.encoding)
    return encoding in DEPTH_ENCODINGS or (encoding == "mono16" and "depth" in topic.lower())


def _info_beside(reader: BagReader, image_topic: str) -> str:
    namespace = camera_namespace(image_topic)
    infos = [
        t for t in reader.topics_of_type(CAMERA_INFO_TYPE, with_messages=False) if camera_namespace(t) == namespace
    ]
    with_messages = [t for t in infos if reader.topics[t].count > 0]
    return (with_messages or infos or [""])[0]


def _stereo_side(reader: BagReader, image_topic: str, info_topic: str) -> str:
    """'left', 'right' or '' from CameraInfo P[3] (ROS: -fx * baseline on the right camera) or the name."""
    if info_topic and reader.topics[info_topic].count > 0:
        msg = reader.first_message(info_topic)
        if msg is not None and float(msg.p[3]) != 0.0:
            return "right"
    name = image_topic.lower()
    if "right" in name:
        return "right"
    if "left" in name:
        return "left"
    return "left" if info_topic else ""


def discover_topics(
    reader: BagReader,
    *,
    image_topic: str = "",
    camera_info_topic: str = "",
    right_image_topic: str = "",
    right_camera_info_topic: str = "",
    odometry_topic: str = "",
    depth_topic: str = "",
    need_stereo: bool = False,
    have_config_K: bool = False,
) -> TopicSelection:
    """Choose the topics to train from; BagError lists the topics found and the option to set."""
    selection = TopicSelection()
    listing = f"Topics in {reader.path}:\n{reader.describe_topics()}"
    if not reader.topics or all(summary.count == 0 for summary in reader.topics.values()):
        raise BagError(f"bag {reader.path} has no messages. {listing}")
    image_topics = reader.topics_of_type(*IMAGE_TYPES)
    colour_topics = [t for t in image_topics if not _image_is_depth(reader, t)]
    depth_topics = [t for t in image_topics if t not in colour_topics and reader.topics[t].msgtype == IMAGE_TYPE]

    # Left / mono camera.
    if image_topic:
        _require_topic(reader, image_topic, "image_topic", IMAGE_TYPES)
        selection.image = image_topic
    else:
        if not colour_topics:
            empty = reader.topics_of_type(*IMAGE_TYPES, with_messages=False)
            detail = f" (listed but empty: {', '.join(empty)})" if empty else ""
            raise BagError(
                f"no camera images (sensor_msgs/Image or CompressedImage) in bag {reader.path}{detail}. {listing}"
            )
        cameras = [(t, _info_beside(reader, t)) for t in colour_topics]
        calibrated = [(t, info) for t, info in cameras if info]
        if not calibrated:
            if len(colour_topics) == 1:
                selection.image = colour_topics[0]
            else:
                raise BagError(
                    f"several image topics and none has a CameraInfo beside it in bag {reader.path}: "
                    f"{', '.join(colour_topics)}. Set data.image_topic (and data.camera_info_topic or data.K). {listing}"
                )
        elif len(calibrated) == 1:
            selection.image = calibrated[0][0]
        else:
            # Several cameras: a stereo pair resolves itself (left: P[3] == 0, right: P[3] != 0).
            left = [t for t, info in calibrated if _stereo_side(reader, t, info) == "left"]
            if len(left) == 1 and len(calibrated) == 2:
                selection.image = left[0]
            else:
                candidates = ", ".join(t for t, _ in calibrated)
                raise BagError(
                    f"ambiguous camera topics in bag {reader.path}: {candidates} all have a CameraInfo beside them. "
                    f"Set data.image_topic (and data.right_image_topic for stereo) to choose. {listing}"
                )
    selection.image_type = reader.topics[selection.image].msgtype

    if camera_info_topic:
        _require_topic(reader, camera_info_topic, "camera_info_topic", (CAMERA_INFO_TYPE,))
        selection.camera_info = camera_info_topic
    else:
        selection.camera_info = _info_beside(reader, selection.image)
        if selection.camera_info and reader.topics[selection.camera_info].count == 0:
            if not have_config_K:
                raise BagError(
                    f"camera_info topic {selection.camera_info} is listed in bag {reader.path} but has no messages; "
                    f"give the intrinsics as data.K in the config (3x3 row-major). {listing}"
                )
            selection.camera_info = ""
        if not selection.camera_info and not have_config_K:
            infos = reader.topics_of_type(CAMERA_INFO_TYPE)
            hint = f"set data.camera_info_topic to one of {', '.join(infos)}, or " if infos else ""
            raise BagError(
                f"no CameraInfo for {selection.image} in bag {reader.path} (looked for one in "
                f"{camera_namespace(selection.image)}/): {hint}give the intrinsics as data.K in the config "
                f"(3x3 row-major, native image size), or learn them (model.intrinsics=learned, mode mono or "
                f"mono+stereo). {listing}"
            )

    # Right camera.
    if need_stereo:
        if right_image_topic:
            _require_topic(reader, right_image_topic, "right_image_topic", IMAGE_TYPES)
            selection.right_image = right_image_topic
        else:
            others = [t for t in colour_topics if t != selection.image]
            right = [t for t in others if _stereo_side(reader, t, _info_beside(reader, t)) == "right"]
            if len(others) == 1:
                selection.right_image = others[0]
            elif len(right) == 1:
                selection.right_image = right[0]
            elif not others:
                raise BagError(
                    f"stereo training needs a second camera but bag {reader.path} has only {selection.image}. "
                    f"Use mode=mono, or set data.right_image_topic. {listing}"
                )
            else:
                raise BagError(
                    f"ambiguous right camera in bag {reader.path}: {', '.join(others)}. "
                    f"Set data.right_image_topic. {listing}"
                )
        selection.right_image_type = reader.topics[selection.right_image].msgtype
        if right_camera_info_topic:
            _require_topic(reader, right_camera_info_topic, "right_camera_info_topic", (CAMERA_INFO_TYPE,))
            selection.right_camera_info = right_camera_info_topic
        else:
            selection.right_camera_info = _info_beside(reader, selection.right_image)
            if selection.right_camera_info and reader.topics[selection.right_camera_info].count == 0:
                selection.right_camera_info = ""

    # Odometry (optional; metric scale in mono mode).
    if odometry_topic == "none":
        pass
    elif odometry_topic:
        _require_topic(reader, odometry_topic, "odometry_topic", (ODOMETRY_TYPE,))
        selection.odometry = odometry_topic
    else:
        odometry = reader.topics_of_type(ODOMETRY_TYPE)
        if len(odometry) == 1:
            selection.odometry = odometry[0]
        elif len(odometry) > 1:
            raise BagError(
                f"several odometry topics in bag {reader.path}: {', '.join(odometry)}. "
                f"Set data.odometry_topic to the one that tracks the camera, or 'none'. {listing}"
            )

    # Ground-truth depth (optional; validation metrics).
    if depth_topic == "none":
        pass
    elif depth_topic:
        _require_topic(reader, depth_topic, "depth_topic", (IMAGE_TYPE,))
        selection.depth = depth_topic
    elif depth_topics:
        if len(depth_topics) == 1:
            selection.depth = depth_topics[0]
        else:
            preferred = [t for t in depth_topics if "aligned" in t or "registered" in t]
            if len(preferred) != 1:
                preferred = [t for t in depth_topics if camera_namespace(t) == camera_namespace(selection.image)]
            if len(preferred) == 1:
                selection.depth = preferred[0]
            else:
                raise BagError(
                    f"several depth topics in bag {reader.path}: {', '.join(depth_topics)}. Set data.depth_topic to "
                    f"the one registered to {selection.image}, or 'none'. {listing}"
                )
    return selection


# --------------------------------------------------------------------------- reading a recording


@dataclass
class StreamItem:
    """One decoded message. role: image | right_image | depth | camera_info | right_camera_info | odometry."""

    role: str
    stamp_ns: int
    data: object  # RGB uint8 (H, W, 3) | depth float32 (H, W) | CameraModel | position (3,)


@dataclass
class StreamSummary:
    """Filled while iterating :func:`stream_recording`."""

    camera: Optional[CameraModel] = None  # first calibration of the camera (the one frames are kept for)
    right_camera: Optional[CameraModel] = None
    image_size: Optional[Tuple[int, int]] = None  # (w, h) of the first decoded image
    right_image_size: Optional[Tuple[int, int]] = None
    depth_size: Optional[Tuple[int, int]] = None
    decode_failures: Dict[str, int] = field(default_factory=dict)
    # topic -> reason -> frames left out: "calibration_changed" (taken while the camera_info differed
    # from the first one) or "size_changed" (another size than the topic's first frame).
    skipped: Dict[str, Dict[str, int]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


# Images wait for the camera_info with their own stamp (drivers publish the pair back to back, in
# either order) for at most this many later images on the same topic.
CALIBRATION_WAIT_FRAMES = 2


def _size_text(size: Tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _calibration_text(model: CameraModel) -> str:
    return f"K {model.K.reshape(-1).tolist()} {model.width}x{model.height} D {model.D.tolist()}"


@dataclass
class _Inconsistency:
    """Frames left out for one kind of problem on one topic; becomes one note when the stream ends."""

    where: str  # topic, stamp and position in the bag of the first occurrence
    detail: str  # what differs, first occurrence
    skipped: int = 0
    variants: Counter = field(default_factory=Counter)  # the differing sizes / number of changes


class _CalibrationTrack:
    """Whether a camera's calibration at a given stamp is its first one (camera_info history)."""

    def __init__(self, image_topic: str, info_topic: str, camera_attr: str):
        self.image_topic, self.info_topic, self.camera_attr = image_topic, info_topic, camera_attr
        self.flips: List[Tuple[int, bool]] = []  # (stamp, matches the first) where the state changes; sorted
        self.latest_info_ns: Optional[int] = None
        self.pending: List[Tuple[int, str, str, object, str]] = []  # (stamp, topic, msgtype, msg, where)
        self.images = 0
        self.problem: Optional[_Inconsistency] = None
        self.departures = 0  # times the calibration changed away from the first one
        self.returned = False  # ... and back to it

    def matches_at(self, stamp_ns: int) -> bool:
        """True when the camera_info in effect at stamp_ns (latest with stamp <= it) is the first one."""
        position = bisect.bisect_right(self.flips, (stamp_ns, True))
        return True if position == 0 else self.flips[position - 1][1]

    def add_info(self, stamp_ns: int, matches: bool) -> None:
        before = self.matches_at(stamp_ns)
        if matches != before:
            bisect.insort(self.flips, (stamp_ns, matches))
            if matches:
                self.returned = True
            else:
                self.departures += 1
        self.latest_info_ns = stamp_ns if self.latest_info_ns is None else max(self.latest_info_ns, stamp_ns)

    def ready(self, flush: bool) -> List[Tuple[int, str, str, object, str]]:
        """Pending images whose camera_info is known (or that waited long enough), oldest first."""
        count = 0
        for stamp, *_ in self.pending:
            decided = (
                flush
                or (self.latest_info_ns is not None and self.latest_info_ns >= stamp)
                or len(self.pending) - count > CALIBRATION_WAIT_FRAMES
            )
            if not decided:
                break
            count += 1
        released, self.pending = self.pending[:count], self.pending[count:]
        return released


def stream_recording(reader: BagReader, selection: TopicSelection, summary: StreamSummary) -> Iterator[StreamItem]:
    """Decode the selected topics in one pass, keeping only frames consistent with the first ones.

    * Calibration: each camera keeps the first calibrated camera_info as its calibration. Images
      taken while the camera_info in effect (the latest with a stamp <= the image's; an image waits
      up to CALIBRATION_WAIT_FRAMES later images for the info of its own stamp) differs from it
      are skipped; when the calibration changes back, frames are used again. camera_info items
      are yielded only when they match the first calibration.
    * Size: images (per camera) and depth images of another size than the topic's first decoded
      frame are skipped.
    * Images that fail to decode are skipped and counted in summary.decode_failures.

    Skipped frames are counted in summary.skipped. Each kind of problem gets one note in
    summary.notes (written when the stream ends): topic, stamp and time into the bag of the first
    occurrence, old and new values, frames skipped, and what to do. Images of one topic are
    yielded in bag order; relative to other topics they may come up to a few messages late.
    """
    roles: Dict[str, List[str]] = {}
    for role, topic in (
        ("image", selection.image),
        ("right_image", selection.right_image),
        ("depth", selection.depth),
        ("camera_info", selection.camera_info),
        ("right_camera_info", selection.right_camera_info),
        ("odometry", selection.odometry),
    ):
        if topic:
            roles.setdefault(topic, []).append(role)
    tracks: Dict[str, _CalibrationTrack] = {}  # image role -> its camera's calibration history
    if selection.camera_info:
        tracks["image"] = _CalibrationTrack(selection.image, selection.camera_info, "camera")
    if selection.right_camera_info and selection.right_image:
        tracks["right_image"] = _CalibrationTrack(selection.right_image, selection.right_camera_info, "right_camera")
    info_tracks = {"camera_info": tracks.get("image"), "right_camera_info": tracks.get("right_image")}
    size_problems: Dict[Tuple[str, str], _Inconsistency] = {}  # (role, topic) -> problem
    image_counts: Counter = Counter()  # images seen per topic

    def skip(topic: str, reason: str) -> None:
        counts = summary.skipped.setdefault(topic, {})
        counts[reason] = counts.get(reason, 0) + 1

    def size_ok(role: str, topic: str, size: Tuple[int, int], where: str) -> bool:
        attr = {"image": "image_size", "right_image": "right_image_size", "depth": "depth_size"}[role]
        first = getattr(summary, attr)
        if first is None:
            setattr(summary, attr, size)
            return True
        if first == size:
            return True
        problem = size_problems.get((role, topic))
        if problem is None:
            problem = size_problems[(role, topic)] = _Inconsistency(
                where, f"{_size_text(size)} after {_size_text(first)}"
            )
        problem.skipped += 1
        problem.variants[_size_text(size)] += 1
        skip(topic, "size_changed")
        return False

    def image_item(role: str, topic: str, msgtype: str, msg, stamp: int, where: str) -> Optional[StreamItem]:
        track = tracks.get(role)
        if track is not None and not track.matches_at(stamp):
            track.problem.skipped += 1
            skip(topic, "calibration_changed")
            return None
        try:
            rgb = decode_image(msg, msgtype)  # global lookup: tests may count calls
        except (ImageFormatError, ValueError) as error:
            summary.decode_failures[topic] = summary.decode_failures.get(topic, 0) + 1
            if summary.decode_failures[topic] == 1:
                summary.notes.append(f"cannot decode image on {where}: {error}")
            return None
        if not size_ok(role, topic, (rgb.shape[1], rgb.shape[0]), where):
            return None
        return StreamItem(role, stamp, rgb)

    def release(role: str, flush: bool = False) -> Iterator[StreamItem]:
        for stamp, topic, msgtype, msg, where in tracks[role].ready(flush):
            item = image_item(role, topic, msgtype, msg, stamp, where)
            if item is not None:
                yield item

    start_ns = None
    for topic, msgtype, bag_time, msg in reader.messages(list(roles)):
        stamp = header_stamp_ns(msg, bag_time)
        start_ns = stamp if start_ns is None else min(start_ns, stamp)
        where = f"{topic} at stamp {stamp * 1e-9:.3f} s ({(stamp - start_ns) * 1e-9:.2f} s into bag {reader.path})"
        for role in roles[topic]:
            if role in ("camera_info", "right_camera_info"):
                model = camera_model_from_msg(msg)
                if model is None:
                    continue
                attr = "camera" if role == "camera_info" else "right_camera"
                first = getattr(summary, attr)
                if first is None:
                    first = model
                    setattr(summary, attr, model)
                matches = first.same_calibration(model)
                track = info_tracks[role]
                if track is not None:
                    if not matches and track.problem is None:
                        track.problem = _Inconsistency(
                            where, f"{_calibration_text(model)} differs from the first {_calibration_text(first)}"
                        )
                    track.add_info(stamp, matches)
                    yield from release("image" if role == "camera_info" else "right_image")
                if matches:
                    yield StreamItem(role, stamp, model)
            elif role == "odometry":
                yield StreamItem(role, stamp, odometry_position(msg))
            elif role == "depth":
                try:
                    depth = decode_depth(msg)
                except (ImageFormatError, ValueError) as error:
                    summary.decode_failures[topic] = summary.decode_failures.get(topic, 0) + 1
                    if summary.decode_failures[topic] == 1:
                        summary.notes.append(f"cannot decode depth on {where}: {error}")
                    continue
                if size_ok(role, topic, (depth.shape[1], depth.shape[0]), where):
                    yield StreamItem(role, stamp, depth)
            else:  # image, right_image
                image_counts[topic] += 1
                if role in tracks:
                    tracks[role].pending.append((stamp, topic, msgtype, msg, where))
                    yield from release(role)
                else:
                    item = image_item(role, topic, msgtype, msg, stamp, where)
                    if item is not None:
                        yield item
    for role in tracks:
        yield from release(role, flush=True)
    summary.notes.extend(_consistency_notes(tracks, size_problems, image_counts))


def _consistency_notes(tracks: Dict[str, "_CalibrationTrack"], size_problems: Dict[Tuple[str, str], _Inconsistency],
                       image_counts: Counter) -> List[str]:
    """One note per calibration change (per camera) and per size change (per topic)."""
    notes = []
    for track in tracks.values():
        problem = track.problem
        if problem is None:
            continue
        stretches = (
            f"it differed {track.departures} times" if track.departures > 1 else "it differed once"
        ) + (", and frames taken after it changed back are used" if track.returned else " and never changed back")
        notes.append(
            f"camera calibration changes on {problem.where}: {problem.detail}. {problem.skipped} of "
            f"{image_counts[track.image_topic]} images on {track.image_topic}, taken while the calibration differed "
            f"from the first, were skipped ({stretches}). To train on them, split the bag at that time and pass the "
            f"parts as separate --bag (each part then has one calibration)."
        )
    for (role, topic), problem in size_problems.items():
        sizes = ", ".join(f"{size} ({count})" for size, count in sorted(problem.variants.items()))
        if role == "depth":
            notes.append(
                f"depth image size changes on {problem.where}: {problem.detail}; {problem.skipped} depth images of "
                f"another size were skipped ({sizes}), so ground truth is missing at those times. Record depth at "
                f"a fixed resolution, or set data.depth_topic to 'none'."
            )
        else:
            notes.append(
                f"image size changes on {problem.where}: {problem.detail}; {problem.skipped} of {image_counts[topic]} "
                f"images on {topic} had another size and were skipped ({sizes}). Record at a fixed resolution, or "
                f"split the bag at that time and pass the parts as separate --bag."
            )
    return notes


def describe_selection(selection: TopicSelection) -> str:
    return json.dumps({k: v for k, v in selection.as_dict().items() if v})


__all__ = [
    "BagError",
    "BagReader",
    "CameraModel",
    "StreamItem",
    "StreamSummary",
    "TopicSelection",
    "TopicSummary",
    "bag_fingerprint",
    "camera_model_from_msg",
    "camera_namespace",
    "decode_depth",
    "decode_image",
    "describe_selection",
    "discover_topics",
    "header_stamp_ns",
    "interpolate_positions",
    "odometry_position",
    "storage_files",
    "stream_recording",
]
