"""Reading rosbag2 recordings: storage formats, decoding, topic discovery, checks, damaged bags."""
from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags is required to read bags")

from mono_depth_ros import bagio  # noqa: E402
from mono_depth_ros.bagio import BagError, BagReader, StreamSummary, discover_topics, stream_recording  # noqa: E402
from mono_depth_ros import simulation as synthetic  # noqa: E402


def _read(path, need_stereo=False, **topics):
    """-> (reader, selection, {role: [(stamp, data)]}, summary)."""
    reader = BagReader(path, log=lambda _: None)
    selection = discover_topics(reader, need_stereo=need_stereo, **topics)
    summary = StreamSummary()
    items = {}
    for item in stream_recording(reader, selection, summary):
        items.setdefault(item.role, []).append((item.stamp_ns, item.data))
    return reader, selection, items, summary


@pytest.fixture(scope="module")
def stereo_bag(tmp_path_factory):
    """mcap, 12 frames, stereo, odometry, depth."""
    return synthetic.write_synthetic_bag(tmp_path_factory.mktemp("bags") / "stereo", num_frames=12, return_recording=True)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, "png", "jpeg"])
def test_storage_and_compression_decode_to_the_rendered_images(tmp_path, storage, compressed):
    recording = synthetic.write_synthetic_bag(
        tmp_path / "bag", num_frames=4, storage=storage, compressed=compressed, stereo=False, odometry=False,
        return_recording=True,
    )
    # The directory and the single storage file read the same.
    for path in (recording.path, synthetic.storage_file(recording.path)):
        reader, selection, items, summary = _read(path)
        expected_topic = "/camera/image_raw" + ("/compressed" if compressed else "")
        assert selection.image == expected_topic
        assert selection.camera_info == "/camera/camera_info"
        assert selection.depth == "/camera/depth"
        assert [stamp for stamp, _ in items["image"]] == recording.stamps_ns
        for (_, decoded), rendered in zip(items["image"], recording.images):
            assert decoded.shape == (96, 160, 3) and decoded.dtype == np.uint8
            error = np.abs(decoded.astype(int) - rendered.astype(int)).mean()
            assert error < (3.0 if compressed == "jpeg" else 1e-9)
        np.testing.assert_array_equal(summary.camera.K, recording.K)
        assert summary.image_size == (160, 96)
        assert not reader.damage


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "rgba8", "bgra8"])
def test_raw_encodings(tmp_path, encoding):
    recording = synthetic.write_synthetic_bag(
        tmp_path / "bag", num_frames=2, encoding=encoding, stereo=False, odometry=False, depth=False, return_recording=True
    )
    _, _, items, _ = _read(recording.path)
    decoded, rendered = items["image"][1][1], recording.images[1]
    if encoding == "mono8":
        grey = np.round(rendered @ np.array([0.299, 0.587, 0.114])).astype(int)
        assert np.abs(decoded[:, :, 0].astype(int) - grey).max() <= 1
        assert (decoded[:, :, 0] == decoded[:, :, 2]).all()
    else:
        np.testing.assert_array_equal(decoded, rendered)


@pytest.mark.parametrize("encoding, tolerance", [("32FC1", 1e-6), ("16UC1", 5e-4)])
def test_depth_decoding(tmp_path, encoding, tolerance):
    recording = synthetic.write_synthetic_bag(
        tmp_path / "bag", num_frames=2, depth_encoding=encoding, stereo=False, odometry=False, return_recording=True
    )
    _, _, items, _ = _read(recording.path)
    depth = items["depth"][0][1]
    assert depth.dtype == np.float32 and depth.shape == (96, 160)
    valid = recording.depths[0] < 60.0
    np.testing.assert_allclose(depth[valid], recording.depths[0][valid], atol=tolerance)
    if encoding == "16UC1":  # beyond 65.535 m is written as 0 = invalid
        assert (depth[recording.depths[0] > 66.0] == 0).all()


