"""Landmark file formats.

``.pts`` files (iBUG format) hold **1-based** pixel coordinates; everything returned from
here is converted to the library's 0-based pixel-centre convention (see
:mod:`acrloss.config`).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator
from pathlib import Path

import numpy as np


class LandmarkFileError(ValueError):
    """A landmark or image file that cannot be used; the message names the file."""


def read_pts(path: str | os.PathLike, num_points: int | None = 68) -> np.ndarray:
    """Read an iBUG ``.pts`` file as a ``(N, 2)`` float64 array of 0-based (x, y) points.

    Raises :class:`LandmarkFileError` naming the file when it is missing, malformed, holds
    a point count other than ``num_points`` (when given), or non-finite values.
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
    return pts - 1.0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path``; when the block ends without error the
    file is given the usual permissions and renamed onto ``path``, else removed.

    ``suffix`` matters to writers that pick a format from the name (``.h5``,
    ``.weights.h5``). Nothing is ever left half-written at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the name is shortened in the temp name: a legal 250-byte file name plus ".", "." and
    # mkstemp's 8 characters would exceed the file system's 255-byte limit
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:48]}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write 0-based ``(N, 2)`` points as a 1-based iBUG ``.pts`` file (atomically)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) + 1.0
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in pts)
    atomic_write_bytes(path, f"version: 1\nn_points:  {len(pts)}\n{{\n{body}\n}}\n".encode())


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array))
