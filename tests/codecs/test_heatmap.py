"""Tests of acrloss.codecs.heatmap: coordinate mapping, Gaussian encoding, the four decoders,
the multilateration solver, degenerate maps, the Keras layer and the jax backend.

Expected values are written out independently here (the stride formula, the Gaussian, hand
built anchors and distances), never taken from the code's output.

Sigma choice: 1.5 cells at 64×64 (the usual 2-px-ish Gaussian of pose / face heatmaps); 1.0
cell at 8×8 and 4×4 so that a map still has a clear peak yet several cells above the noise
floor to act as KeyPosS anchors.
"""
from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from acrloss.codecs import (
    DECODERS,
    HeatmapCodec,
    HeatmapDecodeLayer,
    decode,
    heatmap_to_input,
    input_to_heatmap,
    multilaterate,
)

REPO = Path(__file__).resolve().parents[2]
OFFSETS = (0.0, 0.25, 0.5, 0.37)


def to_input_ref(u: np.ndarray, input_size: int, heatmap_size: int) -> np.ndarray:
    """Heatmap units -> input pixels, written from the convention: x = (u + 0.5)·S/H − 0.5."""
    return (np.asarray(u, dtype=np.float64) + 0.5) * (input_size / heatmap_size) - 0.5


def grid_points(bases: tuple[int, ...]) -> np.ndarray:
    """Points (in heatmap units) at base cells plus every offset combination."""
    pts = [(bx + ox, by + oy) for bx in bases for by in bases for ox in OFFSETS for oy in OFFSETS]
    return np.array(pts, dtype=np.float64)


