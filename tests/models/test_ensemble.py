"""Ensembles (acrloss.models.ensemble): the average and disagreement against the members'
own outputs, members of different input sizes, .h5 round trips, members kept in inference
mode, validation errors, the predictor path, and the JAX backend."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from acrloss.models import build_ensemble, build_musica, build_regressor, is_ensemble, load_model
from acrloss.models.ensemble import check_point_weights, region_point_weights
from acrloss.predictor import LandmarkPredictor
from tests.models.random_weights import randomize

RNG = np.random.default_rng(0)


def members(num_points: int = 68):
    """A tiny MuSiCa cascade at 32 px and a tiny MobileNetV2 regressor at 48 px (random weights)."""
    cascade = build_musica(RNG.uniform(-0.3, 0.3, 2 * num_points).astype("float32"), input_size=32,
                           num_points=num_points, stage_levels=(1, 0), stage_points=("all", "all"), patch_size=4,
                           channels=(4, 8), centre=2, gate_units=4, patch_units=4, hidden_units=16)
    regressor = randomize(build_regressor("mnv2", num_points, input_size=48, alpha=0.35), seed=1)
    return cascade, regressor


def crops(n: int, size: int) -> np.ndarray:
    return RNG.uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_average_and_disagreement_match_the_members():
    cascade, regressor = members()
    model = build_ensemble([cascade, regressor], [0.7, 0.3])
    assert tuple(model.input_shape) == (None, 48, 48, 3)  # the larger member's input
    x = crops(3, 48)
    out = model(x)
    small = np.asarray(keras.layers.Resizing(32, 32, interpolation="bilinear")(x))
    a = np.asarray(cascade(small, training=False)["landmarks"])
    b = np.asarray(regressor(x, training=False)).reshape(3, -1)
    np.testing.assert_allclose(np.asarray(out["members"]), np.stack([a, b], axis=1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["landmarks"]), 0.7 * a + 0.3 * b, atol=1e-5)
    mean = 0.7 * a + 0.3 * b
    dist = lambda p: np.linalg.norm((p - mean).reshape(3, -1, 2), axis=-1).mean(axis=1)  # noqa: E731
    np.testing.assert_allclose(np.asarray(out["disagreement"]), 0.7 * dist(a) + 0.3 * dist(b), atol=1e-5)
    assert np.all(np.asarray(out["disagreement"]) > 0)
    assert is_ensemble(model) and not is_ensemble(regressor)


def test_per_point_weights_mix_each_point_by_its_own_column(tmp_path):
    cascade, regressor = members()
    rows = region_point_weights([0.6, 0.4], {"jaw": [0.2, 0.8], "eyes": [0.9, 0.1]})
    assert rows[0][0] == 0.2 and rows[0][40] == 0.9 and rows[0][60] == 0.6 and rows[1][16] == 0.8
    model = build_ensemble([cascade, regressor], rows)
    x = crops(3, 48)
    out = model(x)
    stacked = np.asarray(out["members"]).reshape(3, 2, 68, 2)
    w = np.asarray(rows)[None, :, :, None]
    expected = (stacked * w).sum(axis=1)
    np.testing.assert_allclose(np.asarray(out["landmarks"]).reshape(3, 68, 2), expected, atol=1e-5)
    dist = np.linalg.norm(stacked - expected[:, None], axis=-1)  # (B, K, N)
    np.testing.assert_allclose(np.asarray(out["disagreement"]), (dist * w[..., 0]).sum(axis=1).mean(axis=1), atol=1e-5)
    flat = build_ensemble([cascade, regressor], [0.6, 0.4])  # the same weight on every point: the plain ensemble
    same = build_ensemble([cascade, regressor], region_point_weights([0.6, 0.4], {}))
    for key in ("landmarks", "disagreement"):
        np.testing.assert_allclose(np.asarray(same(x)[key]), np.asarray(flat(x)[key]), atol=1e-5)
    model.save(tmp_path / "regions.h5")
    loaded = load_model(tmp_path / "regions.h5")
    np.testing.assert_allclose(np.asarray(loaded(x)["landmarks"]), np.asarray(out["landmarks"]), atol=1e-6)
    assert loaded.get_layer("average").member_weights == rows


def test_anchor_gate_moves_the_weight_to_the_anchor_by_its_distance(tmp_path):
    cascade, regressor = members()
    x = crops(4, 48)
    plain = build_ensemble([cascade, regressor], [0.7, 0.3])
    out = plain(x)
    stacked = np.asarray(out["members"]).reshape(4, 2, 68, 2)
    gap = np.linalg.norm(stacked[:, 1] - stacked[:, 0], axis=-1).mean(axis=1)  # anchor vs the other member
    assert np.all(gap > 0)
    never = build_ensemble([cascade, regressor], [0.7, 0.3], anchor_gate={"member": 1, "low": 10.0, "high": 20.0})
    np.testing.assert_allclose(np.asarray(never(x)["landmarks"]), np.asarray(out["landmarks"]), atol=1e-5)
    always = build_ensemble([cascade, regressor], [0.7, 0.3], anchor_gate={"member": 1, "low": 0.0, "high": 1e-6})
    np.testing.assert_allclose(np.asarray(always(x)["landmarks"]), stacked[:, 1].reshape(4, -1), atol=1e-5)
    low, high = float(np.min(gap)), float(np.max(gap))  # the nearest face keeps its weights, the farthest is the anchor's
    gated = build_ensemble([cascade, regressor], [0.7, 0.3], anchor_gate={"member": 1, "low": low, "high": high})
    share = np.clip((gap - low) / (high - low), 0, 1)[:, None, None]
    w_anchor = 0.3 + 0.7 * share
    expected = (1 - w_anchor) * stacked[:, 0] + w_anchor * stacked[:, 1]
    got = np.asarray(gated(x)["landmarks"]).reshape(4, 68, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert share.min() == pytest.approx(0.0) and share.max() == pytest.approx(1.0)
    assert np.ptp(share) == pytest.approx(1.0) and len(np.unique(share.round(6))) >= 3  # an in-between face too
    gated.save(tmp_path / "gated.h5")
    loaded = load_model(tmp_path / "gated.h5")
    assert loaded.get_layer("average").anchor_gate == {"member": 1, "low": low, "high": high}
    np.testing.assert_allclose(np.asarray(loaded(x)["landmarks"]).reshape(4, 68, 2), got, atol=1e-6)


@pytest.mark.parametrize("gate, message", [
    ({"member": 2, "low": 0.0, "high": 1.0}, "member index 0..1"),
    ({"member": 0, "low": 0.5, "high": 0.5}, "0 <= low < high"),
    ({"member": 0, "low": -1.0, "high": 0.5}, "0 <= low < high"),
    ({"member": 0, "low": 0.1}, "keys member, low, high"),
])
def test_bad_anchor_gates_are_errors(gate, message):
    with pytest.raises(ValueError, match=message):
        build_ensemble(list(members()), [0.5, 0.5], anchor_gate=gate)


@pytest.mark.parametrize("call, message", [
    (lambda: region_point_weights([0.6, 0.4], {"ears": [0.5, 0.5]}), "unknown region 'ears'"),
    (lambda: region_point_weights([0.6, 0.4], {"jaw": [0.5, 0.6]}), "sum to 1"),
    (lambda: region_point_weights([0.6, 0.4], {"jaw": [0.5, 0.5]}, num_points=98), "68-point"),
    (lambda: check_point_weights([[0.5, 0.5], [0.5, 0.6]], 2), "point 1's weights must sum to 1"),
    (lambda: check_point_weights([[0.5, 0.5], [0.5]], 2), "one weight per point"),
    (lambda: check_point_weights([[1.0, 1.0]], 2), "2 members need 2 rows"),
    (lambda: build_ensemble(list(members()), [[0.5] * 5, [0.5] * 5]), "point weights for 5 points"),
])
def test_bad_point_weights_are_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_h5_round_trip_and_members_stay_in_inference_mode(tmp_path):
    cascade, regressor = members()
    model = build_ensemble([cascade, regressor], [0.5, 0.5])
    before = {w.path: np.asarray(w).copy() for w in model.weights}
    x = crops(4, 48)
    y = np.asarray(model(x)["landmarks"])  # a bare call must not update batch-norm statistics
    for w in model.weights:
        np.testing.assert_array_equal(np.asarray(w), before[w.path], err_msg=w.path)
    model.save(tmp_path / "ens.h5")
    loaded = load_model(tmp_path / "ens.h5")
    np.testing.assert_allclose(np.asarray(loaded(x)["landmarks"]), y, atol=1e-6)
    assert loaded.get_layer("average").member_weights == [0.5, 0.5]


def test_the_predictor_runs_an_ensemble_checkpoint(tmp_path):
    cascade, regressor = members()
    model = build_ensemble([cascade, regressor], [0.6, 0.4])
    model.save(tmp_path / "ens.h5")
    predictor = LandmarkPredictor(str(tmp_path / "ens.h5"))
    assert predictor.input_size == 48 and predictor.num_points == 68
    x = crops(2, 48)
    np.testing.assert_allclose(predictor.predict_crops(x).reshape(2, -1), np.asarray(model(x)["landmarks"]), atol=1e-5)


def test_members_of_the_same_name_are_kept_apart(tmp_path):
    _, regressor = members()
    other = randomize(build_regressor("mnv2", 68, input_size=48, alpha=0.35), seed=2)
    assert other.name == regressor.name
    model = build_ensemble([regressor, other], [0.5, 0.5])
    x = crops(2, 48)
    stacked = np.asarray(model(x)["members"])
    np.testing.assert_allclose(stacked[:, 0], np.asarray(regressor(x, training=False)).reshape(2, -1), atol=1e-5)
    np.testing.assert_allclose(stacked[:, 1], np.asarray(other(x, training=False)).reshape(2, -1), atol=1e-5)
    model.save(tmp_path / "two.h5")
    np.testing.assert_allclose(np.asarray(load_model(tmp_path / "two.h5")(x)["members"]), stacked, atol=1e-6)


@pytest.mark.parametrize("weights, message", [
    ([0.5], "2 members need 2 weights"),
    ([0.5, 0.6], "sum to 1"),
    ([1.0, 0.0], "> 0"),
    ([float("nan"), 1.0], "> 0"),
])
def test_bad_weights_are_errors(weights, message):
    with pytest.raises(ValueError, match=message):
        build_ensemble(list(members()), weights)


def test_bad_members_are_errors():
    cascade, regressor = members()
    with pytest.raises(ValueError, match="at least two"):
        build_ensemble([cascade], [1.0])
    with pytest.raises(ValueError, match="same number of points"):
        build_ensemble([cascade, build_regressor("mnv2", 5, input_size=32, alpha=0.35)], [0.5, 0.5])


def test_builds_saves_and_loads_on_jax(tmp_path):
    script = textwrap.dedent(f"""
        import keras, numpy as np
        assert keras.backend.backend() == "jax"
        from acrloss.models import build_ensemble, build_musica, build_regressor, load_model
        rng = np.random.default_rng(0)
        a = build_musica(rng.uniform(-0.3, 0.3, 20).astype("float32"), input_size=16, num_points=10,
                         stage_levels=(0,), stage_points=("all",), patch_size=4, channels=(4, 8), centre=2,
                         gate_units=4, patch_units=4, hidden_units=8)
        b = build_regressor("mnv2", 10, input_size=32, alpha=0.35)
        m = build_ensemble([a, b], [0.25, 0.75])
        x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        y = np.asarray(m(x)["landmarks"])
        m.save("{tmp_path / 'jax.h5'}")
        z = np.asarray(load_model("{tmp_path / 'jax.h5'}")(x)["landmarks"])
        np.testing.assert_allclose(y, z, atol=1e-6)
        s = np.asarray(m(x)["members"])
        np.testing.assert_allclose(y, 0.25 * s[:, 0] + 0.75 * s[:, 1], atol=1e-5)
        print("ok", y.shape)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok (2, 20)" in proc.stdout
