#!/usr/bin/env python3
"""`make demo`: sample recording -> training -> depth_node over DDS -> report (see training/demo.py).

The trainer is imported as mono_depth_ros_training, the name setup.py installs the folder training/
under: run `make setup` (or `pip install -e .`) first; `make demo` does.
"""
import sys

try:
    from mono_depth_ros_training.demo import main
except ImportError as error:
    if error.name not in ("mono_depth_ros_training", "mono_depth_ros"):
        raise
    sys.exit(f"scripts/demo.py: {error}: install this checkout first with `make setup` (or `pip install -e .`)")

if __name__ == "__main__":
    sys.exit(main())
