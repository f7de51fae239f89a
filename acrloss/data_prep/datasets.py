"""Folder layouts to lists of :class:`Sample` per split and subset (no pixels read here)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from acrloss.config import DatasetName
from acrloss.data_prep.formats import LandmarkFileError, RejectedFile, read_pts, validate_points
from acrloss.data_prep.images import IMAGE_EXTENSIONS, image_size


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


def read_pts_sample(pts_path: str | os.PathLike, num_points: int | None = 68) -> Sample:
    """One ``.pts`` file and the image beside it, its points checked against the image's
    size (read from the header, no pixel decoded; see
    :func:`acrloss.data_prep.formats.validate_points`). Raises :class:`LandmarkFileError`
    naming the file."""
    pts_path = Path(pts_path)
    points = read_pts(pts_path, num_points)
    image = _image_for(pts_path)
    validate_points(points, pts_path, num_points, image_size(image, decode=False))
    return Sample(str(image), points)


def read_folder(folder: str | os.PathLike, num_points: int = 68, recursive: bool = True,
                rejected: list[RejectedFile] | None = None) -> list[Sample]:
    """Every ``.pts`` under ``folder`` with the image beside it, sorted by path.

    Raises :class:`LandmarkFileError` naming the folder when it is missing or holds no
    ``.pts`` file, and naming the file for a bad ``.pts`` (malformed, wrong point count,
    points far outside the image) or a missing image. With a ``rejected`` list, bad files
    are appended to it (file and reason) and skipped instead.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LandmarkFileError(f"{folder}: folder not found")
    pts_files = sorted(folder.rglob("*.pts") if recursive else folder.glob("*.pts"))
    if not pts_files:
        raise LandmarkFileError(f"{folder}: no .pts files found (empty folder?)")
    samples = []
    for p in pts_files:
        try:
            samples.append(read_pts_sample(p, num_points))
        except LandmarkFileError as exc:
            if rejected is None:
                raise
            rejected.append(RejectedFile.from_error(p, exc))
    return samples


def w300_subset(data_dir: str | os.PathLike, subset: str, rejected: list[RejectedFile] | None = None) -> list[Sample]:
    """Samples of one 300-W subset (``train``, ``common``, ``challenging`` or ``full``).

    A folder that is absent is reported by :class:`SubsetNotFoundError`
    ("challenging: ibug/ not found under DIR"); for ``full`` the missing part is skipped
    as well: no partial subsets are reported. ``rejected``: see :func:`read_folder`.
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
        samples.extend(read_folder(data_dir / folder, num_points=68, recursive=False, rejected=rejected))
    return samples


def available_subsets(data_dir: str | os.PathLike, names: Sequence[str] = ("common", "challenging", "full"),
                      rejected: list[RejectedFile] | None = None) -> dict[str, list[Sample] | str]:
    """Each requested subset's samples, or the reason it is missing (a string).
    ``rejected``: see :func:`read_folder` (a file is listed once even if in two subsets)."""
    out: dict[str, list[Sample] | str] = {}
    for name in names:
        try:
            found: list[RejectedFile] | None = [] if rejected is not None else None
            out[name] = w300_subset(data_dir, name, rejected=found)
            if rejected is not None:
                rejected.extend(r for r in found if r not in rejected)
        except SubsetNotFoundError as exc:
            out[name] = str(exc)
    return out


def load_split(dataset: str | DatasetName, data_dir: str | os.PathLike, subset: str,
               rejected: list[RejectedFile] | None = None) -> list[Sample]:
    """Samples of a dataset's subset (:func:`acrloss.data_prep.subsets.load_subset`);
    ``DatasetName.images`` reads any folder recursively (every face with the same point count).
    ``rejected``: files refused at read time are listed there and skipped (300-W and
    ``.pts`` folders, see :func:`read_folder`; the other readers raise)."""
    dataset = DatasetName.parse(dataset)
    if dataset is DatasetName.w300:
        return w300_subset(data_dir, subset, rejected=rejected)
    from acrloss.data_prep.subsets import load_subset  # WFLW, COFW, COFW-68, AFLW, user folders / COCO JSON

    return load_subset(dataset, data_dir, subset, rejected=rejected)


def train_val_split(samples: Sequence[Sample], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """A fixed-seed split of ``samples`` into (train, validation)."""
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = int(round(len(samples) * val_fraction))
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val
