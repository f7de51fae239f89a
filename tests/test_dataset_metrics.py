"""NME with each dataset's normalization on hand-made faces (issue 18), the training-time
metrics with a point pair and with the box, and the visible / occluded point reports."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from acrloss.config import AFLW_SPEC, COFW_SPEC, W300_SPEC, WFLW_SPEC, user_spec
from acrloss.data_prep.datasets import Sample
from acrloss.dataset_metrics import face_nmes, subset_report
from acrloss.metrics import NMEMetric, nme


def hand_made(num_points: int, a: int, b: int, dist: float = 10.0) -> np.ndarray:
    """A face whose points lie on a 3 x 4 px grid far from each other, except that points
    ``a`` and ``b`` are exactly ``dist`` apart (every other pair is farther)."""
    rng = np.random.default_rng(num_points)
    pts = np.stack([rng.permutation(num_points) * 7.0 + 100.0, rng.permutation(num_points) * 9.0 + 50.0], axis=1)
    pts[b] = pts[a] + [6.0, 8.0] * np.array(dist / 10.0)
    return pts


@pytest.mark.parametrize("spec, pair", [(WFLW_SPEC, (60, 72)), (COFW_SPEC, (8, 9)), (W300_SPEC, (36, 45))],
                         ids=["wflw", "cofw", "300w"])
def test_nme_uses_the_dataset_eye_corners(spec, pair):
    gt = hand_made(spec.num_points, *pair)
    pred = gt + [3.0, 4.0]  # every point 5 px off
    samples = [Sample("face.jpg", gt)]
    assert face_nmes(pred[None], samples, spec)[0] == pytest.approx(5.0 / 10.0)
    # any other pair gives another value: the test would catch wrong indices
    other = tuple(i for i in range(spec.num_points) if i not in pair)[:2]
    assert nme(pred[None], gt[None], other)[0] != pytest.approx(0.5)


def test_aflw_nme_uses_the_annotated_box_size_and_falls_back_to_the_landmark_box():
    gt = hand_made(19, 6, 11)
    pred = gt + [3.0, 4.0]
    assert face_nmes(pred[None], [Sample("a.jpg", gt, norm=50.0)], AFLW_SPEC)[0] == pytest.approx(5.0 / 50.0)
    wh = gt.max(0) - gt.min(0)
    expected = 5.0 / np.sqrt(wh[0] * wh[1])
    assert face_nmes(pred[None], [Sample("a.jpg", gt)], AFLW_SPEC)[0] == pytest.approx(expected)
    summary, _, _ = subset_report(pred[None], [Sample("a.jpg", gt, norm=50.0)], AFLW_SPEC)
    assert summary["nme"] == pytest.approx(10.0) and "fr7" in summary and "auc7" in summary  # AFLW: 7 % threshold


def test_wrong_point_count_is_a_clear_error():
    gt = hand_made(68, 36, 45)
    with pytest.raises(ValueError, match=r"68 points, but wflw has 98 \(wrong point count\)"):
        face_nmes(gt[None], [Sample("x.jpg", gt)], WFLW_SPEC)


def test_visible_and_occluded_point_reports():
    gt = hand_made(29, 8, 9)
    pred = gt.copy()
    visible = np.ones(29, bool)
    visible[[0, 5, 20]] = False
    pred[~visible] += [30.0, 40.0]  # only the occluded points are wrong, by 50 px
    summary, errors, parts = subset_report(pred[None], [Sample("c.jpg", gt, visible=visible)], COFW_SPEC)
    assert errors[0] == pytest.approx(3 * 50.0 / 29 / 10.0)
    assert parts["visible"]["nme"] == pytest.approx(0.0)
    assert parts["occluded"]["nme"] == pytest.approx(500.0)  # 50 px / 10 px, in percent
    _, _, none = subset_report(pred[None], [Sample("c.jpg", gt)], COFW_SPEC)
    assert none == {}  # no occlusion labels, no point subsets


@pytest.mark.parametrize("norm", [(60, 72), "box"])
def test_keras_metric_matches_numpy_for_pairs_and_box(norm):
    rng = np.random.default_rng(0)
    gt = rng.uniform(-0.4, 0.4, (4, 98, 2))
    pred = gt + rng.normal(0, 0.01, gt.shape)
    metric = NMEMetric(98, norm)
    metric.update_state(gt.reshape(4, -1).astype("float32"), pred.reshape(4, -1).astype("float32"))
    expected = nme(pred, gt, norm).mean() * 100
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx(expected, rel=1e-4)
    assert NMEMetric.from_config(metric.get_config()).norm_points == metric.norm_points


def test_user_spec_box_normalization_in_reports():
    spec = user_spec(5)
    gt = np.array([[0, 0], [10, 0], [0, 40], [10, 40], [5, 20]], float)
    pred = gt + [0.0, 2.0]
    assert face_nmes(pred[None], [Sample("u.jpg", gt)], spec)[0] == pytest.approx(2.0 / 20.0)  # sqrt(10 * 40)
