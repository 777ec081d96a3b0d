"""KITTI raw data: the Eigen split's frame lists and the benchmark's evaluation protocol (NumPy, no torch).

:func:`read_split` (:mod:`.splits`) and :func:`eigen_errors` / :func:`format_eigen_table` (:mod:`.protocol`).
Raw drives to bags: :func:`.raw.kitti_to_bag` (imported from :mod:`.raw`, not here, so that
``python -m mono_depth_ros_training.kitti.raw`` runs it as a script).
"""
from .protocol import STEREO_SCALE_FACTOR, eigen_errors, format_eigen_table
from .splits import SPLITS, SplitFrame, read_split, split_drives

__all__ = [
    "SPLITS", "STEREO_SCALE_FACTOR", "SplitFrame", "eigen_errors", "format_eigen_table", "read_split", "split_drives",
]
