"""Tests of :mod:`acrloss.export`: TFLite / ONNX files agree with Keras, run inside FaceAligner,
and a failed parity check writes nothing.

The shipped MobileNetV2 checkpoint is exported once per module (about 15 s per format);
the error paths use a tiny model. Real face crops come from the 300-W common test set
when ``../shared/data/300w`` is present, else from matplotlib's bundled portrait.
"""
from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("tf2onnx", reason="the export extra is not installed (pip install -e '.[export]')")
if keras.backend.backend() != "tensorflow":  # pragma: no cover
    pytest.skip("export needs the TensorFlow backend", allow_module_level=True)

from acrloss import export as ex  # noqa: E402
from acrloss.align import FaceAligner, resolve_model  # noqa: E402
from acrloss.data_prep.crop import CropTransform  # noqa: E402
from acrloss.data_prep.images import read_image  # noqa: E402
from acrloss.models.regressor import landmarks_from_output, load_model  # noqa: E402

ATOL = 1e-4
SHIPPED = "mnv2_acr_300w"


def tiny_model(size: int = 32, dict_output: bool = False) -> keras.Model:
    """A small random conv net (68 points); optionally with a dict output like heatmap models."""
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    pts = keras.layers.Dense(136, name="landmarks")(x)
    if dict_output:
        extra = keras.layers.Dense(5, name="extra")(x)
        return keras.Model(inp, {"landmarks": pts, "extra": extra})
    return keras.Model(inp, pts)


def real_crops(size: int, w300: Path | None, n: int = 6) -> np.ndarray:
    """Real face crops, from 300-W common when given, else the sample portrait."""
    if w300 is not None:
        from acrloss.data_prep.datasets import w300_subset

        samples = w300_subset(w300, "common")
        idx = np.linspace(0, len(samples) - 1, n).round().astype(int)[::-1]  # not the crops parity used
        return np.stack([CropTransform.from_points(samples[i].points, size).warp(read_image(samples[i].image_path))
                         for i in idx]).astype(np.float32)
    crops, _ = ex.parity_crops(size, n=n)
    return crops


@pytest.fixture(scope="module")
def shipped():
    path = resolve_model(SHIPPED)
    return load_model(path)


@pytest.fixture(scope="module")
def exported(shipped, tmp_path_factory):
    """{format: (path, report)} for the shipped model, exported once."""
    out = tmp_path_factory.mktemp("export")
    return {
        "tflite": (out / "m.tflite", ex.export_tflite(shipped, out / "m.tflite")),
        "onnx": (out / "m.onnx", ex.export_onnx(shipped, out / "m.onnx")),
    }


@pytest.fixture(scope="module")
def crops_300w():
    """The 300-W folder if present (no skip: the portrait is the fallback)."""
    env = os.environ.get("ACRLOSS_300W")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
    return p if (p / "helen").is_dir() else None


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_exported_matches_keras_on_real_crops(fmt, shipped, exported, crops_300w):
    path, report = exported[fmt]
    assert path.is_file() and path.stat().st_size == report.bytes > 1_000_000
    assert report.format == fmt and report.input_size == 160 and report.num_points == 68
    assert report.faces >= 1 and 0 <= report.max_abs_diff <= ATOL
    crops = real_crops(160, crops_300w)
    runner = ex.ExportedModel(path, num_threads=2)
    assert runner.input_shape == (None, 160, 160, 3) and runner.format == fmt
    ref = landmarks_from_output(shipped(crops, training=False))
    got = runner(crops)
    assert got.shape == ref.shape == (len(crops), 136)
    assert np.abs(got - ref).max() <= ATOL
    # batch size changes (1 -> many -> 1) keep working
    for k in (0, 3):
        np.testing.assert_allclose(runner(crops[k : k + 1])[0], ref[k], atol=ATOL)
    # points stay in the crop, a real face is not a constant output
    assert np.all(np.abs(got) < 0.6) and got.std(axis=0).max() > 1e-3
    assert ex.parity_diff(shipped, runner, crops) <= ATOL


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_face_aligner_runs_exported_files(fmt, exported, w300_dir):
    path, _ = exported[fmt]
    photo = w300_dir / "full" / "lfpw" / "testset" / "image_0001.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    keras_faces = FaceAligner(SHIPPED).get_landmarks(photo)
    by_runner = FaceAligner(ex.ExportedModel(path)).get_landmarks(photo)
    by_path = FaceAligner(str(path)).get_landmarks(photo)  # a .tflite/.onnx path is taken too
    assert len(keras_faces) == len(by_runner) == len(by_path) >= 1
    for a, b, c in zip(keras_faces, by_runner, by_path):
        # 1e-4 normalized x a crop of a few hundred pixels: well under 0.1 px
        np.testing.assert_allclose(b, a, atol=0.1)
        np.testing.assert_allclose(c, a, atol=0.1)


