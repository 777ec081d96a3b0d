"""`make demo` (training/demo.py) end to end, short: recording, training, real node over DDS, report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("drop_large_outputs")


def test_short_demo_trains_runs_the_node_and_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out), "--train-frames", "24",
         "--heldout-frames", "6", "--width", "128", "--height", "96", "--no-check",
         "data.width=128", "data.height=96", "optim.max_steps=2", "optim.batch_size=2", "model.pretrained=false",
         "data.num_workers=0"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert step in result.stdout
    report = json.loads((out / "report.json").read_text())
    # Every held-out image went through the node over DDS and came back as depth and points.
    assert report["node"]["images_played"] == 6
    assert report["node"]["depth_received"] >= 5 and report["node"]["points_received"] >= 5
    rows = {(row["method"], row["scaling"]): row for row in report["rows"]}
    assert {method for method, _ in rows} == {"depth_node", "constant", "ground-plane"}
    for row in rows.values():
        assert row["frames"] >= 5
        assert 0 <= row["a1"] <= row["a2"] <= row["a3"] <= 1
        assert row["abs_rel"] > 0 and np.isfinite(row["rmse"])
    # The proper rows: two training steps prove no scale, so the model is relative (median-scaled);
    # the constant is median-scaled.
    assert rows[("depth_node", "median-scaled")]["proper"] and not rows[("depth_node", "unscaled")]["proper"]
    assert rows[("constant", "median-scaled")]["proper"]
    assert rows[("ground-plane", "unscaled")]["proper"]
    assert "abs_rel: trained model" in result.stdout

    grid = cv2.imread(str(out / "comparison.png"))
    assert grid.shape[1] == 3 * 128 and grid.shape[0] == 96 * min(4, report["node"]["depth_received"])
    ply = (out / "points.ply").read_bytes()
    assert ply.startswith(b"ply\n")
    vertices = int(ply.split(b"element vertex ")[1].split(b"\n")[0])
    render = cv2.imread(str(out / "points.png"))
    drawn = int((~np.all(render == 40, axis=2)).sum())
    # Two training steps give arbitrary depth (much of it beyond max_depth: no point), so only
    # consistency is checked here; test_report.py checks the rendering geometry.
    assert (drawn > 0) == (vertices > 0)
    assert "depth_node" in (out / "report.md").read_text()
    # The node's output bag is a real rosbag2 recording of its three topics.
    from mono_depth_ros.bagio import BagReader

    with BagReader(out / "node_output") as reader:
        topics = {topic for topic, _, _, _ in reader.messages(["/demo/depth", "/demo/points", "/demo/depth_colored"])}
    assert topics == {"/demo/depth", "/demo/points", "/demo/depth_colored"}


def test_demo_refuses_a_folder_that_is_not_an_earlier_demo(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "not an earlier demo" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
