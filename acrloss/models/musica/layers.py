"""MuSiCa layers: the image pyramid, the initial state, the patch encoder, 2x2 pooling and
the export-kernel switch (see :mod:`acrloss.models.musica`)."""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops


#: set by :func:`export_kernels`: trace to the ops exported runtimes run fastest
_EXPORT_KERNELS = False


@contextlib.contextmanager
def export_kernels(enabled: bool = True):
    """Within this context, MuSiCa layers trace to the ops exported runtimes have fast kernels
    for: :func:`pool2x2` as ``max_pool``/``average_pool``, patches sampled by one window gather
    each (:func:`acrloss.models.musica.sampler.bilinear_patches_window`) and :class:`PatchEncoder`'s first
    convolution as one ``conv`` op (TFLite/XNNPACK and ONNX Runtime run each as one kernel;
    the strided slices and nine broadcast multiply-adds used otherwise, faster under XLA,
    cost ~20x more there). Same values up to float rounding. :func:`acrloss.export.frozen_function`
    traces every model inside it."""
    global _EXPORT_KERNELS
    saved, _EXPORT_KERNELS = _EXPORT_KERNELS, bool(enabled)
    try:
        yield
    finally:
        _EXPORT_KERNELS = saved


def pool2x2(x: Any, mode: str = "max") -> Any:
    """2x2 pooling with stride 2 of ``(M, H, W, C)`` (``H``, ``W`` even): the same values as
    ``max_pool``/``average_pool`` with "valid" padding, computed from four strided slices
    (several times faster on CPU than windowed reductions for small maps under XLA; the
    pooling ops themselves inside :func:`export_kernels`)."""
    if _EXPORT_KERNELS:
        pool = ops.max_pool if mode == "max" else ops.average_pool
        return pool(x, 2, 2, padding="valid")
    a, b = x[:, 0::2, 0::2, :], x[:, 0::2, 1::2, :]
    c, d = x[:, 1::2, 0::2, :], x[:, 1::2, 1::2, :]
    if mode == "max":
        return ops.maximum(ops.maximum(a, b), ops.maximum(c, d))
    return (a + b + c + d) * 0.25


