"""Face detectors for aligning real photos, and the detector-box -> landmark-box calibration.

A *detector* is any callable ``image (H, W, 3) RGB uint8 -> list of (box, score)`` where
``box`` is a float ``(x0, y0, x1, y1)`` array in the library's 0-based pixel-centre
coordinates (see :mod:`acrloss.config`) and ``score`` a float (higher = more confident).

The regressor was trained on crops made from the *landmark extent* box (the tight box
around the 68 ground-truth points, :func:`acrloss.data_prep.crop.face_box`). A face
detector's box is placed and sized differently (dlib's HOG box covers roughly brows to
chin and cuts off the jaw sides), so detector boxes go through a :class:`BoxCalibration`
before cropping. :func:`fit_box_calibration` measures it on annotated images
(``benchmarks/box_calibration.py`` runs it on the 300-W train split).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from acrloss.data_prep.crop import face_box

Detection = tuple[np.ndarray, float]
Detector = Callable[[np.ndarray], list[Detection]]


def _import_dlib():
    try:
        import dlib  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "DlibHOGDetector needs the 'dlib' package (pip install dlib-bin, or dlib); "
            "alternatively pass your own detector callable or StaticBoxes(boxes) to FaceAligner"
        ) from exc
    return dlib


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (continuous extents)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


#: ``DlibHOGDetector(grey=True)``'s default ``adjust_threshold``: the luma image's HOG at this
#: threshold finds as many faces as the colour image's at dlib's default 0 (381 vs 380 of 400
#: evenly spaced 300-W train faces, IoU >= 0.3 with the landmark box; 374 at 0).
GREY_THRESHOLD = -0.1


class DlibHOGDetector:
    """dlib's frontal-face HOG + linear SVM detector (ships inside dlib; no model file).

    Boxes are ``(left, top, right, bottom)`` of dlib's rectangle as 0-based pixel-centre
    coordinates (dlib's right/bottom are inclusive pixel indices, so the box runs from the
    centre of the first to the centre of the last covered pixel). Scores are dlib's SVM
    margins (``detector.run``); ``threshold`` is dlib's ``adjust_threshold`` (0 = dlib's
    default, lower finds more faces and more false positives; ``None`` = this mode's
    default, :data:`GREY_THRESHOLD` with ``grey=True``, 0 with ``grey=False``).

    Images whose longer side exceeds ``max_side`` are shrunk for detection (HOG with
    upsampling on a 12-megapixel photo is very slow, and faces in such photos are large);
    boxes are mapped back to the original pixel grid. ``max_side=None`` disables this.

    ``grey=True`` (default) runs HOG on the luma image (``cv2.COLOR_RGB2GRAY``) instead of
    the colour image, where dlib takes each pixel's strongest gradient over the three
    channels. It is about a third faster. Luma gradients are a little weaker, so at the
    same threshold it finds slightly fewer faces (374 vs 380 of 400 300-W train faces);
    its default threshold :data:`GREY_THRESHOLD` (-0.1) gives the colour path's recall
    (381 vs 380, the same 2 other detections). The boxes sit slightly differently, so each
    mode has its own fitted calibration (:attr:`box_calibration`, which
    :class:`acrloss.align.FaceAligner` uses by default). ``grey=False`` is dlib's own
    colour path (``docs/speed.md`` measures both).
    """

    def __init__(self, upsample: int = 1, threshold: float | None = None, max_side: int | None = 1024,
                 grey: bool = True) -> None:
        dlib = _import_dlib()
        if int(upsample) < 0:
            raise ValueError(f"DlibHOGDetector: upsample must be >= 0, got {upsample}")
        if max_side is not None and int(max_side) < 1:
            raise ValueError(f"DlibHOGDetector: max_side must be >= 1 or None, got {max_side}")
        if not isinstance(grey, bool):
            raise TypeError(f"DlibHOGDetector: grey must be True or False, got {grey!r}")
        self.upsample = int(upsample)
        self.threshold = (GREY_THRESHOLD if grey else 0.0) if threshold is None else float(threshold)
        self.max_side = None if max_side is None else int(max_side)
        self.grey = grey
        self._detector = dlib.get_frontal_face_detector()

    @property
    def box_calibration(self) -> "BoxCalibration":
        """The detector-box -> landmark-box calibration fitted for this mode (grey or colour)."""
        return BoxCalibration() if self.grey else BoxCalibration.dlib_hog_colour()

    def __call__(self, image: np.ndarray) -> list[Detection]:
        image = np.ascontiguousarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"DlibHOGDetector: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        if self.grey:  # one channel: HOG on luma (and the shrink below) cost a third less
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = image.shape[:2]
        f = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            f = self.max_side / max(h, w)
            image = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            fx, fy = image.shape[1] / w, image.shape[0] / h
        rects, scores, _ = self._detector.run(image, self.upsample, self.threshold)
        out: list[Detection] = []
        for r, s in zip(rects, scores):
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64)
            if f != 1.0:  # pixel-centre coordinates: p_orig = (p_small + 0.5) / f - 0.5
                box = (box + 0.5) / np.array([fx, fy, fx, fy]) - 0.5
            out.append((box, float(s)))
        out.sort(key=lambda d: -d[1])
        return out

    def __repr__(self) -> str:
        return (f"DlibHOGDetector(upsample={self.upsample}, threshold={self.threshold}, max_side={self.max_side}, "
                f"grey={self.grey})")


class StaticBoxes:
    """A "detector" that returns caller-given boxes (score 1.0) whatever the image."""

    def __init__(self, boxes: Iterable[Sequence[float]] | np.ndarray) -> None:
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.size % 4:
            raise ValueError(f"StaticBoxes: expected (x0, y0, x1, y1) boxes, got shape {arr.shape}")
        arr = arr.reshape(-1, 4)
        if not np.all(np.isfinite(arr)):
            raise ValueError("StaticBoxes: boxes hold NaN or infinite values")
        if np.any(arr[:, 2] <= arr[:, 0]) or np.any(arr[:, 3] <= arr[:, 1]):
            raise ValueError("StaticBoxes: every box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0")
        self.boxes = arr

    def __call__(self, image: np.ndarray | None = None) -> list[Detection]:
        return [(b.copy(), 1.0) for b in self.boxes]

    def __repr__(self) -> str:
        return f"StaticBoxes({self.boxes.tolist()})"


# Fitted by:  python benchmarks/box_calibration.py --data-dir ../shared/data/300w --max-faces 400
# (DlibHOGDetector(upsample=1, max_side=1024, grey=True, threshold=-0.1); 300-W train split
# only: afw + helen/trainset + lfpw/trainset, 400 evenly spaced images tried, 382 faces used;
# median IoU with the landmark box 0.711 raw -> 0.764 calibrated).
_DEFAULT_DX = 0.0083
_DEFAULT_DY = 0.0908
_DEFAULT_SCALE = 0.9657
# The same with --hog colour (DlibHOGDetector(grey=False), threshold 0; 381 faces used, IoU
# 0.710 -> 0.761). With --max-faces 0 (all 2012 train images, 1920 used) its medians are
# dx 0.0085, dy 0.0905, scale 0.9546.
_COLOUR_DX = 0.0101
_COLOUR_DY = 0.0908
_COLOUR_SCALE = 0.9668


@dataclass(frozen=True)
class BoxCalibration:
    """Maps a detector box to the landmark-extent box the regressor was trained on.

    With a detector box of centre ``(cx, cy)``, width ``w``, height ``h`` and side
    ``max(w, h)``, the calibrated box is the square of side ``scale * side`` centred on
    ``(cx + dx * w, cy + dy * h)``. A square box whose side equals the landmark box's
    longer side gives the same crop as the landmark box (:meth:`CropTransform.from_box`
    only uses the longer side). The defaults are fitted for :class:`DlibHOGDetector`'s default
    (grey) mode; :meth:`dlib_hog_colour` for ``grey=False``.
    """

    dx: float = _DEFAULT_DX
    dy: float = _DEFAULT_DY
    scale: float = _DEFAULT_SCALE

    @classmethod
    def identity(cls) -> "BoxCalibration":
        return cls(0.0, 0.0, 1.0)

    @classmethod
    def dlib_hog_colour(cls) -> "BoxCalibration":
        """The calibration fitted for ``DlibHOGDetector(grey=False)`` (HOG on the colour image)."""
        return cls(_COLOUR_DX, _COLOUR_DY, _COLOUR_SCALE)

    def apply(self, box: Sequence[float] | np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2.0 + self.dx * w, (y0 + y1) / 2.0 + self.dy * h
        half = self.scale * max(w, h) / 2.0
        return np.array([cx - half, cy - half, cx + half, cy + half])

    @staticmethod
    def measure(detector_box: Sequence[float] | np.ndarray, landmark_box: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
        """The ``(dx, dy, scale)`` that maps this one detector box onto this landmark box."""
        d = np.asarray(detector_box, dtype=np.float64).reshape(4)
        g = np.asarray(landmark_box, dtype=np.float64).reshape(4)
        w, h = d[2] - d[0], d[3] - d[1]
        dx = ((g[0] + g[2]) / 2.0 - (d[0] + d[2]) / 2.0) / w
        dy = ((g[1] + g[3]) / 2.0 - (d[1] + d[3]) / 2.0) / h
        scale = max(g[2] - g[0], g[3] - g[1]) / max(w, h)
        return float(dx), float(dy), float(scale)


def calibration_for(detector: Any) -> BoxCalibration:
    """The box calibration a detector carries (its ``box_calibration``), else :class:`BoxCalibration`'s default.

    A detector plug-in whose boxes sit differently from dlib's grey HOG boxes exposes its own
    fitted calibration as ``box_calibration`` (as :class:`DlibHOGDetector` does per mode).
    """
    cal = getattr(detector, "box_calibration", None)
    return cal if isinstance(cal, BoxCalibration) else BoxCalibration()


def best_match(detections: Sequence[Detection], landmark_box: np.ndarray) -> tuple[Detection | None, float]:
    """The detection with the largest IoU with ``landmark_box`` (``None, 0.0`` when none overlaps)."""
    best, best_iou = None, 0.0
    for det in detections:
        iou = box_iou(det[0], landmark_box)
        if iou > best_iou:
            best, best_iou = det, iou
    return best, best_iou


def fit_box_calibration(samples: Sequence[Any], detector: Detector, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Median detector-box -> landmark-box calibration over annotated ``samples``.

    ``samples``: objects with ``image_path`` and 0-based ``points`` (``Sample``). For each
    image the detection with the largest IoU with the landmark box is used; images with no
    overlapping detection are skipped. Returns ``{"dx", "dy", "scale", "n_used", "n_tried",
    "calibration": BoxCalibration, "iou_raw_median", "iou_calibrated_median"}``. Fit it on
    training images only.
    """
    from acrloss.data_prep.images import read_image  # noqa: PLC0415

    rows, ious = [], []
    for i, s in enumerate(samples):
        image = read_image(s.image_path)
        gt = face_box(s.points)
        det, iou = best_match(detector(image), gt)
        if progress is not None:
            progress(i + 1, len(samples))
        if det is None:
            continue
        rows.append(BoxCalibration.measure(det[0], gt))
        ious.append((iou, det[0], gt))
    if not rows:
        raise ValueError(f"fit_box_calibration: the detector matched none of the {len(samples)} faces")
    arr = np.array(rows)
    cal = BoxCalibration(*(float(v) for v in np.median(arr, axis=0)))
    calibrated = [box_iou(cal.apply(d), g) for _, d, g in ious]
    jitter = box_jitter_stats([d for _, d, _ in ious], [g for _, _, g in ious], cal)
    return {
        "dx": cal.dx,
        "dy": cal.dy,
        "scale": cal.scale,
        "n_used": len(rows),
        "n_tried": len(samples),
        "calibration": cal,
        "iou_raw_median": float(np.median([x[0] for x in ious])),
        "iou_calibrated_median": float(np.median(calibrated)),
        "jitter": jitter,
    }


