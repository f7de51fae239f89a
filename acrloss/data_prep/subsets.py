"""One entry point for every dataset's subsets: names, loading, and the spec of a user's data.

| dataset | ``data_dir`` | subsets |
|---|---|---|
| ``300w`` | the 300-W folder | train, common, challenging, full |
| ``wflw`` | a WFLW folder (:mod:`~acrloss.data_prep.wflw`) | train, test, pose, expression, illumination, makeup, occlusion, blur |
| ``cofw`` | a COFW folder (:mod:`~acrloss.data_prep.cofw`) | train, test |
| ``cofw68`` | a COFW-68 folder | test |
| ``aflw`` | an AFLW folder (:mod:`~acrloss.data_prep.aflw`) | train, full, frontal |
| ``images`` | any folder of images with a ``.pts`` beside each | all (any name reads the whole folder) |
| ``coco`` | one COCO-style JSON file (:mod:`~acrloss.data_prep.coco`) | all (any name reads the whole file) |

An unknown subset name raises ``ValueError`` naming the valid ones; an absent subset raises
:class:`~acrloss.data_prep.datasets.SubsetNotFoundError` (``find_subsets`` reports it instead).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from acrloss.config import USER_DATASETS, DatasetName, DatasetSpec, dataset_spec, user_spec
from acrloss.data_prep import aflw, cofw, wflw
from acrloss.data_prep.coco import read_coco
from acrloss.data_prep.datasets import W300_SUBSETS, Sample, SubsetNotFoundError, read_folder, w300_subset
from acrloss.data_prep.formats import LandmarkFileError

#: the subset names each named dataset knows (user datasets accept any name)
SUBSET_NAMES: dict[DatasetName, tuple[str, ...]] = {
    DatasetName.w300: tuple(W300_SUBSETS),
    DatasetName.wflw: wflw.SUBSETS,
    DatasetName.cofw: cofw.SUBSETS,
    DatasetName.cofw68: ("test",),
    DatasetName.aflw: aflw.SUBSETS,
}

#: names used in messages
DISPLAY = {DatasetName.w300: "300-W", DatasetName.wflw: "WFLW", DatasetName.cofw: "COFW", DatasetName.cofw68: "COFW-68",
           DatasetName.aflw: "AFLW"}


def check_subset(dataset: str | DatasetName, subset: str) -> str:
    """The canonical name of ``subset`` of ``dataset`` (``ValueError`` if unknown)."""
    dataset = DatasetName.parse(dataset)
    if dataset in USER_DATASETS:
        return str(subset)
    if dataset is DatasetName.wflw:
        return wflw.subset_name(subset)
    names = SUBSET_NAMES[dataset]
    if str(subset).lower() not in names:
        raise ValueError(f"unknown {DISPLAY[dataset]} subset {subset!r}; choose one of {list(names)}")
    return str(subset).lower()


def user_samples(dataset: str | DatasetName, data_dir: str | os.PathLike, num_points: int | None = None,
                 rejected: list | None = None) -> list[Sample]:
    """A user's own data: every ``.pts`` under a folder (``images``) or one COCO JSON
    (``coco``; a folder holding exactly one ``.json`` also works). Every face must have the
    same point count (``num_points`` when given). ``rejected``: bad ``.pts`` files of a
    folder are listed there and skipped (:func:`acrloss.data_prep.datasets.read_folder`)."""
    dataset = DatasetName.parse(dataset)
    path = Path(data_dir)
    if dataset is DatasetName.coco:
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if len(found) != 1:
                raise LandmarkFileError(f"{path}: give the COCO JSON file itself ({len(found)} .json files in this folder)")
            path = found[0]
        return read_coco(path, num_points=num_points, dataset="this dataset")
    samples = read_folder(path, num_points=num_points, rejected=rejected)
    counts = sorted({len(s.points) for s in samples})
    if len(counts) > 1 and rejected is not None:  # keep the most common scheme, list the others
        from collections import Counter

        from acrloss.data_prep.formats import RejectedFile

        keep = Counter(len(s.points) for s in samples).most_common(1)[0][0]
        for s in samples:
            if len(s.points) != keep:
                pts = Path(s.image_path).with_suffix(".pts")
                rejected.append(RejectedFile.from_error(pts, LandmarkFileError(
                    f"{pts}: expected {keep} points, found {len(s.points)} (wrong point count)")))
        return [s for s in samples if len(s.points) == keep]
    if len(counts) > 1:
        first = samples[0]
        other = next(s for s in samples if len(s.points) != len(first.points))
        raise LandmarkFileError(f"{Path(other.image_path).with_suffix('.pts')}: {len(other.points)} points, but "
                                f"{Path(first.image_path).with_suffix('.pts')} has {len(first.points)} (wrong point count)")
    return samples


def load_subset(dataset: str | DatasetName, data_dir: str | os.PathLike, subset: str,
                num_points: int | None = None, rejected: list | None = None) -> list[Sample]:
    """Samples of one subset of any dataset (see the module table).

    ``num_points`` applies to user datasets only (named datasets have a fixed count).
    """
    dataset = DatasetName.parse(dataset)
    name = check_subset(dataset, subset)
    if dataset in USER_DATASETS:
        return user_samples(dataset, data_dir, num_points, rejected=rejected)
    if data_dir is None or not Path(data_dir).exists():
        raise SubsetNotFoundError(f"{DISPLAY[dataset]} data folder {data_dir} not found")
    if dataset is DatasetName.w300:
        return w300_subset(data_dir, name, rejected=rejected)
    if dataset is DatasetName.wflw:
        return wflw.wflw_subset(data_dir, name)
    if dataset is DatasetName.cofw:
        return cofw.cofw_subset(data_dir, name)
    if dataset is DatasetName.cofw68:
        return cofw.cofw68_subset(data_dir, name)
    if dataset is DatasetName.aflw:
        return aflw.aflw_subset(data_dir, name)
    raise NotImplementedError(f"no reader for dataset {dataset.value!r}")


def find_subsets(dataset: str | DatasetName, data_dir: str | os.PathLike, names: Sequence[str] | None = None,
                 num_points: int | None = None) -> dict[str, list[Sample] | str]:
    """Each requested subset's samples, or the reason it is absent (a string). ``names``
    ``None``: the dataset's default test subsets. Unknown names raise ``ValueError`` before
    anything is read."""
    dataset = DatasetName.parse(dataset)
    if names is None:
        names = ("all",) if dataset in USER_DATASETS else dataset_spec(dataset).test_subsets
    canonical = [check_subset(dataset, n) for n in names]
    out: dict[str, list[Sample] | str] = {}
    for name in canonical:
        try:
            out[name] = load_subset(dataset, data_dir, name, num_points)
        except SubsetNotFoundError as exc:
            out[name] = str(exc)
    return out


def resolve_spec(dataset: str | DatasetName, samples: Sequence[Sample] | None = None,
                 mirror: Sequence[int] | None = None, norm_points: "Sequence[int] | str | None" = None) -> DatasetSpec:
    """The spec to train / evaluate with: a named dataset's own (``mirror`` / ``norm_points``
    must then be ``None``), or for user data (``images``, ``coco``) :func:`acrloss.config.user_spec`
    of the samples' point count."""
    dataset = DatasetName.parse(dataset)
    if dataset not in USER_DATASETS:
        if mirror is not None or norm_points is not None:
            raise ValueError(f"a mirror map / normalization can only be given for user data (images, coco), "
                             f"not {dataset.value!r}, whose scheme is fixed")
        return dataset_spec(dataset)
    if not samples:
        raise ValueError("user data: no samples to take the point count from")
    return user_spec(len(samples[0].points), mirror=mirror, norm_points=norm_points, name=dataset.value)
