"""Heatmap models (MobileNetV2 + heatmap head, decoded inside the model): the codec encodes
the targets (``{"heatmaps", "landmarks"}``) and decodes in the model; heatmap MSE on
``"heatmaps"``, NME on ``"landmarks"``."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from acrloss.config import HeatmapConfig, LossName
from acrloss.losses import HeatmapMSE
from acrloss.metrics import NMEMetric
from acrloss.models.heatmap import build_heatmap_model, train_codec
from acrloss.tasks.base import Task

#: the logged name of the landmark NME metric of a heatmap model (Keras prefixes the output name)
NME_LOG_NAME = "landmarks_nme"


def training_objective(num_points: int, norm_points: "tuple[int, int] | str", foreground_weight: float = 0.0) -> dict[str, Any]:
    """``model.compile`` keyword arguments for a heatmap model: :class:`HeatmapMSE` on the
    ``"heatmaps"`` output, no loss on ``"landmarks"``, and the NME metric on ``"landmarks"``
    (logged as :data:`NME_LOG_NAME`)."""
    return {
        "loss": {"heatmaps": HeatmapMSE(foreground_weight=foreground_weight)},
        "metrics": {"landmarks": [NMEMetric(num_points, norm_points)]},
    }


class HeatmapTask(Task):
    """``mnv2_heatmap`` (:class:`HeatmapConfig`: ``alpha``, heatmap ``size`` and ``sigma``,
    ``decoder``, ``fg_weight``); the loss is the heatmap MSE (the coordinate losses, ACR's Φ and
    the PCA curriculum do not apply)."""

    config_class = HeatmapConfig
    losses = (LossName.HEATMAP_MSE,)
    monitor = NME_LOG_NAME

    def check(self) -> None:
        super().check()
        hm = self.config.model
        #: the one codec that encodes the targets and decodes inside the model
        self.codec = train_codec(self.config.crop.input_size, hm.size, hm.sigma, hm.decoder)

    @property
    def imagenet_start(self) -> bool:
        return self.config.model.alpha == 1.0

    def build_model(self, backbone_weights: str | None, preprocessing: str,
                    train_samples: Callable[[], Sequence[Any]]) -> keras.Model:
        return build_heatmap_model(self.spec.num_points, alpha=self.config.model.alpha, backbone_weights=backbone_weights,
                                   preprocessing=preprocessing, codec=self.codec)

    def compile_arguments(self) -> dict[str, Any]:
        return training_objective(self.spec.num_points, self.spec.norm_points, self.config.model.fg_weight)

    def sequence_options(self) -> dict[str, Any]:
        return {"codec": self.codec}  # targets {"heatmaps", "landmarks"}