def test_stereo_discovery_calibration_and_odometry(stereo_bag):
    reader, selection, items, summary = _read(stereo_bag.path, need_stereo=True)
    # Two calibrated cameras: the right one is recognised by P[3] = -fx * baseline.
    assert selection.image == "/camera/image_raw"
    assert selection.right_image == "/camera_right/image_raw"
    assert selection.right_camera_info == "/camera_right/camera_info"
    assert selection.odometry == "/odom"
    assert summary.right_camera.baseline_m == pytest.approx(0.2)
    assert summary.camera.baseline_m is None
    assert summary.camera.distortion_model == "plumb_bob" and not summary.camera.is_distorted
    assert [s for s, _ in items["right_image"]] == stereo_bag.right_stamps_ns
    # Odometry (20 Hz, offset stamps) interpolated to the image stamps is the camera position.
    stamps = np.array([s for s, _ in items["odometry"]])
    positions = np.array([p for _, p in items["odometry"]])
    at_images = bagio.interpolate_positions(stamps, positions, np.array(stereo_bag.stamps_ns))
    truth = np.array([pose[:3, 3] for pose in stereo_bag.poses])
    # (Frame 0 is skipped: the camera starts moving there, a kink linear interpolation rounds off.)
    np.testing.assert_allclose(at_images[1:], truth[1:], atol=2e-3)
    # Mono mode on a stereo bag needs no right camera.
    assert _read(stereo_bag.path)[1].right_image == ""


def test_interpolate_positions_known_values():
    stamps = np.array([0, 1_000_000_000, 2_000_000_000])
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [3.0, 2.0, 0.0]])
    query = np.array([500_000_000, 1_500_000_000, 2_040_000_000, 3_000_000_000, -1_000_000_000])
    result = bagio.interpolate_positions(stamps, positions, query)
    np.testing.assert_allclose(result[:3], [[0.5, 1.0, 0.0], [2.0, 2.0, 0.0], [3.0, 2.0, 0.0]])
    assert np.isnan(result[3:]).all()  # outside the odometry's time range


def test_missing_and_explicit_topics(stereo_bag):
    reader = BagReader(stereo_bag.path)
    with pytest.raises(BagError) as error:
        discover_topics(reader, image_topic="/front/image_raw")
    text = str(error.value)
    assert "image_topic='/front/image_raw'" in text and "/camera/image_raw" in text and "/odom" in text
    with pytest.raises(BagError, match="odometry_topic.*nav_msgs/msg/Odometry"):
        discover_topics(reader, odometry_topic="/camera/camera_info")
    selection = discover_topics(reader, image_topic="/camera_right/image_raw", odometry_topic="none", depth_topic="none")
    assert (selection.image, selection.camera_info) == ("/camera_right/image_raw", "/camera_right/camera_info")
    assert selection.odometry == "" and selection.depth == ""


def _camera_entries(typestore, prefix, count, K, baseline=0.0, size=(32, 24), info=True, change_at=None,
                    change_back_at=None, info_lag_ns=0, info_every=1):
    """Image + camera_info pairs 0.1 s apart. change_at=(index, K, size): calibration (and image size)
    from that frame on, until change_back_at. info_lag_ns: camera_info bag time relative to its image
    (same header stamp). info_every: a camera_info with every n-th image only."""
    entries = []
    rng = np.random.default_rng(0)
    for index in range(count):
        stamp = synthetic.STAMP_ORIGIN_NS + index * 100_000_000
        width, height = size
        K_now = K
        if change_at is not None and index >= change_at[0] and (change_back_at is None or index < change_back_at):
            K_now, (width, height) = change_at[1], change_at[2]
        rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        entries.append(synthetic.BagEntry(f"{prefix}/image_raw", synthetic.IMAGE_TYPE, stamp,
                                          synthetic.image_message(typestore, rgb, stamp)))
        if info and index % info_every == 0:
            entries.append(synthetic.BagEntry(
                f"{prefix}/camera_info", synthetic.CAMERA_INFO_TYPE, stamp + info_lag_ns,
                synthetic.camera_info_message(typestore, K_now, width, height, stamp, baseline_m=baseline)))
    return entries


def _stamps(*indices):
    return [synthetic.STAMP_ORIGIN_NS + index * 100_000_000 for index in indices]


def test_ambiguous_cameras_list_topics_and_option(tmp_path):
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    entries = _camera_entries(typestore, "/front", 3, K) + _camera_entries(typestore, "/rear", 3, K)
    path = synthetic.write_bag(tmp_path / "two_cameras", entries, typestore=typestore)
    with pytest.raises(BagError) as error:
        discover_topics(BagReader(path))
    text = str(error.value)
    assert "ambiguous" in text and "/front/image_raw" in text and "/rear/image_raw" in text
    assert "image_topic" in text
    assert discover_topics(BagReader(path), image_topic="/rear/image_raw").camera_info == "/rear/camera_info"


