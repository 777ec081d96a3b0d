"""Weather augmentation: rain, snow, fog and sun flare on image tensors (plain PyTorch, any device).

Like colour jitter, an effect is drawn once per sample (:func:`sample_weather`) and then applied
with the same parameters and the same streak / flake / flare pattern to every frame of the sample,
so the frames stay photometrically consistent with each other; the trainer feeds the result to the
networks only, never to the images the photometric loss compares.

Written here rather than taken from a library: kornia (Apache-2.0) has rain and snow but no fog or
sun flare and is not among this package's dependencies; albumentations' current versions are not
under a permissive licence. The effects follow the usual recipes (streaks of a slanted line kernel,
flakes and a white veil, the atmospheric scattering model I = J t + A (1 - t), a glow and ghost discs
screen-blended over the image).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

WEATHER_EFFECTS = ("rain", "snow", "fog", "sun_flare")


def _uniform(low: float, high: float, generator: Optional[torch.Generator]) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


def _random_points(count: int, height: int, width: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """(1, 1, H, W) map with ``count`` random pixels set to random strengths in [0.6, 1]."""
    seeds = torch.zeros(height * width)
    positions = torch.randint(0, height * width, (count,), generator=generator)
    seeds[positions] = 0.6 + 0.4 * torch.rand(count, generator=generator)
    return seeds.view(1, 1, height, width)


def _line_kernel(length: float, angle: float) -> torch.Tensor:
    """(1, 1, k, k) kernel of ones along a line of ``length`` pixels, ``angle`` radians from vertical."""
    size = 2 * int(math.ceil(length / 2)) + 1
    kernel = torch.zeros(size, size)
    centre = size // 2
    for t in torch.linspace(-length / 2, length / 2, max(2, int(math.ceil(length)) * 2)).tolist():
        column = int(round(centre + t * math.sin(angle)))
        row = int(round(centre + t * math.cos(angle)))
        if 0 <= row < size and 0 <= column < size:
            kernel[row, column] = 1.0
    return kernel.view(1, 1, size, size)


def _blur3(images: torch.Tensor) -> torch.Tensor:
    """3x3 box blur with replicated borders; (N, C, H, W) -> (N, C, H, W)."""
    return F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel_size=3, stride=1)


class WeatherEffect:
    """One effect with all its random parameters fixed. Call: images (N, 3, H, W) in [0, 1] -> the same
    effect on each image, (N, 3, H, W) in [0, 1] (a new tensor; the input is not modified)."""

    name = ""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images).clamp_(0.0, 1.0)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Rain(WeatherEffect):
    """Slanted semi-transparent streaks over a darker, slightly blurred view."""

    name = "rain"

    def __init__(self, height: int, width: int, generator: Optional[torch.Generator] = None):
        drops = max(1, int(_uniform(0.002, 0.008, generator) * height * width))
        length = _uniform(0.05, 0.15, generator) * height
        angle = math.radians(_uniform(-20.0, 20.0, generator))
        kernel = _line_kernel(max(length, 2.0), angle)
        streaks = F.conv2d(_random_points(drops, height, width, generator), kernel, padding=kernel.shape[-1] // 2)
        self.streaks = streaks.clamp_(0.0, 1.0)  # (1, 1, H, W)
        self.opacity = _uniform(0.4, 0.7, generator)
        self.brightness = _uniform(0.7, 0.9, generator)
        self.colour = _uniform(0.7, 0.9, generator)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        alpha = self.streaks.to(images) * self.opacity
        view = _blur3(images) * self.brightness
        return view * (1.0 - alpha) + self.colour * alpha


class Snow(WeatherEffect):
    """White flakes (1-3 pixels, soft edges) over a whitish veil."""

    name = "snow"

    def __init__(self, height: int, width: int, generator: Optional[torch.Generator] = None):
        flakes = max(1, int(_uniform(0.003, 0.012, generator) * height * width))
        points = _random_points(flakes, height, width, generator)
        large = (torch.rand((1, 1, height, width), generator=generator) < 0.3).float()
        grown = torch.maximum(points, F.max_pool2d(points, 3, stride=1, padding=1) * large)
        self.flakes = _blur3(grown).mul_(1.5).clamp_(0.0, 1.0)  # (1, 1, H, W)
        self.veil = _uniform(0.05, 0.25, generator)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        flakes = self.flakes.to(images)
        hazy = images * (1.0 - self.veil) + 0.9 * self.veil
        return hazy * (1.0 - flakes) + flakes


class Fog(WeatherEffect):
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-density * d): d is a stand-in for depth that
    grows towards the top of the image (the horizon is far, the road near), with patchy variation."""

    name = "fog"

    def __init__(self, height: int, width: int, generator: Optional[torch.Generator] = None):
        density = _uniform(0.4, 1.5, generator)
        rows = torch.linspace(1.0, 0.2, height).view(1, 1, height, 1).expand(1, 1, height, width)
        patches = F.interpolate(torch.rand((1, 1, 4, 6), generator=generator), size=(height, width),
                                mode="bilinear", align_corners=False)
        self.transmission = torch.exp(-density * rows * (0.7 + 0.6 * patches))  # (1, 1, H, W)
        self.airlight = _uniform(0.6, 0.9, generator)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        t = self.transmission.to(images)
        return images * t + self.airlight * (1.0 - t)


