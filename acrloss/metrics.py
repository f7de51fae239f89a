"""Face-alignment evaluation: NME, failure rate, CED/AUC, and a Keras NME metric.

The NumPy functions evaluate predictions in original pixel coordinates:
``pred``/``gt`` are ``(M, N, 2)`` arrays and the per-face normalized mean error is::

    NME_i = mean_j ||pred_ij - gt_ij|| / ||gt_i[a] - gt_i[b]||

with ``(a, b)`` the normalization points (outer eye corners ``(36, 45)`` on 300-W).
NMEs are returned as fractions; :func:`summarize` reports percentages.

:class:`NMEMetric` computes the same quantity during training from flattened
``[x0, y0, x1, y1, ...]`` normalized coordinates using :mod:`keras.ops` only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from acrloss.io import atomic_path
from keras import ops

__all__ = [
    "nme",
    "failure_rate",
    "ced_curve",
    "auc",
    "summarize",
    "plot_ced",
    "NMEMetric",
    "parse_norm",
    "box_sizes",
    "face_norm",
    "face_nme",
    "StageNME",
    "ErrorMAE",
]


# --------------------------------------------------------------------------- NumPy
def _as_points(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] % 2 == 0:  # flattened (M, 2N)
        arr = arr.reshape(arr.shape[0], -1, 2)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (M, N, 2) (or flattened (M, 2N)); got {np.shape(x)}")
    return arr


def parse_norm(norm_points: "Sequence[int] | str") -> "tuple[int, int] | str":
    """A normalization spec as ``(a, b)`` ints or ``"box"`` (see :func:`nme`)."""
    if isinstance(norm_points, str):
        if norm_points != "box":
            raise ValueError(f"normalization must be a pair of point indices or 'box', got {norm_points!r}")
        return "box"
    a, b = (int(i) for i in norm_points)
    return a, b


def box_sizes(points: np.ndarray) -> np.ndarray:
    """``sqrt(w * h)`` of each face's landmark extent; ``points`` ``(M, N, 2)``."""
    g = _as_points(points, "points")
    wh = g.max(axis=1) - g.min(axis=1)
    return np.sqrt(wh[:, 0] * wh[:, 1])


