"""Tests of acrloss.losses against the ACR definition written out independently."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from acrloss.losses import ACRLoss, HeatmapMSE, L1Loss, L2Loss, get_loss

REPO = Path(__file__).resolve().parents[1]


def acr_reference(e: np.ndarray, phi: np.ndarray, lam: float) -> np.ndarray:
    """The ACR formula, straight from its definition, mean over the last axis."""
    a = np.abs(np.asarray(e, dtype=np.float64))
    phi = np.asarray(phi, dtype=np.float64)
    log_part = lam * np.log(1.0 + np.power(a, 2.0 - phi))
    quad_part = a * a + lam * math.log(2.0) - 1.0
    return np.where(a <= 1.0, log_part, quad_part).mean(axis=-1)


def packed(points: np.ndarray, phi: np.ndarray) -> np.ndarray:
    return np.concatenate([points, phi], axis=-1)


def acr_value(lam: float, e: float, phi: float) -> float:
    """Loss of a single coordinate with target e and prediction 0."""
    loss = ACRLoss(lambda_=lam, num_coords=1, dtype="float64")
    y_true = np.array([[e, phi]], dtype=np.float64)
    y_pred = np.zeros((1, 1), dtype=np.float64)
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


def gradient(loss, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """d loss / d y_pred on the active Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        var = tf.Variable(y_pred)
        with tf.GradientTape() as tape:
            value = loss(tf.constant(y_true), var)
        return np.asarray(tape.gradient(value, var))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda p: loss(y_true, p))(y_pred))
    if backend == "torch":
        import torch

        p = torch.tensor(y_pred, requires_grad=True)
        loss(torch.tensor(y_true), p).backward()
        return p.grad.numpy()
    pytest.skip(f"no gradient helper for backend {backend!r}")


# ----------------------------------------------------------------- known values
@pytest.mark.parametrize("lam", [1.0, 0.5, 2.0])
def test_known_points(lam):
    assert acr_value(lam, 0.5, 0.0) == pytest.approx(lam * math.log(1.25), rel=1e-6)
    assert acr_value(lam, 0.5, 1.0) == pytest.approx(lam * math.log(1.5), rel=1e-6)
    assert acr_value(lam, -0.5, 1.0) == pytest.approx(lam * math.log(1.5), rel=1e-6)
    # intermediate difficulty: 0.5 ** 1.5
    assert acr_value(lam, 0.5, 0.5) == pytest.approx(lam * math.log(1.0 + 0.5 ** 1.5), rel=1e-6)
    for phi in (0.0, 0.3, 1.0):  # Φ does not matter on the quadratic branch
        assert acr_value(lam, 2.0, phi) == pytest.approx(4.0 + lam * math.log(2.0) - 1.0, rel=1e-6)
        assert acr_value(lam, -3.0, phi) == pytest.approx(9.0 + lam * math.log(2.0) - 1.0, rel=1e-6)
    assert acr_value(lam, 0.0, 0.5) == 0.0


def test_offset_constant():
    assert ACRLoss(lambda_=1.7).offset == pytest.approx(1.7 * math.log(2.0) - 1.0)


@pytest.mark.parametrize("lam", [1.0, 0.25, 3.0])
@pytest.mark.parametrize("phi", [0.0, 0.5, 1.0])
def test_continuous_at_one(lam, phi):
    below = acr_value(lam, 1.0 - 1e-6, phi)
    above = acr_value(lam, 1.0 + 1e-6, phi)
    at = acr_value(lam, 1.0, phi)
    assert at == pytest.approx(lam * math.log(2.0), rel=1e-6)
    assert abs(below - above) < 1e-5
    assert abs(below - at) < 1e-5


