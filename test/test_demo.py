"""`make demo` (scripts/demo.py) end to end, small: model, frames, real node over DDS, outputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_writes_depth_images_cloud_and_summary(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out), "--frames", "2",
         "--width", "320", "--height", "240", "--timeout", "90"],
        capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_sent"] == summary["frames_received"] == 2
    for frame in summary["frames"]:
        assert frame["size"] == [320, 240] and frame["encoding"] == "32FC1"
    assert summary["points_in_ply"] > 0
    assert (out / "points.ply").read_bytes().startswith(b"ply\n")
    assert (out / "frame01_depth.png").stat().st_size > 0
    assert "[4/4]" in result.stdout
