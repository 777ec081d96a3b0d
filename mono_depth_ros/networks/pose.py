"""The pose network: an encoder on a pair of frames (6 input channels) + a small convolutional decoder
giving axis-angle and translation, and the optional camera head that predicts intrinsics (after
"Depth from Videos in the Wild")."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .choices import INTRINSICS_MODES
from .encoders import build_encoder

# Camera head (learned intrinsics). A fresh head predicts fx = fy = LEARNED_FOCAL_PRIOR * W (about a
# 64 degree horizontal field of view, square pixels) and the image centre as principal point.
LEARNED_FOCAL_PRIOR = 0.8
MIN_LEARNED_FOCAL = 0.1  # learned fx / W and fy / H stay above this (a 157 degree field of view): K stays invertible
PRINCIPAL_POINT_RANGE = 0.1  # learned cx, cy stay within +-10 % of the image size of its centre
REFINE_FOCAL_RANGE = 0.2  # refine: focal lengths within exp(+-0.2) (-18 %, +22 %) of the given ones
REFINE_PRINCIPAL_RANGE = 0.05  # refine: cx, cy within +-5 % of the image size of the given ones
CAMERA_HEAD_SCALE = 0.1  # output scale of the camera head (see CameraHead)


class PoseDecoder(nn.Module):
    """Relative pose from the bottleneck features of a frame pair.

    features: (B, C, h, w) -> (axis_angle (B, 3), translation (B, 3)).
    """

    def __init__(self, encoder_channels: int):
        super().__init__()
        self.squeeze = nn.Conv2d(encoder_channels, 256, 1)
        self.conv1 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 256, 3, padding=1)
        self.head = nn.Conv2d(256, 6, 1)

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.squeeze(features))
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        # Small output scale keeps initial poses near identity, which stabilises early training.
        pose = 0.01 * self.head(x).mean(dim=(2, 3))
        return pose[:, :3], pose[:, 3:]


class CameraHead(nn.Module):
    """Camera intrinsics from the pose encoder's bottleneck (after "Depth from Videos in the Wild").

    features: (B, C, h, w) -> raw codes (B, 4) for (fx, fy, cx, cy); intrinsics_from_camera_head
    turns them into K. Starts at zero, i.e. at the prior (learned) or at the given K (refine). The
    output is scaled down (as PoseDecoder's): Adam moves every one of the C weights by about the
    learning rate per step, which unscaled moved the focal length by tens of percent in two steps.
    """

    def __init__(self, encoder_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(encoder_channels, 4, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return CAMERA_HEAD_SCALE * self.conv(features).mean(dim=(2, 3))


def _inverse_softplus(value: float) -> float:
    return math.log(math.expm1(value))


def intrinsics_from_camera_head(raw: torch.Tensor, width: int, height: int,
                                given: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Camera-head codes -> K (B, 3, 3) of a (width x height) image, pixel-centre convention.

    raw: (B, 4). Without ``given`` (intrinsics: learned): fx = W (0.1 + softplus(r0 + b)), fy = H (0.1 +
    softplus(r1 + b')) with b, b' such that zero codes give fx = fy = LEARNED_FOCAL_PRIOR * W (the 0.1,
    MIN_LEARNED_FOCAL, keeps K invertible whatever the codes); cx = W (0.5 + 0.1 tanh r2) - 0.5,
    cy likewise (zero codes: the image centre). With ``given`` (B, 3, 3) (intrinsics: refine):
    fx = given fx * exp(0.2 tanh r0), fy likewise, cx = given cx + 0.05 W tanh r2, cy likewise.
    """
    raw = raw.float()
    if given is None:
        focal = LEARNED_FOCAL_PRIOR * width
        fx = width * (MIN_LEARNED_FOCAL + F.softplus(raw[:, 0] + _inverse_softplus(focal / width - MIN_LEARNED_FOCAL)))
        fy = height * (MIN_LEARNED_FOCAL + F.softplus(raw[:, 1] + _inverse_softplus(focal / height - MIN_LEARNED_FOCAL)))
        cx = width * (0.5 + PRINCIPAL_POINT_RANGE * torch.tanh(raw[:, 2])) - 0.5
        cy = height * (0.5 + PRINCIPAL_POINT_RANGE * torch.tanh(raw[:, 3])) - 0.5
    else:
        given = given.to(raw.dtype)
        fx = given[:, 0, 0] * torch.exp(REFINE_FOCAL_RANGE * torch.tanh(raw[:, 0]))
        fy = given[:, 1, 1] * torch.exp(REFINE_FOCAL_RANGE * torch.tanh(raw[:, 1]))
        cx = given[:, 0, 2] + REFINE_PRINCIPAL_RANGE * width * torch.tanh(raw[:, 2])
        cy = given[:, 1, 2] + REFINE_PRINCIPAL_RANGE * height * torch.tanh(raw[:, 3])
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one], dim=-1).reshape(-1, 3, 3)


class PoseNet(nn.Module):
    """Pose of the later frame relative to the earlier one.

    (earlier, later): (B, 3, H, W) each, RGB in [0, 1] -> (axis_angle (B, 3), translation (B, 3))
    describing ``T_later_earlier``: it maps points from the earlier camera frame into the
    later one, so for a camera moving forward (+z) the translation is about (0, 0, -speed * dt).
    With ``camera_head`` the network also predicts intrinsics: ``with_intrinsics=True`` adds the
    camera head's raw codes (B, 4) as a third output (see intrinsics_from_camera_head).
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, encoder: str = "resnet",
                 camera_head: bool = False):
        super().__init__()
        self.encoder = build_encoder(encoder, num_layers, pretrained, num_input_images=2)
        self.decoder = PoseDecoder(self.encoder.num_channels[-1])
        self.camera = CameraHead(self.encoder.num_channels[-1]) if camera_head else None

    def forward(self, earlier: torch.Tensor, later: torch.Tensor, with_intrinsics: bool = False):
        bottleneck = self.encoder(torch.cat([earlier, later], dim=1))[-1]
        axis_angle, translation = self.decoder(bottleneck)
        if not with_intrinsics:
            return axis_angle, translation
        if self.camera is None:
            raise ValueError("with_intrinsics needs a PoseNet built with camera_head=True")
        return axis_angle, translation, self.camera(bottleneck)