def roundtrip_errors(heatmap_size: int, sigma: float, bases: tuple[int, ...], method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-point decode errors (heatmap px) and the points (heatmap units)."""
    codec = HeatmapCodec(input_size=256, heatmap_size=heatmap_size, sigma=sigma, decoder=method)
    pts_hm = grid_points(bases)
    maps = codec.encode(to_input_ref(pts_hm, 256, heatmap_size))
    out = codec.decode(maps[None])[0]  # input pixels
    out_hm = (out + 0.5) / (256 / heatmap_size) - 0.5
    return np.linalg.norm(out_hm - pts_hm, axis=-1), pts_hm


# ----------------------------------------------------------------------- coordinates
def test_input_heatmap_mapping_values_and_round_trip():
    # stride 4: cell 0's centre covers input pixels -0.5..3.5, centre 1.5
    assert input_to_heatmap(1.5, 256, 64) == pytest.approx(0.0)
    assert heatmap_to_input(0.0, 256, 64) == pytest.approx(1.5)
    # outer edges coincide
    assert input_to_heatmap(-0.5, 256, 64) == pytest.approx(-0.5)
    assert input_to_heatmap(255.5, 256, 64) == pytest.approx(63.5)
    assert heatmap_to_input(3.5, 256, 4) == pytest.approx(255.5)
    # last cell centre of a 4x4 map over 256 px: (3 + 0.5) * 64 - 0.5
    assert heatmap_to_input(3.0, 256, 4) == pytest.approx(223.5)
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 255.5, size=(5, 7, 2))
    for h in (64, 32, 8, 4):
        u = input_to_heatmap(x, 256, h)
        np.testing.assert_allclose(u, (x + 0.5) / (256 / h) - 0.5, atol=1e-12)
        np.testing.assert_allclose(heatmap_to_input(u, 256, h), x, atol=1e-9)
    codec = HeatmapCodec(input_size=256, heatmap_size=16)
    np.testing.assert_allclose(codec.to_input(codec.to_heatmap(x)), x, atol=1e-9)


# ----------------------------------------------------------------------- encode
def test_encode_is_the_subpixel_gaussian_at_cell_centres():
    codec = HeatmapCodec(input_size=256, heatmap_size=8, sigma=1.2)
    u = np.array([[2.3, 5.6], [0.0, 7.0]])  # heatmap units
    maps = codec.encode(to_input_ref(u, 256, 8))
    assert maps.shape == (8, 8, 2) and maps.dtype == np.float32
    for n, (ux, uy) in enumerate(u):
        for i, j in [(5, 2), (6, 2), (0, 0), (7, 7), (3, 4)]:  # (row, column)
            want = math.exp(-((j - ux) ** 2 + (i - uy) ** 2) / (2 * 1.2 ** 2))
            assert maps[i, j, n] == pytest.approx(want, abs=1e-6)
    assert maps[..., 0].max() < 1.0  # sub-pixel mu: no cell reaches the peak
    assert maps[7, 0, 1] == pytest.approx(1.0)  # mu exactly on cell (row 7, column 0)


def test_encode_batch_matches_encode_and_missing_points_are_empty():
    codec = HeatmapCodec(input_size=64, heatmap_size=16, sigma=1.0)
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 63, size=(3, 5, 2))
    pts[1, 2] = np.nan
    batch = codec.encode_batch(pts)
    assert batch.shape == (3, 16, 16, 5)
    for b in range(3):
        np.testing.assert_array_equal(batch[b], codec.encode(pts[b]))
    assert not batch[1, ..., 2].any()
    assert batch[1, ..., 1].max() > 0.5


# ----------------------------------------------------------------------- round trips
@pytest.mark.parametrize("heatmap_size,sigma,bases,tol", [
    (64, 1.5, (0, 20, 62), 0.05),
    (8, 1.0, (0, 3, 6), 0.25),
    (4, 1.0, (0, 1, 2), 0.25),
])
def test_keyposs_round_trip(heatmap_size, sigma, bases, tol):
    err, _ = roundtrip_errors(heatmap_size, sigma, bases, "keyposs")
    assert err.max() < tol, err.max()


def test_argmax_is_worse_than_keyposs_between_cells_at_4x4():
    err_arg, pts = roundtrip_errors(4, 1.0, (0, 1, 2), "argmax")
    err_kp, _ = roundtrip_errors(4, 1.0, (0, 1, 2), "keyposs")
    between = np.any(np.abs(pts - np.round(pts)) > 1e-9, axis=-1)
    assert between.sum() > 0
    assert np.all(err_arg[between] >= 0.25 - 1e-6)
    assert np.all(err_arg[~between] < 1e-6)  # on a cell centre argmax is exact
    assert np.all(err_kp[between] < 0.25)
    assert err_kp.mean() < 0.2 * err_arg.mean()


def test_quarter_and_dark_accuracy_at_64():
    codec = HeatmapCodec(input_size=256, heatmap_size=64, sigma=1.5)
    rng = np.random.default_rng(3)
    pts_hm = rng.uniform(2.0, 61.0, size=(4, 68, 2))  # interior: DARK needs a 3x3 neighbourhood
    maps = codec.encode_batch(to_input_ref(pts_hm, 256, 64))

    def err(method: str) -> np.ndarray:
        out = decode(maps, method, sigma=1.5)  # heatmap units
        return np.abs(out - pts_hm)

    e_arg, e_q, e_dark = err("argmax"), err("quarter"), err("dark")
    assert e_dark.max() < 0.05
    # quarter: per axis the answer is the nearest cell ± 0.25 (or 0): error <= 0.25
    assert e_q.max() <= 0.25 + 1e-4
    assert e_q.mean() < 0.8 * e_arg.mean()
    assert e_arg.max() <= 0.5 + 1e-4
    # hand-worked quarter cases: true (10.3, 20.0) -> argmax (10, 20), right neighbour higher,
    # vertical neighbours equal -> (10.25, 20.0); true (7.8, 5.6) -> (8, 6) -> (7.75, 5.75)
    special = np.array([[[10.3, 20.0], [7.8, 5.6]]])
    m = codec.encode_batch(to_input_ref(special, 256, 64))
    np.testing.assert_allclose(decode(m, "quarter"), [[[10.25, 20.0], [7.75, 5.75]]], atol=1e-6)


def test_dark_is_exact_on_a_correlated_gaussian():
    # ln h is any quadratic -> DARK's Newton step (with the cross term) lands on the mean
    mu = np.array([20.4, 30.7])
    prec = np.linalg.inv(np.array([[2.0, 1.2], [1.2, 1.5]]))
    yy, xx = np.mgrid[0:64, 0:64]
    dxy = np.stack([xx - mu[0], yy - mu[1]], axis=-1)
    m = np.exp(-0.5 * np.einsum("...i,ij,...j->...", dxy, prec, dxy))
    out = decode(m[None, :, :, None].astype(np.float32), "dark")[0, 0]
    np.testing.assert_allclose(out, mu, atol=0.02)


# ----------------------------------------------------------------------- solver
def test_multilateration_recovers_point_from_exact_distances():
    p = np.array([10.3, 19.6])
    anchors = np.array([[10, 20], [11, 20], [9, 20], [10, 19], [10, 21],
                        [11, 19], [9, 21], [11, 21], [9, 19]], dtype=np.float64)
    dist = np.sqrt(((anchors - p) ** 2).sum(axis=1))
    a, d = anchors[None, None], dist[None, None]  # (1, 1, K, ...)
    w = np.linspace(1.0, 0.2, len(anchors))[None, None]

    for kwargs in [dict(iterations=5, linear_init=True), dict(iterations=0, linear_init=True),
                   dict(iterations=5, linear_init=False), dict(iterations=8, init=np.array([[[11.0, 18.9]]]))]:
        got = keras.ops.convert_to_numpy(multilaterate(a, d, w, **kwargs))
        np.testing.assert_allclose(got[0, 0], p, atol=1e-4, err_msg=str(kwargs))
    # unweighted, a different point and anchor layout (scattered, not a grid)
    q = np.array([-2.25, 3.7])
    anchors2 = np.array([[-2, 4], [0, 0], [-5, 6], [1, 7], [-3, 1]], dtype=np.float64)
    d2 = np.sqrt(((anchors2 - q) ** 2).sum(axis=1))
    got = keras.ops.convert_to_numpy(multilaterate(anchors2[None], d2[None]))
    np.testing.assert_allclose(got[0], q, atol=1e-4)


def test_multilateration_degenerate_anchors_do_not_nan():
    # collinear anchors: the linear system is singular -> start at anchor 0, no NaN
    anchors = np.array([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]])
    p = np.array([0.5, 0.8])
    d = np.sqrt(((anchors[0] - p) ** 2).sum(axis=1))[None]
    got = keras.ops.convert_to_numpy(multilaterate(anchors, d))
    assert np.all(np.isfinite(got))
    # from anchor 0 (on the line) symmetry keeps y = 0; off the line Gauss-Newton picks the
    # mirror image on the start's side
    assert got[0, 1] == pytest.approx(0.0, abs=1e-6)
    got = keras.ops.convert_to_numpy(multilaterate(anchors, d, init=np.array([[0.3, 0.5]]), iterations=10))
    np.testing.assert_allclose(got[0], p, atol=1e-4)
    got = keras.ops.convert_to_numpy(multilaterate(anchors, d, init=np.array([[0.3, -0.5]]), iterations=10))
    np.testing.assert_allclose(got[0], [0.5, -0.8], atol=1e-4)
    # all weights zero: stays at anchor 0
    got = keras.ops.convert_to_numpy(multilaterate(anchors, d, weights=np.zeros((1, 3))))
    np.testing.assert_allclose(got[0], [0.0, 0.0], atol=1e-6)


def test_keyposs_ignores_far_noise_cells_near_the_border():
    # landmark in the corner of a 16x16 map: the global top-9 reaches background cells across
    # the map; their small (noise) values claim short distances that must be gated out
    codec = HeatmapCodec(input_size=256, heatmap_size=16, sigma=1.0)
    true = np.array([[15.2, 15.25]])
    m = codec.encode(to_input_ref(true, 256, 16))
    m[1, 8, 0] = m[1, 7, 0] = m[5, 11, 0] = 0.06
    out = decode(m[None], "keyposs", sigma=1.0)[0, 0]
    assert np.linalg.norm(out - true[0]) < 0.3, out


# ----------------------------------------------------------------------- degenerate maps
@pytest.mark.parametrize("method", DECODERS)
def test_flat_and_single_cell_maps_do_not_nan(method):
    maps = np.zeros((2, 8, 8, 4), dtype=np.float32)
    maps[1, ..., 0] = 0.5  # flat non-zero
    maps[1, 3, 5, 1] = 1.0  # single cell, interior
    maps[1, 0, 0, 2] = 0.3  # single cell, corner, below 1
    maps[1, 7, 2, 3] = 1e-7  # single cell below the log clip
    out = decode(maps, method, sigma=1.0)
    assert out.shape == (2, 4, 2) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], np.full((4, 2), 3.5), atol=1e-6)  # all-zero -> centre
    np.testing.assert_allclose(out[1, 0], [3.5, 3.5], atol=1e-6)  # all 0.5 -> centre
    np.testing.assert_allclose(out[1, 1], [5.0, 3.0], atol=1e-4)  # (x=column, y=row)
    np.testing.assert_allclose(out[1, 2], [0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(out[1, 3], [2.0, 7.0], atol=1e-4)
    codec = HeatmapCodec(input_size=32, heatmap_size=8, decoder=method)
    assert np.all(np.isfinite(codec.decode(maps)))


# ----------------------------------------------------------------------- keras / config
def test_codec_config_round_trip_and_validation():
    codec = HeatmapCodec(input_size=128, heatmap_size=32, sigma=2.0, decoder="dark", k=5,
                         iterations=3, linear_init=False)
    again = HeatmapCodec.from_config(json.loads(json.dumps(codec.get_config())))
    assert again == codec
    with pytest.raises(ValueError):
        HeatmapCodec(decoder="nope")
    with pytest.raises(ValueError):
        codec.decode(np.zeros((1, 16, 16, 2), np.float32))  # wrong map size


def test_decode_layer_in_a_model_and_serialization():
    codec = HeatmapCodec(input_size=64, heatmap_size=16, sigma=1.0)
    rng = np.random.default_rng(4)
    pts = rng.uniform(2, 60, size=(3, 5, 2))
    maps = codec.encode_batch(pts)
    inp = keras.Input((16, 16, 5))
    layer = HeatmapDecodeLayer(input_size=64, heatmap_size=16, sigma=1.0)
    model = keras.Model(inp, layer(inp))
    out = np.asarray(model.predict(maps, verbose=0))
    assert out.shape == (3, 5, 2)
    np.testing.assert_allclose(out, pts, atol=0.05 * 4)  # 0.05 heatmap px at stride 4
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, HeatmapDecodeLayer)
    assert clone.codec == layer.codec and clone.get_config()["sigma"] == 1.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(maps)), out, atol=1e-5)


JAX_SCRIPT = r"""
import io, json, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
import jax
from acrloss.codecs import HeatmapCodec
maps = np.load(io.BytesIO(sys.stdin.buffer.read()))
out = {}
for method in ("keyposs", "dark", "quarter"):
    codec = HeatmapCodec(input_size=256, heatmap_size=maps.shape[1], sigma=1.5, decoder=method)
    fn = jax.jit(codec.decode)
    out[method] = np.asarray(fn(jax.numpy.asarray(maps))).tolist()
print("RESULT" + json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_keyposs_under_jax_jit_matches():
    codec = HeatmapCodec(input_size=256, heatmap_size=32, sigma=1.5)
    rng = np.random.default_rng(5)
    pts = rng.uniform(0, 255, size=(2, 68, 2))
    maps = codec.encode_batch(pts)
    maps = maps + 0.01 * rng.standard_normal(maps.shape).astype(np.float32)  # not a trivial map
    buf = io.BytesIO()
    np.save(buf, maps)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT], input=buf.getvalue(), env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    line = [s for s in proc.stdout.decode().splitlines() if s.startswith("RESULT")][-1]
    got = json.loads(line[len("RESULT"):])
    for method in ("keyposs", "dark", "quarter"):
        want = HeatmapCodec(input_size=256, heatmap_size=32, sigma=1.5, decoder=method).decode(maps)
        np.testing.assert_allclose(np.array(got[method]), want, atol=1e-4, err_msg=method)
    # and the jitted keyposs result is a good decode, not just equal garbage
    assert np.abs(np.array(got["keyposs"]) - pts).max() < 0.5 * 8
