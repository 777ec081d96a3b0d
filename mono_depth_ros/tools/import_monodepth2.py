"""import_monodepth2: published Monodepth2 weights -> a mono_depth_ros model file.

Monodepth2 (Godard et al., ICCV 2019) saves one PyTorch state dict per network in a folder:
``encoder.pth`` (a torchvision ResNet under ``encoder.``, plus the training ``height``, ``width``
and ``use_stereo``), ``depth.pth`` (its decoder, convolutions numbered ``decoder.0`` ...
``decoder.13``), and for models trained with a separate pose network ``pose_encoder.pth`` (a
ResNet taking 2 stacked frames) and ``pose.pth`` (its decoder, ``net.0`` ... ``net.3``). The
architecture is ours (the networks package), so the import only renames and checks tensors.

The files are read with ``torch.load(weights_only=True)`` (mono_depth_ros.safe_loading): tensors
and plain containers only, never code; a refusal names what the file asked to call. Monodepth2's
published weights carry Niantic's non-commercial licence, which the model file records.
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..model_file import ModelFileError, ModelMetadata, read_model_metadata, save_model_file, state_dict_differences
from ..networks import SUPPORTED_RESNETS, DepthNet, PoseNet
from ..safe_loading import load_weights_only, refusal_reason, refused_global, refused_pickle_detail

# Monodepth2's evaluate_depth.py: stereo-trained depth times this is metres (KITTI's 0.54 m baseline
# over the 0.1 units its training used for the stereo pair).
STEREO_SCALE_FACTOR = 5.4
# disp_to_depth(disp, 0.1, 100) in Monodepth2's training, evaluation and test_simple.py.
MONODEPTH2_MIN_DEPTH = 0.1
MONODEPTH2_MAX_DEPTH = 100.0
# Monodepth2's KITTIDataset.K, normalised by image size: (fx / W, fy / H, cx / W, cy / H).
KITTI_NORMALIZED_INTRINSICS = [0.58, 1.92, 0.5, 0.5]
LICENCE = "Monodepth2 weights: Niantic non-commercial licence"

ENCODER_FILE, DEPTH_FILE = "encoder.pth", "depth.pth"
POSE_ENCODER_FILE, POSE_FILE = "pose_encoder.pth", "pose.pth"
SETTINGS_KEYS = ("height", "width", "use_stereo")  # saved into encoder.pth beside the weights

# Blocks per ResNet stage and whether they are bottlenecks -> torchvision's ResNet depth.
_RESNET_LAYOUTS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}
_DECODER_CONV = re.compile(r"decoder\.(\d+)\.(conv\.conv|conv)\.(weight|bias)")
_POSE_CONV = re.compile(r"net\.(\d)\.(weight|bias)")
# Monodepth2's PoseDecoder layers (net.0 ... net.3) -> ours.
_POSE_LAYERS = ("squeeze", "conv1", "conv2", "head")


class Monodepth2ImportError(ValueError):
    """The folder does not hold importable Monodepth2 weights; the text says what differs."""


def load_checkpoint(path: Path) -> Dict[str, object]:
    """A Monodepth2 ``.pth`` file -> its state dict, unpickled with tensors and plain values only."""
    if not path.is_file():
        raise Monodepth2ImportError(f"{path} does not exist")
    try:
        state = load_weights_only(path)
    except pickle.UnpicklingError as error:
        # What was refused and why; never torch's advice to load the file with weights_only=False.
        if refused_global(error):
            raise Monodepth2ImportError(
                f"{path} is not a checkpoint of tensors and plain values, so it is not loaded: "
                f"{refusal_reason(error)}, which Monodepth2's weight files never do. It is damaged or not a "
                f"Monodepth2 weights file: download the model folder again from a source you trust"
            ) from None
        raise Monodepth2ImportError(
            f"{path} is not a checkpoint of tensors and plain values, so it is not loaded "
            f"({refused_pickle_detail(error)}); it is damaged or not a Monodepth2 weights file, and was refused "
            f"without running anything in it: download the model folder again"
        ) from None
    except Exception as error:  # truncated download, not a PyTorch file
        raise Monodepth2ImportError(f"{path} is not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(state, dict):
        raise Monodepth2ImportError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return state


def _tensors(state: Dict[str, object], path: Path, settings: Tuple[str, ...] = ()) -> Dict[str, torch.Tensor]:
    """The state dict's tensors; every other entry must be one of ``settings``."""
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    others = sorted(key for key in state if key not in tensors and key not in settings)
    if others:
        raise Monodepth2ImportError(f"{path}: unexpected non-tensor entries {', '.join(map(str, others[:5]))}")
    return tensors


