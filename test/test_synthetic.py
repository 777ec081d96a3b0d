"""The synthetic recording writer: exact depth, exact K, bag layout, determinism."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from mono_depth_ros.geometry import R_BODY_OPTICAL, quaternion_to_matrix, reproject_coordinates, rotation_log, warp_image
from mono_depth_ros.image_conversion import image_to_rgb
from mono_depth_ros import simulation as synthetic

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


# --------------------------------------------------------------------------- street scene

STREET_SIZE = (128, 80)  # (width, height): small, still big enough to see every kind of object
STREET_BASELINE = 0.25


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    path = tmp_path_factory.mktemp("street") / "bag"
    width, height = STREET_SIZE
    return synthetic.write_synthetic_bag(
        path, scene="street", num_frames=60, width=width, height=height, speed_mps=1.25,
        baseline_m=STREET_BASELINE, seed=4, return_recording=True,
    )


@pytest.fixture(scope="module")
def street_messages(street):
    return _read_all(street.path)


def _depth_from(message, width, height):
    assert message.encoding == "32FC1"
    return np.frombuffer(message.data.tobytes(), dtype="<f4").reshape(height, width)


def _backproject(street, depth, index):
    """Odom points (3, H*W) of the left camera's pixels at frame `index` from a depth map."""
    rays = synthetic.camera_rays(street.K, *STREET_SIZE)
    T = street.poses[index]
    distance = np.where(np.isfinite(depth), depth, 0.0).reshape(-1).astype(np.float64)  # sky: no point
    return T[:3, :3] @ (rays * distance) + T[:3, 3:4]


def test_street_depth_is_exact_on_every_kind_of_surface(street, street_messages):
    width, height = STREET_SIZE
    scene = street.scene
    seen = set()
    for index in (0, 20, 45, 59):
        depth = _depth_from(street_messages["/camera/depth"][index][1], width, height)
        points = _backproject(street, depth, index)
        surface = street.surfaces[index].reshape(-1)
        distance = depth.reshape(-1).astype(np.float64)
        ground = surface == scene.GROUND
        assert ground.sum() > 0.2 * surface.size
        # On the plane z = 0, to 1e-4 relative to the distance (float32 depth is the limit).
        assert np.all(np.abs(points[2, ground]) <= 1e-4 * distance[ground])
        sky = surface == scene.SKY
        assert sky.any() and np.all(np.isposinf(depth.reshape(-1)[sky]))
        assert np.all(np.isfinite(distance[~sky]))
        for box_surface in np.unique(surface[surface > 0]):
            box = scene.boxes[box_surface - 1]
            pixels = surface == box_surface
            on_face = points[:, pixels]
            low, high = np.array(box.minimum)[:, None], np.array(box.maximum)[:, None]
            tolerance = 1e-4 * distance[pixels]
            # Inside the box's extent, and on one of its six faces.
            assert np.all((on_face >= low - tolerance) & (on_face <= high + tolerance))
            to_face = np.minimum(np.abs(on_face - low), np.abs(on_face - high)).min(axis=0)
            assert np.all(to_face <= tolerance)
            seen.add(scene.kinds[box_surface - 1])
    assert seen >= {"building", "end", "car", "crate", "pole"}, seen


def test_street_facades_lie_on_their_planes(street):
    """Building faces seen head-on from the street (normal along y) are the planes y = front of the block."""
    scene, index = street.scene, 30
    depth = street.depths[index].reshape(-1).astype(np.float64)
    points = _backproject(street, street.depths[index], index)
    T = street.poses[index]
    _, axis, surface = scene.intersect(T[:3, 3], T[:3, :3] @ synthetic.camera_rays(street.K, *STREET_SIZE))
    np.testing.assert_array_equal(surface, street.surfaces[index].reshape(-1))
    facades = 0
    for box_surface in np.unique(surface[surface > 0]):
        on_front = (surface == box_surface) & (axis == 1)
        if scene.kinds[box_surface - 1] != "building" or not on_front.any():
            continue
        box = scene.boxes[box_surface - 1]
        front_y = box.minimum[1] if box.minimum[1] > T[1, 3] else box.maximum[1]  # the side facing the camera
        assert abs(front_y) >= synthetic.FACADE_LINE_M
        assert np.all(np.abs(points[1, on_front] - front_y) <= 1e-4 * depth[on_front])
        facades += 1
    assert facades >= 4


def test_street_render_matches_an_unculled_ray_cast(street):
    """The renderer skips boxes outside each view; the full per-box cast must agree exactly."""
    rays = synthetic.camera_rays(street.K, *STREET_SIZE)
    for index in (5, 40):
        T = street.poses[index]
        depth, _, surface = street.scene.intersect(T[:3, 3], T[:3, :3] @ rays)
        np.testing.assert_array_equal(surface.reshape(street.surfaces[index].shape), street.surfaces[index])
        np.testing.assert_array_equal(depth.astype(np.float32).reshape(street.depths[index].shape), street.depths[index])


