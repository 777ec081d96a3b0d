"""Which topics of a bag to read: the camera, its CameraInfo, a stereo partner, odometry, depth.

One set of rules (:func:`camera_namespace`, :func:`image_is_depth`, :func:`info_beside`,
:func:`stereo_side`, :func:`choose_camera`, :func:`depth_image_topics`) serves three callers,
each with its own error texts because each names its own options:

* :func:`discover_topics` -> :class:`TopicSelection`, for the trainer (``data.image_topic``, ...);
* :func:`select_camera_topics` -> :class:`CameraTopics`, for ``infer_bag`` and ``evaluate``
  (``--image-topic``, ``--camera-info-topic``);
* :func:`select_depth_topic`, the ground truth for ``evaluate`` (``--depth-topic``).

Every problem raises :class:`BagError` listing the topics found and the option to set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from ..msgtypes import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    DEPTH_ENCODINGS,
    IMAGE_TYPE,
    IMAGE_TYPES,
    ODOMETRY_TYPE,
    TRANSPORT_SUFFIXES,
)
from .errors import BagError
from .reader import BagReader


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


def describe_selection(selection: TopicSelection) -> str:
    return json.dumps({k: v for k, v in selection.as_dict().items() if v})


# --------------------------------------------------------------------------- the rules


def camera_namespace(topic: str) -> str:
    """/cam/image_raw/compressed -> /cam; /cam/camera_info -> /cam."""
    parts = topic.rstrip("/").split("/")
    if len(parts) > 2 and parts[-1] in TRANSPORT_SUFFIXES:
        parts = parts[:-1]
    return "/".join(parts[:-1]) or "/"


def image_is_depth(reader: BagReader, topic: str) -> bool:
    """Whether an image topic holds depth: 32FC1 / 16UC1 (mono16 when named depth); compressed: by name."""
    summary = reader.topics[topic]
    if summary.msgtype == COMPRESSED_TYPE:
        return "depth" in topic.lower().split("/")[-1] or topic.endswith("compressedDepth")
    msg = reader.first_message(topic)
    if msg is None:
        return False
    encoding = str(msg.encoding)
    return encoding in DEPTH_ENCODINGS or (encoding == "mono16" and "depth" in topic.lower())


def info_beside(reader: BagReader, image_topic: str) -> str:
    """The CameraInfo topic in the image topic's namespace (one with messages first), or ''."""
    namespace = camera_namespace(image_topic)
    infos = [
        t for t in reader.topics_of_type(CAMERA_INFO_TYPE, with_messages=False) if camera_namespace(t) == namespace
    ]
    with_messages = [t for t in infos if reader.topics[t].count > 0]
    return (with_messages or infos or [""])[0]


def stereo_side(reader: BagReader, image_topic: str, info_topic: str) -> str:
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


def camera_image_topics(reader: BagReader) -> List[str]:
    """Image topics with messages (raw or compressed) that are not depth, sorted."""
    return [t for t in reader.topics_of_type(*IMAGE_TYPES) if not image_is_depth(reader, t)]


def choose_camera(reader: BagReader, cameras: Sequence[str]) -> Tuple[str, List[str]]:
    """The camera among ``cameras`` -> (its topic, or '' when ambiguous; those with a CameraInfo beside them).

    The one with a CameraInfo beside it; else the only camera; of two calibrated cameras, a stereo
    pair resolves itself to the left one (CameraInfo P[3] == 0).
    """
    calibrated = [(t, info) for t, info in ((t, info_beside(reader, t)) for t in cameras) if info]
    names = [t for t, _ in calibrated]
    if not calibrated:
        return (cameras[0] if len(cameras) == 1 else ""), names
    if len(calibrated) == 1:
        return calibrated[0][0], names
    left = [t for t, info in calibrated if stereo_side(reader, t, info) == "left"]
    return (left[0] if len(left) == 1 and len(calibrated) == 2 else ""), names


def depth_image_topics(reader: BagReader, exclude: str = "") -> List[str]:
    """sensor_msgs/Image topics with messages that hold depth (not ``exclude``), sorted."""
    return [t for t in reader.topics_of_type(IMAGE_TYPE) if t != exclude and image_is_depth(reader, t)]


