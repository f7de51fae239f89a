"""Per-dataset specs (issue 18): mirror maps are involutions that swap each dataset's outer
eye corners, and flipping a real sample face with its map gives back a face in the same
scheme; user specs of any point count."""
from __future__ import annotations

import numpy as np
import pytest

from dataset_fixtures import sample_faces

from acrloss.config import (AFLW_SPEC, COFW68_SPEC, COFW_SPEC, DATASET_SPECS, W300_SPEC, WFLW_SPEC, DatasetName, DatasetSpec,
                            check_mirror, dataset_spec, user_spec)
from acrloss.data_prep.augment import flip_matrix
from acrloss.data_prep.crop import apply_affine

SPECS = {"300w": W300_SPEC, "wflw": WFLW_SPEC, "cofw": COFW_SPEC, "aflw": AFLW_SPEC}


@pytest.mark.parametrize("spec", [W300_SPEC, WFLW_SPEC, COFW_SPEC, AFLW_SPEC, COFW68_SPEC], ids=lambda s: s.name)
def test_mirror_twice_is_identity_and_swaps_the_eye_corners(spec):
    m = np.asarray(spec.mirror)
    assert len(m) == spec.num_points
    assert np.array_equal(m[m], np.arange(spec.num_points))
    left, right = spec.eye_corners
    assert m[left] == right and m[right] == left
    # the documented conventions
    expected = {"300w": (36, 45), "wflw": (60, 72), "cofw": (8, 9), "aflw": (6, 11), "cofw68": (36, 45)}[spec.name]
    assert spec.eye_corners == expected
    if spec.name != "aflw":
        assert spec.norm_points == expected  # NME by the outer eye corners (mmpose's keypoint_indices)
    else:
        assert spec.norm_points == "box" and spec.failure_threshold == 0.07


def test_spec_table_and_point_counts():
    counts = {DatasetName.w300: 68, DatasetName.wflw: 98, DatasetName.cofw: 29, DatasetName.aflw: 19, DatasetName.cofw68: 68}
    for name, n in counts.items():
        assert dataset_spec(name).num_points == n
        assert dataset_spec(name.value) is DATASET_SPECS[name]


def pair_height_gap(points: np.ndarray, mirror, eye_corners) -> float:
    """Largest vertical offset between a point and its mirror partner, in eye-corner
    distances, after rotating the face so that its eye corners are level: mirror partners
    of an upright face sit at the same height, whatever the yaw."""
    left, right = eye_corners
    v = points[right] - points[left]
    angle = -np.arctan2(v[1], v[0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    q = points @ rot.T
    m = np.asarray(mirror)
    return float(np.abs(q[:, 1] - q[m, 1]).max() / np.linalg.norm(v))


@pytest.mark.parametrize("dataset", ["300w", "wflw", "cofw", "aflw"])
def test_mirror_map_pairs_real_points_at_the_same_height(dataset):
    """On every real sample face each mirror pair lies at one height (<= 0.25 eye distances,
    seen: <= 0.16); a map with one wrong pair (an eye corner paired with the farthest point)
    does not, so the test would catch a wrong map."""
    spec = SPECS[dataset]
    left, right = spec.eye_corners
    for face in sample_faces(dataset):
        pts = face["points"]
        assert pair_height_gap(pts, spec.mirror, spec.eye_corners) < 0.25, (dataset, face["id"])
        # the pipeline's flip: the crop-space mirror matrix, then the labels through the mirror map
        flipped = apply_affine(flip_matrix(2 * int(pts[:, 0].max()) + 10), pts)[np.asarray(spec.mirror)]
        assert np.sign(flipped[right, 0] - flipped[left, 0]) == np.sign(pts[right, 0] - pts[left, 0])  # left stays left
        paired = [i for i in range(spec.num_points) if spec.mirror[i] != i and i not in (left, right)]
        far = paired[int(np.argmax(np.abs(pts[paired, 1] - pts[left, 1])))]
        wrong = list(spec.mirror)
        a, b = wrong[left], wrong[far]  # re-pair: left <-> far, their old partners with each other
        wrong[left], wrong[far], wrong[a], wrong[b] = far, left, b, a
        assert np.array_equal(np.asarray(wrong)[wrong], np.arange(spec.num_points))
        assert pair_height_gap(pts, wrong, spec.eye_corners) > 0.5


def test_bad_mirror_maps_and_specs_are_refused():
    with pytest.raises(ValueError, match="not its own inverse"):
        check_mirror([1, 2, 0], 3)
    with pytest.raises(ValueError, match="permutation of 0..3"):
        check_mirror([0, 1, 1, 3], 4)
    with pytest.raises(ValueError, match="norm_points"):
        DatasetSpec("x", 5, None, (0, 7), "bad")


def test_user_spec_any_point_count():
    s = user_spec(5, mirror=[1, 0, 2, 4, 3], norm_points=[0, 1])
    assert s.num_points == 5 and s.mirror == (1, 0, 2, 4, 3) and s.norm_points == (0, 1)
    none = user_spec(7)
    assert none.mirror is None and none.norm_points == "box"  # no map: flips off; box normalization
    assert user_spec(68).mirror == W300_SPEC.mirror  # 68 points default to the 300-W scheme
    assert user_spec(68, mirror="none").mirror is None
    with pytest.raises(ValueError, match="permutation"):
        user_spec(5, mirror=[1, 0, 2])
