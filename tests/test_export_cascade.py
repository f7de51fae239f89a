"""Tests of :mod:`acrloss.export_cascade`: the shipped MuSiCa cascade exported per stage to
TFLite runs, per face, exactly the stages Keras' early exit runs, on real 300-W faces; its
dynamic-range quantized file passes (or is refused by) the NME gate of acrloss.quantize."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed (pip install -e '.[export]')")
if keras.backend.backend() != "tensorflow":  # pragma: no cover
    pytest.skip("export needs the TensorFlow backend", allow_module_level=True)

from acrloss.data_prep.crop import CropTransform  # noqa: E402
from acrloss.data_prep.datasets import w300_subset  # noqa: E402
from acrloss.data_prep.images import read_image  # noqa: E402
from acrloss.early_exit import EarlyExitCascade  # noqa: E402
from acrloss.export import ExportError  # noqa: E402
from acrloss.export_cascade import ExportedCascade, export_cascade_tflite  # noqa: E402
from acrloss.models.regressor import load_model  # noqa: E402
from acrloss.quantize import QuantizationError  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "pre_trained_models" / "musica_acr_300w.h5"
EVAL_FACES = 60  # common-test faces of the quantized files' NME gate (all 554 by default)


@pytest.fixture(scope="module")
def musica():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} not found")
    return load_model(SHIPPED)


@pytest.fixture(scope="module")
def crops(w300_dir):
    samples = w300_subset(w300_dir, "common")
    idx = np.linspace(0, len(samples) - 1, 24).round().astype(int)
    return np.stack([CropTransform.from_points(samples[i].points, 128).warp(read_image(samples[i].image_path))
                     for i in idx]).astype(np.float32)


@pytest.fixture(scope="module")
def exported(musica, tmp_path_factory, w300_dir):
    path = tmp_path_factory.mktemp("cascade") / "musica.cascade.tflite"
    report = export_cascade_tflite(musica, path, data_dir=w300_dir)
    return path, report


def test_cascade_export_passes_parity_per_stage(exported):
    path, report = exported
    assert path.is_file() and report.stages == 4
    assert report.max_abs_diff <= 1e-4 and len(report.stage_diff) == 4
    assert "300-W" in report.parity_source


def test_exported_early_exit_runs_the_expected_stages_per_face(musica, exported, crops):
    keras_runner = EarlyExitCascade(musica, compiled=False)
    runner = ExportedCascade(exported[0], num_threads=1, exits="all")
    full = keras_runner.run(crops, float("-inf"))
    # thresholds between the faces' own predicted errors: a mix of stop stages
    errs = np.concatenate(full.stage_errors[:3])
    thresholds = [float("inf"), float(np.quantile(errs, 0.6)), float(np.quantile(errs, 0.3)), float("-inf")]
    seen_mixed = False
    for th in thresholds:
        ref = keras_runner.run(crops, th)
        runner.reset_counters()
        got = runner.run(crops, th)
        np.testing.assert_array_equal(got.stopped_at, ref.stopped_at)
        np.testing.assert_array_equal(got.faces_per_stage, ref.faces_per_stage)
        # the exported stage functions really received only the still-active faces
        np.testing.assert_array_equal(runner.rows_run, ref.faces_per_stage)
        np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=1e-4)
        seen_mixed |= len(np.unique(ref.stopped_at)) > 1
    assert seen_mixed, "no threshold split the faces across stages; the test would be trivial"
    runner.reset_counters()
    assert runner.run(crops, float("inf")).faces_per_stage.tolist() == [len(crops), 0, 0, 0]
    assert runner.rows_run.tolist() == [len(crops), 0, 0, 0]
    runner.reset_counters()
    runner.run(crops[:1], float("-inf"))
    assert runner.rows_run.tolist() == [1, 1, 1, 1]


def test_exported_cascade_is_callable_like_a_model(musica, exported, crops):
    runner = ExportedCascade(exported[0], threshold=float("-inf"))
    out = runner(crops[:3])
    ref = keras.ops.convert_to_numpy(musica(crops[:3], training=False)["landmarks"])
    assert out.shape == (3, 136) and runner.input_shape == (None, 128, 128, 3)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    with pytest.raises(ValueError, match="expected a"):
        runner(crops[:1, :64])


def test_non_cascade_model_is_a_clear_error(tmp_path):
    inp = keras.Input((32, 32, 3))
    model = keras.Model(inp, keras.layers.Dense(136)(keras.layers.Flatten()(inp)))
    with pytest.raises(ExportError, match="only MuSiCa"):
        export_cascade_tflite(model, tmp_path / "x.tflite")
    assert not (tmp_path / "x.tflite").exists()
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="bad.tflite"):
        ExportedCascade(tmp_path / "bad.tflite")


def _ops_per_signature(path) -> dict[str, list[str]]:
    """Operator names of every subgraph of a ``.tflite`` file, by subgraph name."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    out = {}
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        out[(sub.Name() or b"").decode()] = [names[codes[sub.Operators(j).OpcodeIndex()]]
                                              for j in range(sub.OperatorsLength())]
    return out