class SunFlare(WeatherEffect):
    """A warm glow around a sun in the upper half and a few ghost discs on the line through the image
    centre, screen-blended (1 - (1 - I)(1 - flare))."""

    name = "sun_flare"

    def __init__(self, height: int, width: int, generator: Optional[torch.Generator] = None):
        sun_x, sun_y = _uniform(0.0, width, generator), _uniform(0.0, 0.5 * height, generator)
        ys = torch.arange(height, dtype=torch.float32).view(height, 1)
        xs = torch.arange(width, dtype=torch.float32).view(1, width)
        radius = _uniform(0.15, 0.35, generator) * width
        flare = _uniform(0.6, 1.0, generator) * torch.exp(-((xs - sun_x) ** 2 + (ys - sun_y) ** 2) / radius ** 2)
        centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
        for _ in range(int(_uniform(3, 7, generator))):
            along = _uniform(0.3, 1.8, generator)
            ghost_x = sun_x + along * (centre_x - sun_x)
            ghost_y = sun_y + along * (centre_y - sun_y)
            ghost_radius = _uniform(0.02, 0.08, generator) * width
            distance = torch.sqrt((xs - ghost_x) ** 2 + (ys - ghost_y) ** 2)
            disc = torch.clamp(ghost_radius + 1.0 - distance, 0.0, 1.0)  # 1 inside, a 1-pixel soft edge
            flare = flare + _uniform(0.1, 0.25, generator) * disc
        tint = torch.tensor([1.0, _uniform(0.85, 1.0, generator), _uniform(0.6, 0.9, generator)]).view(3, 1, 1)
        self.flare = (flare.clamp(0.0, 1.0) * tint).unsqueeze(0)  # (1, 3, H, W)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 - (1.0 - images) * (1.0 - self.flare.to(images))


_EFFECTS = {effect.name: effect for effect in (Rain, Snow, Fog, SunFlare)}


def sample_weather(effects: Sequence[str], height: int, width: int,
                   generator: Optional[torch.Generator] = None) -> WeatherEffect:
    """One of ``effects`` (names from WEATHER_EFFECTS, equally likely) with random parameters and
    pattern for (height x width) images; apply it to all frames of a sample."""
    if not effects:
        raise ValueError(f"no weather effect to choose from; name some of {', '.join(WEATHER_EFFECTS)}")
    unknown = [name for name in effects if name not in _EFFECTS]
    if unknown:
        raise ValueError(f"unknown weather effect {unknown[0]!r}; choose from {', '.join(WEATHER_EFFECTS)}")
    index = int(torch.randint(0, len(effects), (), generator=generator))
    return _EFFECTS[effects[index]](height, width, generator)
