"""mono_depth_ros.safe_loading: a refused PyTorch pickle is described by what it asked to run, never
with PyTorch's advice to load it with weights_only=False."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch

from mono_depth_ros.safe_loading import load_weights_only, refusal_reason, refused_global, refused_pickle_detail

from helpers import CreatesFileWhenUnpickled  # test/ is on sys.path

# PyTorch's refusal texts, as its versions word them (2.6+ and 2.4-2.5; before 2.4).
TORCH_2_6 = (
    "Weights only load failed. This file can still be loaded, to do so you have two options, \x1b[1mdo those "
    "steps only if you trust the source of the checkpoint\x1b[0m. \n\t(1) In PyTorch 2.6, we changed the default "
    "value of the `weights_only` argument in `torch.load` from `False` to `True`. Re-running `torch.load` with "
    "`weights_only` set to `False` will likely succeed, but it can result in arbitrary code execution. Do it only "
    "if you got the file from a trusted source.\n\t(2) Alternatively, to load with `weights_only=True` please check "
    "the recommended steps in the following error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL "
    "io.open was not an allowed global by default. Please use `torch.serialization.add_safe_globals([io.open])` "
    "or the `torch.serialization.safe_globals([io.open])` context manager to allowlist this global if you trust "
    "this class/function.\n\nCheck the documentation of torch.load to learn more."
)
TORCH_2_4 = (
    "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
    "but it can result in arbitrary code execution. Do it only if you got the file from a trusted source.\n "
    "WeightsUnpickler error: Unsupported global: GLOBAL io.open was not an allowed global by default. Please use "
    "`torch.serialization.add_safe_globals([open])` to allowlist this global if you trust this class/function."
)
TORCH_2_0 = (
    "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
    "but it can result in arbitrary code execution.Do it only if you get the file from a trusted source. "
    "WeightsUnpickler error: Unsupported class io.open"
)
OPERAND = (
    "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
    "but it can result in arbitrary code execution.\n\tWeightsUnpickler error: Unsupported operand 149\n\nCheck"
)
ADVICE_ONLY = "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed."


@pytest.mark.parametrize("text", [TORCH_2_6, TORCH_2_4, TORCH_2_0])
def test_refused_call_is_named_without_advice(text):
    error = pickle.UnpicklingError(text)
    assert refused_global(error) == "io.open"
    assert refusal_reason(error) == "unpickling it would call io.open, i.e. run code from the file"


@pytest.mark.parametrize(
    "text, detail",
    [
        (OPERAND, "Unsupported operand 149"),
        ("invalid load key, 'n'.", "invalid load key, 'n'."),
        (ADVICE_ONLY, "Weights only load failed."),
        ("Re-running with `weights_only` set to `False` will likely succeed.",
         "its contents are not tensors and plain values"),
    ],
)
def test_other_refusals_keep_what_was_wrong_and_drop_the_advice(text, detail):
    error = pickle.UnpicklingError(text)
    assert refused_global(error) == ""
    assert refused_pickle_detail(error) == refusal_reason(error) == detail
    assert "weights_only" not in detail


def test_load_weights_only_refuses_code_and_loads_tensors(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "code.pth"
    torch.save({"weight": CreatesFileWhenUnpickled(marker)}, path)
    with pytest.raises(pickle.UnpicklingError) as caught:
        load_weights_only(path)
    assert not marker.exists()
    assert refusal_reason(caught.value) == "unpickling it would call io.open, i.e. run code from the file"
    torch.save({"weight": torch.arange(3.0)}, path)
    assert torch.equal(load_weights_only(path)["weight"], torch.arange(3.0))


def test_importing_it_does_not_import_torch():
    code = "import sys, mono_depth_ros.safe_loading; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
