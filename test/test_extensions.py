"""Trainer extensions (issue 6): learned intrinsics, sub-pixel upsampling, weather augmentation,
semantic guidance and the Monodepth v1 stereo head. Networks, losses and data on their own, then a
2-step training run per switch that exports a model file which loads and predicts."""
from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mono_depth_ros.camera import intrinsics_disagreement
from mono_depth_ros.inference import DepthEstimator
from mono_depth_ros.model_file import ModelMetadata, load_model_file
from mono_depth_ros.networks import (
    LEARNED_FOCAL_PRIOR,
    DepthDecoder,
    DepthNet,
    PixelShuffleUpsample,
    intrinsics_from_camera_head,
)
from mono_depth_ros_training.data import weather
from mono_depth_ros_training.config import ConfigError, TrainConfig, apply_overrides, config_to_dict
from mono_depth_ros_training.checkpoints import check_resume_compatible
from mono_depth_ros_training.run import train
from mono_depth_ros_training.trainer import Trainer

from helpers import BASELINE, make_datasets, quiet, small_recording, tiny_config  # test/ is on sys.path

pytestmark = pytest.mark.usefixtures("drop_large_outputs")


@pytest.fixture(scope="module")
def recording():
    return small_recording()


def true_report(recording, has_odometry=True):
    """The data report of the rendered recording: its exact K, normalised."""
    K = recording.K
    return SimpleNamespace(
        has_odometry=has_odometry, rectified=True, baseline_m=BASELINE, calibrated=True,
        normalized_intrinsics=[K[0, 0] / 64, K[1, 1] / 64, K[0, 2] / 64, K[1, 2] / 64],
    )


def batch_of(dataset, indices, flipped=None):
    batch = torch.utils.data.default_collate([dataset[index] for index in indices])
    if flipped is not None:
        batch["flipped"] = torch.tensor(flipped)
    return batch


def exported_model_predicts(result, recording):
    """The run's model file loads and its DepthEstimator gives finite depth in the model's range."""
    model = load_model_file(result.model_path)
    estimator = DepthEstimator(model, torch.device("cpu"))
    depth = estimator.predict(recording.images[4])
    assert depth.shape == recording.images[4].shape[:2]
    assert np.isfinite(depth).all()
    assert model.metadata.min_depth - 1e-4 <= depth.min() and depth.max() <= model.metadata.max_depth + 1e-3
    return model, estimator


# --------------------------------------------------------------------------- sub-pixel upsampling


def test_pixel_shuffle_starts_as_nearest_upsampling_and_learns_sub_pixel_filters():
    torch.manual_seed(0)
    upsample = PixelShuffleUpsample(5)
    x = torch.rand(2, 5, 6, 7)
    assert torch.equal(upsample(x), F.interpolate(x, scale_factor=2.0, mode="nearest"))
    with torch.no_grad():
        upsample.conv.conv.weight[4 * 1 + 3, 1, 1, 1] = 2.0  # channel 1, phase (1, 1) only
    out = upsample(x)
    torch.testing.assert_close(out[:, 1, 1::2, 1::2], 2 * x[:, 1])
    torch.testing.assert_close(out[:, 1, 0::2, 0::2], x[:, 1])


def test_pixel_shuffle_decoder_output_sizes_per_scale_and_gradients():
    torch.manual_seed(0)
    net = DepthNet(18, upsampling="pixel_shuffle")
    image = torch.rand(2, 3, 64, 96)
    outputs = net(image)
    assert {scale: tuple(value.shape) for scale, value in outputs.items()} == {
        0: (2, 1, 64, 96), 1: (2, 1, 32, 48), 2: (2, 1, 16, 24), 3: (2, 1, 8, 12)
    }
    assert all(((value > 0) & (value < 1)).all() for value in outputs.values())
    sum(value.mean() for value in outputs.values()).backward()
    for index, block in enumerate(net.decoder.upsample):
        assert block.conv.conv.weight.grad.abs().sum() > 0, index
    assert net.encoder.resnet.conv1.weight.grad.abs().sum() > 0
    # A fresh sub-pixel decoder computes what the nearest-neighbour decoder with the same weights does.
    nearest = DepthDecoder(net.encoder.num_channels)
    nearest.load_state_dict({k: v for k, v in net.decoder.state_dict().items() if not k.startswith("upsample.")})
    fresh = DepthNet(18, upsampling="pixel_shuffle")
    nearest.load_state_dict({k: v for k, v in fresh.decoder.state_dict().items() if not k.startswith("upsample.")})
    features = fresh.encoder(image)
    with torch.no_grad():
        for scale, value in fresh.decoder(features).items():
            torch.testing.assert_close(value, nearest(features)[scale])


