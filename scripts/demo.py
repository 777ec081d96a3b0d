#!/usr/bin/env python3
"""`make demo`: sample recording -> training -> depth_node over DDS -> report (see training/demo.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from training.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
