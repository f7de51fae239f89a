"""Which faces train and which validate: the fixed-seed random split and the
leave-one-source-out (LOSO) splits of the 300-W train sources (issue 12).

``TrainConfig.split``:

- ``random``: the 300-W train split (afw + helen/trainset + lfpw/trainset), a fixed-seed
  ``val_fraction`` of it for validation (:func:`acrloss.data_prep.datasets.train_val_split`).
- ``loso-lfpw``: train on afw + helen/trainset, validate on all of lfpw/trainset.
- ``loso-helen``: train on afw + lfpw/trainset, validate on all of helen/trainset.

The LOSO validation faces come from a photo collection the model never saw, so their NME
measures generalization to new sources; choose recipe changes by it, never by the test subsets.
"""
from __future__ import annotations

import os

import numpy as np

from acrloss.config import SPLITS, DatasetName
from acrloss.data_prep.datasets import W300_SUBSETS, Sample, read_folder

#: the 300-W train sources
W300_TRAIN_SOURCES: tuple[str, ...] = W300_SUBSETS["train"]


def loso_sources(split: str) -> tuple[tuple[str, ...], str]:
    """``(train folders, held-out folder)`` of a ``loso-*`` split."""
    if split not in SPLITS or SPLITS[split] is None:
        raise ValueError(f"{split!r} is not a leave-one-source-out split; choose one of "
                         f"{[k for k, v in SPLITS.items() if v is not None]}")
    held = SPLITS[split]
    return tuple(s for s in W300_TRAIN_SOURCES if s != held), held


def evenly_spaced(count: int, limit: int) -> np.ndarray:
    """Indices of ``limit`` evenly spaced items of ``count`` (all ``count`` when ``limit`` is 0
    or not smaller): the faces ``benchmarks/generalization.py --limit N`` scores, so a tool
    choosing anything on the same set can leave exactly those faces out."""
    if count < 0 or limit < 0:
        raise ValueError(f"evenly_spaced: count and limit must be >= 0, got {count}, {limit}")
    if not limit or limit >= count:
        return np.arange(count)
    return np.linspace(0, count - 1, limit).round().astype(int)


def loso_split(data_dir: str | os.PathLike, split: str, max_train_faces: int | None = None,
               seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """``(train, validation)`` samples of a leave-one-source-out split of the 300-W train
    folders under ``data_dir``. ``max_train_faces`` keeps a fixed-seed subset of the training
    side only (the held-out source is always validated whole)."""
    train_folders, held = loso_sources(split)
    train: list[Sample] = []
    for folder in train_folders:
        train.extend(read_folder(os.path.join(data_dir, folder), num_points=68, recursive=False))
    val = read_folder(os.path.join(data_dir, held), num_points=68, recursive=False)
    if max_train_faces is not None and max_train_faces < len(train):
        keep = np.sort(np.random.default_rng(seed).permutation(len(train))[:max_train_faces])
        train = [train[i] for i in keep]
    return train, val


def check_split_dataset(split: str, dataset: str) -> None:
    """LOSO splits are defined on 300-W's sources only."""
    if split != "random" and DatasetName.parse(dataset) is not DatasetName.w300:
        raise ValueError(f"split {split!r} is defined on the 300-W train sources; dataset {dataset!r} has none")
