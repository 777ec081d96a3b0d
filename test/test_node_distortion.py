"""depth_node with a strongly distorted camera over real DDS: a raw image rendered through a barrel
lens, its camera_info carrying K and D. The outputs stay on the raw pixel grid: the depth equals the
in-process pipeline's (undistort, network, back onto raw pixels), and every point of the cloud
projects through K and D onto its own pixel centre."""
from __future__ import annotations

import numpy as np
import pytest

from node_harness import (  # noqa: E402  (skips the module without rclpy)
    cloud_arrays, depth_array, image_msg, info_msg, next_stamp, ros_session, small_estimator, started_node,
)
from mono_depth_ros.config import DepthNodeConfig  # noqa: E402
from mono_depth_ros.distortion import lens_distortion, project_points  # noqa: E402
from mono_depth_ros.frame_pipeline import FramePipeline  # noqa: E402
from mono_depth_ros.simulation import render_recording  # noqa: E402

LENSES = {"plumb_bob": [-0.34, 0.13, 0.001, -0.001, -0.02], "equidistant": [-0.04, 0.012, -0.004, 0.001]}


@pytest.fixture(scope="module")
def ros():
    yield from ros_session()


@pytest.fixture(scope="module")
def node(ros, small_model_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("dds") / "distortion_node.log"
    with started_node(ros, log_path, "/dds_distortion", {"model_path": str(small_model_path), "device": "cpu"}) as node:
        yield node


@pytest.mark.parametrize("model", sorted(LENSES))
def test_a_distorted_camera_gets_outputs_on_its_raw_pixels(node, small_model_path, model):
    recording = render_recording(num_frames=1, width=240, height=160, stereo=False, scene="street",
                                 distortion=LENSES[model], distortion_model=model)
    rgb, K = recording.images[0], recording.K
    stamp = next_stamp()
    image = image_msg(np.ascontiguousarray(rgb[:, :, ::-1]), stamp, "cam")
    info = info_msg(240, 160, stamp, "cam", k=K.reshape(-1).tolist())
    info.d, info.distortion_model = [float(value) for value in LENSES[model]], model
    outputs = node.exchange(image, info, ("depth", "points"))

    lens = lens_distortion(model, LENSES[model])
    depth = depth_array(outputs["depth"])
    expected = FramePipeline(small_estimator(small_model_path)).depth(rgb, DepthNodeConfig(model_path="m"), K, lens)
    np.testing.assert_array_equal(np.isnan(depth), np.isnan(expected))
    assert np.isnan(depth[0, 0]) and np.isfinite(depth[80, 120])  # the barrel's corners have no estimate
    finite = np.isfinite(depth) & np.isfinite(expected)
    np.testing.assert_allclose(depth[finite], expected[finite], rtol=1e-5)

    xyz, _ = cloud_arrays(outputs["points"])
    valid = np.isfinite(xyz).all(axis=-1)
    assert valid.mean() > 0.5
    v, u = np.mgrid[0:160, 0:240]
    pixels = np.stack([u[valid], v[valid]], axis=-1).astype(np.float64)
    assert np.abs(project_points(xyz[valid].astype(np.float64), K, lens) - pixels).max() < 2e-3
    # A pinhole cloud of the same depth would miss its pixels by pixels near the edges.
    assert np.abs(project_points(xyz[valid].astype(np.float64), K, None) - pixels).max() > 3.0
