"""Quantized TFLite / ONNX exports, written only when they keep the float model's accuracy.

::

    from acrloss.quantize import export_quantized
    report = export_quantized("mnv2_acr_300w", "out/mnv2_acr_300w.int8.tflite", quantize="int8")
    report.nme_float, report.nme_quantized, report.mode     # percent, percent, "full-int8"
    FaceAligner("out/mnv2_acr_300w.int8.tflite")             # ExportedModel (de)quantizes I/O

or ``acrloss export MODEL --format tflite --quantize int8 --out FILE``.

Modes:

- ``int8``, TFLite: full-integer quantization (int8 weights and activations, ``uint8``
  image input with scale 1 so [0, 255] pixels are exact, int8 output with its scale and
  zero point), calibrated on a representative set of real face crops from the 300-W
  *training* folders (afw, helen/trainset, lfpw/trainset: ``calibration_faces`` evenly
  spaced faces, cropped from their landmark box like :class:`acrloss.test.Test` does). When
  the converter cannot quantize every op to integers, dynamic-range quantization (int8
  weights, float activations) is the fallback (``mode == "dynamic-range"``).
- ``int8``, ONNX: ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8
  activations, MinMax calibration on the same crops) of the float export.
- ``dynamic``: dynamic-range quantization on request (int8 weights, activations quantized
  per call by the runtime; no calibration): TFLite's ``Optimize.DEFAULT`` alone, ONNX
  Runtime's ``quantize_dynamic``.
- ``float16``: float16 weights (TFLite: ``supported_types=[float16]``, dequantized at load
  time on CPU; ONNX: ``onnxruntime.transformers.float16`` with float32 inputs/outputs kept).

Accuracy gate: the float model (Keras) and the quantized file predict the same real crops
(the 300-W common test set, ``eval_faces`` evenly spaced faces, cropped from their landmark
box; the gate is a check, nothing is tuned on it); the file is written (atomically) only if
its mean NME (outer eye corners, percent) is at most ``max_nme_increase`` (default 0.10)
points above the float model's, else :class:`QuantizationError` names both numbers and
nothing is written. Float exports keep their 1e-4 parity check (:mod:`acrloss.export`).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from acrloss.config import CropConfig
from acrloss.io import atomic_path
from acrloss.export import (
    EXPORT_FORMATS,
    ExportError,
    ExportedModel,
    _as_keras_model,
    _input_size,
    _need,
    _quiet_loggers,
    format_for_path,
    frozen_function,
    onnx_bytes,
)

__all__ = ["export_quantized", "QuantizeReport", "QuantizationError", "calibration_crops", "evaluation_set",
           "QUANTIZE_MODES", "MAX_NME_INCREASE", "nme_gate_holds"]

QUANTIZE_MODES = ("int8", "dynamic", "float16")
#: a quantized file may be at most this many NME points (percent) worse than the float model
MAX_NME_INCREASE = 0.10


class QuantizationError(ExportError):
    """The quantized file loses more accuracy than allowed (or cannot be made)."""


@dataclass
class QuantizeReport:
    """What :func:`export_quantized` made and measured (NMEs in percent)."""

    path: str
    format: str
    quantize: str
    mode: str  # "full-int8", "dynamic-range", "qdq-int8", "float16"
    nme_float: float
    nme_quantized: float
    max_nme_increase: float
    eval_faces: int
    eval_source: str
    calibration_faces: int
    calibration_source: str
    bytes: int
    seconds: float

    @property
    def nme_increase(self) -> float:
        return self.nme_quantized - self.nme_float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nme_increase": self.nme_increase}


def _data_dir(data_dir: Any) -> Path:
    from acrloss.presets import find_data_dir  # noqa: PLC0415

    found, why = find_data_dir("300w", data_dir)
    if found is None:
        raise QuantizationError(f"quantized export needs the real 300-W faces for calibration and the accuracy "
                                f"check ({why}); give data_dir / --data-dir")
    return Path(found)


def _crops(samples: Sequence[Any], size: int, n: int | None, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``(crops (n, S, S, 3) float32, points in crop pixels (n, N, 2))`` of evenly spaced samples."""
    from acrloss.data_prep.crop import CropTransform  # noqa: PLC0415
    from acrloss.data_prep.images import read_image  # noqa: PLC0415

    count = len(samples) if n is None else min(int(n), len(samples))
    idx = np.unique(np.linspace(0, len(samples) - 1, count).round().astype(int))
    crops, pts = [], []
    for i in idx:
        t = CropTransform.from_points(samples[i].points, size, margin)
        crops.append(t.warp(read_image(samples[i].image_path)))
        pts.append(t.forward(samples[i].points))
    return np.stack(crops).astype(np.float32), np.stack(pts)


