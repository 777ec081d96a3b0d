"""depth_node's parameters over real DDS: changes at run time (applied to the next frame, or refused
naming the parameter), the old clip names at run time, parameter descriptors, and the warning that
names the QoS override a best-effort camera needs.

The node process, the test-side ROS node and the message helpers are in test/node_harness.py.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from node_harness import (  # noqa: E402  (test/ is on sys.path)
    depth_array, ros_session, small_frame, started_node,
)


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


@pytest.fixture(scope="module")
def param_node(ros, small_model_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("dds") / "param_node.log"
    parameters = {"model_path": str(small_model_path), "device": "cpu", "depth_scale": 2.0}
    with started_node(ros, log_path, "/dds_params", parameters) as node:
        yield node


def test_depth_scale_change_applies_to_the_next_frame(param_node):
    image, info = small_frame()
    before = depth_array(param_node.exchange(image, info, ("depth",))["depth"])
    results = param_node.set_parameters({"depth_scale": 4.0})
    assert results[0].successful, results[0].reason
    try:
        image, info = small_frame()
        after = depth_array(param_node.exchange(image, info, ("depth",))["depth"])
    finally:
        param_node.set_parameters({"depth_scale": 2.0})
    both = np.isfinite(before) & np.isfinite(after)
    assert both.mean() > 0.9
    np.testing.assert_allclose(after[both], 2.0 * before[both], rtol=1e-4)


def test_publish_points_false_stops_points(param_node):
    results = param_node.set_parameters({"publish_points": False})
    assert results[0].successful, results[0].reason
    try:
        image, info = small_frame()
        # depth_colored goes out after points would have: once it is here, points are not coming.
        param_node.exchange(image, info, ("depth", "depth_colored"))
        param_node.ros.spin_for(0.5)
        assert param_node.outputs_for("points", image.header.stamp) == []
    finally:
        param_node.set_parameters({"publish_points": True})
    image, info = small_frame()
    assert param_node.exchange(image, info, ("points",))["points"].height == 96


def test_frame_checks_follow_their_parameters_at_run_time(param_node):
    image, info = small_frame()
    info.header.frame_id = "other_camera"
    results = param_node.set_parameters({"require_matching_frame_id": False, "max_image_pixels": 128 * 96})
    assert all(result.successful for result in results), [r.reason for r in results]
    try:
        param_node.exchange(image, info, ("depth",))  # mismatched frame_id now accepted
        assert param_node.set_parameters({"max_image_pixels": 128 * 96 - 1})[0].successful
        image, info = small_frame()
        param_node.send_until_logged(image, info, "128x96 (0.0 MP), more than max_image_pixels (12287)")
        param_node.ros.spin_for(0.5)
        assert param_node.outputs_for("depth", image.header.stamp) == []
    finally:
        results = param_node.set_parameters({"require_matching_frame_id": True, "max_image_pixels": 16_000_000})
        assert all(result.successful for result in results)
    image, info = small_frame()
    param_node.exchange(image, info, ("depth",))


@pytest.mark.parametrize(
    "values, named",
    [
        ({"max_depth": 0.05}, "max_depth"),  # below min_depth (0.1)
        ({"points_stride": 0}, "points_stride"),
        ({"depth_scale": -1.0}, "depth_scale"),
        ({"max_image_pixels": 0}, "max_image_pixels"),
        ({"require_matching_frame_id": "yes"}, "require_matching_frame_id"),
        ({"model_path": "/tmp/other.safetensors"}, "model_path"),  # read-only
    ],
)
def test_invalid_parameter_change_is_refused_naming_the_parameter(param_node, values, named):
    results = param_node.set_parameters(values)
    assert len(results) == 1
    assert not results[0].successful
    assert named in results[0].reason
    # The node keeps running on its previous settings.
    image, info = small_frame()
    outputs = param_node.exchange(image, info, ("depth", "points"))
    assert outputs["points"].height == 96


def test_old_clip_name_at_run_time_sets_the_new_one_with_one_warning(param_node):
    try:
        for value in (30.0, 20.0):
            results = param_node.set_parameters({"max_depth": value})
            assert results[0].successful, results[0].reason
            # The node brings the new name to the same value just after the change.
            assert param_node.ros.spin_until(
                lambda: param_node.get_parameters(["output_max_depth"])["output_max_depth"] == value, 10.0)
        image, info = small_frame()
        depth = depth_array(param_node.exchange(image, info, ("depth",))["depth"])
        assert np.all(depth[np.isfinite(depth)] <= 20.0)
        assert param_node.process.output().count("parameter 'max_depth' is deprecated") == 1
        # Old and new name with different values in one atomic change: refused, naming both.
        result = param_node.set_parameters_atomically({"max_depth": 25.0, "output_max_depth": 35.0})
        assert not result.successful and "set only 'output_max_depth'" in result.reason
        # A change under the new name carries over to the old one, which the user set.
        assert param_node.set_parameters({"output_max_depth": 50.0})[0].successful
        assert param_node.ros.spin_until(
            lambda: param_node.get_parameters(["max_depth"])["max_depth"] == 50.0, 10.0)
    finally:
        param_node.set_parameters({"output_max_depth": 80.0})


def test_descriptors_carry_description_read_only_flag_and_range(param_node):
    stride, model_path, clip, old = param_node.describe_parameters(
        ["points_stride", "model_path", "output_min_depth", "min_depth"])
    assert [(r.from_value, r.to_value) for r in stride.integer_range] == [(1, 64)]
    assert stride.additional_constraints == "[1, 64]" and not stride.read_only
    assert model_path.read_only and "Model file to run" in model_path.description
    assert "output clip" in clip.description and clip.additional_constraints == "> 0, < output_max_depth"
    assert "old name of output_min_depth" in old.description
    results = param_node.set_parameters({"points_stride": 65})
    assert not results[0].successful and "points_stride" in results[0].reason
