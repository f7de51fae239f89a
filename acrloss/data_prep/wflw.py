"""WFLW (98 points, Wu et al., CVPR 2018): the official lists and mmpose's COCO-style JSON.

Two layouts of a WFLW folder ``DIR`` are recognised:

* **official release**::

      DIR/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt
      DIR/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt
      DIR/WFLW_images/<event folder>/<image>.jpg

  One face per line, 207 fields separated by spaces: ``x0 y0 ... x97 y97`` (196
  coordinates), the face rectangle ``x_min y_min x_max y_max``, six 0/1 attribute flags in
  the order pose, expression, illumination, make-up, occlusion, blur, and the image path
  relative to ``WFLW_images``. Coordinates are used as they are (0-based pixels, as mmpose's
  ``wflw2coco.py`` also does). A line of 197 fields (points and path only, the layout of
  ``list_98pt_test/*.txt``) is read without box and attributes.

* **mmpose**::

      DIR/annotations/face_landmarks_wflw_{train,test}.json
      DIR/annotations/face_landmarks_wflw_test_{largepose,expression,illumination,makeup,occlusion,blur}.json
      DIR/images/...

Subsets: ``train``, ``test`` (2,500 faces) and the six attribute subsets of the test set,
``pose`` (alias ``largepose``), ``expression``, ``illumination``, ``makeup`` (alias
``make-up``), ``occlusion``, ``blur``: from the flags (official) or from their own files
(mmpose).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from acrloss.data_prep.coco import read_coco
from acrloss.data_prep.datasets import Sample, SubsetNotFoundError
from acrloss.data_prep.formats import LandmarkFileError

NUM_POINTS = 98
#: attribute flag columns, in file order
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
SUBSETS = ("train", "test") + ATTRIBUTES
_ALIASES = {"largepose": "pose", "make-up": "makeup", "make_up": "makeup"}
#: mmpose's file suffix of each attribute subset
MMPOSE_SUFFIX = {"pose": "largepose", "expression": "expression", "illumination": "illumination",
                 "makeup": "makeup", "occlusion": "occlusion", "blur": "blur"}

OFFICIAL_LISTS = Path("WFLW_annotations") / "list_98pt_rect_attr_train_test"
OFFICIAL_IMAGES = "WFLW_images"


def subset_name(name: str) -> str:
    """The canonical subset name (``largepose`` -> ``pose``); unknown names raise ``ValueError``."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in SUBSETS:
        raise ValueError(f"unknown WFLW subset {name!r}; choose one of {list(SUBSETS)}")
    return key


def read_wflw_list(path: str | os.PathLike, image_root: str | os.PathLike) -> tuple[list[Sample], np.ndarray | None]:
    """Read an official WFLW list: the samples and their ``(M, 6)`` attribute flags (``None``
    for a list without attribute columns).

    Raises:
        LandmarkFileError: naming the file and line for a wrong field count (a point count
            other than 98), a non-numeric value, or a missing image.
    """
    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise SubsetNotFoundError(f"{path}: WFLW list not found")
    samples: list[Sample] = []
    flags: list[np.ndarray] = []
    with_attrs: bool | None = None
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        numbers, name = fields[:-1], fields[-1]
        if len(numbers) == 2 * NUM_POINTS + 10:
            has_attrs = True
        elif len(numbers) == 2 * NUM_POINTS:
            has_attrs = False
        else:
            coords = len(numbers) - 10 if len(numbers) > 2 * NUM_POINTS else len(numbers)
            raise LandmarkFileError(
                f"{path}: line {lineno} has {len(fields)} fields; a WFLW line holds {2 * NUM_POINTS} coordinates "
                f"({NUM_POINTS} points), 4 box values, 6 attribute flags and the image path (207 fields) — "
                f"about {coords // 2} points found (wrong point count?)")
        if with_attrs is None:
            with_attrs = has_attrs
        elif with_attrs != has_attrs:
            raise LandmarkFileError(f"{path}: line {lineno} differs in layout from the first line (attribute columns)")
        try:
            values = np.array([float(v) for v in numbers])
        except ValueError:
            raise LandmarkFileError(f"{path}: line {lineno} holds a value that is not a number") from None
        if not np.all(np.isfinite(values)):
            raise LandmarkFileError(f"{path}: line {lineno} holds NaN or infinite values")
        points = values[: 2 * NUM_POINTS].reshape(NUM_POINTS, 2)
        box = values[2 * NUM_POINTS : 2 * NUM_POINTS + 4] if has_attrs else None
        image = image_root / name
        if not image.is_file():
            raise LandmarkFileError(f"{path}: line {lineno}: image {image} not found")
        samples.append(Sample(str(image), points, box=box))
        if has_attrs:
            flags.append(values[2 * NUM_POINTS + 4 :].astype(np.int64))
    if not samples:
        raise LandmarkFileError(f"{path}: no faces in this WFLW list")
    return samples, (np.stack(flags) if with_attrs else None)


def layout(data_dir: str | os.PathLike) -> str:
    """``"official"`` or ``"mmpose"``: which WFLW layout ``data_dir`` holds."""
    data_dir = Path(data_dir)
    if (data_dir / OFFICIAL_LISTS).is_dir():
        return "official"
    if (data_dir / "annotations").is_dir() and any((data_dir / "annotations").glob("face_landmarks_wflw_*.json")):
        return "mmpose"
    raise SubsetNotFoundError(
        f"{data_dir}: not a WFLW folder (expected {OFFICIAL_LISTS}/list_98pt_rect_attr_*.txt with {OFFICIAL_IMAGES}/, "
        "or annotations/face_landmarks_wflw_*.json with images/)")


def wflw_subset(data_dir: str | os.PathLike, subset: str) -> list[Sample]:
    """Samples of one WFLW subset (see the module docstring).

    Raises:
        ValueError: an unknown subset name.
        SubsetNotFoundError: the folder is not a WFLW layout, or the subset's list / JSON
            file (e.g. an attribute file of the mmpose layout) is absent; the message names it.
        LandmarkFileError: a malformed file, or attribute subsets asked of a list without
            attribute flags.
    """
    name = subset_name(subset)
    data_dir = Path(data_dir)
    if layout(data_dir) == "official":
        split = "train" if name == "train" else "test"
        list_path = data_dir / OFFICIAL_LISTS / f"list_98pt_rect_attr_{split}.txt"
        samples, flags = read_wflw_list(list_path, data_dir / OFFICIAL_IMAGES)
        if name in ("train", "test"):
            return samples
        if flags is None:
            raise LandmarkFileError(f"{list_path}: no attribute flags in this list, so no {name!r} subset")
        column = ATTRIBUTES.index(name)
        return [s for s, f in zip(samples, flags) if f[column] == 1]
    stem = name if name in ("train", "test") else f"test_{MMPOSE_SUFFIX[name]}"
    json_path = data_dir / "annotations" / f"face_landmarks_wflw_{stem}.json"
    if not json_path.is_file():
        kind = "attribute file" if name in ATTRIBUTES else "annotation file"
        raise SubsetNotFoundError(f"{name}: WFLW {kind} {json_path} not found")
    return read_coco(json_path, data_dir / "images", num_points=NUM_POINTS, dataset="WFLW")