def test_camera_info_missing_needs_config_K(tmp_path):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=2, camera_info=False, stereo=False, depth=False)
    with pytest.raises(BagError, match=r"no CameraInfo for /camera/image_raw.*K in the config"):
        discover_topics(BagReader(path))
    assert discover_topics(BagReader(path), have_config_K=True).camera_info == ""


def test_topics_without_messages(tmp_path):
    typestore = synthetic.make_typestore()
    empty_topics = [("/camera/image_raw", synthetic.IMAGE_TYPE), ("/camera/camera_info", synthetic.CAMERA_INFO_TYPE)]
    path = synthetic.write_bag(tmp_path / "empty", [], typestore=typestore, empty_topics=empty_topics)
    with pytest.raises(BagError, match=r"(?s)has no messages.*/camera/image_raw \[sensor_msgs/msg/Image, 0 messages\]"):
        discover_topics(BagReader(path))
    stamp = synthetic.STAMP_ORIGIN_NS
    odometry = synthetic.BagEntry("/odom", synthetic.ODOMETRY_TYPE, stamp,
                                  synthetic.odometry_message(typestore, np.eye(4), np.zeros(3), 0.0, stamp))
    path = synthetic.write_bag(tmp_path / "camera_empty", [odometry], typestore=typestore, empty_topics=empty_topics)
    with pytest.raises(BagError, match=r"no camera images .*listed but empty: /camera/image_raw"):
        discover_topics(BagReader(path))
    with pytest.raises(BagError, match="topic /camera/image_raw .image_topic. is listed in bag .* but has no messages"):
        discover_topics(BagReader(path), image_topic="/camera/image_raw")


def test_no_images(tmp_path):
    typestore = synthetic.make_typestore()
    stamp = synthetic.STAMP_ORIGIN_NS
    only_odom = synthetic.write_bag(tmp_path / "odom_only", [synthetic.BagEntry(
        "/odom", synthetic.ODOMETRY_TYPE, stamp, synthetic.odometry_message(typestore, np.eye(4), np.zeros(3), 0.0, stamp))],
        typestore=typestore)
    with pytest.raises(BagError, match=r"no camera images.*\n.*/odom"):
        discover_topics(BagReader(only_odom))


# The camera_info of a frame may be recorded before it, after it, or (rosbags order) at the same bag time.
@pytest.mark.parametrize("info_lag_ns", [-50_000_000, 0, 50_000_000])
def test_calibration_change_keeps_the_first_calibration_frames_and_names_topic_and_time(tmp_path, info_lag_ns):
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    K2 = K.copy()
    K2[0, 0] += 5.0
    entries = _camera_entries(typestore, "/cam", 6, K, change_at=(4, K2, (32, 24)), info_lag_ns=info_lag_ns)
    path = synthetic.write_bag(tmp_path / "k_change", entries, typestore=typestore)
    _, _, items, summary = _read(path)
    # Frames 4 and 5 were taken with the new calibration: only 0-3 are kept, and only the first camera_info.
    assert [stamp for stamp, _ in items["image"]] == _stamps(0, 1, 2, 3)
    assert [stamp for stamp, _ in items["camera_info"]] == _stamps(0, 1, 2, 3)
    np.testing.assert_array_equal(summary.camera.K, K)
    assert summary.skipped == {"/cam/image_raw": {"calibration_changed": 2}}
    assert len(summary.notes) == 1
    note = summary.notes[0]
    assert note.startswith("camera calibration changes on /cam/camera_info at stamp ")
    assert f"{(synthetic.STAMP_ORIGIN_NS + 400_000_000) * 1e-9:.3f} s" in note and "0.40 s into bag" in note
    assert str(path) in note
    assert f"K {K2.reshape(-1).tolist()} 32x24" in note and f"differs from the first K {K.reshape(-1).tolist()}" in note
    assert "2 of 6 images on /cam/image_raw" in note and "never changed back" in note
    assert "split the bag at that time" in note


