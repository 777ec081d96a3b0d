"""Deployable model files: safetensors weights plus JSON metadata, never pickle.

A model file holds the depth network under ``depth.*`` and, optionally, the pose
network under ``pose.*``. Its metadata says everything the node needs to run it
(architecture, input size, depth range, whether depth is metric). Loading never
executes code from the file: safetensors stores raw tensors only.

The metadata (:class:`ModelMetadata`, :func:`read_model_metadata`, :data:`METADATA_KEY`,
:class:`ModelFileError`) needs no torch: importing this module does not import it, so a node running
an ``.onnx`` model never does. Building, loading and saving networks import it when called.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from .networks.choices import DECODER_UPSAMPLING, ENCODERS, INTRINSICS_MODES, SUPPORTED_RESNETS
from .safetensors_io import SafetensorsFormatError, read_safetensors, read_safetensors_header, write_safetensors

if TYPE_CHECKING:
    import torch

    from .networks import DepthNet, PoseNet

FORMAT_NAME = "mono_depth_ros"
# 2: adds ``encoder``. Version 1 files (no such field) hold ResNets and still load.
# 3: adds ``upsampling``, ``semantic``, ``stereo_head`` and ``intrinsics`` (trainer extensions); files
# without them hold today's default network and still load.
FORMAT_VERSION = 3
METADATA_KEY = "mono_depth_ros.metadata"
HOW_TO_GET_A_MODEL = (
    "Create one with random weights: `ros2 run mono_depth_ros create_model --out model.safetensors`, "
    "or train one from a bag: `ros2 run mono_depth_ros train --bag BAG --out DIR` (see docs/models.md, 'Getting a model')."
)


class ModelFileError(RuntimeError):
    """A model file is missing, unreadable, or does not match what it claims to be."""


@dataclass
class ModelMetadata:
    """What a model file says about itself. Field order is the JSON order."""

    architecture: str = "monodepth2"
    num_layers: int = 18  # ResNet depth (18, 34, 50); not used by other encoders
    encoder: str = "resnet"  # one of networks.ENCODERS
    input_width: int = 640
    input_height: int = 192
    min_depth: float = 0.1
    max_depth: float = 100.0
    # metric: depth * depth_scale is in metres. Not metric: only relative depth is meaningful.
    metric: bool = False
    depth_scale: float = 1.0
    # The network was trained on undistorted images; feed it rectified input (image_rect).
    rectified_input: bool = False
    # Training camera as (fx / W, fy / H, cx / W, cy / H); None when unknown.
    normalized_intrinsics: Optional[List[float]] = None
    has_pose: bool = False
    # Network variants (format 3; the defaults are the network of formats 1 and 2).
    upsampling: str = "nearest"  # decoder upsampling: nearest | pixel_shuffle
    semantic: bool = False  # frozen segmentation features fused into the depth encoder
    stereo_head: bool = False  # decoder predicts (left, right) disparity; the node uses the left one
    # given: normalized_intrinsics are the calibration the model was trained with. learned / refine: the
    # pose network's camera head predicted them (refine: as a correction of the calibration); the
    # pose network then has a camera head.
    intrinsics: str = "given"
    training: Dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        problems = _type_problems(self)
        if problems:  # range checks below would fail with TypeError on wrongly typed values
            raise ModelFileError("invalid model metadata: " + "; ".join(problems))
        if self.architecture != "monodepth2":
            problems.append(f"architecture is {self.architecture!r}, this version runs 'monodepth2'")
        if self.encoder not in ENCODERS:
            problems.append(f"encoder is {self.encoder!r}, supported: {', '.join(ENCODERS)}")
        if self.encoder == "resnet" and self.num_layers not in SUPPORTED_RESNETS:
            problems.append(f"num_layers is {self.num_layers}, supported: {SUPPORTED_RESNETS}")
        for name in ("input_width", "input_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0 or value % 32:
                problems.append(f"{name} is {value!r}, must be a positive multiple of 32")
        if not (0 < self.min_depth < self.max_depth):
            problems.append(f"depth range [{self.min_depth}, {self.max_depth}] must satisfy 0 < min < max")
        if not self.depth_scale > 0:
            problems.append(f"depth_scale is {self.depth_scale}, must be > 0")
        if self.normalized_intrinsics is not None and len(self.normalized_intrinsics) != 4:
            problems.append("normalized_intrinsics must be [fx/W, fy/H, cx/W, cy/H]")
        if self.upsampling not in DECODER_UPSAMPLING:
            problems.append(f"upsampling is {self.upsampling!r}, supported: {', '.join(DECODER_UPSAMPLING)}")
        if self.intrinsics not in INTRINSICS_MODES:
            problems.append(f"intrinsics is {self.intrinsics!r}, supported: {', '.join(INTRINSICS_MODES)}")
        elif self.intrinsics != "given" and self.normalized_intrinsics is None:
            problems.append(f"intrinsics is {self.intrinsics!r} but normalized_intrinsics (the learned K) is missing")
        if problems:
            raise ModelFileError("invalid model metadata: " + "; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_json(cls, text: str, source: str = "model file") -> "ModelMetadata":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelFileError(f"{source}: metadata is not valid JSON ({error})") from error
        if not isinstance(raw, dict):
            raise ModelFileError(f"{source}: metadata must be a JSON object")
        if raw.get("format") != FORMAT_NAME:
            raise ModelFileError(f"{source}: metadata format is {raw.get('format')!r}, expected {FORMAT_NAME!r}")
        version = raw.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ModelFileError(f"{source}: metadata format_version is {version!r}, expected an integer")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{source}: written by a newer mono_depth_ros (format_version {raw['format_version']}, "
                f"this one reads up to {FORMAT_VERSION}); update mono_depth_ros"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        required = {"architecture", "num_layers", "input_width", "input_height", "min_depth", "max_depth", "metric"}
        if version >= 2:
            required.add("encoder")
        missing = sorted(required - raw.keys())
        if missing:
            raise ModelFileError(f"{source}: metadata lacks {', '.join(missing)}")
        unknown = sorted(raw.keys() - known)
        if unknown:
            raise ModelFileError(f"{source}: metadata has unknown fields {', '.join(unknown)}")
        if version < 2 and "encoder" not in raw:
            # Before format 2 every model had a ResNet encoder.
            raw.update(encoder="resnet")
        if version < FORMAT_VERSION:
            # Fields added since are absent and take their defaults, which describe the network those
            # formats held: in memory the file is now a description in today's format.
            raw.update(format_version=FORMAT_VERSION)
        metadata = cls(**raw)
        try:
            metadata.validate()
        except ModelFileError as error:  # say which file it is
            raise ModelFileError(f"{source}: {error}") from None
        return metadata


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_problems(metadata: ModelMetadata) -> List[str]:
    """Fields whose JSON type is wrong (e.g. a hand-edited file with "min_depth": "0.1")."""
    expected = {
        "architecture": (str, "a string"),
        "num_layers": (int, "an integer"),
        "encoder": (str, "a string"),
        "input_width": (int, "an integer"),
        "input_height": (int, "an integer"),
        "min_depth": (float, "a number"),
        "max_depth": (float, "a number"),
        "metric": (bool, "true or false"),
        "depth_scale": (float, "a number"),
        "rectified_input": (bool, "true or false"),
        "has_pose": (bool, "true or false"),
        "upsampling": (str, "a string"),
        "semantic": (bool, "true or false"),
        "stereo_head": (bool, "true or false"),
        "intrinsics": (str, "a string"),
        "training": (dict, "a JSON object"),
        "format": (str, "a string"),
        "format_version": (int, "an integer"),
    }
    problems = []
    for name, (kind, words) in expected.items():
        value = getattr(metadata, name)
        if kind is float:
            ok = _is_number(value)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            problems.append(f"{name} is {value!r}, must be {words}")
    intrinsics = metadata.normalized_intrinsics
    if intrinsics is not None and not (
        isinstance(intrinsics, (list, tuple)) and all(_is_number(v) for v in intrinsics)
    ):
        problems.append(f"normalized_intrinsics is {intrinsics!r}, must be null or a list of 4 numbers")
    return problems


@dataclass
class LoadedModel:
    metadata: ModelMetadata
    depth_net: DepthNet
    pose_net: Optional[PoseNet]
    path: Path


def build_depth_net(metadata: ModelMetadata, pretrained: bool = False) -> DepthNet:
    """The depth network the metadata describes (the semantic branch's weights come from the file)."""
    from .networks import DepthNet

    return DepthNet(
        num_layers=metadata.num_layers, pretrained=pretrained, encoder=metadata.encoder,
        upsampling=metadata.upsampling, semantic=metadata.semantic, stereo_head=metadata.stereo_head,
        semantic_pretrained=False,
    )


def build_pose_net(metadata: ModelMetadata, pretrained: bool = False) -> PoseNet:
    from .networks import PoseNet

    return PoseNet(num_layers=metadata.num_layers, pretrained=pretrained, encoder=metadata.encoder,
                   camera_head=metadata.intrinsics != "given")


def _prefixed(prefix: str, module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": value.detach().cpu().contiguous() for key, value in module.state_dict().items()}


def save_model_file(
    path, metadata: ModelMetadata, depth_net: DepthNet, pose_net: Optional[PoseNet] = None
) -> Path:
    """Write a model file atomically (temporary file + rename), so a crash never leaves half a file."""
    metadata = dataclasses.replace(metadata, has_pose=pose_net is not None)
    metadata.validate()
    tensors = _prefixed("depth", depth_net)
    if pose_net is not None:
        tensors.update(_prefixed("pose", pose_net))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        # mkstemp makes the file 0600; a node running as another user (e.g. in a container)
        # must be able to read the model. (Reading the umask would mean setting it: not thread-safe.)
        os.chmod(tmp_name, 0o644)
        write_safetensors(tmp_name, tensors, metadata={METADATA_KEY: metadata.to_json()})
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def read_model_metadata(path) -> ModelMetadata:
    """Read only the metadata header (cheap; no tensors are loaded)."""
    path = Path(path)
    header = _read_header(path)
    text = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if text is None:
        raise ModelFileError(
            f"{path}: safetensors file without mono_depth_ros metadata; it was not written by this package. "
            + HOW_TO_GET_A_MODEL
        )
    return ModelMetadata.from_json(text, source=str(path))


def _read_header(path: Path) -> dict:
    _check_path(path)
    try:
        return read_safetensors_header(path)[0]
    except SafetensorsFormatError as error:
        raise ModelFileError(
            f"{path}: not a mono_depth_ros model file: {error}. mono_depth_ros never unpickles model "
            "files; convert Monodepth2 checkpoints with import_monodepth2, or " + HOW_TO_GET_A_MODEL
        ) from error


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist. " + HOW_TO_GET_A_MODEL)
    if path.is_dir():
        raise ModelFileError(f"model path {path} is a directory; give the .safetensors file inside it")


def state_dict_differences(
    expected: Dict[str, torch.Tensor],
    given: Dict[str, torch.Tensor],
    name: Callable[[str], str] = str,
    sort_key: Callable[[str], Any] = str,
    file_missing_label: str = "",
) -> List[str]:
    """What keeps ``given`` from loading into a module whose state dict is ``expected`` -> phrases
    ("2 missing (e.g. ...)", "1 unexpected ...", "1 of another shape (e.g. key: file (..) vs network (..))"),
    empty when it loads. ``name`` spells a key in messages (e.g. as another program's file does)."""
    missing = sorted(expected.keys() - given.keys(), key=sort_key)
    unexpected = sorted((name(key) for key in given.keys() - expected.keys()), key=sort_key)
    wrong_shape = [
        f"{name(key)}: file {tuple(given[key].shape)} vs network {tuple(expected[key].shape)}"
        for key in sorted(expected.keys() & given.keys(), key=lambda key: sort_key(name(key)))
        if given[key].shape != expected[key].shape
    ]
    details = []
    if missing:
        details.append(f"{len(missing)} missing (e.g. {file_missing_label}{', '.join(missing[:3])})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        details.append(f"{len(wrong_shape)} of another shape (e.g. {'; '.join(wrong_shape[:3])})")
    return details


def _load_into(module: torch.nn.Module, prefix: str, tensors: Dict[str, torch.Tensor], path: Path, what: str) -> None:
    expected = module.state_dict()
    given = {key[len(prefix) + 1:]: value for key, value in tensors.items() if key.startswith(prefix + ".")}
    details = state_dict_differences(expected, given)
    if details:
        raise ModelFileError(
            f"{path}: {what} weights do not match the architecture its metadata declares: "
            + ", ".join(details)
            + ". The file is damaged or its metadata is wrong; re-export it from its checkpoint."
        )
    module.load_state_dict(given, strict=True)


def load_model_file(path, device: str = "cpu") -> LoadedModel:
    """Load a model file, checking metadata and every weight's name and shape."""
    path = Path(path)
    metadata = read_model_metadata(path)
    try:
        tensors, _ = read_safetensors(path)
    except (SafetensorsFormatError, OSError) as error:
        raise ModelFileError(f"{path}: cannot read weights ({error})") from error
    depth_net = build_depth_net(metadata)
    _load_into(depth_net, "depth", tensors, path, "depth network")
    pose_net = None
    if metadata.has_pose:
        pose_net = build_pose_net(metadata)
        _load_into(pose_net, "pose", tensors, path, "pose network")
    depth_net.eval().to(device)
    if pose_net is not None:
        pose_net.eval().to(device)
    return LoadedModel(metadata=metadata, depth_net=depth_net, pose_net=pose_net, path=path)
