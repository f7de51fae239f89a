"""COFW (29 points with occlusion labels, Burgos-Artizzu et al., ICCV 2013) and the 68-point
COFW-68 test labels (Ghiasi & Fowlkes 2015).

Layouts of a COFW folder ``DIR``:

* **official release** (``COFW_color.zip``): ``DIR/COFW_train_color.mat`` and
  ``DIR/COFW_test_color.mat`` (the greyscale ``COFW_train.mat`` / ``COFW_test.mat`` are read
  when the colour files are absent). MATLAB v7.3 (HDF5, read with h5py; older versions
  through scipy). Variables, in MATLAB's shapes (``N`` = 1,345 train / 507 test faces):

  - ``IsTr`` / ``IsT``: ``N x 1`` cell of images (``H x W x 3`` uint8 RGB, or ``H x W``);
  - ``phisTr`` / ``phisT``: ``N x 87``: ``x(1..29)``, ``y(1..29)``, ``occlusion(1..29)``
    (1 = occluded), MATLAB 1-based pixel coordinates: 1 is subtracted (as mmpose's
    ``parse_cofw_dataset.py`` does; negative values are kept, not clamped);
  - ``bboxesTr`` / ``bboxesT``: ``N x 4`` face boxes ``x, y, w, h``.

  Images stay inside the ``.mat``; samples name them ``DIR/COFW_test_color.mat::IsT/<i>``.

* **mmpose** (made by its ``parse_cofw_dataset.py``): ``DIR/annotations/cofw_{train,test}.json``
  and ``DIR/images/``; visibility 2 = visible, 1 = occluded.

COFW-68 (``DIR`` or ``DIR/COFW68_Data``): ``test_annotations/<i>_points.mat`` (``i`` = 1 .. 507,
the order of ``IsT``) holding ``Points`` (68 x 2, MATLAB 1-based: 1 is subtracted) and ``Occ``
(68 x 1, 1 = occluded), with the images of the COFW test ``.mat`` beside it (colour or
greyscale). The benchmark's own script normalizes by the eye-centre distance; this library
reports COFW-68 like 300-W (outer eye corners 36 / 45, see :data:`acrloss.config.COFW68_SPEC`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from acrloss.data_prep.coco import read_coco
from acrloss.data_prep.datasets import Sample, SubsetNotFoundError
from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.matfile import cell_length, mat_ref, read_variables

NUM_POINTS = 29
SUBSETS = ("train", "test")
#: MATLAB variable names per split: (images, points, boxes)
VARIABLES = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}


def _subset(name: str, allowed: tuple[str, ...], what: str) -> str:
    key = str(name).lower()
    if key not in allowed:
        raise ValueError(f"unknown {what} subset {name!r}; choose one of {list(allowed)}")
    return key


def official_mat(data_dir: str | os.PathLike, split: str) -> Path | None:
    """The split's official ``.mat`` under ``data_dir`` (colour preferred), or ``None``."""
    for stem in (f"COFW_{split}_color.mat", f"COFW_{split}.mat"):
        path = Path(data_dir) / stem
        if path.is_file():
            return path
    return None


def read_cofw_mat(path: str | os.PathLike, split: str) -> list[Sample]:
    """Samples of an official COFW ``.mat`` (``split`` ``"train"`` or ``"test"``).

    Raises:
        LandmarkFileError: naming the file for a missing variable, a point count other than
            29 (``phis`` not ``N x 87``) or a number of images other than of faces.
    """
    path = Path(path)
    images, phis_name, boxes_name = VARIABLES[split]
    data = read_variables(path, (phis_name, boxes_name))
    phis, boxes = np.asarray(data[phis_name], dtype=np.float64), np.asarray(data[boxes_name], dtype=np.float64)
    if phis.ndim != 2 or phis.shape[1] != 3 * NUM_POINTS:
        cols = phis.shape[1] if phis.ndim == 2 else phis.size
        raise LandmarkFileError(f"{path}: {phis_name} is {phis.shape}; COFW stores N x {3 * NUM_POINTS} "
                                f"(x, y, occlusion of {NUM_POINTS} points) — {cols // 3} points found (wrong point count)")
    if boxes.shape != (len(phis), 4):
        raise LandmarkFileError(f"{path}: {boxes_name} is {boxes.shape}; expected {len(phis)} x 4 (x, y, w, h)")
    n_images = cell_length(path, images)
    if n_images != len(phis):
        raise LandmarkFileError(f"{path}: {images} holds {n_images} images for {len(phis)} faces")
    if not np.all(np.isfinite(phis)):
        raise LandmarkFileError(f"{path}: {phis_name} holds NaN or infinite values")
    samples = []
    for i, row in enumerate(phis):
        xyz = row.reshape(3, NUM_POINTS).T
        x, y, w, h = boxes[i]
        samples.append(Sample(mat_ref(path, images, i), xyz[:, :2] - 1.0, box=np.array([x, y, x + w, y + h]),
                              visible=xyz[:, 2] == 0))
    return samples