def test_calibration_that_changes_back_uses_the_frames_after_it(tmp_path):
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    K2 = synthetic.camera_intrinsics(40, 30)  # recalibrated at another resolution, then back
    entries = _camera_entries(typestore, "/cam", 8, K, change_at=(2, K2, (40, 30)), change_back_at=4,
                              info_lag_ns=50_000_000)
    path = synthetic.write_bag(tmp_path / "k_back", entries, typestore=typestore)
    _, _, items, summary = _read(path)
    assert [stamp for stamp, _ in items["image"]] == _stamps(0, 1, 4, 5, 6, 7)
    assert all(image.shape == (24, 32, 3) for _, image in items["image"])
    assert summary.skipped == {"/cam/image_raw": {"calibration_changed": 2}}
    assert summary.image_size == (32, 24)
    # One note for the calibration; the 40x30 frames are not reported again as a size change.
    assert len(summary.notes) == 1
    note = summary.notes[0]
    assert "calibration changes on /cam/camera_info" in note and "0.20 s into bag" in note and "40x30" in note
    assert "2 of 8 images" in note and "changed back are used" in note


def test_sparse_camera_info_applies_from_its_stamp_on(tmp_path):
    # camera_info with every 3rd image, recorded after it: the change at frame 3 covers frames 3-5.
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    K2 = K.copy()
    K2[1, 2] += 2.0
    entries = _camera_entries(typestore, "/cam", 6, K, change_at=(3, K2, (32, 24)), info_lag_ns=50_000_000,
                              info_every=3)
    _, _, items, summary = _read(synthetic.write_bag(tmp_path / "sparse", entries, typestore=typestore))
    assert [stamp for stamp, _ in items["image"]] == _stamps(0, 1, 2)
    assert summary.skipped == {"/cam/image_raw": {"calibration_changed": 3}}
    assert "3 of 6 images" in summary.notes[0] and "0.30 s into bag" in summary.notes[0]


def test_image_size_change_keeps_the_first_size_and_names_topic_and_time(tmp_path):
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    path = synthetic.write_bag(tmp_path / "size_change",
                               _camera_entries(typestore, "/cam", 6, K, info=False, change_at=(3, K, (40, 24))),
                               typestore=typestore)
    _, _, items, summary = _read(path, have_config_K=True)
    assert [stamp for stamp, _ in items["image"]] == _stamps(0, 1, 2)
    assert summary.image_size == (32, 24)
    assert summary.skipped == {"/cam/image_raw": {"size_changed": 3}}
    assert len(summary.notes) == 1
    note = summary.notes[0]
    assert "image size changes on /cam/image_raw" in note and "40x24 after 32x24" in note and "0.30 s into bag" in note
    assert str(path) in note and "3 of 6 images on /cam/image_raw" in note and "(40x24 (3))" in note
    assert "fixed resolution" in note


def test_depth_size_change_skips_those_depth_images(tmp_path):
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    entries = _camera_entries(typestore, "/cam", 4, K)
    for index, stamp in enumerate(_stamps(0, 1, 2, 3)):
        shape = (24, 32) if index != 2 else (12, 16)
        entries.append(synthetic.BagEntry("/cam/depth", synthetic.IMAGE_TYPE, stamp,
                                          synthetic.depth_message(typestore, np.full(shape, 2.0, np.float32), stamp)))
    _, selection, items, summary = _read(synthetic.write_bag(tmp_path / "depth", entries, typestore=typestore))
    assert selection.depth == "/cam/depth"
    assert [stamp for stamp, _ in items["depth"]] == _stamps(0, 1, 3)
    assert len(items["image"]) == 4
    assert summary.skipped == {"/cam/depth": {"size_changed": 1}}
    note = summary.notes[0]
    assert "depth image size changes on /cam/depth" in note and "16x12 after 32x24" in note
    assert "0.20 s into bag" in note and "1 depth images" in note and "data.depth_topic" in note


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_keeps_earlier_frames(tmp_path, storage):
    recording = synthetic.write_synthetic_bag(
        tmp_path / "bag", num_frames=30, storage=storage, stereo=False, odometry=False, depth=False, return_recording=True
    )
    data = synthetic.storage_file(recording.path).read_bytes()
    cut = tmp_path / f"cut{synthetic.storage_file(recording.path).suffix}"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    logged = []
    reader = BagReader(cut, log=logged.append)
    selection = discover_topics(reader)
    summary = StreamSummary()
    images = [(item.stamp_ns, item.data) for item in stream_recording(reader, selection, summary) if item.role == "image"]
    assert 5 <= len(images) < 30
    # What was kept is the start of the recording, intact.
    assert [stamp for stamp, _ in images] == recording.stamps_ns[: len(images)]
    np.testing.assert_array_equal(images[-1][1], recording.images[len(images) - 1])
    assert reader.damage and all(str(cut) in problem for problem in reader.damage)
    where = "runs past the end of the file" if storage == "mcap" else "unreadable from after message"
    assert any(where in problem for problem in reader.damage)
    assert any("WARNING" in line and str(cut) in line for line in logged)


