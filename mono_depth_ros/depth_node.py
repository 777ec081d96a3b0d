"""Deprecated location of depth_node: the node now lives in :mod:`mono_depth_ros.ros.depth_node`.

``python -m mono_depth_ros.depth_node`` keeps working: it warns with a DeprecationWarning and runs
:func:`mono_depth_ros.ros.depth_node.main`. Names imported from here (``DepthNode``, ...) are
forwarded to the new module with the same warning. This shim imports rclpy only when used, so
the ROS-free core stays importable without ROS. Use the ``depth_node`` console script,
``ros2 run mono_depth_ros depth_node`` or ``python -m mono_depth_ros.ros.depth_node`` instead.
"""
from __future__ import annotations

import sys
import warnings

NEW_MODULE = "mono_depth_ros.ros.depth_node"


def _warn() -> None:
    warnings.warn(f"mono_depth_ros.depth_node moved to {NEW_MODULE}; this alias will be removed",
                  DeprecationWarning, stacklevel=3)


def main(args=None) -> int:
    """Run the node (deprecated alias of :func:`mono_depth_ros.ros.depth_node.main`)."""
    _warn()
    from .ros.depth_node import main as ros_main
    return ros_main(args)


def __getattr__(name: str):
    """Forward other names (``DepthNode``, ...) to the new module, with a DeprecationWarning."""
    if name.startswith("__"):
        raise AttributeError(name)
    _warn()
    from .ros import depth_node
    return getattr(depth_node, name)


if __name__ == "__main__":
    sys.exit(main())
