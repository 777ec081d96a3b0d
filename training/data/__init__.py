"""Training samples from rosbag2 recordings: triplets, stereo pairs, splits, augmentation, caching.

Pipeline per bag: find topics (mono_depth_ros.bagio) -> decode every image once, undistort when
D is non-zero, resize to the training size with area interpolation and store the frames
in a uint8 .npy cache (memory-mapped by the data-loader workers) -> choose target frames
(triplets by timestamp, stereo pairs, static frames dropped) -> split each bag into a
training head and a validation tail by time.

Modules: :mod:`.config` (DataConfig, the modes), :mod:`.cache` (the decoded-frame cache),
:mod:`.samples` (sample selection and the split), :mod:`.augmentation` (colour jitter, flips),
:mod:`.weather` (rain, snow, fog, sun flare), :mod:`.dataset` (BagDataset, build_datasets). The
names below are re-exported here; patch a name in the module that looks it up (e.g.
``dataset.COLOUR_JITTER_PROBABILITY``, ``dataset.sample_weather``), not here.
"""
from .augmentation import (
    COLOUR_JITTER_PROBABILITY,
    FLIP_X,
    ColourJitter,
    flip_intrinsics,
    flip_transform,
    hue_rotation_matrix,
)
from .cache import (
    CACHE_VERSION,
    THUMBNAIL_FACTOR,
    BagCache,
    GrowingArray,
    default_cache_dir,
    load_bag,
    placeholder_intrinsics,
    thumbnail,
)
from .config import MODES, DataConfig
from .dataset import BagDataset, DataReport, build_datasets
from .samples import SampleRef, select_samples, split_samples
from .weather import WEATHER_EFFECTS, sample_weather

__all__ = [
    "BagCache",
    "BagDataset",
    "CACHE_VERSION",
    "COLOUR_JITTER_PROBABILITY",
    "ColourJitter",
    "DataConfig",
    "DataReport",
    "FLIP_X",
    "GrowingArray",
    "MODES",
    "SampleRef",
    "THUMBNAIL_FACTOR",
    "WEATHER_EFFECTS",
    "build_datasets",
    "default_cache_dir",
    "flip_intrinsics",
    "flip_transform",
    "hue_rotation_matrix",
    "load_bag",
    "placeholder_intrinsics",
    "sample_weather",
    "select_samples",
    "split_samples",
    "thumbnail",
]