def _top_level_records(data: bytes):
    offset = 8
    while offset + 9 <= len(data):
        opcode = data[offset]
        (length,) = struct.unpack_from("<Q", data, offset + 1)
        yield opcode, offset
        offset += 9 + length


def test_corrupt_chunk_is_skipped_and_named(tmp_path):
    recording = synthetic.write_synthetic_bag(  # ~4.5 MB: several 1 MB chunks
        tmp_path / "bag", num_frames=30, odometry=False, return_recording=True
    )
    path = synthetic.storage_file(recording.path)
    data = bytearray(path.read_bytes())
    chunks = [offset for opcode, offset in _top_level_records(bytes(data)) if opcode == 0x06]
    assert len(chunks) >= 3
    # Garble the length of the first record inside the second chunk (chunk header is 9 + 40 bytes).
    data[chunks[1] + 9 + 40 + 1 : chunks[1] + 9 + 40 + 9] = b"\xff" * 8
    path.write_bytes(bytes(data))
    reader = BagReader(recording.path, log=lambda _: None)
    selection = discover_topics(reader)
    stamps = [item.stamp_ns for item in stream_recording(reader, selection, StreamSummary()) if item.role == "image"]
    # Frames before and after the damaged chunk are kept, in order, without duplicates.
    assert stamps == sorted(set(stamps))
    assert stamps[0] == recording.stamps_ns[0] and stamps[-1] == recording.stamps_ns[-1]
    assert 15 <= len(stamps) < 30
    expected = f"corrupt chunk at byte {chunks[1]}"
    assert any(expected in problem and str(recording.path) in problem for problem in reader.damage)


def test_not_a_bag(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match="expected a directory, a .mcap or a .db3"):
        BagReader(tmp_path / "notes.txt")
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError, match="cannot read bag"):
        BagReader(garbage)


def test_header_stamp_zero_falls_back_to_bag_time(tmp_path):
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    rgb = np.zeros((24, 32, 3), np.uint8)
    bag_time = synthetic.STAMP_ORIGIN_NS + 123
    entries = [
        synthetic.BagEntry("/cam/image_raw", synthetic.IMAGE_TYPE, bag_time, synthetic.image_message(typestore, rgb, 0)),
        synthetic.BagEntry("/cam/camera_info", synthetic.CAMERA_INFO_TYPE, bag_time,
                           synthetic.camera_info_message(typestore, K, 32, 24, 0)),
    ]
    path = synthetic.write_bag(tmp_path / "zero_stamp", entries, typestore=typestore)
    assert _read(path)[2]["image"][0][0] == bag_time


def test_undecodable_images_are_skipped_and_explained(tmp_path):
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    entries = _camera_entries(typestore, "/cam", 4, K)
    bayer = entries[2].message  # second image (entries alternate image, camera_info): raw Bayer
    bayer = typestore.types[synthetic.IMAGE_TYPE](
        header=bayer.header, height=24, width=32, encoding="bayer_rggb8", is_bigendian=0, step=32,
        data=np.zeros(32 * 24, np.uint8))
    entries[2] = synthetic.BagEntry(entries[2].topic, entries[2].msgtype, entries[2].stamp_ns, bayer)
    path = synthetic.write_bag(tmp_path / "bayer", entries, typestore=typestore)
    _, _, items, summary = _read(path)
    assert len(items["image"]) == 3
    assert summary.decode_failures == {"/cam/image_raw": 1}
    assert "bayer_rggb8" in summary.notes[0] and "debayer" in summary.notes[0] and "0.10 s into bag" in summary.notes[0]
