"""Horizontal-flip test-time averaging (TTA) and the per-face quality score of the photo path
(issue 12), kept apart from :mod:`acrloss.align` so that ``FaceAligner`` only calls into it.

With ``tta`` every crop goes through the model twice, as is and mirrored; the mirrored
prediction is mapped back through the dataset's mirror map (left/right labels swap) and the
two are averaged. In normalized crop coordinates (:mod:`acrloss.config`) mirroring a crop of
side ``S`` (``x -> S - 1 - x``) is exactly ``n -> -n``, so nothing is resampled.

The quality score is the *flip disagreement*: the mean distance between the two predictions
(in the photo's pixels) divided by the averaged prediction's outer-eye-corner distance, i.e.
an NME-like fraction. The model's two views of the same face agree when it is sure; a large
disagreement marks a likely failure (``benchmarks/generalization.py`` and the tests measure
its rank correlation with the true error). Lower is better.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from acrloss.config import DATASET_SPECS, DatasetSpec


def spec_for_points(num_points: int) -> DatasetSpec:
    """The landmark scheme (mirror map, NME points) of a model that predicts ``num_points``."""
    for spec in DATASET_SPECS.values():
        if spec.num_points == num_points:
            return spec
    raise ValueError(f"no landmark scheme with {num_points} points is known; flip TTA needs its mirror map")


def unflip(points: np.ndarray, mirror: np.ndarray | tuple[int, ...]) -> np.ndarray:
    """Normalized ``(B, N, 2)`` predictions on mirrored crops, mapped back to the unmirrored crops."""
    pts = np.asarray(points, dtype=np.float64)[:, np.asarray(mirror)]
    return pts * np.array([-1.0, 1.0])


def predict_tta(predict: Callable[[np.ndarray], np.ndarray], crops: np.ndarray,
                mirror: np.ndarray | tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip-averaged normalized ``(B, N, 2)`` predictions and the per-crop mean point
    disagreement in *crop pixels* ``(B,)``. ``predict`` maps float32 ``(B, S, S, 3)`` crops to
    normalized ``(B, N, 2)`` points; both views share one call (batch ``2B``). ``mirror``:
    the mirror map (default: that of the known scheme with the model's point count)."""
    b, size = len(crops), crops.shape[1]
    both = predict(np.concatenate([crops, crops[:, :, ::-1]], axis=0))
    if mirror is None:
        mirror = spec_for_points(both.shape[1]).mirror
    plain, back = both[:b], unflip(both[b:], mirror)
    disagreement = np.linalg.norm((plain - back) * size, axis=-1).mean(axis=1)
    return 0.5 * (plain + back), disagreement


def flip_disagreement(disagreement_px: float, points: np.ndarray, crop_scale: float,
                      norm_points: tuple[int, int]) -> float:
    """A crop-pixel disagreement as a fraction of the face's (predicted) normalization distance
    in the photo; ``crop_scale``: crop pixels per photo pixel."""
    pts = np.asarray(points, dtype=np.float64)
    dist = float(np.linalg.norm(pts[norm_points[0]] - pts[norm_points[1]]))
    return float(disagreement_px / crop_scale / dist) if dist > 0 else float("inf")


@dataclass
class AlignedFace:
    """One face of :meth:`acrloss.align.FaceAligner.align_faces`.

    ``points``: ``(N, 2)`` in the photo's 0-based pixel-centre coordinates. ``box``: the
    detector's (or caller's) uncalibrated box, ``score`` its score. ``flip_disagreement``: the
    quality score (see :mod:`acrloss.tta`; an NME-like fraction, lower is better), ``None``
    when the aligner runs without ``tta``.
    """

    points: np.ndarray
    box: np.ndarray
    score: float
    flip_disagreement: float | None = None
