"""Pairing each image with its own camera_info (same header stamp), no rclpy.

image_transport's CameraSubscriber pairs image and camera_info by exact stamp and drops images
whose camera_info never comes. Drivers publish the image first, then its camera_info, so a node
that simply takes "the newest camera_info" uses the previous frame's: wrong for the one frame
where the calibration, size or frame_id changes. This pairs by stamp when the camera's stream
shows it can (its camera_infos carry the images' stamps), waiting briefly for a late one, and
otherwise falls back to the newest camera_info, so a driver that stamps camera_info differently,
or publishes it at a lower rate, still works and never waits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, Optional, Tuple, TypeVar

Stamp = Tuple[int, int]  # (sec, nanosec) of a header stamp
Info = TypeVar("Info")

# How many recent camera_infos are kept to look up by stamp (a few frames of out-of-order delivery).
INFO_HISTORY = 16
# The longest an image waits for its own camera_info, once the stream is known to send one per image.
INFO_WAIT_S = 0.1
# Consecutive images that got their own camera_info before waiting is worth it: a camera_info
# published every Nth frame matches now and then but must not make every other frame wait.
MATCHES_BEFORE_WAITING = 3


def header_stamp(msg) -> Stamp:
    """A message's header stamp as a hashable (sec, nanosec)."""
    stamp = msg.header.stamp
    return int(stamp.sec), int(stamp.nanosec)


class CameraInfoPairing(Generic[Info]):
    """Recent camera_infos by stamp; :meth:`info_for` gives an image's own one, else the newest.

    ``add`` is called from the subscription callback, ``info_for`` from the thread that processes
    images (it may block up to ``wait_s``); both are thread-safe.
    """

    def __init__(
        self,
        history: int = INFO_HISTORY,
        wait_s: float = INFO_WAIT_S,
        matches_before_waiting: int = MATCHES_BEFORE_WAITING,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        self._history = history
        self._wait_s = wait_s
        self._matches_before_waiting = matches_before_waiting
        self._condition = threading.Condition()
        self._recent: "OrderedDict[Stamp, Info]" = OrderedDict()
        self._newest: Optional[Info] = None
        self._matched_in_a_row = 0
        self._unanswered: Optional[Stamp] = None  # the last image that took the newest camera_info
        self._closed = False

    @property
    def newest(self) -> Optional[Info]:
        with self._condition:
            return self._newest

    @property
    def waits(self) -> bool:
        """Whether an image whose camera_info has not arrived yet waits for it."""
        with self._condition:
            return self._waits()

    def _waits(self) -> bool:
        return self._matched_in_a_row >= self._matches_before_waiting and not self._closed

    def add(self, stamp: Stamp, info: Info) -> None:
        with self._condition:
            self._recent[stamp] = info
            self._recent.move_to_end(stamp)
            while len(self._recent) > self._history:
                self._recent.popitem(last=False)
            self._newest = info
            if self._unanswered == stamp:  # it came after its image was processed: the stream pairs
                self._matched_in_a_row += 1
                self._unanswered = None
            self._condition.notify_all()

    def info_for(self, stamp: Stamp) -> Optional[Info]:
        """The camera_info with this image's stamp, else the newest one (None before any arrived)."""
        with self._condition:
            if self._unanswered is not None:  # the previous image's own camera_info never came
                self._matched_in_a_row = 0
                self._unanswered = None
            if stamp not in self._recent and self._waits():
                self._condition.wait_for(lambda: stamp in self._recent or self._closed, self._wait_s)
                if stamp not in self._recent:
                    self._matched_in_a_row = 0  # stop waiting until the stream pairs again
                    return self._newest
            if stamp in self._recent:
                self._matched_in_a_row += 1
                return self._recent[stamp]
            self._unanswered = stamp
            return self._newest

    def close(self) -> None:
        """Wake a waiting :meth:`info_for` and never wait again (node shutdown)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