def test_street_topics_intrinsics_and_stamps(street, street_messages):
    width, height = STREET_SIZE
    assert {"/camera/image_raw", "/camera/camera_info", "/camera/depth", "/camera_right/image_raw",
            "/camera_right/camera_info", "/odom"} == set(street_messages)
    info = street_messages["/camera/camera_info"][0][1]
    K = np.array(info.k).reshape(3, 3)
    np.testing.assert_array_equal(K, street.K)
    np.testing.assert_array_equal(K, synthetic.camera_intrinsics(width, height))
    assert (info.width, info.height) == (width, height)
    right = street_messages["/camera_right/camera_info"][0][1]
    assert right.p[3] == pytest.approx(-K[0, 0] * STREET_BASELINE)
    assert right.header.frame_id == synthetic.RIGHT_FRAME and info.p[3] == 0.0

    def stamps(topic):
        return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in street_messages[topic]]

    assert stamps("/camera/depth") == stamps("/camera/image_raw") == street.stamps_ns
    assert stamps("/camera_right/image_raw") == street.stamps_ns
    assert street.stamps_ns == [synthetic.STAMP_ORIGIN_NS + i * 100_000_000 for i in range(60)]
    # The right camera really is baseline_m to the right of the left one.
    offset = np.linalg.inv(street.poses[10]) @ street.right_poses[10]
    np.testing.assert_allclose(offset[:3, 3], [STREET_BASELINE, 0.0, 0.0], atol=1e-12)


def test_street_odometry_carries_the_full_rendered_orientation(street, street_messages):
    T_body_optical = np.eye(4)
    T_body_optical[:3, :3] = R_BODY_OPTICAL
    for index in (0, 17, 59):
        T_body = street.trajectory.T_odom_body(index * 0.1)
        np.testing.assert_allclose(street.poses[index], T_body @ T_body_optical, atol=1e-12)
    pitch_roll = []
    odometry = street_messages["/odom"]
    assert len(odometry) >= 120
    for stamp, odom in odometry:
        T = street.trajectory.T_odom_body((stamp - synthetic.STAMP_ORIGIN_NS) * 1e-9)
        q = odom.pose.pose.orientation
        R = quaternion_to_matrix((q.x, q.y, q.z, q.w))
        assert np.linalg.norm(rotation_log(R.T @ T[:3, :3])) < 1e-6
        p = odom.pose.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], T[:3, 3], atol=1e-9)
        assert p.z == pytest.approx(street.camera_height_m) and street.camera_height_m == synthetic.STREET_CAMERA_HEIGHT_M
        pitch_roll.append(math.degrees(math.asin(min(1.0, abs(T[2, 0])))))  # |pitch|
        pitch_roll.append(math.degrees(math.atan2(T[2, 1], T[2, 2])))  # roll
        twist = odom.twist.twist
        assert twist.linear.x > -1e-6 and abs(twist.linear.x) < 2.5  # forward, 0 .. 1.6 x 1.25 m/s
    # Small but real rotations: pitch and roll under 2 degrees, not zero.
    assert 0.1 < np.abs(pitch_roll).max() < 2.0
    # Angular velocity in camera_link agrees with the change of orientation between messages.
    (s0, first), (s1, second) = odometry[20], odometry[21]
    R0 = street.trajectory.T_odom_body((s0 - synthetic.STAMP_ORIGIN_NS) * 1e-9)[:3, :3]
    R1 = street.trajectory.T_odom_body((s1 - synthetic.STAMP_ORIGIN_NS) * 1e-9)[:3, :3]
    mean_rate = rotation_log(R0.T @ R1) / ((s1 - s0) * 1e-9)
    rates = [np.array([m.twist.twist.angular.x, m.twist.twist.angular.y, m.twist.twist.angular.z]) for m in (first, second)]
    np.testing.assert_allclose(mean_rate, (rates[0] + rates[1]) / 2, atol=0.02)


def test_street_speed_varies_and_the_camera_stops_mid_recording(street):
    steps = np.array([np.linalg.norm(b[:3, 3] - a[:3, 3]) for a, b in zip(street.poses, street.poses[1:])])
    still = street.still_frames
    assert len(still) >= 4 and still == list(range(still[0], still[-1] + 1))
    assert 15 < still[0] and still[-1] < 50  # in the middle, not at the start
    for index in still:
        np.testing.assert_array_equal(street.poses[index], street.poses[index - 1])
        np.testing.assert_array_equal(street.images[index], street.images[index - 1])
    moving = np.delete(steps, [i - 1 for i in still])
    assert moving.max() > 1.5 * np.median(moving)  # speed changes
    assert moving.min() < 0.5 * np.median(moving)  # slowing down into the stop
    assert np.all(steps[:10] > 0.02)


