r"""Gaussian heatmap codec: points -> heatmaps (encode) and heatmaps -> points (decode).

Backend-agnostic: everything that may run on tensors / inside a model uses
:mod:`keras.ops` only, so decoding works eagerly on NumPy arrays, on TensorFlow tensors,
inside a Keras model, and under ``jax.jit``. Encoding (the data-pipeline side) is NumPy.

Coordinate conventions
----------------------
*Input pixels* follow :mod:`acrloss.config`: ``(x, y)``, 0-based pixel centres, the model
input of side ``S`` spans ``[-0.5, S - 0.5]``.

*Heatmap units*: a heatmap of ``H × W`` cells covers the whole input with stride
``s = S / H`` (square input and maps). The centre of cell ``(i, j)`` (row ``i``, column
``j``) is the heatmap point ``(u, v) = (j, i)`` and corresponds to the input point::

    x = (u + 0.5) · s − 0.5          u = (x + 0.5) / s − 0.5

so the outer cell edges ``u = −0.5`` and ``u = W − 0.5`` coincide with the outer input
pixel edges ``x = −0.5`` and ``x = S − 0.5`` (see :func:`input_to_heatmap` and
:func:`heatmap_to_input`). Encoding and decoding work in heatmap units internally;
:class:`HeatmapCodec` converts at its boundary.

Heatmaps are channels-last: one map ``(H, W, N)`` per face, ``(B, H, W, N)`` per batch. A
landmark at heatmap point ``μ`` is encoded as the unnormalized Gaussian
``h(u, v) = exp(−((u − μx)² + (v − μy)²) / (2σ²))`` sampled at the cell centres (sub-cell
``μ``, no rounding; the peak value is ``≤ 1`` and ``= 1`` only when ``μ`` is a cell centre).

Decoders (all vectorized over batch × landmarks)
------------------------------------------------
``argmax``
    the centre of the highest cell.
``quarter``
    argmax shifted by 0.25 cell toward the higher horizontal / vertical neighbour (no
    shift at the map border or when both neighbours are equal).
``dark``
    DARK (distribution-aware): one Newton step on ``ln h`` around the argmax, gradient and
    Hessian from central finite differences on the 3×3 neighbourhood. Exact for a clean
    Gaussian (``ln h`` is quadratic). Falls back to the argmax at the map border, where the
    Hessian is not negative definite / not invertible, or where the step leaves ±1 cell.
    (The original DARK also blurs the predicted map first; that is not done here.)
``keyposs``
    KeyPosS (true-range multilateration). Every heatmap value is a distance to the landmark,
    ``d = sqrt(−2σ² ln clip(h, eps, 1))``; the ``k`` highest cells (``keras.ops.top_k``) are
    the anchor "stations" and the landmark is the point ``p`` minimizing
    ``Σ_k w_k (‖p − a_k‖ − d_k)²``: linear least-squares trilateration for the start (or the
    argmax), then Gauss–Newton steps (see :func:`multilaterate`).

    Weights: ``w_k = h_k`` (``weighting="value"``, the default): far anchors have small
    values, whose logarithm amplifies noise most, so they count less; with
    ``weighting="uniform"`` every usable anchor has weight 1. Anchors with ``h ≤ eps`` are
    never used (their distance is unknown, only "far"), nor are anchors that contradict the
    highest one by the triangle inequality (``‖a_k − a_0‖ > d_k + d_0 + 1`` or
    ``< |d_k − d_0| − 1`` cells): with a noisy map and a landmark near the border, the global
    top-k otherwise picks background-noise cells across the map.

Degenerate maps: a flat map (all values equal, including all zeros) carries no position and
decodes to the map centre ``((W − 1)/2, (H − 1)/2)`` for every decoder; non-finite results
also fall back to the map centre. The ``keyposs`` result is clipped to the map extent.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from acrloss.config import Decoder

__all__ = [
    "DECODERS",
    "HeatmapCodec",
    "HeatmapDecodeLayer",
    "decode",
    "encode_heatmaps",
    "heatmap_to_input",
    "input_to_heatmap",
    "multilaterate",
]

DECODERS = tuple(Decoder.choices())
WEIGHTINGS = ("value", "uniform")

EPS = 1e-6  # heatmap values are clipped to [EPS, 1] before the logarithm
_TINY = 1e-12
GATE_MARGIN = 1.0  # cells of slack in the KeyPosS anchor consistency gate


# --------------------------------------------------------------------------- coordinates
def _stride(input_size: float, heatmap_size: float) -> float:
    if input_size <= 0 or heatmap_size <= 0:
        raise ValueError(f"sizes must be positive, got input_size={input_size!r}, heatmap_size={heatmap_size!r}")
    return float(input_size) / float(heatmap_size)


def input_to_heatmap(points: Any, input_size: float, heatmap_size: float) -> Any:
    """Input-pixel coordinates -> heatmap units: ``u = (x + 0.5) / s − 0.5``, ``s = S / H``.

    Works elementwise on NumPy arrays, Python numbers and backend tensors (both ``x`` and
    ``y`` use the same stride: square input and maps).
    """
    s = _stride(input_size, heatmap_size)
    return (points + 0.5) / s - 0.5


def heatmap_to_input(points: Any, input_size: float, heatmap_size: float) -> Any:
    """Heatmap units -> input-pixel coordinates: ``x = (u + 0.5) · s − 0.5``, ``s = S / H``.

    The inverse of :func:`input_to_heatmap`.
    """
    s = _stride(input_size, heatmap_size)
    return (points + 0.5) * s - 0.5


# --------------------------------------------------------------------------- encode
def encode_heatmaps(points_hm: np.ndarray, heatmap_size: int | tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian heatmaps ``(..., H, W, N)`` float32 for points ``(..., N, 2)`` in heatmap units.

    Non-finite points (missing landmarks) give all-zero maps.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    h, w = (heatmap_size, heatmap_size) if np.isscalar(heatmap_size) else heatmap_size
    p = np.asarray(points_hm, dtype=np.float64)
    if p.ndim < 2 or p.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., N, 2), got {p.shape}")
    finite = np.all(np.isfinite(p), axis=-1)  # (..., N)
    p = np.where(finite[..., None], p, 0.0)
    # separable: exp(−(dx² + dy²)/2σ²) = exp(−dx²/2σ²) · exp(−dy²/2σ²); the 1-D factors are
    # computed in float64, only their (H × W × N) product in float32 (a 64×64×68 batch of 32
    # takes ~0.05 s instead of ~1 s)
    two_s2 = 2.0 * float(sigma) ** 2
    cx = np.arange(w, dtype=np.float64)[:, None]  # (W, 1): column centres
    cy = np.arange(h, dtype=np.float64)[:, None]  # (H, 1): row centres
    gx = np.exp(-((cx - p[..., None, :, 0]) ** 2) / two_s2)  # (..., W, N)
    gy = np.exp(-((cy - p[..., None, :, 1]) ** 2) / two_s2)  # (..., H, N)
    gx = np.where(finite[..., None, :], gx, 0.0).astype(np.float32)
    maps = gy.astype(np.float32)[..., :, None, :] * gx[..., None, :, :]  # (..., H, W, N)
    return maps


# --------------------------------------------------------------------------- decode helpers
def _flatten(heatmaps: Any) -> tuple[Any, int, int, int]:
    """``(B, H, W, N)`` -> float32 ``(B, N, H·W)`` plus the static ``H, W, N``."""
    x = ops.cast(ops.convert_to_tensor(heatmaps), "float32")
    if len(x.shape) != 4:
        raise ValueError(f"heatmaps must have shape (B, H, W, N), got {tuple(x.shape)}")
    _, h, w, n = x.shape
    if h is None or w is None or n is None:
        raise ValueError(f"H, W and N must be static, got shape {tuple(x.shape)}")
    flat = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, int(n), int(h) * int(w)))
    return flat, int(h), int(w), int(n)


def _cell_xy(idx: Any, w: int) -> tuple[Any, Any]:
    """Flat cell index -> integer column and row."""
    idx = ops.cast(idx, "int32")
    return ops.mod(idx, w), ops.floor_divide(idx, w)


def _neighbourhood(flat: Any, ix: Any, iy: Any, h: int, w: int) -> tuple[dict, Any, Any]:
    """Values of the 3×3 neighbourhood around ``(ix, iy)`` (indices clipped to the map).

    Returns ``({(dx, dy): values (B, N)}, interior_x, interior_y)`` where ``interior_*``
    says whether both neighbours along that axis exist.
    """
    offsets = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    idx = []
    for dx, dy in offsets:
        jx = ops.clip(ix + dx, 0, w - 1)
        jy = ops.clip(iy + dy, 0, h - 1)
        idx.append(jy * w + jx)
    vals = ops.take_along_axis(flat, ops.stack(idx, axis=-1), axis=-1)  # (B, N, 9)
    nb = {off: vals[..., i] for i, off in enumerate(offsets)}
    inner_x = ops.logical_and(ix > 0, ix < w - 1)
    inner_y = ops.logical_and(iy > 0, iy < h - 1)
    return nb, inner_x, inner_y


def _argmax_xy(flat: Any, w: int) -> tuple[Any, Any]:
    ix, iy = _cell_xy(ops.argmax(flat, axis=-1), w)
    return ix, iy


def _decode_argmax(flat: Any, h: int, w: int) -> Any:
    ix, iy = _argmax_xy(flat, w)
    return ops.stack([ops.cast(ix, "float32"), ops.cast(iy, "float32")], axis=-1)


def _decode_quarter(flat: Any, h: int, w: int) -> Any:
    ix, iy = _argmax_xy(flat, w)
    nb, inner_x, inner_y = _neighbourhood(flat, ix, iy, h, w)
    sx = ops.where(inner_x, 0.25 * ops.sign(nb[(1, 0)] - nb[(-1, 0)]), 0.0)
    sy = ops.where(inner_y, 0.25 * ops.sign(nb[(0, 1)] - nb[(0, -1)]), 0.0)
    return ops.stack([ops.cast(ix, "float32") + sx, ops.cast(iy, "float32") + sy], axis=-1)


def _decode_dark(flat: Any, h: int, w: int) -> Any:
    ix, iy = _argmax_xy(flat, w)
    nb, inner_x, inner_y = _neighbourhood(flat, ix, iy, h, w)
    lg = {k: ops.log(ops.maximum(v, EPS)) for k, v in nb.items()}
    gx = 0.5 * (lg[(1, 0)] - lg[(-1, 0)])
    gy = 0.5 * (lg[(0, 1)] - lg[(0, -1)])
    hxx = lg[(1, 0)] - 2.0 * lg[(0, 0)] + lg[(-1, 0)]
    hyy = lg[(0, 1)] - 2.0 * lg[(0, 0)] + lg[(0, -1)]
    hxy = 0.25 * (lg[(1, 1)] - lg[(1, -1)] - lg[(-1, 1)] + lg[(-1, -1)])
    det = hxx * hyy - hxy * hxy
    ok = ops.logical_and(ops.logical_and(inner_x, inner_y), ops.logical_and(hxx < 0.0, det > 1e-9))
    safe_det = ops.where(ok, det, 1.0)
    # offset = −H⁻¹ g with H⁻¹ = [[hyy, −hxy], [−hxy, hxx]] / det
    ox = -(hyy * gx - hxy * gy) / safe_det
    oy = -(hxx * gy - hxy * gx) / safe_det
    ok = ops.logical_and(ok, ops.logical_and(ops.abs(ox) <= 1.0, ops.abs(oy) <= 1.0))
    ox = ops.where(ok, ox, 0.0)
    oy = ops.where(ok, oy, 0.0)
    return ops.stack([ops.cast(ix, "float32") + ox, ops.cast(iy, "float32") + oy], axis=-1)


def _solve2(a: Any, b: Any, c: Any, gx: Any, gy: Any, ok: Any) -> tuple[Any, Any]:
    """Solve ``[[a, b], [b, c]] p = g`` in closed form where ``ok``; zero elsewhere."""
    det = a * c - b * b
    safe = ops.where(ok, det, 1.0)
    px = (c * gx - b * gy) / safe
    py = (a * gy - b * gx) / safe
    return ops.where(ok, px, 0.0), ops.where(ok, py, 0.0)


def multilaterate(anchors: Any, distances: Any, weights: Any = None, init: Any = None,
                  iterations: int = 5, linear_init: bool = True, damping: float = 1e-6,
                  max_step: float = 1.0) -> Any:
    r"""True-range multilateration: the point ``p`` best fitting ``‖p − a_k‖ = d_k``.

    Minimizes ``Σ_k w_k (‖p − a_k‖ − d_k)²`` (vectorized over all leading dimensions; every
    2×2 system is solved in closed form).

    Args:
        anchors: ``(..., K, 2)`` anchor positions; anchor 0 is the reference (for heatmaps
            the highest cell) and the fallback answer.
        distances: ``(..., K)`` measured distances.
        weights: ``(..., K)`` non-negative weights (``None``: all 1). Weight 0 drops an
            anchor.
        init: ``(..., 2)`` start point; ``None``: the linear solution (``linear_init``) or
            anchor 0.
        iterations: Gauss–Newton steps (a static Python loop, unrolled when compiled).
        linear_init: start from linear least squares: subtracting anchor 0's circle
            equation from the others gives ``2 (a_k − a_0) · (p − a_0) = ‖a_k − a_0‖² −
            d_k² + d_0²``, solved through its 2×2 weighted normal equations. Where the system
            is degenerate (collinear / too few usable anchors, or ``w_0 = 0``) or the solution
            is farther than ``d_0 + 1`` from anchor 0, anchor 0 is used instead.
        damping: Levenberg damping, relative to the trace of ``JᵀWJ``: the step solves
            ``(JᵀWJ + λI) Δ = −JᵀW r`` with ``λ = damping · tr/2 + 1e-9``.
        max_step: each Gauss–Newton step is clipped to ``±max_step`` per coordinate.

    Returns:
        ``(..., 2)`` float32 points. Computation is relative to anchor 0 for precision.
    """
    a = ops.cast(ops.convert_to_tensor(anchors), "float32")
    d = ops.cast(ops.convert_to_tensor(distances), "float32")
    w = ops.ones_like(d) if weights is None else ops.cast(ops.convert_to_tensor(weights), "float32")
    origin = a[..., 0, :]
    rel = a - ops.expand_dims(origin, -2)  # (..., K, 2)
    rx, ry = rel[..., 0], rel[..., 1]
    zero = ops.zeros_like(origin[..., 0])

    if init is not None:
        p = ops.cast(ops.convert_to_tensor(init), "float32") - origin
        px, py = p[..., 0], p[..., 1]
    elif linear_init:
        # rows k >= 1 (row 0 is identically zero after the subtraction, so it adds nothing)
        d0 = d[..., :1]
        ax_, ay_ = 2.0 * rx, 2.0 * ry
        b = rx * rx + ry * ry - d * d + d0 * d0
        wl = w * w[..., :1]  # both circles must be usable
        s_xx = ops.sum(wl * ax_ * ax_, axis=-1)
        s_xy = ops.sum(wl * ax_ * ay_, axis=-1)
        s_yy = ops.sum(wl * ay_ * ay_, axis=-1)
        t_x = ops.sum(wl * ax_ * b, axis=-1)
        t_y = ops.sum(wl * ay_ * b, axis=-1)
        tr = s_xx + s_yy
        ok = (s_xx * s_yy - s_xy * s_xy) > 1e-6 * tr * tr + _TINY
        px, py = _solve2(s_xx, s_xy, s_yy, t_x, t_y, ok)
        near = ops.sqrt(px * px + py * py) <= d[..., 0] + 1.0
        px = ops.where(near, px, zero)
        py = ops.where(near, py, zero)
    else:
        px, py = zero, zero

    for _ in range(int(iterations)):
        dx = ops.expand_dims(px, -1) - rx
        dy = ops.expand_dims(py, -1) - ry
        dist = ops.sqrt(dx * dx + dy * dy + _TINY)
        r = dist - d
        jx, jy = dx / dist, dy / dist
        s_xx = ops.sum(w * jx * jx, axis=-1)
        s_xy = ops.sum(w * jx * jy, axis=-1)
        s_yy = ops.sum(w * jy * jy, axis=-1)
        g_x = -ops.sum(w * jx * r, axis=-1)
        g_y = -ops.sum(w * jy * r, axis=-1)
        lam = damping * 0.5 * (s_xx + s_yy) + 1e-9
        a11, a22 = s_xx + lam, s_yy + lam
        ok = (a11 * a22 - s_xy * s_xy) > _TINY
        sx, sy = _solve2(a11, s_xy, a22, g_x, g_y, ok)
        px = px + ops.clip(sx, -max_step, max_step)
        py = py + ops.clip(sy, -max_step, max_step)

    return ops.stack([px, py], axis=-1) + origin


def _decode_keyposs(flat: Any, h: int, w: int, sigma: float, k: int, iterations: int,
                    linear_init: bool, weighting: str) -> Any:
    k = max(1, min(int(k), h * w))
    vals, idx = ops.top_k(flat, k)  # (B, N, K), highest first
    cx, cy = _cell_xy(idx, w)
    anchors = ops.stack([ops.cast(cx, "float32"), ops.cast(cy, "float32")], axis=-1)
    hv = ops.clip(vals, EPS, 1.0)
    dist = ops.sqrt(ops.maximum(-2.0 * float(sigma) ** 2 * ops.log(hv), 0.0))
    usable = vals > EPS
    # triangle-inequality gate against anchor 0 (the argmax): |d_k − d_0| ≤ ‖a_k − a_0‖ ≤
    # d_k + d_0 must hold for true distances; noise cells far from the peak (picked by the
    # global top-k when the Gaussian is cut by the map border) violate it and are dropped
    sep = ops.sqrt(ops.sum(ops.square(anchors - anchors[..., :1, :]), axis=-1))
    d0 = dist[..., :1]
    usable = ops.logical_and(usable, sep <= dist + d0 + GATE_MARGIN)
    usable = ops.logical_and(usable, sep >= ops.abs(dist - d0) - GATE_MARGIN)
    wts = ops.where(usable, hv if weighting == "value" else ops.ones_like(hv), 0.0)
    p = multilaterate(anchors, dist, wts, iterations=iterations, linear_init=linear_init)
    px = ops.clip(p[..., 0], -0.5, w - 0.5)
    py = ops.clip(p[..., 1], -0.5, h - 0.5)
    return ops.stack([px, py], axis=-1)


def _is_numpy(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic, list, tuple))


def decode(heatmaps: Any, method: str = "keyposs", sigma: float = 1.5, k: int = 9,
           iterations: int = 5, linear_init: bool = True, weighting: str = "value") -> Any:
    """Decode heatmaps ``(B, H, W, N)`` to points ``(B, N, 2)`` in **heatmap units**.

    ``method`` is one of :data:`DECODERS`; ``sigma`` (in cells), ``k``, ``iterations``,
    ``linear_init`` and ``weighting`` only matter for ``keyposs``. NumPy in -> NumPy out;
    backend tensors (symbolic ones included) in -> backend tensors out. A 3-D map
    ``(H, W, N)`` from NumPy is decoded as a batch of one and returns ``(N, 2)``.
    """
    if method not in DECODERS:
        raise ValueError(f"unknown decoder {method!r}; choose one of {DECODERS}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {WEIGHTINGS}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    as_numpy = _is_numpy(heatmaps)
    squeeze = False
    if as_numpy:
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        if heatmaps.ndim == 3:
            heatmaps, squeeze = heatmaps[None], True
    flat, h, w, _ = _flatten(heatmaps)
    if method == "argmax":
        pts = _decode_argmax(flat, h, w)
    elif method == "quarter":
        pts = _decode_quarter(flat, h, w)
    elif method == "dark":
        pts = _decode_dark(flat, h, w)
    else:
        pts = _decode_keyposs(flat, h, w, sigma, k, iterations, linear_init, weighting)
    # flat maps (all equal, all-zero included) and non-finite results -> map centre
    mx, mn = ops.max(flat, axis=-1), ops.min(flat, axis=-1)
    flat_map = (mx - mn) <= 1e-6 * ops.abs(mx)
    bad = ops.logical_or(ops.expand_dims(flat_map, -1), ops.logical_not(ops.isfinite(pts)))
    centre = ops.convert_to_tensor(np.array([(w - 1) / 2.0, (h - 1) / 2.0], dtype=np.float32))
    pts = ops.where(bad, ops.zeros_like(pts) + centre, pts)
    if as_numpy:
        pts = ops.convert_to_numpy(pts)
        return pts[0] if squeeze else pts
    return pts


# --------------------------------------------------------------------------- codec
@dataclass
class HeatmapCodec:
    """Encode landmarks as Gaussian heatmaps and decode them back, in input-pixel coordinates.

    Attributes:
        input_size: side ``S`` of the (square) model input, pixels.
        heatmap_size: side ``H`` of the (square) heatmaps; stride ``S / H``.
        sigma: Gaussian standard deviation in heatmap cells (also the ``σ`` the KeyPosS
            decoder assumes when turning values into distances).
        decoder: one of :data:`DECODERS`.
        k: KeyPosS anchors (top-``k`` cells).
        iterations: KeyPosS Gauss–Newton steps.
        linear_init: KeyPosS start from linear trilateration (else from the argmax).
        weighting: KeyPosS anchor weights, ``"value"`` (``w_k = h_k``) or ``"uniform"``.
    """

    input_size: int = 256
    heatmap_size: int = 64
    sigma: float = 1.5
    decoder: str = "keyposs"
    k: int = 9
    iterations: int = 5
    linear_init: bool = True
    weighting: str = "value"

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; choose one of {DECODERS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {WEIGHTINGS}")
        if self.input_size <= 0 or self.heatmap_size <= 0 or self.sigma <= 0:
            raise ValueError("input_size, heatmap_size and sigma must be positive")
        if self.k < 1 or self.iterations < 0:
            raise ValueError("k must be >= 1 and iterations >= 0")

    @property
    def stride(self) -> float:
        return self.input_size / self.heatmap_size

    def to_heatmap(self, points: Any) -> Any:
        return input_to_heatmap(points, self.input_size, self.heatmap_size)

    def to_input(self, points: Any) -> Any:
        return heatmap_to_input(points, self.input_size, self.heatmap_size)

    def encode(self, points: np.ndarray) -> np.ndarray:
        """Points ``(N, 2)`` in input pixels -> heatmaps ``(H, W, N)`` float32 (NumPy)."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"points must have shape (N, 2), got {p.shape}")
        return encode_heatmaps(self.to_heatmap(p), self.heatmap_size, self.sigma)

    def encode_batch(self, points: np.ndarray) -> np.ndarray:
        """Points ``(B, N, 2)`` in input pixels -> heatmaps ``(B, H, W, N)`` float32."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 3 or p.shape[2] != 2:
            raise ValueError(f"points must have shape (B, N, 2), got {p.shape}")
        return encode_heatmaps(self.to_heatmap(p), self.heatmap_size, self.sigma)

    def decode(self, heatmaps: Any, decoder: str | None = None) -> Any:
        """Heatmaps ``(B, H, W, N)`` -> points ``(B, N, 2)`` in input pixels.

        NumPy in -> NumPy out; backend tensors in -> tensors out (usable inside a model and
        under ``jax.jit``). ``decoder`` overrides the configured one.
        """
        shape = tuple(heatmaps.shape) if hasattr(heatmaps, "shape") else np.shape(heatmaps)
        if len(shape) >= 3 and (shape[-3], shape[-2]) != (self.heatmap_size, self.heatmap_size):
            raise ValueError(f"heatmaps of {shape[-3]}x{shape[-2]} cells; codec expects "
                             f"{self.heatmap_size}x{self.heatmap_size}")
        pts = decode(heatmaps, decoder or self.decoder, self.sigma, self.k, self.iterations,
                     self.linear_init, self.weighting)
        return self.to_input(pts)

    def get_config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "HeatmapCodec":
        return cls(**config)


@keras.saving.register_keras_serializable(package="acrloss")
class HeatmapDecodeLayer(keras.layers.Layer):
    """Keras layer: heatmaps ``(B, H, W, N)`` -> points ``(B, N, 2)`` in input pixels.

    Takes the :class:`HeatmapCodec` fields as keyword arguments. Not trainable; uses
    ``keras.ops`` only, so it compiles on every backend.
    """

    def __init__(self, input_size: int = 256, heatmap_size: int = 64, sigma: float = 1.5,
                 decoder: str = "keyposs", k: int = 9, iterations: int = 5,
                 linear_init: bool = True, weighting: str = "value", **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.codec = HeatmapCodec(input_size=input_size, heatmap_size=heatmap_size, sigma=sigma,
                                  decoder=decoder, k=k, iterations=iterations,
                                  linear_init=linear_init, weighting=weighting)

    def call(self, inputs: Any) -> Any:
        return self.codec.decode(inputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[3], 2)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self.codec.get_config())
        return config
