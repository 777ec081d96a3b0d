"""The fast CPU forward: a hand-written oneDNN twin of DepthNet, used by DepthEstimator on the CPU.

It runs on private PyTorch operators (``torch.ops.mkldnn._convolution_pointwise``,
``torch._C._nn.mkldnn_reorder_conv2d_weight``); :func:`build_fast_net` checks it against the network
once and returns None (the plain network runs) when the operators are missing or disagree.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..networks import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE0_FEATURE_BLOCKS,
    EfficientNetLite0Encoder,
    ResnetEncoder,
)
from ..networks.layers import elu_negative_part

_LOG = logging.getLogger("mono_depth_ros.inference")  # one logger for the inference package

# On the CPU the plain network loses much time outside the convolutions' arithmetic: oneDNN
# re-lays-out every weight on every call; ReLU, residual sums, ELU and sigmoid are extra passes
# over memory; the decoder materialises upsampling, concatenation and reflection padding as three
# full copies; the 1-channel disparity convolution runs far below peak. OneDnnDepthNet computes
# the same function with weights laid out once, ReLU and sums fused into the convolutions,
# padding written in place, a cheaper ELU, and two exact rewrites:
# * a 3x3 convolution of a nearest-2x-upsampled map is, for each of the 4 output phases, a 2x2
#   convolution of the small map with summed taps: 16 instead of 36 multiply-adds per output,
#   and neither the upsampled map nor the concatenation is ever built;
# * the disparity head is one matrix product plus 9 shifted sums.

# Largest |fast - network| sigmoid disparity the start-up check accepts. Measured: < 2e-6 with
# disparities spanning [0, 1]; a broken kernel would be off by far more than this margin.
FAST_NET_TOLERANCE = 1e-4
# For an output row of the upsampled map's convolution (likewise columns): row 2i reads source
# rows i-1 and i, weighted by kernel taps 0 and 1+2; row 2i+1 reads rows i and i+1, by taps 0+1
# and 2. _PHASE_TAPS[parity] is that (2 source rows x 3 taps) selection.
_PHASE_TAPS = (
    torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
    torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
)
_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def onednn_available() -> bool:
    """Whether this torch build has the oneDNN operators the twin runs on."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class _PackedConv:
    """A convolution whose weight is laid out once for oneDNN (batch norm already folded in).

    Calls take and return channels_last tensors; ``unary`` ('none', 'relu', 'relu6', 'sigmoid') is
    applied by the convolution itself, and :meth:`add` fuses a sum before it.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], input_shape: Sequence[int],
                 padding: Sequence[int] = (0, 0), stride: Sequence[int] = (1, 1), groups: int = 1):
        self.padding, self.stride, self.dilation, self.groups = list(padding), list(stride), [1, 1], groups
        self.weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.detach().float().contiguous().to_mkldnn(), self.padding, self.stride, self.dilation, groups,
            list(input_shape),
        )
        self.bias = None if bias is None else bias.detach().float().contiguous()

    @classmethod
    def of(cls, conv: nn.Conv2d, input_shape: Sequence[int]) -> "_PackedConv":
        if conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise TypeError(f"unsupported convolution {conv}")
        return cls(conv.weight, conv.bias, input_shape, conv.padding, conv.stride, conv.groups)

    def __call__(self, x: torch.Tensor, unary: str = "none") -> torch.Tensor:
        scalars: List[float] = []
        if unary == "relu6":
            unary, scalars = "hardtanh", [0.0, 6.0]
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, unary, scalars, ""
        )

    def add(self, x: torch.Tensor, other: torch.Tensor, unary: Optional[str] = None) -> torch.Tensor:
        """unary(conv(x) + other); ``other`` has the output's shape."""
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            "add", None, unary, [], None,
        )


class _PackedResidualBlock:
    """torchvision BasicBlock / Bottleneck with folded batch norms: convs, ReLUs and the sum fused."""

    def __init__(self, block: nn.Module, shapes: Dict[nn.Module, Tuple[int, ...]]):
        names = ["conv1", "conv2"] + (["conv3"] if hasattr(block, "conv3") else [])
        for index in range(1, len(names) + 1):
            if not isinstance(getattr(block, f"bn{index}"), nn.Identity):
                raise TypeError(f"{type(block).__name__}.bn{index} is not folded")
        self.convs = [_PackedConv.of(getattr(block, name), shapes[getattr(block, name)]) for name in names]
        self.downsample = None
        if block.downsample is not None:
            if len(block.downsample) != 1 or not isinstance(block.downsample[0], nn.Conv2d):
                raise TypeError("downsample is not a single (folded) convolution")
            self.downsample = _PackedConv.of(block.downsample[0], shapes[block.downsample[0]])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        for conv in self.convs[:-1]:
            out = conv(out, "relu")
        return self.convs[-1].add(out, identity, "relu")