def in_namespace_of(topics: Sequence[str], image_topic: str) -> List[str]:
    """Those of ``topics`` in the camera namespace of ``image_topic``."""
    return [t for t in topics if camera_namespace(t) == camera_namespace(image_topic)]


# --------------------------------------------------------------------------- the trainer's selection


def require_topic(reader: BagReader, topic: str, option: str, msgtypes: Sequence[str]) -> None:
    """BagError unless ``topic`` (given as data.<option>) is in the bag, of one of ``msgtypes``, with messages."""
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
    colour_topics = camera_image_topics(reader)
    depth_topics = depth_image_topics(reader)

    # Left / mono camera.
    if image_topic:
        require_topic(reader, image_topic, "image_topic", IMAGE_TYPES)
        selection.image = image_topic
    else:
        if not colour_topics:
            empty = reader.topics_of_type(*IMAGE_TYPES, with_messages=False)
            detail = f" (listed but empty: {', '.join(empty)})" if empty else ""
            raise BagError(
                f"no camera images (sensor_msgs/Image or CompressedImage) in bag {reader.path}{detail}. {listing}"
            )
        selection.image, calibrated = choose_camera(reader, colour_topics)
        if not selection.image and not calibrated:
            raise BagError(
                f"several image topics and none has a CameraInfo beside it in bag {reader.path}: "
                f"{', '.join(colour_topics)}. Set data.image_topic (and data.camera_info_topic or data.K). {listing}"
            )
        if not selection.image:
            raise BagError(
                f"ambiguous camera topics in bag {reader.path}: {', '.join(calibrated)} all have a CameraInfo beside "
                f"them. Set data.image_topic (and data.right_image_topic for stereo) to choose. {listing}"
            )
    selection.image_type = reader.topics[selection.image].msgtype

    if camera_info_topic:
        require_topic(reader, camera_info_topic, "camera_info_topic", (CAMERA_INFO_TYPE,))
        selection.camera_info = camera_info_topic
    else:
        selection.camera_info = info_beside(reader, selection.image)
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
            require_topic(reader, right_image_topic, "right_image_topic", IMAGE_TYPES)
            selection.right_image = right_image_topic
        else:
            others = [t for t in colour_topics if t != selection.image]
            right = [t for t in others if stereo_side(reader, t, info_beside(reader, t)) == "right"]
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
            require_topic(reader, right_camera_info_topic, "right_camera_info_topic", (CAMERA_INFO_TYPE,))
            selection.right_camera_info = right_camera_info_topic
        else:
            selection.right_camera_info = info_beside(reader, selection.right_image)
            if selection.right_camera_info and reader.topics[selection.right_camera_info].count == 0:
                selection.right_camera_info = ""

    # Odometry (optional; metric scale in mono mode).
    if odometry_topic == "none":
        pass
    elif odometry_topic:
        require_topic(reader, odometry_topic, "odometry_topic", (ODOMETRY_TYPE,))
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
        require_topic(reader, depth_topic, "depth_topic", (IMAGE_TYPE,))
        selection.depth = depth_topic
    elif depth_topics:
        if len(depth_topics) == 1:
            selection.depth = depth_topics[0]
        else:
            preferred = [t for t in depth_topics if "aligned" in t or "registered" in t]
            if len(preferred) != 1:
                preferred = in_namespace_of(depth_topics, selection.image)
            if len(preferred) == 1:
                selection.depth = preferred[0]
            else:
                raise BagError(
                    f"several depth topics in bag {reader.path}: {', '.join(depth_topics)}. Set data.depth_topic to "
                    f"the one registered to {selection.image}, or 'none'. {listing}"
                )
    return selection


# --------------------------------------------------------------------------- the command lines' selection


@dataclass(frozen=True)
class CameraTopics:
    image: str
    image_type: str  # sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage
    camera_info: str


def typed_listing(reader: BagReader, msgtypes: Sequence[str]) -> str:
    """Topics of the given types in the bag, one a line, or '(none)'."""
    names = reader.topics_of_type(*msgtypes, with_messages=False)
    return "\n".join(f"  {reader.topics[name]}" for name in names) or "  (none)"


