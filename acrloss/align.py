"""Align faces in real photos: detect -> calibrate the box -> crop -> regress -> map back.

::

    from acrloss.align import FaceAligner, draw_landmarks

    aligner = FaceAligner()                      # shipped "ensemble_acr_300w", dlib HOG detector
    faces = aligner.get_landmarks("photo.jpg")   # list of (68, 2) arrays, one per face
    faces, boxes, scores = aligner.get_landmarks(image, return_boxes=True)
    annotated = draw_landmarks(image, faces, boxes)      # RGB in, RGB out

**Colour order.** A path is always read correctly. An *array* is taken as RGB unless you
say otherwise: a ``cv2.imread`` array is BGR, so pass ``color="bgr"`` (per call, or once
with ``FaceAligner(color="bgr")``)::

    frame = cv2.imread("photo.jpg")                               # BGR
    faces = aligner.get_landmarks(frame, color="bgr")
    cv2.imwrite("out.jpg", draw_landmarks(frame, faces, color="bgr"))  # BGR in, BGR out
    save_annotated("out.jpg", frame, faces, color="bgr")          # or: draw and write in one call

A BGR array passed as RGB is *not* detected (any 3-channel array is a valid RGB image): it
runs, and its points come out off (up to 5.4 px on real 300-W photos; docs/align.md).

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
import numpy as np

from acrloss.config import CropConfig
from acrloss.data_prep.crop import CropTransform
from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.images import IMAGE_EXTENSIONS, read_image, to_rgb
from acrloss.detectors import BoxCalibration, Detection, DlibHOGDetector, StaticBoxes, calibration_for
from acrloss.presets import DEFAULT_MODEL, DEFAULT_REFINE, DEFAULT_TTA, available_models, resolve_model  # noqa: F401
from acrloss.predictor import LandmarkPredictor, Prediction, PredictorError, PredictorOptions
from acrloss.tta import AlignedFace

# Keras (and with it the backend) is imported at the first model load or call, not here:
# ``acrloss --help`` and argument errors stay fast. Models by name, the model folders, the
# bundled default and the photo-path defaults live in acrloss.presets.


#: channel orders an image array can be given in (``color=``)
COLOR_ORDERS = ("rgb", "bgr")


def check_color(color: str) -> str:
    """``color`` if it is ``"rgb"`` or ``"bgr"``, else a :class:`ValueError` naming the choices."""
    if color not in COLOR_ORDERS:
        raise ValueError(f"color must be 'rgb' or 'bgr' (the channel order of image arrays), got {color!r}")
    return color


def _as_rgb(image: Any, color: str = "rgb") -> tuple[np.ndarray, str]:
    """``(RGB uint8 image, source name)`` for a path (read as RGB whatever ``color``) or an
    array in ``color`` order (greyscale, 3 or 4 channels)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), str(image)
    arr = np.asarray(image)
    if check_color(color) == "bgr" and arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])]
    return to_rgb(arr), "image"


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
    ``color``: the channel order of image *arrays* given to this aligner, ``"rgb"``
    (default) or ``"bgr"`` (``cv2.imread``, OpenCV video frames); each call can override it
    with its own ``color=``. Paths are always read correctly. Greyscale arrays need no order.
    ``tta``: horizontal-flip test-time averaging through the mirror map on every pass (twice
    the model calls); it also gives each face a quality score, the flip disagreement
    (:meth:`align_faces`, :mod:`acrloss.tta`).

    The crop -> model -> photo-points step, with ``margin``, ``batch_size``, ``refine`` and
    ``tta``, is :attr:`predictor` (a :class:`acrloss.predictor.LandmarkPredictor`); the aligner
    adds reading, colour order, detection and box calibration. Setting ``aligner.refine`` /
    ``aligner.tta`` changes the predictor's options.
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
        color: str = "rgb",
    ) -> None:
        self.color = check_color(color)
        if not isinstance(model, (str, os.PathLike)) and not hasattr(model, "input_shape"):
            raise TypeError("FaceAligner: model must be a name, a path, or a model with an input_shape")
        try:  # crop -> model -> points in the photo, refine passes and TTA: acrloss.predictor
            self.predictor = LandmarkPredictor(
                model, PredictorOptions(margin=float(margin), batch_size=int(batch_size), refine=int(refine), tta=tta))
        except PredictorError as exc:
            raise ValueError(f"FaceAligner: {exc}") from exc
        self._detector = detector
        self.calibration = calibration_for(detector) if calibration is None else calibration

    # ------------------------------------------------------------------ the predictor's settings
    @property
    def model(self) -> Any:
        """The loaded model (``keras.Model``, :class:`acrloss.runtimes.ExportedModel`, ...)."""
        return self.predictor.model

    @property
    def model_path(self) -> str | None:
        """The model file (``None`` for a model object given directly)."""
        return self.predictor.model_path

    @property
    def input_size(self) -> int:
        return self.predictor.input_size

    @property
    def margin(self) -> float:
        return self.predictor.margin

    @property
    def batch_size(self) -> int:
        return self.predictor.options.batch_size

    @property
    def refine(self) -> int:
        """Extra re-crop passes (settable; validated by :class:`PredictorOptions`)."""
        return self.predictor.options.refine

    @refine.setter
    def refine(self, value: int) -> None:
        self.predictor = self.predictor.with_options(refine=value)

    @property
    def tta(self) -> bool:
        """Flip test-time averaging and the quality score (settable)."""
        return self.predictor.options.tta

    @tta.setter
    def tta(self, value: bool) -> None:
        self.predictor = self.predictor.with_options(tta=value)

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
        return self.predictor.transform(self.crop_box(box, calibrate))

    def _color(self, color: str | None) -> str:
        return self.color if color is None else check_color(color)

    def detect(self, image: Any, boxes: Any = None, color: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rgb image, boxes (F, 4), scores (F,))`` from the detector or the given boxes.
        ``color``: the channel order of an array ``image`` (default: the aligner's)."""
        rgb, _ = _as_rgb(image, self._color(color))
        dets = StaticBoxes(boxes)(rgb) if boxes is not None else self.detector(rgb)
        if not dets:
            return rgb, np.zeros((0, 4)), np.zeros((0,))
        return rgb, np.stack([np.asarray(b, dtype=np.float64).reshape(4) for b, _ in dets]), np.array([s for _, s in dets], dtype=np.float64)

    def _align(self, items: list[tuple[np.ndarray, np.ndarray]], calibrate: bool) -> list[list[np.ndarray]]:
        """Landmarks per image for ``(rgb, boxes)`` items; all faces go through the model together."""
        return [list(p.points) for p in self._predict(items, calibrate)]

    def _predict(self, items: list[tuple[np.ndarray, np.ndarray]], calibrate: bool) -> list[Prediction]:
        """The predictor on ``(rgb, detector boxes)`` items, the boxes calibrated unless ``calibrate=False``."""
        return self.predictor.predict_batch([(rgb, [self.crop_box(b, calibrate) for b in boxes]) for rgb, boxes in items])

    @staticmethod
    def _faces(pred: Prediction, boxes: np.ndarray, scores: np.ndarray) -> list[AlignedFace]:
        quality = pred.flip_disagreement
        return [AlignedFace(p, b, float(s), None if quality is None else float(quality[i]))
                for i, (p, b, s) in enumerate(zip(pred.points, boxes, scores))]

    # ------------------------------------------------------------------ public
    def get_landmarks(self, image: Any, boxes: Any = None, return_boxes: bool = False, calibrate: bool = True,
                      color: str | None = None, return_pose: bool = False):
        """Landmarks of every face in ``image`` (a path, or a greyscale/RGB/RGBA array).

        ``color``: the channel order of an array ``image``, ``"rgb"`` or ``"bgr"`` (e.g.
        ``get_landmarks(cv2.imread(p), color="bgr")``); default: the aligner's ``color``
        (``"rgb"`` unless set). A path is read correctly whatever ``color`` says.

        ``boxes``: optional ``(F, 4)`` face boxes ``(x0, y0, x1, y1)`` used instead of the
        detector; they are treated like detector boxes (calibrated) unless ``calibrate=False``.
        Returns a list of ``(N, 2)`` float arrays in the original image's 0-based pixel
        coordinates (``[]`` when no face is found), ordered like the boxes (detector: by
        score). With ``return_boxes``: ``(landmarks, boxes (F, 4), scores (F,))`` where the
        boxes are the detector's (or the caller's) uncalibrated boxes. With ``return_pose``:
        a list of :class:`acrloss.pose.HeadPose` (yaw, pitch, roll in degrees; camera
        assumption in :mod:`acrloss.pose`), one per face, is appended to what is returned.
        """
        rgb, det_boxes, scores = self.detect(image, boxes, color)
        landmarks = self._align([(rgb, det_boxes)], calibrate)[0]
        out: tuple = (landmarks, det_boxes, scores) if return_boxes else (landmarks,)
        if return_pose:  # head pose: acrloss.pose
            from acrloss.pose import estimate_pose  # noqa: PLC0415

            out += ([estimate_pose(p, (rgb.shape[1], rgb.shape[0])) for p in landmarks],)
        return out if len(out) > 1 else landmarks

    def align_faces(self, image: Any, boxes: Any = None, calibrate: bool = True,
                    color: str | None = None) -> list[AlignedFace]:
        """Like :meth:`get_landmarks`, one :class:`acrloss.tta.AlignedFace` per face: points,
        the uncalibrated box, its score and the quality score ``flip_disagreement`` (an
        NME-like fraction, lower is better; ``None`` unless ``tta``). Drop likely failures
        with e.g. ``[f for f in faces if f.flip_disagreement < 0.05]``."""
        rgb, det_boxes, scores = self.detect(image, boxes, color)
        return self._faces(self._predict([(rgb, det_boxes)], calibrate)[0], det_boxes, scores)

    def align_faces_batch(self, items: Sequence[tuple[Any, Any]], calibrate: bool = True) -> list[list[AlignedFace]]:
        """:meth:`align_faces` for many ``(image, boxes)`` pairs (``boxes=None``: detect), with
        all faces in shared batched model calls; one list per pair, in input order."""
        detected = [self.detect(image, boxes) for image, boxes in items]
        preds = self._predict([(rgb, b) for rgb, b, _ in detected], calibrate)
        return [self._faces(pred, boxes, scores) for (_, boxes, scores), pred in zip(detected, preds)]

    def get_landmarks_batch(self, images: Sequence[Any], calibrate: bool = True,
                            color: str | None = None) -> list[list[np.ndarray]]:
        """``get_landmarks`` for many images (paths or arrays, arrays in ``color`` order,
        default the aligner's): one list of faces per image, in input order. All faces of
        all images share batched model calls."""
        items = []
        for image in images:
            rgb, boxes, _ = self.detect(image, color=color)
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

    # ------------------------------------------------------------------ video: acrloss.video
    def track(self, frames: Any, config: Any = None, **options: Any):
        """Per-frame faces for a sequence of frames (arrays, or :func:`acrloss.video.read_video`):
        an iterator of :class:`acrloss.video.FrameResult` with tracked ids and One Euro
        smoothed landmarks. ``config``: a :class:`acrloss.video.TrackConfig`; keyword
        ``options`` override its fields (e.g. ``detect_every=5, return_pose=True``)."""
        from dataclasses import replace  # noqa: PLC0415

        from acrloss.video import TrackConfig, track_faces  # noqa: PLC0415

        cfg = config if config is not None else TrackConfig()
        if not isinstance(cfg, TrackConfig):
            raise TypeError(f"FaceAligner.track: config must be a TrackConfig, got {type(cfg).__name__}")
        return track_faces(self, frames, replace(cfg, **options) if options else cfg)


def draw_landmarks(
    image: Any,
    landmarks_list: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
    radius: int | None = None,
    point_color: tuple[int, int, int] = (0, 255, 0),
    box_color: tuple[int, int, int] = (255, 0, 0),
    color: str = "rgb",
    poses: Sequence[Any] | None = None,
) -> np.ndarray:
    """A uint8 copy of ``image`` with each face's points as filled circles and the ``boxes``
    as rectangles. ``radius=None`` scales the dots to each face's size.

    ``color`` is the channel order of both the input array and the returned array:
    ``"rgb"`` (default; for matplotlib, PIL) or ``"bgr"`` (for ``cv2.imshow``/``cv2.imwrite``:
    ``cv2.imwrite(p, draw_landmarks(cv2.imread(q), faces, color="bgr"))``). A path is read
    correctly and returned in ``color`` order. ``point_color`` / ``box_color`` are always
    RGB triples (default green points, red boxes), whatever ``color`` is. To write a file,
    :func:`save_annotated` does it in one call.

    ``poses``: optional :class:`acrloss.pose.HeadPose` per face (``None`` entries skipped),
    drawn as axes from the nose tip: x (subject's left) red, y (down) green, z (out of the
    face) blue.
    """
    canvas = _as_rgb(image, check_color(color))[0].copy()
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
    for pose in poses or ():  # head pose axes: acrloss.pose
        if pose is None:
            continue
        ends = pose.axes()
        if not np.all(np.isfinite(ends)):
            continue
        t = max(1, int(round(float(np.linalg.norm(ends[1] - ends[0])) / 25.0)))
        for end, axis_color in zip(ends[1:], ((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            cv2.line(canvas, (fx(ends[0][0]), fx(ends[0][1])), (fx(end[0]), fx(end[1])), axis_color, t, cv2.LINE_AA, shift)
    return canvas if color == "rgb" else np.ascontiguousarray(canvas[:, :, ::-1])


#: annotated-image formats :func:`encode_image` and :func:`save_annotated` write, by suffix
IMAGE_WRITE_FORMATS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}


def encode_image(image: np.ndarray, fmt: str, color: str = "rgb") -> bytes:
    """The bytes of a ``"jpg"`` (quality 92) or ``"png"`` file of a ``color``-ordered uint8 image."""
    if fmt not in ("jpg", "png"):
        raise ValueError(f"image format must be 'jpg' or 'png', got {fmt!r}")
    arr = np.asarray(image)
    bgr = arr if check_color(color) == "bgr" or arr.ndim == 2 else np.ascontiguousarray(arr[:, :, ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, buf = cv2.imencode(f".{fmt}", bgr, params)
    if not ok:  # pragma: no cover
        raise ValueError(f"cannot encode the image as {fmt}")
    return buf.tobytes()


def save_annotated(
    path: str | os.PathLike,
    image: Any,
    landmarks_list: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
    color: str = "rgb",
    **draw_options: Any,
) -> Path:
    """Draw the faces (:func:`draw_landmarks`) and write the picture to ``path`` (``.jpg``,
    ``.jpeg`` or ``.png``) with the colours right, atomically; returns the path.

    ``color`` is the channel order of an array ``image`` (``"bgr"`` for ``cv2.imread``);
    a path is read correctly. ``draw_options``: ``radius``, ``point_color``, ``box_color``.
    """
    from acrloss.io import atomic_write_bytes  # noqa: PLC0415

    path = Path(path)
    fmt = IMAGE_WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image type {path.suffix!r}; use .jpg, .jpeg or .png")
    drawn = draw_landmarks(image, landmarks_list, boxes, color=color, **draw_options)  # in ``color`` order
    atomic_write_bytes(path, encode_image(drawn, fmt, color))
    return path
