"""Backbones from ``keras.applications``: random initialization, or a local weights file.
Nothing is ever downloaded."""
from __future__ import annotations

import os

import keras

from acrloss.config import ModelArch


def build_backbone(arch: ModelArch | str, input_size: int = 224, alpha: float = 1.0, weights: str | os.PathLike | None = None) -> keras.Model:
    """A feature extractor taking RGB images in [0, 255], returning its last feature map
    ``(B, S/32, S/32, C)``.

    ``weights`` is ``None`` (random initialization) or the path of a local Keras weights
    file for this backbone; URLs and ``"imagenet"`` are refused so that nothing downloads.
    """
    arch = ModelArch.parse(arch)
    if weights is not None and (str(weights) == "imagenet" or "://" in str(weights)):
        raise ValueError("weights must be a local file path: acrloss never downloads weights")
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: backbone weights file not found")
    shape = (input_size, input_size, 3)
    inputs = keras.Input(shape, name="image")
    if arch is ModelArch.MNV2:
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
        net = keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, include_top=False, weights=None, pooling=None)
    elif arch is ModelArch.EFFICIENTNET_B0:
        x = inputs  # EfficientNet rescales and normalizes internally
        net = keras.applications.EfficientNetB0(input_shape=shape, include_top=False, weights=None, pooling=None)
    elif arch is ModelArch.EFFICIENTNET_B3:
        x = inputs
        net = keras.applications.EfficientNetB3(input_shape=shape, include_top=False, weights=None, pooling=None)
    else:  # pragma: no cover - enum is exhaustive
        raise ValueError(f"no backbone for {arch}")
    if weights is not None:
        net.load_weights(str(weights))
    return keras.Model(inputs, net(x), name=f"{arch.value}_backbone")