def cofw_subset(data_dir: str | os.PathLike, subset: str) -> list[Sample]:
    """Samples of COFW ``train`` or ``test`` from the official ``.mat`` files or mmpose's JSON.

    Raises:
        ValueError: an unknown subset.
        SubsetNotFoundError: neither layout holds the subset; the message names the files.
    """
    split = _subset(subset, SUBSETS, "COFW")
    data_dir = Path(data_dir)
    mat = official_mat(data_dir, split)
    if mat is not None:
        return read_cofw_mat(mat, split)
    json_path = data_dir / "annotations" / f"cofw_{split}.json"
    if json_path.is_file():
        return read_coco(json_path, data_dir / "images", num_points=NUM_POINTS, dataset="COFW")
    raise SubsetNotFoundError(f"{split}: neither {data_dir / f'COFW_{split}_color.mat'} nor {json_path} found")


def read_points_mat(path: str | os.PathLike, num_points: int = 68) -> tuple[np.ndarray, np.ndarray]:
    """A COFW-68 ``<i>_points.mat``: 0-based ``(68, 2)`` points and ``(68,)`` visibility."""
    path = Path(path)
    data = read_variables(path, ("Points", "Occ"))
    pts = np.asarray(data["Points"], dtype=np.float64)
    occ = np.asarray(data["Occ"], dtype=np.float64).reshape(-1)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) != num_points:
        raise LandmarkFileError(f"{path}: Points is {pts.shape}; COFW-68 expects {num_points} x 2 (wrong point count)")
    if occ.size != num_points:
        raise LandmarkFileError(f"{path}: Occ holds {occ.size} flags for {num_points} points")
    if not np.all(np.isfinite(pts)):
        raise LandmarkFileError(f"{path}: Points holds NaN or infinite values")
    return pts - 1.0, occ == 0


def cofw68_subset(data_dir: str | os.PathLike, subset: str = "test") -> list[Sample]:
    """The COFW-68 test set: 507 faces with 68 points and occlusion flags (see the module
    docstring). Faces are cropped from their landmark extent, as 300-W's are.

    Raises:
        ValueError: a subset other than ``test``.
        SubsetNotFoundError: the annotation folder or the test ``.mat`` is absent.
        LandmarkFileError: a missing or malformed ``<i>_points.mat``.
    """
    _subset(subset, ("test",), "COFW-68")
    data_dir = Path(data_dir)
    roots = [data_dir, data_dir / "COFW68_Data"]
    ann_dir = next((r / "test_annotations" for r in roots if (r / "test_annotations").is_dir()), None)
    if ann_dir is None:
        raise SubsetNotFoundError(f"test: COFW-68 annotations not found ({' or '.join(str(r / 'test_annotations') for r in roots)})")
    mat = next((m for m in (official_mat(r, "test") for r in roots) if m is not None), None)
    if mat is None:
        raise SubsetNotFoundError(f"test: the COFW test images (COFW_test_color.mat or COFW_test.mat) not found in {data_dir}")
    count = cell_length(mat, "IsT")
    samples = []
    for i in range(count):
        pts_path = ann_dir / f"{i + 1}_points.mat"
        if not pts_path.is_file():
            raise LandmarkFileError(f"{pts_path}: COFW-68 label file not found ({count} test images in {mat.name})")
        points, visible = read_points_mat(pts_path)
        samples.append(Sample(mat_ref(mat, "IsT", i), points, visible=visible))
    return samples
