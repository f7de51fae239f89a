"""MuSiCa: selective cascaded regression with patch attention (GitHub issue 4).

"Knowing When to Quit: Selective Cascaded Regression with Patch Attention for Real-Time
Face Alignment". A cascade of small stages refines a shape that starts at the mean shape
of the training faces; every stage also predicts how wrong its own output still is, so
inference can stop early per face (:mod:`acrloss.early_exit`).

Model (``keras.ops`` only; runs on every Keras 3 backend; ``.h5`` save/load)::

    image (B, S, S, 3) RGB [0, 255]
      -> ImagePyramid: grey (or RGB) levels S, S/2, S/4 (2x2 average pooling), [0, 1]
      -> InitialState: mean shape (B, 2N) (non-trainable weight) and a zero hidden state (B, H)
      -> stage 1 .. T (own weights; coarse pyramid level to fine), each a nested functional
         model ``stage_t``: [level image, shape, hidden] -> [shape', hidden', predicted error]
           PatchSampler  bilinear (P+2) x (P+2) patches around K of the current points
                         (separable: Wy · image · Wxᵀ, batched matmuls), each standardized
           PatchEncoder  per patch: conv3x3 valid -> P x P -> max-pool -> conv3x3 -> max-pool;
                         the centre of the finer map concatenated with the coarser map -> F
           attention     gate = sigmoid(Dense(relu(Dense(f))))  in (0, 1), f * gate   (per patch)
           projection    Dense(D) per patch, flattened (K * D), concatenated with the shape
           GRU-like      z, r = sigmoid(Dense([x, h])); h~ = tanh(Dense([x, r*h])); h' = h + z (h~ - h)
           head          shape' = shape + Dense(2N)(h')   (zero-initialised: starts as identity)
                         error  = Dense(1)(h')

Outputs: a dict ``{"landmarks": (B, 2N) final stage, "stages": (B, T, 2N), "errors":
(B, T), "cascade": (B, T, 2N + 1)}``; ``cascade`` is ``stages`` with ``errors`` appended
per stage, the one output the training loss (:class:`CascadeLoss`) is attached to.

Coordinates follow :mod:`acrloss.config`: normalized crop coordinates ``n = (p + 0.5) / S
- 0.5``. At pyramid level ``l`` (side ``S_l = S / 2**l``) a point sits at pixel ``p_l = (n +
0.5) S_l - 0.5`` (2x2 average pooling keeps pixel centres consistent). A patch of side
``P`` samples the pixel offsets ``k - (P - 1) / 2``, ``k = 0 .. P-1``, around ``p_l``;
samples outside the image take the nearest border pixel (clamped indices).

Predicted error unit: the per-face NME as a fraction (mean point-to-point error divided by
the distance between the dataset's normalization points, 300-W: outer eye corners 36/45),
the same quantity as the reported NME (0.05 = 5 %). Early-exit thresholds are in this unit.

Default (:data:`DEFAULTS`, S = 128): 4 stages on levels 32, 64, 128, 128 px with 18
("coarse"), 34 ("half"), 68, 68 patches of 14 x 14 sampled pixels (P = 12), encoder widths
16/32, gate bottleneck 16, D = 16, H = 128: 3.9 + 7.3 + 14.4 + 14.4 = 40.0 M multiply-adds per
face (sampling counted as 4 per sampled value), 1.7 M parameters.

Training: :class:`CascadeLoss` on ``cascade`` — per stage the landmark loss (ACR by
default, L2/L1 selectable, from :mod:`acrloss.losses`) plus ``error_weight * |NME - e|``
with the actual NME under ``stop_gradient``. The sampling positions are under
``stop_gradient`` as well (as in classic cascaded regression); the stages stay coupled
through the additive shape update and the hidden state. Targets are the usual ``(B, 2N)``
points or ``(B, 4N)`` points + Φ, fed to every output key by :class:`DictTargets`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from acrloss.losses import get_loss

__all__ = [
    "ImagePyramid",
    "InitialState",
    "PatchSampler",
    "PatchEncoder",
    "StageNME",
    "ErrorMAE",
    "CascadeLoss",
    "DictTargets",
    "build_musica",
    "stage_models",
    "stage_macs",
    "resolve_points",
    "bilinear_patches",
    "bilinear_patches_gather",
    "interpolation_matrix",
    "pool2x2",
    "compile_arguments",
    "export_kernels",
    "training_objective",
    "build_from_config",
    "model_options",
    "parse_options",
    "OUTPUT_KEYS",
    "DEFAULTS",
    "NME_LOG_NAME",
]

#: output keys of the model (every one is fed the same targets in training)
OUTPUT_KEYS = ("landmarks", "stages", "errors", "cascade")

#: default architecture (see :func:`build_musica`); chosen for <= 100 M multiply-adds per face
DEFAULTS: dict[str, Any] = {
    "input_size": 128,
    "stage_levels": (2, 1, 0, 0),
    "stage_points": ("coarse", "half", "all", "all"),
    "patch_size": 12,
    "channels": (16, 32),
    "centre": 2,
    "gate_units": 16,
    "patch_units": 16,
    "hidden_units": 128,
    "grey": True,
    "normalize_patches": True,
}

#: an 18-point outline of the 68-point iBUG scheme (jaw, brows, nose, eye and mouth corners)
COARSE_68 = (0, 4, 8, 12, 16, 19, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57)
#: a 19-point outline of the 98-point WFLW scheme (contour, brow ends, nose, eye corners, mouth)
COARSE_98 = (0, 8, 16, 24, 32, 33, 37, 42, 46, 51, 54, 57, 60, 64, 68, 72, 76, 82, 85)


def coarse_points(num_points: int) -> list[int]:
    """The ``"coarse"`` subset: a hand-picked outline for 68 and 98 points; for other schemes
    about a quarter of the points, evenly spread over the index range (at least 1)."""
    if num_points == 68:
        return list(COARSE_68)
    if num_points == 98:
        return list(COARSE_98)
    k = max(1, int(round(num_points * 18 / 68)))
    return sorted({int(round(v)) for v in np.linspace(0, num_points - 1, k)})


def resolve_points(spec: str | Sequence[int], num_points: int) -> list[int]:
    """Point indices of a stage: ``"all"``, ``"half"`` (every other point), ``"coarse"``
    (:func:`coarse_points`) or an explicit list of indices."""
    if isinstance(spec, str):
        key = spec.lower()
        if key == "all":
            return list(range(num_points))
        if key == "half":
            return list(range(0, num_points, 2))
        if key == "coarse":
            return coarse_points(num_points)
        raise ValueError(f"unknown point subset {spec!r}; use 'all', 'half', 'coarse' or a list of indices")
    idx = [int(i) for i in spec]
    if not idx or min(idx) < 0 or max(idx) >= num_points or len(set(idx)) != len(idx):
        raise ValueError(f"point indices {idx} invalid for {num_points} points (need distinct 0..{num_points - 1})")
    return idx


#: set by :func:`export_kernels`: trace to the ops exported runtimes run fastest
_EXPORT_KERNELS = False


@contextlib.contextmanager
def export_kernels(enabled: bool = True):
    """Within this context, MuSiCa layers trace to the ops exported runtimes have fast kernels
    for: :func:`pool2x2` as ``max_pool``/``average_pool``, grey patches sampled by row copies
    (:func:`bilinear_patches_rows`) and :class:`PatchEncoder`'s first
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


