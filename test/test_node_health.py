"""NodeHealth: the figures and levels depth_node publishes on /diagnostics, from known event times."""
from __future__ import annotations

import pytest

from mono_depth_ros.node_health import NO_INPUT_WARN_S, OK, WARN, WARNING_IN_FORCE_S, WINDOW_S, NodeHealth


def values(report) -> dict:
    return dict(report.values)


def test_rates_latency_and_counters_over_the_window():
    health = NodeHealth(started_s=100.0, facts={"device": "cpu"})
    for index in range(50):  # 10 Hz for 5 s, every other frame published 40 ms after it arrived
        now = 100.0 + 0.1 * index
        health.image_received(now)
        if index % 2 == 0:
            health.frame_published(now + 0.04, 0.04)
        else:
            health.frame_dropped()
    report = health.report(105.0)
    assert report.level == OK and report.message.startswith("publishing at 5.0 Hz")
    table = values(report)
    assert table["input rate (Hz)"] == f"{50 / WINDOW_S:.2f}"
    assert table["output rate (Hz)"] == f"{25 / WINDOW_S:.2f}"
    assert (table["frames received"], table["frames published"], table["frames dropped as stale"]) == ("50", "25", "25")
    assert table["latency mean (ms)"] == "40.0" and table["latency max (ms)"] == "40.0"
    assert table["device"] == "cpu"
    # Events older than the window no longer count in the rates.
    later = values(health.report(100.0 + 4.9 + WINDOW_S + 0.5))
    assert later["input rate (Hz)"] == "0.00" and later["latency mean (ms)"] == "-"


def test_silence_is_a_warning_after_its_grace_period():
    health = NodeHealth(started_s=0.0)
    assert health.report(NO_INPUT_WARN_S - 0.5).level == OK
    report = health.report(NO_INPUT_WARN_S + 0.5)
    assert report.level == WARN and report.message.startswith("no image yet")
    health.image_received(10.0)
    assert health.report(10.0 + NO_INPUT_WARN_S + 2).message.startswith(f"no image for {NO_INPUT_WARN_S + 2:.0f} s")


def test_warnings_stay_in_force_for_a_while_each_cause_listed_once():
    health = NodeHealth(started_s=0.0)
    health.image_received(1.0)
    health.warned(1.0, "no_camera_info", "no CameraInfo received yet")
    health.warned(1.5, "no_camera_info", "no CameraInfo received yet")
    health.warned(2.0, "camera_info: cam: D", "camera_info D is not finite")
    health.frame_skipped()
    report = health.report(2.5)
    assert report.level == WARN and "2 warning(s)" in report.message
    table = values(report)
    assert table["warning 1"] == "no CameraInfo received yet" and table["warning 2"] == "camera_info D is not finite"
    assert table["frames skipped"] == "1"
    health.image_received(2.0 + WARNING_IN_FORCE_S)
    assert health.report(2.1 + WARNING_IN_FORCE_S).level == OK


@pytest.mark.parametrize("causes", [70])
def test_many_causes_keep_memory_bounded(causes):
    health = NodeHealth(started_s=0.0)
    for index in range(causes):
        health.warned(float(index) * 0.01, f"cause {index}", f"text {index}")
    assert len([key for key, _ in health.report(1.0).values if key.startswith("warning")]) <= 64
