"""config/depth.rviz shows what depth_node publishes, in RViz2's config schema (no RViz needed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

RVIZ_CONFIG = Path(__file__).resolve().parent.parent / "config" / "depth.rviz"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(RVIZ_CONFIG.read_text())


@pytest.fixture(scope="module")
def displays(config) -> dict:
    return {display["Name"]: display for display in config["Visualization Manager"]["Displays"]}


def _topic(display: dict) -> str:
    # RViz2 (Humble and later) stores a topic as a mapping with its QoS; RViz 1 stored a plain string.
    topic = display["Topic"]
    assert isinstance(topic, dict), f"{display['Name']}: RViz2 wants Topic: {{Value: ..., Reliability Policy: ...}}"
    return topic["Value"]


def test_cloud_display_shows_points_in_colour(displays):
    clouds = [d for d in displays.values() if d["Class"] == "rviz_default_plugins/PointCloud2"]
    assert len(clouds) == 1
    cloud = clouds[0]
    assert _topic(cloud) == "points"
    assert cloud["Enabled"] is True
    assert cloud["Color Transformer"] == "RGB8"  # the node packs colour in an 'rgb' field
    assert cloud["Position Transformer"] == "XYZ"
    assert cloud["Topic"]["Reliability Policy"] == "Reliable"  # best-effort loses large clouds


def test_image_displays_show_the_depth_images(displays):
    images = {_topic(d): d for d in displays.values() if d["Class"] == "rviz_default_plugins/Image"}
    assert images["depth_colored"]["Enabled"] is True
    assert set(images) <= {"depth_colored", "depth"}


def test_topics_are_relative_so_they_follow_the_launch_namespace(displays):
    for display in displays.values():
        if "Topic" in display:
            assert not _topic(display).startswith("/"), display["Name"]


def test_fixed_frame_and_views_are_rviz2_classes(config):
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    assert manager["Views"]["Current"]["Class"].startswith("rviz_default_plugins/")
    for panel in config["Panels"]:
        assert panel["Class"].startswith("rviz_common/")
    for display in manager["Displays"]:
        assert display["Class"].startswith("rviz_default_plugins/"), display["Class"]  # not RViz 1's rviz/...