def test_dict_output_model_exports_its_landmarks(tmp_path):
    model = tiny_model(dict_output=True)
    report = ex.export_onnx(model, tmp_path / "d.onnx")
    assert report.num_points == 68 and report.max_abs_diff <= ATOL
    crops, _ = ex.parity_crops(32, n=3)
    got = ex.ExportedModel(tmp_path / "d.onnx")(crops)
    np.testing.assert_allclose(got, landmarks_from_output(model(crops)), atol=ATOL)


def test_failed_parity_raises_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "parity_diff", lambda *args: 0.5)
    target = tmp_path / "bad.tflite"
    with pytest.raises(ex.ParityError, match="bad.tflite.*0.5"):
        ex.export_tflite(tiny_model(), target)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind
    monkeypatch.setattr(ex, "parity_diff", lambda *args: float("nan"))
    with pytest.raises(ex.ParityError):
        ex.export_onnx(tiny_model(), tmp_path / "nan.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unconvertible_op_is_a_clear_error(tmp_path):
    inp = keras.Input((32, 32, 3))
    x = keras.ops.cast(inp, "int32")
    x = keras.ops.cast(keras.ops.bitwise_and(x, keras.ops.full_like(x, 7)), "float32")  # no TFLite builtin, not in opset 17
    model = keras.Model(inp, keras.layers.Dense(136)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ex.ExportError, match=r"bw.tflite: TFLite conversion failed.*BitwiseAnd"):
        ex.export_tflite(model, tmp_path / "bw.tflite")
    with pytest.raises(ex.ExportError, match=r"bw.onnx: ONNX conversion failed.*BitwiseAnd"):
        ex.export_onnx(model, tmp_path / "bw.onnx")
    assert list(tmp_path.iterdir()) == []


def test_exported_model_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        ex.ExportedModel(tmp_path / "missing.onnx")
    for name in ("garbage.onnx", "garbage.tflite"):
        (tmp_path / name).write_bytes(b"\x00not a model at all" * 10)
        with pytest.raises(ValueError, match=name):
            ex.ExportedModel(tmp_path / name)
    (tmp_path / "m.pb").write_bytes(b"x")
    with pytest.raises(ValueError, match="m.pb"):
        ex.ExportedModel(tmp_path / "m.pb")
    with pytest.raises(ValueError, match="m.pb"):
        ex.export_model(tiny_model(), tmp_path / "m.pb")
    assert ex.is_exported_path("a/b.ONNX") and not ex.is_exported_path("a.h5") and not ex.is_exported_path(3)


def test_cli_export_prints_the_parity(tmp_path, capsys, monkeypatch):
    from acrloss.cli import main

    ckpt = tmp_path / "tiny.h5"
    tiny_model().save(ckpt)
    out = tmp_path / "tiny.tflite"
    assert main(["export", str(ckpt), "--format", "tflite", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "max |difference|" in text
    diff = float(text.split("max |difference| = ")[1].split()[0])
    assert 0 <= diff <= ATOL
    assert ex.ExportedModel(out).input_shape == (None, 32, 32, 3)
    # a model that does not exist: usage error, names it
    assert main(["export", "no_such_model", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no_such_model" in capsys.readouterr().err
    # a failed parity check: exit 1, says so, writes nothing
    monkeypatch.setattr(ex, "parity_diff", lambda *args: 0.25)
    assert main(["export", str(ckpt), "--out", str(tmp_path / "off.onnx")]) == 1
    assert "differs from Keras by 0.25" in capsys.readouterr().err and not (tmp_path / "off.onnx").exists()