def test_street_is_deterministic_by_seed_and_seeds_change_the_layout():
    kwargs = dict(scene="street", num_frames=2, width=64, height=40, stereo=False, stop_frames=0)
    first = synthetic.render_recording(seed=7, **kwargs)
    again = synthetic.render_recording(seed=7, **kwargs)
    other = synthetic.render_recording(seed=8, **kwargs)
    for a, b in zip(first.images + first.depths, again.images + again.depths):
        assert a.tobytes() == b.tobytes()
    assert first.scene.boxes == again.scene.boxes
    assert first.scene.boxes != other.scene.boxes
    assert np.abs(first.images[1].astype(int) - other.images[1].astype(int)).mean() > 5


def test_street_stop_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="too few for a stop of 8 frames"):
        synthetic.render_recording(scene="street", num_frames=20, width=16, height=16, stop_frames=8)
    with pytest.raises(ValueError, match="scene must be one of corridor, street"):
        synthetic.render_recording(scene="garden", num_frames=1)


def test_street_surfaces_are_textured_near_and_far():
    """Photometric losses need gradients: every kind of surface shows texture (std of the Laplacian)."""
    recording = synthetic.render_recording(scene="street", num_frames=1, width=320, height=192, stereo=False, seed=1)
    scene, surface = recording.scene, recording.surfaces[0]
    grey = cv2.cvtColor(recording.images[0], cv2.COLOR_RGB2GRAY).astype(np.float64)
    laplacian = cv2.Laplacian(grey, cv2.CV_64F)
    kinds = np.array(("sky", "ground") + scene.kinds)[surface + 1]
    depth = recording.depths[0]
    classes = {kind: kinds == kind for kind in ("ground", "building", "end", "car", "crate", "pole")}
    classes["ground near (< 8 m)"] = classes["ground"] & (depth < 8.0)
    classes["ground far (> 20 m)"] = classes["ground"] & (depth > 20.0)
    for name, mask in classes.items():
        # Away from the surface's outline: only texture inside, no object edges.
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert inner.sum() >= 100, name
        assert laplacian[inner].std() > 8.0, (name, laplacian[inner].std())  # measured 19-56
    sky = cv2.erode((kinds == "sky").astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert 0.3 < laplacian[sky].std() < 8.0  # faint clouds (measured 0.9)
    assert np.all(np.isposinf(depth[kinds == "sky"]))


def test_sample_recording_command(tmp_path, capsys):
    from mono_depth_ros.simulation import cli as sample_recording

    small = ["--frames", "3", "--width", "48", "--height", "32", "--quiet"]
    assert sample_recording.main(["--out", str(tmp_path / "mcap")] + small) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(tmp_path / "mcap")
    assert synthetic.storage_file(tmp_path / "mcap").suffix == ".mcap"
    messages = _read_all(tmp_path / "mcap")
    assert set(messages) == {"/camera/image_raw", "/camera/camera_info", "/camera/depth", "/camera_right/image_raw",
                             "/camera_right/camera_info", "/odom"}
    assert messages["/camera_right/camera_info"][0][1].p[3] == pytest.approx(-0.7 * 48 * 0.25)  # default baseline
    # The same flags give the same image data.
    expected = synthetic.render_recording(scene="street", num_frames=3, width=48, height=32, speed_mps=1.25,
                                          stereo=False, stop_frames=0)
    for (_, message), rgb in zip(messages["/camera/image_raw"], expected.images):
        assert message.data.tobytes() == rgb.tobytes()

    assert sample_recording.main(["--out", str(tmp_path / "db"), "--storage", "sqlite3", "--no-stereo", "--no-depth",
                                  "--compressed"] + small) == 0
    assert synthetic.storage_file(tmp_path / "db").suffix == ".db3"
    assert set(_read_all(tmp_path / "db")) == {"/camera/image_raw/compressed", "/camera/camera_info", "/odom"}

    before = synthetic.storage_file(tmp_path / "mcap").read_bytes()
    capsys.readouterr()
    assert sample_recording.main(["--out", str(tmp_path / "mcap")] + small) == 2
    assert "already exists" in capsys.readouterr().err
    assert synthetic.storage_file(tmp_path / "mcap").read_bytes() == before
    assert sample_recording.main(["--out", str(tmp_path / "new"), "--frames", "0"]) == 2
    assert "--frames must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
