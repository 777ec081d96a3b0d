"""Lens distortion: exact rays of raw pixels, undistorted images, depth mapped back onto the raw grid,
and FramePipeline's outputs for a strongly distorted camera (known geometry in, known answer out)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mono_depth_ros.camera import CameraInfoError
from mono_depth_ros.config import DepthNodeConfig
from mono_depth_ros.distortion import (
    DistortionError,
    LensDistortion,
    Undistorter,
    lens_distortion,
    project_points,
    raw_pixel_rays,
    undistort_points,
)
from mono_depth_ros.frame_pipeline import FramePipeline, camera_info_lens
from mono_depth_ros.inference.backend import Prediction
from mono_depth_ros.pointcloud import unit_depth_rays, unpack_xyzrgb

WIDTH, HEIGHT = 160, 120
K = np.array([[120.0, 0.0, 81.3], [0.0, 118.0, 58.6], [0.0, 0.0, 1.0]])
# Strong lenses: barrel distortion that moves the corners by 10-30 px at this size.
LENSES = {
    "plumb_bob": LensDistortion("plumb_bob", (-0.32, 0.12, 0.001, -0.002, -0.02)),
    "rational_polynomial": LensDistortion("rational_polynomial", (-0.3, 0.09, 0.001, 0.0015, 0.0, 0.02, 0.01, 0.0)),
    "equidistant": LensDistortion("equidistant", (-0.05, 0.01, -0.004, 0.001)),
}
# A tilted plane n . X = d in the optical frame (REP 103: z forward), seen by the whole image.
PLANE_NORMAL, PLANE_DISTANCE = np.array([0.15, -0.35, 1.0]), 4.0


def plane_depth(rays_xy: np.ndarray) -> np.ndarray:
    """Depth z of the plane along rays (..., 2) (x/z, y/z)."""
    return PLANE_DISTANCE / (PLANE_NORMAL[0] * rays_xy[..., 0] + PLANE_NORMAL[1] * rays_xy[..., 1] + PLANE_NORMAL[2])


def pixel_grid(height: int = HEIGHT, width: int = WIDTH, stride: int = 1) -> np.ndarray:
    u, v = np.meshgrid(np.arange(0, width, stride, dtype=np.float64), np.arange(0, height, stride, dtype=np.float64))
    return np.stack([u, v], axis=-1)


def test_zero_or_empty_D_is_a_pinhole_camera():
    assert lens_distortion("plumb_bob", [0.0] * 5) is None
    assert lens_distortion("", []) is None
    assert lens_distortion("rational_polynomial", [0.0] * 8) is None


@pytest.mark.parametrize("model, D, words", [
    ("plumb_bob", [0.1, float("nan"), 0.0, 0.0, 0.0], "not finite"),
    ("plumb_bob", [0.1, 0.0, float("inf"), 0.0, 0.0], "not finite"),
    ("kannala_brandt_9", [0.1, 0.2, 0.0, 0.0], "not supported"),
    ("equidistant", [0.1, 0.2, 0.0], "exactly 4"),
    ("rational_polynomial", [0.1, 0.2, 0.0, 0.0, 0.0], "takes 8"),
])
def test_unusable_distortion_is_refused_saying_what_is_wrong(model, D, words):
    with pytest.raises(DistortionError, match=words):
        lens_distortion(model, D)
    info = SimpleNamespace(distortion_model=model, d=D)
    with pytest.raises(CameraInfoError, match=words):  # what the node and infer_bag catch
        camera_info_lens(info)


def test_plumb_bob_padding_is_dropped():
    lens = lens_distortion("plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert lens == LensDistortion("plumb_bob", (-0.2, 0.05, 0.0, 0.0, 0.0))


@pytest.mark.parametrize("name", sorted(LENSES))
def test_undistorted_rays_project_back_onto_their_pixels(name):
    lens = LENSES[name]
    pixels = pixel_grid().reshape(-1, 2)
    rays = undistort_points(pixels, K, lens)
    points = np.concatenate([rays, np.ones((rays.shape[0], 1))], axis=1) * 3.0
    assert np.abs(project_points(points, K, lens) - pixels).max() < 1e-6
    # The lens is strong: the pinhole rays would be off by pixels near the corners.
    pinhole = (pixels - K[:2, 2]) / np.diag(K)[:2]
    assert np.abs(project_points(np.concatenate([pinhole, np.ones((pinhole.shape[0], 1))], 1), K, lens)
                  - pixels).max() > 5.0


@pytest.mark.parametrize("stride", [1, 3])
def test_raw_pixel_rays_sample_the_same_pixels_as_the_pinhole_rays(stride):
    lens = LENSES["plumb_bob"]
    rays = raw_pixel_rays(K, lens, HEIGHT, WIDTH, stride)
    assert rays.shape == unit_depth_rays(K, HEIGHT, WIDTH, stride).shape
    expected = undistort_points(pixel_grid(stride=stride).reshape(-1, 2), K, lens).reshape(rays.shape)
    np.testing.assert_allclose(rays, expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LENSES))
def test_depth_of_a_plane_maps_back_onto_the_raw_grid_exactly(name):
    undistorter = Undistorter(K, LENSES[name], WIDTH, HEIGHT)
    # The undistorted image is a pinhole image with K: its depth of the plane along pinhole rays.
    undistorted_depth = plane_depth(unit_depth_rays(K, HEIGHT, WIDTH).astype(np.float64)).astype(np.float32)
    raw = undistorter.depth_to_raw(undistorted_depth)
    truth = plane_depth(undistort_points(pixel_grid().reshape(-1, 2), K, LENSES[name]).reshape(HEIGHT, WIDTH, 2))
    covered = np.isfinite(raw)
    assert 0.6 < covered.mean() < 1.0  # barrel corners fall outside the undistorted view: NaN there
    assert not covered[0, 0] and covered[HEIGHT // 2, WIDTH // 2]
    # Inverse depth of a plane is affine in pinhole pixels, so bilinear sampling in it is exact.
    np.testing.assert_allclose(raw[covered], truth[covered], rtol=2e-6)


def test_undistorted_image_shows_each_ray_where_the_pinhole_camera_would():
    lens = LENSES["plumb_bob"]
    undistorter = Undistorter(K, lens, WIDTH, HEIGHT)

    def pattern(rays_xy):  # a smooth function of the ray, as a grey level
        return 128 + 100 * np.sin(3.0 * rays_xy[..., 0]) * np.cos(2.0 * rays_xy[..., 1])

    raw_rays = undistort_points(pixel_grid().reshape(-1, 2), K, lens).reshape(HEIGHT, WIDTH, 2)
    raw = np.repeat(pattern(raw_rays)[..., None], 3, axis=2).astype(np.float32)
    undistorted = undistorter.image(raw)[..., 0]
    expected = pattern(unit_depth_rays(K, HEIGHT, WIDTH).astype(np.float64))
    inner = (slice(20, HEIGHT - 20), slice(25, WIDTH - 25))
    assert np.abs(undistorted[inner] - expected[inner]).max() < 1.0


class PlaneBackend:
    """A depth backend that sees the plane through a pinhole K: what a perfect network would say
    about an undistorted image. Records the images it was given."""

    def __init__(self):
        self.images = []

    def run(self, rgb, extra_scale=1.0):
        self.images.append(rgb)
        depth = plane_depth(unit_depth_rays(K, rgb.shape[0], rgb.shape[1]).astype(np.float64)) * extra_scale
        return Prediction(depth.astype(np.float32), network_input=None)


@pytest.mark.parametrize("name", sorted(LENSES))
def test_pipeline_outputs_of_a_distorted_camera_stay_on_its_raw_pixels(name):
    lens = LENSES[name]
    backend = PlaneBackend()
    pipeline = FramePipeline(backend)
    config = DepthNodeConfig(model_path="unused", output_min_depth=0.1, output_max_depth=100.0)
    rgb = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    outputs = pipeline.run(rgb, K, config, lens)
    raw_rays = undistort_points(pixel_grid().reshape(-1, 2), K, lens).reshape(HEIGHT, WIDTH, 2)
    covered = np.isfinite(outputs.depth)
    np.testing.assert_allclose(outputs.depth[covered], plane_depth(raw_rays)[covered], rtol=2e-6)
    xyz, _ = unpack_xyzrgb(outputs.cloud.data, HEIGHT, WIDTH)
    points = xyz.reshape(HEIGHT, WIDTH, 3)[covered].astype(np.float64)
    # Every point projects through K and D onto its own pixel centre, and lies on the plane.
    pixels = pixel_grid()[covered]
    assert np.abs(project_points(points, K, lens) - pixels).max() < 1e-3
    np.testing.assert_allclose(points @ PLANE_NORMAL, PLANE_DISTANCE, rtol=1e-5)
    assert np.isnan(xyz.reshape(HEIGHT, WIDTH, 3)[~covered]).all()
    # The network got the undistorted image, not the raw one.
    np.testing.assert_array_equal(backend.images[0], Undistorter(K, lens, WIDTH, HEIGHT).image(rgb))
    assert not np.array_equal(backend.images[0], rgb)


def test_pipeline_of_a_pinhole_camera_is_unchanged():
    backend = PlaneBackend()
    pipeline = FramePipeline(backend)
    config = DepthNodeConfig(model_path="unused", output_min_depth=0.1, output_max_depth=100.0)
    rgb = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    outputs = pipeline.run(rgb, K, config)
    assert backend.images[0] is rgb
    np.testing.assert_allclose(outputs.depth, plane_depth(unit_depth_rays(K, HEIGHT, WIDTH).astype(np.float64)),
                               rtol=1e-6)


def test_a_rectified_image_uses_P_and_no_distortion():
    """image_proc's image_rect comes with the raw camera's camera_info: K and D of the raw image, P of
    the rectified one."""
    from mono_depth_ros.frame_pipeline import camera_info_intrinsics

    P = [100.0, 0.0, 77.0, 0.0, 0.0, 101.0, 60.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    roi = SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0)
    info = SimpleNamespace(k=K.reshape(-1).tolist(), p=P, d=list(LENSES["plumb_bob"].D), distortion_model="plumb_bob",
                           width=WIDTH, height=HEIGHT, binning_x=0, binning_y=0, roi=roi)
    assert camera_info_lens(info) == LENSES["plumb_bob"]
    np.testing.assert_allclose(camera_info_intrinsics(info, WIDTH, HEIGHT), K)
    assert camera_info_lens(info, rectified=True) is None
    np.testing.assert_allclose(camera_info_intrinsics(info, WIDTH, HEIGHT, rectified=True),
                               [[100.0, 0.0, 77.0], [0.0, 101.0, 60.5], [0.0, 0.0, 1.0]])
    info.p = [0.0] * 12  # no P: K is the camera
    np.testing.assert_allclose(camera_info_intrinsics(info, WIDTH, HEIGHT, rectified=True), K)
