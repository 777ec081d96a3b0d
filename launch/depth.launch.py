"""Start depth_node on one camera, optionally with RViz.

  ros2 launch mono_depth_ros depth.launch.py model:=/path/to/model.safetensors \
      image:=/my_cam/image_raw camera_info:=/my_cam/camera_info [device:=cpu] [rviz:=true]

Parameters come from params_file (the installed config/depth.yaml by default); the model
and device arguments override it only when given. Uses launch / launch_ros APIs that
Humble already has.
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "mono_depth_ros"


def _share_directory() -> str:
    try:
        return get_package_share_directory(PACKAGE)
    except (PackageNotFoundError, OSError):  # a source checkout, not an install (OSError: no AMENT_PREFIX_PATH)
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _nodes(context):
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    params_file = value("params_file")
    if not os.path.isfile(params_file):
        raise RuntimeError(
            f"params_file '{params_file}' is not a file; pass params_file:=/path/to/params.yaml "
            "(see config/depth.yaml for the format)"
        )
    # Only what was given overrides the file: an empty override would replace its model_path.
    overrides = {}
    if value("model"):
        overrides["model_path"] = value("model")
    if value("device"):
        overrides["device"] = value("device")
    namespace = value("namespace") or None
    depth_node = Node(
        package=PACKAGE,
        executable="depth_node",
        name="depth_node",
        namespace=namespace,
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
        parameters=[params_file] + ([overrides] if overrides else []),
        output="screen",
    )
    # Same namespace as the node: the RViz config names its topics relative (points, depth_colored).
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=namespace,
        arguments=[
            "-d", os.path.join(_share_directory(), "config", "depth.rviz"),
            "-f", LaunchConfiguration("fixed_frame"),
        ],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return [depth_node, rviz]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/camera_info", description="CameraInfo topic of that image"
        ),
        DeclareLaunchArgument(
            "model", default_value="", description="model file (.safetensors, or .onnx run by onnxruntime); empty: params_file's model_path"
        ),
        DeclareLaunchArgument(
            "device",
            default_value="",
            description="cuda, cuda:N or cpu; empty: params_file's device (cuda in the shipped depth.yaml, "
            "with a CPU fallback)",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(_share_directory(), "config", "depth.yaml"),
            description="ROS 2 parameter file for depth_node",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace for the node's topics"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz (true/false)"),
        DeclareLaunchArgument(
            "fixed_frame",
            default_value="camera_optical_frame",
            description="RViz fixed frame: the camera's frame_id, unless TF connects it to another frame",
        ),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_nodes)])