def interpolation_matrix(positions: Any, size: int) -> Any:
    """Linear-interpolation weights ``(..., P, size)`` of 1-D sample ``positions`` ``(..., P)``
    (0-based pixel centres) on a grid of ``size`` pixels, positions outside the grid clamped
    to the border pixel: ``w[..., i, j] = max(0, 1 - |j - clip(pos_i, 0, size - 1)|)``, at
    most two non-zero weights per row, summing to 1."""
    dtype = positions.dtype
    pos = ops.clip(positions, 0.0, float(size - 1))
    grid = ops.convert_to_tensor(np.arange(size, dtype=np.float32), dtype=dtype)
    return ops.relu(1.0 - ops.abs(grid - pos[..., None]))


def bilinear_patches(image: Any, centres: Any, patch_size: int) -> Any:
    """Bilinear ``P x P`` patches of ``image`` ``(B, H, W, C)`` around ``centres`` ``(B, K, 2)``
    (pixel coordinates ``(x, y)``, 0-based pixel centres) -> ``(B, K, P, P, C)``.

    Separable and gather-free: bilinear sampling on a regular grid is a product of two 1-D
    interpolations, so each patch is ``Wy · image · Wxᵀ`` with the small interpolation
    matrices ``Wy (P, H)`` and ``Wx (P, W)`` built from the patch centre
    (:func:`interpolation_matrix`); the products are batched matrix multiplications, which
    every runtime (XLA, TFLite/XNNPACK, ONNX Runtime) maps onto fast GEMM kernels. Row
    ``i``, column ``j`` of a patch samples ``(x + j - (P-1)/2, y + i - (P-1)/2)``; positions
    outside the image take the border pixel (the same values as
    :func:`bilinear_patches_gather`, up to float rounding).
    """
    p = int(patch_size)
    h, w, c = int(image.shape[1]), int(image.shape[2]), int(image.shape[3])
    dtype = image.dtype
    offs = ops.convert_to_tensor(np.arange(p, dtype=np.float32) - (p - 1) / 2.0, dtype=dtype)
    cx = ops.cast(centres[..., 0], dtype)
    cy = ops.cast(centres[..., 1], dtype)
    k = int(centres.shape[1])
    if _EXPORT_KERNELS and c == 1:  # exported runtimes: row copies instead of dense products
        return bilinear_patches_rows(image, centres, p)
    wy = interpolation_matrix(cy[:, :, None] + offs, h)  # (B, K, P, H)
    wxt = ops.transpose(interpolation_matrix(cx[:, :, None] + offs, w), (0, 1, 3, 2))  # (B, K, W, P)
    if c == 1:
        rows = ops.matmul(ops.reshape(wy, (-1, k * p, h)), ops.reshape(image, (-1, h, w)))  # (B, K*P, W)
        out = ops.matmul(ops.reshape(rows, (-1, k, p, w)), wxt)  # (B, K, P, P)
        return ops.expand_dims(out, -1)
    planes = ops.transpose(image, (0, 3, 1, 2))  # (B, C, H, W)
    rows = ops.matmul(ops.reshape(wy, (-1, 1, k * p, h)), planes)  # (B, C, K*P, W)
    out = ops.matmul(ops.reshape(rows, (-1, c, k, p, w)), ops.expand_dims(wxt, 1))  # (B, C, K, P, P)
    return ops.transpose(out, (0, 2, 3, 4, 1))


