"""export_onnx and the onnxruntime backend: same disparity and depth as PyTorch, metadata inside the file.

Models are small (128x64) with weights of a trained network's scale (see plausible_weights), so the
disparities span a wide range and agreement is not the trivial agreement of constant outputs.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mono_depth_ros.config import DepthNodeConfig
from mono_depth_ros.tools.export_onnx import DEFAULT_OPSET, OnnxExportError, export_onnx, main, sample_images
from mono_depth_ros.frame_pipeline import FramePipeline
from mono_depth_ros.inference import DepthEstimator
from mono_depth_ros.model_file import METADATA_KEY, ModelFileError, ModelMetadata, load_model_file, save_model_file
from mono_depth_ros.networks import DepthNet
from mono_depth_ros.inference import (
    EXPORT_INFO_KEY,
    OnnxDepthEstimator,
    OnnxModelError,
    load_estimator,
    read_onnx_metadata,
)
from helpers import plausible_weights  # noqa: E402  (test/ is on sys.path)

WIDTH, HEIGHT = 128, 64
TOLERANCE = 1e-4  # the bound: onnxruntime vs PyTorch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.lru_cache(maxsize=None)
def street_image(width: int, height: int) -> np.ndarray:
    """A rendered street scene (H, W, 3) uint8 RGB: buildings, cars, road, sky (read-only: cached)."""
    from mono_depth_ros.simulation import render_recording

    image = render_recording(num_frames=1, width=width, height=height, stereo=False, scene="street").images[0]
    image.setflags(write=False)
    return image


def model_file(directory: Path, encoder: str, seed: int) -> Path:
    torch.manual_seed(seed)
    net = DepthNet(18, encoder=encoder)
    plausible_weights(net, seed)
    metadata = ModelMetadata(encoder=encoder, input_width=WIDTH, input_height=HEIGHT, metric=True, depth_scale=2.0,
                             max_depth=50.0, training={"source": "test"})
    return save_model_file(directory / f"{encoder}.safetensors", metadata, net)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(encoder, dynamic batch) -> (model file, .onnx file), exported once per module."""
    pytest.importorskip("onnx", reason="onnx is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    directory = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(encoder: str, dynamic: bool):
        if (encoder, dynamic) not in cache:
            source = directory / f"{encoder}.safetensors"
            if not source.exists():
                model_file(directory, encoder, seed={"resnet": 3, "efficientnet_lite0": 4}[encoder])
            out = directory / f"{encoder}{'_dynamic' if dynamic else ''}.onnx"
            # The tests compare the outputs themselves (test_command_line covers the export's own check).
            export_onnx(source, out, dynamic_batch=dynamic, verify=False)
            cache[encoder, dynamic] = source, out
        return cache[encoder, dynamic]

    return get


@pytest.mark.parametrize("encoder, dynamic", [
    pytest.param("resnet", False, id="resnet-static"),
    pytest.param("resnet", True, id="resnet-dynamic", marks=pytest.mark.slow),  # another export each
    pytest.param("efficientnet_lite0", False, id="efficientnet_lite0-static"),
    pytest.param("efficientnet_lite0", True, id="efficientnet_lite0-dynamic", marks=pytest.mark.slow),
])
def test_onnxruntime_matches_pytorch(exported, encoder, dynamic):
    import onnxruntime

    source, onnx_path = exported(encoder, dynamic)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (image_input,), (output,) = session.get_inputs(), session.get_outputs()
    assert (image_input.name, output.name) == ("image", "disparity")
    assert image_input.shape == [("batch" if dynamic else 1), 3, HEIGHT, WIDTH]
    net = load_model_file(source).depth_net
    batch = 2 if dynamic else 1
    street = torch.from_numpy(street_image(WIDTH, HEIGHT).copy()).permute(2, 0, 1).float().div(255.0)
    images = dict(sample_images(WIDTH, HEIGHT, batch, seed=11), street=street[None].expand(batch, -1, -1, -1))
    for name, image in images.items():
        with torch.no_grad():
            expected = net(image, output_scales=(0,))[0].numpy()
        actual = session.run(None, {"image": np.ascontiguousarray(image.numpy())})[0]
        assert actual.shape == (batch, 1, HEIGHT, WIDTH)
        assert np.abs(actual - expected).max() < TOLERANCE, name
        assert expected.std() > 0.02, name  # disparities vary: a meaningful comparison
    if not dynamic:
        with pytest.raises(Exception, match=r"(?i)dimension|shape"):
            session.run(None, {"image": np.zeros((2, 3, HEIGHT, WIDTH), np.float32)})


def test_the_file_carries_the_model_metadata(exported):
    import onnx

    source, onnx_path = exported("resnet", False)
    proto = onnx.load(str(onnx_path))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    expected = json.loads(load_model_file(source).metadata.to_json())
    assert json.loads(props[METADATA_KEY]) == dict(expected, has_pose=False)
    info = json.loads(props[EXPORT_INFO_KEY])
    assert (info["opset"], info["dynamic_batch"], info["source"]) == (DEFAULT_OPSET, False, str(source))
    metadata = read_onnx_metadata(onnx_path)
    assert (metadata.input_width, metadata.input_height, metadata.depth_scale, metadata.max_depth) == (
        WIDTH, HEIGHT, 2.0, 50.0)


@pytest.mark.parametrize("encoder", ["resnet", "efficientnet_lite0"])
def test_graph_is_plain_onnx_for_tensorrt(exported, encoder):
    """Only operators TensorRT parses; reflection padding as Pad(mode=reflect) with constant pads."""
    import onnx

    proto = onnx.load(str(exported(encoder, False)[1]))
    onnx.checker.check_model(proto, full_check=True)
    assert [entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    operators = {node.op_type for node in proto.graph.node}
    assert operators <= {"Conv", "Relu", "Clip", "Elu", "Resize", "Concat", "Sigmoid", "Pad", "Add", "Sub", "Div",
                         "MaxPool", "Constant"}, operators
    assert "BatchNormalization" not in operators  # folded into the convolutions
    constants = {node.output[0] for node in proto.graph.node if node.op_type == "Constant"}
    constants |= {tensor.name for tensor in proto.graph.initializer}
    pads = [node for node in proto.graph.node if node.op_type == "Pad"]
    modes = [next(attr.s.decode() for attr in node.attribute if attr.name == "mode") for node in pads]
    assert modes.count("reflect") == 11  # 5 x 2 decoder convolutions + the scale-0 disparity head
    assert set(modes) == ({"reflect"} if encoder == "resnet" else {"reflect", "constant"})
    assert all(node.input[1] in constants for node in pads)


@pytest.mark.slow
def test_opset_choice(exported, tmp_path):
    import onnx

    source, _ = exported("resnet", False)
    result = export_onnx(source, tmp_path / "m13.onnx", opset=13)  # TensorRT 8.2 (JetPack 4.6) reads up to 13
    assert result.max_difference < TOLERANCE
    assert [e.version for e in onnx.load(str(result.path)).opset_import if e.domain in ("", "ai.onnx")] == [13]
    with pytest.raises(OnnxExportError, match=r"opset 10 is not supported: use 11-20"):
        export_onnx(source, tmp_path / "m10.onnx", opset=10)
    with pytest.raises(OnnxExportError, match=r"must end in .onnx"):
        export_onnx(source, tmp_path / "m.safetensors")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m13.onnx"]  # nothing half-written left


def test_an_export_that_does_not_reproduce_the_network_is_deleted(exported, tmp_path, monkeypatch):
    import mono_depth_ros.tools.export_onnx as export_module

    monkeypatch.setattr(export_module, "VERIFY_TOLERANCE", -1.0)  # any difference is now too large
    with pytest.raises(OnnxExportError, match=r"differs from PyTorch's by .* on the random image .* was deleted"):
        export_onnx(exported("resnet", False)[0], tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


# ---- the onnxruntime backend ---------------------------------------------------------------------
@pytest.mark.parametrize("width, height", [(333, 251), (640, 480)])
def test_onnx_backend_depth_equals_pytorch_backend(exported, width, height):
    source, onnx_path = exported("resnet", False)
    rgb = street_image(width, height)
    pytorch = DepthEstimator(load_model_file(source), torch.device("cpu"))
    onnx_estimator = OnnxDepthEstimator(onnx_path, "cpu")
    assert onnx_estimator.input_size == pytorch.input_size == (WIDTH, HEIGHT)
    expected = pytorch.predict(rgb, extra_scale=1.5)
    actual = onnx_estimator.predict(rgb, extra_scale=1.5)
    assert actual.shape == (height, width) and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-4)
    assert expected.max() > 2 * expected.min()  # a depth map with structure, not a constant
    assert onnx_estimator.times.forward > 0


def test_load_estimator_picks_the_backend_by_extension(exported):
    source, onnx_path = exported("resnet", False)
    pytorch = load_estimator(source, "cpu")
    assert isinstance(pytorch.estimator, DepthEstimator) and pytorch.backend == "PyTorch"
    assert pytorch.model is not None and pytorch.model.path == source  # e.g. for its pose network
    onnx_model = load_estimator(onnx_path, "cpu", threads=1)
    assert isinstance(onnx_model.estimator, OnnxDepthEstimator)
    assert onnx_model.backend == "onnxruntime (CPUExecutionProvider)" and onnx_model.device == "cpu"
    assert onnx_model.metadata == OnnxDepthEstimator(onnx_path).metadata
    assert onnx_model.warnings == [] and onnx_model.model is None


def test_cuda_and_half_requests_without_them_warn(exported):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback cannot be seen")
    onnx_model = load_estimator(exported("resnet", False)[1], "cuda:1", half=True)
    assert onnx_model.device == "cpu"
    text = "\n".join(onnx_model.warnings)
    assert "device 'cuda:1' requested but onnxruntime" in text and "has no CUDAExecutionProvider" in text
    assert "Install onnxruntime-gpu" in text and "half_precision is ignored for .onnx models" in text
    auto = load_estimator(exported("resnet", False)[1], "")  # infer_bag's default: CUDA when there is one
    assert auto.device == "cpu" and auto.warnings == []
    with pytest.raises(ValueError, match=r"device 'gpu' is not understood"):
        load_estimator(exported("resnet", False)[1], "gpu")


def test_bad_onnx_files_say_what_to_do(exported, tmp_path):
    import onnx

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model at all" * 10)
    with pytest.raises(OnnxModelError, match=r"garbage.onnx: not a valid ONNX model .*export_onnx MODEL.safetensors"):
        load_estimator(garbage, "cpu")
    source, onnx_path = exported("resnet", False)
    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes(source.read_bytes())
    with pytest.raises(ModelFileError, match=r"renamed.onnx: not a valid ONNX model"):
        load_estimator(renamed, "cpu")
    with pytest.raises(OnnxModelError, match=r"absent.onnx does not exist"):
        load_estimator(tmp_path / "absent.onnx", "cpu")

    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(OnnxModelError, match=r"bare.onnx: ONNX model without mono_depth_ros metadata .*export_onnx"):
        load_estimator(tmp_path / "bare.onnx", "cpu")

    proto = onnx.load(str(onnx_path))
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = json.dumps(dict(json.loads(entry.value), input_width=256))
    onnx.save(proto, str(tmp_path / "other_size.onnx"))
    with pytest.raises(OnnxModelError, match=r"the network's input is image \[1, 3, 64, 128\], but its metadata "
                                             r"says \(batch, 3, 64, 256\)"):
        load_estimator(tmp_path / "other_size.onnx", "cpu")


def test_without_onnxruntime_onnx_models_explain_the_install(exported, monkeypatch, small_model_path):
    onnx_path = exported("resnet", False)[1]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(OnnxModelError, match=r"\.onnx models run through onnxruntime, which is not installed .*"
                                             r"pip install onnxruntime"):
        load_estimator(onnx_path, "cpu")
    assert load_estimator(small_model_path, "cpu").backend == "PyTorch"  # .safetensors never needs it


def test_infer_bag_runs_onnx_models(exported, tmp_path, capsys):
    from mono_depth_ros.bagio import decode_image
    from mono_depth_ros.tools.infer_bag import main as infer_bag_main
    from mono_depth_ros.simulation import write_synthetic_bag

    from mono_depth_ros.msgtypes import IMAGE_TYPE

    from helpers import decode_depth_raw, read_bag

    source, onnx_path = exported("resnet", False)
    bag = write_synthetic_bag(tmp_path / "raw", num_frames=2, stereo=False, odometry=False)
    out = tmp_path / "out"
    assert infer_bag_main(["--bag", str(bag), "--model", str(onnx_path), "--out", str(out), "--no-progress",
                           "--device", "cpu"]) == 0
    assert "wrote 2 of 2 frames" in capsys.readouterr().out
    pipeline = FramePipeline(DepthEstimator(load_model_file(source), torch.device("cpu")))
    images, depths = read_bag(bag)["/camera/image_raw"], read_bag(out)["/depth"]
    assert len(depths) == 2
    for (_, _, image), (_, _, depth) in zip(images, depths):
        expected = pipeline.depth(decode_image(image, IMAGE_TYPE), DepthNodeConfig())
        actual = decode_depth_raw(depth)
        finite = np.isfinite(expected)
        np.testing.assert_array_equal(np.isfinite(actual), finite)
        np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-4)


# ---- command line --------------------------------------------------------------------------------
@pytest.mark.slow
def test_command_line(exported, tmp_path, capsys):
    source, _ = exported("resnet", False)
    out = tmp_path / "cli.onnx"
    assert main([str(source), str(out), "--dynamic-batch", "--opset", "17"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == str(out)
    assert lines[-2].startswith("opset 17, dynamic batch; onnxruntime matches PyTorch to ")
    assert OnnxDepthEstimator(out).session.get_inputs()[0].shape[0] == "batch"
    assert main([str(tmp_path / "absent.safetensors"), str(tmp_path / "x.onnx")]) == 2
    assert "absent.safetensors does not exist" in capsys.readouterr().err
    assert main([str(source), str(tmp_path / "x.onnx"), "--opset", "21"]) == 2
    assert "opset 21 is not supported" in capsys.readouterr().err
