"""Models: backbones and task heads."""
from acrloss.models.backbones import build_backbone
from acrloss.models.regressor import build_regressor, landmarks_from_output, load_model

__all__ = ["build_backbone", "build_regressor", "landmarks_from_output", "load_model"]
