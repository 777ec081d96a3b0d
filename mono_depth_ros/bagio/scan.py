"""Storage files of a bag, its cache fingerprint, and the salvage scanners for damaged bags.

The scanners read MCAP record by record and rosbag2 sqlite3 row by row, without the summary
or index a healthy file has: a cut-off file is read up to the damage, a corrupt MCAP chunk is
skipped. Each yields (topic, msgtype, log_time_ns, cdr bytes) and appends what failed, and
where, to the ``damage`` list it is given; :class:`ScanDamage` stops a scan.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import sqlite3
import struct
from pathlib import Path
from typing import Dict, Iterator, List, Tuple
from urllib.request import pathname2url

MCAP_MAGIC = b"\x89MCAP0\r\n"


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


class ScanDamage(Exception):
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
    raise ScanDamage(f"unsupported chunk compression '{compression}'")


def _read_string(buffer: memoryview, offset: int) -> Tuple[str, int]:
    (length,) = struct.unpack_from("<I", buffer, offset)
    end = offset + 4 + length
    if end > len(buffer):
        raise ScanDamage("string runs past its record")
    return bytes(buffer[offset + 4 : end]).decode("utf-8"), end


def scan_mcap(path: Path, damage: List[str]) -> Iterator[Tuple[str, str, int, bytes]]:
    """Sequentially read an MCAP file record by record (no summary needed).

    Yields (topic, msgtype, log_time_ns, cdr bytes). A corrupt chunk is skipped; a cut-off
    file stops the scan. Each problem is appended to `damage` with its byte offset.
    """
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ScanDamage(f"{path} is empty")
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
        raise ScanDamage(f"{path} does not start with the MCAP magic bytes")
    schemas: Dict[int, str] = {}
    channels: Dict[int, Tuple[str, str]] = {}

    def records(buffer: memoryview, base_offset: int, in_chunk: bool):
        """Yield (opcode, body, offset, complete); an uncompressed chunk cut off by the end of
        the file is yielded with complete=False so its whole records can still be read."""
        offset = 0
        end = len(buffer)
        while offset < end:
            if offset + 9 > end:
                raise ScanDamage(f"record header cut off at byte {base_offset + offset}")
            opcode = buffer[offset]
            (length,) = struct.unpack_from("<Q", buffer, offset + 1)
            if opcode == 0 or offset + 9 + length > end:
                problem = (
                    f"record (opcode 0x{opcode:02x}, {length} bytes) at byte {base_offset + offset} runs past the "
                    f"end of the {'chunk' if in_chunk else 'file'} ({base_offset + end} bytes)"
                )
                if opcode == 0x06 and not in_chunk:
                    yield opcode, buffer[offset + 9 :], base_offset + offset, False
                raise ScanDamage(problem)
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
                raise ScanDamage(f"message record at byte {offset} is too short")
            channel_id, _, log_time, _ = struct.unpack_from("<HIQQ", body, 0)
            if channel_id not in channels:
                raise ScanDamage(f"message at byte {offset} names unknown channel {channel_id}")
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
                        except (ScanDamage, struct.error, UnicodeDecodeError):
                            pass
                        for item in messages:
                            last_time = item[2]
                            yield item
                        continue
                    if len(payload) != compressed_size:
                        raise ScanDamage("compressed data runs past the chunk")
                    content = _decompress_chunk(payload, compression, size)
                    if len(content) != size:
                        raise ScanDamage(f"chunk decompressed to {len(content)} bytes, expected {size}")
                    for inner in records(memoryview(content), 0, in_chunk=True):
                        item = handle(*inner[:3])
                        if item is not None:
                            messages.append(item)
                except (ScanDamage, struct.error, UnicodeDecodeError, RuntimeError, ValueError) as error:
                    if not complete:
                        continue  # the outer scanner reports the cut-off file
                    stamped = f" with messages from bag time {seconds_text(chunk_start_ns)}" if chunk_start_ns else ""
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
    except (ScanDamage, struct.error, UnicodeDecodeError) as error:
        kept = f"; messages up to bag time {seconds_text(last_time)} were read" if last_time is not None else ""
        damage.append(f"{path}: {error}{kept}")


def seconds_text(stamp_ns: int) -> str:
    return f"{stamp_ns * 1e-9:.3f} s"


def scan_sqlite(path: Path, damage: List[str]) -> Iterator[Tuple[str, str, int, bytes]]:
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
        raise ScanDamage(f"{path} is not a readable rosbag2 sqlite3 file ({error})") from None
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
        where = f"after message {count}" + (f" stamped {seconds_text(last_time)}" if last_time is not None else "")
        damage.append(f"{path}: unreadable from {where}: {error}")
    finally:
        connection.close()
