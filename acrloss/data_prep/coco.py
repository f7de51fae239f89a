"""COCO-style face-keypoint JSON (mmpose's WFLW / COFW / AFLW / 300-W annotation files, or a
user's own file of any point count) -> :class:`~acrloss.data_prep.datasets.Sample` lists.

The layout read here (the COCO keypoint format as mmpose writes it for faces)::

    {"images": [{"id": 2, "file_name": "a/b.jpg", ...}, ...],
     "annotations": [{"image_id": 2, "keypoints": [x0, y0, v0, x1, y1, v1, ...],
                      "bbox": [x, y, w, h], "box_size": 362.0 (AFLW only), ...}, ...]}

Conventions (stated once here, used by every reader built on this one):

* coordinates are taken as they are, as 0-based pixel positions: mmpose's WFLW files copy
  the official list's values unchanged (``tools/dataset_converters/wflw2coco.py``) and its
  COFW files subtract MATLAB's 1 (``tools/dataset/parse_cofw_dataset.py``);
* ``bbox`` ``[x, y, w, h]`` becomes the sample box ``(x, y, x + w, y + h)``;
* visibility ``v``: 0 = not labelled (refused: every point must be labelled), 1 / 2 =
  labelled. Only files that use 2 at all distinguish visible (2) from occluded (1) — COFW
  as mmpose converts it (``v = 2 - occluded``); files whose labelled points are all 1
  (mmpose's WFLW, AFLW, 300-W) carry no occlusion labels and give ``visible = None``;
* ``box_size`` (mmpose's AFLW files) becomes :attr:`Sample.norm`.

``file_name`` is resolved against ``image_root`` when given, else the first of the JSON's
folder, ``<json folder>/images`` and ``<json folder>/../images`` (mmpose's
``annotations/`` + ``images/`` layout) that holds the first image.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from acrloss.data_prep.datasets import Sample
from acrloss.data_prep.formats import LandmarkFileError


def _fail(path: Path, message: str) -> LandmarkFileError:
    return LandmarkFileError(f"{path}: {message}")


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed JSON document with its ``images`` and ``annotations`` lists checked."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "COCO keypoint JSON not found")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"cannot read as JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise _fail(path, "not a COCO keypoint file (needs 'images' and 'annotations' lists)")
    if not doc["annotations"]:
        raise _fail(path, "holds no annotations")
    return doc


def _image_root(path: Path, first_file: str, image_root: str | os.PathLike | None) -> Path:
    candidates = [Path(image_root)] if image_root is not None else [path.parent, path.parent / "images", path.parent.parent / "images"]
    for root in candidates:
        if (root / first_file).is_file():
            return root
    tried = ", ".join(str(c) for c in candidates)
    raise _fail(path, f"image {first_file!r} not found under {tried}")


def read_coco(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    num_points: int | None = None,
    dataset: str = "COCO",
    skip_unlabelled: bool = False,
) -> list[Sample]:
    """Every face annotation of a COCO-style keypoint JSON as a :class:`Sample`, in file order.

    Args:
        path: the JSON file.
        image_root: folder the ``file_name`` entries are relative to (default: see the
            module docstring).
        num_points: the expected point count (``None``: the first annotation decides, and
            every other one must agree).
        dataset: the dataset's name, for messages ("WFLW expects 98 points").
        skip_unlabelled: leave out faces with unlabelled points (``v = 0``) instead of
            raising.

    Raises:
        LandmarkFileError: naming the file and the annotation for a missing file, a wrong
            point count, unlabelled or non-finite points, or images that are absent.
    """
    path = Path(path)
    doc = load_coco_json(path)
    files: dict[Any, str] = {}
    for img in doc["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise _fail(path, f"an 'images' entry lacks 'id' or 'file_name': {str(img)[:120]}")
        files[img["id"]] = img["file_name"]
    rows = []
    expected = None if num_points is None else int(num_points)
    for k, ann in enumerate(doc["annotations"]):
        name = f"annotation {k} (id {ann.get('id', '?')})" if isinstance(ann, dict) else f"annotation {k}"
        if not isinstance(ann, dict) or not isinstance(ann.get("keypoints"), list):
            raise _fail(path, f"{name} has no 'keypoints' list")
        if ann.get("image_id") not in files:
            raise _fail(path, f"{name}: image_id {ann.get('image_id')!r} is not in 'images'")
        try:
            kp = np.asarray(ann["keypoints"], dtype=np.float64)
        except (TypeError, ValueError):
            raise _fail(path, f"{name}: keypoints are not numbers") from None
        if kp.size % 3:
            raise _fail(path, f"{name}: {kp.size} keypoint values, not (x, y, v) triples")
        kp = kp.reshape(-1, 3)
        if expected is None:
            expected = len(kp)
        if len(kp) != expected:
            what = f"{dataset} has {expected} points" if num_points is not None else f"the first annotation has {expected}"
            raise _fail(path, f"{name} holds {len(kp)} points; {what} (wrong point count)")
        if not np.all(np.isfinite(kp)):
            raise _fail(path, f"{name}: NaN or infinite keypoint values")
        rows.append((ann, kp))
    root = _image_root(path, files[rows[0][0]["image_id"]], image_root)
    uses_two = any(np.any(kp[:, 2] == 2) for _, kp in rows)
    samples: list[Sample] = []
    skipped = 0
    missing: list[str] = []
    for k, (ann, kp) in enumerate(rows):
        unlabelled = int(np.sum(kp[:, 2] <= 0))
        if unlabelled:
            if skip_unlabelled:
                skipped += 1
                continue
            raise _fail(path, f"annotation {k} (id {ann.get('id', '?')}) has {unlabelled} unlabelled points (v = 0); "
                              "every point must be labelled (or pass skip_unlabelled=True)")
        image = root / files[ann["image_id"]]
        if not image.is_file():
            missing.append(str(image))
        box = None
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and float(bbox[2]) > 0 and float(bbox[3]) > 0:
            x, y, w, h = (float(v) for v in bbox)
            box = np.array([x, y, x + w, y + h])
        norm = ann.get("box_size")
        samples.append(Sample(
            image_path=str(image),
            points=kp[:, :2].copy(),
            box=box,
            visible=(kp[:, 2] >= 2) if uses_two else None,
            norm=None if norm is None else float(norm),
        ))
    if missing:
        raise _fail(path, f"{len(missing)} image(s) not found, e.g. {', '.join(missing[:3])}")
    if not samples:
        raise _fail(path, f"no usable face ({skipped} with unlabelled points skipped)")
    return samples
