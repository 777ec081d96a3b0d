"""Trainer on in-memory samples rendered with exact depth (mono_depth_ros.simulation), no bags."""
import dataclasses
import math
import os
from unittest import mock

import numpy as np
import pytest
import torch

import mono_depth_ros.networks as networks
import mono_depth_ros_training.objective as objective_module
from mono_depth_ros.networks import encoders
from mono_depth_ros.model_file import load_model_file
from mono_depth_ros_training.config import ConfigError, apply_overrides
from mono_depth_ros_training.checkpoints import CHECKPOINT_NAME, atomic_torch_save, load_checkpoint
from mono_depth_ros_training.errors import RunError
from mono_depth_ros_training.run import final_lines, train
from mono_depth_ros_training.trainer import Trainer

from helpers import (  # test/ is on sys.path
    BASELINE, RecordingDataset, make_datasets, quiet, report, small_recording, tiny_config,
)

# Checkpoints are ~100-300 MB each: delete them after each test (fixture in conftest).
pytestmark = pytest.mark.usefixtures("drop_large_outputs")


@pytest.fixture(scope="module")
def recording():
    return small_recording()


def parameters_of(trainer):
    nets = [trainer.depth_net] + ([trainer.pose_net] if trainer.pose_net is not None else [])
    return [p.detach().clone() for net in nets for p in net.parameters()]


def test_a_few_steps_lower_the_loss(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo")
    trainer = Trainer(config, train_ds, val_ds, tmp_path, report=report(), log=quiet)
    batch = torch.utils.data.default_collate([train_ds[0], train_ds[3]])
    losses = [float(trainer.train_step(batch).total.detach()) for _ in range(8)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses


def test_mono_step_trains_depth_and_pose(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    trainer = Trainer(tiny_config("mono"), train_ds, val_ds, tmp_path, report=report(), log=quiet)
    before_depth = [p.detach().clone() for p in trainer.depth_net.parameters()]
    before_pose = [p.detach().clone() for p in trainer.pose_net.parameters()]
    output = trainer.train_step(torch.utils.data.default_collate([train_ds[0], train_ds[1]]))
    assert output.source_names == ["prev", "next"]
    assert set(output.parts) >= {"total", "photometric", "smoothness", "velocity", "automask_fraction"}
    changed = lambda before, net: any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert changed(before_depth, trainer.depth_net) and changed(before_pose, trainer.pose_net)


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(recording, tmp_path):
    # 6 samples, batch 2: 3 steps per epoch. The run is cut mid-epoch (step 2) and continues
    # across the epoch boundary (scheduler step and validation) to step 4.
    train_ds, val_ds = make_datasets(recording)
    datasets = (train_ds, val_ds, report())
    config = tiny_config("mono", **{"optim.max_steps": 4, "optim.scheduler_step": 1, "optim.scheduler_gamma": 0.5})
    whole = train(config, tmp_path / "whole", datasets=datasets, log=quiet)
    assert whole.step == 4 and whole.epoch == 1 and len(whole.losses) == 4

    half_config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, max_steps=2))
    first = train(half_config, tmp_path / "split", datasets=datasets, log=quiet)
    assert first.step == 2
    second = train(config, tmp_path / "split", datasets=datasets, resume=True, log=quiet)
    assert second.step == 4 and len(second.losses) == 2
    assert first.losses + second.losses == pytest.approx(whole.losses, abs=0, rel=0)

    whole_state = load_checkpoint(tmp_path / "whole" / "checkpoints" / CHECKPOINT_NAME)
    split_state = load_checkpoint(tmp_path / "split" / "checkpoints" / CHECKPOINT_NAME)
    assert split_state["step"] == whole_state["step"] == 4
    assert split_state["scheduler"]["last_epoch"] == whole_state["scheduler"]["last_epoch"] == 1
    for net in ("depth_net", "pose_net"):
        for key, value in whole_state[net].items():
            assert torch.equal(value, split_state[net][key]), f"{net}.{key} differs after resume"
    for key, value in whole_state["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg"], split_state["optimizer"]["state"][key]["exp_avg"])


