"""Coordinate regression (MobileNetV2 / EfficientNet backbone + a dense head): ACR, L2 or L1
on the flattened normalized points, NME metric."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from acrloss.config import ModelArch
from acrloss.losses import get_loss
from acrloss.metrics import NMEMetric
from acrloss.models import build_regressor
from acrloss.tasks.base import Task


class RegressionTask(Task):
    """``mnv2`` (width ``alpha``, ``head``) and ``efficientnet_b0`` / ``efficientnet_b3``
    (``head``; their width is fixed)."""

    options = ("alpha", "head")
    imagenet_start = True

    def check(self) -> None:
        if ModelArch.parse(self.config.arch) is not ModelArch.MNV2:
            self.options = ("head",)  # EfficientNet has no width multiplier
            self.imagenet_start = False
        super().check()

    def build_model(self, backbone_weights: str | None, preprocessing: str,
                    train_samples: Callable[[], Sequence[Any]]) -> keras.Model:
        cfg = self.config
        return build_regressor(cfg.arch, self.spec.num_points, cfg.crop.input_size, alpha=cfg.alpha, head=cfg.head,
                               backbone_weights=backbone_weights, preprocessing=preprocessing)

    def compile_arguments(self) -> dict[str, Any]:
        cfg = self.config
        extra = {"lambda_": cfg.acr_lambda, "scale": cfg.acr_scale} if cfg.loss == "acr" else {}
        return {"loss": get_loss(cfg.loss, self.spec.num_coords, **extra),
                "metrics": [NMEMetric(self.spec.num_points, self.spec.norm_points)]}