def test_exported_stages_sample_patches_by_one_window_gather(exported):
    """The export traces the window sampler (``bilinear_patches_window``): one gather of a
    pixel window per patch, no dense ``(K*P, H) x (H, W)`` interpolation products
    (``BATCH_MATMUL``, ~2x the time per face in LiteRT) and no transposes of the image."""
    per_sub = _ops_per_signature(exported[0])
    assert sorted(per_sub) == ["head", "stage_1", "stage_2", "stage_3", "stage_4", "start"]
    stages = [ops for ops in per_sub.values() if "CONV_2D" in ops]
    assert len(stages) == 5, {k: len(v) for k, v in per_sub.items()}  # four stages and the head (three of them)
    for ops in stages:
        assert "GATHER" in ops
        # the dense form multiplies, the row-copy form (before) transposed the image and its columns
        assert "BATCH_MATMUL" not in ops and "TRANSPOSE" not in ops, sorted(set(ops))


def test_one_face_fast_path_matches_the_batch_path(exported, crops):
    """``run`` on one face (its own lean loop) gives what the compacting batch path gives
    that face, runs exactly its stages, and returns fresh arrays (no runtime buffer reused
    across calls)."""
    runner = ExportedCascade(exported[0], num_threads=1, exits="all")
    full = runner.run(crops, float("-inf"))
    th = float(np.quantile(np.concatenate(full.stage_errors[:3]), 0.4))
    batch = runner.run(crops, th)
    assert len(np.unique(batch.stopped_at)) > 1  # a mix of exits, or the test is trivial
    outs = []
    for i in range(len(crops)):
        runner.reset_counters()
        one = runner.run(crops[i : i + 1], th)
        assert one.stopped_at.tolist() == [batch.stopped_at[i]]
        expected = (np.arange(runner.num_stages) <= batch.stopped_at[i]).astype(int)
        assert runner.rows_run.tolist() == expected.tolist() == one.faces_per_stage.tolist()
        assert len(one.stage_errors) == runner.num_stages
        np.testing.assert_allclose(one.landmarks, batch.landmarks[i : i + 1], atol=1e-5)
        np.testing.assert_allclose(one.errors, batch.errors[i : i + 1], atol=1e-5)
        assert one.flagged.tolist() == [bool(batch.flagged[i])]
        outs.append(one)
    # earlier results are untouched by later calls (different faces give different points)
    for i, one in enumerate(outs):
        np.testing.assert_allclose(one.landmarks, batch.landmarks[i : i + 1], atol=1e-5)
    assert not np.shares_memory(outs[0].landmarks, outs[1].landmarks)


@pytest.fixture(scope="module")
def dynamic(musica, tmp_path_factory, w300_dir):
    path = tmp_path_factory.mktemp("cascade_dyn") / "musica.cascade.dynamic.tflite"
    report = export_cascade_tflite(musica, path, data_dir=w300_dir, quantize="dynamic", eval_faces=EVAL_FACES)
    return path, report


def test_dynamic_range_cascade_passes_the_nme_gate(dynamic, exported):
    path, report = dynamic
    assert path.is_file() and report.stages == 4 and report.mode == "dynamic-range" and report.atol is None
    assert report.eval_faces == EVAL_FACES and "300-W common test set" in report.eval_source
    assert report.nme_quantized <= report.nme_float + report.max_nme_increase and report.max_nme_increase == 0.10
    # really quantized: int8 weights (about a quarter of the float file), no longer float-exact
    assert report.bytes < 0.4 * exported[1].bytes
    assert report.max_abs_diff > 1e-4


def test_dynamic_range_cascade_runs_the_expected_stages_close_to_float(dynamic, exported, crops):
    quant = ExportedCascade(dynamic[0], num_threads=1, exits="all")
    full_q = quant.run(crops, float("-inf"))
    full_f = ExportedCascade(exported[0], num_threads=1).run(crops, float("-inf"))
    diff = np.abs(full_q.landmarks - full_f.landmarks)  # normalized coordinates; 0.01 = 1.3 px of 128
    assert diff.max() < 0.02 and diff.mean() < 0.003, (diff.max(), diff.mean())
    assert np.abs(full_q.errors - full_f.errors).max() < 0.01
    # per face: it stops at the first stage whose own predicted error is below the threshold
    errs = np.stack(full_q.stage_errors)  # (T, M), every stage run
    th = float(np.quantile(errs[:3], 0.4))
    below = errs[:3] < th
    expected = np.where(below.any(axis=0), below.argmax(axis=0), 3)
    assert len(np.unique(expected)) > 1, "no mix of exits; the test would be trivial"
    quant.reset_counters()
    got = quant.run(crops, th)
    np.testing.assert_array_equal(got.stopped_at, expected)
    counts = [(expected >= t).sum() for t in range(4)]
    assert got.faces_per_stage.tolist() == quant.rows_run.tolist() == counts
    for i in (0, 5, 11):  # the one-face loop agrees
        quant.reset_counters()
        one = quant.run(crops[i : i + 1], th)
        assert one.stopped_at.tolist() == [expected[i]]
        assert quant.rows_run.tolist() == (np.arange(4) <= expected[i]).astype(int).tolist()
        np.testing.assert_allclose(one.landmarks, got.landmarks[i : i + 1], atol=1e-5)


