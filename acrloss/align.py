"""Align faces in real photos: detect -> calibrate the box -> crop -> regress -> map back.

::

    from acrloss.align import FaceAligner, draw_landmarks

    aligner = FaceAligner()                      # shipped "mnv2_acr_300w", dlib HOG detector
    faces = aligner.get_landmarks("photo.jpg")   # list of (68, 2) arrays, one per face
    faces, boxes, scores = aligner.get_landmarks(image, return_boxes=True)
    annotated = draw_landmarks(image, faces, boxes)

Landmarks are returned in the *original* image's 0-based pixel-centre coordinates
(:mod:`acrloss.config`). Every box, whether from the detector or given by the caller, is
treated as a *face-detector* box and goes through the :class:`BoxCalibration` that maps
dlib HOG boxes to the landmark-extent boxes the model was trained on; pass
``calibrate=False`` when your boxes already are landmark-extent boxes (e.g. from a
previous alignment's :func:`acrloss.data_prep.crop.face_box`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import keras
import numpy as np

from acrloss.config import CropConfig
from acrloss.data_prep.crop import CropTransform, denormalize, face_box
from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.images import IMAGE_EXTENSIONS, read_image, to_rgb
from acrloss.detectors import BoxCalibration, Detection, DlibHOGDetector, StaticBoxes
from acrloss.models.regressor import landmarks_from_output
from acrloss.tta import AlignedFace, flip_disagreement, predict_tta, spec_for_points

DEFAULT_MODEL = "mnv2_acr_300w"
#: photo-path defaults, chosen by detector-box NME on the fixed-seed validation split
#: (benchmarks/generalization.py; docs/generalization.md states the numbers and the cost)
DEFAULT_REFINE = 1
DEFAULT_TTA = True
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
MODEL_DIRS = (REPO_ROOT / "pre_trained_models", PACKAGE_DIR / "pre_trained_models")


def available_models() -> list[str]:
    """Names of the shipped ``.h5`` checkpoints (``pre_trained_models/*.h5``)."""
    names: set[str] = set()
    for d in MODEL_DIRS:
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.h5") if not p.name.endswith(".weights.h5"))
    return sorted(names)


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint path from a file path or a shipped model name.

    Tried in order: (a) an existing file ``name_or_path``; (b) ``<repo root>/pre_trained_models/
    {name}.h5`` where the repo root is the parent of the ``acrloss`` package folder (also
    ``acrloss/pre_trained_models/`` for installed copies). Raises :class:`FileNotFoundError`
    listing the available names otherwise.
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    name = str(name_or_path)
    stem = name[:-3] if name.endswith(".h5") else name
    if os.sep not in stem and "/" not in stem:
        for d in MODEL_DIRS:
            candidate = d / f"{stem}.h5"
            if candidate.is_file():
                return candidate
    names = available_models()
    listed = ", ".join(names) if names else "none (pre_trained_models/ holds no .h5 file)"
    raise FileNotFoundError(
        f"model {name!r}: no such file, and not a shipped model name in {MODEL_DIRS[0]}; available names: {listed}"
    )


def _as_rgb(image: Any) -> tuple[np.ndarray, str]:
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), str(image)
    return to_rgb(np.asarray(image)), "image"


class FaceAligner:
    """68-point landmarks for every face in a photo.

    ``model``: a shipped model name (see :func:`available_models`), a path to a ``.h5``/
    ``.keras`` checkpoint or to an exported ``.tflite``/``.onnx`` file (run by
    :class:`acrloss.export.ExportedModel`), or an already-built model: a ``keras.Model`` (or any object with
    ``input_shape`` that maps a float32 ``(B, S, S, 3)`` RGB [0, 255] batch to ``(B, 2N)``
    normalized points). ``detector``: any callable ``image -> [(box, score), ...]``; ``None``
    creates a :class:`DlibHOGDetector` on first use. ``calibration`` maps detector boxes to
    landmark-extent boxes; ``margin`` must match the model's training crops (0.25).
    ``refine``: extra passes that re-crop each face around the box of its predicted points
    (the landmark-extent crop the model was trained on) and predict again; each pass costs
    one more model call per face (``benchmarks/whole_photo.py`` measures the effect).
    ``tta``: horizontal-flip test-time averaging through the mirror map on every pass (twice
    the model calls); it also gives each face a quality score, the flip disagreement
    (:meth:`align_faces`, :mod:`acrloss.tta`).
    """

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        detector: Callable[[np.ndarray], list[Detection]] | None = None,
        calibration: BoxCalibration | None = None,
        margin: float = CropConfig.margin,
        batch_size: int = 32,
        refine: int = DEFAULT_REFINE,
        tta: bool = DEFAULT_TTA,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            from acrloss.models.regressor import load_model  # noqa: PLC0415

            self.model_path: str | None = str(resolve_model(model))
            if Path(self.model_path).suffix.lower() in (".tflite", ".onnx"):  # exported files: acrloss.export
                from acrloss.export import ExportedModel  # noqa: PLC0415

                self.model = ExportedModel(self.model_path)
            else:
                self.model = load_model(self.model_path)
        else:
            if not hasattr(model, "input_shape"):
                raise TypeError("FaceAligner: model must be a name, a path, or a model with an input_shape")
            self.model_path = None
            self.model = model
        shape = tuple(self.model.input_shape)
        if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"FaceAligner: the model must take (B, S, S, 3) images, its input shape is {shape}")
        self.input_size = int(shape[1])
        self._detector = detector
        self.calibration = BoxCalibration() if calibration is None else calibration
        self.margin = float(margin)
        self.batch_size = int(batch_size)
        if int(refine) < 0:
            raise ValueError(f"FaceAligner: refine must be >= 0, got {refine}")
        self.refine = int(refine)
        # -- flip TTA / quality (acrloss.tta) --
        if not isinstance(tta, bool):
            raise TypeError(f"FaceAligner: tta must be True or False, got {tta!r}")
        self.tta = tta

    # ------------------------------------------------------------------ pieces
    @property
    def detector(self) -> Callable[[np.ndarray], list[Detection]]:
        if self._detector is None:
            self._detector = DlibHOGDetector()
        return self._detector

    def crop_box(self, box: Sequence[float] | np.ndarray, calibrate: bool = True) -> np.ndarray:
        """The landmark-style box a face box is cropped around."""
        return self.calibration.apply(box) if calibrate else np.asarray(box, dtype=np.float64).reshape(4).copy()

    def crop_transform(self, box: Sequence[float] | np.ndarray, calibrate: bool = True) -> CropTransform:
        """The crop the model sees for a face box (after calibration unless ``calibrate=False``)."""
        return CropTransform.from_box(self.crop_box(box, calibrate), self.input_size, self.margin)

    def detect(self, image: Any, boxes: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rgb image, boxes (F, 4), scores (F,))`` from the detector or the given boxes."""
        rgb, _ = _as_rgb(image)
        dets = StaticBoxes(boxes)(rgb) if boxes is not None else self.detector(rgb)
        if not dets:
            return rgb, np.zeros((0, 4)), np.zeros((0,))
        return rgb, np.stack([np.asarray(b, dtype=np.float64).reshape(4) for b, _ in dets]), np.array([s for _, s in dets], dtype=np.float64)

    def _predict(self, crops: np.ndarray) -> np.ndarray:
        """Normalized ``(B, N, 2)`` predictions for float32 crops, in chunks of ``batch_size``."""
        out = []
        for i in range(0, len(crops), self.batch_size):
            x = crops[i : i + self.batch_size]
            y = self.model(x, training=False) if isinstance(self.model, keras.Model) else self.model(x)
            out.append(landmarks_from_output(y).reshape(len(x), -1, 2))
        return np.concatenate(out, axis=0)

    def _align(self, items: list[tuple[np.ndarray, np.ndarray]], calibrate: bool) -> list[list[np.ndarray]]:
        """Landmarks per image for ``(rgb, boxes)`` items; all faces go through the model together."""
        return self._align_with_quality(items, calibrate)[0]

    def _predict_pass(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One pass: normalized ``(B, N, 2)`` points and, with ``tta``, the crop-pixel flip
        disagreement ``(B,)`` (:func:`acrloss.tta.predict_tta`)."""
        if not self.tta:
            return self._predict(crops), None
        return predict_tta(self._predict, crops)  # the mirror map of the model's point count

    def _align_with_quality(self, items: list[tuple[np.ndarray, np.ndarray]], calibrate: bool
                            ) -> tuple[list[list[np.ndarray]], list[list[float | None]]]:
        """``_align`` plus each face's flip disagreement (``None`` without ``tta``)."""
        transforms, owners = [], []
        for k, (rgb, boxes) in enumerate(items):
            for box in boxes:
                transforms.append(self.crop_transform(box, calibrate))
                owners.append(k)
        result: list[list[np.ndarray]] = [[] for _ in items]
        quality: list[list[float | None]] = [[] for _ in items]
        if not transforms:
            return result, quality
        for step in range(1 + self.refine):
            if step:  # refine: re-crop around the predicted points' box (no calibration)
                transforms = [CropTransform.from_box(face_box(p), self.input_size, self.margin) for p in points]
            crops = np.stack([t.warp(items[k][0]) for t, k in zip(transforms, owners)]).astype(np.float32)
            pred, disagreement = self._predict_pass(crops)
            points = [t.inverse(denormalize(p, self.input_size)) for p, t in zip(pred, transforms)]
        norm = spec_for_points(len(points[0])).norm_points if disagreement is not None else None
        for i, (p, k) in enumerate(zip(points, owners)):
            result[k].append(p)
            quality[k].append(None if disagreement is None else flip_disagreement(
                disagreement[i], p, float(np.sqrt(abs(np.linalg.det(transforms[i].matrix[:, :2])))), norm))
        return result, quality

    # ------------------------------------------------------------------ public
    def get_landmarks(self, image: Any, boxes: Any = None, return_boxes: bool = False, calibrate: bool = True):
        """Landmarks of every face in ``image`` (a path, or a greyscale/RGB/RGBA array).

        ``boxes``: optional ``(F, 4)`` face boxes ``(x0, y0, x1, y1)`` used instead of the
        detector; they are treated like detector boxes (calibrated) unless ``calibrate=False``.
        Returns a list of ``(N, 2)`` float arrays in the original image's 0-based pixel
        coordinates (``[]`` when no face is found), ordered like the boxes (detector: by
        score). With ``return_boxes``: ``(landmarks, boxes (F, 4), scores (F,))`` where the
        boxes are the detector's (or the caller's) uncalibrated boxes.
        """
        rgb, det_boxes, scores = self.detect(image, boxes)
        landmarks = self._align([(rgb, det_boxes)], calibrate)[0]
        if return_boxes:
            return landmarks, det_boxes, scores
        return landmarks

    def align_faces(self, image: Any, boxes: Any = None, calibrate: bool = True) -> list[AlignedFace]:
        """Like :meth:`get_landmarks`, one :class:`acrloss.tta.AlignedFace` per face: points,
        the uncalibrated box, its score and the quality score ``flip_disagreement`` (an
        NME-like fraction, lower is better; ``None`` unless ``tta``). Drop likely failures
        with e.g. ``[f for f in faces if f.flip_disagreement < 0.05]``."""
        rgb, det_boxes, scores = self.detect(image, boxes)
        points, quality = self._align_with_quality([(rgb, det_boxes)], calibrate)
        return [AlignedFace(p, b, float(s), q) for p, b, s, q in zip(points[0], det_boxes, scores, quality[0])]

    def align_faces_batch(self, items: Sequence[tuple[Any, Any]], calibrate: bool = True) -> list[list[AlignedFace]]:
        """:meth:`align_faces` for many ``(image, boxes)`` pairs (``boxes=None``: detect), with
        all faces in shared batched model calls; one list per pair, in input order."""
        detected = [self.detect(image, boxes) for image, boxes in items]
        points, quality = self._align_with_quality([(rgb, b) for rgb, b, _ in detected], calibrate)
        return [[AlignedFace(p, b, float(s), q) for p, b, s, q in zip(pts, boxes, scores, qs)]
                for (_, boxes, scores), pts, qs in zip(detected, points, quality)]

    def get_landmarks_batch(self, images: Sequence[Any], calibrate: bool = True) -> list[list[np.ndarray]]:
        """``get_landmarks`` for many images (paths or arrays): one list of faces per image,
        in input order. All faces of all images share batched model calls."""
        items = []
        for image in images:
            rgb, boxes, _ = self.detect(image)
            items.append((rgb, boxes))
        return self._align(items, calibrate)

    def get_landmarks_from_folder(
        self, folder: str | os.PathLike, recursive: bool = False, skip_unreadable: bool = True
    ) -> dict[str, list[np.ndarray]]:
        """``{image path: [landmarks per face]}`` for every image (.jpg/.jpeg/.png/.bmp) in
        ``folder``, sorted by path. Unreadable images are skipped with a warning (or raise
        with ``skip_unreadable=False``); images without faces map to ``[]``."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: folder not found")
        files = sorted(
            p for p in (folder.rglob("*") if recursive else folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        out: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(files), self.batch_size):
            chunk, items = [], []
            for path in files[start : start + self.batch_size]:
                try:
                    rgb, boxes, _ = self.detect(path)
                except LandmarkFileError as exc:  # unreadable image
                    if not skip_unreadable:
                        raise
                    warnings.warn(f"skipping {exc}", stacklevel=2)
                    continue
                chunk.append(str(path))
                items.append((rgb, boxes))
            for path, faces in zip(chunk, self._align(items, True)):
                out[path] = faces
        return out


def draw_landmarks(
    image: Any,
    landmarks_list: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
    radius: int | None = None,
    point_color: tuple[int, int, int] = (0, 255, 0),
    box_color: tuple[int, int, int] = (255, 0, 0),
) -> np.ndarray:
    """An RGB uint8 copy of ``image`` with each face's points as filled circles and the
    ``boxes`` as rectangles. ``radius=None`` scales the dots to each face's size."""
    canvas = (read_image(image) if isinstance(image, (str, os.PathLike)) else to_rgb(np.asarray(image))).copy()
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    one = 1 << shift

    def fx(v: float) -> int:  # pixel centres are integers in OpenCV's drawing grid too
        return int(round(float(v) * one))

    for pts in landmarks_list:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        if not len(pts):
            continue
        side = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1.0))
        r = radius if radius is not None else max(1, int(round(side / 90.0)))
        for x, y in pts:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(canvas, (fx(x), fx(y)), int(r) * one, point_color, -1, cv2.LINE_AA, shift)
    if boxes is not None:
        for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            t = max(1, int(round(max(b[2] - b[0], b[3] - b[1]) / 150.0)))
            cv2.rectangle(canvas, (fx(b[0]), fx(b[1])), (fx(b[2]), fx(b[3])), box_color, t, cv2.LINE_AA, shift)
    return canvas
