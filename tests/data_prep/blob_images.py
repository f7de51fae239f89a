"""Real faces re-drawn as synthetic images for exact point-tracking tests (shared by the
augmentation tests): each face keeps its real points and image size, on a black PNG with a
gaussian blob in one colour channel at a few landmarks."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from acrloss.data_prep.datasets import Sample


def draw_blob_faces(samples: Sequence[Sample], out: Path, blobs: Mapping[int, int], sigma_per_side: float) -> list[Sample]:
    """One PNG in ``out`` per sample: blob ``k -> channel`` at each landmark of ``blobs``,
    sigma = face side / ``sigma_per_side``. Returns the new samples (same points)."""
    made = []
    for s in samples:
        h, w = cv2.imread(s.image_path, cv2.IMREAD_UNCHANGED).shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        sigma = np.ptp(s.points, axis=0).max() / sigma_per_side
        rgb = np.zeros((h, w, 3), np.uint8)
        for k, ch in blobs.items():
            x, y = s.points[k]
            rgb[..., ch] = np.round(255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
        path = Path(out) / (Path(s.image_path).stem + ".png")
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        made.append(Sample(str(path), s.points.copy()))
    return made
