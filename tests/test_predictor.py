"""Tests of :mod:`acrloss.predictor`: one predictor for Keras, TFLite and ONNX models, the same
points as ``Test``, batching that does not change results, and clear errors.

Real faces come from the 300-W common test set (``../shared/data/300w`` or env
``ACRLOSS_300W``); those tests skip with the reason when it is absent. The shipped
MobileNetV2 model is exported once per module (about 15 s per format) when the export extra
is installed.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest

from acrloss.data_prep.crop import face_box
from acrloss.data_prep.datasets import available_subsets
from acrloss.data_prep.images import read_image
from acrloss.metrics import nme
from acrloss.predictor import LandmarkPredictor, PredictorError, PredictorOptions
from acrloss.presets import resolve_model

SHIPPED = "mnv2_acr_300w"


def _shipped_path():
    try:
        return resolve_model(SHIPPED)
    except FileNotFoundError as exc:  # pragma: no cover - a checkout without the models
        pytest.skip(f"shipped model {SHIPPED} not found ({exc})")


@pytest.fixture(scope="module")
def keras_predictor() -> LandmarkPredictor:
    return LandmarkPredictor(_shipped_path())


@pytest.fixture(scope="module")
def faces(w300_dir):
    """Six evenly spaced faces of 300-W common: [(sample, rgb image)]."""
    samples = available_subsets(w300_dir, ["common"])["common"]
    idx = np.linspace(0, len(samples) - 1, 6).round().astype(int)
    return [(samples[i], read_image(samples[i].image_path)) for i in idx]


def tiny_model(size: int = 32, points: int = 68) -> keras.Model:
    inp = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inp))
    return keras.Model(inp, keras.layers.Dense(2 * points)(x))


# ------------------------------------------------------------------ Keras, TFLite, ONNX
@pytest.fixture(scope="module")
def exported(tmp_path_factory, keras_predictor):
    """{format: path} of the shipped model exported to every runtime that is installed."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export needs the TensorFlow backend")
    pytest.importorskip("ai_edge_litert", reason="the export extra (TFLite runtime) is not installed")
    from acrloss.export import export_onnx, export_tflite, parity_crops

    out = tmp_path_factory.mktemp("predictor_export")
    crops, _ = parity_crops(keras_predictor.input_size, n=4)
    paths = {"tflite": out / "m.tflite"}
    export_tflite(keras_predictor.model, paths["tflite"], crops=crops)
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        pass
    else:
        paths["onnx"] = out / "m.onnx"
        export_onnx(keras_predictor.model, paths["onnx"], crops=crops)
    return paths


def test_keras_tflite_onnx_give_the_same_points_on_real_faces(keras_predictor, exported, faces):
    items = [(rgb, face_box(s.points)) for s, rgb in faces]
    gt = np.stack([s.points for s, _ in faces])
    ref = np.concatenate([p.points for p in keras_predictor.predict_batch(items)])
    side = np.array([max(b[2] - b[0], b[3] - b[1]) for _, b in items])
    assert 100 * nme(ref, gt).mean() < 6  # real predictions, not noise
    for fmt, path in exported.items():
        runtime = LandmarkPredictor(path, PredictorOptions(num_threads=1))
        assert runtime.model_path == str(path) and runtime.input_size == keras_predictor.input_size
        got = np.concatenate([p.points for p in runtime.predict_batch(items)])
        # export parity is 1e-4 in normalized crop units = 1.25e-4 of the face box side in the photo
        err = np.abs(got - ref).max(axis=(1, 2)) / side
        assert err.max() < 2.5e-4, (fmt, err)


# ------------------------------------------------------------------ the same points as Test
def test_predictor_points_give_the_nme_test_reports(keras_predictor, w300_dir, tmp_path):
    from acrloss.test import Test

    n = 5
    result = Test().test_model("300w", _shipped_path(), data_dir=w300_dir, subsets=["common"], max_faces=n)
    samples = available_subsets(w300_dir, ["common"])["common"][:n]
    gt = np.stack([s.points for s in samples])
    pred = keras_predictor.predict_samples(samples)
    assert result["subsets"]["common"]["n"] == n
    assert 100 * nme(pred, gt).mean() == pytest.approx(result["subsets"]["common"]["nme"], abs=1e-9)
    # the photo path on the same landmark boxes cuts the same crops: the same points
    photo = np.concatenate([keras_predictor.predict(read_image(s.image_path), face_box(s.points)).points for s in samples])
    np.testing.assert_allclose(photo, pred, atol=1e-3)  # batch 1 vs 5: float32 noise only
    # a margin that is not the model's changes the crops, and with them the points: the check can fail
    wide = keras_predictor.with_options(margin=0.5).predict_samples(samples)
    assert np.abs(wide - pred).max() > 0.5


# ------------------------------------------------------------------ batching
@pytest.mark.parametrize("options", [dict(), dict(refine=1, tta=True)], ids=["one_pass", "refine1_tta"])
def test_batched_equals_one_by_one(keras_predictor, faces, options):
    items = [(rgb, np.stack([face_box(s.points), face_box(s.points) + [5, -3, 5, -3]])) for s, rgb in faces[:3]]
    batched = keras_predictor.with_options(batch_size=4, **options).predict_batch(items)
    single = keras_predictor.with_options(batch_size=1, **options)
    for (rgb, boxes), many in zip(items, batched):
        for k, box in enumerate(boxes):
            one = single.predict(rgb, box[None])
            np.testing.assert_allclose(many.points[k], one.points[0], atol=0.02)  # float32 batch noise (< 0.01 px)
            if options.get("tta"):
                assert many.flip_disagreement[k] == pytest.approx(one.flip_disagreement[0], rel=1e-3, abs=1e-6)
            else:
                assert many.flip_disagreement is None
    # the two boxes of one face give different (shifted) crops and points: the comparison is not trivial
    assert np.abs(batched[0].points[0] - batched[0].points[1]).max() > 0.01


