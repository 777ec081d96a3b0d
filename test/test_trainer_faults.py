"""Trainer under faults: disk full while writing, a real file-size limit, SIGKILL mid-checkpoint
(then --resume), leftover temporaries, and a checkpoint crafted to run code when unpickled."""
from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("rosbags", reason="rosbags is required to write the recording")

import mono_depth_ros.model_file as model_file  # noqa: E402
from mono_depth_ros.simulation import write_synthetic_bag  # noqa: E402
from mono_depth_ros_training import cli  # noqa: E402
from mono_depth_ros_training.checkpoints import (  # noqa: E402
    CHECKPOINT_NAME, MODEL_NAME, load_checkpoint, remove_stale_temporary_files)

from helpers import CreatesFileWhenUnpickled  # noqa: E402  (test/ is on sys.path)

REPO = Path(__file__).resolve().parent.parent

# Checkpoints are ~60 MB each here: delete them after each test (fixture in conftest).
pytestmark = pytest.mark.usefixtures("drop_large_outputs")

# The smallest run that writes two checkpoints: stereo (no pose network), EfficientNet-Lite0,
# 64x64, 4 steps of batch 2, a checkpoint every 2 steps (~63 MB each).
TINY = ("mode=stereo", "model.encoder=efficientnet_lite0", "model.pretrained=false", "data.width=64",
        "data.height=64", "optim.batch_size=2", "optim.max_steps=4", "log.checkpoint_every=2",
        "log.image_every=0", "data.num_workers=0")

