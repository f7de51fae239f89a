"""One training task per model family (see :mod:`acrloss.tasks.base`), picked by architecture.

A new family is one task module (a :class:`~acrloss.tasks.base.Task` subclass, with its own
:class:`~acrloss.config.FamilyConfig` subclass for its settings) plus one entry in :data:`TASKS`
(docs/extending.md).
"""
from __future__ import annotations

from acrloss.config import ModelArch, TaskConfigError
from acrloss.tasks.base import Task
from acrloss.tasks.heatmap import HeatmapTask
from acrloss.tasks.musica import MusicaTask
from acrloss.tasks.regression import RegressionTask

__all__ = ["TASKS", "Task", "TaskConfigError", "task_class", "RegressionTask", "HeatmapTask", "MusicaTask"]

#: architecture name -> the task that trains it
TASKS: dict[str, type[Task]] = {
    ModelArch.MNV2.value: RegressionTask,
    ModelArch.EFFICIENTNET_B0.value: RegressionTask,
    ModelArch.EFFICIENTNET_B3.value: RegressionTask,
    ModelArch.MNV2_HEATMAP.value: HeatmapTask,
    ModelArch.MUSICA.value: MusicaTask,
}


def task_class(arch: "str | ModelArch") -> type[Task]:
    """The task of an architecture name (any case) or :class:`ModelArch`; ``ValueError``
    listing the known names otherwise."""
    key = arch.value if isinstance(arch, ModelArch) else str(arch).lower()
    if key not in TASKS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(TASKS)}")
    return TASKS[key]