# --------------------------------------------------------------------------- learned intrinsics


def test_camera_head_gives_positive_focal_lengths_and_a_principal_point_in_range():
    width, height = 192, 128
    K = intrinsics_from_camera_head(torch.zeros(1, 4), width, height)[0]
    # Zero codes (a fresh head): the prior, square pixels, the image centre (pixel-centre convention).
    torch.testing.assert_close(K, torch.tensor([[LEARNED_FOCAL_PRIOR * width, 0.0, 95.5],
                                                [0.0, LEARNED_FOCAL_PRIOR * width, 63.5], [0.0, 0.0, 1.0]]))
    raw = torch.cat([torch.randn(500, 4) * 20, torch.full((1, 4), -1e4), torch.full((1, 4), 1e4)])
    K = intrinsics_from_camera_head(raw, width, height)
    assert (K[:, 0, 0] >= 0.1 * width).all() and (K[:, 1, 1] >= 0.1 * height).all()  # positive, K invertible
    assert torch.isfinite(torch.linalg.inv(K.double())).all()
    assert ((K[:, 0, 2] >= 0.4 * width - 0.5 - 1e-3) & (K[:, 0, 2] <= 0.6 * width - 0.5 + 1e-3)).all()
    assert ((K[:, 1, 2] >= 0.4 * height - 0.5 - 1e-3) & (K[:, 1, 2] <= 0.6 * height - 0.5 + 1e-3)).all()
    # refine: zero codes give the given K; any codes stay within exp(+-0.2) and +-5 % of the image.
    given = torch.tensor([[[150.0, 0.0, 97.0], [0.0, 148.0, 60.0], [0.0, 0.0, 1.0]]]).expand(raw.shape[0], 3, 3)
    torch.testing.assert_close(intrinsics_from_camera_head(torch.zeros(1, 4), width, height, given[:1]), given[:1])
    refined = intrinsics_from_camera_head(raw, width, height, given)
    ratio = refined[:, 0, 0] / 150.0
    assert (ratio >= math.exp(-0.2) - 1e-6).all() and (ratio <= math.exp(0.2) + 1e-6).all()
    assert ((refined[:, 0, 2] - 97.0).abs() <= 0.05 * width + 1e-4).all()


