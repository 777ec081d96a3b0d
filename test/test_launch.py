"""launch/depth.launch.py: its arguments, the actions it builds from them, and (when the package is
installed in an ament prefix, e.g. after colcon build) a real launch that brings the node up."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

launch_ros = pytest.importorskip(
    "launch_ros", reason="test_launch needs launch_ros (source a ROS 2 install: /opt/ros/<distro>/setup.bash)"
)

from launch import LaunchContext, LaunchService  # noqa: E402
from launch.actions import IncludeLaunchDescription, OpaqueFunction  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch.utilities import perform_substitutions  # noqa: E402
from launch_ros.actions import Node  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"

EXPECTED_DEFAULTS = {
    "image": "/camera/image_raw",
    "camera_info": "/camera/camera_info",
    "model": "",
    "device": "",  # empty: the params file decides (cuda in config/depth.yaml)
    "namespace": "",
    "rviz": "false",
    "fixed_frame": "camera_optical_frame",
}


def load_description():
    spec = importlib.util.spec_from_file_location("depth_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def defaults(description) -> dict:
    context = LaunchContext()
    return {arg.name: perform_substitutions(context, arg.default_value) for arg in description.get_launch_arguments()}


def build_actions(**arguments):
    """Run the launch file's OpaqueFunction as launch would -> (context, depth_node, rviz_node)."""
    description = load_description()
    context = LaunchContext()
    context.launch_configurations.update(defaults(description))
    context.launch_configurations.update(arguments)
    (opaque,) = [entity for entity in description.entities if isinstance(entity, OpaqueFunction)]
    actions = opaque.execute(context)
    nodes = {action.node_executable: action for action in actions if isinstance(action, Node)}
    return context, nodes["depth_node"], nodes["rviz2"]


def expanded_command(node: Node, context: LaunchContext) -> list:
    """The node's command line as far as it is known before the process starts."""
    node._perform_substitutions(context)  # what Node.execute does first; stable from Humble to Rolling
    command = []
    for part in node.cmd:
        try:
            command.append(perform_substitutions(context, part))
        except Exception:  # node name / namespace placeholders filled in only at execution
            command.append("<ros-specific>")
    return command


def parameter_files(command: list) -> list:
    return [command[i + 1] for i, part in enumerate(command) if part == "--params-file"]


def test_declares_the_documented_arguments_and_defaults():
    values = defaults(load_description())
    assert set(values) == set(EXPECTED_DEFAULTS) | {"params_file"}
    for name, default in EXPECTED_DEFAULTS.items():
        assert values[name] == default, name
    params_file = Path(values["params_file"])
    assert params_file.parts[-2:] == ("config", "depth.yaml")
    assert params_file.is_file()


def test_node_runs_depth_node_with_remapped_topics():
    context, node, _ = build_actions(image="/my_cam/image_raw", camera_info="/my_cam/camera_info")
    assert node.node_package == "mono_depth_ros"
    assert node.node_executable == "depth_node"
    expanded_command(node, context)
    assert node.node_name.endswith("/depth_node")
    assert node.expanded_remapping_rules == [
        ("image", "/my_cam/image_raw"),
        ("camera_info", "/my_cam/camera_info"),
    ]


def test_params_file_alone_when_model_and_device_are_not_given(tmp_path):
    params = tmp_path / "robot.yaml"
    params.write_text("/**:\n  ros__parameters:\n    model_path: /models/robot.safetensors\n    device: cpu\n")
    context, node, _ = build_actions(params_file=str(params))
    # An empty model:= must not override the file's model_path with "".
    assert parameter_files(expanded_command(node, context)) == [str(params)]


def test_model_and_device_override_the_params_file(tmp_path):
    context, node, _ = build_actions(model="/models/new.safetensors", device="cpu")
    files = parameter_files(expanded_command(node, context))
    assert len(files) == 2 and files[0].endswith(os.path.join("config", "depth.yaml"))  # the override comes last
    overrides = yaml.safe_load(Path(files[1]).read_text())
    (section,) = overrides.values()
    assert section["ros__parameters"] == {"model_path": "/models/new.safetensors", "device": "cpu"}


def test_namespace_applies_to_node_and_rviz():
    context, node, rviz = build_actions(namespace="front")
    expanded_command(node, context)
    expanded_command(rviz, context)
    assert node.expanded_node_namespace == "/front"
    assert rviz.expanded_node_namespace == "/front"  # its config's relative topics then match the node's


def test_rviz_starts_only_when_asked_with_the_installed_config():
    context, _, rviz = build_actions()
    assert rviz.condition.evaluate(context) is False
    context, _, rviz = build_actions(rviz="true", fixed_frame="front_camera_optical")
    assert rviz.condition.evaluate(context) is True
    command = expanded_command(rviz, context)
    config = Path(command[command.index("-d") + 1])
    assert config.parts[-2:] == ("config", "depth.rviz") and config.is_file()
    assert command[command.index("-f") + 1] == "front_camera_optical"


def test_missing_params_file_is_reported():
    with pytest.raises(RuntimeError, match="params_file '/no/such/params.yaml' is not a file"):
        build_actions(params_file="/no/such/params.yaml")


# ---- a real launch ------------------------------------------------------------------------------
def test_launch_brings_up_the_node_on_the_remapped_topics(small_model_path):
    """Needs mono_depth_ros installed in an ament prefix (colcon build; source install/setup.bash)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix("mono_depth_ros")
    except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH not set at all
        pytest.skip("mono_depth_ros is not in an ament prefix: colcon build, then source install/setup.bash")
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    service = LaunchService(argv=[])
    service.include_launch_description(
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
            launch_arguments={
                "model": str(small_model_path),
                "device": "cpu",
                "image": "/launch_test_cam/image_raw",
                "camera_info": "/launch_test_cam/camera_info",
                "namespace": "launch_test",
                "rviz": "false",
            }.items(),
        )
    )
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("launch_test_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received = []
    reliable = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/launch_test/depth", received.append, reliable)
    image_pub = node.create_publisher(Image, "/launch_test_cam/image_raw", reliable)
    info_pub = node.create_publisher(CameraInfo, "/launch_test_cam/camera_info", reliable)
    image = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=np.full(64 * 48 * 3, 90, np.uint8).tobytes())
    image.header.frame_id = "launch_test_frame"
    info = CameraInfo(height=48, width=64, k=[50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0])

    async def exchange_frames():
        deadline = time.monotonic() + 90.0
        while not received and time.monotonic() < deadline and not launch_task.done():
            if image_pub.get_subscription_count() and info_pub.get_subscription_count():
                info_pub.publish(info)
                image_pub.publish(image)
            executor.spin_once(timeout_sec=0.0)
            await asyncio.sleep(0.2)  # lets launch run its processes

    async def stop_launch():
        pending = service.shutdown()
        if pending is not None:
            await pending
        await asyncio.wait_for(launch_task, 30.0)

    # LaunchService runs only in the main thread; this test drives its asyncio loop there.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    launch_task = loop.create_task(service.run_async(shutdown_when_idle=False))
    try:
        loop.run_until_complete(exchange_frames())
    finally:
        loop.run_until_complete(stop_launch())
        asyncio.set_event_loop(None)
        loop.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert received, "no depth on /launch_test/depth from the launched node"
    assert (received[0].width, received[0].height) == (64, 48)
    assert received[0].header.frame_id == "launch_test_frame"
    assert launch_task.result() == 0
