"""``LandmarkPredictor``: a face box -> the crop -> the model -> the points in the photo.

The one place where the library runs a landmark model on faces; :class:`acrloss.test.Test`,
:class:`acrloss.align.FaceAligner` (and the video tracker through it) and the benchmarks all
go through it::

    from acrloss.predictor import LandmarkPredictor, PredictorOptions

    predictor = LandmarkPredictor("mnv2_acr_300w")                  # a name, .h5/.keras, .tflite, .onnx
    pred = predictor.predict(rgb, boxes)                             # boxes: (F, 4) landmark-extent boxes
    pred.points                                                      # (F, N, 2) in the photo's pixels
    predictor = LandmarkPredictor("m.onnx", PredictorOptions(batch_size=8, num_threads=1))

Three stages, each public so that a caller needing only one of them uses the same code:

1. **crop** (:meth:`LandmarkPredictor.crop`, :meth:`~LandmarkPredictor.crop_samples`): a
   :class:`acrloss.data_prep.crop.CropTransform` around each box, ``(1 + margin)`` times its
   longer side; the boxes are *landmark-extent* boxes (what the model was trained on). Turning
   a face-detector box into one (the box calibration) belongs to ``FaceAligner``.
2. **model** (:meth:`~LandmarkPredictor.predict_crops`): float32 ``(B, S, S, 3)`` RGB [0, 255]
   crops in chunks of ``batch_size`` -> normalized ``(B, N, 2)`` points
   (:mod:`acrloss.config`). The model is a Keras model (any family; heatmap models decode
   with their own decoder unless ``decoder`` says otherwise; a MuSiCa cascade can stop after
   ``stages`` stages or exit early per face at ``early_exit``), an exported ``.tflite`` /
   ``.onnx`` file (:class:`acrloss.runtimes.ExportedModel`) or any object with
   ``input_shape`` that maps such a batch to ``(B, 2N)`` (e.g.
   :class:`acrloss.export_cascade.ExportedCascade`).
3. **back to the photo** (:meth:`~LandmarkPredictor.to_photo`): each crop's inverse mapping.

On top of one pass, two options of the same predictor (they only re-run these stages):
``refine`` extra passes re-crop each face around the box of its predicted points, and ``tta``
averages each pass with the mirrored crop through the mirror map and gives each face a
quality score, the flip disagreement (:mod:`acrloss.tta`). Detection, box calibration,
colour order, folders and video tracking stay in :mod:`acrloss.align` / :mod:`acrloss.video`.

Errors name the model file: a missing file is :class:`FileNotFoundError`, an unreadable one,
a model that does not take square RGB crops, a point count that does not fit
(:meth:`~LandmarkPredictor.check_points`), a bad box or option is :class:`PredictorError`
(a :class:`ValueError`).
"""
from __future__ import annotations

import copy
import math
import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from acrloss.config import CropConfig
from acrloss.data_prep.crop import CropTransform, denormalize, face_box, normalize
from acrloss.tta import flip_disagreement, predict_tta, spec_for_points

__all__ = ["LandmarkPredictor", "PredictorOptions", "Prediction", "PredictorError"]


class PredictorError(ValueError):
    """A model, an option or an input the predictor cannot use; the message names the model file."""