def _require_flag_topic(reader: BagReader, flag: str, topic: str, msgtypes: Sequence[str], kind: str,
                        listing: str, need_messages: bool = True) -> None:
    """BagError unless ``topic`` (given as ``flag``) is in the bag, of one of ``msgtypes`` (``kind``), with messages."""
    summary = reader.topics.get(topic)
    if summary is None or summary.msgtype not in msgtypes:
        what = "is not in" if summary is None else f"is a {summary.msgtype} topic, not {kind}, in"
        raise BagError(f"{flag} {topic} {what} bag {reader.path}. {listing}")
    if need_messages and summary.count == 0:
        raise BagError(f"{flag} {topic} has no messages in bag {reader.path}. {listing}")


def select_camera_topics(
    reader: BagReader, image_topic: str = "", camera_info_topic: str = "", require_camera_info: bool = True
) -> CameraTopics:
    """The camera image topic (raw or compressed) and its CameraInfo in a bag, as the trainer finds them.

    Given names are checked; otherwise the one image topic with a CameraInfo beside it is taken.
    Without ``require_camera_info`` a camera with no CameraInfo gives camera_info ''.
    Raises BagError listing the image (or CameraInfo) topics the bag has and the option to pass.
    """
    image_listing = f"Image topics in {reader.path}:\n{typed_listing(reader, IMAGE_TYPES)}"
    if image_topic:
        _require_flag_topic(reader, "--image-topic", image_topic, IMAGE_TYPES, "an image topic", image_listing)
    else:
        cameras = camera_image_topics(reader)
        if not cameras:
            raise BagError(
                f"no camera image topic (sensor_msgs/Image or CompressedImage with messages) in bag {reader.path}. "
                f"{image_listing}\nAll topics:\n{reader.describe_topics()}"
            )
        image_topic, calibrated = choose_camera(reader, cameras)
        if not image_topic:
            raise BagError(
                f"several camera image topics in bag {reader.path} ({', '.join(calibrated or cameras)}); "
                f"choose one with --image-topic. {image_listing}"
            )
    image_type = reader.topics[image_topic].msgtype

    info_listing = f"CameraInfo topics in {reader.path}:\n{typed_listing(reader, (CAMERA_INFO_TYPE,))}"
    if camera_info_topic:
        _require_flag_topic(reader, "--camera-info-topic", camera_info_topic, (CAMERA_INFO_TYPE,),
                            "a CameraInfo topic", info_listing, need_messages=False)
    else:
        camera_info_topic = info_beside(reader, image_topic)
        if not camera_info_topic and not require_camera_info:
            return CameraTopics(image_topic, image_type, "")
        if not camera_info_topic:
            raise BagError(
                f"no CameraInfo topic beside {image_topic} in bag {reader.path}: depth needs the camera's "
                f"intrinsics. Pass --camera-info-topic. {info_listing}"
            )
    if reader.topics[camera_info_topic].count == 0 and require_camera_info:
        raise BagError(
            f"CameraInfo topic {camera_info_topic} has no messages in bag {reader.path}; pass --camera-info-topic "
            f"with one that has. {info_listing}"
        )
    return CameraTopics(image_topic, image_type, camera_info_topic)


def select_depth_topic(reader: BagReader, image_topic: str, depth_topic: str = "") -> str:
    """The ground-truth depth topic (sensor_msgs/Image 32FC1 or 16UC1) for ``image_topic``.

    Given: checked. Otherwise the one depth image topic, or the one in the image's namespace.
    Raises BagError listing the bag's image topics.
    """
    listing = f"Image topics in {reader.path}:\n{typed_listing(reader, IMAGE_TYPES)}"
    if depth_topic:
        _require_flag_topic(reader, "--depth-topic", depth_topic, (IMAGE_TYPE,), "a sensor_msgs/Image", listing)
        return depth_topic
    candidates = depth_image_topics(reader, exclude=image_topic)
    if len(candidates) > 1:
        beside = in_namespace_of(candidates, image_topic)
        if len(beside) == 1:
            candidates = beside
    if not candidates:
        raise BagError(
            f"bag {reader.path} has no ground-truth depth topic (sensor_msgs/Image, 32FC1 metres or 16UC1 "
            f"millimetres) to evaluate against; pass --depth-topic if it has one under another encoding. {listing}"
        )
    if len(candidates) > 1:
        raise BagError(
            f"several depth topics in bag {reader.path}: {', '.join(candidates)}; choose the one registered to "
            f"{image_topic} with --depth-topic. {listing}"
        )
    return candidates[0]
