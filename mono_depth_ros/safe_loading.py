"""Loading PyTorch pickles safely, and saying why one was refused.

Every ``.pth`` / ``.pt`` this project opens (Monodepth2 weights, the EfficientNet-Lite0 package
weights, training checkpoints) goes through ``torch.load(weights_only=True)``: tensors and plain
containers only, never code. PyTorch's refusal text ends with advice to load the file again with
``weights_only=False``, i.e. to let it run code; the tools never pass that on. These functions turn
a refusal into what was refused (the function or class the file asked to call) and why.

Torch-free at import (torch is imported inside :func:`load_weights_only`), so the node package, its
tools and the trainer (``mono_depth_ros_training.checkpoints``) share one copy.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["load_weights_only", "refusal_reason", "refused_global", "refused_pickle_detail"]

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# Sentences of PyTorch's refusal that advise loading the file anyway; never passed on.
_ADVICE = re.compile(r"weights_only|safe_globals|trust", re.I)


def load_weights_only(path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a file that asks to run code raises pickle.UnpicklingError
    without running it (describe it with :func:`refusal_reason`)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on the pickle protocol of foreign files
        return torch.load(path, map_location=map_location, weights_only=True)


def refused_global(error: BaseException) -> str:
    """'io.open' when torch refused to unpickle a call of that function or class, else ''."""
    match = re.search(r"Unsupported global: GLOBAL (\S+?)\.? was not an allowed global", str(error))
    if match is None:  # PyTorch before 2.4: "Unsupported class io.open"
        match = re.search(r"WeightsUnpickler error: Unsupported class (\S+?)\.?(?:\s|$)", str(error))
    return match.group(1) if match else ""


def refused_pickle_detail(error: BaseException) -> str:
    """The part of torch's weights_only refusal that says what was refused, without its advice to load
    the file unsafely (a refusal worded otherwise falls back to its first line, advice removed)."""
    text = _ANSI_ESCAPE.sub("", str(error))
    match = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\s*Please use|\n\n|$)", text, re.S)
    detail = " ".join((match.group(1) if match else (text.splitlines() or [""])[0]).split())
    if _ADVICE.search(detail):
        kept = [s for s in re.split(r"(?<=\.)\s+", detail) if s and not _ADVICE.search(s)]
        detail = " ".join(kept) or "its contents are not tensors and plain values"
    return detail


def refusal_reason(error: BaseException) -> str:
    """Why a weights_only load refused a file, for a message: 'unpickling it would call io.open, i.e. run
    code from the file' when it asked for a function or class, else torch's detail (no advice)."""
    refused = refused_global(error)
    if refused:
        return f"unpickling it would call {refused}, i.e. run code from the file"
    return refused_pickle_detail(error)
