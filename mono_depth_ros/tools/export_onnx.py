"""export_onnx: a model file's depth network -> an ONNX file that carries the model's metadata.

The ONNX graph takes ``image`` (B, 3, H, W) float32 RGB in [0, 1] at the model's input size and
returns ``disparity`` (B, 1, H, W), the sigmoid disparity at full resolution that the node turns
into metres. The model file's metadata (the same JSON as in the .safetensors header) is stored in
the ONNX ``metadata_props`` under ``mono_depth_ros.metadata``, so the .onnx file alone is enough
for depth_node, infer_bag and other tools.

For TensorRT the graph uses only plain operators: Conv (batch norms folded), Relu/Clip, Elu,
Resize (nearest), Concat, Sigmoid, and Pad with constant pads in ``reflect`` mode (the decoder's
reflection padding) or ``constant`` mode (EfficientNet's asymmetric padding). Pad's pads moved
from an attribute to an input in opset 11, the default opset 17 is the newest TensorRT 8.4-8.6
parse, and TensorRT parses reflect padding since 8.2.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model_file import METADATA_KEY, ModelFileError, ModelMetadata, load_model_file
from ..networks import DepthNet, ExportConvELU
from ..inference.onnx_backend import EXPORT_INFO_KEY, INPUT_NAME, ONNX_SUFFIX, OUTPUT_NAME

DEFAULT_OPSET = 17  # the newest opset TensorRT 8.4-8.6 (JetPack 5, 6.0) parse; TensorRT 10 parses 9-20
MIN_OPSET = 11  # Pad with its pads as an input
MAX_OPSET = 20  # the newest the TorchScript-based exporter writes
# |onnxruntime - PyTorch| sigmoid disparity above this fails the export's own check.
VERIFY_TOLERANCE = 1e-4


class OnnxExportError(RuntimeError):
    """The export cannot be done or its result does not reproduce the network."""


class _ConstantPad(torch.autograd.Function):
    """F.pad whose ONNX form is one Pad node with constant pads.

    The TorchScript exporter computes ReflectionPad2d's pads with a chain of Slice, Transpose and
    Reshape nodes that it cannot fold; the plain form is faster and what every runtime parses.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pads: Sequence[int], mode: str) -> torch.Tensor:
        return F.pad(x, tuple(pads), mode=mode)

    @staticmethod
    def symbolic(g, x, pads, mode):
        left, right, top, bottom = pads
        onnx_pads = g.op("Constant", value_t=torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64))
        return g.op("Pad", x, onnx_pads, mode_s=mode)


class _Pad2d(nn.Module):
    """(N, C, H, W) -> (N, C, H + top + bottom, W + left + right), ``mode`` 'reflect' or 'constant' (zeros)."""

    def __init__(self, pads: Sequence[int], mode: str):
        super().__init__()
        self.pads = tuple(int(p) for p in pads)  # (left, right, top, bottom), as nn.ZeroPad2d stores them
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ConstantPad.apply(x, self.pads, self.mode)


class DisparityOutput(nn.Module):
    """image (B, 3, H, W) RGB in [0, 1] -> sigmoid disparity (B, 1, H, W) at scale 0."""

    def __init__(self, depth_net: DepthNet):
        super().__init__()
        self.net = depth_net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image, output_scales=(0,))[0]


def exportable(depth_net: DepthNet) -> DisparityOutput:
    """A copy of ``depth_net`` computing the same function from export-friendly modules."""
    net = copy.deepcopy(depth_net).float().eval()
    for blocks in (net.decoder.reduce, net.decoder.fuse):
        for index, block in enumerate(blocks):
            blocks[index] = ExportConvELU(block)  # torch's ELU: one ONNX Elu node
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReflectionPad2d):
                setattr(module, name, _Pad2d(child.padding, "reflect"))
            elif isinstance(child, nn.ZeroPad2d):
                setattr(module, name, _Pad2d(child.padding, "constant"))
    return DisparityOutput(net).eval()


