"""The gather-free (separable, matmul) MuSiCa patch sampler and the window sampler exports
use (``bilinear_patches_window``) against the original gather-based
one, on real 300-W faces, under the TensorFlow and the JAX backend; and the shipped
``musica_acr_300w.h5`` gives the same outputs with either sampler.

Each backend runs in its own subprocess (a Keras backend is fixed per process)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "pre_trained_models" / "musica_acr_300w.h5"

#: run in a subprocess with KERAS_BACKEND set; prints one JSON line
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from acrloss.data_prep.crop import CropTransform
    from acrloss.data_prep.datasets import w300_subset
    from acrloss.data_prep.images import read_image
    from acrloss.models import load_model
    from acrloss.models import musica as mu

    data, shipped = sys.argv[1], sys.argv[2]
    samples = w300_subset(data, "common")
    idx = np.linspace(0, len(samples) - 1, 12).round().astype(int)
    crops = np.stack([CropTransform.from_points(samples[i].points, 128).warp(read_image(samples[i].image_path))
                      for i in idx]).astype(np.float32)
    rng = np.random.default_rng(0)
    out = {"backend": keras.backend.backend()}

    # 1. the samplers alone: grey pyramid levels of real crops, patch centres at the faces' own
    # landmarks (sub-pixel), jittered, plus centres near and beyond the image border
    levels = [keras.ops.convert_to_numpy(v) for v in mu.ImagePyramid(3, grey=True)(crops)]
    diffs, spreads, window_diffs = [], [], []
    for lv in levels + [crops / 255.0]:  # grey levels 128/64/32 and one RGB image (C = 3)
        side = lv.shape[1]
        pts = np.stack([CropTransform.from_points(samples[i].points, side).forward(samples[i].points) for i in idx])
        pts = pts + rng.uniform(-0.5, 0.5, pts.shape)
        edge = np.array([[-3.2, 5.5], [side + 2.7, side - 1.3], [0.25, -6.0], [side - 0.5, side + 0.4]])
        centres = np.concatenate([pts, np.broadcast_to(edge, (len(pts), 4, 2))], axis=1).astype(np.float32)
        for p in (14, 7):
            new = keras.ops.convert_to_numpy(mu.bilinear_patches(lv, centres, p))
            old = keras.ops.convert_to_numpy(mu.bilinear_patches_gather(lv, centres, p))
            assert new.shape == old.shape == (len(pts), centres.shape[1], p, p, lv.shape[-1]), (new.shape, old.shape)
            diffs.append(float(np.abs(new - old).max()))
            spreads.append(float(np.ptp(old)))
            window = keras.ops.convert_to_numpy(mu.bilinear_patches_window(lv, centres, p))  # exports' sampler
            assert window.shape == old.shape, (window.shape, old.shape)
            window_diffs.append(float(np.abs(window - old).max()))
    out["sampler_max_abs_diff"] = max(diffs)
    out["window_sampler_max_abs_diff"] = max(window_diffs)
    out["window_sampler_cases"] = len(window_diffs)
    out["sampler_min_range"] = min(spreads)

    # 2. the shipped model: every output with the separable sampler vs the gather sampler
    model = load_model(shipped)
    new = {k: keras.ops.convert_to_numpy(v) for k, v in model(crops, training=False).items()}
    from acrloss.models.musica import sampler  # PatchSampler calls the sampler module's bilinear_patches
    sampler.bilinear_patches, saved = mu.bilinear_patches_gather, sampler.bilinear_patches
    try:
        old = {k: keras.ops.convert_to_numpy(v) for k, v in model(crops, training=False).items()}
    finally:
        sampler.bilinear_patches = saved
    out["model_max_abs_diff"] = {k: float(np.abs(new[k] - old[k]).max()) for k in new}
    out["landmark_range"] = float(np.ptp(new["landmarks"]))
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_separable_sampler_matches_gather_sampler_on_real_faces(backend, w300_dir):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} not found")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(w300_dir), str(SHIPPED)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["backend"] == backend
    assert res["sampler_min_range"] > 0.05  # real, textured patches: the comparison is not trivially flat
    assert res["sampler_max_abs_diff"] <= 1e-4, res
    assert res["window_sampler_cases"] == 8  # three grey levels and one RGB image x two patch sizes
    assert res["window_sampler_max_abs_diff"] <= 1e-4, res
    assert res["landmark_range"] > 0.2  # real landmark spreads
    for key, diff in res["model_max_abs_diff"].items():
        assert diff <= 1e-4, (key, res)