@dataclass(frozen=True)
class PredictorOptions:
    """How :class:`LandmarkPredictor` runs (validated on creation; an option that does not
    apply to the model is an error when the predictor is built).

    Attributes:
        margin: crop side = ``(1 + margin)`` x the box's longer side; must match the model's
            training crops (0.25 for the shipped models).
        batch_size: crops per model call.
        refine: extra passes re-cropping each face around its predicted points' box.
        tta: horizontal-flip test-time averaging on every pass (twice the model calls), which
            also gives each face its flip disagreement (:mod:`acrloss.tta`).
        compiled: Keras models on the TensorFlow backend run through one cached
            ``tf.function`` (eager calls cost several times the network at small batches);
            other backends and exported files run as they are (already compiled).
        num_threads: CPU threads of an exported file's runtime (``.tflite`` / ``.onnx`` paths
            only; ``None``: the runtime's default).
        decoder: heatmap models only: ``argmax``, ``quarter``, ``dark`` or ``keyposs``
            instead of the checkpoint's own decoder.
        stages: MuSiCa (Keras) only: the points of stage ``stages`` (1..T) instead of the last
            (the whole cascade still runs; for less work use ``early_exit``).
        early_exit: MuSiCa (Keras) only: per-face early exit
            (:class:`acrloss.early_exit.EarlyExitCascade`, stages compiled), a face stops after
            the first stage whose predicted error (NME fraction) is below this; ``+inf``: stage
            1 only; ``None``: the plain model call (every stage).
    """

    margin: float = CropConfig.margin
    batch_size: int = 32
    refine: int = 0
    tta: bool = False
    compiled: bool = False
    num_threads: int | None = None
    decoder: str | None = None
    stages: int | None = None
    early_exit: float | None = None

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> PredictorError:
            return PredictorError(f"PredictorOptions: {name} {why}, got {getattr(self, name)!r}")

        for name in ("tta", "compiled"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be True or False")
        for name, low in (("batch_size", 1), ("refine", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"must be an integer >= {low}")
        for name in ("num_threads", "stages"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise bad(name, "must be None or an integer >= 1")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not 0 <= self.margin < 10:
            raise bad("margin", "must be a number in [0, 10)")
        if self.decoder is not None:
            from acrloss.codecs import DECODERS  # noqa: PLC0415

            if self.decoder not in DECODERS:
                raise bad("decoder", f"must be None or one of {tuple(DECODERS)}")
        if self.early_exit is not None:
            if isinstance(self.early_exit, bool) or not isinstance(self.early_exit, (int, float)) or math.isnan(self.early_exit):
                raise bad("early_exit", "must be None or a number (an NME fraction; +-inf allowed)")
            if self.stages is not None:
                raise PredictorError("PredictorOptions: give stages or early_exit, not both")


@dataclass
class Prediction:
    """What :meth:`LandmarkPredictor.predict` returns for ``F`` faces.

    ``points``: ``(F, N, 2)`` in the photo's 0-based pixel-centre coordinates. ``transforms``:
    the crop of each face in the last pass. ``flip_disagreement``: ``(F,)`` quality scores
    (an NME-like fraction, lower is better; :mod:`acrloss.tta`), ``None`` without ``tta``.
    """

    points: np.ndarray
    transforms: list[CropTransform]
    flip_disagreement: np.ndarray | None = None


def _check_boxes(boxes: Any, where: str) -> np.ndarray:
    """``boxes`` as ``(F, 4)`` float64 ``(x0, y0, x1, y1)``; :class:`PredictorError` otherwise."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PredictorError(f"{where}: boxes must be numbers (x0, y0, x1, y1), got {boxes!r}") from exc
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise PredictorError(f"{where}: boxes must be (F, 4) (x0, y0, x1, y1), got shape {arr.shape}")
    for box in arr:
        if not np.all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
            raise PredictorError(f"{where}: bad face box {box.tolist()} (needs finite x0 <= x1, y0 <= y1)")
    return arr


class LandmarkPredictor:
    """Landmarks in the photo for face boxes (see the module docs).

    ``model``: a shipped model name, a ``.h5`` / ``.keras`` / ``.tflite`` / ``.onnx`` path, a
    ``keras.Model`` or any object with ``input_shape`` mapping float32 ``(B, S, S, 3)`` to
    ``(B, 2N)`` normalized points. ``options``: :class:`PredictorOptions` (default: one pass,
    no TTA, batch 32, margin 0.25).
    """

    def __init__(self, model: Any, options: PredictorOptions | None = None) -> None:
        self.options = options if options is not None else PredictorOptions()
        if not isinstance(self.options, PredictorOptions):
            raise TypeError(f"LandmarkPredictor: options must be PredictorOptions, got {type(options).__name__}")
        opts = self.options
        exported = False
        if isinstance(model, (str, os.PathLike)):
            from acrloss.presets import resolve_model  # noqa: PLC0415
            from acrloss.runtimes import SUFFIXES, ExportedModel  # noqa: PLC0415

            self.model_path: str | None = str(resolve_model(model))
            if Path(self.model_path).suffix.lower() in SUFFIXES:
                self.model: Any = ExportedModel(self.model_path, num_threads=opts.num_threads)
                exported = True
            else:
                from acrloss.models.regressor import load_model  # noqa: PLC0415

                self.model = load_model(self.model_path)
        else:
            if not hasattr(model, "input_shape"):
                raise TypeError("LandmarkPredictor: model must be a name, a path, or a model with an input_shape")
            self.model_path = None
            self.model = model
        name = self.name
        shape = tuple(self.model.input_shape)
        if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
            raise PredictorError(f"{name}: the model takes input {shape}; the predictor needs square RGB crops (batch, S, S, 3)")
        self.input_size = int(shape[1])
        keras_model = _is_keras(self.model)
        if opts.num_threads is not None and not exported:
            raise PredictorError(f"{name}: num_threads applies to .tflite / .onnx files only")
        if opts.decoder is not None:
            if not keras_model:
                raise PredictorError(f"{name}: decoder applies to Keras heatmap models only")
            from acrloss.models.heatmap import set_decoder  # noqa: PLC0415

            try:
                set_decoder(self.model, opts.decoder)
            except ValueError as exc:
                raise PredictorError(f"{name}: {exc}") from exc
        self._runner = None
        if opts.stages is not None or opts.early_exit is not None:
            if not keras_model:
                raise PredictorError(f"{name}: stages / early_exit apply to Keras MuSiCa models only")
            from acrloss.early_exit import EarlyExitCascade  # noqa: PLC0415

            try:
                # early exit runs the stages compiled (jax.jit / tf.function), as the cascade is meant to
                runner = EarlyExitCascade(self.model, compiled=opts.early_exit is not None)
            except ValueError as exc:
                raise PredictorError(f"{name}: stages / early_exit need a MuSiCa model ({exc})") from exc
            if opts.stages is not None and opts.stages > runner.num_stages:
                raise PredictorError(f"{name}: stages={opts.stages}, but the cascade has {runner.num_stages}")
            self._runner = runner if opts.early_exit is not None else None
        # shared by every copy made by with_options (one model, one traced graph, one probe)
        self._shared: dict[str, Any] = {}

    # ------------------------------------------------------------------ description
    @property
    def name(self) -> str:
        """The model file, or the model's class name."""
        return str(self.model_path or getattr(self.model, "path", None) or getattr(self.model, "name", None)
                   or type(self.model).__name__)

    @property
    def margin(self) -> float:
        return float(self.options.margin)

    @property
    def num_points(self) -> int:
        """The landmark count the model predicts (one probe call, cached)."""
        if "num_points" not in self._shared:
            zeros = np.zeros((1, self.input_size, self.input_size, 3), np.float32)
            try:
                self._shared["num_points"] = int(self._call(zeros).shape[1]) // 2
            except ValueError as exc:
                raise PredictorError(f"{self.name}: {exc}") from exc
        return self._shared["num_points"]

    def check_points(self, num_points: int, what: str) -> None:
        """:class:`PredictorError` unless the model predicts ``num_points`` (``what``: the data, e.g. ``"300w"``)."""
        got = self.num_points
        if got != num_points:
            raise PredictorError(f"{self.name}: the model predicts {got} points; {what} has {num_points} (wrong point count)")

    def with_options(self, **changes: Any) -> "LandmarkPredictor":
        """A predictor on the same loaded model with some options changed (validated).
        Options that change how the model is loaded (``num_threads``, ``decoder``) cannot
        change here: build a new predictor."""
        fixed = {"num_threads", "decoder"} & set(changes)
        if fixed:
            raise PredictorError(f"{self.name}: {sorted(fixed)} cannot change on a loaded model; build a new LandmarkPredictor")
        unknown = set(changes) - {f.name for f in fields(PredictorOptions)}
        if unknown:
            raise TypeError(f"with_options: unknown option(s) {sorted(unknown)}")
        opts = replace(self.options, **changes)
        if opts.stages != self.options.stages or opts.early_exit != self.options.early_exit:
            other = LandmarkPredictor(self.model, opts)  # validates and builds the cascade runner
            other.model_path = self.model_path
            return other
        other = copy.copy(self)
        other.options = opts
        return other

    def __repr__(self) -> str:
        return f"LandmarkPredictor({self.name!r}, input_size={self.input_size}, {self.options})"

    # ------------------------------------------------------------------ 2. the model
    def _call(self, x: np.ndarray) -> np.ndarray:
        """One chunk of float32 crops -> normalized ``(B, 2N)`` (float64)."""
        from acrloss.models.regressor import landmarks_from_output  # noqa: PLC0415

        opts = self.options
        if self._runner is not None:
            return landmarks_from_output(self._runner.run(x, float(opts.early_exit)).landmarks)
        if not _is_keras(self.model):
            return landmarks_from_output(self.model(x))
        y = self._graph()(x) if opts.compiled else self.model(x, training=False)
        if opts.stages is not None:
            stages = np.asarray(_to_numpy(y["stages"]))
            return landmarks_from_output(stages[:, opts.stages - 1])
        return landmarks_from_output(y)

    def _graph(self):
        """The model's call as one cached ``tf.function`` (TensorFlow backend), else the eager call."""
        if "graph" not in self._shared:
            import keras  # noqa: PLC0415

            model = self.model
            fn = lambda x: model(x, training=False)  # noqa: E731
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf  # noqa: PLC0415

                graph = tf.function(fn, reduce_retracing=True)
                fn = lambda x: graph(tf.constant(x))  # noqa: E731
            self._shared["graph"] = fn
        return self._shared["graph"]

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Normalized ``(B, N, 2)`` points for float32 ``(B, S, S, 3)`` RGB [0, 255] crops,
        in chunks of ``batch_size`` (no TTA: see :meth:`predict_pass`)."""
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise PredictorError(f"{self.name}: crops must be (B, {self.input_size}, {self.input_size}, 3), got {crops.shape}")
        step = self.options.batch_size
        out = [self._call(crops[i : i + step]).reshape(len(crops[i : i + step]), -1, 2) for i in range(0, len(crops), step)]
        return np.concatenate(out, axis=0) if out else np.zeros((0, 0, 2))

    def predict_pass(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One pass: normalized ``(B, N, 2)`` points and, with ``tta``, the flip disagreement in
        crop pixels ``(B,)`` (:func:`acrloss.tta.predict_tta`; the mirror map of the model's
        point count), else ``None``."""
        if not self.options.tta:
            return self.predict_crops(crops), None
        return predict_tta(self.predict_crops, np.asarray(crops, dtype=np.float32))

    # ------------------------------------------------------------------ 1. crops, 3. back
    def transform(self, box: Sequence[float] | np.ndarray) -> CropTransform:
        """The crop around one landmark-extent box ``(x0, y0, x1, y1)``."""
        return CropTransform.from_box(_check_boxes(box, self.name)[0], self.input_size, self.margin)

    def crop(self, image: np.ndarray, boxes: Any) -> tuple[np.ndarray, list[CropTransform]]:
        """``(float32 crops (F, S, S, 3), transforms)`` of an RGB image around ``(F, 4)`` boxes."""
        transforms = [CropTransform.from_box(b, self.input_size, self.margin) for b in _check_boxes(boxes, self.name)]
        return self._warp([(image, t) for t in transforms]), transforms

    def _warp(self, jobs: Sequence[tuple[np.ndarray, CropTransform]]) -> np.ndarray:
        if not jobs:
            return np.zeros((0, self.input_size, self.input_size, 3), np.float32)
        return np.stack([t.warp(image) for image, t in jobs]).astype(np.float32)

    def to_photo(self, points: np.ndarray, transforms: Sequence[CropTransform], normalized: bool = True) -> np.ndarray:
        """``(F, N, 2)`` crop points (normalized, or crop pixels with ``normalized=False``) mapped
        through each crop's inverse into the photo's pixels."""
        pts = np.asarray(points, dtype=np.float64)
        pts = pts.reshape(len(pts), -1, 2)
        if len(pts) != len(transforms):
            raise PredictorError(f"{self.name}: {len(pts)} predictions for {len(transforms)} crops")
        out = [t.inverse(denormalize(p, self.input_size) if normalized else p) for p, t in zip(pts, transforms)]
        return np.stack(out) if out else np.zeros((0, 0, 2))

    def to_crop(self, points: np.ndarray, transforms: Sequence[CropTransform]) -> np.ndarray:
        """The reverse of :meth:`to_photo`: photo points -> normalized crop points ``(F, N, 2)``."""
        return np.stack([normalize(t.forward(p), self.input_size) for p, t in zip(points, transforms)])

    # ------------------------------------------------------------------ the whole path
    def predict(self, image: np.ndarray, boxes: Any) -> Prediction:
        """Landmarks for the faces in ``boxes`` (``(F, 4)`` landmark-extent boxes) of one RGB image."""
        return self.predict_batch([(image, boxes)])[0]

    def predict_batch(self, items: Sequence[tuple[np.ndarray, Any]]) -> list[Prediction]:
        """:meth:`predict` for many ``(rgb image, boxes)`` pairs; all faces share batched model calls."""
        jobs: list[tuple[np.ndarray, CropTransform]] = []
        owners: list[int] = []
        for k, (image, boxes) in enumerate(items):
            for box in _check_boxes(boxes, self.name):
                jobs.append((image, CropTransform.from_box(box, self.input_size, self.margin)))
                owners.append(k)
        points, transforms, quality = self._passes(jobs)
        out = []
        for k in range(len(items)):
            rows = [i for i, o in enumerate(owners) if o == k]
            out.append(Prediction(points[rows] if rows else np.zeros((0, 0, 2)), [transforms[i] for i in rows],
                                  None if quality is None else quality[rows]))
        return out

    def _passes(self, jobs: list[tuple[np.ndarray, CropTransform]]
                ) -> tuple[np.ndarray, list[CropTransform], np.ndarray | None]:
        """``1 + refine`` passes over ``(image, crop)`` jobs: photo points, last crops, quality."""
        if not jobs:
            return np.zeros((0, 0, 2)), [], (np.zeros(0) if self.options.tta else None)
        transforms = [t for _, t in jobs]
        points = np.zeros((0, 0, 2))
        disagreement = None
        for step in range(1 + self.options.refine):
            if step:  # refine: re-crop around the predicted points' box
                transforms = [CropTransform.from_box(face_box(p), self.input_size, self.margin) for p in points]
            pred, disagreement = self.predict_pass(self._warp([(image, t) for (image, _), t in zip(jobs, transforms)]))
            points = self.to_photo(pred, transforms)
        quality = None
        if disagreement is not None:
            norm = spec_for_points(points.shape[1]).norm_points
            quality = np.array([flip_disagreement(d, p, float(np.sqrt(abs(np.linalg.det(t.matrix[:, :2])))), norm)
                                for d, p, t in zip(disagreement, points, transforms)])
        return points, transforms, quality

    # ------------------------------------------------------------------ labelled samples
    def crop_samples(self, samples: Sequence[Any], rejected: list | None = None
                     ) -> tuple[np.ndarray, list[CropTransform], list[int]]:
        """``(float32 crops, transforms, indices)`` of labelled samples, cropped as in training
        and :class:`acrloss.test.Test` (each sample's box, else its points' box). An unreadable
        image raises :class:`acrloss.data_prep.formats.LandmarkFileError`; with a ``rejected``
        list it is appended there and its index left out."""
        images, transforms, rows = [], [], []
        seq = self._sequence(samples)
        for i in range(len(samples)):
            got = self._load(seq, samples, i, rejected)
            if got is not None:
                images.append(got[0])
                transforms.append(got[1])
                rows.append(i)
        crops = np.stack(images).astype(np.float32) if images else np.zeros((0, self.input_size, self.input_size, 3), np.float32)
        return crops, transforms, rows

    def _sequence(self, samples: Sequence[Any]):
        from acrloss.data_prep.pipeline import LandmarkSequence  # noqa: PLC0415

        return LandmarkSequence(samples, CropConfig(self.input_size, self.margin), batch_size=self.options.batch_size, workers=1)

    @staticmethod
    def _load(seq: Any, samples: Sequence[Any], i: int, rejected: list | None):
        from acrloss.data_prep.formats import LandmarkFileError, RejectedFile  # noqa: PLC0415

        try:
            image, _, transform, _ = seq.load(i)
        except LandmarkFileError as exc:
            if rejected is None:
                raise
            rejected.append(RejectedFile.from_error(samples[i].image_path, exc))
            return None
        return image, transform

    def predict_samples(self, samples: Sequence[Any], rejected: list | None = None, progress: bool = False) -> np.ndarray:
        """Landmarks ``(M, N, 2)`` in each sample's image, the samples cropped as
        :meth:`crop_samples` does, ``batch_size`` samples per model call (refine / TTA apply).
        An unreadable image raises :class:`acrloss.data_prep.formats.LandmarkFileError`; with
        a ``rejected`` list it is appended there and its row is NaN. ``progress``: a bar on a
        terminal."""
        from tqdm import tqdm  # noqa: PLC0415

        seq = self._sequence(samples)
        out: np.ndarray | None = None
        step = self.options.batch_size
        starts = range(0, len(samples), step)
        for start in tqdm(starts, desc="predict", unit="batch", disable=not (progress and sys.stderr.isatty())):
            jobs, rows = [], []
            for i in range(start, min(start + step, len(samples))):
                got = self._load(seq, samples, i, rejected)
                if got is not None:
                    jobs.append(got)
                    rows.append(i)
            if not rows:
                continue
            if self.options.refine:  # later passes re-crop from the image
                from acrloss.data_prep.images import read_image  # noqa: PLC0415

                points, _, _ = self._passes([(read_image(samples[i].image_path), t) for i, (_, t) in zip(rows, jobs)])
            else:  # the crops the sequence already cut
                pred, _ = self.predict_pass(np.stack([c for c, _ in jobs]).astype(np.float32))
                points = self.to_photo(pred, [t for _, t in jobs])
            if out is None:
                out = np.full((len(samples), points.shape[1], 2), np.nan)
            out[rows] = points
        if out is None:
            out = np.full((len(samples), self.num_points, 2), np.nan)
        return out


def _is_keras(model: Any) -> bool:
    if "keras" not in sys.modules:  # an object of a model class needs keras imported
        return False
    import keras  # noqa: PLC0415

    return isinstance(model, keras.Model)


def _to_numpy(x: Any) -> np.ndarray:
    import keras  # noqa: PLC0415

    return np.asarray(keras.ops.convert_to_numpy(x))
