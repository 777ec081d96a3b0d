"""kitti_to_bag on a miniature KITTI raw drive written here in KITTI's on-disk format from known geometry."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from mono_depth_ros.bagio import BagReader, discover_topics, select_depth_topic
from mono_depth_ros.bagio.decode import decode_depth, decode_image
from mono_depth_ros.geometry.rotations import quaternion_to_matrix
from mono_depth_ros_training.kitti.raw import (
    DEPTH_TOPIC,
    EARTH_RADIUS_M,
    LEFT_IMAGE_TOPIC,
    LEFT_INFO_TOPIC,
    ODOM_TOPIC,
    RIGHT_IMAGE_TOPIC,
    RIGHT_INFO_TOPIC,
    TF_STATIC_TOPIC,
    VELODYNE_TOPIC,
    KittiError,
    kitti_to_bag,
    load_calibration,
    main,
    oxts_poses,
    read_drive,
    select_frames,
    split_frames,
    velodyne_depth,
)
from mono_depth_ros_training.kitti.splits import read_split

WIDTH, HEIGHT = 40, 24
F, CX, CY = 20.0, 20.0, 12.0
T_LEFT, T_RIGHT = 0.06, -0.48  # x of camera 0's origin seen from cameras 2 and 3: baseline 0.54 m
VELO_Z = -0.5  # camera z = velodyne x - 0.5 (R maps velodyne x forward to camera z)
LAT0, LON0 = 49.0, 8.4
FRAMES = 3
DATE = "2011_09_26"
DRIVE = f"{DATE}_drive_0001_sync"


def _line(key, values):
    return f"{key}: " + " ".join(f"{v:.12e}" for v in np.ravel(values)) + "\n"


def _P(tx):
    return np.array([[F, 0, CX, F * tx], [0, F, CY, 0], [0, 0, 1, 0]])


def _velo_point(u, v, z):
    """The velodyne point that camera 2 sees at pixel (u, v) with camera z ``z``."""
    x2, y2 = (u - CX) * z / F, (v - CY) * z / F
    x0 = x2 - T_LEFT  # camera 0's frame (rectified = unrectified here: R_rect_00 = I)
    return [z - VELO_Z, -x0, -y2, 0.5]


# Two points on pixel (30, 16) at z 4 and 8 (the nearest must win), one on (5, 3), one behind, one outside.
POINTS = np.array([_velo_point(30, 16, 4.0), _velo_point(30, 16, 8.0), _velo_point(5, 3, 10.0),
                   [-3.0, 0.0, 0.0, 1.0], _velo_point(100, 12, 5.0)], dtype=np.float32)


def write_drive(root: Path) -> Path:
    date = root / DATE
    drive = date / DRIVE
    date.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n" + _line("S_rect_02", [WIDTH, HEIGHT]) + _line("R_rect_00", np.eye(3))
        + _line("P_rect_02", _P(T_LEFT)) + _line("S_rect_03", [WIDTH, HEIGHT]) + _line("P_rect_03", _P(T_RIGHT))
    )
    R_velo = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    (date / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\n" + _line("R", R_velo) + _line("T", [0, 0, VELO_Z])
    )
    (date / "calib_imu_to_velo.txt").write_text(_line("R", np.eye(3)) + _line("T", [-0.8, 0.3, -0.7]))
    for name in ("image_02/data", "image_03/data", "oxts/data", "velodyne_points/data"):
        (drive / name).mkdir(parents=True)
    scale = math.cos(math.radians(LAT0))
    step_deg = math.degrees(1.0 / (scale * EARTH_RADIUS_M))  # 1 m east per frame
    stamps = []
    for i in range(FRAMES):
        stem = f"{i:010d}"
        image = np.full((HEIGHT, WIDTH, 3), 40 * i, np.uint8)
        image[:, :, 2] = 200  # red in BGR
        cv2.imwrite(str(drive / "image_02/data" / f"{stem}.png"), image)
        cv2.imwrite(str(drive / "image_03/data" / f"{stem}.png"), image[:, :, ::-1].copy())
        packet = [LAT0, LON0 + i * step_deg, 110.0, 0, 0, 0, 0, 10.0, 10.0, 0.0, 0.0]
        packet += [0.0] * 6 + [0.0] * 3 + [0.0, 0.0, 0.05] + [0.1, 0.1, 4, 10, 4, 4, 4]  # a wx-wz w(flu) ...
        assert len(packet) == 30
        (drive / "oxts/data" / f"{stem}.txt").write_text(" ".join(f"{v:.12f}" for v in packet) + "\n")
        POINTS.tofile(drive / "velodyne_points/data" / f"{stem}.bin")
        stamps.append(f"{DATE.replace('_', '-')} 13:02:25.{100000000 * i + 964389:09d}")
    (drive / "image_02/timestamps.txt").write_text("\n".join(stamps) + "\n")
    return drive


@pytest.fixture
def drive(tmp_path):
    return write_drive(tmp_path / "kitti")


def test_projected_depth_default_is_the_published_protocol(drive):
    depth = velodyne_depth(POINTS, load_calibration(drive.parent))
    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
    # velodyne x (camera z + 0.5) one pixel up and left; the nearest of the two points on one pixel
    assert depth[15, 29] == pytest.approx(4.5)
    assert depth[2, 4] == pytest.approx(10.5)
    assert np.count_nonzero(depth) == 2


def test_projected_depth_exact_is_camera_z_at_the_pixel(drive):
    depth = velodyne_depth(POINTS, load_calibration(drive.parent), exact=True)
    assert depth[16, 30] == pytest.approx(4.0)
    assert depth[3, 5] == pytest.approx(10.0)
    assert np.count_nonzero(depth) == 2


def test_calibration_baseline_and_odometry(drive):
    calib = load_calibration(drive.parent)
    assert calib.baseline == pytest.approx(0.54)
    assert calib.image_size == (WIDTH, HEIGHT)
    kitti = read_drive(drive)
    packets = np.stack([np.loadtxt(p) for p in kitti.oxts_files])
    poses, linear, angular = oxts_poses(packets)
    for i in range(FRAMES):
        np.testing.assert_allclose(poses[i][:3, 3], [i, 0, 0], atol=1e-3)
        np.testing.assert_allclose(poses[i][:3, :3], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(linear[0], [10.0, 0.0, 0.0])
    np.testing.assert_allclose(angular[0], [0.0, 0.0, 0.05])
    assert np.diff(kitti.stamps_ns).tolist() == [100_000_000] * (FRAMES - 1)


def test_bag_is_read_back_with_the_calibration_depth_and_odometry(drive, tmp_path):
    (bag,) = kitti_to_bag([drive], tmp_path / "bags", progress=False)
    assert bag == tmp_path / "bags" / DRIVE
    with BagReader(bag) as reader:
        counts = {topic: summary.count for topic, summary in reader.topics.items()}
        assert counts == {**{t: FRAMES for t in (LEFT_IMAGE_TOPIC, LEFT_INFO_TOPIC, RIGHT_IMAGE_TOPIC,
                                                 RIGHT_INFO_TOPIC, DEPTH_TOPIC, ODOM_TOPIC, VELODYNE_TOPIC)},
                          TF_STATIC_TOPIC: 1}
        chosen = discover_topics(reader, need_stereo=True)  # what `train` would pick on its own
        assert (chosen.image, chosen.camera_info, chosen.right_image, chosen.right_camera_info, chosen.depth,
                chosen.odometry) == (LEFT_IMAGE_TOPIC, LEFT_INFO_TOPIC, RIGHT_IMAGE_TOPIC, RIGHT_INFO_TOPIC,
                                     DEPTH_TOPIC, ODOM_TOPIC)
        assert select_depth_topic(reader, LEFT_IMAGE_TOPIC) == DEPTH_TOPIC  # and `evaluate`
        messages = {}
        for topic, msgtype, stamp, msg in reader.messages(list(counts)):
            messages.setdefault(topic, []).append((msgtype, stamp, msg))
    left, right = messages[LEFT_INFO_TOPIC][0][2], messages[RIGHT_INFO_TOPIC][0][2]
    K = np.array([[F, 0, CX], [0, F, CY], [0, 0, 1]])
    np.testing.assert_allclose(np.reshape(left.k, (3, 3)), K)
    np.testing.assert_allclose(np.reshape(left.p, (3, 4)), np.hstack([K, np.zeros((3, 1))]))
    np.testing.assert_allclose(np.reshape(right.p, (3, 4))[:, :3], K)
    assert -right.p[3] / right.p[0] == pytest.approx(0.54)
    assert (left.width, left.height, left.header.frame_id) == (WIDTH, HEIGHT, "camera_left_optical")
    msgtype, stamp, image = messages[LEFT_IMAGE_TOPIC][1]
    rgb = decode_image(image, msgtype)
    assert rgb.shape == (HEIGHT, WIDTH, 3) and tuple(rgb[0, 0]) == (200, 40, 40)
    depth = decode_depth(messages[DEPTH_TOPIC][2][2])
    assert depth[15, 29] == pytest.approx(4.5) and np.count_nonzero(depth) == 2
    stamps = [stamp for _, stamp, _ in messages[ODOM_TOPIC]]
    assert stamps == [stamp for _, stamp, _ in messages[LEFT_IMAGE_TOPIC]]
    for i, (_, _, odom) in enumerate(messages[ODOM_TOPIC]):
        position = odom.pose.pose.position
        np.testing.assert_allclose([position.x, position.y, position.z], [i, 0, 0], atol=1e-3)
        assert odom.twist.twist.linear.x == pytest.approx(10.0)
        assert odom.twist.twist.angular.z == pytest.approx(0.05)


def test_exact_depth_option_and_cli(drive, tmp_path, capsys):
    assert main(["--drive", str(drive), "--out", str(tmp_path / "out"), "--exact-depth", "--no-progress"]) == 0
    with BagReader(tmp_path / "out" / DRIVE) as reader:
        (_, _, _, msg) = next(iter(reader.messages([DEPTH_TOPIC])))
    depth = decode_depth(msg)
    assert depth[16, 30] == pytest.approx(4.0)
    assert main(["--drive", str(drive), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().out


def test_truncated_scan_names_the_file(drive, tmp_path):
    scan = drive / "velodyne_points/data/0000000001.bin"
    scan.write_bytes(scan.read_bytes()[:-5])
    with pytest.raises(KittiError, match="truncated velodyne scan .*0000000001.bin"):
        kitti_to_bag([drive], tmp_path / "bags", progress=False)


def test_missing_calibration_file_is_named(drive, tmp_path):
    (drive.parent / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(KittiError, match="missing calibration file .*calib_velo_to_cam.txt"):
        kitti_to_bag([drive], tmp_path / "bags", progress=False)
    assert not (tmp_path / "bags").exists()


def test_inconsistent_frame_counts_and_short_oxts(drive, tmp_path):
    (drive / "image_03/data/0000000002.png").unlink()
    with pytest.raises(KittiError, match="inconsistent frame counts.*image_03: 2"):
        read_drive(drive)
    cv2.imwrite(str(drive / "image_03/data/0000000002.png"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    (drive / "oxts/data/0000000000.txt").write_text("49.0 8.4 110.0\n")
    with pytest.raises(KittiError, match="0000000000.txt has 3 values, expected 30"):
        kitti_to_bag([drive], tmp_path / "bags", progress=False)


def _bag_messages(bag):
    messages = {}
    with BagReader(bag) as reader:
        for topic, msgtype, stamp, msg in reader.messages(list(reader.topics)):
            messages.setdefault(topic, []).append((msgtype, stamp, msg))
    return messages


def _matrix(transform):
    t, q = transform.translation, transform.rotation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix([q.x, q.y, q.z, q.w])
    T[:3, 3] = [t.x, t.y, t.z]
    return T


def test_tf_static_holds_the_calibration_and_the_cloud_the_scan(drive, tmp_path):
    (bag,) = kitti_to_bag([drive], tmp_path / "bags", progress=False)
    messages = _bag_messages(bag)
    ((msgtype, stamp, tf),) = messages[TF_STATIC_TOPIC]
    assert msgtype == "tf2_msgs/msg/TFMessage" and stamp == messages[LEFT_IMAGE_TOPIC][0][1]
    transforms = {(t.header.frame_id, t.child_frame_id): _matrix(t.transform) for t in tf.transforms}
    assert set(transforms) == {("imu_link", "velodyne"), ("velodyne", "camera_left_optical"),
                               ("camera_left_optical", "camera_right_optical")}
    assert all(t.header.stamp.sec * 10**9 + t.header.stamp.nanosec == stamp for t in tf.transforms)
    calib = load_calibration(drive.parent)
    np.testing.assert_allclose(transforms["imu_link", "velodyne"], np.linalg.inv(calib.T_velo_imu), atol=1e-12)
    np.testing.assert_allclose(transforms["imu_link", "velodyne"][:3, 3], [0.8, -0.3, 0.7], atol=1e-12)
    # the pose of the left camera in the velodyne frame maps a camera point back: camera 2 sees
    # _velo_point(30, 16, 4) at (u - cx) z / f, (v - cy) z / f, z
    T_velo_left = transforms["velodyne", "camera_left_optical"]
    point = np.append(_velo_point(30, 16, 4.0)[:3], 1.0)
    camera = np.linalg.solve(T_velo_left, point)
    np.testing.assert_allclose(camera[:3], [(30 - CX) * 4.0 / F, (16 - CY) * 4.0 / F, 4.0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(T_velo_left @ [0, 0, 4.0, 1], _velo_point(20, 12, 4.0)[:3] + [1.0], atol=1e-9)
    right = transforms["camera_left_optical", "camera_right_optical"]
    np.testing.assert_allclose(right[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(right[:3, 3], [0.54, 0.0, 0.0], atol=1e-12)

    clouds = messages[VELODYNE_TOPIC]
    assert [stamp for _, stamp, _ in clouds] == [stamp for _, stamp, _ in messages[LEFT_IMAGE_TOPIC]]
    msgtype, _, cloud = clouds[1]
    assert msgtype == "sensor_msgs/msg/PointCloud2" and cloud.header.frame_id == "velodyne"
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 12, 7, 1)]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, len(POINTS), 16, 16 * len(POINTS))
    assert not cloud.is_bigendian and cloud.is_dense
    points = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 4)
    np.testing.assert_array_equal(points, np.fromfile(drive / "velodyne_points/data/0000000001.bin", "<f4")
                                  .reshape(-1, 4))


def test_frame_selection_keeps_the_frames_and_their_neighbours(drive, tmp_path):
    assert select_frames([5, 10], 12, neighbours=1) == [4, 5, 6, 9, 10, 11]
    assert select_frames([0, 11, 11], 12, neighbours=1) == [0, 1, 10, 11]
    assert select_frames([3, 8], 12, neighbours=2) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert select_frames([7], 12) == [7]
    with pytest.raises(KittiError, match="frames 0..11, frames \\[12\\]"):
        select_frames([3, 12], 12, drive="d")
    stamps = read_drive(drive).stamps_ns.tolist()
    for wanted, neighbours, kept in (([0], 1, [0, 1]), ([2], 0, [2]), ([2], 1, [1, 2])):
        out = tmp_path / f"bags_{wanted[0]}_{neighbours}"
        (bag,) = kitti_to_bag([drive], out, progress=False, frames={DRIVE: wanted}, neighbours=neighbours)
        messages = _bag_messages(bag)
        for topic in (LEFT_IMAGE_TOPIC, RIGHT_INFO_TOPIC, DEPTH_TOPIC, ODOM_TOPIC, VELODYNE_TOPIC):
            assert [stamp for _, stamp, _ in messages[topic]] == [stamps[i] for i in kept], topic
        assert [stamp for _, stamp, _ in messages[TF_STATIC_TOPIC]] == [stamps[kept[0]]]
        for (_, _, odom), index in zip(messages[ODOM_TOPIC], kept):  # still relative to the drive's frame 0
            assert odom.pose.pose.position.x == pytest.approx(index, abs=1e-3)
    with pytest.raises(KittiError, match="no frames in the frame list"):
        kitti_to_bag([drive], tmp_path / "none", progress=False, frames={"other_drive": [0]})


def test_split_frames_are_the_split_lists_frames(drive, tmp_path, capsys):
    frames = split_frames("eigen_test")
    expected = {}
    for frame in read_split("eigen_test"):
        expected.setdefault(frame.drive.split("/")[1], set()).add(frame.frame)
    assert frames == {drive_name: sorted(indices) for drive_name, indices in expected.items()}
    assert sum(map(len, frames.values())) == len({(f.drive, f.frame) for f in read_split("eigen_test")})
    # the miniature drive (drive_0001) is not in the test split; eigen_zhou_train asks for frames it lacks
    assert main(["--drive", str(drive), "--out", str(tmp_path / "a"), "--split", "eigen_test", "--no-progress"]) == 2
    assert "no frames in the frame list" in capsys.readouterr().out
    assert main(["--drive", str(drive), "--out", str(tmp_path / "b"), "--split", "eigen_zhou_train",
                 "--no-progress"]) == 2
    assert "were asked for" in capsys.readouterr().out
    assert main(["--drive", str(drive), "--out", str(tmp_path / "c"), "--split", "nope", "--no-progress"]) == 2
    assert "split 'nope' is not known" in capsys.readouterr().out
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
