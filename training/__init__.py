"""Self-supervised trainer for mono_depth_ros (never imports rclpy, except the demo, which runs the node).

The folder training/ is installed as the package ``mono_depth_ros_training`` (setup.py): import it
under that name, never as ``training``. Data side: :mod:`mono_depth_ros.bagio` (rosbag2 reading),
:mod:`mono_depth_ros_training.data` (frame cache, sample selection, augmentation, datasets);
rendered recordings with exact depth are in :mod:`mono_depth_ros.simulation`.
"""
