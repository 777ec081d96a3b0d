"""Rendered rosbag2 recordings with exact depth: the ``sample_recording`` command's street, the
demo's data, and the test suite's fixtures.

Two scenes, both ray cast analytically with NumPy so that the depth published on the depth
topic is exact (metres along the optical axis) and the odometry is the pose the images were
rendered from:

* ``corridor`` (CorridorScene + Trajectory): a small textured corridor (ground, ceiling, side
  walls, end wall, a few boxes); the default of render_recording / write_synthetic_bag.
* ``street`` (StreetScene + StreetTrajectory): a street with sidewalks, building blocks,
  parked cars, crates, lamp and sign posts and sky (depth +inf); speed changes, a stop in the
  middle and small rotations. What ``sample_recording`` writes. Colour comes from seeded
  tileable textures sampled with mip-mapping (TextureAtlas), which keeps it fast.

What lives where:

* :mod:`.camera` -- the frames (``odom``, ``camera_link``, the optical frames), pinhole K,
  the ray of every pixel (lens distortion included), the body -> optical transform.
* :mod:`.box` -- :class:`Box`, the axis-aligned box both scenes are built from.
* :mod:`.corridor` -- :class:`CorridorScene` (procedural noise shading).
* :mod:`.textures` -- the street's seeded tileable textures, :class:`TextureAtlas`, :class:`CoarseShading`.
* :mod:`.street` -- :class:`StreetScene`: layout, ray casting, shading.
* :mod:`.trajectory` -- camera motion: :class:`Trajectory` (corridor), :class:`StreetTrajectory`.
* :mod:`.recording` -- :func:`render_recording` and :class:`SyntheticRecording` (frames in memory).
* :mod:`.bag` -- :func:`write_synthetic_bag` and its topics (the rendered frames as a rosbag2 bag).
* :mod:`.cli` -- the ``sample_recording`` command.

Bags are written with :mod:`mono_depth_ros.bagio.writer` and messages built with
:mod:`mono_depth_ros.bagio.messages`; their names that test fixtures use next to the renderer
(``write_bag``, ``BagEntry``, ``image_message``, ...) and the message type names are
re-exported here. NumPy and OpenCV only: importing this package needs neither torch, rclpy
nor the trainer.
"""
from mono_depth_ros.bagio.messages import (
    camera_info_message,
    compressed_image_message,
    depth_message,
    image_message,
    odometry_message,
)
from mono_depth_ros.bagio.writer import BagEntry, make_typestore, storage_file, write_bag, write_sorted_bag
from mono_depth_ros.msgtypes import CAMERA_INFO_TYPE, COMPRESSED_TYPE, IMAGE_TYPE, ODOMETRY_TYPE

from .bag import (
    CAMERA_INFO_TOPIC,
    COMPRESSED_TOPIC,
    DEPTH_TOPIC,
    IMAGE_TOPIC,
    ODOM_TOPIC,
    RIGHT_CAMERA_INFO_TOPIC,
    RIGHT_COMPRESSED_TOPIC,
    RIGHT_IMAGE_TOPIC,
    write_synthetic_bag,
)
from .box import Box
from .camera import BODY_FRAME, LEFT_FRAME, ODOM_FRAME, RIGHT_FRAME, body_to_optical, camera_intrinsics, camera_rays
from .corridor import CorridorScene
from .recording import (
    SCENES,
    STAMP_ORIGIN_NS,
    STOP_RAMP_S,
    RecordingPlan,
    SyntheticRecording,
    render_recording,
    street_stop_interval,
)
from .street import (
    CLEAR_HALF_WIDTH_M,
    FACADE_LINE_M,
    ROAD_HALF_WIDTH_M,
    RenderedView,
    StreetScene,
)
from .textures import CoarseShading, TextureAtlas
from .trajectory import STREET_CAMERA_HEIGHT_M, StreetTrajectory, Trajectory

__all__ = [
    "BODY_FRAME",
    "BagEntry",
    "Box",
    "CAMERA_INFO_TOPIC",
    "CAMERA_INFO_TYPE",
    "CLEAR_HALF_WIDTH_M",
    "COMPRESSED_TOPIC",
    "COMPRESSED_TYPE",
    "CoarseShading",
    "CorridorScene",
    "DEPTH_TOPIC",
    "FACADE_LINE_M",
    "IMAGE_TOPIC",
    "IMAGE_TYPE",
    "LEFT_FRAME",
    "ODOMETRY_TYPE",
    "ODOM_FRAME",
    "ODOM_TOPIC",
    "RIGHT_CAMERA_INFO_TOPIC",
    "RIGHT_COMPRESSED_TOPIC",
    "RIGHT_FRAME",
    "RIGHT_IMAGE_TOPIC",
    "ROAD_HALF_WIDTH_M",
    "RecordingPlan",
    "RenderedView",
    "SCENES",
    "STAMP_ORIGIN_NS",
    "STOP_RAMP_S",
    "STREET_CAMERA_HEIGHT_M",
    "StreetScene",
    "StreetTrajectory",
    "SyntheticRecording",
    "TextureAtlas",
    "Trajectory",
    "body_to_optical",
    "camera_info_message",
    "camera_intrinsics",
    "camera_rays",
    "compressed_image_message",
    "depth_message",
    "image_message",
    "make_typestore",
    "odometry_message",
    "render_recording",
    "storage_file",
    "street_stop_interval",
    "write_bag",
    "write_sorted_bag",
    "write_synthetic_bag",
]
