"""Backbones from ``keras.applications``: random initialization, or a local weights file.
Nothing is ever downloaded."""
from __future__ import annotations

import os

import keras

from acrloss.config import ModelArch


#: ImageNet statistics of torchvision checkpoints (RGB, on [0, 1] inputs)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_backbone(
    arch: ModelArch | str,
    input_size: int = 224,
    alpha: float = 1.0,
    weights: str | os.PathLike | None = None,
    preprocessing: str = "unit",
    bn_momentum: float | None = 0.99,
) -> keras.Model:
    """A feature extractor taking RGB images in [0, 255], returning its last feature map
    ``(B, S/32, S/32, C)``.

    ``weights`` is ``None`` (random initialization) or the path of a local Keras weights
    file for this backbone; URLs and ``"imagenet"`` are refused so that nothing downloads.
    ``preprocessing`` (MobileNetV2 only): ``"unit"`` maps [0, 255] to [-1, 1] (Keras'
    convention); ``"imagenet"`` scales to [0, 1] and standardizes with the ImageNet mean
    and standard deviation, as torchvision checkpoints expect (see
    :mod:`acrloss.tools.convert_mnv2`). ``bn_momentum`` replaces the momentum of every
    batch-normalization layer (``None`` keeps the application's own).
    """
    if preprocessing not in ("unit", "imagenet"):
        raise ValueError(f"preprocessing must be 'unit' or 'imagenet', got {preprocessing!r}")
    arch = ModelArch.parse(arch)
    if weights is not None and (str(weights) == "imagenet" or "://" in str(weights)):
        raise ValueError("weights must be a local file path: acrloss never downloads weights")
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: backbone weights file not found")
    shape = (input_size, input_size, 3)
    inputs = keras.Input(shape, name="image")
    if arch is ModelArch.MNV2:
        if preprocessing == "unit":
            x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
        else:
            x = keras.layers.Rescaling(1.0 / 255.0, name="to_01")(inputs)
            x = keras.layers.Normalization(
                mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD], name="imagenet_standardize"
            )(x)
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
    if bn_momentum is not None:
        # keras.applications use 0.999: on a few thousand faces the moving statistics then
        # lag the weights by ~20 epochs and validation runs on stale statistics
        for layer in net.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    return keras.Model(inputs, net(x), name=f"{arch.value}_backbone")