def test_batch_matches_reference_and_reduction():
    rng = np.random.default_rng(0)
    n = 136
    points = rng.uniform(-0.5, 0.5, (5, n))
    pred = points + rng.normal(0.0, 0.7, (5, n))  # errors on both branches
    phi = rng.uniform(0.0, 1.0, (5, n))
    loss = ACRLoss(lambda_=1.3, num_coords=n, dtype="float64")
    per_sample = acr_reference(points - pred, phi, 1.3)
    value = float(keras.ops.convert_to_numpy(loss(packed(points, phi), pred)))
    assert value == pytest.approx(per_sample.mean(), rel=1e-6)
    # no reduction: one value per sample
    loss_none = ACRLoss(lambda_=1.3, num_coords=n, reduction=None, dtype="float64")
    values = keras.ops.convert_to_numpy(loss_none(packed(points, phi), pred))
    np.testing.assert_allclose(values, per_sample, rtol=1e-6)
    # sample weights
    w = np.array([1.0, 0.0, 2.0, 0.5, 0.0])
    weighted = float(keras.ops.convert_to_numpy(loss(packed(points, phi), pred, sample_weight=w)))
    assert weighted == pytest.approx((per_sample * w).sum() / len(w), rel=1e-6)


def test_float32_default_matches_reference():
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.5, 0.5, (3, 10)).astype("float32")
    pred = (points + rng.normal(0.0, 0.5, (3, 10))).astype("float32")
    phi = rng.uniform(0.0, 1.0, (3, 10)).astype("float32")
    value = float(keras.ops.convert_to_numpy(ACRLoss(num_coords=10)(packed(points, phi), pred)))
    assert value == pytest.approx(acr_reference(points - pred, phi, 1.0).mean(), rel=1e-5)


# ----------------------------------------------------------------- L2-like / L1-like
@pytest.mark.parametrize("e", [1e-3, 3e-3, 1e-2])
def test_phi0_is_l2_like_and_phi1_is_l1_like(e):
    assert acr_value(1.0, e, 0.0) / (e * e) == pytest.approx(1.0, abs=1e-3)
    assert acr_value(1.0, e, 1.0) / e == pytest.approx(1.0, abs=1e-2)
    # the hard coordinate is penalised much more for the same small error
    assert acr_value(1.0, e, 1.0) > 10 * acr_value(1.0, e, 0.0)


# ----------------------------------------------------------------- gradients
@pytest.mark.parametrize("err", [0.0, 1.0, -1.0, 1e-30, 0.5, 1e3, -1e4])
@pytest.mark.parametrize("phi", [0.0, 0.5, 1.0])
def test_gradients_finite(err, phi):
    loss = ACRLoss(num_coords=2)
    y_true = np.array([[err, 0.2, phi, phi]], dtype="float32")
    y_pred = np.array([[0.0, 0.2], ], dtype="float32")  # second coordinate exact (e = 0)
    g = gradient(loss, y_true, y_pred)
    assert g.shape == y_pred.shape
    assert np.all(np.isfinite(g)), g


def test_gradient_values():
    # d/dp of λ ln(1 + (t - p)^2) / n at Φ = 0, and of (t - p)^2 + C / n on the quadratic branch
    lam, n = 0.8, 2
    loss = ACRLoss(lambda_=lam, num_coords=n)
    t = np.array([[0.5, 2.0, 0.0, 0.0]], dtype="float32")
    p = np.zeros((1, 2), dtype="float32")
    g = gradient(loss, t, p)
    expected0 = -lam * 2 * 0.5 / (1 + 0.25) / n
    expected1 = -2 * 2.0 / n
    np.testing.assert_allclose(g[0], [expected0, expected1], rtol=1e-5)
    # Φ = 1: d/dp λ ln(1 + |t - p|) = -λ / (1 + |e|) for e > 0
    t1 = np.array([[0.5, 0.25, 1.0, 1.0]], dtype="float32")
    g1 = gradient(loss, t1, p)
    np.testing.assert_allclose(g1[0], [-lam / 1.5 / n, -lam / 1.25 / n], rtol=1e-5)


