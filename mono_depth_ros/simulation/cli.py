"""`sample_recording` command: write a rosbag2 recording of a camera driving down a rendered street.

    sample_recording --out DIR [--frames 300] [--width 320 --height 192] [--rate 10]
                     [--storage mcap|sqlite3] [--seed 0] [--baseline 0.25] [--no-stereo]
                     [--no-depth] [--compressed] [--scene street|corridor]

Topics: /camera/image_raw + /camera/camera_info (exact K), /camera/depth (ground truth,
32FC1 metres, +inf for sky, same stamps), /camera_right/image_raw + /camera_right/camera_info
(P[3] = -fx * baseline), /odom (nav_msgs/Odometry, twice the image rate). Deterministic: the
same flags give the same image data. Errors a user can fix print one message and exit with
status 2. The last line printed is the bag directory.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

EXIT_USAGE = 2

DESCRIPTION = (
    "Write a rosbag2 recording (mcap by default) of a camera driving down a rendered street with "
    "exact ground-truth depth, stereo and odometry: sample data for `train` and the depth node."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sample_recording", description=DESCRIPTION)
    parser.add_argument("--out", required=True, metavar="DIR", help="bag directory to create (must not exist)")
    parser.add_argument("--frames", type=int, default=300, help="camera frames (default 300: 30 s at 10 Hz)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--height", type=int, default=192, help="image height in pixels (default 192)")
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz (default 10; /odom runs at twice it)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    parser.add_argument("--seed", type=int, default=0, help="scene layout, textures and motion (default 0)")
    parser.add_argument("--baseline", type=float, default=0.25, help="stereo baseline in metres (default 0.25)")
    parser.add_argument("--speed", type=float, default=1.25,
                        help="mean forward speed in m/s (default 1.25; it varies between 0.4x and 1.6x)")
    parser.add_argument("--stop-frames", type=int, default=None,
                        help="frames standing still in the middle (default: about 7%% of --frames; 0 = none)")
    parser.add_argument("--scene", choices=("street", "corridor"), default="street", help="what to render (default street)")
    parser.add_argument("--no-stereo", action="store_true", help="no right camera")
    parser.add_argument("--no-depth", action="store_true", help="no /camera/depth ground truth")
    parser.add_argument("--compressed", action="store_true",
                        help="images as sensor_msgs/CompressedImage (jpeg) on .../image_raw/compressed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def check_arguments(args: argparse.Namespace) -> Optional[str]:
    """The first problem with the arguments, as a message for the user, or None."""
    if Path(args.out).exists():
        return f"--out {args.out} already exists; choose a new directory (sample_recording never overwrites)"
    if args.frames < 1:
        return f"--frames must be at least 1, got {args.frames}"
    if args.width < 8 or args.height < 8:
        return f"--width and --height must be at least 8 pixels, got {args.width}x{args.height}"
    if not args.rate > 0:
        return f"--rate must be positive, got {args.rate}"
    if not args.speed > 0:
        return f"--speed must be positive, got {args.speed}"
    if not args.no_stereo and not args.baseline > 0:
        return f"--baseline must be positive, got {args.baseline} (or use --no-stereo)"
    if args.stop_frames is not None and args.stop_frames < 0:
        return f"--stop-frames must be >= 0, got {args.stop_frames}"
    if args.scene == "corridor" and args.stop_frames:
        return "--stop-frames is for --scene street"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_arguments(args)
    if problem:
        print(f"sample_recording: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    from .bag import write_synthetic_bag

    stop_frames: Optional[int] = args.stop_frames
    if args.scene == "corridor":
        stop_frames = None
    progress_bar = None
    if not args.quiet:
        from tqdm import tqdm

        progress_bar = tqdm(total=args.frames, unit="frame", desc="rendering", file=sys.stderr)
    started = time.perf_counter()
    try:
        path = write_synthetic_bag(
            args.out,
            num_frames=args.frames,
            width=args.width,
            height=args.height,
            storage=args.storage,
            rate_hz=args.rate,
            speed_mps=args.speed,
            stereo=not args.no_stereo,
            baseline_m=args.baseline,
            depth=not args.no_depth,
            compressed=args.compressed,
            seed=args.seed,
            scene=args.scene,
            stop_frames=stop_frames,
            progress=progress_bar.update if progress_bar is not None else None,
        )
    except (ValueError, FileExistsError) as error:
        print(f"sample_recording: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if progress_bar is not None:
            progress_bar.close()
    cameras: List[str] = ["left"] + ([] if args.no_stereo else ["right"])
    print(
        f"wrote {args.frames} frames ({args.width}x{args.height}, {' + '.join(cameras)}"
        f"{', depth' if not args.no_depth else ''}, odometry) of a {args.scene} in {time.perf_counter() - started:.1f} s"
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
