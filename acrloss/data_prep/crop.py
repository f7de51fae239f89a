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
            src = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
            sx, sy = src.shape[1] / image.shape[1], src.shape[0] / image.shape[0]
            pre = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
            m = (to_h(m) @ np.linalg.inv(pre))[:2]
        return cv2.warpAffine(src, m, (self.size, self.size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT)


def normalize(points: np.ndarray, size: int) -> np.ndarray:
    """Crop pixel points -> normalized coordinates in [-0.5, 0.5] (pixel edges at +-0.5)."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / size - 0.5


def denormalize(points: np.ndarray, size: int) -> np.ndarray:
    """Normalized coordinates -> crop pixel points (inverse of :func:`normalize`)."""
    return (np.asarray(points, dtype=np.float64) + 0.5) * size - 0.5