def calibration_crops(size: int, data_dir: str | os.PathLike | None = None, n: int = 200,
                      margin: float = CropConfig.margin) -> tuple[np.ndarray, str]:
    """``(crops, source)``: ``n`` evenly spaced real faces of the 300-W training folders."""
    from acrloss.data_prep.datasets import w300_subset  # noqa: PLC0415

    found = _data_dir(data_dir)
    samples = w300_subset(found, "train")
    crops, _ = _crops(samples, size, n, margin)
    return crops, f"300-W train folders at {found} ({len(crops)} faces)"


def evaluation_set(size: int, data_dir: str | os.PathLike | None = None, n: int | None = None,
                   margin: float = CropConfig.margin) -> tuple[np.ndarray, np.ndarray, str]:
    """``(crops, points in crop pixels, source)``: the 300-W common test set (``n`` evenly
    spaced faces; ``None``: all 554)."""
    from acrloss.data_prep.datasets import w300_subset  # noqa: PLC0415

    found = _data_dir(data_dir)
    crops, pts = _crops(w300_subset(found, "common"), size, n, margin)
    return crops, pts, f"300-W common test set at {found} ({len(crops)} faces)"


def _mean_nme(predict: Any, crops: np.ndarray, points: np.ndarray, batch: int = 32) -> float:
    """Mean NME (percent, outer eye corners 36/45) of ``predict`` on the crops."""
    from acrloss.data_prep.crop import denormalize  # noqa: PLC0415
    from acrloss.metrics import nme  # noqa: PLC0415
    from acrloss.models.regressor import landmarks_from_output  # noqa: PLC0415

    size = crops.shape[1]
    outs = [landmarks_from_output(predict(crops[i:i + batch])) for i in range(0, len(crops), batch)]
    pred = denormalize(np.concatenate(outs).reshape(len(crops), -1, 2), size)
    value = float(np.mean(nme(pred, points, (36, 45))) * 100)
    return value if np.isfinite(value) else float("inf")


def nme_gate_holds(nme_float: float, nme_quantized: float, max_nme_increase: float = MAX_NME_INCREASE) -> bool:
    """The accuracy gate: the quantized NME (percent) is at most ``max_nme_increase`` points
    above the float one's (``False`` for NaN / inf). Also used by
    :mod:`acrloss.export_cascade` for its quantized per-stage files."""
    return bool(nme_quantized <= nme_float + max_nme_increase)


def _tflite_quantized(model: Any, quantize: str, calib: np.ndarray) -> tuple[bytes, str]:
    tf = _need("tensorflow", "tf")
    frozen = frozen_function(model)

    def converter():
        return tf.lite.TFLiteConverter.from_concrete_functions([frozen])

    def representative():
        for x in calib:
            yield [x[None]]

    with _quiet_loggers("tensorflow", "absl"):
        if quantize == "float16":
            conv = converter()
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
            return bytes(conv.convert()), "float16"
        if quantize == "dynamic":
            conv = converter()
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            return bytes(conv.convert()), "dynamic-range"
        try:
            conv = converter()
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.float32  # int8 output steps cost ~0.3 NME points
            return bytes(conv.convert()), "full-int8"
        except Exception:  # an op without an integer kernel: dynamic range (int8 weights only)
            conv = converter()
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            return bytes(conv.convert()), "dynamic-range"


def _onnx_quantized(model: Any, quantize: str, calib: np.ndarray) -> tuple[bytes, str]:
    onnx = _need("onnx")
    data = onnx_bytes(model)
    if quantize == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

        proto = convert_float_to_float16(onnx.load_from_string(data), keep_io_types=True)
        return proto.SerializeToString(), "float16"
    q = _need("onnxruntime.quantization")
    if quantize == "dynamic":
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "dyn.onnx")
            Path(src).write_bytes(data)
            q.quantize_dynamic(src, dst, weight_type=q.QuantType.QInt8)
            return Path(dst).read_bytes(), "dynamic-range"
    name = onnx.load_from_string(data).graph.input[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{name: x[None]} for x in calib])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        Path(src).write_bytes(data)
        pre = os.path.join(tmp, "pre.onnx")
        try:  # shape inference + graph optimization first, as ONNX Runtime recommends
            from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

            quant_pre_process(src, pre, skip_symbolic_shape=True)
            src = pre
        except Exception:  # pragma: no cover - older onnxruntime
            pass
        q.quantize_static(src, dst, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax)
        return Path(dst).read_bytes(), "qdq-int8"


