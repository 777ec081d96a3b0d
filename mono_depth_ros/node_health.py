"""depth_node's health for /diagnostics: rates, stale frames, skips, latency, warnings in force.

Plain Python (no ROS import): the node records events as they happen and asks for a
:class:`HealthReport` once a second; mono_depth_ros.ros.diagnostics turns it into a
diagnostic_msgs/DiagnosticStatus. Times are monotonic seconds.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

# diagnostic_msgs/DiagnosticStatus levels.
OK, WARN, ERROR = 0, 1, 2
WINDOW_S = 5.0  # rates and latency over the last WINDOW_S seconds
NO_INPUT_WARN_S = 5.0  # no image for this long: WARN
WARNING_IN_FORCE_S = 10.0  # a warning logged this recently is listed as in force


@dataclass
class HealthReport:
    level: int
    message: str
    values: List[Tuple[str, str]] = field(default_factory=list)


class NodeHealth:
    """Counters and recent events of one node. Thread-safe: the executor records arrivals, the worker
    records outputs and skips, a timer reads reports."""

    def __init__(self, started_s: float, facts: Optional[Dict[str, str]] = None):
        self._lock = threading.Lock()
        self.started_s = started_s
        self.facts = dict(facts or {})  # fixed facts: device, backend, model, topics
        self.received = self.published = self.dropped = self.skipped = 0
        self._arrivals: Deque[float] = deque()
        self._outputs: Deque[Tuple[float, float]] = deque()  # (time, latency s)
        self._warnings: Dict[str, Tuple[float, str]] = {}  # cause -> (time, text)
        self.last_image_s: Optional[float] = None
        self.first_image_s: Optional[float] = None

    def _trim(self, now: float) -> None:
        while self._arrivals and now - self._arrivals[0] > WINDOW_S:
            self._arrivals.popleft()
        while self._outputs and now - self._outputs[0][0] > WINDOW_S:
            self._outputs.popleft()

    def image_received(self, now: float) -> None:
        with self._lock:
            self.received += 1
            self.last_image_s = now
            if self.first_image_s is None:
                self.first_image_s = now
            self._arrivals.append(now)
            self._trim(now)

    def frame_dropped(self) -> None:
        """A frame replaced by a newer one before the worker took it (stale)."""
        with self._lock:
            self.dropped += 1

    def frame_skipped(self) -> None:
        """A frame refused (bad image, camera_info, size, ...): the warning says why."""
        with self._lock:
            self.skipped += 1

    def frame_published(self, now: float, latency_s: float) -> None:
        """Outputs of a frame published ``latency_s`` after its image arrived."""
        with self._lock:
            self.published += 1
            self._outputs.append((now, latency_s))
            self._trim(now)

    def warned(self, now: float, cause: str, text: str) -> None:
        with self._lock:
            self._warnings[cause] = (now, text)
            if len(self._warnings) > 64:  # bound memory: keep the most recent causes
                for key, _ in sorted(self._warnings.items(), key=lambda item: item[1][0])[:-64]:
                    del self._warnings[key]

    def report(self, now: float) -> HealthReport:
        with self._lock:
            self._trim(now)
            span = min(WINDOW_S, max(now - self.started_s, 1e-9))
            input_hz = len(self._arrivals) / span
            output_hz = len(self._outputs) / span
            latencies = [latency for _, latency in self._outputs]
            in_force = [text for when, text in sorted(self._warnings.values()) if now - when <= WARNING_IN_FORCE_S]
            values = [
                ("input rate (Hz)", f"{input_hz:.2f}"),
                ("output rate (Hz)", f"{output_hz:.2f}"),
                ("frames received", str(self.received)),
                ("frames published", str(self.published)),
                ("frames dropped as stale", str(self.dropped)),
                ("frames skipped", str(self.skipped)),
                ("latency mean (ms)", f"{1e3 * sum(latencies) / len(latencies):.1f}" if latencies else "-"),
                ("latency max (ms)", f"{1e3 * max(latencies):.1f}" if latencies else "-"),
            ]
            values += list(self.facts.items())
            values += [(f"warning {index + 1}", text) for index, text in enumerate(in_force)]
            silent_s = now - (self.last_image_s if self.last_image_s is not None else self.started_s)
        if silent_s >= NO_INPUT_WARN_S:
            heard = "no image yet" if self.last_image_s is None else f"no image for {silent_s:.0f} s"
            return HealthReport(WARN, f"{heard}: check the camera and the image remapping", values)
        if in_force:
            return HealthReport(WARN, f"{len(in_force)} warning(s) in the last {WARNING_IN_FORCE_S:.0f} s: "
                                      + in_force[-1][:120], values)
        return HealthReport(OK, f"publishing at {output_hz:.1f} Hz", values)
