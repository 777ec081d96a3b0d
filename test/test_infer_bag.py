"""infer_bag: the output bag holds what depth_node publishes for the same frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mono_depth_ros.bagio import decode_image
from mono_depth_ros.bagio.messages import camera_info_message, compressed_image_message, image_message
from mono_depth_ros.bagio.writer import BagEntry, make_typestore, write_bag
from mono_depth_ros.config import DepthNodeConfig, load_node_config
from mono_depth_ros.frame_pipeline import FramePipeline, camera_info_intrinsics
from mono_depth_ros.tools.infer_bag import main
from mono_depth_ros.inference import DepthEstimator
from mono_depth_ros.model_file import load_model_file
from mono_depth_ros.msgtypes import CAMERA_INFO_TYPE, COMPRESSED_TYPE, IMAGE_TYPE
from mono_depth_ros.pointcloud import POINT_FIELDS, unpack_xyzrgb
from mono_depth_ros.simulation import write_synthetic_bag

from helpers import decode_depth_raw, read_bag  # test/ is on sys.path

OUTPUT_TOPICS = ("/depth", "/points", "/depth_colored")


def header_key(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id


@pytest.fixture(scope="module")
def pipeline(small_model_path):
    return FramePipeline(DepthEstimator(load_model_file(small_model_path), torch.device("cpu")))


def expected_outputs(pipeline, image_msg, msgtype, info_msg, config=DepthNodeConfig()):
    rgb = decode_image(image_msg, msgtype)
    K = camera_info_intrinsics(info_msg, rgb.shape[1], rgb.shape[0])
    return pipeline.run(rgb, K, config)


def check_frame(pipeline, inputs, outputs, index, msgtype, config=DepthNodeConfig()):
    """Output frame ``index`` equals the pipeline's outputs on input frame ``index``, same header and time."""
    image_time, _, image_msg = inputs["/camera/" + ("image_raw" if msgtype == IMAGE_TYPE else "image_raw/compressed")][index]
    info_msg = inputs["/camera/camera_info"][index][2]
    expected = expected_outputs(pipeline, image_msg, msgtype, info_msg, config)
    depth_time, depth_type, depth_msg = outputs["/depth"][index]
    assert depth_type == IMAGE_TYPE and depth_msg.encoding == "32FC1"
    assert depth_time == image_time
    assert header_key(depth_msg) == header_key(image_msg)
    np.testing.assert_array_equal(decode_depth_raw(depth_msg), expected.depth)
    if config.publish_points:
        cloud_time, cloud_type, cloud_msg = outputs["/points"][index]
        assert cloud_type == "sensor_msgs/msg/PointCloud2" and cloud_time == image_time
        assert header_key(cloud_msg) == header_key(image_msg)
        assert [(f.name, f.offset, f.datatype, f.count) for f in cloud_msg.fields] == list(POINT_FIELDS)
        assert (cloud_msg.height, cloud_msg.width) == (expected.cloud.height, expected.cloud.width)
        assert not cloud_msg.is_dense and cloud_msg.row_step == 16 * cloud_msg.width
        np.testing.assert_array_equal(np.asarray(cloud_msg.data), expected.cloud.data)
    if config.publish_colored_depth:
        colored_time, _, colored_msg = outputs["/depth_colored"][index]
        assert colored_time == image_time and header_key(colored_msg) == header_key(image_msg)
        assert colored_msg.encoding == "bgr8"
        colored = np.asarray(colored_msg.data).reshape(colored_msg.height, colored_msg.width, 3)
        np.testing.assert_array_equal(colored, expected.colored)
    return expected


@pytest.fixture(scope="module")
def raw_bag(tmp_path_factory):
    return write_synthetic_bag(tmp_path_factory.mktemp("infer") / "raw", num_frames=3, stereo=False, odometry=False)


