"""Head pose (acrloss.pose): known angles recovered from synthetic projections; real-face checks."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from acrloss.config import W300_SPEC
from acrloss.pose import FACE_3D_68, HeadPose, angles_from_matrix, camera_matrix, estimate_pose, rotation_matrix

ANGLES = list(itertools.product((-45.0, -20.0, 0.0, 30.0, 50.0), (-25.0, 0.0, 20.0), (-30.0, 0.0, 15.0)))


def _project(yaw, pitch, roll, size=(640, 480), distance=700.0, shift=(0.0, 0.0)):
    pose = HeadPose(0, 0, 0, rotation_matrix(yaw, pitch, roll), np.array([shift[0], shift[1], distance]),
                    camera_matrix(size), 0.0)
    return pose.project(FACE_3D_68)


def test_rotation_matrix_and_angles_round_trip():
    for yaw, pitch, roll in ANGLES:
        r = rotation_matrix(yaw, pitch, roll)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(angles_from_matrix(r), (yaw, pitch, roll), atol=1e-9)


@pytest.mark.parametrize("yaw,pitch,roll", ANGLES)
def test_pose_of_synthetic_projections_is_recovered_within_2_degrees(yaw, pitch, roll):
    rng = np.random.default_rng(int(abs(yaw * 100 + pitch * 10 + roll)))
    pts = _project(yaw, pitch, roll, shift=(rng.uniform(-80, 80), rng.uniform(-60, 60)))
    pts = pts + rng.normal(0, 0.5, pts.shape)  # half-pixel landmark noise, face ~200 px
    est = estimate_pose(pts, (640, 480))
    assert abs(est.yaw - yaw) < 2 and abs(est.pitch - pitch) < 2 and abs(est.roll - roll) < 2, (est.yaw, est.pitch, est.roll)
    assert est.reprojection_error < 1.5
    np.testing.assert_allclose(est.project(FACE_3D_68), pts, atol=3.0)


def test_angle_signs_follow_the_documented_convention():
    frontal = _project(0, 0, 0)
    nose_dx = lambda p: p[30, 0] - (p[36, 0] + p[45, 0]) / 2  # noqa: E731
    assert abs(nose_dx(frontal)) < 0.5
    assert nose_dx(_project(30, 0, 0)) > 10  # yaw > 0: the nose moves to the image right
    up = _project(0, 20, 0)
    nose_dy = lambda p: p[30, 1] - (p[36, 1] + p[45, 1]) / 2  # noqa: E731
    assert nose_dy(up) < nose_dy(frontal) - 10  # pitch > 0: chin up, the nose tip rises towards the eyes
    cw = _project(0, 0, 20)
    assert cw[45, 1] > cw[36, 1] + 10  # roll > 0: clockwise, the image-right eye goes down (y down)


def test_generic_face_is_symmetric_and_the_nose_points_at_the_camera():
    mirrored = FACE_3D_68[list(W300_SPEC.mirror)] * [-1, 1, 1]
    np.testing.assert_allclose(mirrored, FACE_3D_68, atol=0.02)
    assert FACE_3D_68[30, 2] < FACE_3D_68[36, 2] - 20  # nose tip nearer than the eye corners
    np.testing.assert_allclose(np.linalg.norm(FACE_3D_68[45] - FACE_3D_68[36]), 90.0, atol=0.05)


def test_real_faces_mirrored_give_opposite_yaw_and_roll(w300_common):
    """On real annotated faces, mirroring the photo flips yaw and roll and keeps pitch."""
    from acrloss.data_prep.images import read_image

    yaws = []
    for s in w300_common[::60]:
        h, w = read_image(s.image_path).shape[:2]
        pose = estimate_pose(s.points, (w, h))
        mirrored = s.points[list(W300_SPEC.mirror)].copy()
        mirrored[:, 0] = (w - 1) - mirrored[:, 0]
        mpose = estimate_pose(mirrored, (w, h))
        assert abs(mpose.yaw + pose.yaw) < 2.0 and abs(mpose.roll + pose.roll) < 2.0
        assert abs(mpose.pitch - pose.pitch) < 2.0
        assert abs(pose.yaw) < 80 and abs(pose.pitch) < 60
        assert pose.reprojection_error < 0.12 * np.linalg.norm(s.points[45] - s.points[36])
        yaws.append(pose.yaw)
    assert np.ptp(yaws) > 10  # the faces are not all alike: real spread of poses


def test_bad_input():
    with pytest.raises(ValueError, match="68 landmarks"):
        estimate_pose(np.zeros((5, 2)), (640, 480))
    with pytest.raises(ValueError, match="NaN"):
        estimate_pose(np.full((68, 2), np.nan), (640, 480))
    with pytest.raises(ValueError, match="positive"):
        camera_matrix((0, 480))


@pytest.mark.slow
def test_face_aligner_returns_pose_and_draw_landmarks_draws_axes(w300_common):
    from acrloss.align import FaceAligner, draw_landmarks
    from acrloss.data_prep.crop import face_box
    from acrloss.data_prep.images import read_image

    s = w300_common[0]
    image = read_image(s.image_path)
    aligner = FaceAligner()
    faces, poses = aligner.get_landmarks(image, boxes=[face_box(s.points)], calibrate=False, return_pose=True)
    faces2, boxes, scores, poses2 = aligner.get_landmarks(image, boxes=[face_box(s.points)], calibrate=False,
                                                          return_boxes=True, return_pose=True)
    assert len(poses) == len(faces) == 1 and len(poses2) == 1 and len(boxes) == 1
    ref = estimate_pose(faces[0], (image.shape[1], image.shape[0]))
    assert isinstance(poses[0], HeadPose)
    np.testing.assert_allclose([poses[0].yaw, poses[0].pitch, poses[0].roll], [ref.yaw, ref.pitch, ref.roll])
    gt = estimate_pose(s.points, (image.shape[1], image.shape[0]))
    assert abs(poses[0].yaw - gt.yaw) < 10 and abs(poses[0].roll - gt.roll) < 5
    plain = draw_landmarks(image, faces)
    with_axes = draw_landmarks(image, faces, poses=poses)
    changed = np.any(plain != with_axes, axis=2)
    assert changed.sum() > 50
    ends = poses[0].axes()
    x, y = np.round(ends[1]).astype(int)
    if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
        assert changed[max(0, y - 3): y + 4, max(0, x - 3): x + 4].any()  # the x axis is drawn where projected