def _lerp_indices(positions: Any, size: int) -> tuple[Any, Any, Any]:
    """``(i0, i1, f)`` of 1-D sample ``positions`` clamped to ``[0, size - 1]``: the value at a
    position is ``v[i0] + (v[i1] - v[i0]) * f`` (the two non-zero weights of
    :func:`interpolation_matrix`)."""
    pos = ops.clip(positions, 0.0, float(size - 1))
    low = ops.floor(pos)
    i0 = ops.cast(low, "int32")
    return i0, ops.minimum(i0 + 1, size - 1), pos - low


def bilinear_patches_rows(image: Any, centres: Any, patch_size: int) -> Any:
    """:func:`bilinear_patches` of a one-channel ``image`` ``(B, H, W, 1)`` by copying whole
    rows: the ``2 K P`` image columns the patches need are taken as rows of the transposed
    image (contiguous copies) and blended, then the ``2 K P`` rows of those per patch, and
    blended again: ``O(K P (H + P))`` work instead of the dense products' ``O(K P H W)``.
    Same values up to float rounding. Used inside :func:`export_kernels` (TFLite and ONNX
    Runtime copy rows with ``memcpy``; the dense form is XLA's fast path in training)."""
    p = int(patch_size)
    h, w = int(image.shape[1]), int(image.shape[2])
    k = int(centres.shape[1])
    dtype = image.dtype
    offs = ops.convert_to_tensor(np.arange(p, dtype=np.float32) - (p - 1) / 2.0, dtype=dtype)
    x0, x1, fx = _lerp_indices(ops.cast(centres[..., 0], dtype)[:, :, None] + offs, w)  # (B, K, P)
    y0, y1, fy = _lerp_indices(ops.cast(centres[..., 1], dtype)[:, :, None] + offs, h)
    columns = ops.reshape(ops.transpose(ops.reshape(image, (-1, h, w)), (0, 2, 1)), (-1, h))  # (B*W, H)
    base = ops.reshape(ops.arange(ops.shape(image)[0], dtype="int32"), (-1, 1, 1))
    c0 = ops.take(columns, base * w + x0, axis=0)  # (B, K, P, H): column x0 of each patch column
    c1 = ops.take(columns, base * w + x1, axis=0)
    cols = c0 + (c1 - c0) * fx[..., None]
    rows = ops.reshape(ops.transpose(cols, (0, 1, 3, 2)), (-1, p))  # (B*K*H, P)
    patch = ops.reshape(base * k + ops.arange(k, dtype="int32")[None, :, None], (-1, k, 1)) * h
    r0 = ops.take(rows, patch + y0, axis=0)  # (B, K, P, P)
    r1 = ops.take(rows, patch + y1, axis=0)
    return ops.expand_dims(r0 + (r1 - r0) * fy[..., None], -1)


