"""Tests of acrloss.data_prep.crop: point maps, normalization and the pixel warp agree."""
from __future__ import annotations

import numpy as np
import pytest

from acrloss.config import AugmentConfig
from acrloss.data_prep.augment import flip_matrix, random_geometry
from acrloss.data_prep.crop import CropTransform, apply_affine, denormalize, face_box, normalize, to_h
from acrloss.data_prep.images import read_image


# ----------------------------------------------------------------- point maps
def test_normalize_puts_pixel_edges_at_half():
    size = 64
    # the outer pixel edges of a crop of side S are at -0.5 and S - 0.5 in pixel-centre coordinates
    np.testing.assert_allclose(normalize(np.array([[-0.5, size - 0.5]]), size), [[-0.5, 0.5]])
    # the crop centre is 0
    np.testing.assert_allclose(normalize(np.array([(size - 1) / 2.0]), size), [0.0], atol=1e-15)
    # one pixel is 1/S in normalized units
    np.testing.assert_allclose(normalize(np.array([3.0]), size) - normalize(np.array([2.0]), size), [1 / size])
    x = np.random.default_rng(0).uniform(-10, 80, (50, 2))
    np.testing.assert_allclose(denormalize(normalize(x, size), size), x, atol=1e-12)


def test_from_box_geometry_by_hand():
    box = np.array([10.0, 20.0, 110.0, 60.0])  # 100 wide, 40 high
    t = CropTransform.from_box(box, 50, margin=0.25)
    # side = 125 px of the image become 50 crop pixels; the box centre goes to the crop centre
    np.testing.assert_allclose(t.forward(np.array([[60.0, 40.0]])), [[24.5, 24.5]], atol=1e-12)
    np.testing.assert_allclose(t.matrix[:, :2], np.eye(2) * 50 / 125, atol=1e-15)
    # the box's left/right edges land at equal distance from the crop's edges
    left, right = t.forward(np.array([[10.0, 40.0], [110.0, 40.0]]))[:, 0]
    assert right - left == pytest.approx(40.0)
    assert left - (-0.5) == pytest.approx((50 - 0.5) - right)
    np.testing.assert_allclose(t.inverse(t.forward(box.reshape(2, 2))), box.reshape(2, 2), atol=1e-12)


def test_face_box_and_from_points():
    pts = np.array([[3.0, 9.0], [7.0, -1.0], [5.0, 4.0]])
    np.testing.assert_array_equal(face_box(pts), [3.0, -1.0, 7.0, 9.0])
    t = CropTransform.from_points(pts, 32, margin=0.0)
    crop = t.forward(pts)
    # with no margin the longer side (y: 10 px) spans exactly the crop from edge to edge
    assert crop[:, 1].min() == pytest.approx(-0.5) and crop[:, 1].max() == pytest.approx(31.5)


