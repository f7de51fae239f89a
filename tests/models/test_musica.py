"""MuSiCa (acrloss.models.musica): gather-based patch sampling against direct crops of a
real image, the attention gates, shapes, hand-computed multiply-adds, the cascade loss,
.h5 round trips, the JAX backend and a tiny real-data training run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest

from acrloss.flops import count_macs
from acrloss.losses import CascadeLoss
from acrloss.models import load_model
from acrloss.models.musica import (
    ImagePyramid,
    PatchEncoder,
    PatchSampler,
    bilinear_patches,
    build_musica,
    resolve_points,
    stage_macs,
    stage_models,
)

RNG = np.random.default_rng(0)


def tiny(num_points: int = 68, **kw):
    """A small cascade (32 px input, 3 stages) for fast tests."""
    mean = RNG.uniform(-0.3, 0.3, 2 * num_points).astype("float32")
    args = dict(input_size=32, num_points=num_points, stage_levels=(2, 1, 0), stage_points=("half", "all", "all"),
                patch_size=4, channels=(4, 8), centre=2, gate_units=4, patch_units=4, hidden_units=16)
    args.update(kw)
    return build_musica(mean, **args)


@pytest.fixture(scope="module")
def grey_image(w300_dir):
    """A real 300-W photo as grey float32 in [0, 1] (H, W, 1)."""
    from acrloss.data_prep.datasets import w300_subset
    from acrloss.data_prep.images import read_image

    sample = w300_subset(w300_dir, "common")[0]
    rgb = read_image(sample.image_path).astype(np.float32) / 255.0
    return rgb.mean(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- sampling
def test_integer_aligned_patches_equal_numpy_slices(grey_image):
    img = grey_image
    h, w = img.shape[:2]
    batch = img[None]
    # odd size, integer centre: offsets are integers
    cx, cy = w // 2, h // 3
    got = keras.ops.convert_to_numpy(bilinear_patches(batch, np.array([[[cx, cy]]], np.float32), 7))[0, 0]
    np.testing.assert_allclose(got, img[cy - 3 : cy + 4, cx - 3 : cx + 4], atol=1e-3)
    # even size (14), centre half-way between pixels: the samples fall on pixel centres again
    cx2, cy2 = w // 3 + 0.5, h // 2 + 0.5
    got = keras.ops.convert_to_numpy(bilinear_patches(batch, np.array([[[cx2, cy2]]], np.float32), 14))[0, 0]
    x0, y0 = int(cx2 - 6.5), int(cy2 - 6.5)
    np.testing.assert_allclose(got, img[y0 : y0 + 14, x0 : x0 + 14], atol=1e-3)
    assert np.ptp(got) > 0.05  # a real, textured patch (the comparison is not trivially flat)


def test_half_pixel_patch_is_the_manual_bilinear_average(grey_image):
    img = grey_image[..., 0]
    h, w = img.shape
    cx, cy = w // 2 + 0.5, h // 2  # odd size 5, x half-way: every sample averages two neighbours
    got = keras.ops.convert_to_numpy(bilinear_patches(grey_image[None], np.array([[[cx, cy]]], np.float32), 5))[0, 0, ..., 0]
    manual = np.empty((5, 5), np.float32)
    for i in range(5):
        for j in range(5):
            y = int(cy) + i - 2
            x = int(cx - 0.5) + j - 2
            manual[i, j] = 0.5 * (img[y, x] + img[y, x + 1])
    np.testing.assert_allclose(got, manual, atol=1e-3)
    # a generic sub-pixel centre against OpenCV's bilinear getRectSubPix (same pixel-centre convention)
    cx, cy = w / 2 + 0.3, h / 2 - 0.7
    got = keras.ops.convert_to_numpy(bilinear_patches(grey_image[None], np.array([[[cx, cy]]], np.float32), 12))[0, 0, ..., 0]
    ref = cv2.getRectSubPix(img, (12, 12), (cx, cy))
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_samples_outside_the_image_take_the_border(grey_image):
    img = grey_image[:40, :50]
    padded = np.pad(img[..., 0], 5, mode="edge")
    got = keras.ops.convert_to_numpy(bilinear_patches(img[None], np.array([[[1.0, 2.0]]], np.float32), 7))[0, 0, ..., 0]
    np.testing.assert_allclose(got, padded[5 + 2 - 3 : 5 + 2 + 4, 5 + 1 - 3 : 5 + 1 + 4], atol=1e-6)


def test_sampler_maps_normalized_points_to_each_level(grey_image):
    img = cv2.resize(grey_image[..., 0], (64, 64), interpolation=cv2.INTER_AREA)[..., None]
    # point 1 at pixel (20, 30), point 0 at (40.5, 10.5) of a 64 px image; n = (p + 0.5) / S - 0.5
    pix = np.array([[40.5, 10.5], [20.0, 30.0]], np.float32)
    shape = ((pix + 0.5) / 64 - 0.5).reshape(1, -1)
    sampler = PatchSampler([1, 0], patch_size=6, num_points=2, normalize=False)
    got = keras.ops.convert_to_numpy(sampler([img[None], shape]))
    assert got.shape == (1, 2, 6, 6, 1)
    ref = keras.ops.convert_to_numpy(bilinear_patches(img[None], pix[[1, 0]][None], 6))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(got[0, 1, ..., 0], img[8:14, 38:44, 0], atol=1e-3)  # (40.5, 10.5): integer samples
    # standardized patches: zero mean per patch
    normed = keras.ops.convert_to_numpy(PatchSampler([1, 0], 6, 2, normalize=True)([img[None], shape]))
    np.testing.assert_allclose(normed.mean(axis=(2, 3, 4)), 0.0, atol=1e-5)


def test_pyramid_levels_are_2x2_averages():
    rgb = RNG.uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    levels = [keras.ops.convert_to_numpy(x) for x in ImagePyramid(3, grey=True)(rgb)]
    grey = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] / 255.0
    np.testing.assert_allclose(levels[0], grey, atol=1e-5)
    np.testing.assert_allclose(levels[1], grey.reshape(2, 8, 2, 8, 2, 1).mean(axis=(2, 4)), atol=1e-5)
    np.testing.assert_allclose(levels[2], grey.reshape(2, 4, 4, 4, 4, 1).mean(axis=(2, 4)), atol=1e-5)
    assert [lv.shape for lv in ImagePyramid(2, grey=False)(rgb)] == [(2, 16, 16, 3), (2, 8, 8, 3)]
    with pytest.raises(ValueError, match="divisible"):
        ImagePyramid(3)(keras.Input((18, 18, 3)))


def test_encoder_matches_keras_convolutions():
    enc = PatchEncoder(patch_size=8, in_channels=1, channels=(3, 5), centre=2)
    x = RNG.normal(size=(2, 3, 10, 10, 1)).astype("float32")
    out = keras.ops.convert_to_numpy(enc(x))
    assert out.shape == (2, 3, 2 * 2 * 3 + 2 * 2 * 5)
    # the same kernels in standard Keras layers
    inp = keras.Input((10, 10, 1))
    c1 = keras.layers.Conv2D(3, 3, padding="valid", activation="relu")
    c2 = keras.layers.Conv2D(5, 3, padding="same", activation="relu")
    fine = keras.layers.MaxPooling2D(2)(c1(inp))
    coarse = keras.layers.MaxPooling2D(2)(c2(fine))
    ref_model = keras.Model(inp, [fine, coarse])
    c1.set_weights([keras.ops.convert_to_numpy(enc.kernel1), keras.ops.convert_to_numpy(enc.bias1)])
    c2.set_weights([keras.ops.convert_to_numpy(enc.kernel2), keras.ops.convert_to_numpy(enc.bias2)])
    f, c = (keras.ops.convert_to_numpy(t) for t in ref_model(x.reshape(6, 10, 10, 1)))
    ref = np.concatenate([f[:, 1:3, 1:3, :].reshape(6, -1), c.reshape(6, -1)], axis=1).reshape(2, 3, -1)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # RGB input goes through the im2col branch
    enc3 = PatchEncoder(patch_size=4, in_channels=3, channels=(2, 2), centre=2)
    assert keras.ops.convert_to_numpy(enc3(RNG.normal(size=(1, 2, 6, 6, 3)).astype("float32"))).shape == (1, 2, 8 + 2)


# --------------------------------------------------------------------------- model
def test_attention_gates_lie_strictly_between_zero_and_one(grey_image):
    model = tiny()
    stage = stage_models(model)[2]
    probe = keras.Model(stage.inputs, [stage.get_layer("stage_3_encoder").output, stage.get_layer("stage_3_gate").output,
                                       stage.get_layer("stage_3_attend").output])
    img = cv2.resize(grey_image[..., 0], (32, 32), interpolation=cv2.INTER_AREA)[None, ..., None]
    shape = keras.ops.convert_to_numpy(model.get_layer("initial_state").mean_shape)[None]
    feats, gate, attended = (keras.ops.convert_to_numpy(t) for t in probe([img, shape, np.zeros((1, 16), np.float32)]))
    assert gate.shape == feats.shape == (1, 68, 2 * 2 * 4 + 1 * 8)
    assert np.all(gate > 0.0) and np.all(gate < 1.0)
    assert np.ptp(gate) > 1e-3  # the weighting depends on the patch
    np.testing.assert_allclose(attended, feats * gate, rtol=1e-5, atol=1e-6)


def test_stage_and_model_output_shapes():
    model = tiny()
    stages = stage_models(model)
    assert [s.name for s in stages] == ["stage_1", "stage_2", "stage_3"]
    assert [tuple(s.inputs[0].shape[1:]) for s in stages] == [(8, 8, 1), (16, 16, 1), (32, 32, 1)]
    out = stages[1]([np.zeros((3, 16, 16, 1), np.float32), np.zeros((3, 136), np.float32), np.zeros((3, 16), np.float32)])
    assert [tuple(o.shape) for o in out] == [(3, 136), (3, 16), (3, 1)]
    res = model(RNG.uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    assert {k: tuple(v.shape) for k, v in res.items()} == {
        "landmarks": (2, 136), "stages": (2, 3, 136), "errors": (2, 3), "cascade": (2, 3, 137)}
    stages_np = keras.ops.convert_to_numpy(res["stages"])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(res["landmarks"]), stages_np[:, -1])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(res["cascade"])[..., :136], stages_np)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(res["cascade"])[..., 136], keras.ops.convert_to_numpy(res["errors"]))
    # zero-initialised shape updates: an untrained cascade returns its initial (mean) shape
    mean = keras.ops.convert_to_numpy(model.get_layer("initial_state").mean_shape)
    np.testing.assert_allclose(stages_np, np.broadcast_to(mean, stages_np.shape), atol=1e-6)


def test_point_subsets_and_options():
    assert resolve_points("all", 68) == list(range(68))
    assert resolve_points("half", 68) == list(range(0, 68, 2))
    assert len(resolve_points("coarse", 68)) == 18
    coarse29 = resolve_points("coarse", 29)  # any point count has a coarse subset (issue 18)
    assert len(coarse29) == 8 and coarse29[0] == 0 and coarse29[-1] == 28 and len(set(coarse29)) == 8
    assert len(resolve_points("coarse", 98)) == 19
    with pytest.raises(ValueError):
        resolve_points([0, 0], 68)
    with pytest.raises(ValueError):
        build_musica(np.zeros(10), num_points=68)
    from acrloss.train import build_parser

    flags = ["--save-path", "x", "--musica-option", "hidden_units=64", "--musica-option", "stage_levels=[2,1]",
             "--musica-option", 'stage_points=["all","half"]']
    assert dict(build_parser().parse_args(flags).musica_option) == {
        "hidden_units": 64, "stage_levels": [2, 1], "stage_points": ["all", "half"]}
    with pytest.raises(SystemExit):  # an argparse error (usage + message), not an exception from library code
        build_parser().parse_args(["--save-path", "x", "--musica-option", "bogus=1"])


def test_multiply_adds_per_stage_by_hand():
    # N = 4 points, one stage on the full 16 px level, patches around points 0 and 2 (K = 2),
    # P = 4 (sampled 6 x 6 x 1), C1 = 2, C2 = 3, centre 2, gate 2, D = 3, H = 5
    model = build_musica(np.zeros(8), input_size=16, num_points=4, stage_levels=(0,), stage_points=([0, 2],),
                         patch_size=4, channels=(2, 3), centre=2, gate_units=2, patch_units=3, hidden_units=5)
    k, f, d, h, n2 = 2, 2 * 2 * 2 + 1 * 1 * 3, 3, 5, 8
    sampler = 4 * k * 6 * 6 * 1  # 4 multiply-adds per bilinear sample
    encoder = k * (4 * 4 * 2 * 9 * 1 + 2 * 2 * 3 * 9 * 2)  # conv3x3 valid 6->4, conv3x3 same on 2x2
    gate = k * f * 2 + k * 2 * f
    project = k * f * d
    x = k * d + n2
    gru = 2 * (x + h) * h + (x + h) * h  # update + reset gates on [x, h], candidate on [x, r*h]
    head = h * n2 + h * 1
    expected = sampler + encoder + gate + project + gru + head
    assert expected == 1780
    macs, rows = count_macs(model, per_layer=True)
    assert macs == expected
    assert stage_macs(model) == [expected]
    by_class = {}
    for r in rows:
        by_class[r["class"]] = by_class.get(r["class"], 0) + r["macs"]
    assert by_class["PatchSampler"] == sampler and by_class["PatchEncoder"] == encoder
    assert not any("note" in r for r in rows)  # nothing left uncounted
    # several stages: the model's total is the sum of the per-stage counts
    model = tiny()
    per_stage = stage_macs(model)
    assert len(per_stage) == 3 and count_macs(model) == sum(per_stage)
    assert per_stage[0] < per_stage[1]  # stage 1 samples half the points


def test_default_model_fits_the_budget():
    model = build_musica(np.zeros(136, np.float32))
    per_stage = stage_macs(model)
    assert len(per_stage) == 4
    assert sum(per_stage) <= 100e6  # the budget: <= 100 M multiply-adds per face
    assert per_stage[0] < per_stage[1] < per_stage[2] == per_stage[3]


def test_cascade_loss_matches_numpy():
    n, t = 68, 3
    gt = RNG.uniform(-0.4, 0.4, (4, 2 * n)).astype("float32")
    phi = RNG.uniform(0, 1, (4, 2 * n)).astype("float32")
    shapes = gt[:, None] + RNG.normal(0, 0.02, (4, t, 2 * n)).astype("float32")
    errs = RNG.uniform(0, 0.1, (4, t)).astype("float32")
    y_pred = np.concatenate([shapes, errs[..., None]], axis=-1)

    def nme(p):
        g, q = gt.reshape(4, n, 2), p.reshape(4, n, 2)
        return np.linalg.norm(q - g, axis=-1).mean(1) / np.linalg.norm(g[:, 36] - g[:, 45], axis=-1)

    l2 = CascadeLoss("l2", n, t, error_weight=0.5, reduction=None)
    got = keras.ops.convert_to_numpy(l2(gt, y_pred))
    ref = sum(np.mean((shapes[:, s] - gt) ** 2, axis=1) + 0.5 * np.abs(nme(shapes[:, s]) - errs[:, s]) for s in range(t)) / t
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    acr = CascadeLoss("acr", n, t, error_weight=0.0, reduction=None)
    from acrloss.losses import ACRLoss

    packed = np.concatenate([gt, phi], axis=1)
    ref = sum(keras.ops.convert_to_numpy(ACRLoss(num_coords=2 * n, reduction=None)(packed, shapes[:, s])) for s in range(t)) / t
    np.testing.assert_allclose(keras.ops.convert_to_numpy(acr(packed, y_pred)), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="Φ|columns"):
        acr(gt, y_pred)  # ACR needs the packed [points, Φ] targets
    # serializable
    again = CascadeLoss.from_config(l2.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(gt, y_pred)), got, rtol=1e-6)


def test_acr_scale_reaches_the_cascade_loss():
    """``--acr-scale`` (LossConfig.acr_scale) must change MuSiCa's loss as it changes ACRLoss."""
    from types import SimpleNamespace

    from acrloss.config import LossConfig, MusicaConfig

    from acrloss.losses import ACRLoss
    from acrloss.tasks.musica import training_objective

    n = 68
    gt = RNG.uniform(-0.4, 0.4, (3, 2 * n)).astype("float32")
    packed = np.concatenate([gt, RNG.uniform(0, 1, (3, 2 * n)).astype("float32")], axis=1)
    shapes = gt[:, None] + RNG.normal(0, 0.05, (3, 4, 2 * n)).astype("float32")
    y_pred = np.concatenate([shapes, np.zeros((3, 4, 1), "float32")], axis=-1)
    cfg = SimpleNamespace(loss=LossConfig("acr", acr_lambda=4.0, acr_scale=8.0), model=MusicaConfig(error_weight=0.0),
                          crop=SimpleNamespace(input_size=128))
    loss = training_objective(cfg, n, (36, 45))["loss"]["cascade"]
    assert loss.scale == 8.0 and loss.get_config()["scale"] == 8.0
    ref = np.mean([keras.ops.convert_to_numpy(ACRLoss(lambda_=4.0, scale=8.0, num_coords=2 * n)(packed, shapes[:, s]))
                   for s in range(4)])
    assert float(keras.ops.convert_to_numpy(loss(packed, y_pred))) == pytest.approx(ref, rel=1e-5)
    unscaled = training_objective(SimpleNamespace(**{**vars(cfg), "loss": LossConfig("acr", acr_lambda=4.0)}), n,
                                  (36, 45))["loss"]["cascade"]
    assert abs(float(keras.ops.convert_to_numpy(unscaled(packed, y_pred))) - ref) > 1e-3 * abs(ref)
    with pytest.raises(ValueError, match="ACR loss only"):
        CascadeLoss("l2", n, 4, scale=8.0)


