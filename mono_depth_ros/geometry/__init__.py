"""Geometry (moved from geometry.py; split into modules next)."""
from .camera import *  # noqa: F401,F403
