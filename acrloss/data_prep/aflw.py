"""AFLW-19 (19 points, Koestinger et al. 2011; the 19-point protocol of Zhu et al. 2016) in
mmpose's COCO-style layout::

    DIR/annotations/face_landmarks_aflw_train.json
    DIR/annotations/face_landmarks_aflw_test.json           (subset "full", 4,386 faces)
    DIR/annotations/face_landmarks_aflw_test_frontal.json   (subset "frontal", 1,165 faces)
    DIR/images/flickr/...

Every annotation carries ``box_size`` (the side of the AFLW face box), the NME normalization
of this dataset (mmpose: ``AFLWDataset`` keeps ``box_size`` and evaluates with
``NME(norm_mode="use_norm_item", norm_item="box_size")``); it becomes ``Sample.norm``.
"""
from __future__ import annotations

import os
from pathlib import Path

from acrloss.data_prep.coco import read_coco
from acrloss.data_prep.datasets import Sample, SubsetNotFoundError
from acrloss.data_prep.formats import LandmarkFileError

NUM_POINTS = 19
#: subset -> annotation file stem
FILES = {"train": "face_landmarks_aflw_train", "full": "face_landmarks_aflw_test", "frontal": "face_landmarks_aflw_test_frontal"}
SUBSETS = tuple(FILES)


def aflw_subset(data_dir: str | os.PathLike, subset: str) -> list[Sample]:
    """Samples of AFLW-19 ``train``, ``full`` (the whole test set) or ``frontal``.

    Raises:
        ValueError: an unknown subset.
        SubsetNotFoundError: the subset's JSON is absent.
        LandmarkFileError: a malformed file, a point count other than 19, or a test face
            without ``box_size``.
    """
    key = str(subset).lower()
    if key not in FILES:
        raise ValueError(f"unknown AFLW subset {subset!r}; choose one of {list(SUBSETS)}")
    path = Path(data_dir) / "annotations" / f"{FILES[key]}.json"
    if not path.is_file():
        raise SubsetNotFoundError(f"{key}: AFLW annotation file {path} not found")
    samples = read_coco(path, Path(data_dir) / "images", num_points=NUM_POINTS, dataset="AFLW-19")
    if key != "train":
        lacking = sum(s.norm is None for s in samples)
        if lacking:
            raise LandmarkFileError(f"{path}: {lacking} face(s) without 'box_size', AFLW's NME normalization")
    return samples
