"""Align faces in real photos: detect -> calibrate the box -> crop -> regress -> map back.

::

    from acrloss.align import FaceAligner, draw_landmarks

    aligner = FaceAligner()                      # shipped "mnv2_acr_300w", dlib HOG detector
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
from acrloss.data_prep.crop import CropTransform, denormalize, face_box
from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.images import IMAGE_EXTENSIONS, read_image, to_rgb
from acrloss.detectors import BoxCalibration, Detection, DlibHOGDetector, StaticBoxes
from acrloss.presets import DEFAULT_MODEL, DEFAULT_REFINE, DEFAULT_TTA, available_models, resolve_model  # noqa: F401
from acrloss.tta import AlignedFace, flip_disagreement, predict_tta, spec_for_points

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

    def _predict(self, crops: np.ndarray) -> np.ndarray:
        """Normalized ``(B, N, 2)`` predictions for float32 crops, in chunks of ``batch_size``."""
        import keras  # noqa: PLC0415  (the backend: loaded with the model, not with this module)

        from acrloss.models.regressor import landmarks_from_output  # noqa: PLC0415

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
        points: list[np.ndarray] = []
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
        points, quality = self._align_with_quality([(rgb, det_boxes)], calibrate)
        return [AlignedFace(p, b, float(s), q) for p, b, s, q in zip(points[0], det_boxes, scores, quality[0])]

    def align_faces_batch(self, items: Sequence[tuple[Any, Any]], calibrate: bool = True) -> list[list[AlignedFace]]:
        """:meth:`align_faces` for many ``(image, boxes)`` pairs (``boxes=None``: detect), with
        all faces in shared batched model calls; one list per pair, in input order."""
        detected = [self.detect(image, boxes) for image, boxes in items]
        points, quality = self._align_with_quality([(rgb, b) for rgb, b, _ in detected], calibrate)
        return [[AlignedFace(p, b, float(s), q) for p, b, s, q in zip(pts, boxes, scores, qs)]
                for (_, boxes, scores), pts, qs in zip(detected, points, quality)]

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
