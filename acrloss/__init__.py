"""acrloss: face alignment with Adaptive Coordinate-based Regression (ACR) Loss.

Public surface::

    from acrloss import Train, Test, PCAUtility, ACRLoss, DatasetName, ModelArch, FaceAligner

Every name is imported on first use: ``import acrloss`` (and ``acrloss --help``) loads
neither Keras nor a backend. Backend logs are quiet unless ``ACRLOSS_VERBOSE=1``
(:mod:`acrloss.console`).
"""
from __future__ import annotations

import importlib as _importlib

from acrloss.console import set_backend_logs as _set_backend_logs

# before any backend import (TensorFlow reads its C++ log level once): quiet unless ACRLOSS_VERBOSE=1, so that
# every entry point, python train.py / test.py included, prints only its own output
_set_backend_logs()

__version__ = "0.1.0"

#: public name -> module that defines it (imported lazily by ``__getattr__``)
_LAZY = {
    "Train": "acrloss.train",
    "Test": "acrloss.test",
    "PCAUtility": "acrloss.pca_utility",
    "ACRLoss": "acrloss.losses",
    "L1Loss": "acrloss.losses",
    "L2Loss": "acrloss.losses",
    "DatasetName": "acrloss.config",
    "ModelArch": "acrloss.config",
    "TrainConfig": "acrloss.config",
    "CropConfig": "acrloss.config",
    "AugmentConfig": "acrloss.config",
    "CurriculumConfig": "acrloss.config",
    "LossConfig": "acrloss.config",
    "FamilyConfig": "acrloss.config",
    "RegressionConfig": "acrloss.config",
    "HeatmapConfig": "acrloss.config",
    "MusicaConfig": "acrloss.config",
    "FaceAligner": "acrloss.align",
    "LandmarkPredictor": "acrloss.predictor",
    "PredictorOptions": "acrloss.predictor",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:  # (``from acrloss import test`` then imports the sub-module)
        raise AttributeError(f"module 'acrloss' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Train", "Test", "PCAUtility", "ACRLoss", "L1Loss", "L2Loss", "DatasetName", "ModelArch",
           "TrainConfig", "CropConfig", "AugmentConfig", "CurriculumConfig", "LossConfig", "FamilyConfig", "RegressionConfig",
           "HeatmapConfig", "MusicaConfig", "FaceAligner",
           "LandmarkPredictor", "PredictorOptions"]
