"""Ablation of the trainer extensions on the sample recording: the same training budget for each.

A script, not a test: it asserts nothing, it prints one table. Every row trains with the demo's
recipe (config/train_demo.yaml: stereo, EfficientNet-Lite0 at 192x128, batch 8, 200 steps, one-cycle
lr, seed 0) on the demo's training drive, with one switch on (or all of them), then evaluates the
model file on the held-out drive with `evaluate`'s protocol (Garg crop, 80 m cap; the 7 metrics of
each model's proper row: unscaled, as every row here is metric) and reports training images/s (the
trainer's own measurement, the median over steps after the first).

    .venv/bin/python benchmarks/bench_ablation.py [--steps 200] [--only NAME ...] [--markdown]
                                                  [--out out/ablation] [--json FILE]

Learned (and refined) intrinsics need temporal frames: those rows, "all" and the reference row
"baseline_mono_stereo" train in mode mono+stereo (the pose network, which carries the camera head,
costs time of its own: compare them with that reference, not with the stereo baseline). The stereo
baseline runs two depth forward passes per sample (left-right consistency); the stereo head one.
The intrinsics rows also print the learned K next to the recording's exact K. The semantic branch's
COCO/VOC weights are downloaded by torchvision: offline, the row trains with random frozen features
and says so. The recordings and each row's run directory are kept in --out; a second invocation
reuses the recordings (and the decoded-frame cache).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mono_depth_ros_training.metrics import DEPTH_METRIC_NAMES, METRIC_LABELS  # noqa: E402

WEATHER_PROBABILITY = 0.3  # the weather row: share of training samples with one effect

# name -> (what it is, config overrides on top of config/train_demo.yaml)
VARIANTS: Dict[str, tuple] = {
    "baseline": ("demo recipe (stereo, two depth passes per sample)", []),
    "baseline_mono_stereo": ("reference for the intrinsics rows: mode mono+stereo", ["mode=mono+stereo"]),
    "learned_intrinsics": ("model.intrinsics=learned (mono+stereo)", ["mode=mono+stereo", "model.intrinsics=learned"]),
    "refine_intrinsics": ("model.intrinsics=refine (mono+stereo)", ["mode=mono+stereo", "model.intrinsics=refine"]),
    "pixel_shuffle": ("model.upsampling=pixel_shuffle", ["model.upsampling=pixel_shuffle"]),
    "weather": (f"data.weather_probability={WEATHER_PROBABILITY}", [f"data.weather_probability={WEATHER_PROBABILITY}"]),
    "semantic": ("model.semantic=true", ["model.semantic=true"]),
    "stereo_head": ("model.stereo_head=true", ["model.stereo_head=true"]),
    "all": ("all switches (mono+stereo, learned K)", [
        "mode=mono+stereo", "model.intrinsics=learned", "model.upsampling=pixel_shuffle",
        f"data.weather_probability={WEATHER_PROBABILITY}", "model.semantic=true", "model.stereo_head=true",
    ]),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=0, help="training steps per row (default: the demo recipe's 200)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="NAME",
                        help=f"rows to run (default all): {', '.join(VARIANTS)}")
    parser.add_argument("--out", default=str(ROOT / "out" / "ablation"), help="recordings and run directories")
    parser.add_argument("--train-frames", type=int, default=300, help="frames of the training drive (demo: 300)")
    parser.add_argument("--heldout-frames", type=int, default=60, help="frames of the held-out drive (demo: 60)")
    parser.add_argument("--width", type=int, default=320, help="rendered camera width (demo: 320)")
    parser.add_argument("--height", type=int, default=192, help="rendered camera height (demo: 192)")
    parser.add_argument("--json", default="", help="also write the rows as JSON here (default: OUT/ablation.json)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser.parse_args(argv)


def recordings(out: Path, args) -> tuple:
    """The demo's two drives in ``out`` (generated once; an earlier run's are reused)."""
    from mono_depth_ros_training.demo import generate_recordings

    train_bag, heldout_bag = out / "sample_train", out / "sample_heldout"
    marker = out / "recordings.json"
    wanted = {"train_frames": args.train_frames, "heldout_frames": args.heldout_frames,
              "width": args.width, "height": args.height}
    if train_bag.exists() and heldout_bag.exists() and marker.is_file() and json.loads(marker.read_text()) == wanted:
        print(f"reusing the recordings in {out}", flush=True)
        return train_bag, heldout_bag
    import shutil

    for path in (train_bag, heldout_bag):
        shutil.rmtree(path, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    generate_recordings(out, args)
    marker.write_text(json.dumps(wanted))
    return train_bag, heldout_bag


def images_per_second(run_dir: Path) -> Optional[float]:
    """Median of the trainer's train/images_per_s after its first step (TensorBoard), or None."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if "train/images_per_s" not in events.Tags().get("scalars", []):
        return None
    values = [event.value for event in events.Scalars("train/images_per_s") if event.step > 1]
    return statistics.median(values) if values else None


