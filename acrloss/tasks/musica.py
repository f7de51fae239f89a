"""MuSiCa (:mod:`acrloss.models.musica`): built from the mean shape of the training faces;
:class:`acrloss.losses.CascadeLoss` on ``"cascade"`` (ACR / L2 / L1 per stage plus the
error-prediction term), NME on ``"landmarks"``, per-stage NME and the error MAE on
``"cascade"``; the same targets reach every output (:class:`DictTargets`)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from acrloss.config import MusicaConfig
from acrloss.data_prep.pipeline import normalized_labels
from acrloss.losses import CascadeLoss
from acrloss.metrics import ErrorMAE, NMEMetric, StageNME
from acrloss.models.musica import OUTPUT_KEYS, build_musica
from acrloss.tasks.base import Task

__all__ = ["DictTargets", "MusicaTask", "compile_arguments", "model_options", "build_from_config", "training_objective",
           "NME_LOG_NAME"]

#: the name under which Keras logs the final landmarks' NME (``val_`` + this is monitored)
NME_LOG_NAME = "landmarks_nme"


class DictTargets(keras.utils.PyDataset):
    """Wraps a dataset of ``(images, targets[, extra])`` batches so that ``targets`` reach
    every model output: ``(images, {key: targets for key in keys})``. Epoch ends are
    forwarded (shuffling, augmentation seeds); the inner dataset's ``phi_level`` is still
    set directly by the curriculum callback."""

    def __init__(self, inner: Any, keys: Sequence[str] = OUTPUT_KEYS, workers: int = 1) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.inner = inner
        self.keys = tuple(keys)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        batch = self.inner[index]
        images, targets = batch[0], batch[1]
        return (images, {k: targets for k in self.keys}, *batch[2:])

    def on_epoch_end(self) -> None:
        self.inner.on_epoch_end()


def compile_arguments(num_points: int, norm_points: Sequence[int], num_stages: int, loss: str = "acr",
                      acr_lambda: float = 1.0, error_weight: float = 0.1, acr_scale: float = 1.0) -> dict[str, Any]:
    """``model.compile`` keyword arguments for a MuSiCa model: loss on ``cascade``; NME on
    ``landmarks`` (logged as ``landmarks_nme``); per-stage NME (``cascade_nme_s1`` ...) and
    the error-prediction MAE (``cascade_err_mae``, NME percent points) on ``cascade``; XLA
    compilation (``jit_compile=True``)."""
    return {
        # XLA: the many small gather/elementwise ops of the stages run ~3x faster per training
        # step on a CPU with TensorFlow (Keras leaves XLA off on CPU by default); JAX always jits
        "jit_compile": True,
        "loss": {"cascade": CascadeLoss(loss, num_points, num_stages, error_weight, acr_lambda, norm_points,
                                        scale=acr_scale if loss == "acr" else 1.0)},
        "metrics": {
            "landmarks": [NMEMetric(num_points, norm_points)],
            "cascade": [StageNME(t, num_points, norm_points) for t in range(num_stages)] + [ErrorMAE(num_points, norm_points)],
        },
    }


def model_options(cfg: Any) -> dict[str, Any]:
    """:func:`build_musica` keywords of a :class:`acrloss.config.TrainConfig`: the architecture
    of its ``model`` (a :class:`MusicaConfig`) and the crop's input size."""
    return {**cfg.model.model_options(), "input_size": int(cfg.crop.input_size)}


def build_from_config(cfg: Any, num_points: int, train_samples: Sequence[Any]) -> keras.Model:
    """:func:`build_musica` with :func:`model_options` and the mean of the training faces'
    normalized labels (un-augmented crops, :func:`acrloss.data_prep.pipeline.normalized_labels`)
    as the initial shape."""
    if len(train_samples) == 0:
        raise ValueError("MuSiCa: no training faces to take the mean shape from")
    mean_shape = normalized_labels(train_samples, cfg.crop).mean(axis=0)
    return build_musica(mean_shape, num_points=num_points, **model_options(cfg))


def training_objective(cfg: Any, num_points: int, norm_points: Sequence[int]) -> dict[str, Any]:
    """``model.compile`` loss and metrics for a ``TrainConfig`` (see :func:`compile_arguments`)."""
    loss = cfg.loss
    return compile_arguments(num_points, norm_points, len(cfg.model.stage_levels), loss.name, loss.acr_lambda,
                             cfg.model.error_weight, loss.acr_scale)


class MusicaTask(Task):
    """``musica`` (:class:`MusicaConfig`: the architecture and the error-prediction weight); ACR, L2 or L1."""

    config_class = MusicaConfig
    monitor = NME_LOG_NAME

    def build_model(self, backbone_weights: str | None, preprocessing: str,
                    train_samples: Callable[[], Sequence[Any]]) -> keras.Model:
        if backbone_weights is not None:
            raise ValueError("MuSiCa has no backbone: start must be 'random' (or use init_weights)")
        return build_from_config(self.config, self.spec.num_points, train_samples())

    def compile_arguments(self) -> dict[str, Any]:
        return training_objective(self.config, self.spec.num_points, self.spec.norm_points)

    def wrap(self, sequence: Any) -> Any:
        return DictTargets(sequence, workers=self.config.workers)