# --------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="acrloss")
class ImagePyramid(keras.layers.Layer):
    """``(B, S, S, 3)`` RGB in [0, 255] -> ``levels`` images ``(B, S / 2**l, S / 2**l, C)``
    in [0, 1]; ``C = 1`` (ITU-R BT.601 luma) when ``grey`` else 3. Level ``l + 1`` is the
    2x2 average pooling of level ``l``.

    Args:
        levels: number of pyramid levels (>= 1); ``S`` must be divisible by ``2**(levels - 1)``.
        grey: convert to one grey channel.
    """

    def __init__(self, levels: int = 3, grey: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(levels) < 1:
            raise ValueError(f"ImagePyramid: levels must be >= 1, got {levels!r}")
        self.levels = int(levels)
        self.grey = bool(grey)

    def compute_output_shape(self, input_shape: tuple) -> list[tuple]:
        b, h, w = input_shape[0], input_shape[1], input_shape[2]
        c = 1 if self.grey else input_shape[3]
        out = []
        for level in range(self.levels):
            f = 2**level
            out.append((b, None if h is None else h // f, None if w is None else w // f, c))
        return out

    def build(self, input_shape: tuple) -> None:
        h, w = input_shape[1], input_shape[2]
        f = 2 ** (self.levels - 1)
        if (h is not None and h % f) or (w is not None and w % f):
            raise ValueError(f"ImagePyramid: input size {h}x{w} is not divisible by {f} ({self.levels} levels)")

    def call(self, images: Any) -> list[Any]:
        x = ops.cast(images, self.compute_dtype) / 255.0
        if self.grey and _EXPORT_KERNELS:  # one matrix product (a fast kernel in exported runtimes)
            luma = ops.convert_to_tensor(np.array([[0.299], [0.587], [0.114]], np.float32), dtype=x.dtype)
            x = ops.matmul(x, luma)
        elif self.grey:
            # explicit sum of the three channels (a reduction over a size-3 axis is slow on XLA CPU)
            x = x[..., 0:1] * 0.299 + x[..., 1:2] * 0.587 + x[..., 2:3] * 0.114
        out = [x]
        for _ in range(1, self.levels):
            x = pool2x2(x, "mean")
            out.append(x)
        return out

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"levels": self.levels, "grey": self.grey})
        return config


@keras.saving.register_keras_serializable(package="acrloss")
class InitialState(keras.layers.Layer):
    """The cascade's start from any batch tensor ``(B, ...)``: the mean shape ``(B, 2N)``
    (a non-trainable weight, normalized coordinates) and a zero hidden state ``(B, H)``.

    Args:
        mean_shape: ``(2N,)`` normalized ``[x0, y0, ...]`` (e.g. the mean of the training labels).
        hidden_units: ``H``.
    """

    def __init__(self, mean_shape: Sequence[float], hidden_units: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        arr = np.asarray(mean_shape, np.float32).reshape(-1)
        if arr.size == 0 or arr.size % 2 or not np.all(np.isfinite(arr)):
            raise ValueError(f"InitialState: mean_shape must be a finite (2N,) vector, got shape {np.shape(mean_shape)}")
        self.mean_shape_values = [float(v) for v in arr]
        self.hidden_units = int(hidden_units)
        self.mean_shape = self.add_weight(
            name="mean_shape", shape=(arr.size,), initializer=keras.initializers.Constant(arr), trainable=False
        )

    def compute_output_shape(self, input_shape: tuple) -> list[tuple]:
        return [(input_shape[0], len(self.mean_shape_values)), (input_shape[0], self.hidden_units)]

    def call(self, x: Any) -> list[Any]:
        batch = ops.shape(x)[0]
        ones = ops.ones((batch, 1), dtype=self.compute_dtype)
        shape = ones * ops.expand_dims(ops.cast(self.mean_shape, self.compute_dtype), 0)
        hidden = ops.zeros((batch, self.hidden_units), dtype=self.compute_dtype)
        return [shape, hidden]

    def mac_count(self, input_shapes: Sequence[tuple], output_shapes: Sequence[tuple]) -> int:
        """0: a broadcast of a stored constant (its weight does no multiply-adds)."""
        return 0

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"mean_shape": self.mean_shape_values, "hidden_units": self.hidden_units})
        return config


