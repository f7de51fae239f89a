"""The task interface: what ``Train`` asks of a model family.

A task owns everything that differs between families: which :class:`~acrloss.config.TrainConfig`
options apply (:attr:`Task.options`; another family's option set away from its default is an
error), the model (:meth:`Task.build_model`), its loss and metrics (:meth:`Task.compile_arguments`),
how batches are shaped (:meth:`Task.sequence_options`, :meth:`Task.wrap`) and the monitored
metric (:attr:`Task.monitor`). ``Train`` (:mod:`acrloss.train`) only calls this interface; the
table :data:`acrloss.tasks.TASKS` maps each architecture to its task.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Sequence

import keras

from acrloss.config import COORDINATE_LOSSES, DatasetSpec, LossName, TrainConfig

#: TrainConfig fields that belong to one family (or to the ACR loss); every task lists those it
#: reads in :attr:`Task.options`, the others must keep their defaults
FAMILY_OPTIONS: tuple[str, ...] = ("alpha", "head", "heatmap_size", "heatmap_sigma", "decoder", "heatmap_fg_weight",
                                   "musica_error_weight", "musica_options")
#: the options of the ACR loss (they apply with ``loss="acr"`` only)
ACR_OPTIONS: tuple[str, ...] = ("acr_lambda", "acr_scale")


class TaskConfigError(ValueError):
    """A setting that does not apply to the chosen family or loss."""


def _changed(cfg: TrainConfig, name: str) -> bool:
    default = TrainConfig.__dataclass_fields__[name]
    value = default.default if default.default is not dataclasses.MISSING else default.default_factory()
    return getattr(cfg, name) != value


class Task:
    """One model family in training. Subclasses set :attr:`options` / :attr:`losses` and
    implement :meth:`build_model` and :meth:`compile_arguments`.

    Args:
        config: the run's settings (validated here: :meth:`check`).
        spec: the dataset's landmark scheme (point count, NME normalization).
    """

    #: the TrainConfig fields of :data:`FAMILY_OPTIONS` this family reads
    options: ClassVar[tuple[str, ...]] = ()
    #: the losses this family trains with; the first is the default (``loss=None``)
    losses: ClassVar[tuple[LossName, ...]] = COORDINATE_LOSSES
    #: the logged name of the NME metric ``EpochCheckpoint`` monitors (``val_`` + it with validation)
    monitor: ClassVar[str] = "nme"
    #: the family can start from the converted ImageNet MobileNetV2 backbone (``start="imagenet"``)
    imagenet_start: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, spec: DatasetSpec) -> None:
        self.config = config
        self.spec = spec
        self.check()

    @property
    def name(self) -> str:
        """The architecture name (``config.arch``)."""
        return str(self.config.arch)

    def check(self) -> None:
        """Resolve ``config.loss`` (``None``: this family's default loss) and refuse settings that
        do not apply: another family's options, ACR options with another loss, a loss this
        family does not train with. Raises :class:`TaskConfigError` naming the setting."""
        cfg = self.config
        allowed = [loss.value for loss in self.losses]
        loss = allowed[0] if cfg.loss is None else LossName.parse(cfg.loss).value
        if loss not in allowed:
            raise TaskConfigError(f"loss {loss!r} does not apply to arch {self.name!r}; it trains with {allowed}")
        cfg.loss = loss
        foreign = [name for name in FAMILY_OPTIONS if name not in self.options and _changed(cfg, name)]
        if loss != LossName.ACR.value:
            foreign += [name for name in ACR_OPTIONS if _changed(cfg, name)]
        if foreign:
            raise TaskConfigError(f"setting(s) {foreign} do not apply to arch {self.name!r} with loss {loss!r} "
                                  f"(its own options: {list(self.options) + (list(ACR_OPTIONS) if loss == 'acr' else [])})")

    @property
    def uses_phi(self) -> bool:
        """Whether the targets carry the ACR difficulty Φ (and the PCA curriculum runs)."""
        return self.config.loss == LossName.ACR.value

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