def test_dynamic_range_cascade_failing_the_gate_is_refused(musica, w300_dir, tmp_path):
    out = tmp_path / "refused.cascade.tflite"
    with pytest.raises(QuantizationError, match=r"refused.cascade.tflite.*NME .* % vs the float model's .* %") as err:
        # a gate no file can pass: 1 point better than the float model
        export_cascade_tflite(musica, out, data_dir=w300_dir, quantize="dynamic", eval_faces=EVAL_FACES,
                              max_nme_increase=-1.0)
    assert "nothing written" in str(err.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cascade_quantize_options_are_validated(musica, tmp_path):
    out = tmp_path / "x.tflite"
    with pytest.raises(ValueError, match="unknown cascade quantization 'int8'"):
        export_cascade_tflite(musica, out, quantize="int8")
    with pytest.raises(ValueError, match="atol"):
        export_cascade_tflite(musica, out, quantize="dynamic", atol=1e-3)
    with pytest.raises(ValueError, match="NME gate"):
        export_cascade_tflite(musica, out, eval_faces=10)
    assert not out.exists()


def test_signature_calls_match_the_runtime_runner_across_batch_sizes(exported, crops):
    """The cascade's own signature calls (resize and allocate only when a shape changes) give
    exactly the LiteRT SignatureRunner's outputs, batch sizes alternating 1, 5, 1, 24, 1."""
    from ai_edge_litert.interpreter import Interpreter

    runner = ExportedCascade(exported[0], num_threads=1)
    plain = Interpreter(model_path=str(exported[0]), num_threads=1)
    start, stage = plain.get_signature_runner("start"), plain.get_signature_runner("stage_1")
    for lo, hi in ((0, 1), (1, 6), (6, 7), (0, 24), (23, 24)):
        x = np.ascontiguousarray(crops[lo:hi])
        want, got = start(image=x), runner._start(image=x)
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        level = want[f"level_{runner.levels[0]}"]
        shape = np.repeat(runner.mean_shape[None], hi - lo, 0)
        hidden = np.zeros((hi - lo, runner.hidden_units), np.float32)
        want, got = stage(image=level, shape=shape, hidden=hidden), runner._stage_runners[0](image=level, shape=shape, hidden=hidden)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    with pytest.raises(ValueError, match="signature inputs"):
        runner._start(picture=crops[:1])


def test_head_path_stops_only_before_the_last_stage_in_two_calls(musica, exported, crops):
    """``exits="last"`` (the default with a ``head``): the Keras cascade with the same single
    exit gives the same stops and points; the head ran every face once and the last stage
    only the faces at or above the threshold; one face agrees with the batch."""
    runner = ExportedCascade(exported[0], num_threads=1)
    assert runner.exits == "last" and runner.exit_stages == (2,) and runner._head is not None
    keras_runner = EarlyExitCascade(musica, compiled=False)
    keras_runner.exit_stages = (2,)
    full = keras_runner.run(crops, float("-inf"))
    th = float(np.median(full.stage_errors[2]))
    expected = np.where(full.stage_errors[2] < th, 2, 3)
    assert len(np.unique(expected)) == 2
    for threshold, stops in ((th, expected), (float("-inf"), np.full(len(crops), 3)), (float("inf"), np.full(len(crops), 2))):
        ref = keras_runner.run(crops, threshold)
        runner.reset_counters()
        got = runner.run(crops, threshold)
        np.testing.assert_array_equal(ref.stopped_at, stops)
        np.testing.assert_array_equal(got.stopped_at, stops)
        n_last = int((stops == 3).sum())
        assert runner.rows_run.tolist() == got.faces_per_stage.tolist() == [len(crops)] * 3 + [n_last]
        np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=1e-4)
        np.testing.assert_allclose(got.errors, ref.errors, atol=1e-4)
        for t in range(3):
            np.testing.assert_allclose(got.stage_errors[t], full.stage_errors[t], atol=1e-4)
    for i in (0, int(np.argmax(expected == 2)), int(np.argmax(expected == 3))):
        runner.reset_counters()
        one = runner.run(crops[i : i + 1], th)
        assert one.stopped_at.tolist() == [expected[i]]
        assert runner.rows_run.tolist() == [1, 1, 1, int(expected[i] == 3)]
    for exits in ("last", "all"):  # no faces (a photo without any): an empty result, not a runtime error
        empty = ExportedCascade(exported[0], exits=exits).run(crops[:0], th)
        assert empty.landmarks.shape == (0, 136) and empty.faces_per_stage.tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="exits must be"):
        ExportedCascade(exported[0], exits="first")
