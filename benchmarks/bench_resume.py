#!/usr/bin/env python3
"""What a SIGKILL in the middle of a checkpoint write costs: steps lost, time to resume, exactness.

For each configuration, in child processes (the `train` command, same thread settings):
1. an uninterrupted run of --steps steps, a checkpoint every --checkpoint-every steps;
2. the same run, killed with SIGKILL while half of its --kill-at-save'th checkpoint is written;
3. `train --resume` of the killed run, to the end.
Prints a table: steps lost to the kill (step reached minus the step of the checkpoint that
survived), time from process start to the end of the first training step (fresh run and
resumed run), the largest absolute weight difference between the resumed and the uninterrupted
final weights, whether the optimiser states are identical, and the checkpoint's size.

    benchmarks/bench_resume.py [--configs tiny,resnet18] [--steps 12] [--checkpoint-every 4] [--kill-at-save 2]
                               [--threads 1] [--markdown]

A script, not a test: it asserts nothing. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (run as a script)
from common import Table, load_average  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from mono_depth_ros.simulation import write_synthetic_bag  # noqa: E402
from mono_depth_ros_training.checkpoints import CHECKPOINT_NAME, load_checkpoint  # noqa: E402

# name -> (description, bag size (w, h), train overrides)
CONFIGS: Dict[str, Tuple[str, Tuple[int, int], List[str]]] = {
    "tiny": ("stereo, EfficientNet-Lite0, 64x64, batch 2", (64, 64),
             ["mode=stereo", "model.encoder=efficientnet_lite0", "data.width=64", "data.height=64",
              "optim.batch_size=2"]),
    "resnet18": ("mono, ResNet-18 depth + pose, 128x64, batch 2", (128, 64),
                 ["mode=mono", "data.width=128", "data.height=64", "optim.batch_size=2"]),
}

# The child: the train command, with two optional hooks. FIRST_STEP_FILE: write time.time() when
# the first training step of the process has finished. HANG_AT_SAVE=n: the n-th torch.save writes
# half its bytes, notes the step it was saving in HANG_MARKER, and sleeps until killed.
BOOTSTRAP = r"""
import io, os, sys, time
import torch
torch.set_num_threads(int(os.environ["TRAIN_THREADS"]))
from mono_depth_ros_training import trainer
first_step_file = os.environ.get("FIRST_STEP_FILE")
if first_step_file:
    real_step = trainer.Trainer.train_step
    def timed_step(self, batch):
        output = real_step(self, batch)
        if not os.path.exists(first_step_file):
            with open(first_step_file, "w") as note:
                note.write(repr(time.time()))
        return output
    trainer.Trainer.train_step = timed_step
