"""Test helper: random, non-default weights for a model (shared by the model tests)."""
from __future__ import annotations

import keras
import numpy as np


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every weight (batch-norm statistics included) a random, non-default value.

    A freshly initialized MobileNetV2 in inference mode maps every input to almost the
    same output (its features are ~1e-11), which would make a prediction comparison
    meaningless; random He-scaled kernels and batch-norm statistics give outputs that
    depend on the input. The fixed input normalization of EfficientNet stays as it is.
    """
    rng = np.random.default_rng(seed)
    for v in model.weights:
        w = np.asarray(v)
        path = v.path
        if path.startswith("normalization/") or "/normalization/" in path:
            continue
        if "moving_variance" in path or "gamma" in path:
            new = rng.uniform(0.5, 1.5, w.shape)
        elif "moving_mean" in path or "beta" in path or "bias" in path:
            new = rng.normal(0.0, 0.1, w.shape)
        else:
            fan_in = np.prod(w.shape[:2]) if (w.ndim == 4 and w.shape[-1] == 1) else np.prod(w.shape[:-1])
            new = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), w.shape)
        v.assign(new.astype(w.dtype))
    return model
