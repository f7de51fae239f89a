"""Folder layouts to lists of :class:`Sample` per split and subset (no pixels read here)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from acrloss.config import DatasetName
from acrloss.data_prep.formats import LandmarkFileError, read_pts
from acrloss.data_prep.images import IMAGE_EXTENSIONS


@dataclass
class Sample:
    """One annotated face: image path, 0-based (N, 2) points, optional (x0, y0, x1, y1) box.

    ``visible``: optional ``(N,)`` bool, the point is visible (``False``: labelled as
    occluded, e.g. COFW); ``None`` when the source has no occlusion labels. ``norm``: an
    annotated NME normalization length (AFLW's ``box_size``), used when the dataset's spec
    normalizes by the box (``DatasetSpec.norm_points == "box"``).
    """

    image_path: str
    points: np.ndarray
    box: np.ndarray | None = None
    visible: np.ndarray | None = None
    norm: float | None = None

    @property
    def name(self) -> str:
        return Path(self.image_path).stem


#: 300-W folder layout: subset name -> relative folders
W300_SUBSETS: dict[str, tuple[str, ...]] = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenging": ("ibug",),
}
W300_SUBSETS["full"] = W300_SUBSETS["common"] + W300_SUBSETS["challenging"]


class SubsetNotFoundError(FileNotFoundError):
    """A subset whose folders are absent; the message names them."""


def _image_for(pts_path: Path) -> Path:
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = pts_path.with_suffix(ext)
        if candidate.is_file():
            return candidate
    raise LandmarkFileError(f"{pts_path}: no image (.jpg/.png) beside this .pts file")


def read_folder(folder: str | os.PathLike, num_points: int = 68, recursive: bool = True) -> list[Sample]:
    """Every ``.pts`` under ``folder`` with the image beside it, sorted by path.

    Raises :class:`LandmarkFileError` naming the folder when it is missing or holds no
    ``.pts`` file, and naming the file for a bad ``.pts`` or a missing image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LandmarkFileError(f"{folder}: folder not found")
    pts_files = sorted(folder.rglob("*.pts") if recursive else folder.glob("*.pts"))
    if not pts_files:
        raise LandmarkFileError(f"{folder}: no .pts files found (empty folder?)")
    return [Sample(str(_image_for(p)), read_pts(p, num_points)) for p in pts_files]


def w300_subset(data_dir: str | os.PathLike, subset: str) -> list[Sample]:
    """Samples of one 300-W subset (``train``, ``common``, ``challenging`` or ``full``).

    A folder that is absent is reported by :class:`SubsetNotFoundError`
    ("challenging: ibug/ not found under DIR"); for ``full`` the missing part is skipped
    as well: no partial subsets are reported.
    """
    if subset not in W300_SUBSETS:
        raise ValueError(f"unknown 300-W subset {subset!r}; choose one of {sorted(W300_SUBSETS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SubsetNotFoundError(f"300-W data folder {data_dir} not found")
    present = [f for f in W300_SUBSETS[subset] if (data_dir / f).is_dir()]
    missing = [f for f in W300_SUBSETS[subset] if f not in present]
    if missing:
        raise SubsetNotFoundError(
            f"{subset}: {', '.join(m + '/' for m in missing)} not found under {data_dir}"
        )
    samples: list[Sample] = []
    for folder in present:
        samples.extend(read_folder(data_dir / folder, num_points=68, recursive=False))
    return samples


def available_subsets(data_dir: str | os.PathLike, names: Sequence[str] = ("common", "challenging", "full")) -> dict[str, list[Sample] | str]:
    """Each requested subset's samples, or the reason it is missing (a string)."""
    out: dict[str, list[Sample] | str] = {}
    for name in names:
        try:
            out[name] = w300_subset(data_dir, name)
        except SubsetNotFoundError as exc:
            out[name] = str(exc)
    return out


def load_split(dataset: str | DatasetName, data_dir: str | os.PathLike, subset: str) -> list[Sample]:
    """Samples of a dataset's subset (:func:`acrloss.data_prep.subsets.load_subset`);
    ``DatasetName.images`` reads any folder recursively (every face with the same point count)."""
    dataset = DatasetName.parse(dataset)
    if dataset is DatasetName.w300:
        return w300_subset(data_dir, subset)
    from acrloss.data_prep.subsets import load_subset  # WFLW, COFW, COFW-68, AFLW, user folders / COCO JSON

    return load_subset(dataset, data_dir, subset)


def train_val_split(samples: Sequence[Sample], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """A fixed-seed split of ``samples`` into (train, validation)."""
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = int(round(len(samples) * val_fraction))
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val
