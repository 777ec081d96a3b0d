"""Tests of CameraInfo -> K for the published image (binning, ROI, validation)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mono_depth_ros.camera import CameraInfoError, intrinsics_for_image
from mono_depth_ros.geometry import scale_intrinsics

K_FULL = [900.0, 0.0, 611.3, 0.0, 905.0, 377.9, 0.0, 0.0, 1.0]  # CameraInfo.k, row-major
POINTS = np.array([[0.4, -0.3, 2.0], [-1.2, 0.7, 9.0], [0.0, 0.0, 1.0], [3.0, 2.0, 5.0]])  # camera frame


def project(K: np.ndarray, points: np.ndarray = POINTS) -> np.ndarray:
    pixels = (np.asarray(K) @ points.T).T
    return pixels[:, :2] / pixels[:, 2:]


def test_plain_camera_info_returns_its_K():
    k = list(K_FULL)
    K = intrinsics_for_image(k, 1280, 720, 1280, 720)
    assert K.shape == (3, 3) and K.dtype == np.float64
    np.testing.assert_array_equal(K, np.array(K_FULL).reshape(3, 3))
    K[0, 0] = 1.0
    assert k == K_FULL  # the caller's array is not modified


def test_binning_zero_means_one():
    K0 = intrinsics_for_image(K_FULL, 1280, 720, 1280, 720, binning_x=0, binning_y=0)
    K1 = intrinsics_for_image(K_FULL, 1280, 720, 1280, 720, binning_x=1, binning_y=1)
    np.testing.assert_array_equal(K0, K1)


@pytest.mark.parametrize(
    "k, message",
    [
        ([0.0] * 9, r"focal lengths fx=0.0, fy=0.0; both must be > 0 \(is the camera calibrated\?\)"),
        ([900.0, 0, 611.3, 0, -905.0, 377.9, 0, 0, 1], "fy=-905.0; both must be > 0"),
        ([-1.0, 0, 611.3, 0, 905.0, 377.9, 0, 0, 1], "fx=-1.0"),
        ([math.nan, 0, 611.3, 0, 905.0, 377.9, 0, 0, 1], r"non-finite entries: \[nan, 0.0, 611.3"),
        ([900.0, 0, 611.3, 0, 905.0, math.inf, 0, 0, 1], "non-finite entries"),
    ],
)
def test_unusable_K_is_refused(k, message):
    with pytest.raises(CameraInfoError, match=message):
        intrinsics_for_image(k, 1280, 720, 1280, 720)


def test_size_mismatch_names_both_sizes():
    with pytest.raises(CameraInfoError) as caught:
        intrinsics_for_image(K_FULL, 1280, 720, 640, 360)
    message = str(caught.value)
    assert "camera_info describes 1280x720 images but the image is 640x360" in message
    assert "remap camera_info" in message


def test_binning_2_is_pixel_centre_exact_and_matches_scale_intrinsics():
    K = intrinsics_for_image(K_FULL, 1280, 720, 640, 360, binning_x=2, binning_y=2)
    full = np.array(K_FULL).reshape(3, 3)
    expected = scale_intrinsics(torch.from_numpy(full)[None], 0.5, 0.5)[0].numpy()
    np.testing.assert_allclose(K, expected, rtol=0, atol=1e-12)
    # Binned pixel b averages full pixels 2b and 2b + 1, so its centre is full pixel 2b + 0.5.
    np.testing.assert_allclose(2.0 * project(K) + 0.5, project(full), rtol=0, atol=1e-9)


def test_unequal_binning():
    K = intrinsics_for_image(K_FULL, 1280, 720, 320, 360, binning_x=4, binning_y=2)
    full = np.array(K_FULL).reshape(3, 3)
    binned = project(K)
    np.testing.assert_allclose(4.0 * binned[:, 0] + 1.5, project(full)[:, 0], atol=1e-9)
    np.testing.assert_allclose(2.0 * binned[:, 1] + 0.5, project(full)[:, 1], atol=1e-9)


def test_roi_shifts_principal_point():
    K = intrinsics_for_image(
        K_FULL, 1280, 720, 400, 300, roi_x_offset=200, roi_y_offset=100, roi_width=400, roi_height=300
    )
    full = np.array(K_FULL).reshape(3, 3)
    assert (K[0, 2], K[1, 2]) == pytest.approx((411.3, 277.9))
    assert (K[0, 0], K[1, 1]) == (900.0, 905.0)
    np.testing.assert_allclose(project(K) + [200.0, 100.0], project(full), rtol=0, atol=1e-9)


def test_roi_then_binning():
    # ROI is in full-resolution pixels (before binning); the image is the binned ROI.
    K = intrinsics_for_image(
        K_FULL, 1280, 720, 200, 150, binning_x=2, binning_y=2,
        roi_x_offset=200, roi_y_offset=100, roi_width=400, roi_height=300,
    )
    full = np.array(K_FULL).reshape(3, 3)
    np.testing.assert_allclose(2.0 * project(K) + 0.5 + [200.0, 100.0], project(full), rtol=0, atol=1e-9)


def test_roi_size_mismatch_names_the_roi_size():
    with pytest.raises(CameraInfoError, match="camera_info describes 200x150 images but the image is 400x300"):
        intrinsics_for_image(
            K_FULL, 1280, 720, 400, 300, binning_x=2, binning_y=2,
            roi_x_offset=0, roi_y_offset=0, roi_width=400, roi_height=300,
        )


def test_roi_inside_up_to_the_sensor_edges_is_accepted_and_shifts_K_exactly():
    # The ROI ends exactly on the right and bottom edges (880 + 400 = 1280, 420 + 300 = 720): still inside.
    K = intrinsics_for_image(
        K_FULL, 1280, 720, 400, 300, roi_x_offset=880, roi_y_offset=420, roi_width=400, roi_height=300
    )
    expected = np.array(K_FULL).reshape(3, 3)
    expected[0, 2] -= 880.0
    expected[1, 2] -= 420.0
    np.testing.assert_array_equal(K, expected)  # only cx, cy move, by exactly the offsets
    assert (K[0, 2], K[1, 2]) == (611.3 - 880.0, 377.9 - 420.0)


@pytest.mark.parametrize(
    "roi, named, not_named",
    [
        # x_offset, y_offset, width, height
        ((1000, 100, 400, 300), "roi.x_offset 1000 + roi.width 400 = 1400 > width 1280", "roi.y_offset"),
        ((881, 0, 400, 300), "roi.x_offset 881 + roi.width 400 = 1281 > width 1280", "roi.y_offset"),
        ((200, 500, 400, 300), "roi.y_offset 500 + roi.height 300 = 800 > height 720", "roi.x_offset"),
        ((0, 421, 400, 300), "roi.y_offset 421 + roi.height 300 = 721 > height 720", "roi.x_offset"),
    ],
)
def test_roi_past_the_right_or_bottom_edge_is_refused_with_the_numbers(roi, named, not_named):
    x_offset, y_offset, width, height = roi
    with pytest.raises(CameraInfoError) as caught:
        # The image has the ROI's size, so only the ROI's position is wrong.
        intrinsics_for_image(
            K_FULL, 1280, 720, width, height,
            roi_x_offset=x_offset, roi_y_offset=y_offset, roi_width=width, roi_height=height,
        )
    message = str(caught.value)
    assert "region of interest runs past the edge of the 1280x720 sensor" in message
    assert named in message and not_named not in message
    assert "fix roi (or width/height) in the camera driver's calibration" in message


def test_roi_past_both_edges_names_both():
    with pytest.raises(CameraInfoError) as caught:
        intrinsics_for_image(
            K_FULL, 1280, 720, 200, 150, binning_x=2, binning_y=2,
            roi_x_offset=1000, roi_y_offset=600, roi_width=400, roi_height=300,
        )
    message = str(caught.value)
    assert "roi.x_offset 1000 + roi.width 400 = 1400 > width 1280" in message
    assert "roi.y_offset 600 + roi.height 300 = 900 > height 720" in message


def test_camera_info_message_with_roi_past_the_edge_is_a_camera_info_error():
    # What depth_node and infer_bag call: a CameraInfoError, so both skip the frame with their usual warning.
    from types import SimpleNamespace

    from mono_depth_ros.frame_pipeline import camera_info_intrinsics

    roi = SimpleNamespace(x_offset=1000, y_offset=0, width=400, height=300, do_rectify=False)
    info = SimpleNamespace(k=K_FULL, width=1280, height=720, binning_x=0, binning_y=0, roi=roi)
    with pytest.raises(CameraInfoError, match="1400 > width 1280"):
        camera_info_intrinsics(info, 400, 300)
    roi.x_offset = 880
    np.testing.assert_allclose(camera_info_intrinsics(info, 400, 300)[0, 2], 611.3 - 880.0, rtol=0, atol=0)
