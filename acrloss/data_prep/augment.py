"""On-the-fly augmentation. Geometric changes are crop-space affine matrices (so the
image is warped once and the points follow exactly); photometric ones act on pixels."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from acrloss.config import AugmentConfig


def flip_matrix(size: int) -> np.ndarray:
    """Horizontal mirror of a crop: x -> (size - 1) - x (0-based pixel centres)."""
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def flip_points(points: np.ndarray, size: int, mirror: Sequence[int]) -> np.ndarray:
    """Mirror ``(N, 2)`` crop points and swap left/right labels with the ``mirror`` map."""
    pts = np.asarray(points, dtype=np.float64).copy()
    pts[:, 0] = (size - 1.0) - pts[:, 0]
    return pts[np.asarray(mirror)]


def random_geometry(rng: np.random.Generator, cfg: AugmentConfig, size: int) -> tuple[np.ndarray, bool]:
    """A random crop-space 3x3 affine (rotation, scale, shift about the centre, optional
    mirror) and whether it mirrors."""
    c = (size - 1) / 2.0
    angle = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)) if cfg.rotation_deg else 0.0
    scale = rng.uniform(*cfg.scale_range) if cfg.scale_range[0] != cfg.scale_range[1] else cfg.scale_range[0]
    tx, ty = rng.uniform(-cfg.shift_frac, cfg.shift_frac, 2) * size if cfg.shift_frac else (0.0, 0.0)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    m = np.array([[cos, -sin, c - cos * c + sin * c + tx], [sin, cos, c - sin * c - cos * c + ty], [0, 0, 1.0]])
    flipped = bool(cfg.flip_prob and rng.random() < cfg.flip_prob)
    if flipped:
        m = m @ flip_matrix(size)
    return m, flipped


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness/contrast, gamma, blur and a random occluding rectangle on an RGB uint8 crop."""
    img = image.astype(np.float32)
    if cfg.brightness or cfg.contrast:
        alpha = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        beta = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness)
        img = img * alpha + beta
    if cfg.gamma_range[0] != cfg.gamma_range[1]:
        gamma = rng.uniform(*cfg.gamma_range)
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    img = np.clip(img, 0, 255).astype(np.uint8)
    if cfg.blur_prob and rng.random() < cfg.blur_prob:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    if cfg.occlusion_prob and rng.random() < cfg.occlusion_prob:
        h, w = img.shape[:2]
        ow = int(rng.uniform(0.1, cfg.occlusion_max_frac) * w)
        oh = int(rng.uniform(0.1, cfg.occlusion_max_frac) * h)
        x0 = int(rng.integers(0, max(w - ow, 1)))
        y0 = int(rng.integers(0, max(h - oh, 1)))
        img[y0 : y0 + oh, x0 : x0 + ow] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img
