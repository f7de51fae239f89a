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