def bilinear_patches_gather(image: Any, centres: Any, patch_size: int) -> Any:
    """Bilinear ``P x P`` patches of ``image`` ``(B, H, W, C)`` around ``centres`` ``(B, K, 2)``
    (pixel coordinates ``(x, y)``, 0-based pixel centres) -> ``(B, K, P, P, C)``.

    The original gather-based sampler (``keras.ops.take`` on the flattened image), kept as
    the reference :func:`bilinear_patches` is tested against; gathers map onto slow kernels
    in TFLite / ONNX Runtime. Row ``i``, column ``j`` of a patch samples ``(x + j - (P-1)/2, y + i - (P-1)/2)``;
    indices outside the image are clamped to the border.
    """
    p = int(patch_size)
    h, w, c = int(image.shape[1]), int(image.shape[2]), int(image.shape[3])
    dtype = image.dtype
    offs = ops.convert_to_tensor(np.arange(p, dtype=np.float32) - (p - 1) / 2.0, dtype=dtype)
    cx = ops.cast(centres[..., 0], dtype)
    cy = ops.cast(centres[..., 1], dtype)
    gx = cx[:, :, None, None] + offs[None, None, None, :] + ops.zeros((1, 1, p, 1), dtype)  # (B, K, P, P)
    gy = cy[:, :, None, None] + offs[None, None, :, None] + ops.zeros((1, 1, 1, p), dtype)
    x0f, y0f = ops.floor(gx), ops.floor(gy)
    wx, wy = gx - x0f, gy - y0f
    x0 = ops.cast(x0f, "int32")
    y0 = ops.cast(y0f, "int32")
    x1 = ops.clip(x0 + 1, 0, w - 1)
    y1 = ops.clip(y0 + 1, 0, h - 1)
    x0 = ops.clip(x0, 0, w - 1)
    y0 = ops.clip(y0, 0, h - 1)
    batch = ops.shape(image)[0]
    base = ops.reshape(ops.arange(batch, dtype="int32") * (h * w), (-1, 1, 1, 1))
    flat = ops.reshape(image, (-1, c))

    def gather(yi: Any, xi: Any) -> Any:
        return ops.take(flat, base + yi * w + xi, axis=0)  # (B, K, P, P, C)

    wx, wy = wx[..., None], wy[..., None]
    top = gather(y0, x0) * (1.0 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1.0 - wx) + gather(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


@keras.saving.register_keras_serializable(package="acrloss")
class PatchSampler(keras.layers.Layer):
    """Patches around a subset of the current points: ``[image (B, H, W, C), shape (B, 2N)]``
    -> ``(B, K, P, P, C)`` (see :func:`bilinear_patches`; ``shape`` in normalized crop
    coordinates, mapped to the pixels of this image's size).

    The sampling positions are under ``stop_gradient`` (no gradient flows into the
    previous stage's shape through the sampling). With ``normalize`` each patch is
    standardized: ``(x - mean) / (std + 0.05)`` over its ``P * P * C`` values.

    Multiply-adds: 4 per sampled value (bilinear interpolation), ``4 K P P C`` per face
    (:meth:`mac_count`, used by :func:`acrloss.flops.count_macs`).

    Args:
        point_indices: the ``K`` point indices (0-based) patches are cut around.
        patch_size: ``P``.
        num_points: ``N``.
        normalize: standardize each patch.
    """

    def __init__(self, point_indices: Sequence[int], patch_size: int = 12, num_points: int = 68,
                 normalize: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_points = int(num_points)
        self.point_indices = resolve_points(list(point_indices), self.num_points)
        self.patch_size = int(patch_size)
        if self.patch_size < 1:
            raise ValueError(f"PatchSampler: patch_size must be >= 1, got {patch_size!r}")
        self.normalize = bool(normalize)

    def compute_output_shape(self, input_shapes: Sequence[tuple]) -> tuple:
        image_shape = input_shapes[0]
        p = self.patch_size
        return (image_shape[0], len(self.point_indices), p, p, image_shape[3])

    def call(self, inputs: Sequence[Any]) -> Any:
        image, shape = inputs
        h, w = int(image.shape[1]), int(image.shape[2])
        pts = ops.reshape(ops.stop_gradient(ops.cast(shape, image.dtype)), (-1, self.num_points, 2))
        if len(self.point_indices) != self.num_points or self.point_indices != list(range(self.num_points)):
            pts = ops.take(pts, ops.convert_to_tensor(np.asarray(self.point_indices, np.int32)), axis=1)
        scale = ops.convert_to_tensor(np.array([w, h], np.float32), dtype=image.dtype)
        centres = (pts + 0.5) * scale - 0.5
        patches = bilinear_patches(image, centres, self.patch_size)
        if self.normalize:
            mean = ops.mean(patches, axis=(2, 3, 4), keepdims=True)
            std = ops.sqrt(ops.mean(ops.square(patches - mean), axis=(2, 3, 4), keepdims=True))
            patches = (patches - mean) / (std + 0.05)
        return patches

    def mac_count(self, input_shapes: Sequence[tuple], output_shapes: Sequence[tuple]) -> int:
        """Multiply-adds for one face: 4 per sampled value."""
        out = output_shapes[0]
        return 4 * int(math.prod(int(d) for d in out[1:]))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"point_indices": list(self.point_indices), "patch_size": self.patch_size,
                       "num_points": self.num_points, "normalize": self.normalize})
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