# Runs the train command in a child process. HANG_AT_SAVE=n: the n-th torch.save writes half of
# its bytes to the temporary file, records the sha256 of the checkpoint it was about to replace
# in HANG_MARKER, and sleeps until killed.
BOOTSTRAP = r"""
import hashlib, io, os, sys, time
import torch
torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "1")))
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
        handle.flush()
        with open(os.environ["HANG_CHECKPOINT"], "rb") as previous:
            digest = hashlib.sha256(previous.read()).hexdigest()
        marker = os.environ["HANG_MARKER"]
        with open(marker + ".part", "w") as note:
            note.write(f"{digest} {len(data) // 2}")
        os.replace(marker + ".part", marker)
        time.sleep(600)

    torch.save = save
from mono_depth_ros_training.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_synthetic_bag(tmp_path_factory.mktemp("bag") / "corridor", num_frames=12, width=64, height=64,
                               odometry=False, depth=False)


def _argv(bag, out, cache, *extra):
    return ["--bag", str(bag), "--out", str(out), f"data.cache_dir={cache}", *TINY, *extra, "--seed", "0"]


def _child_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TRAIN_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    env.update(extra)
    return env


def _run_child(argv, timeout=240, **env):
    return subprocess.run([sys.executable, "-c", BOOTSTRAP, *argv], cwd=REPO, env=_child_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def _temporaries(directory: Path):
    return sorted(path.name for path in directory.rglob("*.tmp"))


# --------------------------------------------------------------------------- disk full


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(bag, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    checkpoint = out / "checkpoints" / CHECKPOINT_NAME
    real_save = torch.save
    seen = {}

    def save_then_disk_full(obj, handle, *args, **kwargs):
        if not checkpoint.exists():
            return real_save(obj, handle, *args, **kwargs)  # the first checkpoint (step 2) is written
        seen["previous"] = checkpoint.read_bytes()
        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # part of it fits, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_then_disk_full)
    assert cli.main(_argv(bag, out, tmp_path / "cache")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "train: error:" in line]
    assert errors == [
        f"train: error: could not write checkpoint {checkpoint} at step 4 (No space left on device: is the disk "
        f"full?); the previous checkpoint (step 2) is intact at {checkpoint}; free space and continue with --resume"
    ]
    assert checkpoint.read_bytes() == seen["previous"]
    assert load_checkpoint(checkpoint)["step"] == 2
    assert _temporaries(out) == []
    assert not (out / MODEL_NAME).exists()


def test_disk_full_while_writing_the_model_file_then_resume_writes_it(bag, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_write = model_file.write_safetensors

    def write_then_disk_full(path, tensors, metadata=None):
        with open(path, "wb") as stream:
            stream.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(model_file, "write_safetensors", write_then_disk_full)
    assert cli.main(_argv(bag, out, tmp_path / "cache", "optim.max_steps=2")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    checkpoint = out / "checkpoints" / CHECKPOINT_NAME
    assert (
        f"train: error: could not write the model file {out / MODEL_NAME} (No space left on device: is the disk "
        f"full?); the checkpoint {checkpoint} (step 2) holds the trained weights: free space and run again with "
        f"--resume to write the model file"
    ) in err
    assert _temporaries(out) == [] and not (out / MODEL_NAME).exists()
    # The advice works: resuming a finished run only writes the model file.
    monkeypatch.setattr(model_file, "write_safetensors", real_write)
    assert cli.main(["--bag", str(bag), "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resuming at step 2" in captured.out and captured.out.strip().splitlines()[-1] == str(out / MODEL_NAME)
    assert model_file.read_model_metadata(out / MODEL_NAME).training["steps"] == 2


def test_a_real_file_size_limit_fails_the_first_checkpoint_cleanly(bag, tmp_path):
    """RLIMIT_FSIZE below the checkpoint size (~63 MB): the kernel refuses the write (EFBIG)."""
    out = tmp_path / "run"
    limit = 30_000_000  # the frame cache, config and TensorBoard files stay far below it
    limited = (
        "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", limited + BOOTSTRAP, *_argv(bag, out, tmp_path / "cache")],
        cwd=REPO, env=_child_env(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    checkpoint = out / "checkpoints" / CHECKPOINT_NAME
    assert (
        f"train: error: could not write checkpoint {checkpoint} at step 2 (File too large: is the file size limited "
        f"(ulimit -f) or above the file system's maximum?); there is no previous checkpoint in {out} yet, so nothing "
        f"of this run can be resumed; fix that and start it again (without --resume)"
    ) in result.stderr
    assert not checkpoint.exists() and _temporaries(out) == []


# --------------------------------------------------------------------------- SIGKILL mid-write


def test_sigkill_while_writing_a_checkpoint_then_resume_matches_an_uninterrupted_run(bag, tmp_path):
    cache = tmp_path / "cache"
    whole = _run_child(_argv(bag, tmp_path / "whole", cache))
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "killed"
    checkpoint = out / "checkpoints" / CHECKPOINT_NAME
    marker = tmp_path / "hanging"
    child = subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP, *_argv(bag, out, cache)], cwd=REPO,
        env=_child_env(HANG_AT_SAVE="2", HANG_MARKER=str(marker), HANG_CHECKPOINT=str(checkpoint)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert child.poll() is None, f"the run ended before its second checkpoint: {child.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "the second checkpoint write never started"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()

    # The checkpoint on disk is the complete first one; the half-written second one is a temporary.
    previous_digest, half_bytes = marker.read_text().split()
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == previous_digest
    assert load_checkpoint(checkpoint)["step"] == 2
    stale = out / "checkpoints" / f".{CHECKPOINT_NAME}.{child.pid}.tmp"
    assert _temporaries(out) == [stale.name] and stale.stat().st_size == int(half_bytes)
    assert not (out / MODEL_NAME).exists()

    resumed = _run_child(["--bag", str(bag), "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"removed 1 incomplete file(s) in {out}: {stale.name} (" in resumed.stdout
    assert "killed while writing" in resumed.stdout
    assert "resuming at step 2" in resumed.stdout and "written after 4 steps" in resumed.stdout
    assert _temporaries(out) == []

    expected = load_checkpoint(tmp_path / "whole" / "checkpoints" / CHECKPOINT_NAME)
    actual = load_checkpoint(checkpoint)
    assert actual["step"] == expected["step"] == 4
    assert actual["batch_in_epoch"] == expected["batch_in_epoch"] == 4
    for key, value in expected["depth_net"].items():
        assert torch.equal(actual["depth_net"][key], value), f"depth_net.{key} differs after the kill and resume"
    assert expected["optimizer"]["state"].keys() == actual["optimizer"]["state"].keys()
    for index, state in expected["optimizer"]["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(actual["optimizer"]["state"][index][name], state[name]), f"Adam {name} of {index}"
    assert float(expected["optimizer"]["state"][0]["step"]) == 4.0
    assert actual["scheduler"] == expected["scheduler"]
    assert torch.equal(actual["rng"]["torch"], expected["rng"]["torch"])
    # The deployable model is the uninterrupted run's, tensor for tensor.
    whole_model = model_file.load_model_file(tmp_path / "whole" / MODEL_NAME)
    resumed_model = model_file.load_model_file(out / MODEL_NAME)
    for (name, value), (_, other) in zip(whole_model.depth_net.state_dict().items(),
                                         resumed_model.depth_net.state_dict().items()):
        assert torch.equal(value, other), name


def test_stale_temporaries_are_removed_unless_their_writer_runs(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    dead = checkpoints / f".{CHECKPOINT_NAME}.{dead_pid}.tmp"
    running = checkpoints / f".{CHECKPOINT_NAME}.{os.getppid()}.tmp"  # a live process may be writing it
    own = checkpoints / f".{CHECKPOINT_NAME}.{os.getpid()}.tmp"
    model_tmp = tmp_path / f".{MODEL_NAME}.k2j4x9_a.tmp"
    others = [checkpoints / CHECKPOINT_NAME, tmp_path / "notes.tmp", checkpoints / ".other.pt.1.tmp"]
    for path in [dead, running, own, model_tmp, *others]:
        path.write_bytes(b"x" * 1_500_000)
    logged = []
    removed = remove_stale_temporary_files(tmp_path, logged.append)
    assert sorted(removed) == sorted([dead, model_tmp])
    assert not dead.exists() and not model_tmp.exists()
    assert all(path.exists() for path in [running, own, *others])
    assert len(logged) == 1
    assert logged[0].startswith(f"removed 2 incomplete file(s) in {tmp_path}: ")
    assert f"{dead.name} (1.5 MB)" in logged[0] and f"{model_tmp.name} (1.5 MB)" in logged[0]
    assert remove_stale_temporary_files(tmp_path, logged.append) == [] and len(logged) == 1  # silent when clean


# --------------------------------------------------------------------------- malicious checkpoint


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    marker = tmp_path / "ran"
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps(CreatesFileWhenUnpickled(marker), protocol=2))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(payload)!r}, 'rb'))"], check=True)
    assert marker.exists()


@pytest.mark.parametrize(
    "container, with_config, message",
    [
        ("pickle protocol 2", False, "was refused and not loaded: unpickling it would call io.open, i.e. run code"),
        ("pickle protocol 4", False, "cannot be read (Unsupported operand 149); it is damaged or not a checkpoint, "
                                     "and was refused without running anything in it"),
        ("torch.save", False, "was refused and not loaded: unpickling it would call io.open, i.e. run code"),
        ("torch.save", True, "was refused and not loaded: unpickling it would call io.open, i.e. run code"),
    ],
)
def test_resume_refuses_a_checkpoint_that_would_run_code(bag, tmp_path, capsys, container, with_config, message):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "run" / "checkpoints" / CHECKPOINT_NAME
    checkpoint.parent.mkdir(parents=True)
    payload = {"format": "mono_depth_ros.train_checkpoint", "version": 1, "step": CreatesFileWhenUnpickled(marker)}
    if container == "torch.save":
        torch.save(payload, checkpoint)
    else:
        checkpoint.write_bytes(pickle.dumps(payload, protocol=int(container[-1])))
    argv = ["--bag", str(bag), "--out", str(tmp_path / "run"), "--resume"]
    if with_config:  # the run's config comes from a file: the checkpoint is first opened by train()
        config = tmp_path / "train.yaml"
        config.write_text("mode: stereo\nmodel:\n  pretrained: false\n")
        argv += ["--config", str(config)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train: error: checkpoint {checkpoint} ") and message in err
    assert "Traceback" not in err and "weights_only=False" not in err
    assert not marker.exists()
