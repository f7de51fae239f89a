"""MuSiCa early exit in an exported runtime: one ``.tflite`` file with a function per stage.

::

    from acrloss.export_cascade import export_cascade_tflite, ExportedCascade

    export_cascade_tflite("musica_acr_300w", "out/musica.cascade.tflite")   # parity-checked
    runner = ExportedCascade("out/musica.cascade.tflite", threshold=0.05, num_threads=1)
    result = runner.run(crops, threshold=0.05)     # an acrloss.early_exit.EarlyExitResult
    result.stopped_at, result.faces_per_stage      # the stages each face actually ran
    aligner = FaceAligner(runner)                  # callable like a model (its own threshold)
    export_cascade_tflite("musica_acr_300w", "out/musica.cascade.dynamic.tflite", quantize="dynamic")  # NME-gated

The file holds one TFLite signature per piece of the cascade, all sharing the weights:

- ``start``: ``image (B, S, S, 3)`` RGB [0, 255] -> ``level_0 .. level_{L-1}`` (the grey
  pyramid), ``shape (B, 2N)`` (the mean shape), ``hidden (B, H)`` (zeros) and the constant
  ``stage_macs (T,)`` (multiply-adds per face of each stage);
- ``stage_1 .. stage_T``: ``image`` (the stage's pyramid level), ``shape``, ``hidden`` ->
  ``shape``, ``hidden``, ``error`` (the stage's predicted NME fraction);
- ``head``: ``image`` -> the state after stage ``T-1`` (``shape``, ``hidden``), every
  earlier stage's ``errors (B, T-1)`` and the last stage's pyramid ``level``: the start and
  all stages but the last in one call.

:class:`ExportedCascade` runs them with per-face early exit (only the faces still above the
threshold are passed on, as a smaller batch), so a face that stops early costs the runtime
nothing more: saved multiply-adds are saved time. By default (``exits="last"``) a face may
stop only before the last stage: one ``head`` call, then ``stage_T`` for the faces still
above the threshold (two runtime calls at most; at batch 1 each call costs about as much as
a small stage, so one call per stage ate the savings). ``exits="all"``: a call per stage and
a possible stop after each, as :class:`acrloss.early_exit.EarlyExitCascade`. ``rows_run``
counts the rows each stage actually received.

The export is traced with :func:`acrloss.models.musica.export_kernels` (fast TFLite
kernels) and is written only when every stage run to the end (``threshold=-inf``) matches
the Keras model within ``atol`` (default 1e-4, normalized coordinates) on real face crops
(:func:`acrloss.export.parity_crops`), atomically. TensorFlow backend only.

``quantize="dynamic"``: dynamic-range quantization of the same file (TFLite's
``Optimize.DEFAULT`` alone: int8 weights, activations quantized per call by the runtime, no
calibration). The 1e-4 parity cannot hold then; the file is written only if it passes the
accuracy gate of :mod:`acrloss.quantize` instead: its mean NME on the 300-W common test set
(every stage run, ``threshold=-inf``) is at most ``max_nme_increase`` (default 0.10) points
above the float model's, else :class:`acrloss.quantize.QuantizationError` names both numbers
and nothing is written. The per-stage differences to Keras are still measured and reported.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from acrloss.io import atomic_path
from acrloss.early_exit import EarlyExitCascade, EarlyExitResult
from acrloss.export import PARITY_ATOL, ExportError, ParityError, _as_keras_model, _input_size, _need, _quiet_loggers
from acrloss.quantize import MAX_NME_INCREASE, QuantizationError, _mean_nme, evaluation_set, nme_gate_holds

__all__ = ["export_cascade_tflite", "ExportedCascade", "CascadeExportReport", "CASCADE_QUANTIZE_MODES"]

#: quantizations of the per-stage file (``None``: float32, parity-checked)
CASCADE_QUANTIZE_MODES = ("dynamic",)


@dataclass
class CascadeExportReport:
    """What :func:`export_cascade_tflite` made and measured."""

    path: str
    stages: int
    max_abs_diff: float  # all stages run, largest |exported - keras| landmarks, normalized coordinates
    stage_diff: list[float]  # per stage, largest |exported - keras| of that stage's shape
    atol: float | None  # None: not checked (quantized; the NME gate decides)
    faces: int
    parity_source: str
    bytes: int
    seconds: float
    quantize: str | None = None  # None (float32) or "dynamic"
    mode: str = "float32"  # "float32" or "dynamic-range"
    nme_float: float | None = None  # quantized only: the NME gate's numbers (percent)
    nme_quantized: float | None = None
    max_nme_increase: float | None = None
    eval_faces: int = 0
    eval_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cascade_bytes(model: Any, quantize: str | None = None) -> bytes:
    """The multi-signature TFLite flatbuffer (see the module docs); ``quantize="dynamic"``:
    dynamic-range quantized."""
    import keras  # noqa: PLC0415

    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"cascade export needs Keras' TensorFlow backend; this process uses {keras.backend.backend()!r}")
    tf = _need("tensorflow", "tf")
    from acrloss.models.musica import export_kernels, stage_macs, stage_models  # noqa: PLC0415

    stages = stage_models(model)
    pyramid, initial = model.get_layer("pyramid"), model.get_layer("initial_state")
    size = _input_size(model)
    macs = np.asarray(stage_macs(model), np.int64)
    mean = np.asarray(keras.ops.convert_to_numpy(initial.mean_shape), np.float32).reshape(-1)
    n2 = int(mean.size)
    hid = int(initial.hidden_units)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def start(image):
        levels = pyramid(image)
        ones = tf.ones_like(image[:, :1, 0, 0])  # (B, 1)
        shape = ones * tf.constant(mean[None])
        hidden = ones * tf.zeros((1, hid), tf.float32)
        out = {f"level_{i}": lv for i, lv in enumerate(levels)}
        out.update({"shape": shape, "hidden": hidden, "stage_macs": tf.constant(macs.astype(np.float32))})
        return out

    signatures = {"start": start}
    for t, stage in enumerate(stages):
        side = int(stage.inputs[0].shape[1])
        chans = int(stage.inputs[0].shape[3])

        def make(stage=stage, side=side, chans=chans):
            @tf.function(input_signature=[tf.TensorSpec([None, side, side, chans], tf.float32, name="image"),
                                          tf.TensorSpec([None, n2], tf.float32, name="shape"),
                                          tf.TensorSpec([None, hid], tf.float32, name="hidden")])
            def run_stage(image, shape, hidden):
                new_shape, new_hidden, error = stage([image, shape, hidden], training=False)
                return {"shape": new_shape, "hidden": new_hidden, "error": tf.reshape(error, [-1])}

            return run_stage

        signatures[f"stage_{t + 1}"] = make()

    levels_of = [int(round(np.log2(size / int(st.inputs[0].shape[1])))) for st in stages]

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def head(image):  # start and every stage but the last in one call: the fast path to the one exit
        levels = pyramid(image)
        ones = tf.ones_like(image[:, :1, 0, 0])
        shape, hidden = ones * tf.constant(mean[None]), ones * tf.zeros((1, hid), tf.float32)
        errors = []
        for t, stage in enumerate(stages[:-1]):
            shape, hidden, error = stage([levels[levels_of[t]], shape, hidden], training=False)
            errors.append(tf.reshape(error, [-1]))
        return {"shape": shape, "hidden": hidden, "errors": tf.stack(errors, axis=1), "level": levels[levels_of[-1]]}

    if len(stages) > 1:
        signatures["head"] = head
    from tensorflow.python.framework.convert_to_constants import (  # noqa: PLC0415
        convert_variables_to_constants_v2,
    )

    with export_kernels(), _quiet_loggers("tensorflow", "absl"):
        frozen = []
        for key, fn in signatures.items():  # weights frozen into constants, outputs named again
            concrete = fn.get_concrete_function()
            names = sorted(concrete.structured_outputs)  # the frozen function's flat output order
            const = convert_variables_to_constants_v2(concrete)

            def renamed(const=const, names=names, spec=fn.input_signature):
                @tf.function(input_signature=spec)
                def named(*args):
                    return dict(zip(names, const(*args)))

                return named.get_concrete_function()

            frozen.append((key, renamed()))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                module = tf.Module()
                for key, concrete in frozen:
                    setattr(module, key, concrete)
                tf.saved_model.save(module, tmp, signatures=dict(frozen))
                converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[k for k, _ in frozen])
                if quantize == "dynamic":  # int8 weights only, as acrloss.quantize's "dynamic"
                    converter.optimizations = [tf.lite.Optimize.DEFAULT]
                return bytes(converter.convert())
        except Exception as exc:  # ConverterError
            raise ExportError(f"TFLite conversion of the cascade failed: {str(exc)[:500]}") from exc


class _Signature:
    """One signature of a LiteRT interpreter, called like its ``SignatureRunner`` but without
    the runner's per-call input resize and tensor allocation: those happen only when an
    input shape changes (at batch 1 they cost about as much as a small stage; five calls a
    face add up). Falls back to the plain runner where the interpreter lacks the internals."""

    def __init__(self, interpreter: Any, key: str) -> None:
        self.runner = interpreter.get_signature_runner(key)
        try:
            self._wrapper = interpreter._interpreter
            self._subgraph = self.runner._subgraph_index
            self._inputs = dict(self.runner._inputs)
            self._outputs = list(self.runner._outputs)
        except AttributeError:  # pragma: no cover - another interpreter build
            self._wrapper = None
        self._shapes: dict[str, tuple[int, ...]] = {}

    def get_input_details(self) -> dict[str, Any]:
        return self.runner.get_input_details()

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        if self._wrapper is None:  # pragma: no cover
            return self.runner(**inputs)
        if inputs.keys() != self._inputs.keys():
            raise ValueError(f"signature inputs are {sorted(self._inputs)}, got {sorted(inputs)}")
        shapes = {k: v.shape for k, v in inputs.items()}
        if shapes != self._shapes:
            for k, v in inputs.items():
                self._wrapper.ResizeInputTensor(self._inputs[k], np.array(v.shape, np.int32), False, self._subgraph)
            self._wrapper.AllocateTensors(self._subgraph)
            self._shapes = shapes
        for k, v in inputs.items():
            self._wrapper.SetTensor(self._inputs[k], v, self._subgraph)
        self._wrapper.Invoke(self._subgraph)
        return {k: self._wrapper.GetTensor(i, self._subgraph) for k, i in self._outputs}


class ExportedCascade(EarlyExitCascade):
    """Stage-by-stage early-exit inference through an exported cascade ``.tflite`` file
    (:func:`export_cascade_tflite`), with :meth:`run` as in
    :class:`acrloss.early_exit.EarlyExitCascade`.

    Callable like a model (``(B, S, S, 3)`` RGB [0, 255] -> ``(B, 2N)`` normalized), running
    with ``threshold`` (default ``-inf``: every stage), so :class:`acrloss.align.FaceAligner`
    takes it as its model.

    Args:
        path: the cascade ``.tflite`` file.
        threshold: early-exit threshold of ``__call__`` (predicted NME fraction).
        num_threads: LiteRT CPU threads (``None``: the runtime's default).
        exits: where a face may stop. ``"last"``: only before the last stage, through the
            file's ``head`` signature (the start and every other stage in one runtime call,
            then the last stage for the faces still above the threshold: two calls at most,
            the fastest); ``"all"``: after any stage, one call per stage (the semantics of
            :class:`acrloss.early_exit.EarlyExitCascade`). ``None``: ``"last"`` when the
            file has a ``head`` (files exported before it: ``"all"``).
    """

    def __init__(self, path: str | os.PathLike, threshold: float = float("-inf"), num_threads: int | None = None,
                 exits: str | None = None) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: exported cascade file not found")
        try:
            from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
        except ImportError:  # pragma: no cover - TensorFlow's copy
            Interpreter = _need("tensorflow", "tf").lite.Interpreter  # noqa: N806
        kwargs = {} if num_threads is None else {"num_threads": int(num_threads)}
        try:
            self._interp = Interpreter(model_path=self.path, **kwargs)
            keys = set(self._interp.get_signature_list())
        except Exception as exc:
            raise ValueError(f"{self.path}: cannot load the cascade TFLite file ({exc})") from exc
        count = 0
        while f"stage_{count + 1}" in keys:
            count += 1
        if "start" not in keys or count == 0:
            raise ValueError(f"{self.path}: not an exported MuSiCa cascade (signatures {sorted(keys)}; "
                             "expected 'start' and 'stage_1' ...); make one with export_cascade_tflite")
        self.threshold = float(threshold)
        self.num_threads = num_threads
        self.runtime = "litert"
        self._start = _Signature(self._interp, "start")
        start_in = self._start.get_input_details()["image"]
        self.input_size = int(start_in["shape_signature"][1])
        self.input_shape = (None, self.input_size, self.input_size, 3)
        probe = self._start(image=np.zeros((1, self.input_size, self.input_size, 3), np.float32))
        self.mean_shape = np.asarray(probe["shape"][0], np.float32)
        self.hidden_units = int(probe["hidden"].shape[1])
        self.stage_macs = np.asarray(probe["stage_macs"], np.float64).round().astype(np.int64)
        level_sides = {int(k.split("_")[1]): int(v.shape[1]) for k, v in probe.items() if k.startswith("level_")}
        self._num_levels = len(level_sides)
        self.levels = []
        self._stage_runners = []
        for t in range(count):
            runner = _Signature(self._interp, f"stage_{t + 1}")
            side = int(runner.get_input_details()["image"]["shape_signature"][1])
            matches = [lv for lv, s in level_sides.items() if s == side]
            if not matches:
                raise ValueError(f"{self.path}: stage_{t + 1} takes {side} px images, no pyramid level has that size")
            self.levels.append(matches[0])
            self._stage_runners.append(runner)
        self.stages = self._stage_runners
        self._head = _Signature(self._interp, "head") if "head" in keys else None
        if exits is None:
            exits = "last" if self._head is not None else "all"
        if exits not in ("last", "all"):
            raise ValueError(f"exits must be 'last' or 'all', got {exits!r}")
        if exits == "last" and self._head is None:
            raise ValueError(f"{self.path}: exits='last' needs the file's 'head' signature (export it again with "
                             "export_cascade_tflite), or use exits='all'")
        self.exits = exits
        self.exit_stages = (count - 2,) if exits == "last" else tuple(range(count - 1))
        self._pyramid_fn = self._run_start
        self._stage_fns = [self._stage_fn(t) for t in range(count)]
        self._first_shape = self.mean_shape[None].copy()  # (1, 2N): one face's start state
        self._first_hidden = np.zeros((1, self.hidden_units), np.float32)
        self.calls = np.zeros(count, np.int64)
        #: rows each stage's exported function actually received since construction
        self.rows_run = np.zeros(count, np.int64)

    def _run_start(self, images: np.ndarray) -> list[np.ndarray]:
        out = self._start(image=np.ascontiguousarray(images, np.float32))
        return [out[f"level_{i}"] for i in range(self._num_levels)]

    def _stage_fn(self, t: int):
        runner = self._stage_runners[t]

        def fn(inputs: Sequence[np.ndarray]):
            image, shape, hidden = (np.ascontiguousarray(v, np.float32) for v in inputs)
            self.rows_run[t] += len(image)
            out = runner(image=image, shape=shape, hidden=hidden)
            return out["shape"], out["hidden"], out["error"]

        return fn

    def run(self, images: np.ndarray, threshold: float, failure_threshold: float = 0.10) -> EarlyExitResult:
        """:meth:`acrloss.early_exit.EarlyExitCascade.run`; one face (``M = 1``, the
        per-face path of :class:`acrloss.align.FaceAligner`) takes a lean loop that feeds
        each stage's outputs straight to the next and stops at the exit (the general path's
        compaction bookkeeping cost ~10 % of a face's time), with the same result."""
        images = np.asarray(images, np.float32)
        if images.ndim == 4 and images.shape[0] == 0:  # no faces: the runtimes cannot take an empty batch
            t_count, n2 = self.num_stages, self.mean_shape.size
            empty = np.zeros(0, np.float32)
            return EarlyExitResult(np.zeros((0, n2), np.float32), np.zeros(0, np.int64), empty, np.zeros(0, bool),
                                   np.zeros(t_count, np.int64), self.stage_macs.copy(), float(threshold),
                                   float(failure_threshold), [empty] * t_count)
        if self.exits == "last":
            return self._run_head(images, threshold, failure_threshold)
        if images.shape != (1, self.input_size, self.input_size, 3):
            return super().run(images, threshold, failure_threshold)
        levels = self._run_start(images)
        shape, hidden = self._first_shape, self._first_hidden
        t_count = self.num_stages
        stage_errors: list[np.ndarray] = []
        for t, runner in enumerate(self._stage_runners):
            out = runner(image=levels[self.levels[t]], shape=shape, hidden=hidden)
            shape, hidden = out["shape"], out["hidden"]
            stage_errors.append(np.asarray(out["error"], np.float32).reshape(-1))
            if t < t_count - 1 and stage_errors[-1][0] < threshold:  # NaN keeps going
                break
        faces = np.zeros(t_count, np.int64)
        faces[: len(stage_errors)] = 1
        self.rows_run += faces
        self.calls += faces
        stopped_at = np.array([len(stage_errors) - 1], np.int64)
        errors = stage_errors[-1].copy()
        flagged = (stopped_at == t_count - 1) & (errors > failure_threshold)
        stage_errors += [np.zeros(0, np.float32)] * (t_count - len(stage_errors))
        return EarlyExitResult(np.array(shape, np.float32), stopped_at, errors, flagged, faces, self.stage_macs.copy(),
                               float(threshold), float(failure_threshold), stage_errors)

    def _run_head(self, images: np.ndarray, threshold: float, failure_threshold: float) -> EarlyExitResult:
        """``exits="last"``: the ``head`` call for every face, then the last stage for the faces
        whose predicted error after the one before it is not below ``threshold``."""
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"images must be (M, {self.input_size}, {self.input_size}, 3), got {images.shape}")
        m, t_count = len(images), self.num_stages
        out = self._head(image=np.ascontiguousarray(images))
        shape, errs = out["shape"], out["errors"]  # (M, 2N), (M, T-1)
        stage_errors = [errs[:, t].copy() for t in range(t_count - 1)]
        errors = stage_errors[-1].copy()
        stopped_at = np.full(m, t_count - 2, np.int64)
        active = np.flatnonzero(~(errors < threshold))  # NaN keeps going
        if active.size:
            sub = (lambda v: v) if active.size == m else (lambda v: np.ascontiguousarray(v[active]))
            last = self._stage_runners[-1](image=sub(out["level"]), shape=sub(shape), hidden=sub(out["hidden"]))
            shape[active] = last["shape"]
            last_err = np.asarray(last["error"], np.float32).reshape(-1)
            errors[active] = last_err
            stopped_at[active] = t_count - 1
            stage_errors.append(last_err)
        else:
            stage_errors.append(np.zeros(0, np.float32))
        faces = np.full(t_count, m, np.int64)
        faces[-1] = active.size
        self.rows_run += faces
        self.calls += faces
        flagged = (stopped_at == t_count - 1) & (errors > failure_threshold)
        return EarlyExitResult(np.asarray(shape, np.float32), stopped_at, errors, flagged, faces, self.stage_macs.copy(),
                               float(threshold), float(failure_threshold), stage_errors)

    def reset_counters(self) -> None:
        """Zero :attr:`calls` and :attr:`rows_run`."""
        self.calls[:] = 0
        self.rows_run[:] = 0

    def full(self, images: np.ndarray) -> np.ndarray:
        """Every stage for every face: ``(M, 2N)``."""
        return self.run(images, float("-inf")).landmarks

    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"{self.path}: expected a (B, {self.input_size}, {self.input_size}, 3) batch, got {x.shape}")
        return self.run(x, self.threshold).landmarks

    predict = __call__

    def __repr__(self) -> str:
        return f"ExportedCascade({self.path!r}, stages={self.num_stages}, threshold={self.threshold}, exits={self.exits!r})"


