"""Reading and writing rosbag2 recordings (PyPI ``rosbags``; no ROS installation needed), for the
trainer, infer_bag and evaluate.

* Bags: a rosbag2 directory, or a single ``.mcap`` / ``.db3`` storage file.
* Topics are found automatically when unambiguous; otherwise :class:`BagError` lists the
  topics found and names the option to set.
* Damaged bags (cut-off recordings, corrupt chunks) are read as far as possible by a
  salvage scanner; what failed, and where, is reported in :attr:`BagReader.damage`.
* A camera recalibrated or resized mid-bag: :func:`stream_recording` keeps the frames that
  match the first calibration and size, skips the others and explains it in one note each.

Everything user-facing raises :class:`BagError` (a RuntimeError) with a message that
says what was wrong and what to do.

What lives where:

* :mod:`.errors` -- :class:`BagError`.
* :mod:`.decode` -- messages to NumPy: :class:`CameraModel`, images, depth, stamps, odometry positions.
* :mod:`.scan` -- storage files, the cache fingerprint, the salvage scanners (MCAP, sqlite3).
* :mod:`.reader` -- :class:`BagReader`: topics and deserialized messages of one bag.
* :mod:`.topics` -- which topics to read: :func:`discover_topics` (trainer),
  :func:`select_camera_topics` and :func:`select_depth_topic` (infer_bag, evaluate), and the rules they share.
* :mod:`.stream` -- :func:`stream_recording`: one decoding pass with the calibration and size checks.
* :mod:`.writer` -- writing bags: :class:`~.writer.BagWriter`, :func:`~.writer.write_bag`,
  :func:`~.writer.write_sorted_bag` (infer_bag, the bag recorder, the simulation, test fixtures).
* :mod:`.messages` -- rosbags message objects from NumPy arrays (images, depth, CameraInfo, Odometry).

The writing side is imported from its modules (``from mono_depth_ros.bagio.writer import
write_bag``), not re-exported here.

Message type names are in :mod:`mono_depth_ros.msgtypes`. Importing this package needs neither
torch, rclpy nor the trainer.
"""
from .decode import (
    CameraModel,
    camera_model_from_msg,
    decode_depth,
    decode_image,
    header_stamp_ns,
    interpolate_positions,
    odometry_position,
)
from .errors import BagError
from .reader import BagReader, TopicSummary
from .scan import bag_fingerprint, storage_files
from .stream import StreamItem, StreamSummary, stream_recording
from .topics import (
    CameraTopics,
    TopicSelection,
    camera_namespace,
    describe_selection,
    discover_topics,
    image_is_depth,
    info_beside,
    require_topic,
    select_camera_topics,
    select_depth_topic,
    stereo_side,
)

__all__ = [
    "BagError",
    "BagReader",
    "CameraModel",
    "CameraTopics",
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
    "image_is_depth",
    "info_beside",
    "interpolate_positions",
    "odometry_position",
    "require_topic",
    "select_camera_topics",
    "select_depth_topic",
    "stereo_side",
    "storage_files",
    "stream_recording",
]