@pytest.mark.slow
def test_camera_head_learns_from_the_reprojection_and_mirrors_cx_for_flipped_samples(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("mono", **{"model.intrinsics": "learned"})
    trainer = Trainer(config, train_ds, val_ds, tmp_path, report=true_report(recording), log=quiet)
    assert trainer.pose_net.camera is not None
    output = trainer.compute_losses(batch_of(train_ds, [0, 1]))
    output.total.backward()
    assert trainer.pose_net.camera.conv.weight.grad.abs().sum() > 0  # the photometric loss reaches the head

    raw = torch.tensor([[0.3, -0.2, 0.5, -0.4], [0.3, -0.2, 0.5, -0.4]] * 2)
    batch = batch_of(train_ds, [0, 1], flipped=[False, True])
    K, normalised = trainer.camera_intrinsics(raw, batch)
    torch.testing.assert_close(normalised[0], normalised[1])  # one camera, mirrored or not
    assert K[1, 0, 2].item() == pytest.approx(63 - K[0, 0, 2].item())
    torch.testing.assert_close(K[1, 1:], K[0, 1:])
    assert K[1, 0, 0] == K[0, 0, 0]

    # refine starts at the given K, in the mirrored sample's own image too.
    refine = Trainer(tiny_config("mono", **{"model.intrinsics": "refine"}), train_ds, val_ds, tmp_path / "r",
                     report=true_report(recording), log=quiet)
    mirrored_K = batch["K"].clone()
    mirrored_K[1, 0, 2] = 63 - mirrored_K[1, 0, 2]
    batch["K"] = mirrored_K
    K, normalised = refine.camera_intrinsics(torch.zeros(4, 4), batch)
    torch.testing.assert_close(K, mirrored_K)
    torch.testing.assert_close(normalised[1], normalised[0])
    torch.testing.assert_close(normalised[0], torch.tensor(true_report(recording).normalized_intrinsics).float())


def test_learned_intrinsics_need_temporal_frames_and_the_stereo_head_a_stereo_mode():
    with pytest.raises(ConfigError, match="model.intrinsics=learned needs temporal frames"):
        apply_overrides(TrainConfig(), ["mode=stereo", "model.intrinsics=learned"])
    with pytest.raises(ConfigError, match="model.stereo_head needs a stereo mode"):
        apply_overrides(TrainConfig(), ["mode=mono", "model.stereo_head=true"])
    with pytest.raises(ConfigError, match="model.upsampling is 'bilinear'; choose one of nearest, pixel_shuffle"):
        apply_overrides(TrainConfig(), ["model.upsampling=bilinear"])
    with pytest.raises(ConfigError, match="model.intrinsics is 'guess'"):
        apply_overrides(TrainConfig(), ["model.intrinsics=guess"])
    with pytest.raises(ConfigError, match=r"weather = \['hail'\]; list distinct effects from rain, snow, fog, sun_flare"):
        apply_overrides(TrainConfig(), ["data.weather=[hail]"])
    assert apply_overrides(TrainConfig(), ["data.weather=[fog, rain]"]).data.weather == ["fog", "rain"]
    apply_overrides(TrainConfig(), ["mode=mono+stereo", "model.intrinsics=learned", "model.stereo_head=true"])


@pytest.mark.parametrize("key, value", [("model.intrinsics", "learned"), ("model.upsampling", "pixel_shuffle"),
                                        ("model.semantic", "true"), ("model.stereo_head", "true")])
def test_resume_refuses_to_change_a_network_switch(key, value):
    config = apply_overrides(TrainConfig(), ["mode=mono+stereo"])
    checkpoint = {"config": config_to_dict(config)}
    with pytest.raises(ConfigError, match=f"cannot resume: these settings differ.*{key}"):
        check_resume_compatible(apply_overrides(config, [f"{key}={value}"]), checkpoint)


@pytest.mark.slow
def test_validation_logs_the_learned_K_next_to_the_calibration(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    trainer = Trainer(tiny_config("mono", **{"model.intrinsics": "learned"}), train_ds, val_ds, tmp_path,
                      report=true_report(recording), log=quiet)
    metrics = trainer.validate()
    truth = true_report(recording).normalized_intrinsics
    for index, name in enumerate(("fx", "fy", "cx", "cy")):
        assert metrics[f"intrinsics_{name}_calibration"] == pytest.approx(truth[index])
    # A fresh head: the prior focal length and the image centre.
    assert metrics["intrinsics_fx"] == pytest.approx(LEARNED_FOCAL_PRIOR)
    assert metrics["intrinsics_cx"] == pytest.approx(31.5 / 64)
    text = trainer.format_validation(metrics)
    assert f"learned K fx/W {LEARNED_FOCAL_PRIOR:.3f} (calibration {truth[0]:.3f})" in text


def test_intrinsics_disagreement_warns_only_for_learned_K_far_from_camera_info():
    learned = ModelMetadata(intrinsics="learned", normalized_intrinsics=[0.7, 1.05, 0.5, 0.48])
    width, height = 320, 192
    K = [224.0, 0.0, 160.0, 0.0, 201.6, 92.0, 0.0, 0.0, 1.0]  # the same camera
    assert intrinsics_disagreement(K, learned, width, height) is None
    assert intrinsics_disagreement(K, dataclasses.replace(learned, intrinsics="given"), width, height) is None
    wide = list(K)
    wide[0] = 160.0  # fx off by 40 %
    text = intrinsics_disagreement(wide, learned, width, height)
    assert "fx 160.0 vs learned 224.0 (+40%)" in text and "fy" not in text and "learned in training" in text
    shifted = list(K)
    shifted[2] = 200.0  # cx 40 px = 12.5 % of the width away
    text = intrinsics_disagreement(np.asarray(shifted).reshape(3, 3), dataclasses.replace(learned, intrinsics="refine"),
                                   width, height)
    assert "cx 200.0 vs learned 160.0 (12% of the image)" in text and "refined in training" in text


# --------------------------------------------------------------------------- semantic guidance


@pytest.mark.slow
def test_semantic_branch_is_frozen_and_starts_neutral():
    torch.manual_seed(0)
    net = DepthNet(18, semantic=True).train()
    assert not net.semantic.backbone.training  # batch norms keep their statistics in train mode
    image = torch.rand(2, 3, 64, 96)
    frozen = {key: value.clone() for key, value in net.semantic.backbone.state_dict().items()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(trainable) < len(list(net.parameters()))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)  # every parameter offered, frozen ones too
    for _ in range(2):
        outputs = net(image)
        optimizer.zero_grad()
        sum(value.mean() for value in outputs.values()).backward()
        assert all(p.grad is None for p in net.semantic.backbone.parameters())
        assert net.semantic.fuse_high.weight.grad.abs().sum() > 0
        optimizer.step()
    assert {tuple(v.shape) for v in outputs.values()} == {(2, 1, 64, 96), (2, 1, 32, 48), (2, 1, 16, 24), (2, 1, 8, 12)}
    for key, value in net.semantic.backbone.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    assert net.semantic.fuse_high.weight.abs().sum() > 0  # the fusion trains
    # A fresh branch adds nothing: the same encoder and decoder without it compute the same.
    torch.manual_seed(1)
    fresh = DepthNet(18, semantic=True).eval()
    plain = DepthNet(18).eval()
    plain.load_state_dict({k: v for k, v in fresh.state_dict().items() if not k.startswith("semantic.")})
    with torch.no_grad():
        torch.testing.assert_close(fresh(image)[0], plain(image)[0])


# --------------------------------------------------------------------------- stereo head


def test_stereo_head_predicts_both_views_and_returns_the_left_one_by_default():
    torch.manual_seed(0)
    net = DepthNet(18, stereo_head=True).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        both, left = net(image, both_views=True), net(image)
    assert both[0].shape == (1, 2, 64, 64) and left[0].shape == (1, 1, 64, 64)
    assert torch.equal(left[0], both[0][:, :1])
    with pytest.raises(ValueError, match="both_views needs a network built with stereo_head=True"):
        DepthNet(18)(image, both_views=True)


@pytest.mark.slow
def test_stereo_head_needs_one_forward_pass_per_sample(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    seen = []
    for stereo_head in (False, True):
        config = tiny_config("stereo", **{"model.stereo_head": str(stereo_head).lower()})
        trainer = Trainer(config, train_ds, val_ds, tmp_path / str(stereo_head), report=true_report(recording), log=quiet)
        calls = []
        trainer.depth_net.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
        output = trainer.train_step(batch_of(train_ds, [0, 1, 2]))
        seen.append(calls)
        assert {"lr_consistency", "photometric"} <= set(output.parts) and torch.isfinite(output.total)
    assert seen == [[6], [3]]  # two views per sample before; the target alone with the head
    # Mirrored samples do not train the head's other-view channel (their other camera is on the left).
    assert trainer.other_view_samples(batch_of(train_ds, [0, 1, 2], flipped=[True, False, True])).tolist() == [1]
    everything_mirrored = trainer.compute_losses(batch_of(train_ds, [0, 1], flipped=[True, True]))
    assert "lr_consistency" not in everything_mirrored.parts and torch.isfinite(everything_mirrored.total)


# --------------------------------------------------------------------------- weather


@pytest.mark.parametrize("effect", weather.WEATHER_EFFECTS)
def test_weather_is_identical_on_every_frame_and_stays_in_range(effect):
    torch.manual_seed(4)
    frames = torch.rand(3, 3, 48, 80)
    chosen = weather.sample_weather([effect], 48, 80)
    assert chosen.name == effect
    out = chosen(frames)
    assert out.shape == frames.shape and not torch.equal(out, frames)
    for index in range(3):  # the same parameters and pattern for each frame, whatever the batch
        torch.testing.assert_close(out[index:index + 1], chosen(frames[index:index + 1]), atol=1e-6, rtol=0)
    same = chosen(frames[:1].expand(3, -1, -1, -1))
    assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])
    for extreme in (torch.zeros(1, 3, 48, 80), torch.ones(1, 3, 48, 80)):
        result = chosen(extreme)
        assert result.min() >= 0 and result.max() <= 1
    copy = frames.clone()
    chosen(frames)
    assert torch.equal(frames, copy)  # the input is not modified


def test_weather_choice_and_bad_names():
    generator = torch.Generator().manual_seed(0)
    names = {weather.sample_weather(["rain", "fog"], 16, 16, generator).name for _ in range(20)}
    assert names == {"rain", "fog"}
    with pytest.raises(ValueError, match="unknown weather effect 'hail'"):
        weather.sample_weather(["hail"], 16, 16)


# --------------------------------------------------------------------------- 2-step runs per switch


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, overrides",
    [
        ("mono", {"model.intrinsics": "learned"}),
        ("stereo", {"model.upsampling": "pixel_shuffle"}),
        ("stereo", {"model.stereo_head": "true"}),
    ],
    ids=["learned_intrinsics", "pixel_shuffle", "stereo_head"],
)
def test_two_step_run_exports_a_model_that_loads_and_predicts(recording, tmp_path, mode, overrides):
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config(mode, **{"optim.max_steps": 2, **overrides})
    messages = []
    result = train(config, tmp_path, datasets=(train_ds, val_ds, true_report(recording)), log=messages.append)
    assert result.step == 2 and all(math.isfinite(loss) for loss in result.losses)
    model, estimator = exported_model_predicts(result, recording)
    meta = model.metadata
    assert (meta.upsampling, meta.stereo_head) == (config.model.upsampling, config.model.stereo_head)
    if config.model.intrinsics == "learned":
        assert meta.intrinsics == "learned" and model.pose_net.camera is not None
        assert meta.normalized_intrinsics == pytest.approx(result.intrinsics["learned"])
        assert meta.training["calibration_normalized_intrinsics"] == pytest.approx(
            true_report(recording).normalized_intrinsics)
        assert abs(meta.normalized_intrinsics[0] / LEARNED_FOCAL_PRIOR - 1) < 0.5  # two steps move it a little
        assert any(message.startswith("camera: learned K fx/W") and "calibration" in message for message in messages)
    else:
        assert meta.intrinsics == "given" and meta.normalized_intrinsics == pytest.approx(
            true_report(recording).normalized_intrinsics)