def export_quantized(model_path_or_model: Any, out_path: str | os.PathLike, quantize: str = "int8",
                     format: str | None = None, *, data_dir: str | os.PathLike | None = None,
                     calibration: np.ndarray | None = None, calibration_faces: int = 200,
                     eval_faces: int | None = None, max_nme_increase: float = MAX_NME_INCREASE) -> QuantizeReport:
    """Export a quantized ``.tflite`` / ``.onnx`` file, written only if its NME on real crops
    is within ``max_nme_increase`` points of the float model's (see the module docs).

    Args:
        model_path_or_model: a keras model, a shipped model name or a checkpoint path.
        out_path: the file to write.
        quantize: ``"int8"``, ``"dynamic"`` or ``"float16"``.
        format: ``"tflite"`` or ``"onnx"`` (default: from the suffix).
        data_dir: the 300-W folder (default: env ``ACRLOSS_300W``, else ``../shared/data/300w``).
        calibration: representative crops ``(M, S, S, 3)`` RGB [0, 255] instead of the
            300-W training faces (int8 only; ignored by nothing else: given with another
            mode it is an error).
        calibration_faces: how many training faces calibrate (int8).
        eval_faces: common-test faces of the accuracy check (``None``: all 554).
        max_nme_increase: allowed NME increase, percent points.

    Raises:
        QuantizationError: the quantized file is too inaccurate (nothing written), or no
            real faces were found.
    """
    t0 = time.perf_counter()
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantization {quantize!r}; choose one of {QUANTIZE_MODES}")
    fmt = format or format_for_path(out_path)
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    keras_model = _as_keras_model(model_path_or_model)
    size = _input_size(keras_model)
    if calibration is not None and quantize != "int8":
        raise ValueError(f"calibration crops are used by int8 quantization only, not {quantize!r}")
    if calibration is None:
        calib, calib_source = calibration_crops(size, data_dir, calibration_faces)
    else:
        calib = np.asarray(calibration, np.float32)
        if calib.ndim != 4 or calib.shape[1:] != (size, size, 3) or not len(calib):
            raise ValueError(f"calibration crops must be (M, {size}, {size}, 3), got {calib.shape}")
        calib_source = f"{len(calib)} given crops"
    crops, points, eval_source = evaluation_set(size, data_dir, eval_faces)
    try:
        data, mode = (_tflite_quantized if fmt == "tflite" else _onnx_quantized)(keras_model, quantize, calib)
    except ExportError as exc:
        raise QuantizationError(f"{out_path}: {exc}; nothing written") from exc
    except Exception as exc:  # converter / quantizer failures
        raise QuantizationError(f"{out_path}: {quantize} {fmt} quantization failed ({str(exc)[:400]}); "
                                "nothing written") from exc
    nme_float = _mean_nme(lambda x: keras_model(x, training=False), crops, points)
    out_path = Path(out_path)
    with atomic_path(out_path, suffix=f".{fmt}") as tmp:  # renamed onto out_path only if the gate holds
        Path(tmp).write_bytes(data)
        runner = ExportedModel(tmp, format=fmt, num_threads=os.cpu_count())
        nme_q = _mean_nme(runner, crops, points)
        del runner
        if not nme_gate_holds(nme_float, nme_q, max_nme_increase):  # also catches NaN / inf
            raise QuantizationError(
                f"{out_path}: {quantize} {fmt} ({mode}) NME {nme_q:.3f} % vs the float model's {nme_float:.3f} % on "
                f"{eval_source}: more than {max_nme_increase:g} points worse (calibration: {calib_source}); "
                "nothing written")
    return QuantizeReport(str(out_path), fmt, quantize, mode, round(nme_float, 4), round(nme_q, 4),
                          float(max_nme_increase), len(crops), eval_source,
                          len(calib) if quantize == "int8" else 0, calib_source if quantize == "int8" else "",
                          len(data), round(time.perf_counter() - t0, 2))
