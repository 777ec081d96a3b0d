"""KITTI raw frame lists of the Eigen split, as the published benchmark uses them (package data).

* ``eigen_test``: Eigen et al.'s (NIPS 2014) 697 test frames, 28 drives: the KITTI depth benchmark
  every self-supervised paper reports on;
* ``eigen_zhou_train`` / ``eigen_zhou_val``: Zhou et al.'s (CVPR 2017) training split of the
  remaining drives (static frames removed), the one Monodepth2 trains its monocular models on.

The lists are the frame names of nianticlabs/monodepth2's ``splits/eigen/test_files.txt`` and
``splits/eigen_zhou/{train,val}_files.txt`` (commit b676244), stored unchanged under ``splits/``
(the train list gzipped). One line per frame: ``<date>/<date>_drive_<nnnn>_sync <frame> <l|r>``,
the frame index being zero-padded in the test list and not in the others; ``l`` is KITTI's left
colour camera (image_02), ``r`` the right one (image_03).
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Dict, List, NamedTuple, Set

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
# name -> file under SPLITS_DIR
SPLITS: Dict[str, str] = {
    "eigen_test": "eigen_test.txt",
    "eigen_zhou_train": "eigen_zhou_train.txt.gz",
    "eigen_zhou_val": "eigen_zhou_val.txt",
}
SIDES = ("l", "r")
# KITTI raw's image folders of the two colour cameras.
SIDE_FOLDERS = {"l": "image_02", "r": "image_03"}


class SplitFrame(NamedTuple):
    """One frame of a split: drive folder (``'2011_09_26/2011_09_26_drive_0002_sync'``), frame index, side."""

    drive: str
    frame: int
    side: str

    @property
    def date(self) -> str:
        return self.drive.split("/", 1)[0]

    def image_path(self, extension: str = ".png") -> str:
        """Path of the image under the KITTI raw root, e.g. ``2011_09_26/..._sync/image_02/data/0000000069.png``."""
        return f"{self.drive}/{SIDE_FOLDERS[self.side]}/data/{self.frame:010d}{extension}"


def parse_split_line(line: str) -> SplitFrame:
    """``'2011_09_26/2011_09_26_drive_0002_sync 0000000069 l'`` -> SplitFrame(drive, 69, 'l')."""
    fields = line.split()
    if len(fields) != 3:
        raise ValueError(f"a split line has 3 fields (drive folder, frame, side), got {line!r}")
    drive, frame, side = fields
    if side not in SIDES or not frame.isdigit() or drive.count("/") != 1:
        raise ValueError(f"not a split line (<date>/<drive folder> <frame index> <l|r>): {line!r}")
    return SplitFrame(drive, int(frame), side)


def read_split(name: str) -> List[SplitFrame]:
    """The frames of split ``name`` (one of :data:`SPLITS`), in the file's order (the benchmark's order)."""
    if name not in SPLITS:
        raise ValueError(f"split '{name}' is not known; use one of {', '.join(SPLITS)}")
    path = SPLITS_DIR / SPLITS[name]
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="ascii") as stream:
            text = stream.read()
    else:
        text = path.read_text(encoding="ascii")
    return [parse_split_line(line) for line in text.splitlines() if line.strip()]


def split_drives(name: str) -> Set[str]:
    """The drive folders that split ``name`` draws frames from."""
    return {frame.drive for frame in read_split(name)}
