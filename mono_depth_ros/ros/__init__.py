"""The rclpy layer: what binds the ROS-free core to topics, parameters and executors."""


def depth_node_main(args=None) -> int:
    """The ``depth_node`` command. Ctrl-C at any moment of start-up, even while the node's modules are
    still importing, ends it quietly (exit status 0), as it does once the node runs."""
    try:
        from .depth_node import main

        return main(args)
    except KeyboardInterrupt:
        return 0