def test_run_directory_rules(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    datasets = (train_ds, val_ds, report())
    config = tiny_config("stereo", **{"optim.max_steps": 1})
    with pytest.raises(RunError, match="has no checkpoint"):
        train(config, tmp_path, datasets=datasets, resume=True, log=quiet)
    train(config, tmp_path, datasets=datasets, log=quiet)
    with pytest.raises(RunError, match="pass --resume"):
        train(config, tmp_path, datasets=datasets, log=quiet)
    changed = apply_overrides(config, ["model.max_depth=50"])
    with pytest.raises(ConfigError, match=r"model.max_depth \(checkpoint 100.0, now 50.0\)"):
        train(changed, tmp_path, datasets=datasets, resume=True, log=quiet)


def test_checkpoint_survives_a_crash_during_save(recording, tmp_path, monkeypatch):
    train_ds, val_ds = make_datasets(recording)
    trainer = Trainer(tiny_config("stereo"), train_ds, val_ds, tmp_path, report=report(), log=quiet)
    trainer.step = 5
    path = trainer.save_checkpoint()
    good = path.read_bytes()

    def crashing_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    trainer.step = 6
    with pytest.raises(RunError, match=r"could not write checkpoint .* at step 6 \(disk full\); the previous checkpoint "
                                       r"\(step 5\) is intact"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert load_checkpoint(path)["step"] == 5
    assert sorted(p.name for p in path.parent.iterdir()) == [CHECKPOINT_NAME]  # no temporary left behind

    def crashing_replace(source, destination):
        raise KeyboardInterrupt  # killed between writing and renaming

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 5


def test_damaged_checkpoint_is_reported(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="cannot be read"):
        load_checkpoint(path)
    atomic_torch_save({"format": "something else"}, path)
    with pytest.raises(RunError, match="not a mono_depth_ros training checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "mode, has_odometry, has_pose",
    [("stereo", False, False), ("mono", True, True), ("mono", False, True)],
)
def test_exported_model_loads_with_the_right_metadata(recording, tmp_path, mode, has_odometry, has_pose):
    train_ds, val_ds = make_datasets(recording, odometry=has_odometry)
    config = tiny_config(mode, **{"optim.max_steps": 1})
    lines = []
    result = train(config, tmp_path, datasets=(train_ds, val_ds, report(has_odometry)), log=lines.append)
    assert result.model_path == tmp_path / "model.safetensors"
    loaded = load_model_file(result.model_path)
    meta = loaded.metadata
    assert (meta.input_width, meta.input_height) == (64, 64)
    assert (meta.min_depth, meta.max_depth) == (0.1, 100.0)
    # One step (a fresh network's depth is still flat) proves no scale: never labelled metric, and the
    # file and the last line say why.
    assert meta.metric is False and meta.depth_scale == 1.0
    assert meta.training["metric_reason"] == "training did not converge"
    assert meta.training["converged"] is False and meta.training["problems"]
    assert "NOT metric: training did not converge" in lines[-1]
    assert meta.rectified_input is True
    assert meta.normalized_intrinsics == [0.7, 1.4, 0.51, 0.49]
    assert meta.has_pose is has_pose and (loaded.pose_net is not None) is has_pose
    assert meta.training["mode"] == mode and meta.training["steps"] == 1
    assert meta.training["velocity_supervision"] is (mode == "mono" and has_odometry)
    assert meta.training["pretrained"] is False
    trainer_weights = load_checkpoint(tmp_path / "checkpoints" / CHECKPOINT_NAME)["depth_net"]
    for key, value in loaded.depth_net.state_dict().items():
        assert torch.equal(value, trainer_weights[key])
    assert (tmp_path / "config.yaml").is_file()


def test_validation_reports_depth_metrics_and_tensorboard_gets_scalars_and_images(recording, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo", **{"optim.epochs": 1, "log.image_every": 1})
    result = train(config, tmp_path, datasets=(train_ds, val_ds, report()), log=quiet)
    assert len(result.validation) == 1
    val = result.validation[0]
    assert val["depth_images"] == 2
    for name in ("loss", "photometric", "abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"):
        assert np.isfinite(val[name]), name
    assert val["scale"] == 1.0  # stereo is metric: no median scaling
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/total", "train/photometric", "train/lr_consistency", "train/lr", "train/images_per_s", "val/loss", "val/abs_rel"} <= scalars
    images = set(events.Tags()["images"])
    assert {"train/depth", "train/target", "train/reconstruction_from_stereo", "val/depth", "val/depth_gt"} <= images
    assert len(events.Scalars("train/total")) == 3


def test_validation_median_scales_non_metric_models(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording, odometry=False)
    trainer = Trainer(tiny_config("mono"), train_ds, val_ds, tmp_path, report=report(has_odometry=False), log=quiet)
    assert not trainer.is_metric()
    metrics = trainer.validate()
    assert metrics["depth_images"] == 2 and metrics["scale"] != 1.0


def test_offline_pretrained_weights_fall_back_to_random_initialisation(recording, tmp_path, monkeypatch):
    def unavailable(num_layers, pretrained):
        if pretrained:
            raise networks.PretrainedWeightsUnavailable("no network")
        return encoders.torchvision.models.resnet18(weights=None)

    monkeypatch.setattr(encoders, "_build_resnet", unavailable)  # where ResnetEncoder looks it up
    messages = []
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo", **{"model.encoder": "resnet", "model.pretrained": "true", "optim.max_steps": 1})
    result = train(config, tmp_path, datasets=(train_ds, val_ds, report()), log=messages.append)
    assert any("WARNING" in message and "random weights" in message for message in messages)
    assert load_model_file(result.model_path).metadata.training["pretrained"] is False


def test_samples_missing_what_the_mode_needs_are_refused(recording, tmp_path):
    class MonoOnly(RecordingDataset):
        def __getitem__(self, index):
            sample = super().__getitem__(index)
            del sample["stereo"], sample["stereo_aug"]
            return sample

    with pytest.raises(RunError, match="lack stereo, stereo_aug"):
        Trainer(tiny_config("stereo"), MonoOnly(recording, range(1, 7)), None, tmp_path, log=quiet)


def test_a_training_split_smaller_than_a_batch_is_refused(recording, tmp_path):
    train_ds = RecordingDataset(recording, range(1, 2))
    with pytest.raises(RunError, match="fewer than optim.batch_size=2"):
        Trainer(tiny_config("stereo"), train_ds, None, tmp_path, log=quiet)


@pytest.mark.slow
def test_onecycle_schedule_warms_up_then_anneals_per_step(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo", **{"optim.schedule": "onecycle", "optim.max_steps": 8, "optim.epochs": 10,
                                         "optim.warmup_fraction": 0.25})
    trainer = Trainer(config, train_ds, val_ds, tmp_path, report=report(), log=quiet)
    batch = torch.utils.data.default_collate([train_ds[0], train_ds[1]])
    rates = []
    for _ in range(8):  # the learning rate each optimiser step used
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.train_step(batch)
        trainer.scheduler.step()
    # Starts at lr / 25, peaks at lr after the warm-up (2 of 8 steps), then falls (cosine) to lr / 25e4.
    assert rates[0] == pytest.approx(1e-3 / 25)
    assert rates[1] == pytest.approx(1e-3) == max(rates)
    assert all(a > b for a, b in zip(rates[1:], rates[2:]))
    assert rates[-1] == pytest.approx(1e-3 / 25e4, rel=1e-6)


@pytest.mark.slow
def test_checkpoints_from_before_a_setting_existed_resume_with_its_default(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    datasets = (train_ds, val_ds, report())
    config = tiny_config("stereo", **{"optim.max_steps": 1, "model.encoder": "resnet"})  # (schedule: step)
    train(config, tmp_path, datasets=datasets, log=quiet)
    path = tmp_path / "checkpoints" / CHECKPOINT_NAME
    state = load_checkpoint(path)
    del state["config"]["model"]["encoder"], state["config"]["optim"]["schedule"]  # as an older version wrote it
    atomic_torch_save(state, path)
    resumed = train(apply_overrides(config, ["optim.max_steps=2"]), tmp_path, datasets=datasets, resume=True, log=quiet)
    assert resumed.step == 2
    with pytest.raises(ConfigError, match=r"optim.schedule \(checkpoint 'step', now 'onecycle'\)"):
        train(apply_overrides(config, ["optim.max_steps=3", "optim.schedule=onecycle"]), tmp_path,
              datasets=datasets, resume=True, log=quiet)


def test_initial_depth_makes_a_fresh_network_predict_that_depth(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo", **{"model.initial_depth": 12.0, "model.min_depth": 0.1, "model.max_depth": 100.0})
    trainer = Trainer(config, train_ds, val_ds, tmp_path, report=report(), log=quiet)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        outputs = trainer.depth_net(image)
    fraction = (1 / 12.0 - 0.01) / (10.0 - 0.01)
    for scale, sigmoid in outputs.items():
        head = trainer.depth_net.decoder.disparity_heads[str(scale)].conv
        assert torch.allclose(head.bias, torch.tensor(math.log(fraction / (1 - fraction))))
        # The bias sets the starting point; the random weights still vary it per pixel.
        depth = 1.0 / (0.01 + (10.0 - 0.01) * sigmoid)
        assert 6.0 < float(depth.median()) < 24.0, scale
    plain = Trainer(tiny_config("stereo", **{"model.initial_depth": 0.0}), train_ds, val_ds, tmp_path / "plain",
                    report=report(), log=quiet)
    with torch.no_grad():
        sigmoid = plain.depth_net(image)[0]
    assert float((1.0 / (0.01 + 9.99 * sigmoid)).median()) < 0.5  # Monodepth2's start: about 2 * min_depth
    derived = Trainer(tiny_config("stereo"), train_ds, val_ds, tmp_path / "derived", report=report(), log=quiet)
    expected = float(recording.K[0, 0]) / 64 * BASELINE / 0.03  # mono_depth_ros_training.scale: 3 % of the width
    assert derived.initial_depth == pytest.approx(expected) and "stereo baseline" in derived.initial_depth_origin
    with torch.no_grad():
        sigmoid = derived.depth_net(image)[0]
    assert float((1.0 / (0.01 + 9.99 * sigmoid)).median()) == pytest.approx(expected, rel=0.3)
    from mono_depth_ros_training.config import validate_config

    with pytest.raises(ConfigError, match="model.initial_depth is 500"):
        validate_config(tiny_config("stereo", **{"model.initial_depth": 500.0}))


def test_mono_without_odometry_warps_at_a_nominal_step_and_starts_at_its_depth(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording, odometry=False)
    trainer = Trainer(tiny_config("mono"), train_ds, val_ds, tmp_path / "constant", report=report(has_odometry=False),
                      log=quiet)
    fx_over_width = float(recording.K[0, 0]) / 64
    assert trainer.use_constant_speed and not trainer.use_odometry_distance
    assert trainer.initial_depth == pytest.approx(10.0) and "nominal camera step" in trainer.initial_depth_origin
    assert trainer.nominal_step == pytest.approx(10.0 * 0.03 / fx_over_width)
    warps = []
    original = objective_module.temporal_transforms

    def record(axis_angle, translation):
        warps.append(translation.detach().clone())
        return original(axis_angle, translation)

    with mock.patch.object(objective_module, "temporal_transforms", record):
        output = trainer.compute_losses(next(iter(torch.utils.data.DataLoader(train_ds, batch_size=2))), training=True)
    assert torch.allclose(warps[0].norm(dim=1), torch.full((warps[0].shape[0],), trainer.nominal_step), rtol=1e-5)
    # The pose network is taught the nominal step too (its translations stay in the depth's units):
    # a fresh network's translation is ~0, so the velocity loss is about the step itself.
    assert float(output.parts["velocity"]) == pytest.approx(trainer.nominal_step, rel=0.05)
    # Switched off: the pose network's own (tiny, fresh) translation, and Monodepth2's start.
    free = Trainer(tiny_config("mono", **{"loss.constant_speed": False}), train_ds, val_ds, tmp_path / "free",
                   report=report(has_odometry=False), log=quiet)
    assert not free.use_constant_speed and free.initial_depth == 0.0
    # With odometry the odometry's distance wins.
    with_odometry = Trainer(tiny_config("mono"), *make_datasets(recording), tmp_path / "odom", report=report(),
                            log=quiet)
    assert with_odometry.use_odometry_distance and not with_odometry.use_constant_speed


@pytest.mark.slow
def test_a_forced_degenerate_network_is_reported_and_never_labelled_metric(recording, tmp_path):
    """Depth pinned at model.min_depth everywhere (saturated sigmoid: no gradient, so it stays)."""
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo", **{"optim.epochs": 10, "optim.max_steps": 24, "optim.lr": 1e-6})
    lines = []
    trainer = Trainer(config, train_ds, val_ds, tmp_path, report=report(), log=lines.append)
    with torch.no_grad():
        for head in trainer.depth_net.decoder.disparity_heads.values():
            head.conv.weight.zero_()
            head.conv.bias.fill_(30.0)
    result = trainer.fit()
    assert not result.converged and not result.metric
    assert any("saturated" in problem for problem in result.problems)
    assert any("no better than the unwarped" in problem for problem in result.problems)
    assert any(line.startswith("WARNING: step 20: training is collapsing") for line in lines)
    meta = load_model_file(result.model_path).metadata
    assert meta.metric is False and meta.training["converged"] is False
    assert meta.training["metric_reason"] == "training did not converge"
    text = final_lines(result, "stereo")
    assert text[0].startswith("training did not converge: ") and text[1].startswith("try: ")
    assert "NOT metric: training did not converge" in text[-1]


@pytest.mark.slow
def test_a_short_run_learns_to_explain_the_other_view_better_than_not_warping(recording, tmp_path):
    train_ds, val_ds = make_datasets(recording)
    config = tiny_config("stereo", **{"optim.epochs": 8, "optim.schedule": "onecycle", "optim.lr": 1e-3})
    trainer = Trainer(config, train_ds, val_ds, tmp_path, report=report(), log=quiet)
    before = trainer.validate()
    result = trainer.fit()
    after = result.validation[-1]
    assert after["photometric"] < 0.9 * before["photometric"], (before, after)  # held-out error fell
    assert after["identity_ratio"] < 0.8  # the warped right image beats the unwarped one clearly
    assert "scale_stereo_ratio" in after and "scale_stereo_passed" in after
