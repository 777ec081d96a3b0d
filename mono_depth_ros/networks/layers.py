"""Building blocks shared by the networks: reflection-padded 3x3 convolution, ELU (the network's and
the ONNX export's variants), first-layer filters for stacked frames, and the error
raised when pretrained weights cannot be loaded."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be loaded (usually: offline)."""


# Share of the first-layer filters given to the difference between stacked frames (see stacked_frame_filters).
FRAME_DIFFERENCE_SHARE = 1.0


def stacked_frame_filters(weight: torch.Tensor, num_input_images: int,
                          difference_share: float = FRAME_DIFFERENCE_SHARE) -> torch.Tensor:
    """First-layer filters for ``num_input_images`` frames stacked on the channel axis.

    weight: (C_out, 3, k, k) single-image (pretrained or random) filters -> (C_out, 3 * n, k, k).
    Frame i gets ``weight / n + difference_share * c_i * weight`` with c evenly spaced in [-1, 1]
    (sum 0): a static pair still gives the single-image response, and a moving pair adds the
    filters applied to the frame difference (for two frames and share 1: W later + W (later - earlier) / 2).
    Monodepth2 spreads the filters evenly (share 0). The pose encoder is then exactly symmetric in
    its frames and the symmetry breaks only as fast as gradients separate the halves (0.3 % after 400
    steps): a short run learns a typical motion from appearance and ignores which frame came first.
    Measured on the street drive (mono, 400 steps, 96x64, 40 held-out frames): direction error 14 deg with share 0,
    13 deg with 0.25, 9 deg with 1 (benchmarks/bench_odometry.py; docs/node.md, "Visual odometry").
    """
    if num_input_images == 1:
        return weight.clone()
    spread = torch.linspace(-1.0, 1.0, num_input_images, dtype=weight.dtype, device=weight.device)
    parts = [weight / num_input_images + difference_share * float(c) * weight for c in spread]
    return torch.cat(parts, dim=1)


class ReflectConv3x3(nn.Module):
    """3x3 convolution after one pixel of reflection padding (no border artefacts)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


def elu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """ELU (alpha 1). On the CPU, torch's ELU goes through expm1, which is not vectorised
    and costs ~8x more than exp; exp(x) - 1 differs from it by < 1e-7 here.

    ``inplace`` lets the result overwrite ``x`` when no gradient is recorded (callers that own
    ``x``, such as :class:`ConvELU`); by default ``x`` is never modified, like F.elu.
    """
    overwrite = inplace and not torch.is_grad_enabled()
    if x.is_cuda:
        return F.elu(x, inplace=overwrite)
    if not torch.is_grad_enabled():
        negative = torch.clamp(x, max=0.0).exp_().sub_(1.0)
        positive = x.clamp_(min=0.0) if overwrite else torch.clamp(x, min=0.0)
        return positive.add_(negative)
    positive = x > 0
    # where() rather than clamp(max=0): clamp's gradient is 0 at x == 0, ELU's is 1.
    negative = torch.where(positive, torch.zeros_like(x), x)
    return torch.where(positive, x, torch.exp(negative) - 1.0)


class ConvELU(nn.Module):
    """ReflectConv3x3 followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ReflectConv3x3(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elu(self.conv(x), inplace=True)  # the conv output is ours to overwrite


class ExportConvELU(nn.Module):
    """ConvELU with torch's ELU, which exports as one ONNX Elu node (:func:`elu` computes it from
    exp on the CPU for speed)."""

    def __init__(self, block: ConvELU):
        super().__init__()
        self.conv = block.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.conv(x))
