"""Training samples from bags: triplets, static frames, stereo, splits, augmentation, flip, cache."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("rosbags", reason="rosbags is required to read bags")

from mono_depth_ros.bagio import BagError  # noqa: E402
from mono_depth_ros.bagio import stream as bag_stream  # noqa: E402
from mono_depth_ros.geometry import reproject_coordinates, warp_image  # noqa: E402
from mono_depth_ros import simulation as synthetic  # noqa: E402
from mono_depth_ros_training import data  # noqa: E402
from mono_depth_ros_training.data import DataConfig, build_datasets  # noqa: E402
from mono_depth_ros_training.data import dataset as dataset_module  # noqa: E402  (BagDataset looks names up here)

QUIET = dict(log=lambda _: None)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """30 frames, stereo, odometry, depth; the camera stands still for the first 5 frames."""
    return synthetic.write_synthetic_bag(
        tmp_path_factory.mktemp("bags") / "drive", num_frames=30, static_frames=5, return_recording=True
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _config(cache_dir, **overrides):
    settings = dict(width=160, height=96, cache_dir=cache_dir)
    settings.update(overrides)
    return DataConfig(**settings)


def _to_rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image * 255).round().byte().permute(1, 2, 0).numpy()


def _no_jitter(config):
    return dataclasses.replace(config, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def test_mono_samples_static_frames_and_report(recording, cache_dir):
    train, val, report = build_datasets([str(recording.path)], _config(cache_dir), "mono", **QUIET)
    # Frames 0..5 share one pose (static_frames=5, frame 5 is where motion starts): targets 1..5
    # have a neighbour that did not move. Frames 0 and 29 have no neighbours.
    assert report.dropped["static"] == 5
    assert report.dropped["no_neighbours"] == 2
    assert report.frames_read == 30
    assert report.frames_used == len(train) + len(val) == report.train_samples + report.val_samples
    assert report.frames_read == report.frames_used + sum(report.dropped.values())
    assert report.has_odometry and report.has_depth_gt and not report.rectified
    np.testing.assert_array_equal(report.K_native, recording.K)
    assert report.native_size == (160, 96)
    assert report.normalized_intrinsics == pytest.approx(
        [recording.K[0, 0] / 160, recording.K[1, 1] / 96, recording.K[0, 2] / 160, recording.K[1, 2] / 96]
    )
    assert "static 5" in str(report) and "/camera/image_raw" in str(report)
    sample = val[0]
    assert set(sample) == {
        "target", "target_aug", "prev", "next", "prev_aug", "next_aug", "K", "T_stereo_target",
        "odom_distance_prev", "odom_distance_next", "depth_gt", "has_depth_gt", "stamp", "flipped",
    }
    index = val.samples[0].target
    assert sample["stamp"].item() == pytest.approx(recording.stamps_ns[index] * 1e-9, abs=1e-6)
    np.testing.assert_array_equal(_to_rgb(sample["target"]), recording.images[index])
    np.testing.assert_array_equal(_to_rgb(sample["prev"]), recording.images[index - 1])
    np.testing.assert_allclose(sample["depth_gt"][0].numpy(), recording.depths[index])
    assert bool(sample["has_depth_gt"]) and not bool(sample["flipped"])
    true_prev = np.linalg.norm(recording.poses[index][:3, 3] - recording.poses[index - 1][:3, 3])
    assert sample["odom_distance_prev"].item() == pytest.approx(true_prev, abs=2e-3)
    torch.testing.assert_close(sample["target_aug"], sample["target"])  # validation: no augmentation


def test_static_frames_without_odometry_use_photometric_change(tmp_path):
    path = synthetic.write_synthetic_bag(
        tmp_path / "bag", num_frames=14, static_frames=5, odometry=False, stereo=False, depth=False
    )
    _, _, report = build_datasets([str(path)], _config(str(tmp_path / "cache")), "mono", **QUIET)
    assert report.dropped["static"] == 5 and not report.has_odometry


def test_training_size_scales_K_and_depth(recording, cache_dir):
    train, val, report = build_datasets([str(recording.path)], _config(cache_dir, width=80, height=32), "mono", **QUIET)
    K = val[0]["K"].numpy()
    sx, sy = 80 / 160, 32 / 96
    expected = [[recording.K[0, 0] * sx, 0, (recording.K[0, 2] + 0.5) * sx - 0.5],
                [0, recording.K[1, 1] * sy, (recording.K[1, 2] + 0.5) * sy - 0.5], [0, 0, 1]]
    np.testing.assert_allclose(K, expected, rtol=1e-6)
    assert val[0]["target"].shape == (3, 32, 80) and val[0]["depth_gt"].shape == (1, 32, 80)
    np.testing.assert_array_equal(report.K_native, recording.K)  # native K is reported unscaled


def test_gaps_and_stride(tmp_path):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=24, drop_frames=[10, 11, 12], stereo=False)
    cache = str(tmp_path / "cache")
    _, _, report = build_datasets([str(path)], _config(cache, val_fraction=0.0), "mono", **QUIET)
    # 21 frames; the 0.4 s hole (> max_gap_s 0.25) removes targets 9 and 13 besides both ends.
    assert report.frames_read == 21
    assert report.dropped == {"gap": 2, "no_neighbours": 2}
    _, _, relaxed = build_datasets([str(path)], _config(cache, val_fraction=0.0, max_gap_s=0.5), "mono", **QUIET)
    assert "gap" not in relaxed.dropped
    train, _, strided = build_datasets([str(path)], _config(cache, val_fraction=0.0, frame_stride=2), "mono", **QUIET)
    assert strided.dropped["frame_stride"] == 10
    sample = train.samples[0]
    stamps = np.asarray(train.caches[0].meta["stamps_left"])
    assert (stamps[sample.target] - stamps[sample.prev]) == 200_000_000


def test_split_is_contiguous_in_time(tmp_path):
    paths = [
        str(synthetic.write_synthetic_bag(tmp_path / f"bag{i}", num_frames=20, seed=i, stereo=False, depth=False))
        for i in (0, 1)
    ]
    train, val, report = build_datasets(paths, _config(str(tmp_path / "cache"), val_fraction=0.25), "mono", **QUIET)
    assert report.val_samples >= 2
    for bag_index in (0, 1):
        stamps = np.asarray(train.caches[bag_index].meta["stamps_left"])
        train_frames = [stamps[i] for s in train.samples if s.bag == bag_index for i in (s.prev, s.target, s.next)]
        val_frames = [stamps[i] for s in val.samples if s.bag == bag_index for i in (s.prev, s.target, s.next)]
        assert val_frames and train_frames
        assert max(train_frames) < min(val_frames)  # validation is the tail, no frame shared
        val_targets = sorted(stamps[s.target] for s in val.samples if s.bag == bag_index)
        assert np.all(np.diff(val_targets) == 100_000_000)  # one contiguous stretch
    assert report.dropped["split_boundary"] == 4  # two per bag: the triplets reaching into validation


def test_stereo_pairing_and_baseline(tmp_path):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=8, stereo_offset_s=0.003, odometry=False, depth=False)
    cache = str(tmp_path / "cache")
    train, val, report = build_datasets([str(path)], _config(cache), "stereo", **QUIET)
    assert report.frames_used == 8 and report.baseline_m == pytest.approx(0.2)
    assert set(val[0]) >= {"stereo", "stereo_aug"} and "prev" not in val[0]
    np.testing.assert_allclose(val[0]["T_stereo_target"][:3, 3].numpy(), [-0.2, 0.0, 0.0], atol=1e-7)
    _, _, override = build_datasets([str(path)], _config(cache, baseline_m=0.5), "stereo", **QUIET)
    assert override.baseline_m == 0.5
    with pytest.raises(BagError, match="(?s)too few frames.*no_stereo_pair 8"):
        build_datasets([str(path)], _config(cache, stereo_max_offset_s=0.002), "stereo", **QUIET)


def test_stereo_needs_a_baseline(tmp_path):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=4, baseline_m=0.0, odometry=False, depth=False)
    with pytest.raises(BagError, match="stereo baseline unknown.*Set baseline_m"):
        build_datasets([str(path)], _config(str(tmp_path / "cache")), "stereo", **QUIET)


def test_colour_jitter_is_identical_across_frames_and_absent_from_targets(recording, cache_dir, monkeypatch):
    monkeypatch.setattr(dataset_module, "COLOUR_JITTER_PROBABILITY", 1.0)
    # min_motion_m=0 keeps the static start, where prev, target and next are the same image.
    config = _config(cache_dir, min_motion_m=0.0, flip_probability=0.0, val_fraction=0.0)
    train, _, _ = build_datasets([str(recording.path)], config, "mono", **QUIET)
    static = [i for i, s in enumerate(train.samples) if s.target in (1, 2, 3)]
    torch.manual_seed(3)
    for index in static:
        sample = train[index]
        torch.testing.assert_close(sample["prev"], sample["target"])
        assert (sample["target_aug"] - sample["target"]).abs().mean() > 1e-3  # jitter happened
        torch.testing.assert_close(sample["prev_aug"], sample["target_aug"])  # same parameters on every frame
        torch.testing.assert_close(sample["next_aug"], sample["target_aug"])
        expected = recording.images[train.samples[index].target]
        np.testing.assert_array_equal(_to_rgb(sample["target"]), expected)


def test_weather_is_identical_across_frames_and_absent_from_targets(recording, cache_dir, monkeypatch):
    monkeypatch.setattr(dataset_module, "COLOUR_JITTER_PROBABILITY", 0.0)  # weather alone
    config = _config(cache_dir, min_motion_m=0.0, flip_probability=0.0, val_fraction=0.0, weather_probability=1.0)
    train, _, _ = build_datasets([str(recording.path)], config, "mono+stereo", **QUIET)
    static = [i for i, s in enumerate(train.samples) if s.target in (1, 2, 3)]  # prev == target == next
    torch.manual_seed(5)
    for index in static:
        sample = train[index]
        assert (sample["target_aug"] - sample["target"]).abs().mean() > 1e-3  # weather happened
        assert sample["target_aug"].min() >= 0 and sample["target_aug"].max() <= 1
        torch.testing.assert_close(sample["prev_aug"], sample["target_aug"], atol=0, rtol=0)  # same effect, pattern
        torch.testing.assert_close(sample["next_aug"], sample["target_aug"], atol=0, rtol=0)
        for name in ("target", "prev", "next"):  # what the loss compares is the recorded image
            np.testing.assert_array_equal(_to_rgb(sample[name]), recording.images[train.samples[index].target])
        assert (sample["stereo_aug"] - sample["stereo"]).abs().mean() > 1e-3


def test_weather_probability_zero_leaves_the_input_bit_identical(recording, cache_dir, monkeypatch):
    """Off, weather draws no random number: the augmented input is exactly colour jitter's, and the
    random stream after a sample is where it was before the option existed."""
    monkeypatch.setattr(dataset_module, "COLOUR_JITTER_PROBABILITY", 1.0)
    monkeypatch.setattr(dataset_module, "sample_weather",
                        lambda *args, **kwargs: pytest.fail("weather applied at probability 0"))
    config = _config(cache_dir, val_fraction=0.0, flip_probability=0.0)
    assert config.weather_probability == 0.0
    train, _, _ = build_datasets([str(recording.path)], config, "mono", **QUIET)
    torch.manual_seed(9)
    sample = train[4]
    after = torch.get_rng_state()
    torch.manual_seed(9)
    torch.rand(())  # flip draw
    torch.rand(())  # colour jitter draw
    jitter = data.ColourJitter.sample(config)
    assert torch.equal(after, torch.get_rng_state())
    for name in ("target", "prev", "next"):
        assert torch.equal(sample[f"{name}_aug"], jitter(sample[name][None])[0])


def test_bag_without_calibration_gives_a_placeholder_K_for_learned_intrinsics(tmp_path):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=5, camera_info=False, stereo=False, depth=False)
    config = _config(str(tmp_path / "cache"), val_fraction=0.0)
    train, _, report = build_datasets([str(path)], config, "mono", require_calibration=False, **QUIET)
    assert not report.calibrated and report.normalized_intrinsics is None
    np.testing.assert_allclose(report.K_native, data.placeholder_intrinsics(160, 96))
    assert report.K_native[0][2] == 79.5 and report.K_native[1][2] == 47.5
    assert "K unknown" in str(report)
    assert train[0]["K"][0, 0].item() == pytest.approx(0.8 * 160)
    with pytest.raises(BagError, match="no usable calibration"):  # the cached frames, read by a run that needs K
        build_datasets([str(path)], config, "mono", **QUIET)


def test_colour_jitter_factors():
    image = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(data.ColourJitter()(image), image, atol=1e-5, rtol=0)
    torch.testing.assert_close(data.ColourJitter(brightness=0.5)(image), image * 0.5)
    grey_world = torch.full((1, 3, 2, 2), 0.5)
    torch.testing.assert_close(data.ColourJitter(hue=0.1)(grey_world), grey_world)  # grey has no hue
    colour = torch.tensor([0.6, 0.3, 0.3]).view(1, 3, 1, 1)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    turned = data.ColourJitter(hue=0.05)(colour)
    torch.testing.assert_close((turned * luma).sum(), (colour * luma).sum())  # hue keeps luma
    assert turned[0, 1] > colour[0, 1] and turned[0, 2] < colour[0, 2]  # red turns towards yellow
    back = data.ColourJitter(hue=-0.05)(turned)
    torch.testing.assert_close(back, colour, atol=1e-5, rtol=0)
    # Contrast scales distances from the mean grey; saturation from each pixel's grey.
    flat = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    contrasted = data.ColourJitter(contrast=0.5)(flat)
    torch.testing.assert_close(contrasted[0, 0].flatten(), torch.tensor([0.35, 0.45, 0.55, 0.65]))


def test_flip_mirrors_images_K_and_stereo_transform(recording, cache_dir):
    """The flipped sample is geometrically consistent: the flipped other image is reproduced by
    warping with the flipped K, flipped T_stereo_target and the flipped depth."""
    config = _no_jitter(_config(cache_dir, val_fraction=0.0))
    bag = [str(recording.path)]
    flipped_set, _, _ = build_datasets(bag, dataclasses.replace(config, flip_probability=1.0), "mono+stereo", **QUIET)
    plain_set, _, _ = build_datasets(bag, dataclasses.replace(config, flip_probability=0.0), "mono+stereo", **QUIET)
    flipped, plain = flipped_set[10], plain_set[10]
    assert bool(flipped["flipped"]) and not bool(plain["flipped"])
    for key in ("target", "prev", "next", "stereo", "depth_gt"):
        torch.testing.assert_close(flipped[key], torch.flip(plain[key], dims=[-1]))
    assert flipped["K"][0, 2].item() == pytest.approx(159 - plain["K"][0, 2].item())
    assert flipped["T_stereo_target"][0, 3].item() == pytest.approx(0.2)
    assert plain["T_stereo_target"][0, 3].item() == pytest.approx(-0.2)

    def warp_error(sample, T):
        depth = sample["depth_gt"][None].double()
        K = sample["K"][None].double()
        grid = reproject_coordinates(depth, T[None].double(), K, K).float()
        inside = (grid.abs() < 0.98).all(dim=-1)
        warped = warp_image(sample["stereo"][None], grid)
        return (warped - sample["target"][None]).abs().mean(dim=1)[inside].mean().item()

    assert warp_error(plain, plain["T_stereo_target"]) < 0.02
    assert warp_error(flipped, flipped["T_stereo_target"]) < 0.02
    assert warp_error(flipped, plain["T_stereo_target"]) > 3 * warp_error(flipped, flipped["T_stereo_target"])


@pytest.mark.parametrize(
    "model, coefficients", [("plumb_bob", [-0.25, 0.06, 0.0, 0.0, 0.0]), ("equidistant", [0.1, -0.05, 0.01, 0.0])]
)
def test_undistortion_when_D_is_non_zero(tmp_path, model, coefficients):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=4, distortion=coefficients,
                                         distortion_model=model, stereo=False, odometry=False)
    config = _no_jitter(_config(str(tmp_path / "cache"), val_fraction=0.0, flip_probability=0.0))
    val, _, report = build_datasets([str(path)], config, "mono", **QUIET)
    assert report.rectified and report.distortion_model == model
    pinhole = synthetic.render_recording(num_frames=4, stereo=False)
    distorted = synthetic.render_recording(num_frames=4, stereo=False, distortion=coefficients, distortion_model=model)
    target = (val[0]["target"] * 255).permute(1, 2, 0).numpy()
    index = val.samples[0].target
    centre = (slice(20, 76), slice(30, 130))
    rectified_error = np.abs(target[centre] - pinhole.images[index][centre]).mean()
    raw_error = np.abs(distorted.images[index][centre].astype(float) - pinhole.images[index][centre]).mean()
    assert rectified_error < 6.0 and raw_error > 2 * rectified_error
    depth = val[0]["depth_gt"][0].numpy()
    relative = np.abs(depth[centre] - pinhole.depths[index][centre]) / pinhole.depths[index][centre]
    assert np.median(relative) < 0.02  # nearest-neighbour resampling: within about half a pixel


def test_second_read_uses_the_cache(tmp_path, monkeypatch):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=6, stereo=False, depth=False)
    calls = []
    real_decode = bag_stream.decode_image

    def counting_decode(msg, msgtype):
        calls.append(msgtype)
        return real_decode(msg, msgtype)

    monkeypatch.setattr(bag_stream, "decode_image", counting_decode)  # looked up at call time
    config = _config(str(tmp_path / "cache"), val_fraction=0.0)
    _, _, first = build_datasets([str(path)], config, "mono", **QUIET)
    assert len(calls) == 6 and first.cache_hits == 0
    train, _, second = build_datasets([str(path)], config, "mono", **QUIET)
    assert len(calls) == 6 and second.cache_hits == 1
    assert second.frames_used == first.frames_used
    # Workers read the memory-mapped cache.
    loader = torch.utils.data.DataLoader(train, batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["target"].shape == (2, 3, 96, 160) and batch["stamp"].dtype == torch.float64


def test_truncated_bag_is_used_up_to_the_damage(tmp_path):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=30, storage="sqlite3", stereo=False, odometry=False)
    storage = synthetic.storage_file(path)
    storage.write_bytes(storage.read_bytes()[: int(storage.stat().st_size * 0.6)])
    logged = []
    train, _, report = build_datasets([str(path)], _config(str(tmp_path / "cache")), "mono", log=logged.append)
    assert 8 <= report.frames_read < 30 and len(train) > 0
    assert any(str(storage) in warning and "unreadable from after message" in warning for warning in report.warnings)
    assert any("WARNING" in line for line in logged)


def test_camera_info_missing_needs_K(tmp_path):
    path = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=5, camera_info=False, stereo=False, depth=False)
    config = _config(str(tmp_path / "cache"), val_fraction=0.0)
    with pytest.raises(BagError, match="K in the config"):
        build_datasets([str(path)], config, "mono", **QUIET)
    K = synthetic.camera_intrinsics(160, 96)
    _, _, report = build_datasets([str(path)], dataclasses.replace(config, K=K.reshape(-1).tolist()), "mono", **QUIET)
    np.testing.assert_array_equal(report.K_native, K)


def test_bad_arguments(recording, cache_dir):
    with pytest.raises(ValueError, match="mode must be one of"):
        build_datasets([str(recording.path)], _config(cache_dir), "sideways", **QUIET)
    with pytest.raises(ValueError, match="frame_stride = 0"):
        build_datasets([str(recording.path)], _config(cache_dir, frame_stride=0), "mono", **QUIET)
    with pytest.raises(BagError, match="no bags given"):
        build_datasets([], _config(cache_dir), "mono", **QUIET)


def test_growing_cache_array(tmp_path):
    """The frame cache grows when a bag's message count underestimates its images."""
    array = data.GrowingArray(tmp_path / "frames.npy", (2, 2), np.uint8, capacity=1)
    for value in range(5):
        array.append(np.full((2, 2), value, np.uint8))
    array.close()
    stored = np.load(tmp_path / "frames.npy", mmap_mode="r")
    assert array.count == 5 and stored.shape[0] >= 5
    np.testing.assert_array_equal(stored[:5, 0, 0], [0, 1, 2, 3, 4])


