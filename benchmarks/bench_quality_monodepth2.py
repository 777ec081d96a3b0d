"""bench_quality's rows trained by Monodepth2's own trainer code, on the same data, evaluated the same way.

For one run of bench_quality.RUNS (mono, mono without odometry, stereo, mono+stereo) this:

1. builds our training set from the training drive with
   ``mono_depth_ros_training.data.build_datasets`` (the run's mode and overrides, the training
   size, the shared frame cache) and iterates a plain
   shuffling DataLoader over it (batch ``--batch``, drop_last, epochs cycled) for ``steps`` steps;
2. trains Monodepth2's ``trainer.Trainer`` (nianticlabs/monodepth2, imported at run time from the
   checkout ``--monodepth2``; nothing of it is copied here, its licence is non-commercial), built by
   bench_train.build_monodepth2_trainer with its KITTI datasets replaced by stand-ins, ResNet-18,
   random weights (ImageNet weights cannot be downloaded offline), with the options its README
   gives per mode:  mono: ``--frame_ids 0 -1 1`` (its default);  stereo: ``--use_stereo
   --frame_ids 0``;  mono+stereo: ``--use_stereo --frame_ids 0 -1 1``.  Each of our batches is
   converted to the layout its MonoDataset yields (see ``monodepth2_batch``) and stepped as its
   run_epoch does (process_batch, zero_grad, backward, Adam step; its StepLR stepped at the start
   of every epoch, an epoch being one pass over our training set). Its own per-step logging and
   validation (tensorboard, KITTI ground truth) are left out. There is no odometry in Monodepth2, so
   "mono" and "mono_no_odometry" differ only in which samples the data selection keeps;
3. saves its networks with its ``save_model`` (models/weights_N/encoder.pth, depth.pth, and
   pose_encoder.pth, pose.pth when it has a pose network), converts them with this repo's
   ``import_monodepth2`` -- for stereo modes with the metric scale true_baseline / 0.1, since
   Monodepth2 trains with a fixed nominal baseline of 0.1 (its evaluate_depth.py's 5.4 is KITTI's
   0.54 m / 0.1) -- and evaluates the model file with
   ``mono_depth_ros_training.evaluate.evaluate_bag`` on the held-out drive, as bench_quality does
   for ours.

The imported model file records Monodepth2's KITTI normalised intrinsics (import_monodepth2 always
does); evaluation does not use them. Used by ``bench_quality.py --monodepth2 PATH``.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Sequence

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository
from bench_quality import RUNS  # noqa: E402
from bench_train import SCALES, Size, build_monodepth2_trainer, monodepth2_step  # noqa: E402

TRAINER_LABEL = "monodepth2 (its code, random init)"
# Monodepth2's MonoDataset puts |stereo_T[0, 3]| = 0.1 whatever the rig: its depth is in units of 10 baselines.
MONODEPTH2_BASELINE = 0.1
# Its command-line options per mode (its README, "Stereo training" and "Monocular + stereo training").
MODE_ARGUMENTS: Dict[str, Sequence[str]] = {
    "mono": ["--frame_ids", "0", "-1", "1"],
    "stereo": ["--use_stereo", "--frame_ids", "0"],
    "mono+stereo": ["--use_stereo", "--frame_ids", "0", "-1", "1"],
}
# Its frame ids -> the names of those images in our samples.
OUR_NAMES = {0: "target", -1: "prev", 1: "next", "s": "stereo"}


def monodepth2_stereo_T(batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Its "stereo_T" (B, 4, 4): identity with x-translation side_sign * baseline_sign * 0.1.

    Our target is always the left image (its side_sign -1); its baseline_sign is -1 for a flipped
    sample: -0.1 unflipped, +0.1 flipped. Ours says the same with the true baseline
    (T_stereo_target x = -baseline, mirrored to +baseline by a flip), which is checked here.
    """
    flipped = batch["flipped"].bool()
    sign = torch.where(flipped, 1.0, -1.0)
    ours = torch.sign(batch["T_stereo_target"][:, 0, 3])
    if not torch.equal(ours, sign):
        raise RuntimeError(f"stereo sign mismatch: ours {ours.tolist()}, Monodepth2's {sign.tolist()}")
    T = torch.eye(4).repeat(len(sign), 1, 1)
    T[:, 0, 3] = sign * MONODEPTH2_BASELINE
    return T


