"""Box: an axis-aligned box in the odom frame, the solid both scenes are built from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the odom frame."""

    minimum: Tuple[float, float, float]
    maximum: Tuple[float, float, float]
