"""Coordinate regression task: backbone + dense head -> flattened normalized points."""
from __future__ import annotations

import os

import keras

from acrloss.config import Head, ModelArch
from acrloss.models.backbones import build_backbone


def build_regressor(
    arch: ModelArch | str = ModelArch.MNV2,
    num_points: int = 68,
    input_size: int = 224,
    alpha: float = 1.0,
    dropout: float = 0.1,
    backbone_weights: str | os.PathLike | None = None,
    head: str = "gap",
    head_channels: int = 64,
    preprocessing: str = "unit",
) -> keras.Model:
    """A coordinate regressor: ``(B, S, S, 3)`` RGB in [0, 255] -> ``(B, 2N)`` normalized
    ``[x0, y0, x1, y1, ...]`` (see :mod:`acrloss.config` for the convention).

    ``head="spatial"`` keeps the layout of the last feature map: a 1x1
    convolution to ``head_channels``, flattened, then a dense layer, so position is not
    averaged away; ``head="gap"`` (default) is global average pooling then a dense layer.
    """
    arch = ModelArch.parse(arch)
    if head not in Head.choices():
        raise ValueError(f"head must be one of {Head.choices()}, got {head!r}")
    backbone = build_backbone(arch, input_size, alpha, backbone_weights, preprocessing)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = backbone(inputs)
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    else:
        x = keras.layers.Conv2D(head_channels, 1, use_bias=False, name="head_reduce")(x)
        x = keras.layers.BatchNormalization(name="head_bn")(x)
        x = keras.layers.ReLU(name="head_relu")(x)
        x = keras.layers.Flatten(name="head_flatten")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(2 * num_points, name="landmarks")(x)
    return keras.Model(inputs, outputs, name=f"{arch.value}_regressor")


def landmarks_from_output(output, num_points: int | None = None):
    """The normalized landmarks ``(B, 2N)`` (NumPy) of a model's raw output.

    The library's output contract: a model returns either one tensor ``(B, 2N)`` (plain
    coordinate regressors) or a dict holding a ``"landmarks"`` entry ``(B, 2N)`` next to
    any extra outputs (heatmaps, per-stage predictions, predicted errors, ...).
    """
    import numpy as np

    if isinstance(output, dict):
        if "landmarks" not in output:
            raise ValueError(f"model output dict has no 'landmarks' entry (keys: {sorted(output)})")
        output = output["landmarks"]
    elif isinstance(output, (list, tuple)):
        raise ValueError("model returned several unnamed outputs; name the landmark output 'landmarks' in a dict")
    out = np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float64)
    out = out.reshape(out.shape[0], -1)
    if num_points is not None and out.shape[1] != 2 * num_points:
        raise ValueError(f"model gives {out.shape[1] // 2} points, expected {num_points}")
    return out


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.h5``/``.keras`` checkpoint for inference (no optimizer, no loss needed)."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: model checkpoint not found")
    import acrloss.losses  # noqa: F401  (registers custom objects)
    import acrloss.metrics  # noqa: F401

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # corrupt or foreign files
        raise ValueError(f"{path}: cannot load model checkpoint ({exc})") from exc