def export_cascade_tflite(model: Any, out_path: str | os.PathLike, *, crops: np.ndarray | None = None,
                          data_dir: str | os.PathLike | None = None, atol: float | None = None,
                          quantize: str | None = None, eval_faces: int | None = None,
                          max_nme_increase: float | None = None) -> CascadeExportReport:
    """Export a MuSiCa model as a per-stage ``.tflite`` file (see the module docs).

    Float (``quantize=None``): checked against Keras stage by stage; :class:`ParityError`
    (nothing written) when off by more than ``atol`` (default 1e-4).

    ``quantize="dynamic"``: dynamic-range quantized, written only if its NME on the 300-W
    common test set (``eval_faces`` evenly spaced faces; ``None``: all 554) is within
    ``max_nme_increase`` (default 0.10) points of the float model's;
    :class:`acrloss.quantize.QuantizationError` (nothing written) otherwise. ``atol`` is a
    float-only option (an error here); the per-stage differences are reported, not checked.
    """
    import keras  # noqa: PLC0415

    from acrloss.export import parity_crops  # noqa: PLC0415
    from acrloss.models.musica import stage_models  # noqa: PLC0415

    t0 = time.perf_counter()
    if quantize is not None and quantize not in CASCADE_QUANTIZE_MODES:
        raise ValueError(f"{out_path}: unknown cascade quantization {quantize!r}; choose None (float32) or one of "
                         f"{CASCADE_QUANTIZE_MODES}")
    if quantize is None and (eval_faces is not None or max_nme_increase is not None):
        raise ValueError(f"{out_path}: eval_faces / max_nme_increase set the NME gate of a quantized export; "
                         "the float export is parity-checked (atol) instead")
    if quantize is not None and atol is not None:
        raise ValueError(f"{out_path}: atol is the float export's parity tolerance; a {quantize} export is "
                         "NME-gated (max_nme_increase) instead")
    keras_model = _as_keras_model(model)
    try:
        stage_models(keras_model)
    except ValueError as exc:
        raise ExportError(f"{out_path}: {exc}; only MuSiCa cascades export per stage") from exc
    size = _input_size(keras_model)
    try:
        data = _cascade_bytes(keras_model, quantize)
    except ExportError as exc:
        if quantize is not None:
            raise QuantizationError(f"{out_path}: {exc}; nothing written") from exc
        raise ExportError(f"{out_path}: {exc}; nothing written") from exc
    if crops is None:
        crops, source = parity_crops(size, data_dir)
    else:
        crops, source = np.asarray(crops, np.float32), f"{len(crops)} given crops"
    gate = None
    if quantize is not None:
        max_nme_increase = MAX_NME_INCREASE if max_nme_increase is None else float(max_nme_increase)
        eval_crops, eval_points, eval_source = evaluation_set(size, data_dir, eval_faces)
        nme_float = _mean_nme(lambda x: keras_model(x, training=False), eval_crops, eval_points)
    ref = {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in keras_model(crops, training=False).items()}
    out_path = Path(out_path)
    with atomic_path(out_path, suffix=".tflite") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
        runner = ExportedCascade(tmp)
        levels = runner._run_start(crops)
        shape = np.broadcast_to(runner.mean_shape, (len(crops), runner.mean_shape.size)).copy()
        hidden = np.zeros((len(crops), runner.hidden_units), np.float32)
        stage_diff = []
        for t, fn in enumerate(runner._stage_fns):  # every stage fed the exported previous stage's state
            shape, hidden, err = fn([levels[runner.levels[t]], shape, hidden])
            stage_diff.append(float(max(np.abs(shape - ref["stages"][:, t]).max(),
                                        np.abs(err - ref["errors"][:, t]).max())))
        one = runner.run(crops[:1], float("-inf")).landmarks  # the head + last stage path (exits="last")
        diff = float(max(max(stage_diff), np.abs(one - ref["landmarks"][:1]).max()))
        if runner._head is not None:  # the head alone, every face
            head = runner._head(image=np.ascontiguousarray(crops))
            diff = max(diff, float(np.abs(head["shape"] - ref["stages"][:, -2]).max()),
                       float(np.abs(head["errors"] - ref["errors"][:, :-1]).max()))
        count = runner.num_stages
        del runner
        if quantize is None:
            atol = PARITY_ATOL if atol is None else float(atol)
            if not diff <= atol:
                raise ParityError(f"{out_path}: cascade export differs from Keras by {diff:.3g} (per stage "
                                  f"{[round(d, 7) for d in stage_diff]}) on {source}; tolerance {atol:g}; "
                                  "nothing written")
        else:  # acrloss.quantize's accuracy gate, every stage run
            gated = ExportedCascade(tmp, threshold=float("-inf"), num_threads=os.cpu_count())
            nme_q = _mean_nme(gated, eval_crops, eval_points)
            del gated
            if not nme_gate_holds(nme_float, nme_q, max_nme_increase):
                raise QuantizationError(
                    f"{out_path}: {quantize} per-stage cascade (dynamic-range) NME {nme_q:.3f} % vs the float model's "
                    f"{nme_float:.3f} % on {eval_source}: more than {max_nme_increase:g} points worse; nothing written")
            gate = {"nme_float": round(nme_float, 4), "nme_quantized": round(nme_q, 4),
                    "max_nme_increase": max_nme_increase, "eval_faces": int(len(eval_crops)),
                    "eval_source": eval_source}
    return CascadeExportReport(str(out_path), count, diff, stage_diff, atol, int(len(crops)), source, len(data),
                               round(time.perf_counter() - t0, 2), quantize=quantize,
                               mode="float32" if quantize is None else "dynamic-range", **(gate or {}))
