"""Tests of acrloss.models: tiny regressors, .h5 round trips, refusal to download, and a
JAX-backend training step in a subprocess."""
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

from acrloss.models import build_backbone, build_regressor, load_model
from random_weights import randomize  # noqa: E402  (tests/models/random_weights.py)

REPO = Path(__file__).resolve().parents[2]


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def tiny_mnv2():
    keras.utils.set_random_seed(0)
    return randomize(build_regressor("mnv2", 68, input_size=32, alpha=0.35))


def test_randomized_model_depends_on_its_input(tiny_mnv2):
    out = np.asarray(tiny_mnv2(images(4, 32), training=False))
    assert out.std(axis=0).mean() > 0.05


@pytest.mark.parametrize("arch, size, alpha", [("mnv2", 32, 0.35), ("mnv2", 64, 0.35), ("efficientnet_b0", 32, 1.0), ("efficientnet_b3", 32, 1.0)])
def test_output_shape(arch, size, alpha):
    model = build_regressor(arch, 68, input_size=size, alpha=alpha)
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, 136)
    out = np.asarray(model(images(3, size), training=False))
    assert out.shape == (3, 136)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("head", ["spatial", "gap"])
def test_heads(head):
    model = build_regressor("mnv2", 68, input_size=64, alpha=0.35, head=head)
    assert model.output_shape == (None, 136)
    names = {layer.name for layer in model.layers}
    assert ("head_pool" in names) == (head == "gap")
    assert np.asarray(model(images(2, 64), training=False)).shape == (2, 136)


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="head"):
        build_regressor("mnv2", 68, input_size=32, alpha=0.35, head="heatmap")


def test_other_point_counts():
    model = build_regressor("mnv2", num_points=29, input_size=32, alpha=0.35, dropout=0.0)
    assert model.output_shape == (None, 58)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_inputs_are_raw_pixels(tiny_mnv2):
    """The model normalizes internally: a [0, 255] image and its [0, 1] version differ."""
    x = images(2, 32)
    a = np.asarray(tiny_mnv2(x, training=False))
    b = np.asarray(tiny_mnv2(x / 255.0, training=False))
    assert not np.allclose(a, b)


def test_h5_round_trip_gives_identical_predictions(tiny_mnv2, tmp_path):
    path = tmp_path / "m.h5"
    tiny_mnv2.save(path)
    assert path.is_file() and path.stat().st_size > 10_000
    loaded = load_model(path)
    assert_same_weights(loaded, tiny_mnv2)
    x = images(4, 32, seed=1)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), np.asarray(tiny_mnv2(x, training=False)), atol=1e-6)
    assert loaded.input_shape == (None, 32, 32, 3)
    # a freshly built model of the same shape predicts something else (the check can fail)
    fresh = build_regressor("mnv2", 68, input_size=32, alpha=0.35)
    assert not np.allclose(np.asarray(fresh(x, training=False)), np.asarray(tiny_mnv2(x, training=False)), atol=1e-3)


def test_h5_round_trip_efficientnet(tmp_path):
    keras.utils.set_random_seed(1)
    model = randomize(build_regressor("efficientnet_b0", 68, input_size=32), seed=1)
    model.save(tmp_path / "e.h5")
    loaded = load_model(tmp_path / "e.h5")
    assert_same_weights(loaded, model)
    x = images(3, 32, seed=2)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)


@pytest.mark.parametrize("weights", ["imagenet", "https://example.com/weights.h5", "file://tmp/w.h5"])
def test_downloadable_weights_are_refused(weights):
    with pytest.raises(ValueError, match="local file"):
        build_regressor("mnv2", input_size=32, alpha=0.35, backbone_weights=weights)
    with pytest.raises(ValueError, match="local file"):
        build_backbone("efficientnet_b0", 32, weights=weights)


def test_missing_local_backbone_weights_named(tmp_path):
    missing = tmp_path / "no_weights.weights.h5"
    with pytest.raises(FileNotFoundError, match=r"no_weights\.weights\.h5"):
        build_backbone("mnv2", 32, 0.35, weights=missing)


def test_local_backbone_weights_are_loaded(tmp_path):
    keras.utils.set_random_seed(5)
    first = randomize(build_backbone("mnv2", 32, 0.35), seed=5)
    path = tmp_path / "bb.weights.h5"
    first.layers[-1].save_weights(path)  # the keras.applications network inside
    keras.utils.set_random_seed(6)
    second = build_backbone("mnv2", 32, 0.35, weights=path)
    x = images(2, 32, seed=4)
    np.testing.assert_allclose(np.asarray(second(x)), np.asarray(first(x)), atol=1e-6)
    third = randomize(build_backbone("mnv2", 32, 0.35), seed=7)
    assert not np.allclose(np.asarray(third(x)), np.asarray(first(x)), atol=1e-3)


def test_load_model_missing_path_names_it(tmp_path):
    path = tmp_path / "absent_model.h5"
    with pytest.raises(FileNotFoundError, match=r"absent_model\.h5"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"definitely not an HDF5 file" * 40], ids=["empty", "text"])
def test_load_model_corrupt_file_names_it(tmp_path, content):
    path = tmp_path / "broken_model.h5"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"broken_model\.h5"):
        load_model(path)


def test_load_model_truncated_checkpoint_names_it(tiny_mnv2, tmp_path):
    good = tmp_path / "good.h5"
    tiny_mnv2.save(good)
    cut = tmp_path / "cut_model.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(ValueError, match=r"cut_model\.h5"):
        load_model(cut)


def test_unknown_arch_is_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_regressor("resnet9000", input_size=32)


JAX_SCRIPT = textwrap.dedent(
    """
    import keras, numpy as np
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from acrloss.losses import ACRLoss
    from acrloss.models import build_regressor
    keras.utils.set_random_seed(0)
    model = build_regressor("mnv2", 68, input_size=32, alpha=0.35)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ACRLoss(num_coords=136))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = np.concatenate([rng.uniform(-0.4, 0.4, (4, 136)), rng.uniform(0, 1, (4, 136))], axis=1).astype("float32")
    out = np.asarray(model(x, training=False))
    loss = float(np.asarray(model.train_on_batch(x, y)))
    assert np.isfinite(loss) and np.all(np.isfinite(out))
    print("OUTPUT_SHAPE", out.shape, "LOSS", loss)
    """
)


def test_jax_backend_forward_and_train_step(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "jax"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    probe = subprocess.run([sys.executable, "-c", "import jax, jax.numpy as jnp; jnp.zeros(1)"], env=env,
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"jax is not importable: {probe.stderr.strip().splitlines()[-1:]}")
    script = tmp_path / "jax_step.py"
    script.write_text(JAX_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "OUTPUT_SHAPE (4, 136)" in proc.stdout
