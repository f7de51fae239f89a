"""Tests of acrloss.metrics against hand-computed cases."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from acrloss.metrics import NMEMetric, auc, ced_curve, failure_rate, nme, plot_ced, summarize


def two_faces() -> tuple[np.ndarray, np.ndarray]:
    """Two 4-point faces; normalization points (0, 1) are 10 and 20 pixels apart."""
    gt = np.array(
        [
            [[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [5.0, 10.0]],
            [[100.0, 50.0], [100.0, 70.0], [90.0, 60.0], [110.0, 60.0]],
        ]
    )
    pred = gt.copy()
    pred[0] += [3.0, 4.0]  # every point 5 px off -> 5 / 10 = 0.5
    pred[1, 0] += [0.0, 1.0]  # two points 1 px off -> mean 0.5 px / 20 = 0.025
    pred[1, 3] += [-1.0, 0.0]
    return pred, gt


# ----------------------------------------------------------------- NME
def test_nme_hand_case():
    pred, gt = two_faces()
    np.testing.assert_allclose(nme(pred, gt, norm_points=(0, 1)), [0.5, 0.025])
    # flattened input gives the same
    np.testing.assert_allclose(nme(pred.reshape(2, -1), gt.reshape(2, -1), (0, 1)), [0.5, 0.025])
    # perfect prediction
    np.testing.assert_array_equal(nme(gt, gt, (0, 1)), [0.0, 0.0])


def test_nme_zero_distance_raises():
    pred, gt = two_faces()
    gt[1, 1] = gt[1, 0]
    with pytest.raises(ValueError, match="zero normalization distance"):
        nme(pred, gt, (0, 1))


def test_nme_shape_mismatch_raises():
    pred, gt = two_faces()
    with pytest.raises(ValueError):
        nme(pred[:, :3], gt, (0, 1))


# ----------------------------------------------------------------- FR / AUC
def test_failure_rate():
    assert failure_rate(np.array([0.05, 0.10, 0.15, 0.20]), 0.10) == pytest.approx(0.5)
    assert failure_rate(np.array([0.01, 0.02]), 0.10) == 0.0
    assert failure_rate(np.array([0.3]), 0.08) == 1.0


def test_auc_extremes():
    assert auc(np.zeros(7), 0.10) == pytest.approx(1.0)
    assert auc(np.array([0.11, 0.5, 3.0]), 0.10) == pytest.approx(0.0)


def test_auc_known_values():
    # one face at 0.04: CED jumps to 1 at 0.04 -> area (0.10 - 0.04) / 0.10 = 0.6
    assert auc(np.array([0.04]), 0.10) == pytest.approx(0.6, abs=1e-3)
    # half the faces at 0, half failed -> 0.5
    assert auc(np.array([0.0, 0.0, 0.2, 0.3]), 0.10) == pytest.approx(0.5, abs=1e-3)
    # errors spread uniformly on [0, T]: CED(x) = x / T -> 1/2
    assert auc(np.linspace(0.0, 0.10, 10001), 0.10) == pytest.approx(0.5, abs=1e-3)
    # uniformly on [0, 2T]: CED(x) = x / (2T) -> 1/4
    assert auc(np.linspace(0.0, 0.20, 20001), 0.10) == pytest.approx(0.25, abs=1e-3)
    # uniformly on [0, 0.08] with threshold 0.08
    assert auc(np.random.default_rng(0).uniform(0, 0.08, 20000), 0.08) == pytest.approx(0.5, abs=1e-2)


def test_ced_curve():
    xs, ys = ced_curve(np.array([0.02, 0.05, 0.2]), 0.10, 1e-3)
    assert xs[0] == 0.0 and xs[-1] == pytest.approx(0.10)
    assert np.allclose(np.diff(xs), 1e-3)
    assert np.all(np.diff(ys) >= 0)
    assert ys[0] == 0.0
    assert ys[np.searchsorted(xs, 0.03)] == pytest.approx(1 / 3)
    assert ys[-1] == pytest.approx(2 / 3)


def test_summarize():
    nmes = np.array([0.02, 0.04, 0.06, 0.12])
    s = summarize(nmes, 0.10)
    assert set(s) == {"n", "nme", "fr10", "auc10"}
    assert s["n"] == 4
    assert s["nme"] == pytest.approx(6.0)  # percent
    assert s["fr10"] == pytest.approx(25.0)  # percent
    # CED steps: 1/4 from 0.02, 1/2 from 0.04, 3/4 from 0.06 (to 0.10)
    expected_auc = (0.25 * 0.02 + 0.5 * 0.02 + 0.75 * 0.04) / 0.10
    assert s["auc10"] == pytest.approx(expected_auc, abs=1e-3)
    s8 = summarize(nmes, 0.08)
    assert set(s8) == {"n", "nme", "fr8", "auc8"}
    assert s8["fr8"] == pytest.approx(25.0)


def test_plot_ced(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "plots" / "ced.png"
    out = plot_ced({"acr": rng.uniform(0, 0.08, 50), "l2": rng.uniform(0, 0.12, 50)}, path)
    assert out == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["ced.png"]  # no temp file left


# ----------------------------------------------------------------- Keras metric
def to_normalized(points: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Pixel points (M, N, 2) -> flattened normalized crop coordinates (M, 2N)."""
    n = (points + 0.5) / side[:, None, None] - 0.5
    return n.reshape(points.shape[0], -1).astype("float32")


