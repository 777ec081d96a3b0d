"""Multi-process training with torchrun (gloo on the CPU, 2 processes), through the CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

pytest.importorskip("rosbags", reason="rosbags is required to write the test bag")

from mono_depth_ros.model_file import load_model_file
from mono_depth_ros.simulation import write_synthetic_bag

REPO = Path(__file__).resolve().parent.parent


# Checkpoints are ~100-300 MB each: delete them after each test (fixture in conftest).
pytestmark = pytest.mark.usefixtures("drop_large_outputs")

# Runs the real CLI in each process; records what each rank trained on and its final weights.
DRIVER = '''
import hashlib, json, sys
from pathlib import Path
import mono_depth_ros_training.trainer as trainer_module
from mono_depth_ros_training import cli

report_dir = Path(sys.argv[1])
original_fit, original_step = trainer_module.Trainer.fit, trainer_module.Trainer.train_step
stamps = []

def train_step(self, batch):
    stamps.extend(float(value) for value in batch["stamp"])
    return original_step(self, batch)

def fit(self):
    result = original_fit(self)
    digest = hashlib.sha256()
    for net in (self.depth_net, self.pose_net):
        for name, parameter in net.named_parameters():
            digest.update(name.encode())
            digest.update(parameter.detach().cpu().numpy().tobytes())
    (report_dir / f"rank{self.context.rank}.json").write_text(
        json.dumps({"sha256": digest.hexdigest(), "stamps": stamps, "world_size": self.context.world_size, "step": result.step})
    )
    return result

trainer_module.Trainer.train_step = train_step
trainer_module.Trainer.fit = fit
sys.exit(cli.main(sys.argv[2:]))
'''


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is required")
def test_torchrun_two_processes_train_in_step(tmp_path):
    bag = write_synthetic_bag(tmp_path / "bag", num_frames=14, width=64, height=64)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "run"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(driver), str(tmp_path),
        "--bag", str(bag), "--out", str(out), "mode=mono", "device=cpu", "model.pretrained=false",
        "data.width=64", "data.height=64", "data.num_workers=0", f"data.cache_dir={tmp_path / 'cache'}",
        "optim.batch_size=2", "optim.max_steps=2", "log.image_every=0",
    ]
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # gradients were averaged: identical weights
    assert len(ranks[0]["stamps"]) == len(ranks[1]["stamps"]) == 4  # 2 steps x batch 2 per process
    assert set(ranks[0]["stamps"]).isdisjoint(ranks[1]["stamps"])  # each rank trained on its own shard

    model_path = out / "model.safetensors"
    assert completed.stdout.strip().splitlines()[-1] == str(model_path)
    assert completed.stdout.count(str(model_path)) == 1  # only rank 0 prints and writes
    metadata = load_model_file(model_path).metadata
    assert metadata.training["world_size"] == 2 and metadata.training["steps"] == 2
