"""The rclpy layer: what binds the ROS-free core to topics, parameters and executors."""