# --------------------------------------------------------------------------- model
def _stage_model(index: int, level_shape: tuple, num_points: int, points: list[int], hidden_units: int,
                 patch_size: int, channels: Sequence[int], centre: int, gate_units: int, patch_units: int,
                 normalize_patches: bool) -> keras.Model:
    """One cascade stage as a functional model ``[image, shape, hidden] -> [shape', hidden', error]``."""
    n2 = 2 * num_points
    name = f"stage_{index}"
    image = keras.Input(level_shape, name=f"{name}_image")
    shape = keras.Input((n2,), name=f"{name}_shape")
    hidden = keras.Input((hidden_units,), name=f"{name}_hidden")
    k = len(points)
    L = keras.layers

    patches = PatchSampler(points, patch_size + 2, num_points, normalize=normalize_patches, name=f"{name}_sampler")([image, shape])
    feats = PatchEncoder(patch_size, level_shape[-1], channels, centre, name=f"{name}_encoder")(patches)
    squeeze = L.Dense(gate_units, activation="relu", name=f"{name}_gate_squeeze")(feats)
    gate = L.Dense(int(feats.shape[-1]), activation="sigmoid", name=f"{name}_gate")(squeeze)
    attended = L.Multiply(name=f"{name}_attend")([feats, gate])
    proj = L.Dense(patch_units, activation="relu", name=f"{name}_project")(attended)
    x = L.Concatenate(name=f"{name}_input")([L.Reshape((k * patch_units,), name=f"{name}_flatten")(proj), shape])

    xh = L.Concatenate(name=f"{name}_xh")([x, hidden])
    z = L.Dense(hidden_units, activation="sigmoid", name=f"{name}_update_gate")(xh)
    r = L.Dense(hidden_units, activation="sigmoid", name=f"{name}_reset_gate")(xh)
    rh = L.Multiply(name=f"{name}_reset")([r, hidden])
    cand = L.Dense(hidden_units, activation="tanh", name=f"{name}_candidate")(L.Concatenate(name=f"{name}_xrh")([x, rh]))
    step = L.Multiply(name=f"{name}_step")([z, L.Subtract(name=f"{name}_diff")([cand, hidden])])
    new_hidden = L.Add(name=f"{name}_hidden_out")([hidden, step])

    delta = L.Dense(n2, kernel_initializer="zeros", name=f"{name}_delta")(new_hidden)
    new_shape = L.Add(name=f"{name}_shape_out")([shape, delta])
    error = L.Dense(1, bias_initializer=keras.initializers.Constant(0.05), name=f"{name}_error")(new_hidden)
    return keras.Model([image, shape, hidden], [new_shape, new_hidden, error], name=name)


def build_musica(
    mean_shape: Sequence[float] | np.ndarray,
    input_size: int = DEFAULTS["input_size"],
    num_points: int = 68,
    stage_levels: Sequence[int] = DEFAULTS["stage_levels"],
    stage_points: Sequence[str | Sequence[int]] = DEFAULTS["stage_points"],
    patch_size: int = DEFAULTS["patch_size"],
    channels: Sequence[int] = DEFAULTS["channels"],
    centre: int = DEFAULTS["centre"],
    gate_units: int = DEFAULTS["gate_units"],
    patch_units: int = DEFAULTS["patch_units"],
    hidden_units: int = DEFAULTS["hidden_units"],
    grey: bool = DEFAULTS["grey"],
    normalize_patches: bool = DEFAULTS["normalize_patches"],
    name: str = "musica",
) -> keras.Model:
    """The MuSiCa cascade (see the module docstring): ``(B, S, S, 3)`` RGB [0, 255] ->
    ``{"landmarks", "stages", "errors", "cascade"}``.

    Args:
        mean_shape: ``(2N,)`` normalized initial shape (mean of the training labels).
        input_size: ``S`` (divisible by ``2**max(stage_levels)``).
        num_points: ``N``.
        stage_levels: pyramid level of each stage (0 = full size, 1 = half, 2 = quarter);
            ``T = len(stage_levels)`` stages.
        stage_points: per stage ``"all"``, ``"half"``, ``"coarse"`` or explicit indices.
        patch_size: ``P``, the encoder's patch side in pixels of the stage's level (multiple of 4);
            ``P + 2`` pixels are sampled (the first convolution is "valid").
        channels: the patch encoder's two convolution widths.
        centre: side of the finer encoder level's central window.
        gate_units: bottleneck of the patch attention gate.
        patch_units: ``D``, features per patch after the projection.
        hidden_units: ``H``, the recurrent state.
        grey: grey pyramid (else RGB).
        normalize_patches: standardize each patch.
        name: model name.
    """
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1)
    if mean_shape.size != 2 * num_points:
        raise ValueError(f"build_musica: mean_shape has {mean_shape.size} values, expected {2 * num_points}")
    levels = [int(v) for v in stage_levels]
    if not levels or min(levels) < 0:
        raise ValueError(f"build_musica: stage_levels must be non-empty levels >= 0, got {stage_levels!r}")
    if len(stage_points) != len(levels):
        raise ValueError(f"build_musica: {len(stage_points)} point subsets for {len(levels)} stages")
    num_levels = max(levels) + 1
    if input_size % (2 ** (num_levels - 1)):
        raise ValueError(f"build_musica: input_size {input_size} not divisible by {2 ** (num_levels - 1)}")
    L = keras.layers
    n2 = 2 * num_points
    images = keras.Input((input_size, input_size, 3), name="image")
    pyramid = ImagePyramid(num_levels, grey, name="pyramid")(images)
    shape, hidden = InitialState(mean_shape, hidden_units, name="initial_state")(images)
    shapes, errors = [], []
    for t, (level, pts) in enumerate(zip(levels, stage_points)):
        stage = _stage_model(t + 1, tuple(pyramid[level].shape[1:]), num_points, resolve_points(pts, num_points),
                             hidden_units, patch_size, channels, centre, gate_units, patch_units, normalize_patches)
        shape, hidden, err = stage([pyramid[level], shape, hidden])
        shapes.append(L.Reshape((1, n2), name=f"stage_{t + 1}_row")(shape))
        errors.append(err)
    count = len(levels)
    stages = shapes[0] if count == 1 else L.Concatenate(axis=1, name="stages")(shapes)
    errs = errors[0] if count == 1 else L.Concatenate(axis=-1, name="errors")(errors)
    cascade = L.Concatenate(axis=-1, name="cascade")([stages, L.Reshape((count, 1), name="errors_col")(errs)])
    landmarks = L.Identity(name="landmarks")(shape)
    outputs = {"landmarks": landmarks, "stages": stages, "errors": errs, "cascade": cascade}
    return keras.Model(images, outputs, name=name)


