"""`train` command: bags in, deployable model file out (the last line printed is its path).

    train --bag PATH [--bag PATH ...] --out DIR [--config FILE] [--resume] [--seed N] [section.key=value ...]

Also `ros2 run mono_depth_ros train ...`. Errors a user can fix (bags, configuration, run
directory, a checkpoint or model file that cannot be written or is refused) print one clear
message and exit with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

EXIT_USAGE = 2

DESCRIPTION = (
    "Train a monocular depth model self-supervised (Monodepth2) from rosbag2 recordings and "
    "write the model file depth_node loads. Outputs in --out: checkpoints/, tensorboard/, "
    "config.yaml and model.safetensors (its path is the last line printed)."
)
EPILOG = (
    "overrides: section.key=value, e.g. mode=stereo optim.batch_size=4 data.width=320 data.height=96 "
    "model.pretrained=false (keys and defaults: config/train.yaml). "
    "Multi-GPU: torchrun --nproc_per_node=N $(which train) --bag ... --out ..."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--bag", action="append", required=True, metavar="PATH",
                        help="rosbag2 directory or storage file (.mcap, .db3); repeat for several bags")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory (created if missing)")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="training config YAML (default: the installed config/train.yaml, else built-in defaults)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (its saved config is the base)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (CPU runs repeat exactly)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    return parser


def resolve_config(args: argparse.Namespace):
    """Config for this invocation: base file (or, on --resume, the run's saved config) + overrides."""
    from .config import ConfigError, config_from_dict, find_default_config_file, load_config
    from .checkpoints import resume_checkpoint

    overrides: List[str] = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.resume and args.config is None:
        checkpoint = resume_checkpoint(args.out)
        try:
            base = config_from_dict(checkpoint["config"], warn_renamed=False)
        except ConfigError as error:
            raise ConfigError(f"the checkpoint's saved config is not valid for this version: {error}") from error
        return load_config(None, overrides, base=base)
    path = args.config
    if path is None:
        found = find_default_config_file()
        path = str(found) if found is not None else None
    return load_config(path, overrides)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing so that --help is instant.
    from mono_depth_ros.bagio import BagError

    from .config import ConfigError
    from .errors import RunError
    from .run import train

    try:
        config = resolve_config(args)
        result = train(config, args.out, args.bag, resume=args.resume)
    except (BagError, ConfigError, RunError) as error:
        print(f"train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("train: interrupted; continue later with --resume", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line from one process
        sys.stdout.flush()
        print(result.model_path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
