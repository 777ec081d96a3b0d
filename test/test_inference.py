"""DepthEstimator: its prepared network computes the model's function; depth conversion is exact."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mono_depth_ros.geometry import disparity_to_depth
from mono_depth_ros.inference import DepthEstimator, resolve_device
from mono_depth_ros.model_file import LoadedModel, ModelMetadata
from mono_depth_ros.networks import DepthNet


def _model(num_layers=18, width=128, height=64, seed=0, encoder="resnet", **metadata):
    torch.manual_seed(seed)
    net = DepthNet(num_layers, encoder=encoder).eval()
    # Non-trivial batch-norm statistics, so folding them into the convolutions is exercised.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    meta = ModelMetadata(num_layers=num_layers, encoder=encoder, input_width=width, input_height=height, **metadata)
    return LoadedModel(metadata=meta, depth_net=net, pose_net=None, path=None)


@pytest.mark.parametrize(
    "encoder,num_layers,width,height",
    [("resnet", 18, 128, 64), ("resnet", 18, 640, 192), ("resnet", 50, 96, 64),
     ("efficientnet_lite0", 18, 128, 64), ("efficientnet_lite0", 18, 640, 192)],
)
def test_the_estimators_network_computes_the_models_function(encoder, num_layers, width, height):
    """Batch norms folded into the convolutions and channels_last change only the last bits."""
    model = _model(num_layers, width, height, encoder=encoder)
    estimator = DepthEstimator(model, torch.device("cpu"))
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = model.depth_net(image)[0]
        actual = estimator.disparity(image.contiguous(memory_format=torch.channels_last))
    assert actual.shape == expected.shape == (1, 1, height, width)
    assert (actual - expected).abs().max().item() < 1e-5


def test_metric_depth_is_upsampled_disparity_converted_and_scaled():
    model = _model(min_depth=0.5, max_depth=40.0, depth_scale=2.0, metric=True)
    estimator = DepthEstimator(model, torch.device("cpu"))
    disparity = torch.rand(1, 1, 64, 128, dtype=torch.float32)
    before = disparity.clone()
    depth = estimator.disparity_to_metric_depth(disparity, 150, 300, extra_scale=1.5)
    assert torch.equal(disparity, before)  # input untouched
    upsampled = F.interpolate(disparity.double(), size=(150, 300), mode="bilinear", align_corners=False)
    scaled_disparity, _ = disparity_to_depth(upsampled, 0.5, 40.0)
    reference = (2.0 * 1.5 / scaled_disparity)[0, 0].numpy()
    assert depth.shape == (150, 300) and depth.dtype == np.float32
    np.testing.assert_allclose(depth, reference, rtol=1e-5)
    # Same size: no resampling, exact conversion.
    same = estimator.disparity_to_metric_depth(disparity, 64, 128)
    np.testing.assert_allclose(same, (2.0 / disparity_to_depth(disparity.double(), 0.5, 40.0)[0])[0, 0].numpy(), rtol=1e-6)


def test_predict_returns_depth_at_image_size_within_model_range():
    model = _model(min_depth=0.1, max_depth=100.0)
    estimator = DepthEstimator(model, torch.device("cpu"))
    rgb = np.random.default_rng(0).integers(0, 255, (123, 321, 3), dtype=np.uint8)
    depth = estimator.predict(rgb)
    assert depth.shape == (123, 321)
    assert np.isfinite(depth).all() and depth.min() >= 0.1 - 1e-6 and depth.max() <= 100.0 + 1e-3
    np.testing.assert_allclose(estimator.predict(rgb, extra_scale=3.0), 3.0 * depth, rtol=1e-5)
    assert set(estimator.times.as_dict()) == {"preprocess", "forward", "upsample"}


def test_run_returns_the_depth_with_the_network_input_it_came_from():
    estimator = DepthEstimator(_model(), torch.device("cpu"))
    rgb = np.random.default_rng(2).integers(0, 255, (70, 150, 3), dtype=np.uint8)
    prediction = estimator.run(rgb, extra_scale=2.0)
    assert prediction.times is estimator.times
    assert torch.equal(prediction.network_input, estimator.preprocess(rgb))  # what the node's odometry reuses
    np.testing.assert_array_equal(prediction.depth, estimator.predict(rgb, extra_scale=2.0))


def test_the_backend_interface_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, mono_depth_ros.inference.backend; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_efficientnet_batch_norms_are_folded_and_the_model_is_untouched():
    model = _model(encoder="efficientnet_lite0")
    estimator = DepthEstimator(model, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in estimator.net.encoder.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.depth_net.encoder.modules()) == 1 + 15 * 3 + 2
    rgb = np.random.default_rng(1).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.inference_mode():
        expected = model.depth_net(image)[0]
    disparity = estimator.disparity(estimator.preprocess(rgb))
    assert (disparity - expected).abs().max().item() < 1e-5


def test_resolve_device():
    assert resolve_device("cpu") == (torch.device("cpu"), None)
    if not torch.cuda.is_available():
        device, warning = resolve_device("cuda")
        assert device == torch.device("cpu") and "CUDA is not available" in warning and "device:=cpu" in warning
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")


@pytest.mark.parametrize(
    "variant", [dict(upsampling="pixel_shuffle"), dict(stereo_head=True), dict(semantic=True)],
    ids=["pixel_shuffle", "stereo_head", "semantic"],
)
def test_variant_networks_run_as_the_plain_network_with_correct_depth(variant):
    """Decoder variants: the depth is the network's (left-view) disparity converted like any model's."""
    torch.manual_seed(5)
    net = DepthNet(18, **variant).eval()
    with torch.no_grad():  # trained-looking weights: the variant's own modules are not at their start values
        for parameter in net.decoder.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
        if net.semantic is not None:
            for parameter in (net.semantic.fuse_low.weight, net.semantic.fuse_high.weight):
                parameter.normal_(0.0, 0.01)
    metadata = ModelMetadata(input_width=128, input_height=64, min_depth=0.5, max_depth=40.0, metric=True,
                             depth_scale=2.0, **variant)
    estimator = DepthEstimator(LoadedModel(metadata, net, None, None), torch.device("cpu"))
    rgb = np.random.default_rng(2).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.inference_mode():
        outputs = net(image, both_views=True) if variant.get("stereo_head") else net(image)
    left = outputs[0][:, :1]
    # (folded batch norms and channels_last change the last bits: the disparity agrees to ~1e-6)
    assert (estimator.disparity(estimator.preprocess(rgb)) - left).abs().max().item() < 2e-5
    expected = (2.0 / disparity_to_depth(left.double(), 0.5, 40.0)[0])[0, 0].numpy()
    np.testing.assert_allclose(estimator.predict(rgb), expected, rtol=2e-3)
