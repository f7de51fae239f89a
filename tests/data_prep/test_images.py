"""Tests of acrloss.data_prep.images: every readable image comes back as RGB uint8 (H, W, 3)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.images import read_image, to_rgb


def test_greyscale_png_becomes_three_equal_channels(tmp_path):
    grey = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    path = tmp_path / "grey.png"
    assert cv2.imwrite(str(path), grey)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 2  # really single-channel on disk
    img = read_image(path)
    assert img.shape == (12, 20, 3)
    assert img.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], grey)


def test_colour_png_comes_back_rgb_not_bgr(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[:, :2] = (255, 0, 0)  # blue in OpenCV's BGR order
    bgr[:, 2:4] = (0, 0, 255)  # red
    bgr[:, 4:] = (10, 20, 30)
    path = tmp_path / "colour.png"
    assert cv2.imwrite(str(path), bgr)
    img = read_image(path)
    assert img.shape == (4, 6, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(img[0, 2], [255, 0, 0])
    np.testing.assert_array_equal(img[0, 5], [30, 20, 10])


def test_rgba_png_drops_alpha_and_keeps_rgb(tmp_path):
    bgra = np.zeros((5, 7, 4), np.uint8)
    bgra[..., 0] = 11  # B
    bgra[..., 1] = 22  # G
    bgra[..., 2] = 33  # R
    bgra[..., 3] = np.arange(7, dtype=np.uint8) * 30  # varying alpha must not leak in
    path = tmp_path / "rgba.png"
    assert cv2.imwrite(str(path), bgra)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == (5, 7, 4)
    img = read_image(path)
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.broadcast_to(np.array([33, 22, 11], np.uint8), (5, 7, 3)))


def test_sixteen_bit_png_is_scaled_to_uint8(tmp_path):
    grey16 = np.array([[0, 65535], [257 * 100, 257 * 200]], np.uint16)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), grey16)
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (2, 2, 3)
    np.testing.assert_array_equal(img[..., 0], [[0, 255], [100, 200]])


def test_to_rgb_accepts_single_channel_and_float():
    one = np.full((3, 3, 1), 9, np.uint8)
    np.testing.assert_array_equal(to_rgb(one), np.full((3, 3, 3), 9, np.uint8))
    flt = np.full((2, 2, 3), 0.5, np.float32)
    out = to_rgb(flt)
    assert out.dtype == np.uint8
    assert int(out[0, 0, 0]) in (127, 128)
    with pytest.raises(LandmarkFileError, match="weird_source"):
        to_rgb(np.zeros((2, 2, 5), np.uint8), "weird_source")


def test_corrupt_jpg_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert not data.startswith(b"\xff\xd8")  # not accidentally a JPEG header
    path = tmp_path / "corrupt_photo.jpg"
    path.write_bytes(data)
    with pytest.raises(LandmarkFileError, match=r"corrupt_photo\.jpg"):
        read_image(path)


def test_truncated_and_empty_files_name_the_file(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    assert ok
    head = tmp_path / "only_header.jpg"
    head.write_bytes(buf.tobytes()[:20])
    empty = tmp_path / "empty_file.jpg"
    empty.write_bytes(b"")
    for path in (head, empty):
        with pytest.raises(LandmarkFileError, match=path.name.replace(".", r"\.")):
            read_image(path)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "no_such_image.png"
    with pytest.raises(LandmarkFileError, match=r"no_such_image\.png"):
        read_image(path)


def test_a_folder_is_not_an_image(tmp_path):
    folder = tmp_path / "looks_like.jpg"
    folder.mkdir()
    with pytest.raises(LandmarkFileError, match=r"looks_like\.jpg"):
        read_image(folder)


def test_real_greyscale_300w_jpeg(w300_dir):
    """300-W keeps greyscale photos single-channel; they must still load as RGB."""
    candidates = sorted((w300_dir / "helen" / "testset").glob("*.jpg"))
    grey = None
    for path in candidates:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is not None and raw.ndim == 2:
            grey = (path, raw)
            break
    if grey is None:
        pytest.skip("no single-channel image in helen/testset")
    path, raw = grey
    img = read_image(path)
    assert img.shape == raw.shape + (3,) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[..., 0], raw)
    np.testing.assert_array_equal(img[..., 1], raw)
    np.testing.assert_array_equal(img[..., 2], raw)
