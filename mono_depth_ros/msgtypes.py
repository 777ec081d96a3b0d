"""ROS message type names, image encodings and depth_node's output names: one home for the strings.

Plain constants (no ROS, no torch): rosbags typestores, bag readers and writers, the demo and
the node all name messages and topics with these.
"""
from __future__ import annotations

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
POINT_FIELD_TYPE = "sensor_msgs/msg/PointField"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"

# Camera images, raw or compressed.
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
# sensor_msgs/Image encodings that mean depth (32FC1 metres, 16UC1 millimetres).
DEPTH_ENCODINGS = ("32FC1", "16UC1")
# image_transport suffixes: /camera/image_raw/compressed belongs to /camera/image_raw.
TRANSPORT_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd", "ffmpeg")

# depth_node's output topics, relative to its namespace, and their message types.
DEPTH_OUTPUT = "depth"
POINTS_OUTPUT = "points"
COLORED_OUTPUT = "depth_colored"
OUTPUT_TYPES = {DEPTH_OUTPUT: IMAGE_TYPE, POINTS_OUTPUT: POINT_CLOUD_TYPE, COLORED_OUTPUT: IMAGE_TYPE}
OUTPUT_NAMES = tuple(OUTPUT_TYPES)
