"""Face box -> square crop transform, with forward and inverse point maps.

All points are 0-based pixel centres (see :mod:`acrloss.config`). A crop is an affine map
``M`` (2x3) from image coordinates to crop coordinates; ``cv2.warpAffine`` uses the same
convention, so warping the image and mapping the points with ``M`` agree exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def face_box(points: np.ndarray) -> np.ndarray:
    """The landmark extent ``(x0, y0, x1, y1)`` of ``(N, 2)`` points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def to_h(matrix: np.ndarray) -> np.ndarray:
    """A 2x3 affine matrix as 3x3 homogeneous."""
    return np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(..., 2)`` points with a 2x3 (or 3x3) affine matrix."""
    m = np.asarray(matrix, dtype=np.float64)[:2]
    pts = np.asarray(points, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


@dataclass
class CropTransform:
    """A square crop of ``size`` pixels defined by an image->crop affine ``matrix`` (2x3)."""

    matrix: np.ndarray
    size: int

    @classmethod
    def from_box(cls, box: np.ndarray, size: int, margin: float = 0.25) -> "CropTransform":
        """Square crop centred on ``box`` (x0, y0, x1, y1), side (1 + margin) x its longer side."""
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0, 1.0) * (1.0 + margin)
        scale = size / side
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        c = (size - 1) / 2.0
        matrix = np.array([[scale, 0.0, c - scale * cx], [0.0, scale, c - scale * cy]])
        return cls(matrix, int(size))

    @classmethod
    def from_points(cls, points: np.ndarray, size: int, margin: float = 0.25) -> "CropTransform":
        return cls.from_box(face_box(points), size, margin)

    @property
    def inverse_matrix(self) -> np.ndarray:
        return np.linalg.inv(to_h(self.matrix))[:2]

    def forward(self, points: np.ndarray) -> np.ndarray:
        """Image points -> crop points."""
        return apply_affine(self.matrix, points)

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """Crop points -> image points."""
        return apply_affine(self.inverse_matrix, points)

    def then(self, matrix: np.ndarray) -> "CropTransform":
        """This crop followed by a crop-space affine ``matrix`` (2x3 or 3x3)."""
        return CropTransform((to_h(matrix) @ to_h(self.matrix))[:2], self.size)

    def warp(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Cut the crop out of ``image`` (pixels outside the image are black)."""
        src = image
        scale = float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))
        m = self.matrix
        # strong down-scaling: pre-shrink with INTER_AREA to avoid aliasing
        if scale < 0.5:
            f = scale * 1.5
            # explicit dsize: with fx/fy OpenCV scales by f itself, not by the rounded
            # size ratio used for ``pre`` below (a sub-pixel shift of the image)
            dsize = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
            sx, sy = dsize[0] / image.shape[1], dsize[1] / image.shape[0]
            pre = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
            m = (to_h(m) @ np.linalg.inv(pre))[:2]
            src = None
            if image.shape[0] * image.shape[1] >= REGION_SHRINK_MIN_PIXELS:  # a large photo: shrink the crop's region
                src = area_shrink_region(image, dsize, m, self.size)
            if src is None:  # a small photo, or the face fills much of it: one full shrink is cheaper
                src = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(src, m, (self.size, self.size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT)


#: :func:`area_shrink_region` shrinks only the crop's region when it covers at most this
#: fraction of the photo; above it, ``cv2.resize`` of the whole photo is cheaper (the integral
#: image costs about three times a full area shrink per pixel).
REGION_SHRINK_MAX_FRACTION = 0.3
#: ... and only on photos of at least this many pixels (below, a full shrink takes about a
#: millisecond and the region's bookkeeping would cost more).
REGION_SHRINK_MIN_PIXELS = 1_500_000


def _cell_edges(n_src: int, n_dst: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Source-pixel extents ``[start, end)`` of destination pixels ``lo..hi-1`` when one axis
    shrinks from ``n_src`` to ``n_dst`` pixels (``cv2.INTER_AREA``'s cells: ``d * n_src / n_dst``
    onwards, the last one clipped at the border)."""
    scale = n_src / n_dst
    start = np.arange(lo, hi, dtype=np.float64) * scale
    return start, np.minimum(start + scale, n_src)


def _integral_at(table: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The integral image ``table`` ((h + 1, w + 1, ...)) at fractional ``ys`` x ``xs`` (float64):
    the integral of the piecewise-constant image over ``[0, y) x [0, x)``, which is bilinear in
    each pixel, so a bilinear lookup of the table gives it exactly."""
    h, w = table.shape[0] - 1, table.shape[1] - 1
    y0 = np.minimum(np.floor(ys).astype(np.intp), h - 1)
    x0 = np.minimum(np.floor(xs).astype(np.intp), w - 1)
    fy = (ys - y0).reshape((-1, 1) + (1,) * (table.ndim - 2))
    fx = (xs - x0).reshape((1, -1) + (1,) * (table.ndim - 2))
    t00, t01 = (table[np.ix_(y0, x)].astype(np.float64) for x in (x0, x0 + 1))
    t10, t11 = (table[np.ix_(y0 + 1, x)].astype(np.float64) for x in (x0, x0 + 1))
    return (t00 * (1 - fx) + t01 * fx) * (1 - fy) + (t10 * (1 - fx) + t11 * fx) * fy


def area_shrink_region(image: np.ndarray, dsize: tuple[int, int], matrix: np.ndarray, size: int,
                       max_fraction: float = REGION_SHRINK_MAX_FRACTION) -> np.ndarray | None:
    """``cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)`` where a ``size`` x ``size``
    crop through ``matrix`` (shrunk image -> crop) can read it, zeros elsewhere; ``None`` when
    that region covers more than ``max_fraction`` of the image (the full shrink, a fast SIMD
    pass, is then cheaper than the region's integral image).

    A crop needs only the pixels under its footprint, but a full shrink averages the whole
    photo (most of a face's crop time on a large photo). Here each destination pixel of that
    region is its source cell's area average, read off the region's integral image
    (``cv2.integral``, exact sums) at the cell's fractional corners, and rounded like OpenCV.
    It equals the full shrink there up to float rounding (at most 1 grey level on a few
    pixels in a million, tested on real photos), and ``cv2.warpAffine`` with the same
    ``matrix`` reads nothing else.
    """
    dw, dh = int(dsize[0]), int(dsize[1])
    # the crop's footprint in the shrunk image: its pixel centres mapped back, plus the
    # bilinear neighbour and a pixel of slack on each side
    inv = np.linalg.inv(to_h(matrix))[:2]
    corners = np.array([[0.0, 0.0, 1.0], [size - 1.0, 0.0, 1.0], [0.0, size - 1.0, 1.0], [size - 1.0, size - 1.0, 1.0]])
    xy = corners @ inv.T
    x0, y0 = (int(np.floor(v)) - 2 for v in xy.min(axis=0))
    x1, y1 = (int(np.floor(v)) + 3 for v in xy.max(axis=0))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, dw), min(y1, dh)
    if x1 <= x0 or y1 <= y0:  # the crop lies outside the image: all black
        return np.zeros((dh, dw) + image.shape[2:], image.dtype)
    if (y1 - y0) * (x1 - x0) > max_fraction * dw * dh:
        return None
    out = np.zeros((dh, dw) + image.shape[2:], image.dtype)
    ys0, ys1 = _cell_edges(image.shape[0], dh, y0, y1)
    xs0, xs1 = _cell_edges(image.shape[1], dw, x0, x1)
    r0, r1 = int(np.floor(ys0[0])), min(int(np.ceil(ys1[-1])), image.shape[0])
    c0, c1 = int(np.floor(xs0[0])), min(int(np.ceil(xs1[-1])), image.shape[1])
    region = np.ascontiguousarray(image[r0:r1, c0:c1])
    # exact sums: int32 holds 8-bit sums of up to 8.4 M pixels (and is several times faster)
    exact32 = image.dtype == np.uint8 and region.shape[0] * region.shape[1] < 8_000_000
    table = cv2.integral(region, sdepth=cv2.CV_32S if exact32 else cv2.CV_64F)
    if table.ndim == 2 and image.ndim == 3:  # one channel keeps its axis
        table = table[..., None]
    corners_y, corners_x = np.r_[ys0, ys1[-1]] - r0, np.r_[xs0, xs1[-1]] - c0
    # cells tile the axis, so the n + 1 edges serve as both starts and ends (the last end is
    # clipped at the border; every other end is the next start)
    big = _integral_at(table, corners_y, corners_x)
    sums = big[1:, 1:] - big[:-1, 1:] - big[1:, :-1] + big[:-1, :-1]
    area = np.outer(ys1 - ys0, xs1 - xs0).reshape(sums.shape[:2] + (1,) * (sums.ndim - 2))
    shrunk = sums / area
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        shrunk = np.clip(np.rint(shrunk), info.min, info.max)
    out[y0:y1, x0:x1] = shrunk.astype(image.dtype)
    return out


def normalize(points: np.ndarray, size: int) -> np.ndarray:
    """Crop pixel points -> normalized coordinates in [-0.5, 0.5] (pixel edges at +-0.5)."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / size - 0.5


def denormalize(points: np.ndarray, size: int) -> np.ndarray:
    """Normalized coordinates -> crop pixel points (inverse of :func:`normalize`)."""
    return (np.asarray(points, dtype=np.float64) + 0.5) * size - 0.5
