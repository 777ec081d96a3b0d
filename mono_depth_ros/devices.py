"""The ``device`` setting ('cuda', 'cuda:N', 'cpu', '' for automatic): parsed once, used by every backend.

:func:`parse_device` checks the syntax without importing torch (node parameters, the trainer's
config and onnxruntime use it). What a request becomes depends on who asks:

* :func:`torch_device` for PyTorch; ``missing_cuda="fallback"`` (the node, infer_bag, evaluate)
  runs on the CPU with a warning when CUDA is missing, ``missing_cuda="raise"`` (the trainer) raises
  :class:`DeviceUnavailableError`;
* :func:`onnx_providers` for onnxruntime (no torch import): CUDAExecutionProvider when onnxruntime has
  it, else the CPU with a warning.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

DEVICE_HINT = "use 'cuda', 'cuda:N' or 'cpu'"
AUTO, CPU, CUDA = "auto", "cpu", "cuda"
MISSING_CUDA_MODES = ("fallback", "raise")
# torch.device's syntax: no sign, no spaces, no leading zeros.
_CUDA_INDEX = re.compile(r"cuda:(0|[1-9][0-9]*)", re.ASCII)


class DeviceUnavailableError(RuntimeError):
    """A CUDA device was asked for (missing_cuda="raise") but this machine cannot provide it."""


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed ``device`` setting: ``kind`` 'auto', 'cpu' or 'cuda'; ``index`` only for 'cuda:N'.

    ``text`` is the setting as the user wrote it (for messages; not compared).
    """

    kind: str
    index: Optional[int] = None
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        """'', 'cpu', 'cuda' or 'cuda:N' (the normalised setting)."""
        if self.kind == AUTO:
            return ""
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str, allow_auto: bool = True) -> DeviceRequest:
    """'cuda', 'cuda:N', 'cpu' (any case, surrounding spaces ignored), or '' for automatic when
    ``allow_auto`` -> DeviceRequest. ValueError (saying what to use) for anything else."""
    normalised = text.strip().lower()
    if normalised == "" and allow_auto:
        return DeviceRequest(AUTO, None, text)
    if normalised == "cpu":
        return DeviceRequest(CPU, None, text)
    if normalised == "cuda":
        return DeviceRequest(CUDA, None, text)
    if normalised.startswith("cuda:"):
        match = _CUDA_INDEX.fullmatch(normalised)
        if match is None:
            raise ValueError(f"device '{text}' is not a valid device (Invalid device string: '{normalised}')")
        return DeviceRequest(CUDA, int(match.group(1)), text)
    raise ValueError(f"device '{text}' is not understood; {DEVICE_HINT}")


def _check_mode(missing_cuda: str) -> None:
    if missing_cuda not in MISSING_CUDA_MODES:
        raise ValueError(f"missing_cuda is {missing_cuda!r}; use one of {', '.join(MISSING_CUDA_MODES)}")


def torch_device(request: DeviceRequest, missing_cuda: str = "fallback"):
    """-> (torch.device, warning or None).

    'auto': CUDA when available, else the CPU, without a warning. 'cuda' / 'cuda:N' without CUDA:
    the CPU with a warning (``missing_cuda="fallback"``) or DeviceUnavailableError (``"raise"``);
    'cuda:N' past the last GPU: cuda:0 with a warning, or DeviceUnavailableError.
    """
    import torch

    _check_mode(missing_cuda)
    if request.kind == CPU:
        return torch.device("cpu"), None
    if request.kind == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), None
    shown = request.text or str(request)
    if not torch.cuda.is_available():
        if missing_cuda == "raise":
            raise DeviceUnavailableError(f"device is '{shown}' but CUDA is not available; use device=cpu")
        return torch.device("cpu"), (
            f"device '{shown}' requested but CUDA is not available "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); running on the CPU, "
            "which is much slower. Set device:=cpu to silence this warning."
        )
    if request.index is not None and request.index >= torch.cuda.device_count():
        if missing_cuda == "raise":
            raise DeviceUnavailableError(
                f"device is '{shown}' but there are {torch.cuda.device_count()} GPU(s); use cuda:0 or device=cpu"
            )
        return torch.device("cuda:0"), (
            f"device '{shown}' does not exist ({torch.cuda.device_count()} GPU(s)); using cuda:0"
        )
    return torch.device(str(request)), None


def onnx_providers(request: DeviceRequest, available: Sequence[str],
                   runtime_version: str) -> Tuple[List[object], str, Optional[str]]:
    """-> (onnxruntime providers, device label, warning or None); no torch import.

    ``available``: onnxruntime.get_available_providers(); ``runtime_version``: onnxruntime.__version__.
    'auto' means CUDA when onnxruntime has it, else the CPU without a warning.
    """
    if request.kind == CPU:
        return ["CPUExecutionProvider"], "cpu", None
    index = request.index or 0
    if "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}", None
    if request.kind == AUTO:
        return ["CPUExecutionProvider"], "cpu", None
    return ["CPUExecutionProvider"], "cpu", (
        f"device '{request.text or request}' requested but onnxruntime {runtime_version} has no CUDAExecutionProvider "
        f"(available: {', '.join(available)}); running on the CPU. Install onnxruntime-gpu for CUDA, or set "
        "device:=cpu to silence this warning."
    )


def resolve_device(requested: str):
    """The node's ``device`` parameter -> (torch.device, warning or None), falling back to the CPU.

    'cuda' / 'cuda:N' fall back to the CPU with a warning when CUDA is unavailable; anything else
    that is not 'cpu' (the empty string too) raises ValueError.
    """
    return torch_device(parse_device(requested, allow_auto=False), missing_cuda="fallback")


def auto_device(requested: str):
    """'' -> CUDA when available, else the CPU (no warning); otherwise as the node: -> (device, warning)."""
    return torch_device(parse_device(requested), missing_cuda="fallback")