def _changing_camera_bag(path, count, change_at, first_info_stamp_offset_ns=0):
    """/cam images (random 32x24) + camera_info; the calibration changes (fx + 5) from frame change_at on.
    first_info_stamp_offset_ns < 0 adds one camera_info with the first calibration that long before frame 0."""
    typestore = synthetic.make_typestore()
    K = synthetic.camera_intrinsics(32, 24)
    K2 = K.copy()
    K2[0, 0] += 5.0
    rng = np.random.default_rng(3)
    entries, stamps = [], []
    if first_info_stamp_offset_ns:
        stamp = synthetic.STAMP_ORIGIN_NS + first_info_stamp_offset_ns
        entries.append(synthetic.BagEntry("/cam/camera_info", synthetic.CAMERA_INFO_TYPE, stamp,
                                          synthetic.camera_info_message(typestore, K, 32, 24, stamp)))
    for index in range(count):
        stamp = synthetic.STAMP_ORIGIN_NS + index * 100_000_000
        stamps.append(stamp)
        rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        entries.append(synthetic.BagEntry("/cam/image_raw", synthetic.IMAGE_TYPE, stamp,
                                          synthetic.image_message(typestore, rgb, stamp)))
        K_now = K2 if index >= change_at else K
        entries.append(synthetic.BagEntry("/cam/camera_info", synthetic.CAMERA_INFO_TYPE, stamp,
                                          synthetic.camera_info_message(typestore, K_now, 32, 24, stamp)))
    return synthetic.write_bag(path, entries, typestore=typestore), stamps