def test_h5_round_trip_gives_identical_outputs(tmp_path):
    model = tiny()
    # make the weights non-trivial (the shape updates start at zero)
    for w in model.weights:
        if w.trainable:
            w.assign(RNG.normal(0, 0.05, tuple(w.shape)).astype("float32"))
    x = RNG.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    before = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
    path = tmp_path / "musica.h5"
    model.save(path)
    loaded = load_model(path)
    after = {k: keras.ops.convert_to_numpy(v) for k, v in loaded(x).items()}
    assert set(after) == set(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert np.ptp(before["landmarks"]) > 0 and not np.allclose(before["stages"][:, 0], before["stages"][:, -1])
    # every custom layer round-trips through its config
    for layer in (ImagePyramid(2, grey=False), PatchSampler([1, 3], 6, 4, normalize=False), PatchEncoder(8, 3, (2, 4), 4)):
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.slow
def test_builds_trains_saves_and_exits_early_on_jax(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, numpy as np, keras
        assert keras.backend.backend() == "jax"
        from acrloss.models.musica import build_musica, OUTPUT_KEYS
        from acrloss.tasks.musica import compile_arguments
        from acrloss.models import load_model
        from acrloss.early_exit import EarlyExitCascade
        rng = np.random.default_rng(0)
        model = build_musica(rng.uniform(-0.3, 0.3, 136), input_size=32, stage_levels=(2, 1, 0),
                             stage_points=("coarse", "half", "all"), patch_size=4, channels=(4, 8), hidden_units=16)
        model.compile(optimizer="adam", **compile_arguments(68, (36, 45), 3, "l2"))
        x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
        y = rng.uniform(-0.3, 0.3, (8, 136)).astype("float32")
        hist = model.fit(x, {{k: y for k in OUTPUT_KEYS}}, epochs=2, batch_size=4, verbose=0).history
        path = "{tmp_path / 'jax.h5'}"
        model.save(path)
        loaded = load_model(path)
        same = all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
                   for a, b in zip(model(x).values(), loaded(x).values()))
        runner = EarlyExitCascade(loaded)
        one, every = runner.run(x, np.inf), runner.run(x, -np.inf)
        full = keras.ops.convert_to_numpy(loaded(x)["landmarks"])
        print(json.dumps({{"loss": hist["loss"], "same": same, "one": one.faces_per_stage.tolist(),
                          "all": every.faces_per_stage.tolist(),
                          "match": float(np.abs(every.landmarks - full).max())}}))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["loss"]) == 2 and all(math.isfinite(v) for v in out["loss"])
    assert out["same"] is True
    assert out["one"] == [8, 0, 0] and out["all"] == [8, 8, 8]
    assert out["match"] < 1e-5


