"""Coordinate regression (MobileNetV2 / EfficientNet backbone + a dense head): ACR, L2 or L1
on the flattened normalized points, NME metric."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from acrloss.config import LossName, ModelArch, RegressionConfig, TaskConfigError
from acrloss.losses import get_loss
from acrloss.metrics import NMEMetric
from acrloss.models import build_regressor
from acrloss.tasks.base import Task


class RegressionTask(Task):
    """``mnv2`` (:class:`RegressionConfig`: width ``alpha``, ``head``) and ``efficientnet_b0`` /
    ``efficientnet_b3`` (``head``; their width is fixed)."""

    config_class = RegressionConfig

    def check(self) -> None:
        super().check()
        if not self._mobilenet and self.config.model.alpha != 1.0:
            raise TaskConfigError(f"setting ['alpha'] does not apply to arch {self.name!r} (its width is fixed)")

    @property
    def _mobilenet(self) -> bool:
        return ModelArch.parse(self.config.arch) is ModelArch.MNV2

    @property
    def imagenet_start(self) -> bool:
        return self._mobilenet and self.config.model.alpha == 1.0

    def build_model(self, backbone_weights: str | None, preprocessing: str,
                    train_samples: Callable[[], Sequence[Any]]) -> keras.Model:
        cfg = self.config
        return build_regressor(cfg.arch, self.spec.num_points, cfg.crop.input_size, alpha=cfg.model.alpha, head=cfg.model.head,
                               backbone_weights=backbone_weights, preprocessing=preprocessing)

    def compile_arguments(self) -> dict[str, Any]:
        loss = self.config.loss
        extra = {"lambda_": loss.acr_lambda, "scale": loss.acr_scale} if loss.name == LossName.ACR.value else {}
        return {"loss": get_loss(loss.name, self.spec.num_coords, **extra),
                "metrics": [NMEMetric(self.spec.num_points, self.spec.norm_points)]}