# ----------------------------------------------------------------- L2 / L1
def test_l2_l1_values_packed_and_plain():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(4, 6))
    pred = rng.normal(size=(4, 6))
    phi = rng.uniform(size=(4, 6))
    for cls, ref in ((L2Loss, np.square), (L1Loss, np.abs)):
        loss = cls(num_coords=6, dtype="float64")
        expected = ref(points - pred).mean()
        got_packed = float(keras.ops.convert_to_numpy(loss(packed(points, phi), pred)))
        got_plain = float(keras.ops.convert_to_numpy(loss(points, pred)))
        assert got_packed == pytest.approx(expected, rel=1e-6)
        assert got_plain == pytest.approx(expected, rel=1e-6)
    # a hand case: errors (1, -2) -> L2 = 2.5, L1 = 1.5
    y_true = np.array([[1.0, -2.0]])
    y_pred = np.zeros((1, 2))
    assert float(keras.ops.convert_to_numpy(L2Loss(num_coords=2)(y_true, y_pred))) == pytest.approx(2.5)
    assert float(keras.ops.convert_to_numpy(L1Loss(num_coords=2)(y_true, y_pred))) == pytest.approx(1.5)


def test_width_checks():
    with pytest.raises(ValueError, match="y_true"):
        ACRLoss(num_coords=4)(np.zeros((2, 4), "float32"), np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="y_pred"):
        L2Loss(num_coords=4)(np.zeros((2, 8), "float32"), np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="y_true"):
        L1Loss(num_coords=4)(np.zeros((2, 12), "float32"), np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError):
        ACRLoss(lambda_=0.0)
    with pytest.raises(ValueError, match="scale"):
        ACRLoss(scale=0.0)


@pytest.mark.parametrize("scale,lam", [(8.0, 1.0), (32.0, 4.0), (0.5, 2.0)])
def test_error_scale_is_acr_of_scaled_error(scale, lam):
    """ACR with scale s equals the reference formula on s·e: errors above 1/s switch to
    the quadratic branch, and λ then changes the shape, not only the size."""
    rng = np.random.default_rng(3)
    n = 12
    target = rng.uniform(-0.5, 0.5, (5, n))
    pred = target + rng.normal(0.0, 0.08, (5, n))
    phi = rng.uniform(0.0, 1.0, (5, n))
    loss = ACRLoss(lambda_=lam, num_coords=n, reduction=None, dtype="float64", scale=scale)
    got = keras.ops.convert_to_numpy(loss(packed(target, phi), pred))
    want = acr_reference(scale * (target - pred), phi, lam)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    if scale > 1:  # the test data really crosses |s·e| = 1
        assert (np.abs(scale * (target - pred)) > 1).any() and (np.abs(scale * (target - pred)) < 1).any()


def test_lambda_is_a_constant_factor_at_unit_scale():
    """With coordinates in [-0.5, 0.5] and scale 1 no error reaches the quadratic branch,
    so doubling λ doubles the loss (and Adam's update is unchanged)."""
    rng = np.random.default_rng(4)
    target = rng.uniform(-0.5, 0.5, (4, 10))
    pred = rng.uniform(-0.5, 0.5, (4, 10))
    phi = rng.uniform(0.0, 1.0, (4, 10))
    one, two = (keras.ops.convert_to_numpy(ACRLoss(lambda_=lam, num_coords=10, dtype="float64")(packed(target, phi), pred))
                for lam in (1.0, 2.0))
    np.testing.assert_allclose(two, 2.0 * one, rtol=1e-12)
    s_one, s_two = (keras.ops.convert_to_numpy(ACRLoss(lambda_=lam, num_coords=10, dtype="float64", scale=8.0)(packed(target, phi), pred))
                    for lam in (1.0, 2.0))
    assert abs(s_two - 2.0 * s_one) > 1e-3  # at scale 8 the quadratic branch does not scale with λ


