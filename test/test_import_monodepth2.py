"""import_monodepth2: Monodepth2's saved weights give the same network outputs in our model file.

The Monodepth2 side is rebuilt here from its published description, independently of
mono_depth_ros.networks: state dicts with exactly the key names and shapes Monodepth2's trainer
saves (a torchvision ResNet under ``encoder.``, decoder convolutions ``decoder.0`` ... ``decoder.13``,
pose decoder ``net.0`` ... ``net.3``), and a minimal forward of its decoders. With a local checkout
of nianticlabs/monodepth2 in MONODEPTH2_CHECKOUT, one more test runs its own networks.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from mono_depth_ros.tools.import_monodepth2 import (
    LICENCE,
    Monodepth2ImportError,
    convert_monodepth2,
    import_monodepth2,
    main,
    resnet_depth,
)
from mono_depth_ros.inference import DepthEstimator
from mono_depth_ros.model_file import load_model_file

from helpers import CreatesFileWhenUnpickled, plausible_weights  # test/ is on sys.path

HEIGHT, WIDTH = 64, 128  # small, multiples of 32 as Monodepth2 requires
DECODER_CHANNELS = [16, 32, 64, 128, 256]  # Monodepth2's num_ch_dec
TOLERANCE = 1e-5  # max |disparity difference|, the bound

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- Monodepth2's layout, rebuilt -----------------------------------------------------------------
class Conv3x3(nn.Module):
    """Reflection pad 1 + 3x3 convolution, stored as .pad / .conv like Monodepth2's Conv3x3."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x):
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 + ELU, stored as .conv like Monodepth2's ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)

    def forward(self, x):
        return F.elu(self.conv(x))


class ReferenceDepthDecoder(nn.Module):
    """Monodepth2's DepthDecoder: its modules in creation order in one ModuleList named ``decoder``."""

    def __init__(self, encoder_channels: List[int]):
        super().__init__()
        blocks = []
        for level in range(4, -1, -1):
            in_channels = encoder_channels[-1] if level == 4 else DECODER_CHANNELS[level + 1]
            blocks.append(ConvBlock(in_channels, DECODER_CHANNELS[level]))  # upconv (level, 0)
            skip = encoder_channels[level - 1] if level > 0 else 0
            blocks.append(ConvBlock(DECODER_CHANNELS[level] + skip, DECODER_CHANNELS[level]))  # upconv (level, 1)
        blocks += [Conv3x3(DECODER_CHANNELS[scale], 1) for scale in range(4)]  # dispconv 0..3
        self.decoder = nn.ModuleList(blocks)

    def forward(self, features: List[torch.Tensor]) -> Dict[int, torch.Tensor]:
        disparities = {}
        x = features[-1]
        for step, level in enumerate(range(4, -1, -1)):
            x = F.interpolate(self.decoder[2 * step](x), scale_factor=2, mode="nearest")
            if level > 0:
                x = torch.cat([x, features[level - 1]], 1)
            x = self.decoder[2 * step + 1](x)
            if level < 4:
                disparities[level] = torch.sigmoid(self.decoder[10 + level](x))
        return disparities


class ReferencePoseDecoder(nn.Module):
    """Monodepth2's PoseDecoder(num_input_features=1, num_frames_to_predict_for=2): ModuleList ``net``."""

    def __init__(self, encoder_channels: int):
        super().__init__()
        self.net = nn.ModuleList([
            nn.Conv2d(encoder_channels, 256, 1),
            nn.Conv2d(256, 256, 3, 1, 1),
            nn.Conv2d(256, 256, 3, 1, 1),
            nn.Conv2d(256, 12, 1),
        ])

    def forward(self, bottleneck: torch.Tensor):
        x = F.relu(self.net[0](bottleneck))
        x = F.relu(self.net[1](x))
        x = F.relu(self.net[2](x))
        x = 0.01 * self.net[3](x).mean(3).mean(2).view(-1, 2, 1, 6)
        return x[..., :3], x[..., 3:]  # Monodepth2's trainer uses pose [:, 0]


