"""Tests of acrloss.models.heatmap: head shapes for every heatmap size, the output contract,
.h5 round trips, switching the decoder, and the jax backend (the heatmap loss: tests/test_losses.py).

Expected values are computed here from the documented formulas (normalized
``n = (p + 0.5) / S − 0.5``, the Gaussian target, the MSE) or from the codec's own decode of
the model's heatmaps, never from the layer under test.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from acrloss.codecs import DECODERS, HeatmapCodec
from acrloss.models import build_regressor, landmarks_from_output, load_model
from acrloss.models.heatmap import (
    HeatmapLandmarks,
    build_heatmap_model,
    default_sigma,
    heatmap_codec,
    set_decoder,
    train_codec,
)
from random_weights import randomize  # noqa: E402  (tests/models/random_weights.py)

REPO = Path(__file__).resolve().parents[2]


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def normalized_ref(points_px: np.ndarray, size: int) -> np.ndarray:
    """(B, N, 2) input pixels -> (B, 2N) normalized, written from the convention."""
    return ((np.asarray(points_px, np.float64) + 0.5) / size - 0.5).reshape(len(points_px), -1)


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    codec = HeatmapCodec(input_size=64, heatmap_size=8, sigma=1.0, decoder="keyposs")
    return randomize(build_heatmap_model(68, alpha=0.35, codec=codec)), codec


@pytest.mark.parametrize("size, hm, kind", [(64, 2, "same"), (64, 4, "up"), (64, 8, "up"), (64, 16, "up"),
                                            (128, 2, "down"), (128, 1, "down")])
def test_output_dict_shapes(size, hm, kind):
    model = build_heatmap_model(68, size, hm, alpha=0.35, sigma=1.0)
    assert model.input_shape == (None, size, size, 3)
    assert set(model.output_names) == {"heatmaps", "landmarks"}
    out = model(images(3, size), training=False)
    assert isinstance(out, dict) and set(out) == {"heatmaps", "landmarks"}
    assert tuple(out["heatmaps"].shape) == (3, hm, hm, 68)
    assert tuple(out["landmarks"].shape) == (3, 136)
    assert np.all(np.isfinite(np.asarray(out["landmarks"])))
    names = [layer.name for layer in model.layers]
    feat = size // 32
    if kind == "up":
        assert sum(n.startswith("head_up") and n.endswith("_conv") for n in names) == int(np.log2(hm // feat))
        assert not any(n.startswith("head_down") for n in names)
    elif kind == "down":
        downs = [model.get_layer(n) for n in names if n.startswith("head_down") and n.endswith("_conv")]
        assert len(downs) == int(np.log2(feat // hm)) and all(tuple(d.strides) == (2, 2) for d in downs)
    else:
        assert "head_same_conv" in names
    # the output contract the library relies on
    assert landmarks_from_output(out, 68).shape == (3, 136)


def test_unreachable_heatmap_size_is_refused_with_the_sizes_that_work():
    with pytest.raises(ValueError, match=r"heatmap_size 3 .* 2x2 .* input 64.*2, 4, 8"):
        build_heatmap_model(68, 64, 3, alpha=0.35)
    with pytest.raises(ValueError, match="disagrees with the codec"):
        build_heatmap_model(68, 64, 4, alpha=0.35, codec=HeatmapCodec(64, 8, 1.0))


def test_landmarks_are_the_codec_decode_of_the_heatmaps_normalized(tiny):
    model, codec = tiny
    out = model(images(4, 64, seed=1), training=False)
    maps = np.asarray(out["heatmaps"])
    assert maps.std() > 1e-3  # the randomized network gives structured maps
    want = normalized_ref(codec.decode(maps, "keyposs"), 64)
    np.testing.assert_allclose(np.asarray(out["landmarks"]), want, atol=1e-5)
    # different faces -> different points (not all the flat-map fallback)
    assert np.asarray(out["landmarks"]).std(axis=0).mean() > 1e-3


def test_h5_round_trip_identical_outputs_and_codec(tiny, tmp_path):
    model, codec = tiny
    x = images(3, 64, seed=2)
    path = tmp_path / "hm.h5"
    model.save(path)
    loaded = load_model(path)
    a, b = model(x, training=False), loaded(x, training=False)
    for key in ("heatmaps", "landmarks"):
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
    assert heatmap_codec(loaded) == codec
    layer = loaded.get_layer("landmarks")
    assert isinstance(layer, HeatmapLandmarks) and not layer.trainable_weights


def test_layer_config_round_trips():
    layer = HeatmapLandmarks(input_size=96, heatmap_size=12, sigma=1.25, decoder="dark", k=5, iterations=0,
                             linear_init=False, weighting="uniform", name="lm")
    clone = HeatmapLandmarks.from_config(layer.get_config())
    assert clone.codec == layer.codec and clone.name == "lm"


@pytest.mark.parametrize("decoder", [d for d in DECODERS if d != "keyposs"])
def test_switching_the_decoder_keeps_the_heatmaps_and_changes_the_points(decoder, tmp_path):
    keras.utils.set_random_seed(0)
    codec = HeatmapCodec(input_size=64, heatmap_size=8, sigma=1.0, decoder="keyposs")
    model = randomize(build_heatmap_model(68, alpha=0.35, codec=codec))
    x = images(4, 64, seed=3)
    before = model.predict(x, verbose=0)  # also builds the compiled predict function
    new = set_decoder(model, decoder)
    assert new.decoder == decoder and heatmap_codec(model).decoder == decoder
    assert (new.sigma, new.k, new.iterations) == (codec.sigma, codec.k, codec.iterations)
    after = model.predict(x, verbose=0)  # the compiled function must not keep the old decoder
    eager = model(x, training=False)
    np.testing.assert_array_equal(before["heatmaps"], after["heatmaps"])
    want = normalized_ref(codec.decode(after["heatmaps"], decoder), 64)
    np.testing.assert_allclose(after["landmarks"], want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(eager["landmarks"]), want, atol=1e-5)
    assert np.abs(after["landmarks"] - before["landmarks"]).max() > 1e-4
    # the switch is saved with the model
    model.save(tmp_path / "switched.h5")
    assert heatmap_codec(load_model(tmp_path / "switched.h5")).decoder == decoder


def test_set_decoder_changes_keyposs_settings_and_refuses_bad_input(tiny):
    model, _ = tiny
    try:
        assert set_decoder(model, None, iterations=0, k=4).iterations == 0
        assert heatmap_codec(model).k == 4
        with pytest.raises(ValueError, match="unknown decoder"):
            set_decoder(model, "softargmax")
        with pytest.raises(TypeError, match="unknown setting"):
            set_decoder(model, "dark", heatmap_size=16)
    finally:
        set_decoder(model, "keyposs", iterations=5, k=9)
    regressor = build_regressor("mnv2", 68, input_size=32, alpha=0.35)
    with pytest.raises(ValueError, match="no heatmap decode layer"):
        set_decoder(regressor, "argmax")


def test_train_codec_and_default_sigma():
    assert train_codec(128).heatmap_size == 32
    c = train_codec(128, 8, None, "dark")
    assert (c.input_size, c.heatmap_size, c.sigma, c.decoder) == (128, 8, 1.0, "dark")
    assert train_codec(256, 64, 2.5).sigma == 2.5
    assert [default_sigma(h) for h in (4, 8, 16, 32, 64)] == [1.0, 1.0, 1.5, 1.5, 2.0]
    # sigma 1 cell at 8x8: a cell 1.5 cells from the landmark still reads about 0.32
    assert np.exp(-(1.5 ** 2) / (2 * default_sigma(8) ** 2)) == pytest.approx(0.3247, abs=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_heatmap_model_on_jax_backend(tmp_path):
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, jax
        assert keras.backend.backend() == "jax"
        from acrloss.codecs import HeatmapCodec
        from acrloss.models import load_model
        from acrloss.models.heatmap import build_heatmap_model, set_decoder
        from acrloss.tasks.heatmap import training_objective
        keras.utils.set_random_seed(0)
        codec = HeatmapCodec(input_size=64, heatmap_size=8, sigma=1.0, decoder="keyposs")
        model = build_heatmap_model(68, alpha=0.35, codec=codec)
        x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
        pts = np.random.default_rng(1).uniform(10, 54, (4, 68, 2))
        y = {{"heatmaps": codec.encode_batch(pts), "landmarks": ((pts + 0.5) / 64 - 0.5).reshape(4, -1).astype("float32")}}
        model.compile(optimizer="adam", **training_objective(68, (36, 45)))
        hist = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
        assert all(np.isfinite(hist.history["loss"])) and "landmarks_nme" in hist.history, hist.history
        out = model.predict(x, verbose=0)
        assert out["heatmaps"].shape == (4, 8, 8, 68) and out["landmarks"].shape == (4, 136)
        model.save("{tmp_path / 'jax.h5'}")
        loaded = load_model("{tmp_path / 'jax.h5'}")
        again = loaded.predict(x, verbose=0)
        np.testing.assert_allclose(again["heatmaps"], out["heatmaps"], atol=1e-5)
        np.testing.assert_allclose(again["landmarks"], out["landmarks"], atol=1e-4)
        set_decoder(loaded, "argmax")
        am = loaded.predict(x, verbose=0)
        np.testing.assert_allclose(am["heatmaps"], out["heatmaps"], atol=1e-5)
        want = ((codec.decode(am["heatmaps"], "argmax") + 0.5) / 64 - 0.5).reshape(4, -1)
        np.testing.assert_allclose(am["landmarks"], want, atol=1e-5)
        f = jax.jit(lambda m: codec.decode(m, "keyposs"))
        assert np.all(np.isfinite(np.asarray(f(out["heatmaps"]))))
        print("JAX_OK")
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "JAX_OK" in proc.stdout, proc.stderr[-3000:]