hang_at = int(os.environ.get("HANG_AT_SAVE", "0"))
if hang_at:
    real_save = torch.save
    calls = []
    def save(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) < hang_at:
            return real_save(obj, handle, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        marker = os.environ["HANG_MARKER"]
        with open(marker + ".part", "w") as note:
            note.write(str(obj["step"]))
        os.replace(marker + ".part", marker)
        time.sleep(3600)
    torch.save = save
from mono_depth_ros_training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def child_env(threads: int, **extra) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TRAIN_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    env.update(extra)
    return env


def run_to_end(argv: List[str], threads: int, first_step_file: Path) -> float:
    """Run the train command; -> seconds from process start to the end of its first training step."""
    start = time.time()
    result = subprocess.run([sys.executable, "-c", BOOTSTRAP, *argv], cwd=REPO, capture_output=True, text=True,
                            env=child_env(threads, FIRST_STEP_FILE=str(first_step_file)))
    if result.returncode != 0:
        raise RuntimeError(f"train {' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return float(first_step_file.read_text()) - start


def run_and_kill(argv: List[str], threads: int, save_number: int, marker: Path) -> int:
    """Run the train command and SIGKILL it mid-write of checkpoint `save_number`; -> the step it was saving."""
    child = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             env=child_env(threads, HANG_AT_SAVE=str(save_number), HANG_MARKER=str(marker)))
    try:
        while not marker.exists():
            if child.poll() is not None:
                raise RuntimeError(f"the run ended before checkpoint {save_number}:\n{child.stderr.read()[-3000:]}")
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    return int(marker.read_text())


def compare(expected: dict, actual: dict) -> Tuple[float, bool]:
    """-> (max |weight difference| over the networks, optimiser states identical)."""
    difference = 0.0
    for net in ("depth_net", "pose_net"):
        if expected.get(net) is None:
            continue
        for key, value in expected[net].items():
            if value.is_floating_point():
                difference = max(difference, float((actual[net][key] - value).abs().max()))
    states_equal = expected["optimizer"]["state"].keys() == actual["optimizer"]["state"].keys() and all(
        torch.equal(actual["optimizer"]["state"][index][name], state[name])
        for index, state in expected["optimizer"]["state"].items() for name in state
    )
    return difference, states_equal



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,resnet18",
                        help=f"comma-separated, from {', '.join(CONFIGS)} (default tiny,resnet18)")
    parser.add_argument("--steps", type=int, default=12, help="training steps of each run (default 12)")
    parser.add_argument("--checkpoint-every", type=int, default=4, help="steps between checkpoints (default 4)")
    parser.add_argument("--kill-at-save", type=int, default=2,
                        help="SIGKILL during this checkpoint write, counted from 1 (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads per process (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if args.kill_at_save * args.checkpoint_every > args.steps:
        parser.error("--kill-at-save x --checkpoint-every must not exceed --steps (the run must reach that checkpoint)")

    table = Table(
        f"SIGKILL during checkpoint write {args.kill_at_save}, then --resume ({args.steps} steps, a checkpoint "
        f"every {args.checkpoint_every}, {args.threads} thread(s) per process, CPU)",
        ["config", "killed saving step", "resumed from step", "steps lost", "start to 1st step, fresh s",
         "start to 1st step, resumed s", "max abs weight diff vs uninterrupted", "optimizer state equal", "checkpoint MB"],
    )
    table.notes.append(f"load average (1/5/15 min) before: {load_average()}")
    work = Path(tempfile.mkdtemp(prefix="bench_resume_"))
    try:
        for name in names:
            description, (width, height), overrides = CONFIGS[name]
            # Enough frames that the run ends inside its first epoch (an epoch end adds a checkpoint).
            bag = write_synthetic_bag(work / f"bag_{name}", num_frames=int(2.5 * args.steps) + 10, width=width,
                                      height=height, odometry=False, depth=False)
            cache = work / "cache"

            def train_argv(out: Path) -> List[str]:
                return ["--bag", str(bag), "--out", str(out), f"data.cache_dir={cache}", "model.pretrained=false",
                        "data.num_workers=0", "log.image_every=0", f"optim.max_steps={args.steps}",
                        "optim.epochs=1000", f"log.checkpoint_every={args.checkpoint_every}", "val.enabled=false",
                        *overrides, "--seed", "0"]

            run_to_end(train_argv(work / f"{name}_warm"), args.threads, work / f"{name}_warm_step")  # fills the cache
            shutil.rmtree(work / f"{name}_warm")
            fresh_s = run_to_end(train_argv(work / f"{name}_whole"), args.threads, work / f"{name}_whole_step")
            killed = work / f"{name}_killed"
            killed_step = run_and_kill(train_argv(killed), args.threads, args.kill_at_save, work / f"{name}_marker")
            survived = load_checkpoint(killed / "checkpoints" / CHECKPOINT_NAME)["step"]
            resumed_s = run_to_end(["--bag", str(bag), "--out", str(killed), "--resume"], args.threads,
                                   work / f"{name}_resumed_step")
            expected = load_checkpoint(work / f"{name}_whole" / "checkpoints" / CHECKPOINT_NAME)
            actual = load_checkpoint(killed / "checkpoints" / CHECKPOINT_NAME)
            difference, states_equal = compare(expected, actual)
            size_mb = (killed / "checkpoints" / CHECKPOINT_NAME).stat().st_size / 1e6
            table.add(description, killed_step, survived, killed_step - survived, f"{fresh_s:.1f}", f"{resumed_s:.1f}",
                      f"{difference:.1e}" if difference else "0 (identical)", "yes" if states_equal else "no",
                      f"{size_mb:.0f}")
            for run in (f"{name}_whole", f"{name}_killed"):
                shutil.rmtree(work / run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table.notes.append(
        "steps lost: the killed run had reached the step it was saving; the checkpoint that survived is the one "
        "before. Start to 1st step: process start (imports, cached frames, networks, checkpoint load) to the end "
        "of the first training step."
    )
    table.notes.append(f"load average after: {load_average()}; {os.cpu_count()} CPUs")
    print(table.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
