"""Tests of acrloss.data_prep.augment and of augmented batches from the pipeline:
the points must follow the pixels through flips, rotations, scales and shifts."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from blob_images import draw_blob_faces  # tests/data_prep/blob_images.py

from acrloss.config import W300_SPEC, AugmentConfig, CropConfig
from acrloss.data_prep.augment import flip_matrix, photometric, random_geometry
from acrloss.data_prep.crop import CropTransform, apply_affine, denormalize
from acrloss.data_prep.images import read_image
from acrloss.data_prep.pipeline import LandmarkSequence, normalized_labels

MIRROR = np.array(W300_SPEC.mirror)
GEOMETRY_ONLY = dataclasses.replace(AugmentConfig.none(), rotation_deg=20.0, scale_range=(0.9, 1.1), shift_frac=0.05)


def flip_points(points: np.ndarray, size: int, mirror) -> np.ndarray:
    """The pipeline's flip of crop points (``LandmarkSequence.load``): the crop-space
    :func:`flip_matrix`, then the left/right labels swapped through the mirror map."""
    return apply_affine(flip_matrix(size), points)[np.asarray(mirror)]


# ----------------------------------------------------------------- mirror map and flips
def test_mirror_map_is_an_involutive_permutation():
    assert len(MIRROR) == 68
    assert sorted(MIRROR.tolist()) == list(range(68))
    np.testing.assert_array_equal(MIRROR[MIRROR], np.arange(68))
    assert MIRROR[36] == 45 and MIRROR[45] == 36  # outer eye corners
    assert MIRROR[39] == 42 and MIRROR[48] == 54 and MIRROR[0] == 16 and MIRROR[17] == 26
    # points on the face's midline map to themselves (iBUG scheme, 0-based)
    for centre in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):
        assert MIRROR[centre] == centre, centre


def test_mirror_map_matches_real_mean_face(w300_common):
    """Mirroring the mean real face and relabeling with the map gives the mean face back."""
    labels = normalized_labels(w300_common, CropConfig(64, 0.25)).reshape(-1, 68, 2)
    mean = labels.mean(axis=0)
    mirrored = mean[MIRROR] * [-1.0, 1.0]  # normalized coordinates: a flip is x -> -x
    err = np.linalg.norm(mirrored - mean, axis=1)
    assert err.max() < 0.04, (err.max(), int(err.argmax()))
    # without relabeling the mirrored face is far off (the check can fail)
    assert np.linalg.norm(mean * [-1.0, 1.0] - mean, axis=1).max() > 0.3


def test_flip_twice_is_identity():
    size = 96
    pts = np.random.default_rng(0).integers(0, size, (68, 2)).astype(np.float64)
    np.testing.assert_array_equal(flip_points(flip_points(pts, size, MIRROR), size, MIRROR), pts)
    pts = np.random.default_rng(1).uniform(-3, size + 3, (68, 2))
    np.testing.assert_allclose(flip_points(flip_points(pts, size, MIRROR), size, MIRROR), pts, atol=1e-12)
    # and once is not the identity
    assert not np.allclose(flip_points(pts, size, MIRROR), pts)


def test_flip_points_by_hand():
    size = 10
    pts = np.zeros((68, 2))
    pts[36] = (2.0, 4.0)
    pts[45] = (7.0, 4.5)
    pts[30] = (4.5, 6.0)
    out = flip_points(pts, size, MIRROR)
    # x -> 9 - x, then label 36 takes the mirrored position of 45 and vice versa
    np.testing.assert_array_equal(out[36], (2.0, 4.5))
    np.testing.assert_array_equal(out[45], (7.0, 4.0))
    np.testing.assert_array_equal(out[30], (4.5, 6.0))
    np.testing.assert_array_equal(flip_matrix(size) @ [2.0, 4.0, 1.0], [7.0, 4.0, 1.0])


def test_flipping_real_faces_keeps_eye_corner_order(w300_common):
    size = 128
    n_checked = 0
    for s in w300_common[::5]:
        pts = CropTransform.from_points(s.points, size).forward(s.points)
        assert pts[36, 0] < pts[45, 0]  # the subject's right eye is on the image's left
        flipped = flip_points(pts, size, MIRROR)
        assert flipped[36, 0] < flipped[45, 0]
        assert flipped[36, 0] == pytest.approx(size - 1 - pts[45, 0])
        # mirroring x alone (no relabel) would swap the order
        assert (size - 1 - pts[36, 0]) > (size - 1 - pts[45, 0])
        n_checked += 1
    assert n_checked > 100


def test_flip_matrix_warp_equals_mirrored_pixels(w300_common):
    image = read_image(w300_common[3].image_path)
    size = 64
    # integer translation crop: pixels are copied, so the mirrored crop is exactly the crop reversed
    x0, y0 = 30, 40
    t = CropTransform(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), size)
    crop = t.warp(image)
    np.testing.assert_array_equal(t.then(flip_matrix(size)).warp(image), crop[:, ::-1])
    np.testing.assert_array_equal(crop, image[y0 : y0 + size, x0 : x0 + size])


# ----------------------------------------------------------------- random geometry / photometric
def test_random_geometry_with_all_zero_config_is_identity():
    for seed in range(5):
        m, flipped = random_geometry(np.random.default_rng(seed), AugmentConfig.none(), 64)
        np.testing.assert_allclose(m, np.eye(3), atol=1e-12)
        assert flipped is False


def test_random_geometry_ranges():
    size = 100
    c = (size - 1) / 2.0
    cfg = dataclasses.replace(AugmentConfig.none(), rotation_deg=30.0, scale_range=(0.8, 1.2))
    angles = []
    for seed in range(50):
        m, flipped = random_geometry(np.random.default_rng(seed), cfg, size)
        assert not flipped
        a = m[:2, :2]
        s = np.sqrt(np.linalg.det(a))
        assert 0.8 <= s <= 1.2
        np.testing.assert_allclose(a / s @ (a / s).T, np.eye(2), atol=1e-12)  # a rotation
        np.testing.assert_allclose(m @ [c, c, 1.0], [c, c, 1.0], atol=1e-9)  # about the centre
        angles.append(np.degrees(np.arctan2(a[1, 0], a[0, 0])))
    assert max(np.abs(angles)) <= 30.0 and np.ptp(angles) > 20.0
    shift = dataclasses.replace(AugmentConfig.none(), shift_frac=0.1)
    for seed in range(20):
        m, _ = random_geometry(np.random.default_rng(seed), shift, size)
        np.testing.assert_allclose(m[:2, :2], np.eye(2))
        assert np.all(np.abs(m[:2, 2]) <= 0.1 * size)
    flip = dataclasses.replace(AugmentConfig.none(), flip_prob=1.0)
    m, flipped = random_geometry(np.random.default_rng(0), flip, size)
    assert flipped
    np.testing.assert_allclose(m, flip_matrix(size))


def test_photometric_none_returns_image_unchanged():
    image = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    out = photometric(image, np.random.default_rng(1), AugmentConfig.none())
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, image)


def test_photometric_default_changes_pixels_within_range():
    image = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    cfg = dataclasses.replace(AugmentConfig(), occlusion_prob=1.0, blur_prob=1.0)
    out = photometric(image, np.random.default_rng(1), cfg)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert not np.array_equal(out, image)
    again = photometric(image, np.random.default_rng(1), cfg)
    np.testing.assert_array_equal(out, again)  # reproducible from the generator


# ----------------------------------------------------------------- augmented pipeline on real faces
BLOB_POINTS = {36: 2, 45: 1, 30: 0}  # landmark -> colour channel of the blob drawn there


@pytest.fixture(scope="module")
def blob_faces(w300_common, tmp_path_factory):
    """Real faces (their real points and image sizes) re-drawn as black PNGs with a
    gaussian blob in a distinct channel at three landmarks: 36, 45 and the nose tip 30."""
    out = tmp_path_factory.mktemp("blobs")
    return draw_blob_faces(w300_common[:: len(w300_common) // 6][:6], out, BLOB_POINTS, 40.0)  # sigma = face side / 40


def blob_centroid(channel: np.ndarray, around: np.ndarray, radius: int = 9) -> np.ndarray:
    cx, cy = np.round(around).astype(int)
    y0, x0 = max(cy - radius, 0), max(cx - radius, 0)
    win = channel[y0 : cy + radius + 1, x0 : cx + radius + 1].astype(np.float64)
    yy, xx = np.mgrid[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_augmented_targets_follow_the_pixels(blob_faces, flip_prob):
    size = 96
    cfg = dataclasses.replace(GEOMETRY_ONLY, flip_prob=flip_prob)
    seq = LandmarkSequence(blob_faces, CropConfig(size, 0.25), batch_size=3, augment=cfg,
                           mirror=MIRROR, shuffle=False, seed=3, workers=1)
    plain = LandmarkSequence(blob_faces, CropConfig(size, 0.25), batch_size=3, workers=1)
    moved = 0.0
    for b in range(len(seq)):
        images, targets = seq[b]
        plain_images, plain_targets = plain[b]
        pts = denormalize(targets.reshape(len(images), 68, 2), size)
        plain_pts = denormalize(plain_targets.reshape(len(images), 68, 2), size)
        moved = max(moved, float(np.abs(pts - plain_pts).max()))
        for img, p in zip(images, pts):
            for k, ch in BLOB_POINTS.items():
                # after a flip, the blob drawn at landmark 45 sits where label 36 now is
                label = MIRROR[k] if flip_prob else k
                got = blob_centroid(img[..., ch], p[label])
                np.testing.assert_allclose(got, p[label], atol=0.05)
            # the relabeled eye corners stay in image order
            assert p[36, 0] < p[45, 0]
    assert moved > 2.0  # the augmentation really moved the points


def test_flip_only_target_is_the_flip_of_the_plain_target(w300_common):
    size = 64
    faces = w300_common[100:108]
    flip_only = dataclasses.replace(AugmentConfig.none(), flip_prob=1.0)
    seq = LandmarkSequence(faces, CropConfig(size, 0.25), batch_size=4, augment=flip_only, mirror=MIRROR,
                           shuffle=False, workers=1)
    plain = LandmarkSequence(faces, CropConfig(size, 0.25), batch_size=4, workers=1)
    for b in range(len(seq)):
        images, targets = seq[b]
        plain_images, plain_targets = plain[b]
        expected = plain_targets.reshape(-1, 68, 2)[:, MIRROR] * np.array([-1.0, 1.0], np.float32)
        np.testing.assert_allclose(targets.reshape(-1, 68, 2), expected, atol=1e-6)
        # and the pixels are mirrored as well (bilinear rounding may differ by one level)
        diff = np.abs(images - plain_images[:, :, ::-1]).max()
        assert diff <= 1.0, diff
