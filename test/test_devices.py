"""mono_depth_ros.devices: one parser for the device setting; the node falls back, the trainer raises."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mono_depth_ros.devices import (
    DeviceRequest,
    DeviceUnavailableError,
    onnx_providers,
    parse_device,
    torch_device,
)


@pytest.mark.parametrize("text, kind, index", [
    ("", "auto", None), (" ", "auto", None), ("cpu", "cpu", None), (" CPU ", "cpu", None), ("cuda", "cuda", None),
    ("CUDA", "cuda", None), ("cuda:0", "cuda", 0), (" cuda:12 ", "cuda", 12),
])
def test_parse_device_accepts(text, kind, index):
    request = parse_device(text)
    assert (request.kind, request.index, request.text) == (kind, index, text)
    assert request == DeviceRequest(kind, index)  # the text as written is not compared


@pytest.mark.parametrize("text, message", [
    ("gpu", r"device 'gpu' is not understood; use 'cuda', 'cuda:N' or 'cpu'"),
    ("cuda0", "is not understood"),
    ("cuda:", r"device 'cuda:' is not a valid device \(Invalid device string: 'cuda:'\)"),
    ("cuda:x", "is not a valid device"), ("cuda:-1", "is not a valid device"), ("cuda:01", "is not a valid device"),
    ("cuda: 1", "is not a valid device"), ("cuda:\u0663", "is not a valid device"),
])
def test_parse_device_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        parse_device(text)


def test_empty_is_refused_where_automatic_is_not_allowed():
    with pytest.raises(ValueError, match="device '' is not understood"):
        parse_device("", allow_auto=False)


def test_parsing_and_onnx_providers_do_not_import_torch():
    code = ("import sys; from mono_depth_ros.devices import onnx_providers, parse_device; "
            "onnx_providers(parse_device('cuda:1'), ['CPUExecutionProvider'], '1'); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_falls_back_or_raises_as_asked():
    device, warning = torch_device(parse_device("cuda:1"), missing_cuda="fallback")
    assert device == torch.device("cpu") and "device 'cuda:1' requested but CUDA is not available" in warning
    with pytest.raises(DeviceUnavailableError, match="device is 'cuda:1' but CUDA is not available; use device=cpu"):
        torch_device(parse_device("cuda:1"), missing_cuda="raise")
    assert torch_device(parse_device(""), missing_cuda="raise") == (torch.device("cpu"), None)
    assert torch_device(parse_device("cpu"), missing_cuda="raise") == (torch.device("cpu"), None)
    with pytest.raises(ValueError, match="missing_cuda"):
        torch_device(parse_device("cpu"), missing_cuda="ignore")


def test_onnx_providers():
    cpu_only, with_cuda = ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(parse_device("cpu"), with_cuda, "1.0") == (["CPUExecutionProvider"], "cpu", None)
    assert onnx_providers(parse_device(""), cpu_only, "1.0") == (["CPUExecutionProvider"], "cpu", None)
    providers, label, warning = onnx_providers(parse_device("cuda:2"), with_cuda, "1.0")
    assert providers[0] == ("CUDAExecutionProvider", {"device_id": 2}) and label == "cuda:2" and warning is None
    providers, label, warning = onnx_providers(parse_device("CUDA"), cpu_only, "1.0")
    assert (providers, label) == (["CPUExecutionProvider"], "cpu")
    assert "device 'CUDA' requested but onnxruntime 1.0 has no CUDAExecutionProvider" in warning
