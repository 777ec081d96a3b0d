"""Self-supervised trainer for mono_depth_ros (never imports rclpy).

Data side: :mod:`training.bags` (rosbag2 reading), :mod:`training.data` (datasets),
:mod:`training.synthetic` (rendered test recordings with exact depth).
"""
