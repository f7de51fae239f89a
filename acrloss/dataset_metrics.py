"""Per-face NME of a dataset's faces, with the dataset's own conventions.

Joins :mod:`acrloss.metrics` (NME, FR, AUC) with what a reader knows about each face
(:class:`~acrloss.data_prep.datasets.Sample`): the spec's normalization (a point pair, or the
box size: AFLW's annotated ``box_size`` in ``Sample.norm``, else the landmark extent's
``sqrt(w * h)``), its failure threshold, and the occlusion labels (COFW, COFW-68), from which
the NME over visible points only and over occluded points only is also reported.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from acrloss.config import DatasetSpec
from acrloss.data_prep.datasets import Sample
from acrloss.metrics import nme, summarize


def ground_truth(samples: Sequence[Sample], spec: DatasetSpec) -> np.ndarray:
    """``(M, N, 2)`` ground truth; a face of another point count is an error naming its image."""
    for s in samples:
        if len(s.points) != spec.num_points:
            raise ValueError(f"{s.image_path}: {len(s.points)} points, but {spec.name} has {spec.num_points} (wrong point count)")
    return np.stack([np.asarray(s.points, dtype=np.float64) for s in samples])


def norm_lengths(samples: Sequence[Sample], spec: DatasetSpec) -> np.ndarray | None:
    """Annotated per-face normalization lengths for a box-normalized spec when every face
    has one (``None`` otherwise: the landmark extent is used)."""
    if spec.norm_points != "box" or any(s.norm is None for s in samples):
        return None
    return np.array([float(s.norm) for s in samples])


def face_nmes(pred: np.ndarray, samples: Sequence[Sample], spec: DatasetSpec, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-face NME (fractions) of ``pred`` ``(M, N, 2)`` (image coordinates) against the samples."""
    gt = ground_truth(samples, spec)
    pred = np.asarray(pred, dtype=np.float64).reshape(gt.shape[0], -1, 2)
    if pred.shape != gt.shape:
        raise ValueError(f"predictions have {pred.shape[1]} points, {spec.name} has {spec.num_points} (wrong point count)")
    return nme(pred, gt, spec.norm_points, norm_lengths(samples, spec), mask=mask)


def subset_report(pred: np.ndarray, samples: Sequence[Sample], spec: DatasetSpec) -> tuple[dict[str, Any], np.ndarray, dict[str, dict[str, Any]]]:
    """``(summary, per-face NMEs, point-subset summaries)`` of one subset.

    ``summary`` is :func:`acrloss.metrics.summarize` at the spec's failure threshold. When
    every face has occlusion labels, the point-subset summaries hold ``"visible"`` (NME over
    the visible points of each face) and ``"occluded"`` (over its occluded points; faces
    without any are left out, ``n`` counts the rest); otherwise the dict is empty.
    """
    errors = face_nmes(pred, samples, spec)
    summary = summarize(errors, spec.failure_threshold)
    points: dict[str, dict[str, Any]] = {}
    if samples and all(s.visible is not None for s in samples):
        vis = np.stack([np.asarray(s.visible, dtype=bool) for s in samples])
        for name, mask in (("visible", vis), ("occluded", ~vis)):
            per_face = face_nmes(pred, samples, spec, mask=mask)
            kept = per_face[np.isfinite(per_face)]
            if kept.size:
                points[name] = summarize(kept, spec.failure_threshold)
    return summary, errors, points