def sample_images(width: int, height: int, batch: int = 1, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Inputs to compare the backends on: uniform noise, and a smooth scene-like image with texture."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((batch, 3, height, width), generator=generator)
    coarse = torch.rand((batch, 3, max(height // 16, 2), max(width // 16, 2)), generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    ramp = torch.linspace(0.0, 1.0, height).view(1, 1, height, 1)  # sky-to-ground brightness change
    scene = (0.6 * smooth + 0.3 * ramp + 0.1 * noise).clamp(0.0, 1.0)
    return {"random": noise, "scene": scene}


@dataclass
class ExportResult:
    path: Path
    opset: int
    dynamic_batch: bool
    max_difference: Optional[float]  # onnxruntime vs PyTorch, sigmoid disparity; None when not checked


def _import_onnx():
    try:
        import onnx
    except ImportError as error:
        raise OnnxExportError(
            f"export_onnx needs the Python package onnx, which is not installed ({error}): `pip install onnx "
            "onnxruntime`"
        ) from error
    return onnx


def export_onnx(
    model_path,
    out,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    log: Callable[[str], None] = lambda text: None,
) -> ExportResult:
    """Export the depth network of the model file ``model_path`` to ``out`` (.onnx).

    Static batch 1 by default (what the node runs; TensorRT builds the fastest engine for it);
    ``dynamic_batch`` makes the batch dimension free. ``verify``: run the file with onnxruntime
    (when installed) on random and scene-like images and require it to match PyTorch within
    VERIFY_TOLERANCE. Raises ModelFileError for a bad model file, OnnxExportError otherwise.
    """
    out = Path(out)
    if out.suffix.lower() != ONNX_SUFFIX:
        raise OnnxExportError(f"the output {out} must end in .onnx (the node picks the backend by it)")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxExportError(
            f"opset {opset!r} is not supported: use {MIN_OPSET}-{MAX_OPSET} (Pad takes its pads as an input from "
            f"opset 11; the exporter writes up to {MAX_OPSET}); {DEFAULT_OPSET} suits TensorRT 8.4 and later"
        )
    onnx = _import_onnx()
    model = load_model_file(model_path, device="cpu")
    metadata = dataclasses.replace(model.metadata, has_pose=False)  # the pose network is not exported
    width, height = metadata.input_width, metadata.input_height
    wrapper = exportable(model.depth_net)
    example = sample_images(width, height)["scene"]
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None

    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter announces its deprecation and notes each pad it does not fold.
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    wrapper, (example,), tmp_name, dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                )
        proto = onnx.load(tmp_name)
        _set_metadata(proto, {
            METADATA_KEY: metadata.to_json(),
            EXPORT_INFO_KEY: json.dumps({
                "source": str(Path(model_path)), "opset": opset, "dynamic_batch": dynamic_batch,
                "input": f"{INPUT_NAME} (batch, 3, {height}, {width}) float32 RGB in [0, 1]",
                "output": f"{OUTPUT_NAME} (batch, 1, {height}, {width}) float32 sigmoid disparity; depth = "
                          f"depth_scale / (1/max_depth + (1/min_depth - 1/max_depth) * disparity)",
                "torch": torch.__version__,
            }),
        })
        proto.doc_string = (
            f"mono_depth_ros depth network ({metadata.encoder}, {width}x{height}); metadata in metadata_props"
        )
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would keep a node running as another user out
        os.replace(tmp_name, out)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    difference = None
    if verify:
        difference = _verify(out, model.depth_net, metadata, dynamic_batch, log)
    return ExportResult(out, opset, dynamic_batch, difference)


def _set_metadata(proto, values: Dict[str, str]) -> None:
    kept = [entry for entry in proto.metadata_props if entry.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _verify(path: Path, depth_net: DepthNet, metadata: ModelMetadata, dynamic_batch: bool,
            log: Callable[[str], None]) -> Optional[float]:
    try:
        import onnxruntime
    except ImportError:
        log("onnxruntime is not installed: the exported file was not checked against PyTorch")
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = 2 if dynamic_batch else 1
    worst = 0.0
    for name, image in sample_images(metadata.input_width, metadata.input_height, batch, seed=1).items():
        with torch.no_grad():
            expected = depth_net(image, output_scales=(0,))[0].numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})[0]
        difference = float(np.abs(actual - expected).max())
        if not difference <= VERIFY_TOLERANCE:
            path.unlink()  # never leave a file behind that computes something else
            raise OnnxExportError(
                f"onnxruntime's disparity from the exported {path.name} differs from PyTorch's by {difference:.3g} "
                f"on the {name} image (more than {VERIFY_TOLERANCE}), so {path} was deleted; please report this "
                f"with your torch ({torch.__version__}) and onnxruntime ({onnxruntime.__version__}) versions"
            )
        worst = max(worst, difference)
    return worst


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export_onnx",
        description="Export a model file's depth network to ONNX (for onnxruntime and TensorRT), with the model's "
        "metadata inside the .onnx file. depth_node and infer_bag run .onnx files through onnxruntime.",
    )
    parser.add_argument("model", type=Path, help="model file (.safetensors)")
    parser.add_argument("out", type=Path, help="output file (.onnx)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="free batch dimension (default: batch 1, what the node runs)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} (default {DEFAULT_OPSET}: TensorRT 8.4 and later)")
    parser.add_argument("--no-verify", action="store_true", help="do not compare onnxruntime's output with PyTorch's")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = export_onnx(args.model, args.out, dynamic_batch=args.dynamic_batch, opset=args.opset,
                             verify=not args.no_verify, log=lambda text: print(f"export_onnx: {text}"))
    except (ModelFileError, OnnxExportError, OSError) as error:
        print(f"export_onnx: error: {error}", file=sys.stderr)
        return 2
    batch = "dynamic batch" if result.dynamic_batch else "batch 1"
    check = ("" if result.max_difference is None
             else f"; onnxruntime matches PyTorch to {result.max_difference:.1e} (sigmoid disparity)")
    print(f"opset {result.opset}, {batch}{check}")
    print(result.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
