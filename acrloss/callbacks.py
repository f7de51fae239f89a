"""Training callbacks: the ACR kept-variance curriculum, a cosine learning-rate schedule
and an atomic best-checkpoint writer that survives a resume. (``Train`` keeps its resume
state, best checkpoint included, with :class:`acrloss.checkpoint.EpochCheckpoint`.)"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import keras

from acrloss.io import atomic_path, atomic_write_bytes


def curriculum_level(epoch: int, epochs: int, num_levels: int) -> int:
    """Index of the kept-variance level for ``epoch``: the levels share the epochs evenly
    (works for any number of epochs, including fewer epochs than levels)."""
    if epochs <= 0 or num_levels <= 0:
        return 0
    return min(num_levels - 1, (epoch * num_levels) // epochs)


class CurriculumCallback(keras.callbacks.Callback):
    """Sets each dataset's Φ level (and epoch, for reshuffling) at the start of an epoch.

    The levels (e.g. 80 -> 85 -> 90 -> 95 % kept variance) are spread evenly over
    ``epochs``; Φ for each level was computed once before training.
    """

    def __init__(self, datasets: Sequence, levels: Sequence[int], epochs: int) -> None:
        super().__init__()
        self.datasets = list(datasets)
        self.levels = sorted(levels)  # phi_table columns are in ascending level order
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        level = curriculum_level(epoch, self.epochs, len(self.levels))
        for ds in self.datasets:
            ds.phi_level = level
            if ds.epoch != epoch:
                ds.epoch = epoch
                ds._reshuffle()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["pca_percent"] = float(self.levels[curriculum_level(epoch, self.epochs, len(self.levels))])


def cosine_lr(base_lr: float, epochs: int, warmup: int = 2, floor: float = 0.01):
    """Per-epoch learning rate: linear warm-up, then cosine decay to ``floor * base_lr``."""

    def schedule(epoch: int, lr: float = 0.0) -> float:
        if epoch < warmup:
            return base_lr * (epoch + 1) / (warmup + 1)
        t = (epoch - warmup) / max(1, epochs - warmup)
        return base_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    return schedule


def same_schedule_so_far(base_lr: float, epochs_before: int, epochs_now: int, num_levels: int, done: int) -> bool:
    """Whether runs of ``epochs_before`` and of ``epochs_now`` epochs set the same learning rate
    (:func:`cosine_lr`) and curriculum level (:func:`curriculum_level`) in each of their first
    ``done`` epochs. Then a run resumed after ``done`` epochs with the new count is exactly the
    run that count would have given from the start: typically while it is still in its
    warm-up (e.g. to fit a run's length to a time budget measured over its first epochs)."""
    before, now = cosine_lr(base_lr, epochs_before), cosine_lr(base_lr, epochs_now)
    return all(before(e) == now(e) and curriculum_level(e, epochs_before, num_levels) == curriculum_level(e, epochs_now, num_levels)
               for e in range(done))


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` (``.h5``) atomically whenever ``monitor`` improves
    (lower is better), and records the best value in ``path + '.json'`` so a resumed run
    keeps comparing against it."""

    def __init__(self, path: str | os.PathLike, monitor: str = "val_nme") -> None:
        super().__init__()
        self.path = Path(path)
        self.meta = self.path.with_suffix(self.path.suffix + ".json")
        self.monitor = monitor
        self.best = math.inf
        if self.meta.is_file():
            self.best = float(json.loads(self.meta.read_text())["best"])

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
            return
        self.best = float(value)
        with atomic_path(self.path, suffix=self.path.suffix) as tmp:
            self.model.save(tmp, overwrite=True)
        record = {"best": self.best, "monitor": self.monitor, "epoch": epoch + 1}
        atomic_write_bytes(self.meta, json.dumps(record, indent=1).encode())
