"""Self-supervised trainer for mono_depth_ros (never imports rclpy).

Data side: :mod:`mono_depth_ros.bagio` (rosbag2 reading), :mod:`training.data` (datasets);
rendered recordings with exact depth are in :mod:`mono_depth_ros.simulation`.
"""