def box_jitter_stats(detector_boxes: Sequence[np.ndarray], landmark_boxes: Sequence[np.ndarray],
                     calibration: BoxCalibration) -> dict[str, float]:
    """How calibrated detector boxes scatter around the landmark boxes.

    Per face, with ``L`` the landmark box's longer side: the calibrated box's centre offset
    ``(ex, ey) / L`` and ``log(side / L)``. Returns their means, standard deviations and
    robust standard deviations (1.4826 x MAD), ``n``. These are the statistics of
    :class:`acrloss.config.AugmentConfig`'s detector-like box jitter
    (``box_jitter_shift``, ``box_jitter_log_scale``); ``benchmarks/box_calibration.py`` prints them.
    """
    rows = []
    for d, g in zip(detector_boxes, landmark_boxes):
        c = calibration.apply(d)
        g = np.asarray(g, dtype=np.float64).reshape(4)
        side = max(g[2] - g[0], g[3] - g[1])
        rows.append((((c[0] + c[2]) - (g[0] + g[2])) / 2.0 / side, ((c[1] + c[3]) - (g[1] + g[3])) / 2.0 / side,
                     np.log(max(c[2] - c[0], c[3] - c[1]) / side)))
    if not rows:
        raise ValueError("box_jitter_stats: no box pairs")
    arr = np.array(rows)
    med = np.median(arr, axis=0)
    rstd = 1.4826 * np.median(np.abs(arr - med), axis=0)
    out: dict[str, float] = {"n": int(len(arr))}
    for k, name in enumerate(("dx", "dy", "log_scale")):
        out[f"{name}_mean"] = float(arr[:, k].mean())
        out[f"{name}_std"] = float(arr[:, k].std())
        out[f"{name}_robust_std"] = float(rstd[k])
    return out