def test_calibration_change_keeps_the_usable_frames_and_warns_on_every_read(tmp_path):
    path, stamps = _changing_camera_bag(tmp_path / "bag", 8, change_at=5)
    config = _config(str(tmp_path / "cache"), width=32, height=24, val_fraction=0.0)
    for expect_hit in (False, True):  # decoding, then the cache
        logged = []
        cache = data.load_bag(str(path), config, "mono", log=logged.append)
        assert cache.meta["cache_hit"] is expect_hit
        assert cache.meta["stamps_left"] == stamps[:5]  # frames 5-7 have the new calibration
        assert cache.meta["skipped"] == {"/cam/image_raw": {"calibration_changed": 3}}
        assert cache.array("left").shape[0] >= 5
        warnings = [line for line in logged if line.startswith("WARNING: ")]
        assert len(warnings) == 1, logged
        assert warnings[0].startswith("WARNING: camera calibration changes on /cam/camera_info at stamp ")
        assert "0.50 s into bag" in warnings[0] and "3 of 8 images on /cam/image_raw" in warnings[0]
    logged = []
    train, _, report = build_datasets([str(path)], config, "mono", log=logged.append)
    # Frames 0-4: targets 1-3 (0 and 4 lack a neighbour); the skipped frames are accounted for.
    assert report.frames_read == 8 and report.train_samples == 3
    assert report.dropped == {"calibration_changed": 3, "no_neighbours": 2}
    assert report.frames_read == report.frames_used + sum(report.dropped.values())
    assert sum("calibration changes on /cam/camera_info" in line for line in logged) == 1  # once per read
    assert "WARNING: camera calibration changes" in str(report)
    assert sorted(int(train._stamps[0][s.target]) for s in train.samples) == stamps[1:4]


def test_no_usable_images_says_why(tmp_path):
    # The first camera_info comes 50 ms before the first image; every image has the second calibration.
    path, _ = _changing_camera_bag(tmp_path / "bag", 4, change_at=0, first_info_stamp_offset_ns=-50_000_000)
    with pytest.raises(BagError, match=r"(?s)no usable images on /cam/image_raw in bag .*bag: camera calibration "
                                       r"changes on /cam/camera_info .*4 of 4 images on /cam/image_raw"):
        build_datasets([str(path)], _config(str(tmp_path / "cache"), width=32, height=24), "mono", **QUIET)
