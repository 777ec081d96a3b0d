"""Minimal reader/writer for the safetensors format (no dependency, no pickle).

Format: 8-byte little-endian header length N, N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
then the raw little-endian tensor bytes. Files written here load with the official
``safetensors`` library and vice versa. Reading never executes code.

Importing this module and reading a header (:func:`read_safetensors_header`) do not import torch;
reading and writing tensors do.
"""
from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Dict, Optional, Tuple

if TYPE_CHECKING:
    import torch

# safetensors dtype -> the name of the torch dtype it holds (torch is imported only for tensors).
_DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
MAX_HEADER_BYTES = 100_000_000


class SafetensorsFormatError(ValueError):
    """The bytes are not a well-formed safetensors file."""


def _torch_dtypes() -> Dict[str, "torch.dtype"]:
    """safetensors dtype name -> torch dtype (imports torch)."""
    import torch

    return {name: getattr(torch, attribute) for name, attribute in _DTYPE_NAMES.items()}


def write_safetensors(path, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors (any device; copied to CPU) and string metadata to ``path``."""
    import torch

    names = {dtype: name for name, dtype in _torch_dtypes().items()}
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        if tensor.dtype not in names:
            raise TypeError(f"{name}: dtype {tensor.dtype} cannot be stored")
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        if sys.byteorder != "little":  # pragma: no cover - all supported platforms are little-endian
            raise RuntimeError("big-endian hosts are not supported")
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as stream:
        stream.write(len(encoded).to_bytes(8, "little"))
        stream.write(encoded)
        for data in blobs:
            stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def read_safetensors_header(path) -> Tuple[dict, int]:
    """-> (header dict, byte offset where the data section starts)."""
    with open(path, "rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise SafetensorsFormatError(f"file is empty or truncated ({len(prefix)} bytes)")
        size = int.from_bytes(prefix, "little")
        if size > MAX_HEADER_BYTES:
            kind = "a PyTorch zip checkpoint" if prefix[:2] == b"PK" else (
                "a pickle" if prefix[:1] == b"\x80" else "another format")
            raise SafetensorsFormatError(f"not a safetensors file (looks like {kind})")
        raw = stream.read(size)
    if len(raw) < size:
        raise SafetensorsFormatError("header is truncated")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsFormatError(f"header is not JSON ({error})") from error
    if not isinstance(header, dict):
        raise SafetensorsFormatError("header is not a JSON object")
    if not isinstance(header.get("__metadata__", {}), (dict, type(None))):
        raise SafetensorsFormatError("header's __metadata__ is not a JSON object")
    return header, 8 + size


def read_safetensors(path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """-> (tensors on the CPU, metadata). Checks every entry against the file's size."""
    import torch

    dtypes = _torch_dtypes()
    header, data_start = read_safetensors_header(path)
    metadata = header.pop("__metadata__", None) or {}
    with open(path, "rb") as stream:
        stream.seek(data_start)
        data = stream.read()
    tensors: Dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        try:
            dtype = dtypes[entry["dtype"]]
            shape = [int(n) for n in entry["shape"]]
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise SafetensorsFormatError(f"entry {name!r} is malformed ({error})") from error
        count = 1
        for n in shape:
            count *= n
        expected = count * torch.empty((), dtype=dtype).element_size()
        if not (0 <= begin <= end <= len(data)) or end - begin != expected:
            raise SafetensorsFormatError(
                f"entry {name!r} needs bytes {begin}..{end} ({expected} expected) but the data section has "
                f"{len(data)} bytes: the file is truncated or damaged"
            )
        buffer = bytearray(data[begin:end])
        flat = torch.frombuffer(buffer, dtype=dtype) if expected else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(shape)
    return tensors, {str(k): str(v) for k, v in metadata.items()}
