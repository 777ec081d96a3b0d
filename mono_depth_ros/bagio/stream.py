"""One pass over a recording: the selected topics decoded, frames inconsistent with the first ones left out.

:func:`stream_recording` yields :class:`StreamItem` s (images, depth, calibration, odometry
positions) and fills a :class:`StreamSummary`: a camera recalibrated or resized mid-bag keeps
the frames that match its first calibration and size; the others are skipped and explained in
one note each.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from ..image_conversion import ImageFormatError
from .decode import CameraModel, camera_model_from_msg, decode_depth, decode_image, header_stamp_ns, odometry_position
from .reader import BagReader
from .topics import TopicSelection


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