def stage_models(model: keras.Model) -> list[keras.Model]:
    """The stage sub-models ``stage_1 .. stage_T`` of a MuSiCa model, in order."""
    stages = []
    while True:
        try:
            stages.append(model.get_layer(f"stage_{len(stages) + 1}"))
        except ValueError:
            break
    if not stages:
        raise ValueError(f"{model.name}: not a MuSiCa model (no 'stage_1' layer)")
    return stages


def stage_macs(model: keras.Model) -> list[int]:
    """Multiply-adds of each stage for one face (the pyramid and initial state: 0)."""
    from acrloss.flops import count_macs

    return [int(count_macs(s)) for s in stage_models(model)]


# --------------------------------------------------------------------------- training
def _norm(norm_points: Any) -> Any:
    """``(a, b)`` ints or ``"box"`` (see :func:`acrloss.metrics.parse_norm`)."""
    from acrloss.metrics import parse_norm

    return parse_norm(norm_points)


def _norm_json(norm_points: Any) -> Any:
    return norm_points if isinstance(norm_points, str) else list(norm_points)


def _face_nme(points: Any, pred: Any, num_points: int, norm_points: Sequence[int]) -> Any:
    """Per-face NME (fraction) of flattened ``pred`` against ``points``; 0 where the
    normalization distance is 0."""
    gt = ops.reshape(points, (-1, num_points, 2))
    pr = ops.reshape(pred, (-1, num_points, 2))
    err = ops.mean(ops.sqrt(ops.sum(ops.square(pr - gt), axis=-1) + 1e-12), axis=-1)
    from acrloss.metrics import face_norm

    norm = face_norm(gt, norm_points)  # a pair's distance, or "box": the landmark extent's sqrt(w*h)
    valid = norm > 0.0
    return ops.where(valid, err / ops.where(valid, norm, ops.ones_like(norm)), ops.zeros_like(err))


