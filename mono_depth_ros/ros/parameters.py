"""depth_node's ROS parameters, declared from the one declaration in mono_depth_ros/config.py.

Each parameter gets a ParameterDescriptor with its description, read-only flag and, where it is
bounded on both sides, its FloatingPointRange / IntegerRange. Renamed parameters
(:data:`mono_depth_ros.config.RENAMED`) are declared under their old names too, so parameter files,
``-p`` overrides, launch files and ``ros2 param set`` that use an old name keep working: each old
name logs one deprecation warning, and the two names are kept at the same value.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Mapping, Set

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterNotDeclaredException
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..config import PARAMETERS, RENAMED, DepthNodeConfig, ParameterSpec, apply_parameters, deprecation_note
from ..config_files import plain_text, rename_note


def descriptor_for(spec: ParameterSpec, with_range: bool = True) -> ParameterDescriptor:
    """The ROS descriptor of one declared parameter.

    dynamic_typing lets '80' (an integer) stand for 80.0: the node's own validation checks types.
    """
    descriptor = ParameterDescriptor(
        description=plain_text(" ".join(part for part in (spec.description, rename_note(spec)) if part)),
        read_only=spec.read_only,
        dynamic_typing=True,
        additional_constraints=plain_text(spec.range_text()),
    )
    bounds = spec.ros_range() if with_range else None
    if bounds is not None and spec.kind is int:
        descriptor.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    elif bounds is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]), step=0.0)]
    return descriptor


def _old_name_descriptor(old: str, new: str) -> ParameterDescriptor:
    return ParameterDescriptor(
        description=f"Deprecated: the old name of {new}; set {new} instead.", dynamic_typing=True)


class NodeParameters:
    """Declares depth_node's parameters on ``node`` and validates every change.

    ``on_change`` receives the new DepthNodeConfig after each accepted run-time change.
    """

    def __init__(self, node: Node, on_change: Callable[[DepthNodeConfig], None]):
        self._node = node
        self._on_change = on_change
        self._warned: Set[str] = set()
        self._sync_timer = None
        self.config = DepthNodeConfig()

    def declare(self) -> DepthNodeConfig:
        """Declare every parameter (old names included) -> the start-up config; ValueError names a bad one."""
        node = self._node
        values: Dict[str, Any] = {}
        for name, spec in PARAMETERS.items():
            # Ranges only after our own check below: a bad value is then refused with our message.
            values[name] = node.declare_parameter(name, spec.default, descriptor_for(spec, with_range=False)).value
        for old, new in RENAMED.items():
            parameter = node.declare_parameter(old, None, _old_name_descriptor(old, new))
            if parameter.type_ != Parameter.Type.NOT_SET:
                values[old] = parameter.value
        # A current name at its default yields to an old name: config/depth.yaml lists every parameter.
        config = apply_parameters(DepthNodeConfig(), values, defaults_yield=True)
        self._warn_old_names(values)
        given = [new for old, new in RENAMED.items() if old in values]
        if given:  # `ros2 param get` of the current name shows what is in use
            node.set_parameters([Parameter(new, value=getattr(config, new)) for new in given])
        for name, spec in PARAMETERS.items():
            if spec.ros_range() is not None:
                node.set_descriptor(name, descriptor_for(spec))
        self.config = config
        return config

    def watch(self) -> None:
        """Validate run-time changes (``ros2 param set``) from now on; log each refused one."""
        self._node.add_on_set_parameters_callback(self._on_set_parameters)
        self._log_refusals()

    def _log_refusals(self) -> None:
        """Log every refused run-time change as a warning on the node's logger, once per request.

        rclpy refuses read-only parameters and values outside a descriptor's range before any
        on-set callback runs, so :meth:`_on_set_parameters` never sees those requests. The parameter
        services (``ros2 param set``, launch files, parameter clients) call the node's
        ``set_parameters_atomically`` in every distribution from Humble on; in-process code calls
        ``set_parameters``. Both are wrapped on this node object: whoever refused, the log says so.
        """
        node = self._node
        calls = threading.local()  # nesting per thread: where one wrapped method calls the other, log once

        def logged(method, results_of):
            def wrapper(parameter_list):
                outermost = not getattr(calls, "depth", 0)
                calls.depth = getattr(calls, "depth", 0) + 1
                try:
                    answer = method(parameter_list)
                except ParameterNotDeclaredException:
                    if outermost:
                        self._warn_refused(
                            list(parameter_list), "not a parameter of this node (`ros2 param list` shows its parameters)")
                    raise
                finally:
                    calls.depth -= 1
                if outermost:
                    for parameters, result in results_of(list(parameter_list), answer):
                        if not result.successful:
                            result.reason = self._explained(parameters, result.reason)
                            self._warn_refused(parameters, result.reason)
                return answer
            return wrapper

        node.set_parameters_atomically = logged(
            node.set_parameters_atomically, lambda parameters, result: [(parameters, result)])
        node.set_parameters = logged(  # one result per parameter
            node.set_parameters, lambda parameters, results: [([p], r) for p, r in zip(parameters, results)])

    def _explained(self, parameters, reason: str) -> str:
        """rclpy's read-only refusal names the parameter but not what to do: say it."""
        if "read-only" not in reason:
            return reason
        for parameter in parameters:
            spec = PARAMETERS.get(parameter.name)
            if spec is not None and spec.read_only:
                return (
                    f"parameter '{parameter.name}' is read-only: the node reads it once at start-up. Set it in "
                    f"the parameters file or launch arguments (-p {parameter.name}:=...) and restart the node"
                )
        return reason

    def _warn_refused(self, parameters, reason: str) -> None:
        values = ", ".join(f"{p.name}={p.value!r}" for p in parameters)
        self._node.get_logger().warning(f"refused parameter change {values}: {reason}")

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters if p.name in PARAMETERS or p.name in RENAMED}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            updated = apply_parameters(self.config, changes)
        except ValueError as error:  # logged by the wrappers of _log_refusals, with every other refusal
            return SetParametersResult(successful=False, reason=str(error))
        self._warn_old_names(changes)
        self.config = updated
        self._on_change(updated)  # picked up by the next frame
        if self._values_out_of_step(changes):
            self._schedule_sync()
        return SetParametersResult(successful=True)

    def _warn_old_names(self, values: Mapping[str, Any]) -> None:
        for old in RENAMED:
            if old in values and old not in self._warned:
                self._warned.add(old)
                self._node.get_logger().warning(deprecation_note(old))

    def _values_out_of_step(self, pending: Mapping[str, Any]) -> Dict[str, Any]:
        """{name: value} that brings both names of each renamed parameter to the config's value
        (an old name never set stays unset). ``pending``: values being set, not yet stored."""
        updates = {}
        for old, new in RENAMED.items():
            value = getattr(self.config, new)
            for name in (new, old):
                current = pending[name] if name in pending else self._node.get_parameter(name).value
                if name == old and current is None:
                    continue
                if current != value or type(current) is not type(value):
                    updates[name] = value
        return updates

    def _schedule_sync(self) -> None:
        # Not from inside the callback: rclpy stores the accepted change only after it returns.
        if self._sync_timer is None:
            self._sync_timer = self._node.create_timer(0.0, self._sync)

    def _sync(self) -> None:
        timer, self._sync_timer = self._sync_timer, None
        if timer is not None:
            timer.cancel()
            self._node.destroy_timer(timer)
        updates = self._values_out_of_step({})
        if updates:
            self._node.set_parameters([Parameter(name, value=value) for name, value in updates.items()])