@pytest.mark.slow
def test_tiny_real_data_training_run_and_evaluation(w300_dir, tmp_path, monkeypatch):
    from acrloss import AugmentConfig
    from acrloss.test import Test as Evaluate
    from acrloss.train import Train

    monkeypatch.setenv("ACRLOSS_QUIET", "1")
    from acrloss.config import LossConfig, MusicaConfig

    options = MusicaConfig(stage_levels=(1, 0), stage_points=("half", "all"), patch_size=8, channels=(4, 8), hidden_units=32)
    trainer = Train(arch="musica", dataset_name="300w", save_path=tmp_path / "run", data_dir=w300_dir,
                    loss=LossConfig("acr"), epochs=2, max_train_faces=40, batch_size=16, input_size=64,
                    augment=AugmentConfig.none(), workers=1, learning_rate=2e-3, model=options)
    summary = trainer.train()
    hist = summary["history"]
    assert len(hist["loss"]) == 2 and all(math.isfinite(v) for v in hist["loss"])
    for key in ("val_landmarks_nme", "val_cascade_nme_s1", "val_cascade_nme_s2", "val_cascade_err_mae"):
        assert len(hist[key]) == 2, key
    assert hist["val_landmarks_nme"] == pytest.approx(hist["val_cascade_nme_s2"], rel=1e-4)  # final stage = landmarks
    meta = json.loads((tmp_path / "run" / "best.h5.json").read_text())
    assert meta["monitor"] == "val_landmarks_nme"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["arch"] == "musica" and config["model"]["hidden_units"] == 32
    model = load_model(tmp_path / "run" / "best.h5")
    # the initial shape is the mean of the training faces' labels
    from acrloss.data_prep.pipeline import normalized_labels

    train_samples, _ = trainer._samples()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.get_layer("initial_state").mean_shape),
                               normalized_labels(train_samples, trainer.config.crop).mean(0), atol=1e-6)
    result = Evaluate().test_model(ds_name="300w", pretrained_model_path=tmp_path / "run" / "best.h5", data_dir=w300_dir,
                                   max_faces=8, batch_size=8, subsets=("common",))
    common = result["subsets"]["common"]
    assert common["n"] == 8 and math.isfinite(common["nme"]) and result["input_size"] == 64


def test_stage_metrics_match_the_nme_by_hand():
    from acrloss.metrics import nme as nme_fn
    from acrloss.metrics import ErrorMAE, StageNME

    rng = np.random.default_rng(0)
    B, T, N = 5, 4, 68
    y_true = rng.normal(0, 0.2, (B, 4 * N)).astype("float32")  # points + Φ
    y_pred = rng.normal(0, 0.2, (B, T, 2 * N + 1)).astype("float32")  # cascade: points + predicted error
    gt = y_true[:, : 2 * N].reshape(B, N, 2)
    per_stage = [nme_fn(y_pred[:, t, : 2 * N].reshape(B, N, 2), gt) for t in range(T)]
    stage = StageNME(2)
    stage.update_state(y_true, y_pred)
    assert float(stage.result()) == pytest.approx(100 * per_stage[2].mean(), rel=1e-5)
    mae = ErrorMAE()
    mae.update_state(y_true, y_pred)
    expected = 100 * np.mean([np.abs(per_stage[t] - y_pred[:, t, 2 * N]) for t in range(T)])
    assert float(mae.result()) == pytest.approx(expected, rel=1e-5)
    assert StageNME.from_config(stage.get_config()).stage == 2