def monodepth2_batch(batch: Dict[str, torch.Tensor], frame_ids: Sequence[Any]) -> Dict[Any, torch.Tensor]:
    """One of our collated batches -> the dict Monodepth2's MonoDataset + DataLoader would yield.

    ("color", i, s) / ("color_aug", i, s): (B, 3, H / 2**s, W / 2**s) for frame ids ``frame_ids``
    (0, -1, 1, "s") and scales 0-3, from our unaugmented / augmented images (area-averaged
    downsampling; our flip and colour jitter are already in them). ("K", s) / ("inv_K", s): (B, 4, 4),
    our training-resolution K with its first two rows divided by 2**s, as MonoDataset scales them.
    "stereo_T" when "s" is among the frames.
    """
    inputs: Dict[Any, torch.Tensor] = {}
    height, width = batch["target"].shape[-2:]
    for frame_id in frame_ids:
        name = OUR_NAMES[frame_id]
        for key, image in (("color", batch[name]), ("color_aug", batch[f"{name}_aug"])):
            for scale in SCALES:
                inputs[(key, frame_id, scale)] = image if scale == 0 else F.interpolate(
                    image, size=(height >> scale, width >> scale), mode="area")
    for scale in SCALES:
        K = torch.eye(4).repeat(batch["K"].shape[0], 1, 1)
        K[:, :3, :3] = batch["K"].float()
        K[:, :2, :] /= 2 ** scale
        inputs[("K", scale)] = K
        inputs[("inv_K", scale)] = torch.linalg.inv(K)
    if "s" in frame_ids:
        inputs["stereo_T"] = monodepth2_stereo_T(batch)
    return inputs


def train_monodepth2(trainer, loader, steps: int, log: Callable[[str], None]) -> Path:
    """``steps`` steps of its trainer over ``loader`` (epochs cycled) -> the folder its save_model wrote."""
    frame_ids = list(trainer.opt.frame_ids)  # its Trainer appends "s" when --use_stereo
    every = max(1, steps // 10)
    step = epoch = 0
    while step < steps:
        with warnings.catch_warnings():  # its run_epoch steps the scheduler first (pre-1.1 PyTorch order)
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            trainer.model_lr_scheduler.step()
        for batch in loader:
            if step == steps:
                break
            loss = float(monodepth2_step(trainer, monodepth2_batch(batch, frame_ids)))
            step += 1
            if step % every == 0 or step == steps:
                lr = trainer.model_optimizer.param_groups[0]["lr"]
                log(f"step {step}/{steps} epoch {epoch} loss {loss:.4f} lr {lr:.2e}")
        epoch += 1
    trainer.epoch = epoch - 1
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.save_model()
    return Path(trainer.log_path) / "models" / f"weights_{trainer.epoch}"


def run_monodepth2(name: str, out: Path, train_bag: Path, heldout_bag: Path, steps: int, args,
                   row_from: Callable[..., Dict]) -> Dict:
    """bench_quality's run ``name`` trained by Monodepth2's code for ``steps`` steps -> its table row."""
    from mono_depth_ros.tools.import_monodepth2 import import_monodepth2
    from mono_depth_ros.model_file import read_model_metadata
    from mono_depth_ros_training.config import load_config
    from mono_depth_ros_training.data import build_datasets
    from mono_depth_ros_training.evaluate import evaluate_bag

    mode, extra = RUNS[name]
    run_dir = Path(out) / "runs" / f"monodepth2_{name}_{steps}"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [f"mode={mode}", f"data.width={args.width}", f"data.height={args.height}",
                 f"data.cache_dir={Path(out) / 'frame_cache'}", "data.num_workers=0"] + list(extra)
    config = load_config(None, overrides)
    print(f"\n== monodepth2: {name} ({steps} steps): {' '.join(MODE_ARGUMENTS[mode])}; {' '.join(overrides)}",
          flush=True)

    def log(line: str) -> None:
        print(f"    {line}", flush=True)

    started = time.perf_counter()
    train_set, _, report = build_datasets([str(train_bag)], config.data, mode, log=log)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    trainer = build_monodepth2_trainer(Path(args.monodepth2), Size(args.width, args.height, args.batch), device,
                                       run_dir, MODE_ARGUMENTS[mode])
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch, shuffle=True, drop_last=True)
    if len(loader) == 0:
        raise SystemExit(f"{len(train_set)} training samples: fewer than one batch of {args.batch}")
    weights = train_monodepth2(trainer, loader, steps, log)
    wall = time.perf_counter() - started
    (weights / "adam.pth").unlink(missing_ok=True)  # its optimiser state: not part of the model

    metric_scale = None
    if trainer.opt.use_stereo:  # depth * (true baseline / its 0.1) = metres
        metric_scale = float(report.baseline_m) / MONODEPTH2_BASELINE
    model_path = import_monodepth2(weights, run_dir / "monodepth2.safetensors", metric_scale=metric_scale)
    metadata = read_model_metadata(model_path)
    log(f"{model_path}: {'metric, depth_scale %g' % metadata.depth_scale if metadata.metric else 'relative'}")
    evaluation = evaluate_bag(heldout_bag, model=model_path, log=lambda line: None)
    return row_from(name, TRAINER_LABEL, steps, evaluation, metadata, wall)