@keras.saving.register_keras_serializable(package="acrloss")
class PatchEncoder(keras.layers.Layer):
    """Multi-scale patch encoder applied to every patch: ``(B, K, P + 2, P + 2, C)`` ->
    ``(B, K, F)``, ``F = centre**2 * channels[0] + (P / 4)**2 * channels[1]``.

    Per patch: conv3x3 "valid" (``channels[0]``, ReLU; the sampled one-pixel rim supplies
    real image context instead of zero padding) -> ``P x P`` -> 2x2 max-pool (finer level,
    ``P/2``) -> conv3x3 "same" (``channels[1]``, ReLU) -> 2x2 max-pool (coarser level,
    ``P/4``); the finer level's central ``centre x centre`` cells are concatenated with the
    whole coarser level. The patches of all faces run as one batch of ``B * K`` images.
    The first convolution is computed as nine broadcast multiply-adds (grey, ``C = 1``) or
    one matrix product over the 3x3 neighbourhoods (im2col), both far faster on CPU than a
    convolution op with so few input channels; the second uses ``keras.ops.conv``. Both are
    ordinary 3x3 convolutions (kernels ``(3, 3, C_in, C_out)``).

    Multiply-adds (:meth:`mac_count`): ``K * (P² · C1 · 9C + (P/2)² · C2 · 9 C1)``.

    Args:
        patch_size: ``P`` (multiple of 4); the input patches are ``P + 2`` wide.
        in_channels: ``C``.
        channels: ``(C1, C2)``, the two convolutions' widths.
        centre: side of the finer level's central window (``P/2 - centre`` even).
    """

    def __init__(self, patch_size: int = 12, in_channels: int = 1, channels: Sequence[int] = (16, 32),
                 centre: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.in_channels = int(in_channels)
        self.channels = [int(c) for c in channels]
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"PatchEncoder: channels must be two positive widths, got {channels!r}")
        self.centre = int(centre)
        p, half = self.patch_size, self.patch_size // 2
        if p < 4 or p % 4:
            raise ValueError(f"PatchEncoder: patch_size must be a multiple of 4 (two 2x2 poolings), got {p}")
        if not 0 < self.centre <= half or (half - self.centre) % 2:
            raise ValueError(f"PatchEncoder: centre {self.centre} must be in 1..{half} with {half} - centre even")
        c1, c2 = self.channels
        self.features = self.centre**2 * c1 + (p // 4) ** 2 * c2

    def build(self, input_shape: tuple) -> None:
        size = self.patch_size + 2
        if tuple(input_shape[2:]) != (size, size, self.in_channels):
            raise ValueError(f"PatchEncoder: expected patches (B, K, {size}, {size}, {self.in_channels}), "
                             f"got {tuple(input_shape)}")
        c1, c2 = self.channels
        self.kernel1 = self.add_weight(name="kernel1", shape=(3, 3, self.in_channels, c1), initializer="he_normal")
        self.bias1 = self.add_weight(name="bias1", shape=(c1,), initializer="zeros")
        self.kernel2 = self.add_weight(name="kernel2", shape=(3, 3, c1, c2), initializer="he_normal")
        self.bias2 = self.add_weight(name="bias2", shape=(c2,), initializer="zeros")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[1], self.features)

    def encode(self, patches: Any) -> tuple[Any, Any]:
        """The two levels of ``(M, P + 2, P + 2, C)`` patches: ``(M, P/2, P/2, C1)``,
        ``(M, P/4, P/4, C2)``."""
        p, c = self.patch_size, self.in_channels
        c1, _ = self.channels
        if _EXPORT_KERNELS:  # one convolution op (fast kernels in TFLite / ONNX Runtime)
            x = ops.conv(patches, self.kernel1, strides=1, padding="valid")
            x = ops.relu(x + self.bias1)
            fine = pool2x2(x)
            x = ops.relu(ops.conv(fine, self.kernel2, strides=1, padding="same") + self.bias2)
            return fine, pool2x2(x)
        taps = [patches[:, dy : dy + p, dx : dx + p, :] for dy in range(3) for dx in range(3)]
        if c == 1:  # nine broadcast multiply-adds
            x = taps[0] * self.kernel1[0, 0, 0]
            for i in range(1, 9):
                x = x + taps[i] * self.kernel1[i // 3, i % 3, 0]
        else:  # im2col: one matrix product over the 3x3 neighbourhoods
            x = ops.matmul(ops.reshape(ops.concatenate(taps, axis=-1), (-1, 9 * c)), ops.reshape(self.kernel1, (9 * c, c1)))
            x = ops.reshape(x, (-1, p, p, c1))
        x = ops.relu(x + self.bias1)
        fine = pool2x2(x)
        x = ops.relu(ops.conv(fine, self.kernel2, strides=1, padding="same") + self.bias2)
        coarse = pool2x2(x)
        return fine, coarse

    def call(self, patches: Any) -> Any:
        k = int(patches.shape[1])
        size = self.patch_size + 2
        fine, coarse = self.encode(ops.reshape(patches, (-1, size, size, self.in_channels)))
        cut = (self.patch_size // 2 - self.centre) // 2
        mid = fine[:, cut : cut + self.centre, cut : cut + self.centre, :]
        m = ops.shape(fine)[0]
        feats = ops.concatenate([ops.reshape(mid, (m, -1)), ops.reshape(coarse, (m, -1))], axis=-1)
        return ops.reshape(feats, (-1, k, self.features))

    def mac_count(self, input_shapes: Sequence[tuple], output_shapes: Sequence[tuple]) -> int:
        """Multiply-adds for one face (the two convolutions; pooling and ReLU are 0)."""
        p, c = self.patch_size, self.in_channels
        c1, c2 = self.channels
        per_patch = p * p * c1 * 9 * c + (p // 2) ** 2 * c2 * 9 * c1
        return int(input_shapes[0][1]) * per_patch

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"patch_size": self.patch_size, "in_channels": self.in_channels,
                       "channels": list(self.channels), "centre": self.centre})
        return config
