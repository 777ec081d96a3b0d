"""The synthetic recording writer: exact depth, exact K, bag layout, determinism."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mono_depth_ros.geometry import reproject_coordinates, warp_image
from mono_depth_ros.image_conversion import image_to_rgb
from training import synthetic

rosbags_highlevel = pytest.importorskip("rosbags.highlevel", reason="rosbags is required to read bags")


def _read_all(path):
    """topic -> list of (bag time ns, message)."""
    from rosbags.highlevel import AnyReader

    messages = {}
    with AnyReader([path]) as reader:
        for connection, stamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((stamp, reader.deserialize(raw, connection.msgtype)))
    return messages


@pytest.fixture(scope="module")
def mcap_recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "bag"
    return synthetic.write_synthetic_bag(path, num_frames=12, return_recording=True)


def test_topics_counts_and_intrinsics(mcap_recording):
    messages = _read_all(mcap_recording.path)
    assert {topic: len(items) for topic, items in messages.items() if topic != "/odom"} == {
        "/camera/image_raw": 12,
        "/camera/camera_info": 12,
        "/camera/depth": 12,
        "/camera_right/image_raw": 12,
        "/camera_right/camera_info": 12,
    }
    assert len(messages["/odom"]) >= 24  # twice the image rate
    info = messages["/camera/camera_info"][0][1]
    K = np.array(info.k).reshape(3, 3)
    np.testing.assert_array_equal(K, synthetic.camera_intrinsics(160, 96))
    np.testing.assert_array_equal(K, mcap_recording.K)
    assert (info.width, info.height) == (160, 96)
    assert not np.any(info.d)
    right = messages["/camera_right/camera_info"][0][1]
    assert right.p[3] == pytest.approx(-K[0, 0] * 0.2)
    assert info.p[3] == 0.0
    # Stamps: 10 Hz from the origin, header == bag time, same for depth.
    stamps = [stamp for stamp, _ in messages["/camera/image_raw"]]
    assert stamps == [synthetic.STAMP_ORIGIN_NS + i * 100_000_000 for i in range(12)]
    header = messages["/camera/depth"][3][1].header.stamp
    assert header.sec * 10**9 + header.nanosec == stamps[3]


def test_ground_pixels_backproject_onto_ground_plane(mcap_recording):
    messages = _read_all(mcap_recording.path)
    K = np.array(messages["/camera/camera_info"][0][1].k).reshape(3, 3)
    scene, trajectory = mcap_recording.scene, mcap_recording.trajectory
    rays = synthetic.camera_rays(K, 160, 96)
    for index in (0, 7):
        msg = messages["/camera/depth"][index][1]
        assert msg.encoding == "32FC1"
        depth = np.frombuffer(msg.data.tobytes(), dtype="<f4").reshape(96, 160)
        T = trajectory.T_odom_optical(index * 0.1)
        # Which surface each pixel sees (ground = 0); the depth itself comes from the bag.
        _, _, surface = scene.intersect(T[:3, 3], T[:3, :3] @ rays)
        ground = surface == 0
        assert ground.sum() > 2000
        points_camera = rays[:, ground] * depth.reshape(-1)[ground]
        points_odom = T[:3, :3] @ points_camera + T[:3, 3:4]
        assert np.abs(points_odom[2]).max() < 1e-4
        # And the side walls are where the scene says (|y| = half width).
        wall = (surface == 2) | (surface == 3)
        wall_points = T[:3, :3] @ (rays[:, wall] * depth.reshape(-1)[wall]) + T[:3, 3:4]
        np.testing.assert_allclose(np.abs(wall_points[1]), scene.half_width, atol=1e-4)


def test_odometry_is_the_rendered_camera_pose(mcap_recording):
    messages = _read_all(mcap_recording.path)
    for stamp, odom in messages["/odom"][::5]:
        time_s = (stamp - synthetic.STAMP_ORIGIN_NS) * 1e-9
        T = mcap_recording.trajectory.T_odom_body(time_s)
        position = odom.pose.pose.position
        np.testing.assert_allclose([position.x, position.y, position.z], T[:3, 3], atol=1e-9)
        assert odom.header.frame_id == "odom" and odom.child_frame_id == "camera_link"
    # Optical frame: z forward along odom +x at yaw 0, y down.
    T0 = mcap_recording.poses[0]
    np.testing.assert_allclose(T0[:3, 2], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(T0[:3, 1], [0.0, 0.0, -1.0], atol=1e-12)
    # The camera moves forward ~speed / rate per frame.
    step = np.linalg.norm(mcap_recording.poses[1][:3, 3] - mcap_recording.poses[0][:3, 3])
    assert 0.07 < step < 0.13


def test_right_image_is_left_warped_by_the_baseline(mcap_recording):
    """Warping right into left with T_right_left (x = -baseline) and exact depth reproduces the left image."""
    left = torch.from_numpy(mcap_recording.images[5]).permute(2, 0, 1)[None].float() / 255
    right = torch.from_numpy(mcap_recording.right_images[5]).permute(2, 0, 1)[None].float() / 255
    depth = torch.from_numpy(mcap_recording.depths[5])[None, None].double()
    K = torch.from_numpy(mcap_recording.K)[None]

    def error(baseline_sign):
        T = torch.eye(4, dtype=torch.float64)[None]
        T[0, 0, 3] = -0.2 * baseline_sign
        grid = reproject_coordinates(depth, T, K, K).float()
        inside = (grid.abs() < 0.98).all(dim=-1)
        return (warp_image(right, grid) - left).abs().mean(dim=1)[inside].mean().item()

    assert error(+1) < 0.02
    assert error(-1) > 2 * error(+1)


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path):
    # Same bag name in two folders: the storage file embeds its own name.
    a = synthetic.write_synthetic_bag(tmp_path / "1" / "bag", num_frames=3, stereo=False, odometry=False)
    b = synthetic.write_synthetic_bag(tmp_path / "2" / "bag", num_frames=3, stereo=False, odometry=False)
    c = synthetic.render_recording(num_frames=3, stereo=False, seed=1)
    assert synthetic.storage_file(a).read_bytes() == synthetic.storage_file(b).read_bytes()
    first = _read_all(a)["/camera/image_raw"][2][1]
    decoded = image_to_rgb(first.encoding, first.height, first.width, first.step, first.data.tobytes())
    np.testing.assert_array_equal(decoded, synthetic.render_recording(num_frames=3, stereo=False).images[2])
    assert np.abs(decoded.astype(int) - c.images[2].astype(int)).mean() > 5


def test_sqlite_compressed_static_and_16uc1(tmp_path):
    recording = synthetic.write_synthetic_bag(
        tmp_path / "bag",
        num_frames=6,
        storage="sqlite3",
        compressed="png",
        encoding="bgr8",
        static_frames=3,
        depth_encoding="16UC1",
        odometry=False,
        return_recording=True,
    )
    assert synthetic.storage_file(recording.path).suffix == ".db3"
    messages = _read_all(recording.path)
    assert set(messages) == {
        "/camera/image_raw/compressed",
        "/camera/camera_info",
        "/camera/depth",
        "/camera_right/image_raw/compressed",
        "/camera_right/camera_info",
    }
    compressed = messages["/camera/image_raw/compressed"][4][1]
    assert "png" in compressed.format
    bgr = cv2.imdecode(compressed.data, cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(bgr[:, :, ::-1], recording.images[4])  # png is lossless
    depth_msg = messages["/camera/depth"][4][1]
    assert depth_msg.encoding == "16UC1"
    millimetres = np.frombuffer(depth_msg.data.tobytes(), dtype="<u2").reshape(96, 160)
    in_range = recording.depths[4] < 65.0
    assert 0 < in_range.sum() < in_range.size  # the end wall is beyond 16-bit millimetres
    np.testing.assert_allclose(millimetres[in_range] / 1000.0, recording.depths[4][in_range], atol=5e-4)
    assert (millimetres[recording.depths[4] > 65.6] == 0).all()  # out of range -> invalid
    # The first three frames stand still, then the camera moves.
    np.testing.assert_array_equal(recording.poses[0], recording.poses[2])
    np.testing.assert_array_equal(recording.images[0], recording.images[2])
    assert np.linalg.norm(recording.poses[4][:3, 3] - recording.poses[2][:3, 3]) > 0.05


@pytest.mark.parametrize(
    "model, coefficients",
    [("plumb_bob", [-0.2, 0.05, 0.001, -0.001, 0.0]), ("equidistant", [-0.02, 0.01, -0.005, 0.001])],
)
def test_distorted_render_projects_through_distortion(model, coefficients):
    recording = synthetic.render_recording(
        num_frames=1, stereo=False, distortion=coefficients, distortion_model=model
    )
    K, depth = recording.K, recording.depths[0]
    rays = synthetic.camera_rays(K, 160, 96, coefficients, model)
    points = (rays * depth.reshape(-1)).T.reshape(-1, 1, 3).astype(np.float64)
    zero = np.zeros(3)
    if model == "equidistant":
        pixels, _ = cv2.fisheye.projectPoints(points, zero, zero, K, np.array(coefficients))
    else:
        pixels, _ = cv2.projectPoints(points, zero, zero, K, np.array(coefficients))
    v, u = np.meshgrid(np.arange(96), np.arange(160), indexing="ij")
    expected = np.stack([u.ravel(), v.ravel()], axis=-1)
    np.testing.assert_allclose(pixels.reshape(-1, 2), expected, atol=1e-3)
    # The distorted image really differs from the pinhole one.
    pinhole = synthetic.render_recording(num_frames=1, stereo=False).images[0]
    assert np.abs(pinhole.astype(int) - recording.images[0].astype(int)).mean() > 3
