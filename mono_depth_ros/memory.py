"""Process-wide glibc malloc tuning for CPU PyTorch loops (no ROS import).

By default glibc serves large blocks with fresh mmap()s, trims the freed heap top and gives
threads their own arenas whose emptied heaps it unmaps: every frame (node) or step (trainer)
then re-faults its multi-MB tensors as zeroed pages. Measured on a 2-core VM: 3-20 ms of
kernel time per 640x192 forward, and more than the loss itself per training step.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc mallopt() parameters
_TUNED = False


def keep_freed_memory_in_process(mmap_threshold_bytes: int = 64 << 20, trim_threshold_bytes: int = 256 << 20) -> None:
    """Serve blocks up to ``mmap_threshold_bytes`` from the heap, keep up to ``trim_threshold_bytes``
    of freed memory (-1: never trim) and make threads started from now on share one arena.

    Process-wide and first-call-wins (later calls do nothing); call it before other threads start
    (for the node: before rclpy.init). Linux/glibc only; elsewhere a no-op.
    """
    global _TUNED
    if _TUNED or not sys.platform.startswith("linux"):
        return
    _TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_bytes))
        libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold_bytes))
        libc.mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        pass


def release_freed_memory() -> None:
    """Give the heap's free memory back to the system now (glibc's malloc_trim).

    For after a one-off burst, such as loading a model: the file's bytes and the loader's copies are
    freed, but keep_freed_memory_in_process keeps up to its trim threshold of them in the process
    (measured in docs/benchmarks.md, "Node memory").
    Linux/glibc only; elsewhere a no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
