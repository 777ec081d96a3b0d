"""depth_node's parameters: every refused run-time change is logged on the node's logger, once.

An rclpy node in this process (no other process, no DDS traffic): the parameter services'
callbacks are called directly, as ``ros2 param set`` reaches them.
"""
from __future__ import annotations

from typing import List

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not installed: depth_node's parameters need it")

from rcl_interfaces.srv import SetParameters, SetParametersAtomically  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.exceptions import ParameterNotDeclaredException  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mono_depth_ros.ros.parameters import NodeParameters  # noqa: E402

pytestmark = pytest.mark.ros  # starts an rclpy node (tiers: setup.cfg)


class Recorder:
    """Stands in for the node's logger: keeps every warning."""

    def __init__(self):
        self.warnings: List[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    warn = warning

    def info(self, text: str) -> None:
        pass


@pytest.fixture(scope="module")
def context():
    context = Context()
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):  # older rclpy without the option
        rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def node(context, monkeypatch):
    node = rclpy.create_node("parameter_refusals_test", context=context)
    log = Recorder()
    monkeypatch.setattr(node, "get_logger", lambda: log)
    changes = []
    parameters = NodeParameters(node, on_change=changes.append)
    parameters.declare()
    parameters.watch()
    node.log, node.changes = log, changes
    yield node
    node.destroy_node()


def ros_set(node, values):
    """What `ros2 param set` does: the node's set_parameters service, one result per parameter."""
    request = SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
    return node._parameter_service._set_parameters_callback(request, SetParameters.Response()).results


def test_read_only_change_through_the_service_is_refused_and_logged_once(node):
    results = ros_set(node, {"model_path": "/tmp/other.safetensors"})
    assert len(results) == 1 and not results[0].successful
    reason = results[0].reason
    assert "'model_path' is read-only" in reason and "restart the node" in reason
    assert node.log.warnings == [f"refused parameter change model_path='/tmp/other.safetensors': {reason}"]
    assert node.get_parameter("model_path").value != "/tmp/other.safetensors"


@pytest.mark.parametrize(
    "name, value",
    [
        ("points_stride", 65),  # outside the descriptor's range: refused by rclpy itself
        ("depth_scale", -1.0),  # refused by the node's own check
        ("require_matching_frame_id", "yes"),  # wrong type
    ],
)
def test_invalid_value_through_the_service_is_refused_and_logged_once(node, name, value):
    results = ros_set(node, {name: value})
    assert not results[0].successful and name in results[0].reason
    assert node.log.warnings == [f"refused parameter change {name}={value!r}: {results[0].reason}"]
    assert node.changes == []


def test_each_refused_parameter_of_a_request_is_logged_accepted_ones_are_not(node):
    results = ros_set(node, {"points_stride": 4, "half_precision": True, "depth_scale": 0.0})
    assert [r.successful for r in results] == [True, False, False]
    assert len(node.log.warnings) == 2
    assert node.log.warnings[0].startswith("refused parameter change half_precision=True: parameter ")
    assert node.log.warnings[1].startswith("refused parameter change depth_scale=0.0: ")
    assert [c.points_stride for c in node.changes] == [4]


def test_atomic_request_is_logged_once_naming_every_value(node):
    request = SetParametersAtomically.Request(parameters=[
        Parameter("points_stride", value=2).to_parameter_msg(),
        Parameter("device", value="cpu").to_parameter_msg(),
    ])
    result = node._parameter_service._set_parameters_atomically_callback(
        request, SetParametersAtomically.Response()).result
    assert not result.successful and "'device' is read-only" in result.reason
    assert node.log.warnings == [f"refused parameter change points_stride=2, device='cpu': {result.reason}"]
    assert node.changes == []


def test_in_process_set_parameters_refusal_is_logged_once(node):
    results = node.set_parameters([Parameter("model_path", value="x.safetensors")])
    assert not results[0].successful
    assert len(node.log.warnings) == 1 and "model_path='x.safetensors'" in node.log.warnings[0]
    assert node.set_parameters([Parameter("points_stride", value=3)])[0].successful
    assert len(node.log.warnings) == 1


def test_undeclared_parameter_is_logged(node):
    with pytest.raises(ParameterNotDeclaredException):
        node.set_parameters_atomically([Parameter("no_such_parameter", value=1)])
    assert node.log.warnings == [
        "refused parameter change no_such_parameter=1: not a parameter of this node "
        "(`ros2 param list` shows its parameters)"
    ]
    results = ros_set(node, {"no_such_parameter": 1})  # the service answers with a refusal
    assert not results[0].successful and len(node.log.warnings) == 2
