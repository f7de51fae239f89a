"""MuSiCa patch sampling: separable bilinear patches (batched matrix products) and the
gather-based reference (see :mod:`acrloss.models.musica`)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from acrloss.models.musica import layers as _layers


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
    if _layers._EXPORT_KERNELS:  # exported runtimes: one window gather instead of dense products
        return bilinear_patches_window(image, centres, p)
    h, w, c = int(image.shape[1]), int(image.shape[2]), int(image.shape[3])
    dtype = image.dtype
    offs = ops.convert_to_tensor(np.arange(p, dtype=np.float32) - (p - 1) / 2.0, dtype=dtype)
    cx = ops.cast(centres[..., 0], dtype)
    cy = ops.cast(centres[..., 1], dtype)
    k = int(centres.shape[1])
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


def bilinear_patches_window(image: Any, centres: Any, patch_size: int) -> Any:
    """:func:`bilinear_patches` by one gather of a ``(P + 1) x (P + 1)`` pixel window per
    patch. The ``P`` sample positions of a patch row are ``x0 + j``, so the whole patch shares
    one fractional offset ``(fx, fy)``: a patch is the bilinear blend of the integer window at
    ``floor(x0), floor(y0)``, two slice-and-blend steps. Window indices are clamped to the
    image per pixel, which gives the border pixel for every position outside, as the other
    samplers do. The index arithmetic stays in float (exported runtimes run float elementwise
    ops in their fast delegate, int32 ones on slow reference kernels) and is cast once.
    ``O(K P²)`` work, one ``Gather`` of ``K (P + 1)²`` pixels; same values up to float
    rounding. Used inside :func:`acrloss.models.musica.layers.export_kernels` (LiteRT: 0.08
    instead of 0.12 ms for the 68 patches of a 128 px stage, 1 thread; the dense form is
    XLA's fast path in training)."""
    p = int(patch_size)
    h, w, c = int(image.shape[1]), int(image.shape[2]), int(image.shape[3])
    dtype = image.dtype
    start = ops.cast(centres, dtype) - (p - 1) / 2.0  # (B, K, 2): position of sample (0, 0)
    low = ops.floor(start)
    frac = start - low  # (B, K, 2): (fx, fy) of every sample of the patch
    steps = ops.convert_to_tensor(np.arange(p + 1, dtype=np.float32), dtype=dtype)
    xi = ops.clip(low[..., 0:1] + steps, 0.0, w - 1.0)  # (B, K, P + 1), whole numbers
    yi = ops.clip(low[..., 1:2] + steps, 0.0, h - 1.0)
    batch = ops.cast(ops.arange(ops.shape(image)[0], dtype="int32"), dtype)
    base = ops.reshape(batch * float(h * w), (-1, 1, 1, 1))
    index = ops.cast(base + yi[..., :, None] * float(w) + xi[..., None, :], "int32")  # (B, K, P + 1, P + 1)
    win = ops.take(ops.reshape(image, (-1, c)), index, axis=0)  # (B, K, P + 1, P + 1, C)
    left = win[:, :, :, :p]
    cols = left + (win[:, :, :, 1:] - left) * frac[:, :, None, None, 0:1]  # (B, K, P + 1, P, C)
    top = cols[:, :, :p]
    return top + (cols[:, :, 1:] - top) * frac[:, :, None, None, 1:2]


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
