"""Export a landmark model to TFLite (LiteRT) or ONNX, check it against Keras, and run it.

::

    from acrloss.export import export_tflite, export_onnx, ExportedModel
    from acrloss.align import FaceAligner

    report = export_onnx("mnv2_acr_300w", "out/mnv2_acr_300w.onnx")   # raises ParityError if off
    report.max_abs_diff                                                # normalized coordinates
    aligner = FaceAligner(ExportedModel("out/mnv2_acr_300w.onnx"))     # or FaceAligner("....onnx")

or ``acrloss export MODEL --format tflite|onnx --out FILE``.

How the files are made (TensorFlow backend only): the model's inference call is traced as
one ``tf.function`` ``image (B, S, S, 3) float32 RGB [0, 255] -> landmarks (B, 2N)
normalized`` (a model whose output is a dict contributes only its ``"landmarks"`` entry;
see :func:`acrloss.models.regressor.landmarks_from_output`), its variables are frozen into
constants, and the frozen graph goes to ``tf.lite.TFLiteConverter`` (float32, no
quantization) or to ``tf2onnx`` (opset 17). The batch dimension stays dynamic. Tracing runs
inside :func:`acrloss.models.musica.export_kernels` (MuSiCa layers trace to ops with fast
TFLite / ONNX Runtime kernels; same values). Quantized files: :mod:`acrloss.quantize`;
MuSiCa per-stage files for early exit: :mod:`acrloss.export_cascade`.

Every export is followed by a parity check before the file appears at its path (writes are
atomic): Keras and the exported file run the same real face crops (the 300-W common test
set when it is found, else crops of matplotlib's bundled Grace Hopper portrait), as one
batch and one face alone, and the largest absolute difference in normalized coordinates
must be at most ``atol`` (default 1e-4), else :class:`ParityError` is raised and nothing is
written.

TensorFlow, tf2onnx, onnxruntime and ai-edge-litert are imported lazily, so this module
imports without them; they come with ``pip install -e ".[export]"``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from acrloss.config import CropConfig
from acrloss.io import atomic_path
# the runtime side (running .tflite / .onnx files) lives below the predictor; re-exported here
from acrloss.runtimes import EXPORT_FORMATS, SUFFIXES, ExportedModel, ExportError, _need, format_for_path, is_exported_path  # noqa: F401

PARITY_ATOL = 1e-4
ONNX_OPSET = 17
#: a known face box (x0, y0, x1, y1) in matplotlib's grace_hopper.jpg (512 x 600)
_PORTRAIT_BOX = (180.0, 140.0, 365.0, 325.0)




class ParityError(ExportError):
    """The exported file's landmarks differ from Keras' by more than the tolerance."""


@dataclass
class ExportReport:
    """What :func:`export_tflite` / :func:`export_onnx` made and measured."""

    path: str
    format: str
    max_abs_diff: float  # largest |exported - keras| over the parity crops, normalized coordinates
    atol: float
    faces: int  # parity crops compared
    parity_source: str
    input_size: int
    num_points: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- helpers
def _as_keras_model(model: Any):
    """A loaded keras model from a model, a shipped name or a checkpoint path."""
    if isinstance(model, (str, os.PathLike)):
        from acrloss.presets import resolve_model  # noqa: PLC0415
        from acrloss.models.regressor import load_model  # noqa: PLC0415

        return load_model(resolve_model(model))
    if not hasattr(model, "input_shape"):
        raise TypeError("export: model must be a keras model, a shipped model name or a checkpoint path")
    return model


def _input_size(model: Any) -> int:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ExportError(f"export: the model must take (B, S, S, 3) images, its input shape is {shape}")
    return int(shape[1])


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def frozen_function(model: Any):
    """The model's inference call as a frozen ``tf.function`` (variables as constants).

    Input ``image`` ``(None, S, S, 3)`` float32; output ``landmarks`` ``(None, 2N)``.
    Needs the TensorFlow backend.
    """
    import keras  # noqa: PLC0415

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"export needs Keras' TensorFlow backend (KERAS_BACKEND=tensorflow); this process uses {keras.backend.backend()!r}"
        )
    tf = _need("tensorflow", "tf")
    from tensorflow.python.framework.convert_to_constants import (  # noqa: PLC0415
        convert_variables_to_constants_v2,
    )

    from acrloss.models.musica import export_kernels  # noqa: PLC0415

    model = _as_keras_model(model)
    size = _input_size(model)
    with export_kernels():
        return _freeze(model, size, tf, convert_variables_to_constants_v2)


def _freeze(model: Any, size: int, tf: Any, convert: Any):
    probe = model(np.zeros((1, size, size, 3), np.float32), training=False)
    if isinstance(probe, dict):
        if "landmarks" not in probe:
            raise ExportError(f"export: the model's output dict has no 'landmarks' entry (keys: {sorted(probe)})")
        probe = probe["landmarks"]
    num_coords = int(np.prod(tuple(probe.shape)[1:]))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve(image):
        out = model(image, training=False)
        if isinstance(out, dict):
            out = out["landmarks"]
        return tf.reshape(out, [-1, num_coords], name="landmarks")

    return convert(serve.get_concrete_function())


def tflite_bytes(model: Any) -> bytes:
    """A float32 TFLite flatbuffer of the model (see :func:`frozen_function`)."""
    tf = _need("tensorflow", "tf")
    frozen = frozen_function(model)
    with _quiet_loggers("tensorflow", "absl"):
        try:
            return bytes(tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert())
        except Exception as exc:  # ConverterError: ops without a TFLite builtin kernel, ...
            text = str(exc)
            ops = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("TF Select ops:")]
            raise ExportError(f"TFLite conversion failed: {ops[0] if ops else text[:500]}") from exc


def onnx_bytes(model: Any, opset: int = ONNX_OPSET) -> bytes:
    """A serialized ONNX model (tf2onnx from the frozen graph, see :func:`frozen_function`)."""
    _need("onnx")
    frozen = frozen_function(model)
    with _quiet_loggers("tf2onnx", "tensorflow", "absl"):
        tf2onnx = _need("tf2onnx")
        try:  # tf2onnx 1.17 still uses NumPy aliases removed in NumPy 2; Keras ships the fix
            from keras.src.export.tf2onnx_lib import patch_tf2onnx  # noqa: PLC0415

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # its own np.object probe
                patch_tf2onnx()
        except ImportError:  # pragma: no cover - other keras versions
            pass
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(),
            input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs],
            opset=opset,
        )
    onnx = _need("onnx")
    unsupported = sorted({n.op_type for n in proto.graph.node
                          if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type, opset)})
    if unsupported:  # tf2onnx logs these and leaves the TensorFlow op in the graph
        raise ExportError(f"ONNX conversion failed: ops without an ONNX opset-{opset} equivalent: {', '.join(unsupported)}")
    return proto.SerializeToString()


# ---------------------------------------------------------------------------- runner
# ---------------------------------------------------------------------------- parity
def parity_crops(input_size: int, data_dir: str | os.PathLike | None = None, n: int = 8,
                 margin: float = CropConfig.margin) -> tuple[np.ndarray, str]:
    """``(crops float32 (n, S, S, 3), source)``: real face crops for the parity check.

    The 300-W common test set (``n`` evenly spaced faces cropped like :class:`acrloss.test.Test`
    crops them, from their landmark box) when ``data_dir`` or env ``ACRLOSS_300W`` or
    ``../shared/data/300w`` beside the repository holds it; otherwise ``n`` crops of
    matplotlib's bundled Grace Hopper portrait around a known face box, shifted and scaled
    a little (nothing is downloaded).
    """
    from acrloss.data_prep.crop import CropTransform  # noqa: PLC0415
    from acrloss.data_prep.images import read_image  # noqa: PLC0415
    from acrloss.presets import find_data_dir, sample_image_path  # noqa: PLC0415

    found, _ = find_data_dir("300w", data_dir)
    if found is not None:
        from acrloss.data_prep.datasets import SubsetNotFoundError, w300_subset  # noqa: PLC0415

        try:
            samples = w300_subset(found, "common")
        except (SubsetNotFoundError, ValueError):
            samples = []
        if samples:
            idx = np.linspace(0, len(samples) - 1, min(n, len(samples))).round().astype(int)
            crops = [CropTransform.from_points(samples[i].points, input_size, margin).warp(read_image(samples[i].image_path))
                     for i in idx]
            return np.stack(crops).astype(np.float32), f"300-W common test set at {found} ({len(crops)} faces)"
    path = sample_image_path()
    image = read_image(path)
    base = np.array(_PORTRAIT_BOX)
    rng = np.random.default_rng(0)
    crops = []
    for k in range(n):
        shift = rng.uniform(-0.08, 0.08, 2) * (base[2] - base[0]) if k else np.zeros(2)
        scale = rng.uniform(0.9, 1.1) if k else 1.0
        c = (base[:2] + base[2:]) / 2 + shift
        half = (base[2:] - base[:2]) / 2 * scale
        crops.append(CropTransform.from_box(np.r_[c - half, c + half], input_size, margin).warp(image))
    return np.stack(crops).astype(np.float32), f"{path.name} (matplotlib's sample portrait, {n} crops)"


def parity_diff(model: Any, exported: Any, crops: np.ndarray) -> float:
    """Largest absolute difference (normalized coordinates) between the Keras model and an
    exported runner on ``crops``, run as one batch and the first crop alone."""
    from acrloss.models.regressor import landmarks_from_output  # noqa: PLC0415

    crops = np.asarray(crops, dtype=np.float32)
    ref = landmarks_from_output(model(crops, training=False))
    got = landmarks_from_output(exported(crops))
    one = landmarks_from_output(exported(crops[:1]))
    if got.shape != ref.shape:
        raise ParityError(f"exported model gives shape {got.shape}, Keras {ref.shape}")
    return float(max(np.abs(got - ref).max(), np.abs(one - ref[:1]).max()))


def _export(fmt: str, model: Any, out_path: str | os.PathLike, crops: np.ndarray | None, data_dir: Any,
            atol: float, **kwargs: Any) -> ExportReport:
    t0 = time.perf_counter()
    keras_model = _as_keras_model(model)
    size = _input_size(keras_model)
    try:
        data = tflite_bytes(keras_model) if fmt == "tflite" else onnx_bytes(keras_model, **kwargs)
    except ExportError as exc:
        raise ExportError(f"{out_path}: {exc}; nothing written") from exc
    if crops is None:
        crops, source = parity_crops(size, data_dir)
    else:
        crops, source = np.asarray(crops, dtype=np.float32), f"{len(crops)} given crops"
    out_path = Path(out_path)
    with atomic_path(out_path, suffix=f".{fmt}") as tmp:  # renamed onto out_path only if parity holds
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            runner = ExportedModel(tmp, format=fmt)
        except (ValueError, ExportError) as exc:
            raise ExportError(f"{out_path}: the exported {fmt} file does not load ({exc}); nothing written") from exc
        diff = parity_diff(keras_model, runner, crops)
        num_points = int(runner(crops[:1]).shape[1] // 2)
        del runner
        if not diff <= atol:  # also catches NaN
            raise ParityError(
                f"{out_path}: {fmt} export differs from Keras by {diff:.3g} (normalized coordinates) on {source}; "
                f"tolerance {atol:g}; nothing written"
            )
    return ExportReport(str(out_path), fmt, diff, float(atol), int(len(crops)), source, size, num_points,
                        len(data), round(time.perf_counter() - t0, 2))


def export_tflite(model_path_or_model: Any, out_path: str | os.PathLike, *, crops: np.ndarray | None = None,
                  data_dir: str | os.PathLike | None = None, atol: float = PARITY_ATOL) -> ExportReport:
    """Export to a float32 ``.tflite`` file and check it against Keras (see the module docs).

    ``model_path_or_model``: a keras model, a shipped model name or a checkpoint path.
    ``crops``: the parity crops (default: :func:`parity_crops`, which reads ``data_dir``).
    Raises :class:`ParityError` (nothing written) when the largest difference exceeds ``atol``.
    """
    return _export("tflite", model_path_or_model, out_path, crops, data_dir, atol)


def export_onnx(model_path_or_model: Any, out_path: str | os.PathLike, *, crops: np.ndarray | None = None,
                data_dir: str | os.PathLike | None = None, atol: float = PARITY_ATOL,
                opset: int = ONNX_OPSET) -> ExportReport:
    """Export to an ``.onnx`` file (opset ``opset``) and check it against Keras through ONNX
    Runtime; otherwise like :func:`export_tflite`."""
    return _export("onnx", model_path_or_model, out_path, crops, data_dir, atol, opset=opset)


def export_model(model_path_or_model: Any, out_path: str | os.PathLike, format: str | None = None,
                 **kwargs: Any) -> ExportReport:
    """:func:`export_tflite` or :func:`export_onnx` by ``format`` (default: from the suffix)."""
    fmt = format or format_for_path(out_path)
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {EXPORT_FORMATS}")
    fn = export_tflite if fmt == "tflite" else export_onnx
    return fn(model_path_or_model, out_path, **kwargs)


__all__: Sequence[str] = ["export_tflite", "export_onnx", "export_model", "ExportedModel", "ExportReport",
                          "ExportError", "ParityError", "parity_crops", "parity_diff", "frozen_function",
                          "is_exported_path", "EXPORT_FORMATS", "PARITY_ATOL"]
