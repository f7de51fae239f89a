"""Running exported landmark models: ``.tflite`` (LiteRT) and ``.onnx`` (ONNX Runtime) files.

:class:`ExportedModel` is callable like a Keras model (``float32 (B, S, S, 3) RGB [0, 255] ->
(B, 2N)`` normalized points), so :class:`acrloss.predictor.LandmarkPredictor` (and through it
``FaceAligner`` and ``Test``) runs it like any model. Making the files and checking them
against Keras: :mod:`acrloss.export` (which re-exports these names). The runtimes are imported
lazily; they come with ``pip install -e ".[export]"``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_FORMATS = ("tflite", "onnx")
SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}


class ExportError(RuntimeError):
    """An export that cannot be made (missing package, wrong backend, unusable model)."""


def _need(module: str, extra: str = "export"):
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(
            f"acrloss.export needs the {module.split('.')[0]!r} package: pip install -e \".[{extra}]\" ({exc})"
        ) from exc


def format_for_path(path: str | os.PathLike) -> str:
    """``"tflite"`` or ``"onnx"`` from a file name; :class:`ValueError` naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown exported-model type {suffix!r}; expected .tflite or .onnx")
    return SUFFIXES[suffix]


def is_exported_path(path: Any) -> bool:
    """Whether ``path`` names a ``.tflite`` / ``.onnx`` file (by its suffix)."""
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in SUFFIXES


class ExportedModel:
    """Inference through an exported ``.tflite`` (LiteRT) or ``.onnx`` (ONNX Runtime) file.

    Callable like a model: ``float32 (B, S, S, 3) RGB [0, 255] -> (B, 2N)`` normalized
    points (NumPy), with ``input_shape == (None, S, S, 3)``, so :class:`acrloss.align.
    FaceAligner` takes it as its model. Quantized TFLite files with integer input / output
    (:mod:`acrloss.quantize`) are fed and read through their scale and zero point, so they
    take and give the same float values. ``num_threads``: CPU threads of the runtime
    (``None``: the runtime's default). ONNX Runtime runs with thread spinning off.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None, format: str | None = None) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: exported model file not found")
        self.format = format or format_for_path(self.path)
        if self.format not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {self.format!r}; choose one of {EXPORT_FORMATS}")
        self.num_threads = num_threads
        try:
            if self.format == "tflite":
                self._init_tflite()
            else:
                self._init_onnx()
        except ExportError:
            raise
        except Exception as exc:  # corrupt or foreign files
            raise ValueError(f"{self.path}: cannot load {self.format} model ({exc})") from exc
        if len(self._in_shape) != 4 or self._in_shape[1] != self._in_shape[2] or self._in_shape[3] != 3:
            raise ValueError(f"{self.path}: expected an input of shape (B, S, S, 3), the file has {self._in_shape}")
        self.input_size = int(self._in_shape[1])
        self.input_shape = (None, self.input_size, self.input_size, 3)

    # -- TFLite / LiteRT
    def _init_tflite(self) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

            self.runtime = "litert"
        except ImportError:
            try:
                import tensorflow as tf  # noqa: PLC0415
            except ImportError as exc:
                raise ExportError("running .tflite files needs 'ai-edge-litert' (pip install -e \".[export]\")") from exc
            Interpreter = tf.lite.Interpreter  # noqa: N806
            self.runtime = "tf.lite"
        kwargs = {} if self.num_threads is None else {"num_threads": int(self.num_threads)}
        self._interp = Interpreter(model_path=self.path, **kwargs)
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self._in_index, self._out_index = inputs[0]["index"], outputs[0]["index"]
        self._in_shape = tuple(int(v) for v in inputs[0]["shape_signature"])
        self._batch = None
        # integer (quantized) input / output: real = scale * (q - zero_point)
        self._in_dtype, self._out_dtype = np.dtype(inputs[0]["dtype"]), np.dtype(outputs[0]["dtype"])
        self._in_quant, self._out_quant = tuple(inputs[0]["quantization"]), tuple(outputs[0]["quantization"])
        for what, dtype, (scale, _) in (("input", self._in_dtype, self._in_quant),
                                        ("output", self._out_dtype, self._out_quant)):
            if dtype.kind in "iu" and not scale > 0:
                raise ValueError(f"integer {what} ({dtype}) without a quantization scale")
        self.quantized_io = self._in_dtype.kind in "iu" or self._out_dtype.kind in "iu"

    def _run_tflite(self, x: np.ndarray) -> np.ndarray:
        if self._batch != len(x):
            self._interp.resize_tensor_input(self._in_index, x.shape, strict=False)
            self._interp.allocate_tensors()
            self._batch = len(x)
        if self._in_dtype.kind in "iu":
            scale, zero = self._in_quant
            info = np.iinfo(self._in_dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self._in_dtype)
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out_index)
        if self._out_dtype.kind in "iu":
            scale, zero = self._out_quant
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y

    # -- ONNX Runtime
    def _init_onnx(self) -> None:
        ort = _need("onnxruntime")
        options = ort.SessionOptions()
        if self.num_threads is not None:
            options.intra_op_num_threads = int(self.num_threads)
            options.inter_op_num_threads = 1
        # no busy-waiting between calls: spinning threads fight the detector and any other
        # work on the machine (on a loaded 2-core machine it made batch-1 calls 2-10x slower)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.runtime = "onnxruntime"
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self._in_name, self._out_name = inputs[0].name, outputs[0].name
        self._in_shape = tuple(v if isinstance(v, int) else -1 for v in inputs[0].shape)

    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if x.ndim != 4 or x.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"{self.path}: expected a (B, {self.input_size}, {self.input_size}, 3) batch, got {x.shape}")
        if self.format == "tflite":
            y = self._run_tflite(x)
        else:
            y = self._session.run([self._out_name], {self._in_name: x})[0]
        return np.asarray(y).reshape(len(x), -1)

    predict = __call__

    def __repr__(self) -> str:
        return f"ExportedModel({self.path!r}, format={self.format!r}, runtime={self.runtime!r}, input_size={self.input_size})"