@keras.saving.register_keras_serializable(package="acrloss")
class CascadeLoss(keras.losses.Loss):
    """Per-stage landmark loss plus error-prediction loss, on the ``cascade`` output.

    ``y_pred``: ``(B, T, 2N + 1)`` (stage shapes, then the stage's predicted error);
    ``y_true``: ``(B, 2N)`` points or ``(B, 4N)`` points + Φ (ACR needs Φ). Per face::

        sum_t w_t * [ landmark_loss(y_true, shape_t) + error_weight * |stop_grad(NME_t) - e_t| ]

    with ``w_t = stage_weights`` normalized to sum 1 (default: equal) and ``NME_t`` the
    face's NME (fraction) at stage ``t``.

    Args:
        base: ``"acr"``, ``"l2"`` or ``"l1"`` (:func:`acrloss.losses.get_loss`).
        num_points: ``N``.
        num_stages: ``T``.
        error_weight: weight of the error-prediction term.
        lambda_: ACR's λ.
        norm_points: NME normalization points.
        stage_weights: optional per-stage weights.
        scale: ACR's error scale ``s`` (the loss sees ``s·e``); must stay 1 for L2/L1.
    """

    def __init__(self, base: str = "acr", num_points: int = 68, num_stages: int = 4, error_weight: float = 0.1,
                 lambda_: float = 1.0, norm_points: Sequence[int] = (36, 45),
                 stage_weights: Sequence[float] | None = None, name: str = "cascade_loss",
                 reduction: str | None = "sum_over_batch_size", dtype: Any = None, scale: float = 1.0) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.base = str(base).lower()
        self.num_points = int(num_points)
        self.num_stages = int(num_stages)
        self.error_weight = float(error_weight)
        self.lambda_ = float(lambda_)
        self.scale = float(scale)
        if self.base != "acr" and self.scale != 1.0:
            raise ValueError(f"CascadeLoss: scale={scale!r} applies to the ACR loss only, not {self.base!r}")
        self.norm_points = _norm(norm_points)
        weights = [1.0] * self.num_stages if stage_weights is None else [float(w) for w in stage_weights]
        if len(weights) != self.num_stages or sum(weights) <= 0 or min(weights) < 0:
            raise ValueError(f"CascadeLoss: stage_weights {stage_weights!r} invalid for {self.num_stages} stages")
        self.stage_weights = [w / sum(weights) for w in weights]
        extra = {"lambda_": self.lambda_, "scale": self.scale} if self.base == "acr" else {}
        self.landmark_loss = get_loss(self.base, 2 * self.num_points, reduction=None, **extra)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-face loss ``(B,)``."""
        n2 = 2 * self.num_points
        if y_pred.shape[-1] is not None and (int(y_pred.shape[-1]) != n2 + 1 or int(y_pred.shape[1]) != self.num_stages):
            raise ValueError(f"CascadeLoss: y_pred {tuple(y_pred.shape)}; expected (B, {self.num_stages}, {n2 + 1})")
        y_true = ops.cast(y_true, y_pred.dtype)
        points = y_true[:, :n2]
        total = 0.0
        for t, w in enumerate(self.stage_weights):
            shape_t = y_pred[:, t, :n2]
            err_t = y_pred[:, t, n2]
            actual = ops.stop_gradient(_face_nme(points, shape_t, self.num_points, self.norm_points))
            term = self.landmark_loss.call(y_true, shape_t) + self.error_weight * ops.abs(actual - err_t)
            total = total + w * term
        return total

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"base": self.base, "num_points": self.num_points, "num_stages": self.num_stages,
                       "error_weight": self.error_weight, "lambda_": self.lambda_,
                       "norm_points": _norm_json(self.norm_points), "stage_weights": list(self.stage_weights),
                       "scale": self.scale})
        return config


class _CascadeFaceMean(keras.metrics.Metric):
    """Running mean of a per-face quantity of the ``cascade`` output, in NME percent."""

    def __init__(self, num_points: int, norm_points: Sequence[int], name: str, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.num_points = int(num_points)
        self.norm_points = _norm(norm_points)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _stage_nme(self, y_true: Any, y_pred: Any, stage: int) -> Any:
        """Per-face NME fraction of ``stage`` and the packed tensors ``(nme, y_pred)``."""
        n2 = 2 * self.num_points
        y_true = ops.cast(ops.convert_to_tensor(y_true), self.dtype)
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), self.dtype)
        return _face_nme(y_true[:, :n2], y_pred[:, stage, :n2], self.num_points, self.norm_points), y_pred

    def _add(self, values: Any) -> None:
        self.total.assign_add(ops.sum(values))
        self.count.assign_add(ops.cast(ops.shape(values)[0], self.dtype))

    def result(self) -> Any:
        return 100.0 * self.total / ops.maximum(self.count, 1.0)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"num_points": self.num_points, "norm_points": _norm_json(self.norm_points)})
        return config


@keras.saving.register_keras_serializable(package="acrloss")
class StageNME(_CascadeFaceMean):
    """Mean NME (percent) of one stage, from the ``cascade`` output ``(B, T, 2N + 1)``."""

    def __init__(self, stage: int, num_points: int = 68, norm_points: Sequence[int] = (36, 45),
                 name: str | None = None, dtype: Any = None) -> None:
        super().__init__(num_points, norm_points, name=name or f"nme_s{int(stage) + 1}", dtype=dtype)
        self.stage = int(stage)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        self._add(self._stage_nme(y_true, y_pred, self.stage)[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stage": self.stage}


@keras.saving.register_keras_serializable(package="acrloss")
class ErrorMAE(_CascadeFaceMean):
    """Mean |actual NME - predicted error| over all stages, in NME percent points."""

    def __init__(self, num_points: int = 68, norm_points: Sequence[int] = (36, 45), name: str = "err_mae",
                 dtype: Any = None) -> None:
        super().__init__(num_points, norm_points, name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        n2 = 2 * self.num_points
        for t in range(int(y_pred.shape[1])):
            face, packed = self._stage_nme(y_true, y_pred, t)
            self._add(ops.abs(face - packed[:, t, n2]))


class DictTargets(keras.utils.PyDataset):
    """Wraps a dataset of ``(images, targets[, extra])`` batches so that ``targets`` reach
    every model output: ``(images, {key: targets for key in keys})``. Epoch ends are
    forwarded (shuffling, augmentation seeds); the inner dataset's ``phi_level`` is still
    set directly by the curriculum callback."""

    def __init__(self, inner: Any, keys: Sequence[str] = OUTPUT_KEYS, workers: int = 1) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.inner = inner
        self.keys = tuple(keys)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        batch = self.inner[index]
        images, targets = batch[0], batch[1]
        return (images, {k: targets for k in self.keys}, *batch[2:])

    def on_epoch_end(self) -> None:
        self.inner.on_epoch_end()


def compile_arguments(num_points: int, norm_points: Sequence[int], num_stages: int, loss: str = "acr",
                      acr_lambda: float = 1.0, error_weight: float = 0.1, acr_scale: float = 1.0) -> dict[str, Any]:
    """``model.compile`` keyword arguments for a MuSiCa model: loss on ``cascade``; NME on
    ``landmarks`` (logged as ``landmarks_nme``); per-stage NME (``cascade_nme_s1`` ...) and
    the error-prediction MAE (``cascade_err_mae``, NME percent points) on ``cascade``; XLA
    compilation (``jit_compile=True``)."""
    from acrloss.metrics import NMEMetric

    return {
        # XLA: the many small gather/elementwise ops of the stages run ~3x faster per training
        # step on a CPU with TensorFlow (Keras leaves XLA off on CPU by default); JAX always jits
        "jit_compile": True,
        "loss": {"cascade": CascadeLoss(loss, num_points, num_stages, error_weight, acr_lambda, norm_points,
                                        scale=acr_scale if loss == "acr" else 1.0)},
        "metrics": {
            "landmarks": [NMEMetric(num_points, norm_points)],
            "cascade": [StageNME(t, num_points, norm_points) for t in range(num_stages)] + [ErrorMAE(num_points, norm_points)],
        },
    }


#: the name under which Keras logs the final landmarks' NME (``val_`` + this is monitored)
NME_LOG_NAME = "landmarks_nme"


def model_options(cfg: Any) -> dict[str, Any]:
    """:func:`build_musica` keywords of a :class:`acrloss.config.TrainConfig`: the defaults,
    the crop's input size and ``cfg.musica_options`` (unknown keys are an error)."""
    options = dict(getattr(cfg, "musica_options", None) or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"musica_options: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **options, "input_size": int(cfg.crop.input_size)}
    return out


def build_from_config(cfg: Any, num_points: int, train_samples: Sequence[Any]) -> keras.Model:
    """The model ``Train`` builds for ``arch="musica"``: :func:`build_musica` with
    :func:`model_options` and the mean of the training faces' normalized labels (un-augmented
    crops, :func:`acrloss.data_prep.pipeline.normalized_labels`) as the initial shape."""
    from acrloss.data_prep.pipeline import normalized_labels

    if len(train_samples) == 0:
        raise ValueError("MuSiCa: no training faces to take the mean shape from")
    mean_shape = normalized_labels(train_samples, cfg.crop).mean(axis=0)
    return build_musica(mean_shape, num_points=num_points, **model_options(cfg))


def training_objective(cfg: Any, num_points: int, norm_points: Sequence[int]) -> dict[str, Any]:
    """``model.compile`` loss and metrics for a ``TrainConfig`` (see :func:`compile_arguments`)."""
    stages = len(model_options(cfg)["stage_levels"])
    return compile_arguments(num_points, norm_points, stages, cfg.loss, cfg.acr_lambda,
                             float(getattr(cfg, "musica_error_weight", 0.1)), float(cfg.acr_scale))


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["hidden_units=128", "stage_levels=[2,1,0]"]`` -> ``{"hidden_units": 128, ...}`` (values
    are JSON; a bare word is a string). Unknown keys or malformed items raise ``SystemExit``."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SystemExit(f"--musica-option {item!r}: expected KEY=VALUE")
        if key not in DEFAULTS or key == "input_size":
            raise SystemExit(f"--musica-option {key!r}: unknown; choose from {sorted(k for k in DEFAULTS if k != 'input_size')}"
                             " (the input size is --input-size)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