# ----------------------------------------------------------------- config / factory
def test_config_round_trip():
    loss = ACRLoss(lambda_=0.6, num_coords=42, name="my_acr", scale=16.0)
    cfg = loss.get_config()
    assert cfg["lambda_"] == 0.6 and cfg["num_coords"] == 42 and cfg["scale"] == 16.0
    clone = ACRLoss.from_config(cfg)
    assert (clone.lambda_, clone.num_coords, clone.name, clone.scale) == (0.6, 42, "my_acr", 16.0)
    # through the Keras registry (as model saving does)
    ser = keras.saving.serialize_keras_object(loss)
    back = keras.saving.deserialize_keras_object(json.loads(json.dumps(ser)))
    assert isinstance(back, ACRLoss) and back.lambda_ == 0.6 and back.num_coords == 42
    for cls in (L2Loss, L1Loss):
        obj = cls(num_coords=10)
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert isinstance(again, cls) and again.num_coords == 10


def test_heatmap_mse_values():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, (2, 4, 4, 3)).astype(np.float32)
    p = rng.uniform(0, 1, (2, 4, 4, 3)).astype(np.float32)
    want = ((p - y) ** 2).reshape(2, -1).mean(axis=1).mean()
    assert float(HeatmapMSE()(y, p)) == pytest.approx(want, rel=1e-5)
    want_w = (((p - y) ** 2) * (1 + 4.0 * y)).reshape(2, -1).mean(axis=1).mean()
    assert float(HeatmapMSE(foreground_weight=4.0)(y, p)) == pytest.approx(want_w, rel=1e-5)
    assert float(HeatmapMSE()(y, y)) == 0.0
    with pytest.raises(ValueError, match="do not match"):
        HeatmapMSE()(y[:, :2], p)
    with pytest.raises(ValueError, match="foreground_weight"):
        HeatmapMSE(foreground_weight=-1)
    loss = HeatmapMSE(foreground_weight=3.0)
    assert HeatmapMSE.from_config(loss.get_config()).foreground_weight == 3.0
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss)).foreground_weight == 3.0


def test_get_loss():
    acr = get_loss("ACR", 20, lambda_=2.0)
    assert isinstance(acr, ACRLoss) and acr.lambda_ == 2.0 and acr.num_coords == 20
    assert get_loss("acr", 20, scale=8.0).scale == 8.0
    l2 = get_loss("l2", 20, lambda_=2.0, scale=8.0)  # lambda_ and scale accepted and ignored
    assert isinstance(l2, L2Loss) and l2.num_coords == 20
    assert isinstance(get_loss("l1", 20), L1Loss)
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("huber", 20)


# ----------------------------------------------------------------- jax backend
JAX_SCRIPT = r"""
import json, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
import jax
from acrloss.losses import ACRLoss, L2Loss
data = json.loads(sys.stdin.read())
yt = np.asarray(data["y_true"], dtype="float32")
yp = np.asarray(data["y_pred"], dtype="float32")
loss = ACRLoss(lambda_=data["lam"], num_coords=yp.shape[1])
value = float(loss(yt, yp))
grad = np.asarray(jax.grad(lambda p: loss(yt, p))(yp))
l2 = float(L2Loss(num_coords=yp.shape[1])(yt, yp))
print(json.dumps({"value": value, "l2": l2, "grad_finite": bool(np.all(np.isfinite(grad)))}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_runs_under_jax_backend():
    rng = np.random.default_rng(3)
    points = rng.uniform(-0.5, 0.5, (3, 8)).astype("float32")
    pred = (points + rng.normal(0.0, 0.8, (3, 8))).astype("float32")
    pred[0, 0] = points[0, 0]  # an exact coordinate (e = 0)
    phi = rng.uniform(0.0, 1.0, (3, 8)).astype("float32")
    lam = 1.4
    payload = json.dumps({"y_true": packed(points, phi).tolist(), "y_pred": pred.tolist(), "lam": lam})
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT], input=payload, env=env,
                          capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = acr_reference(points.astype(np.float64) - pred, phi, lam).mean()
    assert out["value"] == pytest.approx(expected, rel=1e-5)
    here = float(keras.ops.convert_to_numpy(ACRLoss(lambda_=lam, num_coords=8)(packed(points, phi), pred)))
    assert out["value"] == pytest.approx(here, rel=1e-5)
    assert out["l2"] == pytest.approx(np.square(points.astype(np.float64) - pred).mean(), rel=1e-5)
    assert out["grad_finite"]
