"""The task interface: what ``Train`` asks of a model family.

A task owns everything that differs between families: its settings (:attr:`Task.config_class`,
the family config ``TrainConfig.model``; another family's config is an error), the model (:meth:`Task.build_model`), its loss and metrics (:meth:`Task.compile_arguments`),
how batches are shaped (:meth:`Task.sequence_options`, :meth:`Task.wrap`) and the monitored
metric (:attr:`Task.monitor`). ``Train`` (:mod:`acrloss.train`) only calls this interface; the
table :data:`acrloss.tasks.TASKS` maps each architecture to its task.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Sequence

import keras

from acrloss.config import COORDINATE_LOSSES, DatasetSpec, FamilyConfig, LossName, TaskConfigError, TrainConfig


class Task:
    """One model family in training. Subclasses set :attr:`config_class` / :attr:`losses` and
    implement :meth:`build_model` and :meth:`compile_arguments`.

    Args:
        config: the run's settings (validated here: :meth:`check`).
        spec: the dataset's landmark scheme (point count, NME normalization).
    """

    #: the family's config (``TrainConfig.model``, defaults when ``None``); ``None``: the family has no options
    config_class: ClassVar[type[FamilyConfig] | None] = None
    #: the losses this family trains with; the first is the default (``loss=None``)
    losses: ClassVar[tuple[LossName, ...]] = COORDINATE_LOSSES
    #: the logged name of the NME metric ``EpochCheckpoint`` monitors (``val_`` + it with validation)
    monitor: ClassVar[str] = "nme"

    def __init__(self, config: TrainConfig, spec: DatasetSpec) -> None:
        self.config = config
        self.spec = spec
        self.check()

    @property
    def name(self) -> str:
        """The architecture name (``config.arch``)."""
        return str(self.config.arch)

    def check(self) -> None:
        """Resolve ``config.loss.name`` (``None``: this family's default loss) and ``config.model``
        (``None``: :attr:`config_class` with its defaults); refuse what does not apply: a loss
        this family does not train with, ACR options with another loss (:class:`LossConfig`),
        another family's config. Raises :class:`TaskConfigError` naming the setting."""
        cfg = self.config
        allowed = [loss.value for loss in self.losses]
        loss = allowed[0] if cfg.loss.name is None else cfg.loss.name
        if loss not in allowed:
            raise TaskConfigError(f"loss {loss!r} does not apply to arch {self.name!r}; it trains with {allowed}")
        cfg.loss = dataclasses.replace(cfg.loss, name=loss)  # (a copy: the caller's LossConfig stays as it was)
        if cfg.model is None and self.config_class is not None:
            cfg.model = self.config_class()
        elif cfg.model is not None and type(cfg.model) is not self.config_class:
            takes = "no family config" if self.config_class is None else self.config_class.__name__
            raise TaskConfigError(f"{type(cfg.model).__name__} (the {cfg.model.family!r} family's settings) does not "
                                  f"apply to arch {self.name!r}, which takes {takes}")

    @property
    def imagenet_start(self) -> bool:
        """Whether the run can start from the converted ImageNet MobileNetV2 backbone
        (``start="imagenet"``: width 1.0 only)."""
        return False

    @property
    def uses_phi(self) -> bool:
        """Whether the targets carry the ACR difficulty Φ (and the PCA curriculum runs)."""
        return self.config.loss.name == LossName.ACR.value

    def build_model(self, backbone_weights: str | None, preprocessing: str,
                    train_samples: Callable[[], Sequence[Any]]) -> keras.Model:
        """The untrained model. ``backbone_weights`` / ``preprocessing``: the start
        (:meth:`acrloss.train.Train._start`); ``train_samples()`` lists the training faces (for
        families that derive something from them, e.g. MuSiCa's mean shape)."""
        raise NotImplementedError

    def compile_arguments(self) -> dict[str, Any]:
        """``model.compile`` keyword arguments besides the optimizer: ``loss``, ``metrics`` (and
        e.g. ``jit_compile``)."""
        raise NotImplementedError

    def sequence_options(self) -> dict[str, Any]:
        """Extra :class:`acrloss.data_prep.pipeline.LandmarkSequence` keywords (e.g. a heatmap
        codec that encodes the targets)."""
        return {}

    def wrap(self, sequence: Any) -> Any:
        """The batches ``model.fit`` sees, from a ``LandmarkSequence`` (default: as they are)."""
        return sequence
