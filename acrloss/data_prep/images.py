"""Image reading with clear errors; always returns 3-channel RGB uint8.

Decoding is capped: :func:`read_image` reads the width and height from the file's header
(PNG, JPEG, BMP, GIF, WebP; no pixel is decoded) and refuses, naming the file, an image
above ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, or the environment variable
``ACRLOSS_MAX_IMAGE_PIXELS``) before anything is allocated for it. Other formats are
checked right after decoding.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from acrloss.data_prep.formats import LandmarkFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

#: the default decoding cap: 100 megapixels (a 12000 x 8333 photo; 300 MB as RGB)
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "ACRLOSS_MAX_IMAGE_PIXELS"


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel cap in force: ``max_pixels`` when given, else ``$ACRLOSS_MAX_IMAGE_PIXELS``,
    else :data:`DEFAULT_MAX_PIXELS`."""
    if max_pixels is not None:
        value = max_pixels
    else:
        env = os.environ.get(MAX_PIXELS_ENV)
        if env is None or not env.strip():
            return DEFAULT_MAX_PIXELS
        try:
            value = int(float(env))
        except ValueError:
            raise ValueError(f"{MAX_PIXELS_ENV}={env!r}: not a number of pixels") from None
    if value <= 0:
        raise ValueError(f"the image pixel cap must be positive, got {value}")
    return int(value)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded image's header without decoding it: PNG, JPEG,
    BMP, GIF and WebP; ``None`` for other (or unreadable) headers."""
    b = bytes(data[:64]) if len(data) > 64 else bytes(data)
    try:
        if b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR":
            return struct.unpack(">II", b[16:24])
        if b[:2] == b"BM" and len(b) >= 26:
            if struct.unpack("<I", b[14:18])[0] == 12:  # BITMAPCOREHEADER
                w, h = struct.unpack("<HH", b[18:22])
            else:
                w, h = struct.unpack("<ii", b[18:26])
            return abs(w), abs(h)
        if b[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", b[6:10])
        if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
            kind = b[12:16]
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", b[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                bits = int.from_bytes(b[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if kind == b"VP8X":
                return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
            return None
        if b[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame segment of a JPEG stream."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            h = (data[i + 5] << 8) | data[i + 6]
            w = (data[i + 7] << 8) | data[i + 8]
            return w, h
        if marker == 0xD9 or length < 2:
            return None
        i += 2 + length
    return None


def image_size(path: str | os.PathLike, decode: bool = True) -> tuple[int, int] | None:
    """``(width, height)`` of an image file from its header (reads at most a few KB for
    PNG/BMP/GIF/WebP, up to the first frame header for JPEG). For other formats (or an
    unreadable header) the image is decoded, or, with ``decode=False``, ``None`` is
    returned. Raises :class:`LandmarkFileError` naming the file when it is missing or
    cannot be read."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
            size = header_size(head)
            if size is None and head[:2] == b"\xff\xd8":  # a JPEG with large metadata before its frame header
                size = header_size(head + fh.read())
    except OSError as exc:
        raise LandmarkFileError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
    if size is None:
        if not decode:
            return None
        image = read_image(path)
        return image.shape[1], image.shape[0]
    if size[0] <= 0 or size[1] <= 0:
        raise LandmarkFileError(f"{path}: image header gives an empty size {size[0]}x{size[1]}")
    return int(size[0]), int(size[1])


def _refuse_if_too_large(path: Path, width: int, height: int, cap: int) -> None:
    if width * height > cap:
        raise LandmarkFileError(
            f"{path}: image is {width}x{height} = {width * height:,} pixels, above the decoding cap of {cap:,} "
            f"(raise it with {MAX_PIXELS_ENV} or max_pixels= if the file is trusted)")


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


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 ``(H, W, 3)``; greyscale and RGBA are converted.

    Images above the pixel cap (``max_pixels``, else ``$ACRLOSS_MAX_IMAGE_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`) are refused with a :class:`LandmarkFileError` naming the
    file, from the header, before decoding. ``path`` may also name an image inside a MATLAB
    file, ``"file.mat::variable/index"`` (COFW, :mod:`acrloss.data_prep.matfile`).
    """
    from acrloss.data_prep.matfile import is_mat_ref, read_mat_image

    if is_mat_ref(path):
        return to_rgb(read_mat_image(path), str(path))
    path = Path(path)
    cap = max_image_pixels(max_pixels)
    if not path.is_file():
        raise LandmarkFileError(f"{path}: image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    size = header_size(memoryview(data)) if data.size else None
    if size is not None:
        _refuse_if_too_large(path, size[0], size[1], cap)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise LandmarkFileError(f"{path}: cannot decode image (empty or corrupt file)")
    if size is None:
        _refuse_if_too_large(path, image.shape[1], image.shape[0], cap)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    return to_rgb(image, str(path))
