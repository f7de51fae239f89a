"""Aligned face chips (acrloss.chips): a real face rotated by known angles comes out upright."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from acrloss.chips import ARCFACE_112, MEAN_SHAPE_68, align_faces, five_points, similarity_transform, template_points
from acrloss.config import W300_SPEC
from acrloss.data_prep.images import read_image


def _eye_angle(points: np.ndarray) -> float:
    """Angle (deg) of the line from the image-left eye centre to the image-right one."""
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    d = right - left
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _rotate(image: np.ndarray, points: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo rotated by ``angle`` degrees (counter-clockwise as displayed) on an enlarged canvas."""
    h, w = image.shape[:2]
    side = int(np.ceil(np.hypot(h, w)))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    m[:, 2] += ((side - w) / 2, (side - h) / 2)
    out = cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, points @ m[:, :2].T + m[:, 2]


@pytest.fixture(scope="module")
def real_face(w300_common):
    """A real, upright face: its chips (both templates) have the eyes level within 0.5 deg.

    (A least-squares fit to 5 or 51 points levels the eyes only as far as the face's own
    shape allows, so the test starts from a face that comes out level when not rotated.)"""
    for s in w300_common:
        ok = True
        for template in ("arcface", "dlib"):
            dst, idx = template_points(template, 112)
            src = five_points(s.points) if template == "arcface" else s.points[idx]
            m = similarity_transform(src, dst)
            target = 0.0 if template == "dlib" else _eye_angle_5(ARCFACE_112)
            ok = ok and abs(_eye_angle(s.points @ m[:, :2].T + m[:, 2]) - target) < 0.5
        if ok:
            return read_image(s.image_path), s.points
    pytest.fail("no face of the common subset comes out level")


def test_similarity_transform_recovers_a_known_similarity_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(10, 2))
    a, s, t = np.radians(27.0), 1.7, np.array([12.0, -5.0])
    r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = similarity_transform(src, src @ r.T + t)
    np.testing.assert_allclose(m[:, :2], r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)
    mirrored = src * [-1, 1]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0  # best rotation, not the reflection


def test_mean_shape_template_is_symmetric_and_spans_the_unit_square():
    inner = MEAN_SHAPE_68[17:]
    np.testing.assert_allclose(inner.min(0), [0, 0], atol=1e-3)
    np.testing.assert_allclose(inner.max(0), [1, 1], atol=1e-3)
    mirrored = MEAN_SHAPE_68[list(W300_SPEC.mirror)] * [-1, 1] + [1, 0]
    np.testing.assert_allclose(mirrored, MEAN_SHAPE_68, atol=2e-3)
    assert abs(_eye_angle(MEAN_SHAPE_68)) < 0.1


@pytest.mark.parametrize("template", ["arcface", "dlib"])
@pytest.mark.parametrize("angle", [-35.0, 20.0, 50.0])
def test_chips_of_a_rotated_real_face_come_out_upright(real_face, template, angle):
    image, points = real_face
    rot_img, rot_pts = _rotate(image, points, angle)
    assert abs(abs(_eye_angle(rot_pts) - _eye_angle(points)) - abs(angle)) < 1.0  # really rotated
    (chip,), (m,) = align_faces(rot_img, [rot_pts], size=112, template=template)
    (ref,), _ = align_faces(image, [points], size=112, template=template)
    assert chip.shape == (112, 112, 3) and chip.dtype == np.uint8
    # the annotated eyes land on a horizontal line in the chip (the template's own eye line)
    in_chip = rot_pts @ m[:, :2].T + m[:, 2]
    target = 0.0 if template == "dlib" else _eye_angle_5(ARCFACE_112)
    assert abs(_eye_angle(in_chip) - target) < 1.0
    assert abs(target) < 1.0
    # the pixels agree: the chip of the rotated photo matches the chip of the upright photo up to
    # a rotation of less than 1 degree (ECC registration of the two chips' grey levels)
    g1, g2 = (cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32) for c in (ref, chip))
    warp = np.eye(2, 3, dtype=np.float32)
    _, warp = cv2.findTransformECC(g1, g2, warp, cv2.MOTION_EUCLIDEAN,
                                   (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6), None, 5)
    assert abs(np.degrees(np.arctan2(warp[1, 0], warp[0, 0]))) < 1.0
    # and differ from a chip left rotated by 3 degrees (the check can fail)
    bad = cv2.warpAffine(chip, cv2.getRotationMatrix2D((55.5, 55.5), 3.0, 1.0), (112, 112))
    g3 = cv2.cvtColor(bad, cv2.COLOR_RGB2GRAY).astype(np.float32)
    _, warp3 = cv2.findTransformECC(g1, g3, np.eye(2, 3, dtype=np.float32), cv2.MOTION_EUCLIDEAN,
                                    (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6), None, 5)
    assert abs(np.degrees(np.arctan2(warp3[1, 0], warp3[0, 0]))) > 2.0


def _eye_angle_5(five: np.ndarray) -> float:
    d = five[1] - five[0]
    return float(np.degrees(np.arctan2(d[1], d[0])))


def test_matrices_map_chips_back_to_the_photo(real_face):
    image, points = real_face
    (chip,), (m,) = align_faces(image, [points], size=224, template="arcface")
    back = cv2.invertAffineTransform(m)
    dst, _ = template_points("arcface", 224)
    # the template points, mapped back, land near the face's five points (least-squares fit residual)
    err = np.linalg.norm(dst @ back[:, :2].T + back[:, 2] - five_points(points), axis=1)
    eye = np.linalg.norm(points[45] - points[36])
    assert err.max() < 0.12 * eye
    # a chip pixel sampled back from the photo holds the same colour
    y, x = 80, 120
    px, py = back @ np.array([x, y, 1.0])
    assert np.abs(image[int(round(py)), int(round(px))].astype(int) - chip[y, x].astype(int)).max() < 40


def test_several_faces_and_bad_input(real_face):
    image, points = real_face
    chips, mats = align_faces(image, [points, points + 3.0], template="dlib", size=96)
    assert len(chips) == len(mats) == 2 and chips[0].shape == (96, 96, 3)
    np.testing.assert_allclose(mats[1][:, 2] - mats[0][:, 2], -mats[0][:, :2] @ [3.0, 3.0], atol=1e-6)
    assert align_faces(image, []) == ([], [])
    with pytest.raises(ValueError, match="unknown template"):
        align_faces(image, [points], template="mtcnn")
    with pytest.raises(ValueError, match="68 finite"):
        align_faces(image, [points[:5]])