def test_then_composes_in_crop_space():
    t = CropTransform.from_box(np.array([0.0, 0.0, 40.0, 40.0]), 32, 0.25)
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]])
    p = np.array([[12.0, 7.0], [30.0, 1.0]])
    np.testing.assert_allclose(t.then(shift).forward(p), t.forward(p) + [3.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(t.then(to_h(shift)).forward(p), t.forward(p) + [3.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(apply_affine(flip_matrix(32), np.array([[0.0, 5.0]])), [[31.0, 5.0]])


def test_round_trip_on_all_common_faces(w300_common):
    """crop -> normalize -> denormalize -> inverse gives back every point of every face."""
    assert len(w300_common) == 554
    worst = 0.0
    for size, margin in ((224, 0.25), (64, 0.1)):
        for s in w300_common:
            t = CropTransform.from_points(s.points, size, margin)
            n = normalize(t.forward(s.points), size)
            # a face inside its own margin crop lies within the crop, touching (1 + margin)^-1 of it
            assert np.all(np.abs(n) < 0.5)
            extent = n.max(axis=0) - n.min(axis=0)
            assert extent.max() == pytest.approx(1.0 / (1.0 + margin), rel=1e-9)
            back = t.inverse(denormalize(n.astype(np.float32), size))  # labels are stored as float32
            worst = max(worst, float(np.abs(back - s.points).max()))
    assert worst < 1e-3, worst


# ----------------------------------------------------------------- pixels vs points
@pytest.fixture(scope="module")
def real_image(w300_common):
    return read_image(w300_common[0].image_path)


def test_integer_translation_crop_moves_single_pixels_where_forward_says(real_image):
    h, w = real_image.shape[:2]
    size = 96
    x0, y0 = 37, 51  # top-left pixel (centre) of the crop in the image
    # the box's edges are pixel edges: [x0 - 0.5, x0 + size - 0.5]
    box = np.array([x0 - 0.5, y0 - 0.5, x0 + size - 0.5, y0 + size - 0.5])
    t = CropTransform.from_box(box, size, margin=0.0)
    np.testing.assert_allclose(t.matrix, [[1, 0, -x0], [0, 1, -y0]], atol=1e-12)
    assert x0 + size <= w and y0 + size <= h
    # the crop of the real image is that block of pixels, exactly
    np.testing.assert_array_equal(t.warp(real_image), real_image[y0 : y0 + size, x0 : x0 + size])

    dots = np.array([[x0 + 3, y0 + 70], [x0 + 50, y0 + 12], [x0 + 90, y0 + 91], [x0, y0]])
    black = np.zeros_like(real_image)
    for k, (x, y) in enumerate(dots):
        black[y, x] = (255, 200 - 20 * k, 100)
    warped = t.warp(black)
    where = t.forward(dots.astype(float))
    np.testing.assert_array_equal(where, np.round(where))
    for k, (cx, cy) in enumerate(where.astype(int)):
        np.testing.assert_array_equal(warped[cy, cx], (255, 200 - 20 * k, 100))
    assert np.count_nonzero(warped.any(axis=2)) == len(dots)


def test_integer_upscale_crop_puts_a_pixel_on_its_forward_point(real_image):
    """Scale 2: a bright image pixel's centre maps onto a crop pixel centre."""
    size = 64
    t = CropTransform(np.array([[2.0, 0.0, -2 * 40.0], [0.0, 2.0, -2 * 60.0]]), size)
    black = np.zeros_like(real_image)
    black[75, 52] = 255
    x, y = t.forward(np.array([[52.0, 75.0]]))[0]
    assert (x, y) == (24.0, 30.0)
    warped = t.warp(black)
    assert tuple(np.unravel_index(np.argmax(warped[..., 0]), warped.shape[:2])) == (30, 24)
    assert warped[30, 24, 0] == 255
    # bilinear: the neighbours half-way to the next source pixel get half the intensity
    assert warped[30, 25, 0] in (127, 128) and warped[31, 24, 0] in (127, 128)


def gaussian_blob(shape, centre, sigma):
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = np.round(255 * g).astype(np.uint8)
    return img


def centroid(channel, around, radius):
    cx, cy = np.round(around).astype(int)
    y0, x0 = max(cy - radius, 0), max(cx - radius, 0)
    win = channel[y0 : cy + radius + 1, x0 : cx + radius + 1].astype(np.float64)
    yy, xx = np.mgrid[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


@pytest.mark.parametrize(
    "scale, sigma",
    # below 0.5 the warp pre-shrinks with INTER_AREA: that path must stay aligned too
    [(0.8, 3.0), (1.7, 2.0), (0.6, 4.0), (0.3, 10.0), (0.17, 16.0)],
)
def test_scaled_crop_moves_blob_centroid_where_forward_says(real_image, scale, sigma):
    h, w = real_image.shape[:2]
    centre = np.array([w * 0.45 + 0.37, h * 0.55 - 0.21])
    size = 80
    side = size / scale
    box = np.array([centre[0] - side / 2 + 3.3, centre[1] - side / 2 - 2.1, centre[0] + side / 2 + 3.3, centre[1] + side / 2 - 2.1])
    t = CropTransform.from_box(box, size, margin=0.0)
    assert np.sqrt(np.linalg.det(t.matrix[:, :2])) == pytest.approx(scale)
    blob = gaussian_blob(real_image.shape, centre, sigma)
    where = t.forward(centre[None])[0]
    assert np.all((where > 15) & (where < size - 15))
    got = centroid(t.warp(blob)[..., 1], where, radius=int(4 * sigma * scale) + 2)
    np.testing.assert_allclose(got, where, atol=0.05)


def test_rotated_flipped_crop_moves_blob_centroid_where_forward_says(real_image):
    h, w = real_image.shape[:2]
    centre = np.array([w * 0.5 - 10.3, h * 0.5 + 7.6])
    size = 96
    t0 = CropTransform.from_box(np.array([centre[0] - 60, centre[1] - 50, centre[0] + 70, centre[1] + 55]), size, 0.25)
    cfg = AugmentConfig(flip_prob=1.0, rotation_deg=25.0, scale_range=(0.9, 1.1), shift_frac=0.05)
    geometry, flipped = random_geometry(np.random.default_rng(5), cfg, size)
    assert flipped
    t = t0.then(geometry)
    blob = gaussian_blob(real_image.shape, centre, 4.0)
    where = t.forward(centre[None])[0]
    got = centroid(t.warp(blob)[..., 1], where, radius=16)
    np.testing.assert_allclose(got, where, atol=0.05)


def test_outside_the_image_is_black(real_image):
    h, w = real_image.shape[:2]
    t = CropTransform.from_box(np.array([-200.0, -200.0, -100.0, -100.0]), 32, 0.0)
    assert not t.warp(real_image).any()


# ----------------------------------------------------------------- the region-only pre-shrink
def _full_shrink_warp(t: CropTransform, image: np.ndarray) -> np.ndarray:
    """The warp with the whole photo shrunk by ``cv2.resize`` (the reference)."""
    import cv2

    scale = float(np.sqrt(abs(np.linalg.det(t.matrix[:, :2]))))
    assert scale < 0.5, "the reference is for crops that pre-shrink"
    f = scale * 1.5
    dsize = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
    sx, sy = dsize[0] / image.shape[1], dsize[1] / image.shape[0]
    pre = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    m = (to_h(t.matrix) @ np.linalg.inv(pre))[:2]
    src = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(src, m, (t.size, t.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _region_used(monkeypatch) -> list:
    """Records each area_shrink_region result (None = fell back to the full shrink)."""
    from acrloss.data_prep import crop as crop_module

    used, real = [], crop_module.area_shrink_region

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        used.append(out is not None)
        return out

    monkeypatch.setattr(crop_module, "area_shrink_region", spy)
    return used


@pytest.mark.parametrize("channels", [3, None])
def test_region_shrink_equals_the_full_shrink_on_synthetic_photos(monkeypatch, channels):
    rng = np.random.default_rng(1)
    shape = (1700, 2300) + ((channels,) if channels else ())
    # smooth content plus noise, so area averages land on every kind of value
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    base = 127 + 100 * np.sin(xx / 37.0) * np.cos(yy / 53.0)
    image = np.clip((base if channels is None else base[..., None]) + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)
    used = _region_used(monkeypatch)
    boxes = [[300, 200, 700, 650], [1500, 900, 2100, 1500], [-150, -100, 250, 300], [2000, 1400, 2600, 1900]]
    for box, size in zip(boxes, (128, 160, 128, 96)):
        t = CropTransform.from_box(np.array(box, float), size, 0.25)
        got, want = t.warp(image), _full_shrink_warp(t, image)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (box, diff.max(), (diff > 0).mean())
    assert used and all(used), "every crop here covers a small part of a large photo: the region path must run"


def test_region_shrink_of_a_crop_outside_the_photo_is_black():
    from acrloss.data_prep.crop import area_shrink_region

    image = np.full((2000, 2000, 3), 200, np.uint8)
    t = CropTransform.from_box(np.array([5000.0, 5000.0, 5400.0, 5400.0]), 64, 0.25)
    assert not t.warp(image).any()
    m = np.array([[0.5, 0.0, -3000.0], [0.0, 0.5, -3000.0]])
    out = area_shrink_region(image, (500, 500), m, 64)
    assert out is not None and out.shape == (500, 500, 3) and not out.any()
    # a crop covering most of the shrunk photo is left to the full shrink
    assert area_shrink_region(image, (500, 500), np.array([[0.2, 0.0, 0.0], [0.0, 0.2, 0.0]]), 96) is None


def test_region_shrink_equals_the_full_shrink_on_real_photos(monkeypatch, w300_dir):
    from pathlib import Path

    from acrloss.data_prep.formats import read_pts

    full = Path(w300_dir) / "full"
    photos = [p for p in sorted(full.rglob("*.jpg")) if p.with_suffix(".pts").is_file()]
    if not photos:
        pytest.skip(f"no whole photos with .pts under {full}")
    used = _region_used(monkeypatch)
    rng = np.random.default_rng(0)
    worst, differing, pixels = 0, 0, 0
    for path in photos:
        image = read_image(path)
        box = face_box(read_pts(path.with_suffix(".pts")))
        for size in (128, 160):
            b = box + rng.normal(0, 0.05, 4) * (box[2] - box[0])
            t = CropTransform.from_box(b, size, 0.25)
            if np.sqrt(abs(np.linalg.det(t.matrix[:, :2]))) >= 0.5:
                continue
            diff = np.abs(t.warp(image).astype(int) - _full_shrink_warp(t, image).astype(int))
            worst, differing, pixels = max(worst, int(diff.max())), differing + int((diff > 0).sum()), pixels + diff.size
    assert sum(used) >= 4, f"the region path ran on only {sum(used)} crops of {len(used)}"
    assert worst <= 1 and differing / pixels < 1e-4, (worst, differing / pixels)