def resnet_depth(tensors: Dict[str, torch.Tensor], path: Path) -> int:
    """ResNet depth (18, 34, 50) of torchvision ResNet weights stored under ``encoder.``."""
    blocks = []
    for stage in range(1, 5):
        indices = {int(match.group(1)) for key in tensors
                   for match in [re.match(rf"encoder\.layer{stage}\.(\d+)\.", key)] if match}
        blocks.append(max(indices) + 1 if indices else 0)
    bottleneck = "encoder.layer1.0.conv3.weight" in tensors
    depth = _RESNET_LAYOUTS.get((tuple(blocks), bottleneck))
    if depth is None:
        raise Monodepth2ImportError(
            f"{path}: not a ResNet encoder saved by Monodepth2 (blocks per stage {tuple(blocks)}"
            f"{', bottlenecks' if bottleneck else ''}; expected keys such as encoder.layer1.0.conv1.weight)"
        )
    if depth not in SUPPORTED_RESNETS:
        raise Monodepth2ImportError(
            f"{path}: ResNet-{depth} encoder; this package runs ResNet-{', -'.join(map(str, SUPPORTED_RESNETS))}"
        )
    return depth


def _num_batches_tracked(ours: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    # Older PyTorch versions did not save BatchNorm's counter; it has no effect in evaluation.
    return {key: torch.zeros((), dtype=torch.long) for key in ours if key.endswith("num_batches_tracked")}


def encoder_names(tensors: Dict[str, torch.Tensor]) -> Dict[str, str]:
    """Monodepth2 encoder key -> our encoder key (the classification head ``fc`` is dropped)."""
    names = {}
    for key in tensors:
        if key.startswith("encoder.fc."):
            continue
        names[key] = "encoder.resnet." + key[len("encoder."):] if key.startswith("encoder.") else key
    return names


def depth_decoder_names(tensors: Dict[str, torch.Tensor]) -> Dict[str, str]:
    """Monodepth2 DepthDecoder key -> our DepthDecoder key (under ``decoder.``).

    Theirs numbers the convolutions in creation order: for each level 4..0 the one before the
    upsampling (``decoder.2k``, our reduce[k]) and the one after the skip concatenation
    (``decoder.2k+1``, our fuse[k]); then the disparity heads of scales 0..3 (``decoder.10+s``).
    """
    names = {}
    for key in tensors:
        match = _DECODER_CONV.fullmatch(key)
        if not match:
            names[key] = key  # reported as unexpected
            continue
        index, inner, kind = int(match.group(1)), match.group(2), match.group(3)
        if index < 10 and inner == "conv.conv":
            names[key] = f"decoder.{'reduce' if index % 2 == 0 else 'fuse'}.{index // 2}.conv.conv.{kind}"
        elif index >= 10 and inner == "conv":
            names[key] = f"decoder.disparity_heads.{index - 10}.conv.{kind}"
        else:
            names[key] = key
    return names


def pose_decoder_names(tensors: Dict[str, torch.Tensor]) -> Dict[str, str]:
    """Monodepth2 PoseDecoder key (``net.0`` ... ``net.3``) -> our PoseDecoder key (under ``decoder.``)."""
    names = {}
    for key in tensors:
        match = _POSE_CONV.fullmatch(key)
        index = int(match.group(1)) if match else len(_POSE_LAYERS)
        names[key] = f"decoder.{_POSE_LAYERS[index]}.{match.group(2)}" if index < len(_POSE_LAYERS) else key
    return names


def _load_renamed(module: torch.nn.Module, renamed: Dict[str, Tuple[str, torch.Tensor]], what: str) -> None:
    """Load {our key: (their key, tensor)} into ``module``; every key and shape must match.

    Errors name the keys as the Monodepth2 file spells them.
    """
    expected = module.state_dict()
    defaults = _num_batches_tracked(expected)
    given = {ours: tensor for ours, (_, tensor) in renamed.items()}
    theirs = {ours: name for ours, (name, _) in renamed.items()}
    for key, value in defaults.items():
        given.setdefault(key, value)
    details = state_dict_differences(expected, given, name=lambda key: theirs.get(key, key), sort_key=_natural,
                                     file_missing_label="ours ")
    if details:
        raise Monodepth2ImportError(f"{what} do not match Monodepth2's layout: " + ", ".join(details))
    module.load_state_dict({key: given[key].float() if given[key].is_floating_point() else given[key]
                            for key in expected}, strict=True)


def _natural(key: str) -> list:
    """Sort key putting decoder.2 before decoder.10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _rename(tensors: Dict[str, torch.Tensor], names: Dict[str, str]) -> Dict[str, Tuple[str, torch.Tensor]]:
    return {ours: (theirs, tensors[theirs]) for theirs, ours in names.items()}


def _settings(encoder_state: Dict[str, object], path: Path) -> Tuple[int, int, bool]:
    missing = [key for key in SETTINGS_KEYS if key not in encoder_state]
    if missing:
        raise Monodepth2ImportError(
            f"{path} lacks {', '.join(missing)}: Monodepth2's trainer stores the training height, width and "
            "use_stereo in encoder.pth; this is not such a file"
        )
    height, width, use_stereo = (encoder_state[key] for key in SETTINGS_KEYS)
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 32:
            raise Monodepth2ImportError(f"{path}: {name} is {value!r}, must be a positive multiple of 32")
    if not isinstance(use_stereo, bool):
        raise Monodepth2ImportError(f"{path}: use_stereo is {use_stereo!r}, expected true or false")
    return height, width, use_stereo


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_monodepth2(
    directory, include_pose: bool = True, metric_scale: Optional[float] = None
) -> Tuple[ModelMetadata, DepthNet, Optional[PoseNet]]:
    """Monodepth2 weights in ``directory`` -> (metadata, depth network, pose network or None).

    ``include_pose``: import pose_encoder.pth + pose.pth when the folder has them.
    ``metric_scale``: depth-to-metres factor of a stereo-trained model (default 5.4, Monodepth2's);
    a model trained on monocular video has no metric scale, and asking for one is an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise Monodepth2ImportError(
            f"{directory} is not a folder; give the folder that holds Monodepth2's encoder.pth and depth.pth"
        )
    encoder_path, depth_path = directory / ENCODER_FILE, directory / DEPTH_FILE
    for path in (encoder_path, depth_path):
        if not path.is_file():
            raise Monodepth2ImportError(
                f"{directory} has no {path.name}; a Monodepth2 model folder holds {ENCODER_FILE} and {DEPTH_FILE} "
                f"(and optionally {POSE_ENCODER_FILE}, {POSE_FILE})"
            )
    encoder_state = load_checkpoint(encoder_path)
    height, width, use_stereo = _settings(encoder_state, encoder_path)
    if metric_scale is not None:
        if not use_stereo:
            raise Monodepth2ImportError(
                f"{encoder_path} says use_stereo false: the model was trained on monocular video and predicts "
                "depth only up to an unknown scale, so it cannot be imported as metric. Import it without a "
                "metric scale and set the node's depth_scale parameter from one measured distance (docs/node.md, 'Scale')"
            )
        if not metric_scale > 0:
            raise Monodepth2ImportError(f"the metric scale is {metric_scale}, must be > 0")
    encoder_tensors = _tensors(encoder_state, encoder_path, SETTINGS_KEYS)
    num_layers = resnet_depth(encoder_tensors, encoder_path)
    depth_tensors = _tensors(load_checkpoint(depth_path), depth_path)

    depth_net = DepthNet(num_layers)
    renamed = _rename(encoder_tensors, encoder_names(encoder_tensors))
    renamed.update(_rename(depth_tensors, depth_decoder_names(depth_tensors)))
    _load_renamed(depth_net, renamed, f"the weights in {ENCODER_FILE} + {DEPTH_FILE} (ResNet-{num_layers})")

    files = [encoder_path, depth_path]
    pose_net = None
    pose_paths = [directory / POSE_ENCODER_FILE, directory / POSE_FILE]
    present = [path.is_file() for path in pose_paths]
    if include_pose and any(present):
        if not all(present):
            have, lack = (pose_paths[0], pose_paths[1]) if present[0] else (pose_paths[1], pose_paths[0])
            raise Monodepth2ImportError(
                f"{directory} has {have.name} but no {lack.name}; the pose network needs both (Monodepth2's "
                "'separate_resnet' pose model). Pass --no-pose to import the depth network alone"
            )
        pose_net = _convert_pose(pose_paths[0], pose_paths[1], num_layers)
        files += pose_paths

    metric = use_stereo
    metadata = ModelMetadata(
        num_layers=num_layers,
        encoder="resnet",
        input_width=width,
        input_height=height,
        min_depth=MONODEPTH2_MIN_DEPTH,
        max_depth=MONODEPTH2_MAX_DEPTH,
        metric=metric,
        depth_scale=(STEREO_SCALE_FACTOR if metric_scale is None else float(metric_scale)) if metric else 1.0,
        # Monodepth2's loaders read KITTI's rectified images with these intrinsics.
        rectified_input=True,
        normalized_intrinsics=list(KITTI_NORMALIZED_INTRINSICS),
        training={
            "source": "monodepth2",
            "licence": LICENCE,
            "imported_from": str(directory.resolve()),
            "trained_with": "stereo" if use_stereo else "monocular video",
            "files": {path.name: _sha256(path) for path in files},
            "intrinsics": "KITTI's, as Monodepth2's KITTI loaders assume",
        },
    )
    metadata.validate()
    return metadata, depth_net.eval(), None if pose_net is None else pose_net.eval()


def _convert_pose(encoder_path: Path, decoder_path: Path, num_layers: int) -> PoseNet:
    encoder_tensors = _tensors(load_checkpoint(encoder_path), encoder_path)
    pose_layers = resnet_depth(encoder_tensors, encoder_path)
    if pose_layers != num_layers:
        raise Monodepth2ImportError(
            f"{encoder_path} is a ResNet-{pose_layers} but the depth encoder is a ResNet-{num_layers}; a model file "
            "holds one encoder depth. Pass --no-pose to import the depth network alone"
        )
    conv1 = encoder_tensors.get("encoder.conv1.weight")
    if conv1 is not None and conv1.dim() == 4 and conv1.shape[1] != 6:
        raise Monodepth2ImportError(
            f"{encoder_path}: its first convolution takes {conv1.shape[1]} channels; Monodepth2's separate pose "
            "encoder takes a pair of frames (6). Pass --no-pose to import the depth network alone"
        )
    decoder_tensors = _tensors(load_checkpoint(decoder_path), decoder_path)
    head_weight, head_bias = decoder_tensors.get("net.3.weight"), decoder_tensors.get("net.3.bias")
    if head_weight is not None and head_bias is not None and head_weight.shape[0] == 12 and head_bias.shape[0] == 12:
        # Monodepth2's trainer predicts for 2 frames (12 outputs) but uses only the first pose (outputs 0-5).
        decoder_tensors = dict(decoder_tensors, **{"net.3.weight": head_weight[:6], "net.3.bias": head_bias[:6]})
    pose_net = PoseNet(num_layers)
    renamed = _rename(encoder_tensors, encoder_names(encoder_tensors))
    renamed.update(_rename(decoder_tensors, pose_decoder_names(decoder_tensors)))
    _load_renamed(pose_net, renamed, f"the weights in {encoder_path.name} + {decoder_path.name}")
    return pose_net


def import_monodepth2(directory, out, include_pose: bool = True, metric_scale: Optional[float] = None) -> Path:
    """Convert the Monodepth2 folder ``directory`` into the model file ``out`` (.safetensors) -> its path."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise Monodepth2ImportError(f"the output {out} must end in .safetensors (the node picks the backend by it)")
    metadata, depth_net, pose_net = convert_monodepth2(directory, include_pose, metric_scale)
    return save_model_file(out, metadata, depth_net, pose_net)


def summary(metadata: ModelMetadata) -> List[str]:
    """What the imported file says, in words."""
    scale = (f"metric, depth_scale {metadata.depth_scale:g}" if metadata.metric
             else "NOT metric: set the node's depth_scale (docs/node.md, 'Scale')")
    return [
        f"ResNet-{metadata.num_layers}, {metadata.input_width}x{metadata.input_height}, trained with "
        f"{metadata.training['trained_with']}: {scale}; pose network: {'yes' if metadata.has_pose else 'no'}",
        f"{LICENCE}: non-commercial use only (see Monodepth2's LICENSE)",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="import_monodepth2",
        description="Convert Monodepth2 weights (a folder with encoder.pth, depth.pth and optionally "
        "pose_encoder.pth, pose.pth) into a mono_depth_ros model file. Monodepth2's published weights are "
        "licensed by Niantic for non-commercial use only.",
    )
    parser.add_argument("directory", type=Path, help="Monodepth2 model folder (e.g. mono+stereo_640x192)")
    parser.add_argument("out", type=Path, help="output model file (.safetensors)")
    parser.add_argument("--no-pose", action="store_true", help="leave out the pose network even if present")
    parser.add_argument(
        "--metric-scale", type=float, default=None,
        help=f"depth-to-metres factor of a stereo-trained model (default {STEREO_SCALE_FACTOR}, Monodepth2's for "
        "KITTI); not allowed for monocular-trained models",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = import_monodepth2(args.directory, args.out, include_pose=not args.no_pose,
                                 metric_scale=args.metric_scale)
        metadata = read_model_metadata(path)  # what the node will read
    except (Monodepth2ImportError, ModelFileError, OSError) as error:
        print(f"import_monodepth2: error: {error}", file=sys.stderr)
        return 2
    for line in summary(metadata):
        print(line)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