def test_output_bag_matches_the_node_pipeline_frame_by_frame(raw_bag, small_model_path, pipeline, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--bag", str(raw_bag), "--model", str(small_model_path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 3 of 3 frames to {out}; skipped 0" in printed
    inputs, outputs = read_bag(raw_bag), read_bag(out)
    assert set(outputs) == set(OUTPUT_TOPICS) | {"/camera/image_raw", "/camera/camera_info"}
    for topic in OUTPUT_TOPICS:
        assert len(outputs[topic]) == 3
    # The copied input is the input, message for message.
    for topic in ("/camera/image_raw", "/camera/camera_info"):
        assert [(t, header_key(m)) for t, _, m in outputs[topic]] == [(t, header_key(m)) for t, _, m in inputs[topic]]
    np.testing.assert_array_equal(outputs["/camera/image_raw"][1][2].data, inputs["/camera/image_raw"][1][2].data)
    for index in range(3):
        expected = check_frame(pipeline, inputs, outputs, index, IMAGE_TYPE)
        assert np.isfinite(expected.depth).any()


def test_params_file_sets_range_stride_and_outputs(raw_bag, small_model_path, pipeline, tmp_path):
    # Cut the nearest and farthest ~20 % of the first frame, as a user's params file would.
    first = read_bag(raw_bag)["/camera/image_raw"][0][2]
    unmasked = pipeline.estimator.predict(decode_image(first, IMAGE_TYPE), extra_scale=1.5)
    low, high = np.percentile(unmasked, [20, 80])
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    min_depth: {low:.6f}\n    max_depth: {high:.6f}\n    depth_scale: 1.5\n"
        "    points_stride: 2\n    publish_colored_depth: false\n"
    )
    config = load_node_config(params)
    out = tmp_path / "out"
    code = main([
        "--bag", str(raw_bag), "--model", str(small_model_path), "--out", str(out), "--params", str(params),
        "--storage", "sqlite3", "--no-copy-input", "--namespace", "/cam_depth", "--no-progress",
    ])
    assert code == 0
    assert list(out.glob("*.db3"))
    outputs = read_bag(out)
    assert set(outputs) == {"/cam_depth/depth", "/cam_depth/points"}
    renamed = {"/depth": outputs["/cam_depth/depth"], "/points": outputs["/cam_depth/points"]}
    expected = check_frame(pipeline, read_bag(raw_bag), renamed, 0, IMAGE_TYPE, config)
    depth = expected.depth
    assert np.isneginf(depth).any() and np.isposinf(depth).any()  # REP 118 marks, from the params file
    assert expected.cloud.height == 48 and expected.cloud.width == 80  # 96 x 160 at stride 2
    xyz, _ = unpack_xyzrgb(expected.cloud.data, 48, 80)
    assert np.isnan(xyz[~np.isfinite(depth[::2, ::2])]).all()


def test_compressed_input_works(small_model_path, pipeline, tmp_path):
    bag = write_synthetic_bag(tmp_path / "jpeg", num_frames=2, stereo=False, odometry=False, compressed=True)
    out = tmp_path / "out"
    assert main(["--bag", str(bag), "--model", str(small_model_path), "--out", str(out), "--no-progress"]) == 0
    inputs, outputs = read_bag(bag), read_bag(out)
    assert "/camera/image_raw/compressed" in outputs  # copied as recorded
    for index in range(2):
        check_frame(pipeline, inputs, outputs, index, COMPRESSED_TYPE)