def run_variant(name: str, out: Path, train_bag: Path, heldout_bag: Path, steps: int) -> Dict:
    import shutil

    from mono_depth_ros_training.config import load_config
    from mono_depth_ros_training.demo import DEFAULT_CONFIG, find_config
    from mono_depth_ros_training.evaluate import evaluate_bag
    from mono_depth_ros_training.run import train
    from mono_depth_ros.model_file import read_model_metadata

    description, overrides = VARIANTS[name]
    run_dir = out / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [f"data.cache_dir={out / 'frame_cache'}", "log.log_every=1", "log.image_every=0"] + overrides
    if steps:
        overrides.append(f"optim.max_steps={steps}")
    config = load_config(str(find_config(DEFAULT_CONFIG)), overrides)
    print(f"\n== {name}: {description} ({config.mode}, {config.optim.max_steps} steps)", flush=True)
    log_lines: List[str] = []

    def log(message: str) -> None:
        log_lines.append(message)
        print(f"    {message}", flush=True)

    started = time.perf_counter()
    result = train(config, run_dir, [str(train_bag)], log=log)
    wall = time.perf_counter() - started
    report = evaluate_bag(heldout_bag, model=result.model_path, log=log)
    proper = next(row for row in report["rows"] if row["method"] == "model" and row["proper"])
    metadata = read_model_metadata(result.model_path)
    throughput = images_per_second(run_dir)
    row = {
        "name": name,
        "description": description,
        "mode": config.mode,
        "steps": result.step,
        "scaling": proper["scaling"],
        "frames": proper["frames"],
        **{metric: proper[metric] for metric in DEPTH_METRIC_NAMES},
        "images_per_s": throughput,
        "train_wall_s": round(wall, 1),
        "intrinsics": result.intrinsics or None,
        "semantic_pretrained": metadata.training.get("semantic_pretrained"),
        "pretrained": metadata.training.get("pretrained"),
    }
    if throughput is None:  # too few steps for the trainer's measurement: wall clock, start-up included
        row["images_per_s"] = result.step * config.optim.batch_size / wall
        row["images_per_s_from_wall_clock"] = True
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # ~50 MB each; the model file stays
    return row


def format_table(rows: Sequence[Dict], markdown: bool) -> str:
    baseline = {row["mode"]: row for row in rows if row["name"] in ("baseline", "baseline_mono_stereo")}
    header = ["variant", "mode", "steps"] + [METRIC_LABELS[m] for m in DEPTH_METRIC_NAMES] + ["train img/s", "abs_rel vs ref"]
    table = Table("Trainer extensions on the sample recording (held-out drive, Garg crop, 80 m cap, unscaled)", header)
    for row in rows:
        reference = baseline.get(row["mode"])
        if reference is None or reference is row:
            delta = "(reference)" if reference is row else "-"
        else:
            delta = f"{(row['abs_rel'] - reference['abs_rel']) / reference['abs_rel']:+.1%}"
        rate = f"{row['images_per_s']:.1f}" + ("*" if row.get("images_per_s_from_wall_clock") else "")
        table.add(row["name"], row["mode"], row["steps"], *[f"{row[m]:.3f}" for m in DEPTH_METRIC_NAMES], rate, delta)
    table.notes.append("abs_rel vs ref: relative change against the baseline of the same mode "
                       "(stereo: baseline; mono+stereo: baseline_mono_stereo). Lower abs_rel, sq_rel, rmse, "
                       "rmse_log are better; higher δ are better.")
    if any(row.get("images_per_s_from_wall_clock") for row in rows):
        table.notes.append("* images/s from the wall clock of the whole run (start-up included): too few steps "
                           "for the trainer's own measurement.")
    for row in rows:
        if row.get("intrinsics"):
            learned, calibration = row["intrinsics"]["learned"], row["intrinsics"].get("calibration")
            text = ", ".join(
                f"{label} {value:.3f}" + (f" (true {calibration[i]:.3f}, {value / calibration[i] - 1:+.1%})"
                                           if calibration else "")
                for i, (label, value) in enumerate(zip(("fx/W", "fy/H", "cx/W", "cy/H"), learned))
            )
            table.notes.append(f"{row['name']}: learned K {text}")
        if row.get("semantic_pretrained") is False:
            table.notes.append(f"{row['name']}: the semantic branch had random frozen weights (COCO/VOC weights "
                               "could not be downloaded): this row does not measure semantic guidance.")
        if row.get("pretrained") is False:
            table.notes.append(f"{row['name']}: the encoder had no ImageNet weights (random initialisation).")
    return table.render(markdown)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    names = args.only or list(VARIANTS)
    train_bag, heldout_bag = recordings(out, args)
    rows = []
    for name in names:
        rows.append(run_variant(name, out, train_bag, heldout_bag, args.steps))
    json_path = Path(args.json) if args.json else out / "ablation.json"
    json_path.write_text(json.dumps(rows, indent=2))
    print()
    print(format_table(rows, args.markdown))
    print(f"rows as JSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
