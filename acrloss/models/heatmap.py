r"""Heatmap landmark model (MobileNetV2 + a small upsampling/downsampling head) and the
switchable in-model decoder (argmax, quarter offset, DARK, KeyPosS); its loss is
:class:`acrloss.losses.HeatmapMSE`.

::

    from acrloss.codecs import HeatmapCodec
    from acrloss.models.heatmap import build_heatmap_model, set_decoder

    codec = HeatmapCodec(input_size=128, heatmap_size=8, sigma=1.0, decoder="keyposs")
    model = build_heatmap_model(68, codec=codec)           # input size etc. from the codec
    out = model(images)        # {"heatmaps": (B, 8, 8, 68), "landmarks": (B, 136) normalized}
    set_decoder(model, "argmax")                           # same network, other decoder

Output contract
---------------
The model returns a dict: ``"heatmaps"`` ``(B, h, w, N)`` (linear 1×1 convolution output,
trained against Gaussian targets of :class:`~acrloss.codecs.HeatmapCodec`) and
``"landmarks"`` ``(B, 2N)``, the decoded points as *normalized* crop coordinates
``n = (p + 0.5) / S − 0.5`` flattened ``[x0, y0, ...]`` (see :mod:`acrloss.config`), so
:func:`acrloss.models.regressor.landmarks_from_output`, ``Test`` and ``FaceAligner`` work
unchanged. The decoding runs inside the model (:class:`HeatmapLandmarks`, ``keras.ops``
only, no weights); its codec (heatmap size, sigma, decoder, KeyPosS ``k`` / iterations) is
saved in the layer config of the ``.h5`` checkpoint.

Head
----
The backbone's last feature map has side ``f = ceil(S / 32)``. A 1×1 convolution reduces it
to ``head_channels`` (+ BN + ReLU); then, for a heatmap side ``h``:

* ``h > f`` (``h = f · 2^k``): ``k`` × [bilinear upsampling ×2, depthwise-separable 3×3
  convolution, BN, ReLU];
* ``h = f``: one depthwise-separable 3×3 convolution + BN + ReLU;
* ``h < f`` (``h = f / 2^k``): ``k`` × [depthwise-separable 3×3 convolution with stride 2,
  BN, ReLU];

and a final linear 1×1 convolution to ``N`` channels (the heatmaps).

Sigma
-----
KeyPosS turns each heatmap value into a distance, ``d = sqrt(−2σ² ln h)``: the anchors (the
``k`` highest cells) only carry distance information where the Gaussian is still clearly
above the noise floor, so ``σ`` must be wide enough, *in cells*, that the 3×3 neighbourhood
of the peak holds useful values (``σ = 1`` cell: a cell 1.5 cells away still reads
``e^{-1.125} ≈ 0.32``), yet narrow enough that the map has a distinct peak.
:func:`default_sigma` gives the values used by ``Train``.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import keras
from keras import ops

from acrloss.codecs.heatmap import DECODERS, HeatmapCodec, HeatmapDecodeLayer

__all__ = [
    "HeatmapLandmarks",
    "build_heatmap_model",
    "default_sigma",
    "find_decode_layer",
    "heatmap_codec",
    "set_decoder",
    "train_codec",
]


def default_sigma(heatmap_size: int) -> float:
    """Gaussian σ (in heatmap cells) used for training at a heatmap side ``heatmap_size``.

    2.0 cells at 64 × 64 and above (the usual σ = 2 of 64-px pose/face heatmaps), 1.5 at 32
    and 16, 1.0 at 8 × 8 and below (a σ-wide Gaussian still spans the 3×3 neighbourhood of
    the peak, so KeyPosS has several informative anchors, while the map keeps one peak).
    """
    if heatmap_size <= 0:
        raise ValueError(f"heatmap_size must be positive, got {heatmap_size!r}")
    if heatmap_size >= 64:
        return 2.0
    if heatmap_size >= 16:
        return 1.5
    return 1.0


# --------------------------------------------------------------------------- decode layer
@keras.saving.register_keras_serializable(package="acrloss")
class HeatmapLandmarks(HeatmapDecodeLayer):
    """Heatmaps ``(B, h, w, N)`` -> normalized landmarks ``(B, 2N)`` ``[x0, y0, ...]``.

    The codec decodes to input pixels ``p`` (0-based pixel centres of the ``S``-px model
    input); the layer returns ``n = (p + 0.5) / S − 0.5``, flattened. Takes the
    :class:`~acrloss.codecs.HeatmapCodec` fields as keyword arguments; not trainable.
    """

    def call(self, inputs: Any) -> Any:
        pts = self.codec.decode(inputs)  # (B, N, 2) input pixels
        norm = (pts + 0.5) / float(self.codec.input_size) - 0.5
        return ops.reshape(norm, (-1, 2 * int(inputs.shape[-1])))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], 2 * input_shape[3])

    def set_codec(self, codec: HeatmapCodec) -> None:
        """Replace the codec (same input and heatmap size required)."""
        if (codec.input_size, codec.heatmap_size) != (self.codec.input_size, self.codec.heatmap_size):
            raise ValueError(
                f"codec for input {codec.input_size} / heatmap {codec.heatmap_size} does not fit this layer "
                f"(input {self.codec.input_size} / heatmap {self.codec.heatmap_size})"
            )
        self.codec = codec


# --------------------------------------------------------------------------- model
def _power_of_two(ratio: float) -> int | None:
    """``k`` with ``ratio = 2^k`` (``k`` may be negative), else ``None``."""
    if ratio <= 0:
        return None
    k = round(math.log2(ratio))
    return k if abs(2.0 ** k - ratio) < 1e-9 * max(1.0, ratio) else None


def build_heatmap_model(
    num_points: int = 68,
    input_size: int | None = None,
    heatmap_size: int | None = None,
    alpha: float = 1.0,
    backbone_weights: str | os.PathLike | None = None,
    preprocessing: str = "unit",
    sigma: float | None = None,
    decoder: str = "keyposs",
    k: int = 9,
    iterations: int = 5,
    linear_init: bool = True,
    weighting: str = "value",
    head_channels: int = 128,
    codec: HeatmapCodec | None = None,
    head_bn_momentum: float = 0.9,
) -> keras.Model:
    """A MobileNetV2 heatmap model: ``(B, S, S, 3)`` RGB in [0, 255] -> ``{"heatmaps":
    (B, h, h, N), "landmarks": (B, 2N) normalized}``.

    Either pass ``codec`` (its ``input_size``, ``heatmap_size``, ``sigma``, ``decoder``,
    ``k``, ``iterations``, ``linear_init``, ``weighting`` are used; give ``input_size`` /
    ``heatmap_size`` only if they agree) or the individual settings (defaults: input 256,
    heatmap 64, ``sigma`` from :func:`default_sigma`). The heatmap side must be the
    backbone's output side ``ceil(S/32)`` times a power of two (e.g. 1, 2, 4, ..., 64 for
    ``S = 128`` or ``256``; 5, 10, 20, 40, 80 for ``S = 160``).

    ``backbone_weights``: ``None`` (random) or a local MobileNetV2 weights file (e.g. the
    converted ImageNet one, with ``preprocessing="imagenet"``); nothing is downloaded.
    ``head_channels``: width of the head's convolutions; ``head_bn_momentum``: momentum of
    the head's batch normalizations (0.9: their moving statistics, which start at 0 / 1, settle
    within an epoch of a few thousand faces).
    """
    from acrloss.models.backbones import build_backbone

    if codec is None:
        input_size = 256 if input_size is None else int(input_size)
        heatmap_size = 64 if heatmap_size is None else int(heatmap_size)
        codec = HeatmapCodec(input_size=input_size, heatmap_size=heatmap_size,
                             sigma=default_sigma(heatmap_size) if sigma is None else float(sigma),
                             decoder=decoder, k=k, iterations=iterations, linear_init=linear_init,
                             weighting=weighting)
    else:
        for name, given in (("input_size", input_size), ("heatmap_size", heatmap_size)):
            if given is not None and int(given) != getattr(codec, name):
                raise ValueError(f"build_heatmap_model: {name}={given} disagrees with the codec's {getattr(codec, name)}")
    if int(num_points) <= 0:
        raise ValueError(f"num_points must be positive, got {num_points!r}")
    if int(head_channels) <= 0:
        raise ValueError(f"head_channels must be positive, got {head_channels!r}")
    size, hm = int(codec.input_size), int(codec.heatmap_size)

    backbone = build_backbone("mnv2", size, alpha, backbone_weights, preprocessing)
    feat = int(backbone.output_shape[1])
    steps = _power_of_two(hm / feat)
    if steps is None:
        raise ValueError(
            f"heatmap_size {hm} cannot be reached from the backbone's {feat}x{feat} output at input {size} "
            f"(it must be {feat} times a power of two: {', '.join(f'{feat * 2.0 ** j:g}' for j in range(-3, 5) if (feat * 2.0 ** j).is_integer())})"
        )

    def block(x, name: str, strides: int = 1):
        x = keras.layers.SeparableConv2D(head_channels, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=head_bn_momentum, name=f"{name}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input((size, size, 3), name="image")
    x = backbone(inputs)
    x = keras.layers.Conv2D(head_channels, 1, use_bias=False, name="head_reduce")(x)
    x = keras.layers.BatchNormalization(momentum=head_bn_momentum, name="head_reduce_bn")(x)
    x = keras.layers.ReLU(name="head_reduce_relu")(x)
    if steps > 0:
        for i in range(steps):
            x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"head_up{i}")(x)
            x = block(x, f"head_up{i}")
    elif steps == 0:
        x = block(x, "head_same")
    else:
        for i in range(-steps):
            x = block(x, f"head_down{i}", strides=2)
    heatmaps = keras.layers.Conv2D(int(num_points), 1, name="heatmaps")(x)
    landmarks = HeatmapLandmarks(**codec.get_config(), name="landmarks")(heatmaps)
    return keras.Model(inputs, {"heatmaps": heatmaps, "landmarks": landmarks}, name=f"mnv2_heatmap{hm}")


# --------------------------------------------------------------------------- decoder switch
def find_decode_layer(model: keras.Model) -> HeatmapDecodeLayer:
    """The (single) heatmap decode layer of ``model`` (searched recursively).

    Raises ``ValueError`` when the model has none (e.g. a coordinate regressor) or several.
    """
    found: list[HeatmapDecodeLayer] = []

    def walk(layer: Any) -> None:
        if isinstance(layer, HeatmapDecodeLayer):
            found.append(layer)
        for sub in getattr(layer, "layers", []) or []:
            walk(sub)

    walk(model)
    if not found:
        raise ValueError(f"model {model.name!r} has no heatmap decode layer: a decoder can only be chosen for a heatmap model")
    if len(found) > 1:
        raise ValueError(f"model {model.name!r} has {len(found)} heatmap decode layers; expected one")
    return found[0]


def heatmap_codec(model: keras.Model) -> HeatmapCodec:
    """The :class:`~acrloss.codecs.HeatmapCodec` a heatmap model decodes with (a copy)."""
    return dataclasses.replace(find_decode_layer(model).codec)


def set_decoder(model: keras.Model, decoder: str | None = None, **params: Any) -> HeatmapCodec:
    """Switch the decoder of a (built or loaded) heatmap model in place.

    ``decoder`` is one of :data:`~acrloss.codecs.DECODERS` (``None`` keeps the current one);
    ``params`` may change the KeyPosS settings ``k``, ``iterations``, ``linear_init``,
    ``weighting`` and the ``sigma`` it assumes. The network and its heatmaps are untouched;
    the compiled predict/test/train functions are dropped so the next call uses the new
    decoder, and a later ``model.save`` records it. Returns the new codec.
    """
    allowed = {"k", "iterations", "linear_init", "weighting", "sigma"}
    unknown = set(params) - allowed
    if unknown:
        raise TypeError(f"set_decoder: unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if decoder is not None and decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
    layer = find_decode_layer(model)
    changes = dict(params)
    if decoder is not None:
        changes["decoder"] = decoder
    codec = dataclasses.replace(layer.codec, **changes)
    if isinstance(layer, HeatmapLandmarks):
        layer.set_codec(codec)
    else:
        layer.codec = codec
    for attr in ("predict_function", "test_function", "train_function"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    return dataclasses.replace(codec)


# --------------------------------------------------------------------------- training codec
def train_codec(input_size: int, heatmap_size: int | None = None, sigma: float | None = None,
                decoder: str = "keyposs") -> HeatmapCodec:
    """The codec a training run uses for both its targets and its in-model decoder.

    ``heatmap_size`` ``None``: ``input_size // 4``; ``sigma`` ``None``: :func:`default_sigma`.
    """
    size = int(input_size)
    hm = size // 4 if heatmap_size is None else int(heatmap_size)
    return HeatmapCodec(input_size=size, heatmap_size=hm,
                        sigma=default_sigma(hm) if sigma is None else float(sigma), decoder=decoder)
