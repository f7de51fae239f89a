"""acrloss: face alignment with Adaptive Coordinate-based Regression (ACR) Loss.

Public surface::

    from acrloss import Train, Test, PCAUtility, ACRLoss, DatasetName, ModelArch
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of CLI output

from acrloss.config import DatasetName, ModelArch, TrainConfig, CropConfig, AugmentConfig, CurriculumConfig
from acrloss.losses import ACRLoss, L1Loss, L2Loss
from acrloss.pca_utility import PCAUtility

__version__ = "0.1.0"


def __getattr__(name):  # lazy: Train/Test pull in the data pipeline
    if name == "Train":
        from acrloss.train import Train

        return Train
    if name == "Test":
        from acrloss.test import Test

        return Test
    if name == "FaceAligner":
        from acrloss.align import FaceAligner

        return FaceAligner
    raise AttributeError(f"module 'acrloss' has no attribute {name!r}")


__all__ = ["Train", "Test", "PCAUtility", "ACRLoss", "L1Loss", "L2Loss", "DatasetName", "ModelArch",
           "TrainConfig", "CropConfig", "AugmentConfig", "CurriculumConfig", "FaceAligner"]
