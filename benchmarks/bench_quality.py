#!/usr/bin/env python3
"""Does `train` with its defaults learn, and is its metric label true? Measured on a street it never saw.

A script, not a test: it asserts nothing, it prints one table. It renders a training drive and a
held-out drive down a *different* street (another seed: other layout, textures and motion) with
the sample recording's renderer, trains every mode with the trainer's defaults at a fixed budget
(only the budget is set: image size, batch, steps; and the frame cache folder), evaluates each
model file on the held-out drive with `evaluate`'s protocol (Garg crop, 80 m cap) and prints:

* abs_rel median-scaled (the shape of the depth) and unscaled (what the node publishes), δ<1.25;
* the true scale of the model (median over frames of median(ground truth) / median(prediction));
* what the model file says: metric or relative, the trainer's own held-out scale check, converged;
* the two baselines that learn nothing: a constant depth and a flat ground plane.

Rows: mono (the bag has /odom: odometry-scaled warps and velocity supervision), mono without
odometry (data.odometry_topic=none), stereo, mono+stereo, and mono+stereo with a deliberately
halved baseline or with odometry 3x too long (the check must label both relative). ``--steps``
sets the budget (default 400 at 320x96, batch 8, the issue's reference); ``--long-steps N`` adds
the same rows at N steps.

With ``--monodepth2 PATH`` (a local checkout of nianticlabs/monodepth2, imported at run time; nothing
of it is copied here) the same runs are made with Monodepth2's own trainer code on the same batches
(see bench_quality_monodepth2.py), converted with `import_monodepth2` and evaluated the same way.

    .venv/bin/python benchmarks/bench_quality.py [--steps 400] [--long-steps 2000] [--only MODE ...]
        [--monodepth2 PATH] [--out out/quality] [--markdown] [--json FILE]

On a 2-core CPU each 400-step row takes 5-10 minutes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Table, load_average  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (mode, extra overrides); {half_baseline} is filled in from --baseline.
RUNS: Dict[str, tuple] = {
    "mono": ("mono", []),
    "mono_no_odometry": ("mono", ["data.odometry_topic=none"]),
    "stereo": ("stereo", []),
    "mono+stereo": ("mono+stereo", []),
}
# Deliberately broken scales: the stereo baseline set to half the true one, or a copy of the
# training bag whose odometry distances are 3x too long, so the two scale sources of mono+stereo
# disagree. The trainer must notice and label the model relative. (One source alone cannot be
# caught without ground truth: the bag is the only truth the trainer has.)
BROKEN_RUNS: Dict[str, tuple] = {
    "mono+stereo_half_baseline": ("mono+stereo", ["data.baseline_m={half_baseline}"]),
    "mono+stereo_odometry_x3": ("mono+stereo", []),
}
# Rows trained on a copy of the training bag with its odometry scaled by this factor.
ODOMETRY_FACTOR = {"mono+stereo_odometry_x3": 3.0}
ALL_RUNS = {**RUNS, **BROKEN_RUNS}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="training steps per row (default 400)")
    parser.add_argument("--long-steps", type=int, default=0, help="also run every row with this many steps")
    parser.add_argument("--only", nargs="+", choices=list(ALL_RUNS), metavar="NAME",
                        help=f"rows to run (default all): {', '.join(ALL_RUNS)}")
    parser.add_argument("--width", type=int, default=320, help="training width (default 320)")
    parser.add_argument("--height", type=int, default=96, help="training height (default 96)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--camera", default="640x192", help="rendered camera size (default 640x192)")
    parser.add_argument("--baseline", type=float, default=0.54, help="stereo baseline in metres (default 0.54)")
    parser.add_argument("--speed", type=float, default=5.0, help="mean speed of the drives in m/s (default 5)")
    parser.add_argument("--train-frames", type=int, default=300)
    parser.add_argument("--heldout-frames", type=int, default=60)
    parser.add_argument("--train-seed", type=int, default=10, help="street of the training drive")
    parser.add_argument("--heldout-seed", type=int, default=11, help="street of the held-out drive")
    parser.add_argument("--monodepth2", default="", help="monodepth2 checkout: add rows trained by its own code")
    parser.add_argument("--skip-ours", action="store_true", help="with --monodepth2: only Monodepth2's rows")
    parser.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                        help="add the rows of earlier runs (their --json files) to the table")
    parser.add_argument("--out", default=str(ROOT / "out" / "quality"))
    parser.add_argument("--json", default="", help="also write the rows here (default: OUT/quality.json)")
    parser.add_argument("--markdown", action="store_true")
    return parser.parse_args(argv)


def recordings(out: Path, args) -> tuple:
    """(training bag, held-out bag), rendered once per set of recording options."""
    from mono_depth_ros.simulation import write_synthetic_bag

    width, height = (int(value) for value in args.camera.split("x"))
    wanted = {"camera": args.camera, "baseline": args.baseline, "speed": args.speed, "train": [args.train_frames, args.train_seed],
              "heldout": [args.heldout_frames, args.heldout_seed]}
    marker = out / "recordings.json"
    train_bag, heldout_bag = out / "train_drive", out / "heldout_drive"
    if marker.is_file() and json.loads(marker.read_text()) == wanted and train_bag.exists() and heldout_bag.exists():
        print(f"reusing the recordings in {out}", flush=True)
        return train_bag, heldout_bag
    for stale in [train_bag, heldout_bag, *out.glob(f"{train_bag.name}_odometry_x*")]:
        shutil.rmtree(stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for path, frames, seed in ((train_bag, args.train_frames, args.train_seed),
                               (heldout_bag, args.heldout_frames, args.heldout_seed)):
        print(f"rendering {frames} frames of street seed {seed} -> {path}", flush=True)
        write_synthetic_bag(path, num_frames=frames, width=width, height=height, baseline_m=args.baseline,
                            speed_mps=args.speed, seed=seed, scene="street")
    marker.write_text(json.dumps(wanted))
    return train_bag, heldout_bag


def scaled_odometry_copy(bag: Path, factor: float) -> Path:
    """A copy of ``bag`` whose nav_msgs/Odometry positions and linear velocities are ``factor`` x
    the recorded ones (every other message unchanged), written once beside it."""
    from mono_depth_ros.bagio import BagReader
    from mono_depth_ros.bagio.writer import BagWriter
    from mono_depth_ros.msgtypes import ODOMETRY_TYPE

    copy = bag.with_name(f"{bag.name}_odometry_x{factor:g}")
    if copy.exists():
        return copy
    reader = BagReader(bag)
    partial = copy.with_name(copy.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with BagWriter(partial, exists_hint="remove it") as writer:
        for topic, msgtype, stamp, msg in reader.messages(sorted(reader.topics)):
            if msgtype == ODOMETRY_TYPE:
                for vector in (msg.pose.pose.position, msg.twist.twist.linear):
                    vector.x, vector.y, vector.z = vector.x * factor, vector.y * factor, vector.z * factor
            writer.write(topic, msgtype, stamp, msg)
    partial.rename(copy)
    return copy


def true_scale(evaluation: Dict) -> Optional[float]:
    """Median ground truth / median prediction (evaluate's median-scaled row records it)."""
    rows = [row for row in evaluation["rows"] if row["method"] == "model" and row["scaling"] == "median-scaled"]
    return rows[0].get("scale_median") if rows else None


def row_from(name: str, trainer: str, steps: int, evaluation: Dict, metadata, wall: float) -> Dict:
    model_rows = {row["scaling"]: row for row in evaluation["rows"] if row["method"] == "model"}
    training = metadata.training or {}
    checks = training.get("scale_checks") or []
    return {
        "name": name, "trainer": trainer, "steps": steps,
        "abs_rel_median_scaled": model_rows["median-scaled"]["abs_rel"],
        "abs_rel_unscaled": model_rows["unscaled"]["abs_rel"],
        "a1_median_scaled": model_rows["median-scaled"]["a1"],
        "true_scale": true_scale(evaluation),
        "metric": bool(metadata.metric),
        "metric_reason": training.get("metric_reason", ""),
        "scale_checks": checks,
        "converged": training.get("converged"),
        "train_wall_s": round(wall, 1),
    }


def run_ours(name: str, out: Path, train_bag: Path, heldout_bag: Path, steps: int, args) -> Dict:
    from mono_depth_ros.model_file import read_model_metadata
    from mono_depth_ros_training.config import load_config
    from mono_depth_ros_training.evaluate import evaluate_bag
    from mono_depth_ros_training.run import train

    mode, extra = ALL_RUNS[name]
    extra = [item.format(half_baseline=args.baseline / 2) for item in extra]
    run_dir = out / "runs" / f"{name}_{steps}"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [f"mode={mode}", f"data.width={args.width}", f"data.height={args.height}",
                 f"optim.batch_size={args.batch}", f"optim.max_steps={steps}", f"data.cache_dir={out / 'frame_cache'}",
                 "data.num_workers=0", "log.image_every=0"] + extra
    config = load_config(None, overrides)  # the built-in defaults (== config/train.yaml) plus the budget
    print(f"\n== ours: {name} ({steps} steps): {' '.join(overrides)}", flush=True)
    started = time.perf_counter()
    result = train(config, run_dir, [str(train_bag)], log=lambda line: print(f"    {line}", flush=True))
    wall = time.perf_counter() - started
    evaluation = evaluate_bag(heldout_bag, model=result.model_path, log=lambda line: None)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return row_from(name, "ours (defaults)", steps, evaluation, read_model_metadata(result.model_path), wall)


def baseline_rows(heldout_bag: Path) -> List[Dict]:
    from mono_depth_ros_training.evaluate import evaluate_bag
    from mono_depth_ros.simulation import STREET_CAMERA_HEIGHT_M

    evaluation = evaluate_bag(heldout_bag, baselines=["constant", "ground-plane"],
                              camera_height=STREET_CAMERA_HEIGHT_M, log=lambda line: None)
    rows = []
    for row in evaluation["rows"]:
        if row.get("proper"):
            rows.append({"name": row["method"], "scaling": row["scaling"], "abs_rel": row["abs_rel"], "a1": row["a1"]})
    return rows


def _fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: Sequence[Dict], baselines: Sequence[Dict], markdown: bool, args) -> str:
    header = ["run", "trainer", "steps", "abs_rel median-scaled", "abs_rel unscaled", "δ<1.25 (m-s)",
              "true scale", "label", "held-out scale check", "converged", "train min"]
    table = Table(f"Held-out street (Garg crop, 80 m cap), training at {args.width}x{args.height}, batch {args.batch}",
                  header)
    for row in rows:
        checks = "; ".join(
            f"{check['source'].split()[0]} {_fmt(check.get('ratio'), 2)}±{_fmt(check.get('spread'), 2)}"
            f"{'' if check['passed'] else ' (failed)' if check.get('conclusive', True) else ' (inconclusive)'}"
            for check in row["scale_checks"]) or "-"
        table.add(row["name"], row["trainer"], row["steps"], _fmt(row["abs_rel_median_scaled"]),
                  _fmt(row["abs_rel_unscaled"]), _fmt(row["a1_median_scaled"]), _fmt(row["true_scale"], 2),
                  "metric" if row["metric"] else "relative", checks,
                  {True: "yes", False: "no"}.get(row["converged"], "-"), f"{row['train_wall_s'] / 60:.1f}")
    for base in baselines:
        label = {"constant": "constant depth", "ground-plane": "flat ground plane"}.get(base["name"], base["name"])
        table.add(label, "(no training)", "-", _fmt(base["abs_rel"]) if base["scaling"] == "median-scaled" else "-",
                  _fmt(base["abs_rel"]) if base["scaling"] != "median-scaled" else "-", _fmt(base["a1"]), "-", "-",
                  "-", "-", "-")
    table.notes.append("true scale: median(ground truth) / median(prediction) over the held-out frames; 1.00 = "
                       "metric. A run labelled metric must be within 20 % of 1.")
    table.notes.append("held-out scale check: the trainer's own check on its validation split (no ground truth): "
                       "the depth multiple that best rebuilds the other view from the stereo baseline / odometry.")
    table.notes.append(f"load average at the end: {load_average()}")
    for row in rows:
        if not row["metric"] and row["metric_reason"]:
            table.notes.append(f"{row['name']} ({row['trainer']}, {row['steps']} steps): relative because "
                               f"{row['metric_reason']}")
    return table.render(markdown)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    names = args.only or list(ALL_RUNS)
    train_bag, heldout_bag = recordings(out, args)
    budgets = [args.steps] + ([args.long_steps] if args.long_steps else [])
    rows = []
    for earlier in args.merge:
        rows.extend(json.loads(Path(earlier).read_text())["rows"])
    for steps in budgets:
        for name in names:
            if not args.skip_ours:
                bag = scaled_odometry_copy(train_bag, ODOMETRY_FACTOR[name]) if name in ODOMETRY_FACTOR else train_bag
                rows.append(run_ours(name, out, bag, heldout_bag, steps, args))
            if args.monodepth2 and name in RUNS:
                from bench_quality_monodepth2 import run_monodepth2

                rows.append(run_monodepth2(name, out, train_bag, heldout_bag, steps, args, row_from))
    baselines = baseline_rows(heldout_bag)
    json_path = Path(args.json) if args.json else out / "quality.json"
    json_path.write_text(json.dumps({"rows": rows, "baselines": baselines}, indent=2))
    print()
    print(format_table(rows, baselines, args.markdown, args))
    print(f"rows as JSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