@pytest.mark.slow
def test_two_step_run_with_the_semantic_branch_keeps_it_frozen(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo", **{"optim.max_steps": 2, "model.semantic": "true"})
    result = train(config, tmp_path, datasets=(train_ds, val_ds, true_report(recording)), log=quiet)
    model, estimator = exported_model_predicts(result, recording)
    assert model.metadata.semantic and model.metadata.training["semantic_pretrained"] is False
    torch.manual_seed(config.seed)  # the trainer's initial weights
    initial = DepthNet(18, semantic=True, scales=config.model.scales, encoder=config.model.encoder)
    trained = model.depth_net.state_dict()
    for key, value in initial.state_dict().items():
        if key.startswith("semantic.backbone."):
            assert torch.equal(trained[key], value), key
    assert not torch.equal(trained["semantic.fuse_low.weight"], initial.state_dict()["semantic.fuse_low.weight"])


@pytest.mark.slow
def test_two_step_run_from_a_bag_without_camera_info_with_weather_and_learned_intrinsics(tmp_path, monkeypatch):
    pytest.importorskip("rosbags", reason="rosbags is required to read bags")
    from mono_depth_ros.bagio import BagError
    from mono_depth_ros import simulation as synthetic
    from mono_depth_ros_training import data
    from mono_depth_ros_training.data import dataset as dataset_module  # where BagDataset looks it up

    bag = synthetic.write_synthetic_bag(tmp_path / "bag", num_frames=10, camera_info=False, stereo=False, depth=False)
    overrides = ["mode=mono", "model.pretrained=false", "data.width=96", "data.height=64", "data.num_workers=0",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.weather_probability=1.0", "optim.batch_size=2",
                 "optim.max_steps=2", "log.image_every=0", "val.enabled=false"]
    with pytest.raises(BagError, match="no CameraInfo .* give the intrinsics as data.K"):
        train(apply_overrides(TrainConfig(), overrides), tmp_path / "given", [str(bag)], log=quiet)
    applied = []
    real = dataset_module.sample_weather

    def recording_weather(effects, height, width, generator=None):
        effect = real(effects, height, width, generator)
        applied.append(effect.name)
        return effect

    monkeypatch.setattr(dataset_module, "sample_weather", recording_weather)
    messages = []
    config = apply_overrides(TrainConfig(), overrides + ["model.intrinsics=learned"])
    result = train(config, tmp_path / "learned", [str(bag)], log=messages.append)
    assert result.step == 2 and len(applied) >= 4  # every training sample got weather
    assert any("K unknown (no camera_info, no data.K): the intrinsics are learned" in m for m in messages)
    model = load_model_file(result.model_path)
    assert model.metadata.intrinsics == "learned" and len(model.metadata.normalized_intrinsics) == 4
    assert model.metadata.training["calibration_normalized_intrinsics"] is None
    assert result.intrinsics["calibration"] is None
    depth = DepthEstimator(model, torch.device("cpu")).predict(np.full((96, 160, 3), 128, np.uint8))
    assert depth.shape == (96, 160) and np.isfinite(depth).all()
    # The frames decoded without a calibration are not silently used by a run that needs one.
    with pytest.raises(BagError, match="no usable calibration.*model.intrinsics=learned"):
        data.build_datasets([str(bag)], config.data, "mono", log=quiet)