def _hand_made_bag(path, frames, info_delay_ns=0):
    """frames: list of (kind, with_camera_info); kind 'raw', 'bayer' (unsupported encoding), 'jpeg' or
    'corrupt_jpeg'. Each camera_info is recorded info_delay_ns after its image (and stamped so)."""
    typestore = make_typestore()
    K = np.array([[100.0, 0.0, 40.0], [0.0, 100.0, 30.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(1)
    entries = []
    for index, (kind, with_info) in enumerate(frames):
        stamp = 1_700_000_000_000_000_000 + index * 50_000_000
        rgb = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
        if kind == "corrupt_jpeg":
            msg = compressed_image_message(typestore, rgb, stamp)
            msg.data = np.frombuffer(b"\xff\xd8 not really a jpeg", dtype=np.uint8).copy()
            entries.append(BagEntry("/camera/image_raw/compressed", COMPRESSED_TYPE, stamp, msg))
        elif kind == "jpeg":
            entries.append(BagEntry("/camera/image_raw/compressed", COMPRESSED_TYPE, stamp,
                                    compressed_image_message(typestore, rgb, stamp)))
        else:
            msg = image_message(typestore, rgb, stamp)
            if kind == "bayer":
                msg.encoding = "bayer_rggb8"
            entries.append(BagEntry("/camera/image_raw", IMAGE_TYPE, stamp, msg))
        if with_info:
            info_stamp = stamp + info_delay_ns
            entries.append(BagEntry("/camera/camera_info", CAMERA_INFO_TYPE, info_stamp,
                                    camera_info_message(typestore, K, 80, 64, info_stamp)))
    return write_bag(path, entries, typestore=typestore)


def test_frames_before_the_first_camera_info_are_skipped_and_counted(small_model_path, tmp_path, capsys):
    # Each camera_info 1 ms after its image: not the image's stamp, so an image before it cannot use it.
    frames = [("raw", False), ("raw", False), ("raw", True), ("raw", True)]
    bag = _hand_made_bag(tmp_path / "late_info", frames, info_delay_ns=1_000_000)
    out = tmp_path / "out"
    assert main(["--bag", str(bag), "--model", str(small_model_path), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    # Frames 0 and 1 come before any camera_info; frame 2 comes 1 ms before its own, so it is skipped too.
    assert "wrote 1 of 4 frames" in captured.out and "skipped 3 (3 before the first camera_info)" in captured.out
    assert captured.out.count("no CameraInfo on /camera/camera_info before this image") == 1
    outputs = read_bag(out)
    assert len(outputs["/depth"]) == 1
    assert header_key(outputs["/depth"][0][2]) == header_key(outputs["/camera/image_raw"][3][2])


def test_image_waiting_for_a_camera_info_of_the_same_stamp_uses_it(raw_bag, small_model_path, tmp_path, capsys):
    # write_synthetic_bag records each image just before its camera_info, with the same stamp.
    inputs = read_bag(raw_bag)
    first_image, first_info = inputs["/camera/image_raw"][0], inputs["/camera/camera_info"][0]
    assert first_image[0] == first_info[0]
    out = tmp_path / "out"
    assert main(["--bag", str(raw_bag), "--model", str(small_model_path), "--out", str(out), "--no-progress"]) == 0
    assert "skipped 0" in capsys.readouterr().out
    assert header_key(read_bag(out)["/depth"][0][2]) == header_key(first_image[2])


def test_each_image_uses_the_camera_info_recorded_after_it_with_its_stamp(small_model_path, pipeline, tmp_path,
                                                                          capsys):
    # The camera switches from 80x64 to 40x32 at frame 2, and K changes every frame. Each image is recorded
    # before its own camera_info, as drivers publish them: pairing with the newest earlier camera_info
    # would give frame 2 the 80x64 one (skipped as not fitting) and the others the previous frame's K.
    typestore = make_typestore()
    rng = np.random.default_rng(2)
    sizes = [(80, 64), (80, 64), (40, 32), (40, 32)]
    entries = []
    for index, (width, height) in enumerate(sizes):
        stamp = 1_700_000_000_000_000_000 + index * 50_000_000
        focal = (1.0 + 0.1 * index) * width  # every frame its own K
        K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
        entries.append(BagEntry("/camera/image_raw", IMAGE_TYPE, stamp,
                                image_message(typestore, rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                                              stamp)))
        entries.append(BagEntry("/camera/camera_info", CAMERA_INFO_TYPE, stamp + 1_000_000,
                                camera_info_message(typestore, K, width, height, stamp)))
    bag = write_bag(tmp_path / "resized", entries, typestore=typestore)
    out = tmp_path / "out"
    assert main(["--bag", str(bag), "--model", str(small_model_path), "--out", str(out), "--no-progress"]) == 0
    assert "wrote 4 of 4 frames" in capsys.readouterr().out
    inputs, outputs = read_bag(bag), read_bag(out)
    for index in range(4):
        check_frame(pipeline, inputs, outputs, index, IMAGE_TYPE)


def test_bad_images_are_skipped_with_one_message_per_kind(small_model_path, tmp_path, capsys):
    bag = _hand_made_bag(tmp_path / "bayer", [("raw", True), ("bayer", True), ("raw", True), ("bayer", True)])
    assert main(["--bag", str(bag), "--model", str(small_model_path), "--out", str(tmp_path / "o1"),
                 "--no-progress"]) == 0
    captured = capsys.readouterr().out
    assert "wrote 2 of 4 frames" in captured and "skipped 2 (2 raw image unreadable)" in captured
    assert captured.count("unsupported encoding 'bayer_rggb8'") == 1
    assert "debayer it first" in captured

    bag = _hand_made_bag(
        tmp_path / "corrupt", [("jpeg", True), ("corrupt_jpeg", True), ("corrupt_jpeg", True), ("jpeg", True)]
    )
    assert main(["--bag", str(bag), "--model", str(small_model_path), "--out", str(tmp_path / "o2"),
                 "--no-progress"]) == 0
    captured = capsys.readouterr().out
    assert "wrote 2 of 4 frames" in captured and "skipped 2 (2 compressed image undecodable)" in captured
    assert captured.count("cannot be decoded") == 1
    assert len(read_bag(tmp_path / "o2")["/depth"]) == 2


def test_wrong_topic_lists_the_image_topics(raw_bag, small_model_path, tmp_path, capsys):
    code = main(["--bag", str(raw_bag), "--model", str(small_model_path), "--out", str(tmp_path / "o"),
                 "--image-topic", "/left/image_raw"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--image-topic /left/image_raw is not in bag" in err
    assert "/camera/image_raw [sensor_msgs/msg/Image, 3 messages]" in err
    assert not (tmp_path / "o").exists()


def test_bag_without_camera_images_is_reported(small_model_path, tmp_path, capsys):
    typestore = make_typestore()
    K = np.eye(3)
    bag = write_bag(tmp_path / "info_only", [BagEntry("/camera/camera_info", CAMERA_INFO_TYPE, 1,
                                                       camera_info_message(typestore, K, 8, 8, 1))])
    code = main(["--bag", str(bag), "--model", str(small_model_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert "no camera image topic" in err and "/camera/camera_info" in err


def test_existing_output_and_bad_inputs_are_refused(raw_bag, small_model_path, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["--bag", str(raw_bag), "--model", str(small_model_path), "--out", str(tmp_path / "taken")]) == 1
    assert "already exists; infer_bag never overwrites" in capsys.readouterr().err
    assert main(["--bag", str(raw_bag), "--model", str(tmp_path / "none.safetensors"), "--out",
                 str(tmp_path / "o")]) == 1
    assert "none.safetensors does not exist" in capsys.readouterr().err
    params = tmp_path / "bad.yaml"
    params.write_text("/**:\n  ros__parameters:\n    points_stride: 0\n")
    assert main(["--bag", str(raw_bag), "--model", str(small_model_path), "--out", str(tmp_path / "o"),
                 "--params", str(params)]) == 2
    assert "points_stride' must be between 1 and 64" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- against the real node over DDS ---------------------------------------------------------------
@pytest.mark.ros
def test_output_equals_what_depth_node_publishes_over_dds(raw_bag, small_model_path, tmp_path):
    pytest.importorskip("rclpy")
    import node_harness as dds  # the DDS helpers (node process, test-side ROS node)

    out = tmp_path / "out"
    assert main(["--bag", str(raw_bag), "--model", str(small_model_path), "--out", str(out), "--no-progress"]) == 0
    outputs, inputs = read_bag(out), read_bag(raw_bag)
    image_in, info_in = inputs["/camera/image_raw"][1][2], inputs["/camera/camera_info"][1][2]

    image = dds.Image(height=image_in.height, width=image_in.width, encoding=image_in.encoding, is_bigendian=0)
    image.header.stamp = dds.Time(sec=image_in.header.stamp.sec, nanosec=image_in.header.stamp.nanosec)
    image.header.frame_id = image_in.header.frame_id
    image.step = image_in.step
    image.data = np.asarray(image_in.data).tobytes()
    info = dds.info_msg(info_in.width, info_in.height, image.header.stamp, image_in.header.frame_id,
                        k=[float(v) for v in info_in.k])

    ros = dds.Ros()
    node = None
    try:
        node = dds.RunningNode(ros, tmp_path / "node.log", "/infer_bag_dds",
                               {"model_path": str(small_model_path), "device": "cpu"})
        node.wait_ready()
        published = node.exchange(image, info)
    finally:
        if node is not None:
            node.close()
        ros.close()
    depth_bag = decode_depth_raw(outputs["/depth"][1][2])
    depth_node = dds.depth_array(published["depth"])
    # Same code in two processes: equal up to float rounding of different thread counts.
    np.testing.assert_allclose(depth_node, depth_bag, rtol=1e-5)
    xyz_node, rgb_node = dds.cloud_arrays(published["points"])
    cloud_bag = outputs["/points"][1][2]
    xyz_bag, rgb_bag = unpack_xyzrgb(np.asarray(cloud_bag.data), cloud_bag.height, cloud_bag.width)
    np.testing.assert_allclose(xyz_node, xyz_bag, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rgb_node, rgb_bag)
    colored_node = np.frombuffer(published["depth_colored"].data, np.uint8).reshape(depth_node.shape + (3,))
    colored_bag = np.asarray(outputs["/depth_colored"][1][2].data).reshape(depth_node.shape + (3,))
    assert np.abs(colored_node.astype(int) - colored_bag.astype(int)).max() <= 1


def test_camera_info_with_roi_past_the_sensor_edge_skips_its_frames(small_model_path, tmp_path, capsys):
    # Frames 1 and 3 carry a camera_info whose ROI (x 40 + width 80 = 120) runs past its 80-pixel-wide sensor.
    typestore = make_typestore()
    K = np.array([[100.0, 0.0, 40.0], [0.0, 100.0, 30.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(3)
    entries = []
    for index in range(4):
        stamp = 1_700_000_000_000_000_000 + index * 50_000_000
        entries.append(BagEntry("/camera/image_raw", IMAGE_TYPE, stamp,
                                image_message(typestore, rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), stamp)))
        info = camera_info_message(typestore, K, 80, 64, stamp)
        if index % 2:
            info.roi.x_offset, info.roi.width, info.roi.height = 40, 80, 64
        entries.append(BagEntry("/camera/camera_info", CAMERA_INFO_TYPE, stamp, info))
    bag = write_bag(tmp_path / "roi", entries, typestore=typestore)
    out = tmp_path / "out"
    assert main(["--bag", str(bag), "--model", str(small_model_path), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr().out
    assert "wrote 2 of 4 frames" in captured and "skipped 2 (2 camera_info unusable for the image)" in captured
    assert captured.count("roi.x_offset 40 + roi.width 80 = 120 > width 80") == 1
    assert len(read_bag(out)["/depth"]) == 2
