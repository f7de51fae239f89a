"""Image reading with clear errors; always returns 3-channel RGB uint8."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from acrloss.data_prep.formats import LandmarkFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def to_rgb(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert a greyscale (H, W) / (H, W, 1), RGB or RGBA array to RGB uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.max(initial=0) <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    raise LandmarkFileError(f"{source}: unsupported image shape {image.shape}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 ``(H, W, 3)``; greyscale and RGBA are converted.

    ``path`` may also name an image inside a MATLAB file, ``"file.mat::variable/index"``
    (COFW, :mod:`acrloss.data_prep.matfile`)."""
    from acrloss.data_prep.matfile import is_mat_ref, read_mat_image

    if is_mat_ref(path):
        return to_rgb(read_mat_image(path), str(path))
    path = Path(path)
    if not path.is_file():
        raise LandmarkFileError(f"{path}: image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise LandmarkFileError(f"{path}: cannot decode image (empty or corrupt file)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    return to_rgb(image, str(path))