def test_refine_and_tta_change_the_points(keras_predictor, faces):
    s, rgb = faces[0]
    box = face_box(s.points) + [-15, -10, 15, 12]  # a loose box: refinement moves the crop
    plain = keras_predictor.predict(rgb, box)
    refined = keras_predictor.with_options(refine=1).predict(rgb, box)
    assert np.abs(plain.points - refined.points).max() > 0.05
    assert refined.transforms[0].matrix.tolist() != plain.transforms[0].matrix.tolist()
    q = keras_predictor.with_options(tta=True).predict(rgb, box).flip_disagreement
    assert q is not None and q.shape == (1,) and 0 < q[0] < 0.2


# ------------------------------------------------------------------ MuSiCa stages / early exit
def test_musica_stages_and_early_exit(faces):
    try:
        path = resolve_model("musica_acr_300w")
    except FileNotFoundError as exc:  # pragma: no cover
        pytest.skip(f"musica_acr_300w not shipped here ({exc})")
    items = [(rgb, face_box(s.points)) for s, rgb in faces[:3]]
    full = LandmarkPredictor(path)
    ref = np.concatenate([p.points for p in full.predict_batch(items)])
    every = full.with_options(early_exit=float("-inf"))
    np.testing.assert_allclose(np.concatenate([p.points for p in every.predict_batch(items)]), ref, atol=1e-2)
    last = full.with_options(stages=every._runner.num_stages)
    np.testing.assert_allclose(np.concatenate([p.points for p in last.predict_batch(items)]), ref, atol=1e-4)
    first = np.concatenate([p.points for p in full.with_options(stages=1).predict_batch(items)])
    stop = np.concatenate([p.points for p in full.with_options(early_exit=float("inf")).predict_batch(items)])
    np.testing.assert_allclose(stop, first, atol=1e-2)  # +inf: every face stops after stage 1
    assert np.abs(first - ref).max() > 0.1
    with pytest.raises(PredictorError, match="stages=99, but the cascade has"):
        full.with_options(stages=99)


# ------------------------------------------------------------------ errors
def test_bad_model_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        LandmarkPredictor(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not a model")
    with pytest.raises(ValueError, match="junk.h5"):
        LandmarkPredictor(tmp_path / "junk.h5")
    (tmp_path / "junk.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="junk.tflite"):
        LandmarkPredictor(tmp_path / "junk.tflite")
    with pytest.raises(TypeError, match="input_shape"):
        LandmarkPredictor(object())


def test_wrong_input_and_point_count():
    inp = keras.Input((32, 48, 3))
    flat = keras.Model(inp, keras.layers.Dense(136)(keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(PredictorError, match=r"square RGB crops"):
        LandmarkPredictor(flat)
    pred = LandmarkPredictor(tiny_model(points=98))
    assert pred.num_points == 98
    with pytest.raises(PredictorError, match=r"predicts 98 points; 300w has 68 \(wrong point count\)"):
        pred.check_points(68, "300w")
    pred.check_points(98, "wflw")
    with pytest.raises(PredictorError, match=r"crops must be \(B, 32, 32, 3\)"):
        pred.predict_crops(np.zeros((2, 16, 16, 3), np.float32))


@pytest.mark.parametrize("boxes, match", [
    ([10, 10, 5, 40], "bad face box"),           # x1 < x0
    ([10, np.nan, 30, 40], "bad face box"),      # not finite
    ([10, 10, 30], r"\(F, 4\)"),                 # three numbers
    ([["a", "b", "c", "d"]], "must be numbers"),
])
def test_bad_boxes_are_refused(boxes, match):
    pred = LandmarkPredictor(tiny_model())
    with pytest.raises(PredictorError, match=match):
        pred.predict(np.zeros((64, 64, 3), np.uint8), boxes)


def test_bad_options_are_refused():
    for bad in (dict(refine=-1), dict(batch_size=0), dict(tta="yes"), dict(margin=-0.1), dict(decoder="nope"),
                dict(stages=0), dict(early_exit=float("nan")), dict(stages=2, early_exit=0.05)):
        with pytest.raises(PredictorError):
            PredictorOptions(**bad)
    model = tiny_model()
    with pytest.raises(PredictorError, match="num_threads applies to .tflite / .onnx files only"):
        LandmarkPredictor(model, PredictorOptions(num_threads=1))
    with pytest.raises(PredictorError, match="need a MuSiCa model"):
        LandmarkPredictor(model, PredictorOptions(early_exit=0.05))
    with pytest.raises(PredictorError):  # not a heatmap model: no decoder to switch
        LandmarkPredictor(model, PredictorOptions(decoder="dark"))
    with pytest.raises(PredictorError, match="cannot change on a loaded model"):
        LandmarkPredictor(model).with_options(num_threads=2)
