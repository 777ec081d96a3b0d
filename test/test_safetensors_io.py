"""Tests of the dependency-free safetensors reader/writer, against the official library too."""
from __future__ import annotations

import json
import struct

import pytest
import torch

from mono_depth_ros.safetensors_io import (
    SafetensorsFormatError,
    read_safetensors,
    read_safetensors_header,
    write_safetensors,
)


def sample_tensors() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=generator),
        "f64": torch.randn(7, generator=generator, dtype=torch.float64),
        "f16": torch.randn(2, 2, generator=generator).half(),
        "bf16": torch.randn(4, 1, generator=generator).bfloat16(),
        "i64": torch.tensor([-(2**62), 0, 2**62 + 5]),
        "i32": torch.tensor([[-7, 8]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "strided": torch.arange(24.0).reshape(4, 6).t(),  # non-contiguous input
        "special": torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0]),
    }


def assert_same_tensors(loaded: dict, expected: dict) -> None:
    assert sorted(loaded) == sorted(expected)
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        # Bit-identical, NaN and -0.0 included.
        assert loaded[name].contiguous().view(-1).view(torch.uint8).tolist() == tensor.contiguous().view(-1).view(
            torch.uint8
        ).tolist(), name


def test_round_trip_all_dtypes_bit_identical(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = sample_tensors()
    write_safetensors(path, tensors, metadata={"a": "1", "b": "text with ünïcode"})
    loaded, metadata = read_safetensors(path)
    assert_same_tensors(loaded, tensors)
    assert metadata == {"a": "1", "b": "text with ünïcode"}
    # Loaded tensors are writable and independent of each other.
    loaded["f32"].zero_()
    assert loaded["f32"].abs().sum() == 0
    assert torch.equal(loaded["f64"], tensors["f64"])
    assert torch.equal(read_safetensors(path)[0]["f32"], tensors["f32"])


def test_layout_header_is_aligned_and_offsets_tile_the_data(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, sample_tensors())
    raw = path.read_bytes()
    (header_size,) = struct.unpack("<Q", raw[:8])
    assert header_size % 8 == 0
    header = json.loads(raw[8 : 8 + header_size])
    assert "__metadata__" not in header  # no metadata given
    spans = sorted(tuple(entry["data_offsets"]) for entry in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - 8 - header_size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert header["i32"] == {"dtype": "I32", "shape": [1, 2], "data_offsets": header["i32"]["data_offsets"]}
    begin, end = header["f64"]["data_offsets"]
    assert struct.unpack("<7d", raw[8 + header_size + begin : 8 + header_size + end]) == tuple(
        sample_tensors()["f64"].tolist()
    )


def test_read_header_gives_data_start(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"x": torch.ones(2)}, metadata={"k": "v"})
    header, data_start = read_safetensors_header(path)
    assert header["__metadata__"] == {"k": "v"}
    assert path.read_bytes()[data_start:] == torch.ones(2).numpy().tobytes()


def test_official_library_reads_our_files(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="needs the safetensors package")
    from safetensors import safe_open

    path = tmp_path / "ours.safetensors"
    tensors = sample_tensors()
    write_safetensors(path, tensors, metadata={"key": "value"})
    assert_same_tensors(safetensors_torch.load_file(str(path)), tensors)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"key": "value"}


def test_we_read_files_of_the_official_library(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="needs the safetensors package")
    path = tmp_path / "official.safetensors"
    tensors = {name: t.contiguous() for name, t in sample_tensors().items()}
    safetensors_torch.save_file(tensors, str(path), metadata={"x": "y"})
    loaded, metadata = read_safetensors(path)
    assert_same_tensors(loaded, tensors)
    assert metadata == {"x": "y"}


def test_unstorable_dtype_is_refused(tmp_path):
    with pytest.raises(TypeError, match="c: dtype torch.complex64 cannot be stored"):
        write_safetensors(tmp_path / "t.safetensors", {"c": torch.zeros(2, dtype=torch.complex64)})


# --------------------------------------------------------------------------- damaged input


def write_raw(path, header, data: bytes = b"") -> None:
    encoded = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"file is empty or truncated \(0 bytes\)"),
        (b"\x10\x00\x00", r"file is empty or truncated \(3 bytes\)"),
        (b"PK\x03\x04\x14\x00\x00\x00rest", "looks like a PyTorch zip checkpoint"),
        (b"\x80\x02}q\x00(X\x01\x00\x00\x00", "looks like a pickle"),
        (b"GIF89a\x01\x00\x01\x00", "looks like another format"),
        ((1000).to_bytes(8, "little") + b"{}", "header is truncated"),
    ],
)
def test_not_safetensors_bytes_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(SafetensorsFormatError, match=message):
        read_safetensors(path)


@pytest.mark.parametrize(
    "header, message",
    [
        (b"{not json", "header is not JSON"),
        (b"\xff\xfe\xfd\xfc", "header is not JSON"),
        ([1, 2], "header is not a JSON object"),
        ({"__metadata__": ["x"]}, "__metadata__ is not a JSON object"),
        ({"w": "oops"}, r"entry 'w' is malformed"),
        ({"w": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, r"entry 'w' is malformed"),
        ({"w": {"dtype": "F32", "shape": [2]}}, r"entry 'w' is malformed"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, r"bytes 0..4 \(8 expected\)"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, r"data section has 8 bytes: the file is truncated"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, "truncated or damaged"),
        ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, "truncated or damaged"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, header, message):
    path = tmp_path / "bad.safetensors"
    write_raw(path, header, data=bytes(8))
    with pytest.raises(SafetensorsFormatError, match=message):
        read_safetensors(path)


def test_truncated_data_section_is_refused(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"a": torch.ones(100), "b": torch.ones(10)})
    path.write_bytes(path.read_bytes()[:-20])
    read_safetensors_header(path)  # the header alone is intact
    with pytest.raises(SafetensorsFormatError, match="'b' needs bytes 400..440"):
        read_safetensors(path)