def reference_resnet(num_layers: int, input_images: int = 1) -> torchvision.models.ResNet:
    """torchvision's ResNet as Monodepth2 uses it; weights uninitialised (plausible_weights sets them)."""
    with torch.device("meta"):  # skips torchvision's own initialisation, which would be overwritten
        resnet = getattr(torchvision.models, f"resnet{num_layers}")(weights=None)
        if input_images > 1:
            resnet.conv1 = nn.Conv2d(3 * input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
    resnet = resnet.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in resnet.state_dict().values():
            tensor.zero_()
    for norm in resnet.modules():
        if isinstance(norm, nn.BatchNorm2d):
            norm.reset_parameters()
    return resnet


def resnet_features(resnet: torchvision.models.ResNet, image: torch.Tensor) -> List[torch.Tensor]:
    """Monodepth2's ResnetEncoder.forward: normalise with 0.45 / 0.225, then the 5 stages."""
    x = resnet.relu(resnet.bn1(resnet.conv1((image - 0.45) / 0.225)))
    features = [x]
    x = resnet.layer1(resnet.maxpool(x))
    features.append(x)
    for stage in (resnet.layer2, resnet.layer3, resnet.layer4):
        x = stage(x)
        features.append(x)
    return features


def encoder_state(resnet: nn.Module) -> Dict[str, object]:
    """As Monodepth2's ResnetEncoder.state_dict(): the whole torchvision ResNet (fc too) under ``encoder.``."""
    return {f"encoder.{key}": value for key, value in resnet.state_dict().items()}


def scene(batch: int, seed: int) -> torch.Tensor:
    """Smooth, textured images in [0, 1] (B, 3, HEIGHT, WIDTH), more like camera images than noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((batch, 3, HEIGHT // 8, WIDTH // 8), generator=generator)
    smooth = F.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
    return (0.8 * smooth + 0.2 * torch.rand((batch, 3, HEIGHT, WIDTH), generator=generator)).clamp(0, 1)


class Monodepth2Folder:
    """A folder written as Monodepth2's trainer saves a model, plus the networks that wrote it."""

    def __init__(self, path: Path, num_layers: int, use_stereo: bool, pose: bool, seed: int = 0):
        self.path, self.num_layers, self.use_stereo = path, num_layers, use_stereo
        path.mkdir(parents=True, exist_ok=True)
        self.resnet = reference_resnet(num_layers)
        plausible_weights(self.resnet, seed)
        channels = [64, 256, 512, 1024, 2048] if num_layers >= 50 else [64, 64, 128, 256, 512]
        self.decoder = ReferenceDepthDecoder(channels)
        plausible_weights(self.decoder, seed + 1)
        encoder = encoder_state(self.resnet)
        encoder.update(height=HEIGHT, width=WIDTH, use_stereo=use_stereo)
        torch.save(encoder, path / "encoder.pth")
        torch.save(self.decoder.state_dict(), path / "depth.pth")
        if pose:
            self.pose_resnet = reference_resnet(num_layers, input_images=2)
            plausible_weights(self.pose_resnet, seed + 2, input_channels=6)
            self.pose_decoder = ReferencePoseDecoder(channels[-1])
            plausible_weights(self.pose_decoder, seed + 3)
            torch.save(encoder_state(self.pose_resnet), path / "pose_encoder.pth")
            torch.save(self.pose_decoder.state_dict(), path / "pose.pth")

    @torch.no_grad()
    def disparities(self, image: torch.Tensor) -> Dict[int, torch.Tensor]:
        return self.decoder(resnet_features(self.resnet, image))

    @torch.no_grad()
    def pose(self, earlier: torch.Tensor, later: torch.Tensor):
        axis_angle, translation = self.pose_decoder(resnet_features(self.pose_resnet, torch.cat([earlier, later], 1))[-1])
        return axis_angle[:, 0, 0], translation[:, 0, 0]


@pytest.fixture(scope="module")
def stereo18(tmp_path_factory):
    return Monodepth2Folder(tmp_path_factory.mktemp("md2") / "stereo_18", 18, use_stereo=True, pose=True)


@pytest.fixture(scope="module")
def imported18(stereo18, tmp_path_factory):
    return load_model_file(import_monodepth2(stereo18.path, tmp_path_factory.mktemp("out") / "m.safetensors"))


def test_reference_layout_is_monodepth2s(stereo18):
    """The state dicts carry Monodepth2's key names and shapes (from its networks/*.py)."""
    depth = torch.load(stereo18.path / "depth.pth", weights_only=True)
    assert len(depth) == 28 and depth["decoder.0.conv.conv.weight"].shape == (256, 512, 3, 3)
    assert depth["decoder.9.conv.conv.weight"].shape == (16, 16, 3, 3)  # level 0 after upsampling: no skip
    assert depth["decoder.10.conv.weight"].shape == (1, 16, 3, 3)  # dispconv scale 0
    assert depth["decoder.13.conv.weight"].shape == (1, 128, 3, 3)  # dispconv scale 3
    encoder = torch.load(stereo18.path / "encoder.pth", weights_only=True)
    assert encoder["encoder.layer1.0.conv1.weight"].shape == (64, 64, 3, 3) and "encoder.fc.weight" in encoder
    assert (encoder["height"], encoder["width"], encoder["use_stereo"]) == (HEIGHT, WIDTH, True)
    pose = torch.load(stereo18.path / "pose.pth", weights_only=True)
    assert sorted(pose) == [f"net.{i}.{kind}" for i in range(4) for kind in ("bias", "weight")]
    assert pose["net.3.weight"].shape == (12, 256, 1, 1)
    pose_encoder = torch.load(stereo18.path / "pose_encoder.pth", weights_only=True)
    assert pose_encoder["encoder.conv1.weight"].shape == (64, 6, 7, 7)


def check_same_disparities(folder: Monodepth2Folder, depth_net: nn.Module) -> None:
    noise = torch.rand((1, 3, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(6))
    for seed, image in enumerate([scene(1, seed=5), noise]):
        expected = folder.disparities(image)
        with torch.no_grad():
            actual = depth_net(image)
        assert sorted(actual) == [0, 1, 2, 3]
        for scale in range(4):
            assert actual[scale].shape == expected[scale].shape == (1, 1, HEIGHT >> scale, WIDTH >> scale)
            difference = (actual[scale] - expected[scale]).abs().max().item()
            assert difference < TOLERANCE, f"scale {scale}, image {seed}: {difference}"
        # Not a trivial agreement of saturated sigmoids: the disparities vary across the image.
        assert expected[0].std().item() > 0.02


def test_depth_network_matches_monodepth2_at_every_scale(stereo18, imported18):
    assert imported18.metadata.num_layers == 18
    check_same_disparities(stereo18, imported18.depth_net)


@pytest.mark.slow
def test_resnet50_mono_model(tmp_path):
    """Bottleneck blocks (4x the channels) map too; a mono-trained model is not metric."""
    folder = Monodepth2Folder(tmp_path / "mono_50", 50, use_stereo=False, pose=False, seed=10)
    metadata, depth_net, pose_net = convert_monodepth2(folder.path)  # what import_monodepth2 saves
    assert (metadata.num_layers, metadata.metric, metadata.depth_scale) == (50, False, 1.0)
    assert metadata.training["trained_with"] == "monocular video"
    assert pose_net is None
    check_same_disparities(folder, depth_net)


def test_metadata_of_a_stereo_model(stereo18, imported18):
    meta = imported18.metadata
    assert (meta.input_width, meta.input_height) == (WIDTH, HEIGHT)  # from encoder.pth
    assert meta.metric is True and meta.depth_scale == 5.4
    assert (meta.min_depth, meta.max_depth) == (0.1, 100.0)
    assert meta.encoder == "resnet" and meta.has_pose
    assert meta.normalized_intrinsics == [0.58, 1.92, 0.5, 0.5] and meta.rectified_input
    training = meta.training
    assert training["source"] == "monodepth2" and training["licence"] == LICENCE
    assert "non-commercial" in LICENCE and "Niantic" in LICENCE
    assert training["trained_with"] == "stereo"
    assert sorted(training["files"]) == ["depth.pth", "encoder.pth", "pose.pth", "pose_encoder.pth"]
    assert all(len(digest) == 64 for digest in training["files"].values())


def test_metric_depth_is_monodepth2s_disp_to_depth_times_5_4(stereo18, imported18):
    """The node's depth equals Monodepth2's disp_to_depth(disp, 0.1, 100) * 5.4 (its stereo scale)."""
    image = scene(1, seed=7)
    disparity = stereo18.disparities(image)[0]
    estimator = DepthEstimator(imported18, torch.device("cpu"))
    depth = estimator.disparity_to_metric_depth(disparity, HEIGHT, WIDTH)
    min_disp, max_disp = 1 / 100.0, 1 / 0.1
    expected = 5.4 / (min_disp + (max_disp - min_disp) * disparity[0, 0].double().numpy())
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    # And from the image, through the node's whole path (batch norms folded, fast CPU path).
    rgb = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    quantised = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    expected_from_image = 5.4 / (min_disp + (max_disp - min_disp) * stereo18.disparities(quantised)[0][0, 0].double().numpy())
    np.testing.assert_allclose(estimator.predict(rgb), expected_from_image, rtol=1e-3)


def test_pose_network_matches_monodepth2(stereo18, imported18):
    generator = torch.Generator().manual_seed(8)
    earlier, later = scene(2, seed=9), torch.rand((2, 3, HEIGHT, WIDTH), generator=generator)
    expected_rotation, expected_translation = stereo18.pose(earlier, later)
    with torch.no_grad():
        rotation, translation = imported18.pose_net(earlier, later)
    assert rotation.shape == translation.shape == (2, 3)
    assert expected_translation.abs().max() > 1e-3  # a real signal, not zeros
    torch.testing.assert_close(rotation, expected_rotation, rtol=0, atol=1e-6)
    torch.testing.assert_close(translation, expected_translation, rtol=0, atol=1e-6)


def test_no_pose_leaves_the_pose_network_out(stereo18, tmp_path):
    model = load_model_file(import_monodepth2(stereo18.path, tmp_path / "m.safetensors", include_pose=False))
    assert model.pose_net is None and not model.metadata.has_pose
    assert sorted(model.metadata.training["files"]) == ["depth.pth", "encoder.pth"]


@pytest.mark.parametrize("name, depth", [("resnet18", 18), ("resnet34", 34), ("resnet50", 50)])
def test_resnet_depth_is_read_from_the_weights(name, depth):
    with torch.device("meta"):  # key names only: no memory, no time
        keys = getattr(torchvision.models, name)(weights=None).state_dict()
    assert resnet_depth({f"encoder.{key}": value for key, value in keys.items()}, Path("encoder.pth")) == depth


def test_unsupported_resnets_are_named():
    with torch.device("meta"):
        keys = torchvision.models.resnet101(weights=None).state_dict()
    with pytest.raises(Monodepth2ImportError, match=r"ResNet-101 encoder; this package runs ResNet-18, -34, -50"):
        resnet_depth({f"encoder.{key}": value for key, value in keys.items()}, Path("encoder.pth"))
    with pytest.raises(Monodepth2ImportError, match=r"not a ResNet encoder saved by Monodepth2"):
        resnet_depth({"conv1.weight": torch.zeros(1)}, Path("encoder.pth"))


# ---- errors --------------------------------------------------------------------------------------
def copy_folder(source: Path, target: Path, skip=()) -> Path:
    target.mkdir()
    for path in source.iterdir():
        if path.name not in skip:
            (target / path.name).symlink_to(path)
    return target


def test_missing_folder_and_files(stereo18, tmp_path):
    with pytest.raises(Monodepth2ImportError, match=r"is not a folder; give the folder that holds"):
        import_monodepth2(tmp_path / "absent", tmp_path / "m.safetensors")
    folder = copy_folder(stereo18.path, tmp_path / "no_depth", skip={"depth.pth"})
    with pytest.raises(Monodepth2ImportError, match=r"has no depth.pth; a Monodepth2 model folder holds"):
        import_monodepth2(folder, tmp_path / "m.safetensors")
    folder = copy_folder(stereo18.path, tmp_path / "half_pose", skip={"pose.pth"})
    with pytest.raises(Monodepth2ImportError, match=r"has pose_encoder.pth but no pose.pth.*--no-pose"):
        import_monodepth2(folder, tmp_path / "m.safetensors")
    assert import_monodepth2(folder, tmp_path / "m.safetensors", include_pose=False).exists()
    with pytest.raises(Monodepth2ImportError, match=r"must end in .safetensors"):
        import_monodepth2(stereo18.path, tmp_path / "m.onnx")
    assert not list(tmp_path.glob("*.onnx"))


def test_a_monocular_model_cannot_be_made_metric(tmp_path):
    folder = tmp_path / "mono"
    folder.mkdir()
    resnet = reference_resnet(18)
    torch.save(dict(encoder_state(resnet), height=HEIGHT, width=WIDTH, use_stereo=False), folder / "encoder.pth")
    torch.save(ReferenceDepthDecoder([64, 64, 128, 256, 512]).state_dict(), folder / "depth.pth")
    with pytest.raises(Monodepth2ImportError, match=r"use_stereo false: the model was trained on monocular video.*depth_scale"):
        import_monodepth2(folder, tmp_path / "m.safetensors", metric_scale=5.4)
    model = load_model_file(import_monodepth2(folder, tmp_path / "m.safetensors"))
    assert not model.metadata.metric and model.metadata.depth_scale == 1.0


def write_pair(folder: Path, encoder: Dict[str, object], depth: Dict[str, object]) -> Path:
    folder.mkdir()
    torch.save(encoder, folder / "encoder.pth")
    torch.save(depth, folder / "depth.pth")
    return folder


@pytest.fixture(scope="module")
def small_states():
    """A ResNet-18 encoder.pth and depth.pth content with default weights (for the error cases)."""
    encoder = dict(encoder_state(reference_resnet(18)), height=HEIGHT, width=WIDTH, use_stereo=True)
    return encoder, ReferenceDepthDecoder([64, 64, 128, 256, 512]).state_dict()


def test_wrong_shapes_and_keys_say_what_differs(small_states, tmp_path):
    encoder, depth = small_states
    resnet50_decoder = ReferenceDepthDecoder([64, 256, 512, 1024, 2048]).state_dict()
    folder = write_pair(tmp_path / "mixed", encoder, resnet50_decoder)
    with pytest.raises(Monodepth2ImportError, match=r"of another shape \(e.g. decoder.0.conv.conv.weight: file "
                                                    r"\(256, 2048, 3, 3\) vs network \(256, 512, 3, 3\)"):
        import_monodepth2(folder, tmp_path / "m.safetensors")
    renamed = {key.replace("decoder.13.", "decoder.14."): value for key, value in depth.items()}
    folder = write_pair(tmp_path / "renamed", encoder, renamed)
    with pytest.raises(Monodepth2ImportError, match=r"2 missing \(e.g. ours decoder.disparity_heads.3.conv.bias.*"
                                                    r"2 unexpected \(e.g. decoder.14.conv.bias"):
        import_monodepth2(folder, tmp_path / "m.safetensors")


def test_settings_must_be_in_encoder_pth(small_states, tmp_path):
    encoder, depth = small_states
    without = {key: value for key, value in encoder.items() if key not in ("height", "use_stereo")}
    folder = write_pair(tmp_path / "no_settings", without, depth)
    with pytest.raises(Monodepth2ImportError, match=r"encoder.pth lacks height, use_stereo: Monodepth2's trainer stores"):
        import_monodepth2(folder, tmp_path / "m.safetensors")
    folder = write_pair(tmp_path / "odd_size", dict(encoder, width=100), depth)
    with pytest.raises(Monodepth2ImportError, match=r"width is 100, must be a positive multiple of 32"):
        import_monodepth2(folder, tmp_path / "m.safetensors")


class NotATensor:
    """A class in a pickle: loading it would mean running code, which weights_only refuses."""


def test_pickled_code_is_refused_never_run(small_states, tmp_path):
    encoder, _ = small_states
    folder = write_pair(tmp_path / "code", encoder, {"decoder.0.conv.conv.weight": NotATensor()})
    with pytest.raises(Monodepth2ImportError, match=r"depth.pth is not a checkpoint of tensors and plain values, so "
                                                    r"it is not loaded: unpickling it would call test_import_monodepth2.NotATensor"):
        import_monodepth2(folder, tmp_path / "m.safetensors")
    (folder / "depth.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(Monodepth2ImportError, match=r"depth.pth is not a checkpoint of tensors and plain values"):
        import_monodepth2(folder, tmp_path / "m.safetensors")
    torch.save([torch.zeros(1)], folder / "depth.pth")
    with pytest.raises(Monodepth2ImportError, match=r"depth.pth holds a list, expected a state dict"):
        import_monodepth2(folder, tmp_path / "m.safetensors")


@pytest.mark.parametrize("container", ["torch.save", "pickle protocol 2"])
def test_pth_that_would_run_code_is_refused_naming_the_call_without_advice(small_states, tmp_path, container):
    encoder, depth = small_states
    marker = tmp_path / "pwned"
    folder = write_pair(tmp_path / "code", encoder, depth)
    payload = dict(depth, **{"decoder.0.conv.conv.weight": CreatesFileWhenUnpickled(marker)})
    if container == "torch.save":
        torch.save(payload, folder / "depth.pth")
    else:
        (folder / "depth.pth").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(Monodepth2ImportError) as caught:
        import_monodepth2(folder, tmp_path / "m.safetensors")
    message = str(caught.value)
    assert not marker.exists()
    assert message.startswith(f"{folder / 'depth.pth'} is not a checkpoint of tensors and plain values, so it is "
                              "not loaded: unpickling it would call io.open, i.e. run code from the file")
    assert "download the model folder again" in message
    assert "weights_only=False" not in message and "`weights_only`" not in message
    assert "unsafe" not in message.lower() and "safe_globals" not in message and "trust the source" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no torch text in a traceback
    assert not (tmp_path / "m.safetensors").exists()


def test_pose_encoder_of_another_depth_is_refused(small_states, tmp_path):
    encoder, depth = small_states
    folder = write_pair(tmp_path / "pose34", encoder, depth)
    torch.save(encoder_state(reference_resnet(34, input_images=2)), folder / "pose_encoder.pth")
    torch.save(ReferencePoseDecoder(512).state_dict(), folder / "pose.pth")
    with pytest.raises(Monodepth2ImportError, match=r"pose_encoder.pth is a ResNet-34 but the depth encoder is a "
                                                    r"ResNet-18.*--no-pose"):
        import_monodepth2(folder, tmp_path / "m.safetensors")


def test_command_line(stereo18, tmp_path, capsys):
    out = tmp_path / "imported.safetensors"
    assert main([str(stereo18.path), str(out), "--metric-scale", "5.0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(out)
    assert f"ResNet-18, {WIDTH}x{HEIGHT}, trained with stereo: metric, depth_scale 5; pose network: yes" in printed
    assert any("non-commercial" in line for line in printed)
    assert load_model_file(out).metadata.depth_scale == 5.0
    assert main([str(tmp_path / "absent"), str(out)]) == 2
    assert "import_monodepth2: error:" in capsys.readouterr().err


# ---- against Monodepth2's own code, when a checkout is at hand -------------------------------------
@contextlib.contextmanager
def monodepth2_modules(checkout: Path):
    """Import the checkout's ``networks`` and ``layers`` for this block only.

    Its encoder calls torchvision's builders with ``pretrained`` positionally, which torchvision
    >= 0.13 refuses: for the block, those builders take it (random weights only).
    """
    builders = {name: getattr(torchvision.models, name) for name in ("resnet18", "resnet34", "resnet50")}

    def legacy(builder):
        def build(*args, **kwargs):
            if args:
                assert args == (False,), "the test uses random weights"
                kwargs.setdefault("weights", None)
            return builder(**kwargs)
        return build

    saved = {name: module for name, module in sys.modules.items() if name in ("networks", "layers")
             or name.startswith("networks.")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))
    for name, builder in builders.items():
        setattr(torchvision.models, name, legacy(builder))
    try:
        import layers
        import networks

        yield networks, layers
    finally:
        for name, builder in builders.items():
            setattr(torchvision.models, name, builder)
        sys.path.remove(str(checkout))
        for name in [name for name in sys.modules if name in ("networks", "layers") or name.startswith("networks.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def test_against_monodepth2s_own_networks(tmp_path):
    checkout = os.environ.get("MONODEPTH2_CHECKOUT", "")
    if not checkout or not (Path(checkout) / "networks" / "depth_decoder.py").is_file():
        pytest.skip("set MONODEPTH2_CHECKOUT to a checkout of nianticlabs/monodepth2 to compare with its own code")
    with monodepth2_modules(Path(checkout)) as (networks, layers):
        encoder = networks.ResnetEncoder(18, False)
        decoder = networks.DepthDecoder(encoder.num_ch_enc, range(4))
        pose_encoder = networks.ResnetEncoder(18, False, num_input_images=2)
        pose_decoder = networks.PoseDecoder(pose_encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
        disp_to_depth = layers.disp_to_depth
    for seed, (module, channels) in enumerate([(encoder, 3), (decoder, 3), (pose_encoder, 6), (pose_decoder, 3)]):
        plausible_weights(module, 20 + seed, channels)
    # Saved as Monodepth2's Trainer.save_model does.
    folder = tmp_path / "weights_19"
    folder.mkdir()
    state = encoder.state_dict()
    state.update(height=HEIGHT, width=WIDTH, use_stereo=True)
    torch.save(state, folder / "encoder.pth")
    torch.save(decoder.state_dict(), folder / "depth.pth")
    torch.save(pose_encoder.state_dict(), folder / "pose_encoder.pth")
    torch.save(pose_decoder.state_dict(), folder / "pose.pth")
    model = load_model_file(import_monodepth2(folder, tmp_path / "m.safetensors"))

    image = scene(2, seed=21)
    with torch.no_grad():
        theirs, ours = decoder(encoder(image)), model.depth_net(image)
    for scale in range(4):
        assert (ours[scale] - theirs[("disp", scale)]).abs().max().item() < TOLERANCE, scale
    _, depth = disp_to_depth(theirs[("disp", 0)][:1], 0.1, 100)
    estimator = DepthEstimator(model, torch.device("cpu"))
    np.testing.assert_allclose(estimator.disparity_to_metric_depth(theirs[("disp", 0)][:1], HEIGHT, WIDTH),
                               5.4 * depth[0, 0].numpy(), rtol=1e-5)
    earlier, later = scene(2, seed=22), scene(2, seed=23)
    with torch.no_grad():
        axis_angle, translation = pose_decoder([pose_encoder(torch.cat([earlier, later], 1))])
        our_axis_angle, our_translation = model.pose_net(earlier, later)
    torch.testing.assert_close(our_axis_angle, axis_angle[:, 0, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(our_translation, translation[:, 0, 0], rtol=0, atol=1e-6)