class _PackedResnetEncoder:
    """ResnetEncoder with folded batch norms: image (N, 3, H, W) channels_last -> its 5 feature maps."""

    def __init__(self, encoder: nn.Module, shapes: Dict[nn.Module, Tuple[int, ...]]):
        self._mean, self._std = IMAGENET_MEAN, IMAGENET_STD
        resnet = encoder.resnet
        if not isinstance(resnet.bn1, nn.Identity):
            raise TypeError("encoder batch norms are not folded")
        self.stem = _PackedConv.of(resnet.conv1, shapes[resnet.conv1])
        self.maxpool = resnet.maxpool
        self.layers = [
            [_PackedResidualBlock(block, shapes) for block in layer]
            for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        ]

    def __call__(self, image: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem((image - self._mean) / self._std, "relu")
        features = [x]
        x = self.maxpool(x)
        for layer in self.layers:
            for block in layer:
                x = block(x)
            features.append(x)
        return features


class _PackedConvBN:
    """networks.ConvBN with its batch norm folded: (asymmetric zero padding), convolution, ReLU6."""

    def __init__(self, module: nn.Module, shapes: Dict[nn.Module, Tuple[int, ...]]):
        if not isinstance(module.bn, nn.Identity):
            raise TypeError("EfficientNet batch norms are not folded")
        self.pad = tuple(module.pad.padding) if isinstance(module.pad, nn.ZeroPad2d) else None
        self.conv = _PackedConv.of(module.conv, shapes[module.conv])
        self.unary = "relu6" if module.relu6 else "none"

    def __call__(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.pad is not None:
            left, right, top, bottom = self.pad
            padded = torch.empty(
                (x.shape[0], x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right),
                dtype=x.dtype, device=x.device, memory_format=torch.channels_last,
            ).zero_()
            padded[:, :, top:top + x.shape[2], left:left + x.shape[3]] = x
            x = padded
        if residual is not None:
            return self.conv.add(x, residual)  # projections are linear: no activation after the sum
        return self.conv(x, self.unary)


class _PackedLite0Encoder:
    """EfficientNetLite0Encoder with folded batch norms, ReLU6 and residual sums fused into the convolutions."""

    def __init__(self, encoder: nn.Module, shapes: Dict[nn.Module, Tuple[int, ...]]):
        self._mean, self._std = EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
        self.feature_blocks = set(LITE0_FEATURE_BLOCKS)
        self.stem = _PackedConvBN(encoder.stem, shapes)
        self.blocks = [
            (
                None if block.expand is None else _PackedConvBN(block.expand, shapes),
                _PackedConvBN(block.depthwise, shapes),
                _PackedConvBN(block.project, shapes),
                block.residual,
            )
            for block in encoder.blocks
        ]

    def __call__(self, image: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem((image - self._mean) / self._std)
        features = []
        for index, (expand, depthwise, project, residual) in enumerate(self.blocks):
            out = x if expand is None else expand(x)
            x = project(depthwise(out), residual=x if residual else None)
            if index in self.feature_blocks:
                features.append(x)
        return features


def _packed_encoder(encoder: nn.Module, shapes: Dict[nn.Module, Tuple[int, ...]]):
    if isinstance(encoder, ResnetEncoder):
        return _PackedResnetEncoder(encoder, shapes)
    if isinstance(encoder, EfficientNetLite0Encoder):
        return _PackedLite0Encoder(encoder, shapes)
    raise TypeError(f"no fast CPU path for {type(encoder).__name__}")


def _empty_padded(like: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Uninitialised (N, channels, height + 2, width + 2) channels_last buffer."""
    return torch.empty(
        (like.shape[0], channels, height + 2, width + 2),
        dtype=like.dtype, device=like.device, memory_format=torch.channels_last,
    )


def _fill_border(padded: torch.Tensor, reflect: bool) -> torch.Tensor:
    """(N, C, H + 2, W + 2) with its interior filled -> 1-pixel border as ReflectionPad2d(1)
    (``reflect``) or ReplicationPad2d(1) would set it."""
    source = 2 if reflect else 1
    padded[:, :, 0, 1:-1] = padded[:, :, source, 1:-1]
    padded[:, :, -1, 1:-1] = padded[:, :, -1 - source, 1:-1]
    padded[:, :, :, 0] = padded[:, :, :, source]  # columns after rows: corners come out right
    padded[:, :, :, -1] = padded[:, :, :, -1 - source]
    return padded


def _elu_padded(x: torch.Tensor, reflect: bool) -> torch.Tensor:
    """ELU(x) (N, C, H, W), returned 1-pixel padded (reflect or replicate) in a new buffer."""
    padded = _empty_padded(x, x.shape[1], x.shape[2], x.shape[3])
    torch.maximum(x, elu_negative_part(x), out=padded[:, :, 1:-1, 1:-1])
    return _fill_border(padded, reflect)


class _UpsampledConv:
    """conv3x3(ReflectionPad2d(1)(nearest_2x(x))) from x replicate-padded, without upsampling x.

    weight: (C_out, C, 3, 3), bias: (C_out,) -> call: (N, C, h + 2, w + 2) -> (N, C_out, 2h, 2w).
    A reflected row of a nearest-upsampled map repeats its edge row, hence the replicate padding.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], input_shape: Sequence[int]):
        weight = weight.detach().float()
        self.out_channels = weight.shape[0]
        phases = [torch.einsum("ik,ockl,jl->ocij", _PHASE_TAPS[dy], weight, _PHASE_TAPS[dx]) for dy, dx in _PHASES]
        phase_bias = None if bias is None else bias.detach().float().repeat(len(_PHASES))
        self.conv = _PackedConv(torch.cat(phases), phase_bias, input_shape)

    def __call__(self, padded_source: torch.Tensor, add_to: Optional[torch.Tensor] = None) -> torch.Tensor:
        """-> the convolution, or ``add_to`` (N, C_out, 2h, 2w) plus the convolution, in place."""
        phases = self.conv(padded_source)  # (N, 4 C_out, h + 1, w + 1): phase (dy, dx) at offset (dy, dx)
        batch, _, height, width = padded_source.shape
        height, width, channels = height - 2, width - 2, self.out_channels
        out = add_to
        if out is None:
            out = torch.empty(
                (batch, channels, 2 * height, 2 * width),
                dtype=phases.dtype, device=phases.device, memory_format=torch.channels_last,
            )
        for index, (dy, dx) in enumerate(_PHASES):
            phase = phases[:, index * channels:(index + 1) * channels, dy:dy + height, dx:dx + width]
            if add_to is None:
                out[:, :, dy::2, dx::2] = phase
            else:
                out[:, :, dy::2, dx::2] += phase
        return out


class _DisparityHead:
    """ReflectConv3x3 to 1 channel + sigmoid, on an already padded input.

    A 1-output-channel convolution runs far below oneDNN's peak; instead one matrix product
    gives the 9 taps' partial sums at every padded pixel and 9 shifted adds combine them.
    """

    def __init__(self, conv: nn.Conv2d):
        if conv.out_channels != 1 or conv.kernel_size != (3, 3) or conv.padding != (0, 0) or conv.stride != (1, 1):
            raise TypeError("disparity head is not a padding-free 3x3 convolution to one channel")
        # (1, C, 3, 3) -> (9, C): row 3 * dy + dx holds the tap at offset (dy, dx).
        self.taps = conv.weight.detach().float()[0].permute(1, 2, 0).reshape(9, -1).contiguous()
        self.bias = float(conv.bias.detach()[0]) if conv.bias is not None else 0.0

    def __call__(self, padded: torch.Tensor) -> torch.Tensor:
        """(N, C, h + 2, w + 2) channels_last -> sigmoid disparity (N, 1, h, w)."""
        batch, channels, padded_height, padded_width = padded.shape
        height, width = padded_height - 2, padded_width - 2
        pixels = padded.permute(0, 2, 3, 1).reshape(-1, channels)  # a view for channels_last input
        partial = torch.mm(self.taps, pixels.t()).view(9, batch, padded_height, padded_width)
        out = partial[0, :, :height, :width].add(self.bias)
        for tap in range(1, 9):
            dy, dx = divmod(tap, 3)
            out.add_(partial[tap, :, dy:dy + height, dx:dx + width])
        return out.sigmoid_().unsqueeze(1)


def _run_recording_conv_inputs(net: nn.Module, image: torch.Tensor):
    """-> (every Conv2d's input shape, net's scale-0 disparity) for one forward pass of ``image``."""
    shapes: Dict[nn.Module, Tuple[int, ...]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda module, args: shapes.__setitem__(module, tuple(args[0].shape)))
        for module in net.modules()
        if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.inference_mode():
            return shapes, net(image)[0]
    finally:
        for hook in hooks:
            hook.remove()


class OneDnnDepthNet:
    """Inference-only CPU twin of a batch-norm-folded DepthNet (ResNet or EfficientNet-Lite0 encoder):
    the same outputs to ~1e-6.

    Weights are laid out for the recorded input shapes; other shapes (H, W >= 64) work, a little slower.
    Call: image (N, 3, H, W) float32 RGB in [0, 1], channels_last
    -> {scale: sigmoid disparity (N, 1, H / 2**scale, W / 2**scale)}.
    """

    def __init__(self, net: nn.Module, shapes: Dict[nn.Module, Tuple[int, ...]]):
        """``shapes``: each Conv2d of ``net`` -> the input shape to lay its weight out for."""
        self.encode = _packed_encoder(net.encoder, shapes)
        decoder = net.decoder
        self.reduce = [_PackedConv.of(block.conv.conv, shapes[block.conv.conv]) for block in decoder.reduce]
        self.upsampled = []  # the fuse convolutions' part that reads the upsampled map
        self.skip = []  # and the part that reads the skip connection (None at level 0)
        for step, block in enumerate(decoder.fuse):
            conv = block.conv.conv
            channels = decoder.reduce[step].conv.conv.out_channels
            batch, in_channels, padded_height, padded_width = shapes[conv]
            small = (batch, channels, (padded_height - 2) // 2 + 2, (padded_width - 2) // 2 + 2)
            self.upsampled.append(_UpsampledConv(conv.weight[:, :channels], conv.bias, small))
            skip_shape = (batch, in_channels - channels, padded_height, padded_width)
            self.skip.append(
                _PackedConv(conv.weight[:, channels:], None, skip_shape) if in_channels > channels else None
            )
        self.heads = {int(scale): _DisparityHead(head.conv) for scale, head in decoder.disparity_heads.items()}

    def __call__(self, image: torch.Tensor, output_scales: Optional[Sequence[int]] = None) -> Dict[int, torch.Tensor]:
        wanted = tuple(self.heads) if output_scales is None else tuple(output_scales)
        features = self.encode(image.contiguous(memory_format=torch.channels_last))
        outputs: Dict[int, torch.Tensor] = {}
        x = features[-1]
        padded = _empty_padded(x, x.shape[1], x.shape[2], x.shape[3])
        padded[:, :, 1:-1, 1:-1] = x
        _fill_border(padded, reflect=True)
        for step, level in enumerate(range(4, -1, -1)):
            source = _elu_padded(self.reduce[step](padded), reflect=False)
            fused = None
            if self.skip[step] is not None:
                skip = features[level - 1]
                skip_padded = _empty_padded(skip, skip.shape[1], skip.shape[2], skip.shape[3])
                skip_padded[:, :, 1:-1, 1:-1] = skip
                fused = self.skip[step](_fill_border(skip_padded, reflect=True))
            # (oneDNN's fused sum costs more than adding the 4 phases in place)
            fused = self.upsampled[step](source, add_to=fused)  # the bias is in here
            padded = _elu_padded(fused, reflect=True)
            if level in wanted:
                outputs[level] = self.heads[level](padded)
        return outputs



def build_fast_net(net: nn.Module, width: int, height: int) -> Optional[OneDnnDepthNet]:
    """The oneDNN twin of ``net`` (batch norms folded, on the CPU) for (width, height) inputs, checked
    against it once on a random image; None if unusable.

    The twin computes Monodepth2's decoder only: a network with sub-pixel upsampling, a semantic
    branch or a stereo head runs as the plain PyTorch network.
    """
    if not onednn_available():
        return None
    if not getattr(net, "is_default_architecture", True):
        _LOG.info("fast CPU path covers Monodepth2's decoder only; this model runs as the plain network")
        return None
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((1, 3, height, width), generator=generator).contiguous(memory_format=torch.channels_last)
    try:
        shapes, expected = _run_recording_conv_inputs(net, image)
        fast = OneDnnDepthNet(net, shapes)
        with torch.inference_mode():
            error = (fast(image, output_scales=(0,))[0] - expected).abs().max().item()
    except Exception as failure:  # a torch without these oneDNN ops: the plain network still works
        _LOG.warning("fast CPU path unavailable (%r); using the plain network", failure)
        return None
    if not error <= FAST_NET_TOLERANCE:
        _LOG.warning("fast CPU path differs from the network by %.2g; using the plain network", error)
        return None
    return fast
