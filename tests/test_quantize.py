"""Tests of :mod:`acrloss.quantize`: the NME gate writes a quantized file calibrated on real
300-W training crops and refuses one calibrated on a deliberately broken set; integer
TFLite files run in ExportedModel / FaceAligner through their quantization parameters."""
from __future__ import annotations


import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed (pip install -e '.[export]')")
if keras.backend.backend() != "tensorflow":  # pragma: no cover
    pytest.skip("export needs the TensorFlow backend", allow_module_level=True)

from acrloss.align import FaceAligner, resolve_model  # noqa: E402
from acrloss.export import ExportedModel  # noqa: E402
from acrloss.models.regressor import load_model  # noqa: E402
from acrloss.quantize import QuantizationError, calibration_crops, export_quantized  # noqa: E402

SHIPPED = "mnv2_acr_300w"
EVAL_FACES = 60
CALIB_FACES = 50


@pytest.fixture(scope="module")
def model():
    return load_model(resolve_model(SHIPPED))


@pytest.fixture(scope="module")
def int8_file(model, w300_dir, tmp_path_factory):
    """Full-integer int8, calibrated on real training crops, with a gate of 1 NME point."""
    path = tmp_path_factory.mktemp("q") / "m.int8.tflite"
    report = export_quantized(model, path, "int8", data_dir=w300_dir, calibration_faces=CALIB_FACES,
                              eval_faces=EVAL_FACES, max_nme_increase=1.0)
    return path, report


def test_calibration_crops_are_real_training_faces(w300_dir):
    crops, source = calibration_crops(64, w300_dir, n=5)
    assert crops.shape == (5, 64, 64, 3) and "train" in source
    assert crops.std() > 20  # real photos, not blank frames


def test_real_calibration_passes_the_gate(int8_file):
    path, report = int8_file
    assert path.is_file() and report.mode == "full-int8"
    assert 2.0 < report.nme_float < 8.0  # a real NME of a trained model on real faces
    assert report.nme_quantized <= report.nme_float + 1.0
    assert report.eval_faces == EVAL_FACES and report.calibration_faces == CALIB_FACES


def test_broken_calibration_is_refused_and_nothing_written(model, w300_dir, tmp_path, int8_file):
    crops, _ = calibration_crops(int(model.input_shape[1]), w300_dir, n=CALIB_FACES)
    broken = np.zeros_like(crops)  # every calibration frame black: activation ranges collapse
    broken[:, :4, :4] = crops[:, :4, :4] * 0.05  # (a few dim pixels, so ranges are not exactly zero)
    out = tmp_path / "broken.int8.tflite"
    with pytest.raises(QuantizationError, match="points worse") as info:
        export_quantized(model, out, "int8", data_dir=w300_dir, calibration=broken, eval_faces=EVAL_FACES,
                         max_nme_increase=1.0)  # the same gate the real calibration passed
    assert "nothing written" in str(info.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_int8_file_runs_in_exported_model_and_face_aligner(int8_file, model, w300_dir):
    path, _ = int8_file
    runner = ExportedModel(path, num_threads=1)
    assert runner.quantized_io and runner.input_shape == model.input_shape
    crops, _ = calibration_crops(int(model.input_shape[1]), w300_dir, n=4)
    got = runner(crops)
    ref = keras.ops.convert_to_numpy(model(crops, training=False))
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).mean() < 0.01  # quantized, but the same faces' points
    photos = sorted((w300_dir / "full").rglob("*.jpg"))
    if not photos:
        pytest.skip(f"no whole photos in {w300_dir / 'full'}")
    faces = FaceAligner(str(path)).get_landmarks(str(photos[0]))
    assert faces and np.asarray(faces[0]).shape == (68, 2)


def test_unknown_mode_and_misplaced_calibration_are_errors(model, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization"):
        export_quantized(model, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match="int8 quantization only"):
        export_quantized(model, tmp_path / "m.tflite", "float16", calibration=np.zeros((2, 160, 160, 3), np.float32))