def nme(pred: np.ndarray, gt: np.ndarray, norm_points: "Sequence[int] | str" = (36, 45),
        norm_lengths: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-face normalized mean error (a fraction; multiply by 100 for percent).

    Args:
        pred: ``(M, N, 2)`` predicted points (flattened ``(M, 2N)`` also accepted).
        gt: ``(M, N, 2)`` ground truth, same shape.
        norm_points: indices ``(a, b)`` whose ground-truth distance normalizes the error,
            or ``"box"``: each face's box size, ``norm_lengths`` when given, else
            ``sqrt(w * h)`` of the ground-truth landmark extent.
        norm_lengths: ``(M,)`` per-face normalization lengths for ``"box"`` (e.g. AFLW's
            annotated ``box_size``); an error with a point pair.
        mask: optional ``(M, N)`` boolean: average only over the points where it is true
            (e.g. COFW's visible or occluded points); a face with no such point gives NaN.

    Returns:
        float64 ``(M,)``.

    Raises:
        ValueError: mismatched shapes, bad indices, or a zero normalization distance
            (the message lists the offending faces).
    """
    p, g = _as_points(pred, "pred"), _as_points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    norm = parse_norm(norm_points)
    n = g.shape[1]
    if norm == "box":
        if norm_lengths is None:
            dist = box_sizes(g)
        else:
            dist = np.asarray(norm_lengths, dtype=np.float64).reshape(-1)
            if dist.shape != (g.shape[0],):
                raise ValueError(f"norm_lengths has {dist.size} values for {g.shape[0]} faces")
        what = "box size"
    else:
        if norm_lengths is not None:
            raise ValueError("norm_lengths is only used with norm_points='box'")
        a, b = norm
        if not (-n <= a < n and -n <= b < n):
            raise ValueError(f"norm_points {tuple(norm)} out of range for {n} points")
        dist = np.linalg.norm(g[:, a] - g[:, b], axis=-1)
        what = f"distance between points {a} and {b}"
    bad = np.flatnonzero(~(dist > 0.0))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(f"zero normalization {what} for {bad.size} face(s): index {shown}")
    per_point = np.linalg.norm(p - g, axis=-1)
    if mask is None:
        err = per_point.mean(axis=1)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != per_point.shape:
            raise ValueError(f"mask {m.shape} does not match the points {per_point.shape}")
        count = m.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(count > 0, (per_point * m).sum(axis=1) / np.maximum(count, 1), np.nan)
    return err / dist


def _as_nmes(nmes: np.ndarray) -> np.ndarray:
    arr = np.asarray(nmes, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("no NME values given")
    if np.any(np.isnan(arr)):
        raise ValueError("NME values contain NaN")
    return arr


def failure_rate(nmes: np.ndarray, threshold: float = 0.10) -> float:
    """Share (0..1) of faces whose NME exceeds ``threshold`` (a fraction)."""
    arr = _as_nmes(nmes)
    return float(np.mean(arr > threshold))


def ced_curve(nmes: np.ndarray, threshold: float = 0.10,
              step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution on ``[0, threshold]``.

    Returns:
        ``(xs, ys)``: an even grid with spacing about ``step`` (both ends included) and
        ``ys[i]`` = share of faces with ``NME <= xs[i]``.
    """
    if not threshold > 0 or not step > 0:
        raise ValueError(f"threshold and step must be > 0, got {threshold!r}, {step!r}")
    arr = np.sort(_as_nmes(nmes))
    count = max(int(round(threshold / step)), 1)
    xs = np.linspace(0.0, float(threshold), count + 1)
    ys = np.searchsorted(arr, xs, side="right") / arr.size
    return xs, ys


def auc(nmes: np.ndarray, threshold: float = 0.10, step: float = 1e-4) -> float:
    """Area under the CED curve from 0 to ``threshold``, divided by ``threshold`` (0..1).

    Integrated with the trapezoid rule on the :func:`ced_curve` grid.
    """
    xs, ys = ced_curve(nmes, threshold, step)
    area = float(np.sum((ys[1:] + ys[:-1]) * 0.5 * np.diff(xs)))
    return area / float(threshold)


def _threshold_tag(threshold: float) -> str:
    pct = round(float(threshold) * 100.0, 6)
    return f"{pct:g}".replace(".", "_")


def summarize(nmes: np.ndarray, threshold: float = 0.10) -> dict[str, float]:
    """Summary of per-face NMEs.

    Returns:
        ``{"n": count, "nme": mean NME in percent, "fr{T}": failure rate in percent,
        "auc{T}": AUC as a fraction}`` with ``T`` the threshold in percent
        (``fr10``/``auc10`` for ``0.10``; ``0.075`` gives ``fr7_5``).
    """
    arr = _as_nmes(nmes)
    tag = _threshold_tag(threshold)
    return {
        "n": int(arr.size),
        "nme": float(arr.mean() * 100.0),
        f"fr{tag}": failure_rate(arr, threshold) * 100.0,
        f"auc{tag}": auc(arr, threshold),
    }


def plot_ced(curves: Mapping[str, np.ndarray], path: "str | os.PathLike[str]",
             threshold: float = 0.10, step: float = 1e-4, title: str | None = None) -> Path:
    """Plot the CED curves of several methods into a PNG (Agg backend, atomic write).

    Args:
        curves: label -> per-face NMEs (fractions).
        path: output ``.png`` path.
        threshold: right end of the x axis (a fraction).
        step: grid spacing of the curves.
        title: figure title.

    Returns:
        The written path.
    """
    if not curves:
        raise ValueError("plot_ced needs at least one curve")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, values in curves.items():
        xs, ys = ced_curve(values, threshold, step)
        ax.plot(xs * 100.0, ys, label=f"{label} (AUC {auc(values, threshold, step):.4f})")
    ax.set_xlim(0.0, threshold * 100.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("share of faces")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)

    out = Path(path)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png")
    return out


# --------------------------------------------------------------------------- Keras
def face_norm(gt: Any, norm_points: "tuple[int, int] | str") -> Any:
    """Per-face normalization length of ``gt`` ``(B, N, 2)`` (a ``keras.ops`` tensor): the
    distance between points ``(a, b)``, or for ``"box"`` ``sqrt(w * h)`` of the landmark
    extent (training never sees annotated box sizes)."""
    if norm_points == "box":
        wh = ops.max(gt, axis=1) - ops.min(gt, axis=1)
        return ops.sqrt(ops.maximum(wh[:, 0] * wh[:, 1], 0.0))
    a, b = norm_points
    return ops.sqrt(ops.sum(ops.square(gt[:, a, :] - gt[:, b, :]), axis=-1))


def face_nme(points: Any, pred: Any, num_points: int, norm_points: "tuple[int, int] | str") -> Any:
    """Per-face NME (a fraction, ``keras.ops``) of flattened ``pred`` ``(B, 2N)`` against
    ``points`` ``(B, 2N)``; 0 where the normalization distance is 0 (the cascade loss and
    metrics: :class:`acrloss.losses.CascadeLoss`, :class:`StageNME`, :class:`ErrorMAE`)."""
    gt = ops.reshape(points, (-1, num_points, 2))
    pr = ops.reshape(pred, (-1, num_points, 2))
    err = ops.mean(ops.sqrt(ops.sum(ops.square(pr - gt), axis=-1) + 1e-12), axis=-1)
    norm = face_norm(gt, norm_points)  # a pair's distance, or "box": the landmark extent's sqrt(w*h)
    valid = norm > 0.0
    return ops.where(valid, err / ops.where(valid, norm, ops.ones_like(norm)), ops.zeros_like(err))


def norm_config(norm_points: "tuple[int, int] | str") -> "list[int] | str":
    """The JSON form of a normalization spec (``get_config``)."""
    return norm_points if isinstance(norm_points, str) else list(norm_points)


@keras.saving.register_keras_serializable(package="acrloss")
class NMEMetric(keras.metrics.Metric):
    """Mean NME (in percent) over all faces seen, from flattened normalized coordinates.

    ``y_true`` is ``(B, 2N)`` or the packed ACR target ``(B, 4N)`` (only the first ``2N``
    columns, the points, are used); ``y_pred`` is ``(B, 2N)``. Both are
    ``[x0, y0, x1, y1, ...]``. The normalization distance comes from ``y_true`` (the pair's
    distance, or for ``norm_points="box"`` the landmark extent's ``sqrt(w * h)``). A face
    whose normalization distance is zero cannot be scored and is left out (weight 0).

    Args:
        num_points: ``N``.
        norm_points: indices ``(a, b)`` of the normalization points, or ``"box"``.
        name: metric name.
        dtype: metric dtype.
    """

    def __init__(self, num_points: int = 68, norm_points: "Sequence[int] | str" = (36, 45),
                 name: str = "nme", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.num_points = int(num_points)
        if self.num_points <= 0:
            raise ValueError(f"num_points must be positive, got {num_points!r}")
        norm = parse_norm(norm_points)
        if norm != "box":
            a, b = norm
            if not (0 <= a < self.num_points and 0 <= b < self.num_points) or a == b:
                raise ValueError(f"norm_points {tuple(norm_points)} invalid for {self.num_points} points")
        self.norm_points = norm
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate the per-face NMEs of a batch (optionally weighted per face)."""
        n2 = 2 * self.num_points
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        w_true = y_true.shape[-1]
        if w_true is not None and w_true not in (n2, 2 * n2):
            raise ValueError(f"NMEMetric: y_true has {w_true} columns; expected {n2} or {2 * n2}")
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != n2:
            raise ValueError(f"NMEMetric: y_pred has {y_pred.shape[-1]} columns; expected {n2}")
        gt = ops.reshape(y_true[:, :n2], (-1, self.num_points, 2))
        pr = ops.reshape(y_pred, (-1, self.num_points, 2))

        err = ops.mean(ops.sqrt(ops.sum(ops.square(pr - gt), axis=-1)), axis=-1)
        norm = face_norm(gt, self.norm_points)
        valid = norm > 0.0
        face_nme = ops.where(valid, err / ops.where(valid, norm, ops.ones_like(norm)), ops.zeros_like(err))
        weight = ops.cast(valid, self.dtype)
        if sample_weight is not None:
            sw = ops.reshape(ops.cast(ops.convert_to_tensor(sample_weight), self.dtype), (-1,))
            weight = weight * ops.broadcast_to(sw, ops.shape(weight))
        self.total.assign_add(ops.sum(face_nme * weight))
        self.count.assign_add(ops.sum(weight))

    def result(self) -> Any:
        """Mean NME in percent (0 before any face was seen)."""
        total = ops.convert_to_tensor(self.total)
        count = ops.convert_to_tensor(self.count)
        seen = count > 0.0
        safe = ops.where(seen, count, ops.ones_like(count))
        return ops.where(seen, 100.0 * total / safe, ops.zeros_like(total))

    def get_config(self) -> dict[str, Any]:
        """Serializable configuration."""
        config = super().get_config()
        config.update({"num_points": self.num_points, "norm_points": norm_config(self.norm_points)})
        return config


# --------------------------------------------------------------------------- MuSiCa cascade
class _CascadeFaceMean(keras.metrics.Metric):
    """Running mean of a per-face quantity of the ``cascade`` output, in NME percent."""

    def __init__(self, num_points: int, norm_points: Sequence[int], name: str, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.num_points = int(num_points)
        self.norm_points = parse_norm(norm_points)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _stage_nme(self, y_true: Any, y_pred: Any, stage: int) -> Any:
        """Per-face NME fraction of ``stage`` and the packed tensors ``(nme, y_pred)``."""
        n2 = 2 * self.num_points
        y_true = ops.cast(ops.convert_to_tensor(y_true), self.dtype)
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), self.dtype)
        return face_nme(y_true[:, :n2], y_pred[:, stage, :n2], self.num_points, self.norm_points), y_pred

    def _add(self, values: Any) -> None:
        self.total.assign_add(ops.sum(values))
        self.count.assign_add(ops.cast(ops.shape(values)[0], self.dtype))

    def result(self) -> Any:
        return 100.0 * self.total / ops.maximum(self.count, 1.0)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"num_points": self.num_points, "norm_points": norm_config(self.norm_points)})
        return config


@keras.saving.register_keras_serializable(package="acrloss")
class StageNME(_CascadeFaceMean):
    """Mean NME (percent) of one stage, from the ``cascade`` output ``(B, T, 2N + 1)``."""

    def __init__(self, stage: int, num_points: int = 68, norm_points: Sequence[int] = (36, 45),
                 name: str | None = None, dtype: Any = None) -> None:
        super().__init__(num_points, norm_points, name=name or f"nme_s{int(stage) + 1}", dtype=dtype)
        self.stage = int(stage)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        self._add(self._stage_nme(y_true, y_pred, self.stage)[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stage": self.stage}


@keras.saving.register_keras_serializable(package="acrloss")
class ErrorMAE(_CascadeFaceMean):
    """Mean |actual NME - predicted error| over all stages, in NME percent points."""

    def __init__(self, num_points: int = 68, norm_points: Sequence[int] = (36, 45), name: str = "err_mae",
                 dtype: Any = None) -> None:
        super().__init__(num_points, norm_points, name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        n2 = 2 * self.num_points
        for t in range(int(y_pred.shape[1])):
            face, packed = self._stage_nme(y_true, y_pred, t)
            self._add(ops.abs(face - packed[:, t, n2]))
