"""CPU speed of the depth network per encoder (ResNet-18 vs EfficientNet-Lite0).

A script, not a test: it asserts nothing, it prints tables. For each encoder, network input size
and thread count it measures, interleaved (so that other load hits every row alike):
* inference: DepthEstimator.disparity (the node's forward: batch norms folded, channels_last),
  split into encoder and decoder;
* training: one forward + backward of DepthNet at batch 4 (all 4 scales), as the trainer runs it
  (channels_last), without the loss.

    .venv/bin/python benchmarks/bench_encoders.py [--frames 20] [--markdown]

Weights are random (speed does not depend on them). Run it on a quiet machine; results: docs/benchmarks.md, 'Encoders'.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Table  # noqa: E402

from mono_depth_ros.inference import DepthEstimator  # noqa: E402
from mono_depth_ros.model_file import LoadedModel, ModelMetadata  # noqa: E402
from mono_depth_ros.networks import DepthNet, encoder_label  # noqa: E402

ENCODERS = ("resnet", "efficientnet_lite0")
SIZES = ((320, 192), (640, 192))
THREADS = (1, 2)
TRAIN_BATCH = 4


def median_ms(samples: List[float]) -> str:
    return f"{statistics.median(samples) * 1e3:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="measured repetitions per row (default 20)")
    parser.add_argument("--train-steps", type=int, default=5, help="measured training steps per row (default 5)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    runs: Dict[tuple, Dict[str, Callable[[], None]]] = {}
    for encoder in ENCODERS:
        torch.manual_seed(0)
        net = DepthNet(encoder=encoder).eval()
        train_net = DepthNet(encoder=encoder).train().to(memory_format=torch.channels_last)
        for width, height in SIZES:
            metadata = ModelMetadata(encoder=encoder, input_width=width, input_height=height)
            estimator = DepthEstimator(LoadedModel(metadata, net, None, None), torch.device("cpu"))
            image = torch.rand(1, 3, height, width).contiguous(memory_format=torch.channels_last)
            batch = torch.rand(TRAIN_BATCH, 3, height, width).contiguous(memory_format=torch.channels_last)

            def forward(estimator=estimator, image=image):
                estimator.disparity(image)

            def encode(estimator=estimator, image=image):
                estimator.net.encoder(image)

            def train_step(train_net=train_net, batch=batch):
                train_net.zero_grad(set_to_none=True)
                sum(d.mean() for d in train_net(batch).values()).backward()

            runs[(encoder, width, height)] = {"forward": forward, "encoder": encode, "train": train_step}

    results: Dict[tuple, Dict[str, List[float]]] = {}
    for threads in THREADS:
        torch.set_num_threads(threads)
        for key, run in runs.items():
            for _ in range(2):  # warm-up (primitive caches, allocator)
                with torch.inference_mode():
                    run["forward"]()
                    run["encoder"]()
            results[(threads,) + key] = {"forward": [], "encoder": [], "train": []}
        for _ in range(args.frames):  # interleaved rows
            for key, run in runs.items():
                for name in ("forward", "encoder"):
                    with torch.inference_mode():
                        start = time.perf_counter()
                        run[name]()
                        results[(threads,) + key][name].append(time.perf_counter() - start)
        for key, run in runs.items():
            run["train"]()  # warm-up
        for _ in range(args.train_steps):
            for key, run in runs.items():
                start = time.perf_counter()
                run["train"]()
                results[(threads,) + key]["train"].append(time.perf_counter() - start)

    table = Table(
        f"Depth network on the CPU, median ms ({args.frames} inference / {args.train_steps} training repetitions)",
        ["encoder", "input", "threads", "inference forward", "of which encoder",
         f"train fwd+bwd, batch {TRAIN_BATCH}"],
    )
    for threads in THREADS:
        for (encoder, width, height), run in runs.items():
            samples = results[(threads, encoder, width, height)]
            table.add(encoder_label(encoder), f"{width}x{height}", threads, median_ms(samples["forward"]),
                      median_ms(samples["encoder"]), median_ms(samples["train"]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table.notes.append(f"torch {torch.__version__}, {os.cpu_count()} logical cores, load average after: {load:.2f}")
    print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