def test_nme_metric_equals_numpy():
    rng = np.random.default_rng(2)
    m, n_pts = 10, 68
    gt = rng.uniform(50.0, 250.0, (m, n_pts, 2))
    pred = gt + rng.normal(0.0, 3.0, (m, n_pts, 2))
    reference = nme(pred, gt, (36, 45)).mean() * 100.0

    # same crop per face (any per-face similarity keeps the NME)
    side = rng.uniform(200.0, 400.0, m)
    y_true = to_normalized(gt, side)
    y_pred = to_normalized(pred, side)
    phi = rng.uniform(0, 1, y_true.shape).astype("float32")

    metric = NMEMetric(num_points=68, norm_points=(36, 45))
    metric.update_state(np.concatenate([y_true[:4], phi[:4]], axis=1), y_pred[:4])  # packed
    metric.update_state(y_true[4:], y_pred[4:])  # plain
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx(reference, rel=1e-4)

    metric.reset_state()
    assert float(keras.ops.convert_to_numpy(metric.result())) == 0.0
    weights = np.zeros(m)
    weights[3] = 1.0
    metric.update_state(y_true, y_pred, sample_weight=weights)
    single = nme(pred[3:4], gt[3:4], (36, 45))[0] * 100.0
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx(single, rel=1e-4)


def test_nme_metric_hand_case_and_zero_distance():
    pred, gt = two_faces()
    metric = NMEMetric(num_points=4, norm_points=(0, 1))
    metric.update_state(gt.reshape(2, -1).astype("float32"), pred.reshape(2, -1).astype("float32"))
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx((50.0 + 2.5) / 2, rel=1e-6)
    # a face with zero normalization distance is left out instead of producing inf
    gt_bad = gt.copy()
    gt_bad[1, 1] = gt_bad[1, 0]
    metric.reset_state()
    metric.update_state(gt_bad.reshape(2, -1).astype("float32"), pred.reshape(2, -1).astype("float32"))
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx(50.0, rel=1e-6)


def test_nme_metric_config_round_trip():
    metric = NMEMetric(num_points=29, norm_points=(8, 9), name="val_nme")
    cfg = metric.get_config()
    assert cfg["num_points"] == 29 and tuple(cfg["norm_points"]) == (8, 9)
    clone = NMEMetric.from_config(cfg)
    assert clone.num_points == 29 and clone.norm_points == (8, 9) and clone.name == "val_nme"
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(back, NMEMetric) and back.norm_points == (8, 9)
    with pytest.raises(ValueError):
        NMEMetric(num_points=68, norm_points=(36, 68))
    with pytest.raises(ValueError):
        metric.update_state(np.zeros((2, 57), "float32"), np.zeros((2, 58), "float32"))
