#!/usr/bin/env python3
"""How long `sample_recording` takes: rendering a street and writing the bag, per image size.

For each size, writes a stereo street recording (left + right images, depth, odometry) with
the same function the command uses, into a temporary directory, and prints a table: wall
time, the process's CPU time (less sensitive to other load on the machine), frames per
second, and the bag's size.

    benchmarks/bench_sample_recording.py [--frames 300] [--sizes 320x192,640x384] [--storage mcap] [--markdown]

A script, not a test: it asserts nothing. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from common import Table, load_average  # noqa: E402

from mono_depth_ros.simulation import storage_file, write_synthetic_bag  # noqa: E402


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            width, height = (int(value) for value in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"sizes are WIDTHxHEIGHT separated by commas, got '{item}'") from None
        sizes.append((width, height))
    return sizes



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="camera frames per recording (default 300)")
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("320x192,640x384"),
                        help="image sizes, WIDTHxHEIGHT,... (default 320x192,640x384)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)

    table = Table(
        f"sample_recording: {args.frames} stereo frames of a street ({args.storage}, with depth and odometry)",
        ["resolution", "frames", "renders", "wall s", "CPU s", "frames/s (wall)", "bag MB"],
    )
    table.notes.append(f"load average (1/5/15 min) before: {load_average()}")
    work = Path(tempfile.mkdtemp(prefix="bench_sample_recording_"))
    try:
        for width, height in args.sizes:
            path = work / f"street_{width}x{height}"
            wall, cpu = time.perf_counter(), time.process_time()
            write_synthetic_bag(path, scene="street", num_frames=args.frames, width=width, height=height,
                                speed_mps=1.25, baseline_m=0.25, storage=args.storage)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            size_mb = storage_file(path).stat().st_size / 1e6
            table.add(f"{width}x{height}", args.frames, 2 * args.frames, f"{wall:.1f}", f"{cpu:.1f}",
                      f"{args.frames / wall:.1f}", f"{size_mb:.0f}")
            shutil.rmtree(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table.notes.append(f"load average after: {load_average()}; {os.cpu_count()} CPUs")
    print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
