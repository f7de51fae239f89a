"""Decoding is capped (issue 15, item 6): a crafted all-zero 20000 x 20000 PNG (a few
hundred KB on disk, 1.2 GB as RGB) is refused from its header, naming the file, before
any pixel is allocated; the cap is configurable; image sizes come from headers alone."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, header_size, image_size, read_image

REPO = Path(__file__).resolve().parents[2]


def zero_png(path: Path, width: int, height: int) -> Path:
    """A valid greyscale PNG of zeros, compressed row by row (never held in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + zero pixels
    parts = [comp.compress(row) for _ in range(height)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return zero_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 20000, 20000)


def test_crafted_20000_squared_png_is_refused_before_decoding(bomb):
    assert bomb.stat().st_size < 2_000_000
    assert 20000 * 20000 > DEFAULT_MAX_PIXELS
    start = time.perf_counter()
    with pytest.raises(LandmarkFileError, match=r"bomb\.png: image is 20000x20000 = 400,000,000 pixels, above the decoding cap"):
        read_image(bomb)
    assert time.perf_counter() - start < 2.0  # decoding it takes far longer (and 1.6 GB)


def test_refusal_allocates_nothing_big(bomb):
    """In a fresh process, refusing the bomb does not raise the peak memory."""
    code = ("import resource, json, sys\n"
            "from acrloss.data_prep.images import read_image\n"
            "from acrloss.data_prep.formats import LandmarkFileError\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            "try:\n    read_image(sys.argv[1]); refused = False\n"
            "except LandmarkFileError:\n    refused = True\n"
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            "print(json.dumps({'refused': refused, 'peak_growth_mb': after - before}))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop(MAX_PIXELS_ENV, None)
    proc = subprocess.run([sys.executable, "-c", code, str(bomb)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["refused"] is True
    assert out["peak_growth_mb"] < 50, out  # decoding would add 400 MB (grey) + 1.2 GB (RGB)


def test_cap_is_configurable_by_environment_and_argument(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    assert cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))
    assert read_image(path).shape == (20, 30, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "599")
    with pytest.raises(LandmarkFileError, match=r"small\.png: image is 30x20 = 600 pixels, above the decoding cap of 599"):
        read_image(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "600")
    assert read_image(path).shape == (20, 30, 3)
    with pytest.raises(LandmarkFileError, match="cap of 100"):
        read_image(path, max_pixels=100)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        read_image(path)


@pytest.mark.parametrize("ext,params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                        (".bmp", []), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])
@pytest.mark.parametrize("channels", [1, 3])
def test_header_sizes_match_the_decoder(tmp_path, ext, params, channels):
    shape = (37, 53) if channels == 1 else (37, 53, 3)
    path = tmp_path / f"x{ext}"
    assert cv2.imwrite(str(path), np.zeros(shape, np.uint8), params)
    assert header_size(path.read_bytes()) == (53, 37)
    assert image_size(path) == (53, 37)


def test_a_large_jpeg_is_refused_from_its_frame_header(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    assert cv2.imwrite(str(path), np.zeros((1000, 1500, 3), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, str(1000 * 1500 - 1))
    with pytest.raises(LandmarkFileError, match=r"big\.jpg: image is 1500x1000"):
        read_image(path)


def test_keras_floor_includes_the_safe_mode_fixes():
    """pyproject's Keras floor admits no release with the CVE-2025-1550 (fixed in 3.9.0)
    or CVE-2025-9905 (fixed in 3.11.3) safe-mode bypasses; the installed Keras meets it."""
    import re
    import tomllib

    import keras

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(r"keras\b", d)]
    floor = re.search(r">=\s*([\d.]+)", spec)
    assert floor, spec

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", text)[:3])

    assert version(floor.group(1)) >= (3, 11, 3), spec
    assert version(keras.__version__) >= version(floor.group(1))
