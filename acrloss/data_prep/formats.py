"""Landmark file formats.

``.pts`` files (iBUG format) hold **1-based** pixel coordinates; everything returned from
here is converted to the library's 0-based pixel-centre convention (see
:mod:`acrloss.config`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence
from pathlib import Path

from acrloss.io import atomic_path, atomic_write_bytes  # noqa: F401  (re-exported: the old home)

import numpy as np


class LandmarkFileError(ValueError):
    """A landmark or image file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class RejectedFile:
    """A file a reader skipped: its path and why (for the summaries of training/evaluation)."""

    path: str
    reason: str

    @classmethod
    def from_error(cls, path: str | os.PathLike, exc: Exception) -> "RejectedFile":
        msg, prefix = str(exc), f"{path}: "
        return cls(str(path), msg[len(prefix):] if msg.startswith(prefix) else msg)

    def as_dict(self) -> dict[str, str]:
        return {"file": self.path, "reason": self.reason}


def rejected_summary(rejected: Sequence[RejectedFile], total: int | None = None, show: int = 10) -> str:
    """A few lines naming the rejected files and why (the first ``show`` of them)."""
    if not rejected:
        return ""
    of = f" of {total}" if total is not None else ""
    lines = [f"rejected {len(rejected)}{of} annotated files:"]
    lines += [f"  {r.path}: {r.reason}" for r in rejected[:show]]
    if len(rejected) > show:
        lines.append(f"  ... and {len(rejected) - show} more")
    return "\n".join(lines)


#: how far outside the image a landmark may lie, as a fraction of the image's longer side
POINT_MARGIN = 0.5
#: without the image size, no coordinate may exceed this many pixels in magnitude
MAX_ABS_COORDINATE = 1e5


def validate_points(
    points: np.ndarray,
    source: str | os.PathLike,
    num_points: int | None = None,
    image_size: tuple[int, int] | None = None,
    margin: float = POINT_MARGIN,
) -> np.ndarray:
    """Check one face's 0-based ``(N, 2)`` (x, y) landmarks and return them as float64.

    Every reader calls this at read time. Raises :class:`LandmarkFileError` naming
    ``source`` when the array is not ``(N, 2)``, holds a point count other than
    ``num_points`` (when given), NaN/infinite values, or a point further than ``margin`` x
    the image's longer side outside the image of ``image_size`` ``(width, height)`` (without
    a size: a coordinate beyond :data:`MAX_ABS_COORDINATE` pixels). Points just outside the
    image (an occluded jaw at the border) pass.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise LandmarkFileError(f"{source}: landmarks must be (N, 2) (x, y) pairs, got shape {pts.shape}")
    if num_points is not None and len(pts) != num_points:
        raise LandmarkFileError(f"{source}: expected {num_points} points, found {len(pts)}")
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise LandmarkFileError(f"{source}: point {i} is not finite ({pts[i, 0]!r}, {pts[i, 1]!r})")
    if image_size is None:
        bad = np.abs(pts).max(axis=1) > MAX_ABS_COORDINATE
        if bad.any():
            i = int(np.argmax(bad))
            raise LandmarkFileError(f"{source}: point {i} at ({pts[i, 0]:.6g}, {pts[i, 1]:.6g}) is absurdly far "
                                    f"(beyond {MAX_ABS_COORDINATE:g} px)")
        return pts
    width, height = int(image_size[0]), int(image_size[1])
    slack = margin * max(width, height)
    lo = np.array([-slack, -slack])
    hi = np.array([width - 1 + slack, height - 1 + slack])
    outside = ((pts < lo) | (pts > hi)).any(axis=1)
    if outside.any():
        i = int(np.argmax(outside))
        raise LandmarkFileError(
            f"{source}: point {i} at ({pts[i, 0]:.6g}, {pts[i, 1]:.6g}) lies far outside the {width}x{height} image "
            f"(allowed x in [{lo[0]:.0f}, {hi[0]:.0f}], y in [{lo[1]:.0f}, {hi[1]:.0f}], 0-based)")
    return pts


def read_pts(path: str | os.PathLike, num_points: int | None = 68) -> np.ndarray:
    """Read an iBUG ``.pts`` file as a ``(N, 2)`` float64 array of 0-based (x, y) points.

    Raises :class:`LandmarkFileError` naming the file when it is missing, malformed, holds
    a point count other than ``num_points`` (when given), non-finite values or absurd ones
    (see :func:`validate_points`; the check against the image size is the caller's, who
    knows the image).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise LandmarkFileError(f"{path}: cannot read landmark file ({exc.strerror or exc})") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    try:
        start = lines.index("{")
        end = lines.index("}", start)
    except ValueError:
        raise LandmarkFileError(f"{path}: not a .pts file (no '{{ ... }}' block)") from None
    declared = None
    for ln in lines[:start]:
        if ln.lower().startswith("n_points"):
            try:
                declared = int(ln.split(":", 1)[1])
            except (IndexError, ValueError):
                raise LandmarkFileError(f"{path}: bad header line {ln!r}") from None
    try:
        pts = np.array([[float(v) for v in ln.split()] for ln in lines[start + 1 : end]], dtype=np.float64)
    except ValueError:
        raise LandmarkFileError(f"{path}: a point line is not two numbers") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise LandmarkFileError(f"{path}: every point line must hold exactly two numbers")
    if declared is not None and declared != len(pts):
        raise LandmarkFileError(f"{path}: header says {declared} points but the file holds {len(pts)}")
    if num_points is not None and len(pts) != num_points:
        raise LandmarkFileError(f"{path}: expected {num_points} points, found {len(pts)}")
    if not np.all(np.isfinite(pts)):
        raise LandmarkFileError(f"{path}: holds NaN or infinite coordinates")
    return validate_points(pts - 1.0, path, num_points)


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write 0-based ``(N, 2)`` points as a 1-based iBUG ``.pts`` file (atomically)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) + 1.0
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in pts)
    atomic_write_bytes(path, f"version: 1\nn_points:  {len(pts)}\n{{\n{body}\n}}\n".encode())


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array))
