"""PCA shape model of face landmarks, Smooth-Face and the per-coordinate difficulty Φ.

The ACR loss needs, for every training face and every curriculum level ``p`` (the share
of shape variance kept, in percent), a *Smooth-Face*: the face projected onto the first
``k(p)`` principal components of the training shapes, each coefficient clipped to
``±3·sqrt(λ_j)``. The lower ``p``, the closer the Smooth-Face is to the mean face. The
distance between a face and its Smooth-Face, normalized per face to ``[0, 1]``, is the
difficulty ``Φ`` of every coordinate (:func:`difficulty`).

Faces are flat vectors ``[x0, y0, x1, y1, ...]`` of length ``2N`` in normalized crop
coordinates (see :mod:`acrloss.config`).

Files written by :meth:`PCAUtility.create_pca_from_npy` / :meth:`PCAModel.save`::

    {dataset}_pca{p}_eigenvalues.npy    (k,)
    {dataset}_pca{p}_eigenvectors.npy   (2N, k)   columns are unit eigenvectors
    {dataset}_pca{p}_meanvector.npy     (2N,)

Command line::

    acrloss-pca --dataset 300w --labels DIR --percent 80 85 90 95 [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from acrloss.data_prep.formats import save_npy_atomic

from acrloss.config import USER_DATASETS, DatasetName, dataset_spec

__all__ = [
    "PCAModel",
    "FullPCA",
    "PCAUtility",
    "difficulty",
    "phi_table",
    "load_labels_npy",
    "pca_file_paths",
    "main",
]

#: Smooth-Face clips every shape coefficient ``b_j`` to ``±CLIP_SIGMAS·sqrt(λ_j)``.
CLIP_SIGMAS = 3.0
#: A face whose largest ``|g - s|`` is below this has ``Φ = 0`` everywhere.
PHI_ZERO_TOL = 1e-12


# --------------------------------------------------------------------------- helpers
def _percent_tag(p: float) -> str:
    """``90 -> "90"``, ``92.5 -> "92.5"`` (used in file names)."""
    p = float(p)
    return str(int(p)) if p.is_integer() else repr(p)


def _dataset_value(dataset_name: "str | DatasetName") -> str:
    return DatasetName.parse(dataset_name).value


def _check_percentage(p: float) -> float:
    p = float(p)
    if not np.isfinite(p) or p <= 0.0 or p > 100.0:
        raise ValueError(f"pca percentage must be in (0, 100], got {p!r}")
    return p


#: Files written by this module; skipped when a labels folder is scanned (the default
#: output folder *is* the labels folder).
_PCA_FILE_RE = re.compile(r".+_pca[0-9.]+_(eigenvalues|eigenvectors|meanvector)\.npy$")


def pca_file_paths(out_dir: "str | os.PathLike[str]", dataset_name: "str | DatasetName",
                   pca_percentages: float) -> dict[str, Path]:
    """Paths of the three ``.npy`` files of one PCA level.

    Returns:
        ``{"eigenvalues": ..., "eigenvectors": ..., "meanvector": ...}``.
    """
    stem = f"{_dataset_value(dataset_name)}_pca{_percent_tag(pca_percentages)}"
    base = Path(out_dir)
    return {kind: base / f"{stem}_{kind}.npy" for kind in ("eigenvalues", "eigenvectors", "meanvector")}


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` through a temporary file in the same folder."""
    save_npy_atomic(path, array)


def _as_face_matrix(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """``(2N,)``, ``(M, 2N)`` or ``(M, N, 2)`` -> float64 ``(M, 2N)``."""
    arr = np.asarray(labels, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    elif arr.ndim == 3 and arr.shape[-1] == 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (M, 2N) (or (2N,), (M, N, 2)); got {np.shape(labels)}")
    if arr.shape[1] == 0 or arr.shape[1] % 2:
        raise ValueError(f"{name} must hold an even, non-zero number of coordinates; got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def load_labels_npy(labels_npy_path: "str | os.PathLike[str]",
                    num_coords: int | None = None) -> tuple[np.ndarray, list[Path]]:
    """Read every ``*.npy`` face under a folder (recursively, sorted by path).

    Each file holds one face: a flat vector of length ``2N`` or an ``(N, 2)`` array.
    PCA files written by this module (``*_pca{p}_eigenvalues.npy`` etc.) are skipped.

    Args:
        labels_npy_path: folder to scan.
        num_coords: expected ``2N``; when ``None`` the first file decides.

    Returns:
        ``(labels, files)`` with ``labels`` float64 of shape ``(M, 2N)``.

    Raises:
        ValueError: no file found (message names the folder), or a file that cannot be
            loaded, has the wrong length or holds NaN/inf (message names the file).
    """
    folder = Path(labels_npy_path)
    if not folder.is_dir():
        raise ValueError(f"labels folder {str(folder)!r} does not exist or is not a directory")
    files = sorted(p for p in folder.rglob("*.npy") if p.is_file() and not _PCA_FILE_RE.match(p.name))
    if not files:
        raise ValueError(f"no .npy label files found in {str(folder)!r}")
    rows: list[np.ndarray] = []
    for f in files:
        try:
            arr = np.load(f, allow_pickle=False)
        except Exception as exc:  # corrupt file, pickled object, ...
            raise ValueError(f"cannot load label file {str(f)!r}: {exc}") from exc
        if not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 2)):
            raise ValueError(f"label file {str(f)!r} has shape {arr.shape}; expected (2N,) or (N, 2)")
        try:
            vec = np.asarray(arr, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"label file {str(f)!r} is not numeric: {exc}") from exc
        if num_coords is None:
            if vec.size == 0 or vec.size % 2:
                raise ValueError(f"label file {str(f)!r} has {vec.size} values; expected an even, non-zero count")
            num_coords = int(vec.size)
        if vec.size != num_coords:
            raise ValueError(f"label file {str(f)!r} has {vec.size} values; expected {num_coords}")
        if not np.all(np.isfinite(vec)):
            raise ValueError(f"label file {str(f)!r} contains NaN or inf")
        rows.append(vec)
    return np.stack(rows), files


# --------------------------------------------------------------------------- models
@dataclass
class PCAModel:
    """A truncated PCA shape model.

    Attributes:
        eigenvalues: ``(k,)`` variances of the kept components, descending.
        eigenvectors: ``(2N, k)`` orthonormal columns, matching ``eigenvalues``.
        mean: ``(2N,)`` mean face.
        percentage: share of variance (percent) the model was built for.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    mean: np.ndarray
    percentage: float

    def __post_init__(self) -> None:
        self.eigenvalues = np.asarray(self.eigenvalues, dtype=np.float64).reshape(-1)
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        vecs = np.asarray(self.eigenvectors, dtype=np.float64)
        if vecs.ndim == 1 and self.eigenvalues.size == 0:
            vecs = vecs.reshape(self.mean.size, 0)
        self.eigenvectors = vecs
        if vecs.ndim != 2 or vecs.shape != (self.mean.size, self.eigenvalues.size):
            raise ValueError(
                f"inconsistent PCA model: eigenvectors {vecs.shape}, eigenvalues "
                f"{self.eigenvalues.shape}, mean {self.mean.shape}; expected eigenvectors (2N, k)"
            )

    @property
    def num_components(self) -> int:
        """``k``, the number of kept components."""
        return int(self.eigenvalues.size)

    @property
    def num_coords(self) -> int:
        """``2N``, the length of a face vector."""
        return int(self.mean.size)

    def coefficients(self, labels: np.ndarray) -> np.ndarray:
        """Shape coefficients ``b = (g - mean) @ V``, shape ``(M, k)`` (not clipped)."""
        g = self._faces(labels)
        return (g - self.mean) @ self.eigenvectors

    def project(self, labels: np.ndarray) -> np.ndarray:
        """Rebuild ``mean + b @ V.T`` without clipping, same shape as ``labels``."""
        return self.smooth_face(labels, clip=False)

    def smooth_face(self, labels: np.ndarray, clip: bool = True) -> np.ndarray:
        """The Smooth-Face of every face.

        ``b = (g - mean) @ V``; each ``b_j`` clipped to ``±3·sqrt(λ_j)`` (when ``clip``);
        ``s = mean + b @ V.T``.

        Args:
            labels: ``(M, 2N)`` faces (a single ``(2N,)`` face is accepted too).
            clip: clip the coefficients at three standard deviations.

        Returns:
            float64 array shaped like ``labels``.
        """
        single = np.ndim(labels) == 1
        b = self.coefficients(labels)
        if clip and b.shape[1]:
            limit = CLIP_SIGMAS * np.sqrt(np.maximum(self.eigenvalues, 0.0))
            b = np.clip(b, -limit, limit)
        s = self.mean + b @ self.eigenvectors.T
        return s[0] if single else s

    def save(self, out_dir: "str | os.PathLike[str]", dataset_name: "str | DatasetName") -> dict[str, Path]:
        """Write the three ``.npy`` files atomically; returns their paths."""
        paths = pca_file_paths(out_dir, dataset_name, self.percentage)
        _atomic_save_npy(paths["eigenvalues"], self.eigenvalues)
        _atomic_save_npy(paths["eigenvectors"], self.eigenvectors)
        _atomic_save_npy(paths["meanvector"], self.mean)
        return paths

    def _faces(self, labels: np.ndarray) -> np.ndarray:
        g = _as_face_matrix(labels)
        if g.shape[1] != self.num_coords:
            raise ValueError(f"faces have {g.shape[1]} coordinates; the PCA model has {self.num_coords}")
        return g


@dataclass
class FullPCA:
    """One full eigendecomposition from which models for any percentage are cut.

    Attributes:
        eigenvalues: ``(r,)`` all non-degenerate variances, descending.
        eigenvectors: ``(2N, r)`` matching unit eigenvectors.
        mean: ``(2N,)`` mean face.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    mean: np.ndarray

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """Share of the total variance carried by each component."""
        total = float(self.eigenvalues.sum())
        if total <= 0.0:
            return np.zeros_like(self.eigenvalues)
        return self.eigenvalues / total

    def num_components(self, pca_percentages: float) -> int:
        """Smallest ``k`` whose cumulative explained variance ratio is ``>= p/100``.

        ``p = 100`` keeps every non-degenerate component.
        """
        p = _check_percentage(pca_percentages)
        r = int(self.eigenvalues.size)
        if r == 0:
            return 0
        if p >= 100.0:
            return r
        cum = np.cumsum(self.explained_variance_ratio)
        # a tiny tolerance so that e.g. exactly 90% counts as reaching 90%
        k = int(np.searchsorted(cum, p / 100.0 - 1e-12, side="left")) + 1
        return min(k, r)

    def model(self, pca_percentages: float) -> PCAModel:
        """The :class:`PCAModel` keeping the first ``num_components(p)`` columns."""
        k = self.num_components(pca_percentages)
        return PCAModel(
            eigenvalues=self.eigenvalues[:k].copy(),
            eigenvectors=self.eigenvectors[:, :k].copy(),
            mean=self.mean.copy(),
            percentage=float(pca_percentages),
        )


def fit_full(labels: np.ndarray) -> FullPCA:
    """Full PCA of ``labels`` ``(M, 2N)`` via an SVD of the centred data.

    Variances use the ``M - 1`` denominator. Components whose singular value is below
    ``max(s)·max(M, 2N)·eps`` (numerically zero variance) are dropped. Each eigenvector's
    sign is fixed so that its largest-magnitude entry is positive (deterministic output).
    """
    g = _as_face_matrix(labels)
    m, d = g.shape
    mean = g.mean(axis=0)
    if m < 2:
        return FullPCA(np.zeros(0), np.zeros((d, 0)), mean)
    x = g - mean
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    tol = (s.max() if s.size else 0.0) * max(m, d) * np.finfo(np.float64).eps
    keep = s > tol
    s, vt = s[keep], vt[keep]
    vecs = vt.T.copy()  # (2N, r)
    if vecs.shape[1]:
        idx = np.argmax(np.abs(vecs), axis=0)
        signs = np.sign(vecs[idx, np.arange(vecs.shape[1])])
        signs[signs == 0] = 1.0
        vecs *= signs
    eigenvalues = s**2 / (m - 1)
    return FullPCA(eigenvalues, vecs, mean)


# --------------------------------------------------------------------------- Φ
def difficulty(labels: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """Per-coordinate difficulty ``Φ = |g - s| / max_face |g - s|``.

    Args:
        labels: ``(M, 2N)`` ground-truth faces ``g``.
        smooth: ``(M, 2N)`` their Smooth-Faces ``s``.

    Returns:
        float64 ``(M, 2N)`` in ``[0, 1]``; a face whose largest difference is below
        ``1e-12`` gets all zeros.
    """
    g = _as_face_matrix(labels, "labels")
    s = _as_face_matrix(smooth, "smooth")
    if g.shape != s.shape:
        raise ValueError(f"labels {g.shape} and smooth {s.shape} differ in shape")
    diff = np.abs(g - s)
    peak = diff.max(axis=1, keepdims=True)
    ok = peak >= PHI_ZERO_TOL
    phi = np.where(ok, diff / np.where(ok, peak, 1.0), 0.0)
    return np.clip(phi, 0.0, 1.0)


def phi_table(labels: np.ndarray, models: Mapping[int, PCAModel]) -> np.ndarray:
    """``Φ`` of every face at every level, computed once.

    Args:
        labels: ``(M, 2N)`` faces.
        models: level (percent) -> :class:`PCAModel`; levels are taken in ascending order.

    Returns:
        float32 ``(M, L, 2N)``; ``[:, i]`` belongs to ``sorted(models)[i]``.
    """
    if not models:
        raise ValueError("phi_table needs at least one PCA model")
    g = _as_face_matrix(labels)
    out = np.empty((g.shape[0], len(models), g.shape[1]), dtype=np.float32)
    for i, level in enumerate(sorted(models)):
        out[:, i, :] = difficulty(g, models[level].smooth_face(g))
    return out


# --------------------------------------------------------------------------- facade
class PCAUtility:
    """Build, save and load the PCA shape models of a dataset."""

    def fit(self, labels: np.ndarray, pca_percentages: float = 90) -> PCAModel:
        """Fit a :class:`PCAModel` keeping ``pca_percentages`` percent of the variance."""
        _check_percentage(pca_percentages)
        return fit_full(labels).model(pca_percentages)

    def fit_full(self, labels: np.ndarray) -> FullPCA:
        """One full decomposition; see :func:`fit_full`."""
        return fit_full(labels)

    def fit_levels(self, labels: np.ndarray,
                   levels: Iterable[float] = (80, 85, 90, 95)) -> dict[int, PCAModel]:
        """Models for several percentages from a single decomposition.

        Returns:
            ``{level: PCAModel}`` in ascending level order.
        """
        levels = sorted({_check_percentage(p) for p in levels})
        if not levels:
            raise ValueError("fit_levels needs at least one level")
        full = fit_full(labels)
        return {(int(p) if p.is_integer() else p): full.model(p) for p in levels}

    def create_pca_from_npy(self, dataset_name: "str | DatasetName",
                            labels_npy_path: "str | os.PathLike[str]",
                            pca_percentages: float = 90,
                            out_dir: "str | os.PathLike[str] | None" = None) -> PCAModel:
        """Fit a PCA on every ``*.npy`` face under ``labels_npy_path`` and save it.

        Args:
            dataset_name: a :class:`~acrloss.config.DatasetName` (or its value); names the
                files and, when the dataset has a spec, fixes the expected face length.
            labels_npy_path: folder of one-face ``.npy`` files (searched recursively).
            pca_percentages: share of variance to keep, in ``(0, 100]``.
            out_dir: where to write the files (default: ``labels_npy_path``).

        Returns:
            The fitted :class:`PCAModel`.
        """
        _check_percentage(pca_percentages)
        labels, _ = load_labels_npy(labels_npy_path, _expected_num_coords(dataset_name))
        model = fit_full(labels).model(pca_percentages)
        model.save(out_dir if out_dir is not None else labels_npy_path, dataset_name)
        return model

    def load_pca(self, dataset_name: "str | DatasetName", pca_percentages: float,
                 pca_dir: "str | os.PathLike[str]") -> PCAModel:
        """Load a model written by :meth:`create_pca_from_npy` / :meth:`PCAModel.save`.

        Raises:
            FileNotFoundError: naming the first missing file.
        """
        paths = pca_file_paths(pca_dir, dataset_name, pca_percentages)
        for path in paths.values():
            if not path.is_file():
                raise FileNotFoundError(f"PCA file {str(path)!r} not found")
        return PCAModel(
            eigenvalues=np.load(paths["eigenvalues"], allow_pickle=False),
            eigenvectors=np.load(paths["eigenvectors"], allow_pickle=False),
            mean=np.load(paths["meanvector"], allow_pickle=False),
            percentage=float(pca_percentages),
        )


def _expected_num_coords(dataset_name: "str | DatasetName") -> int | None:
    if DatasetName.parse(dataset_name) in USER_DATASETS:  # any point count: the first file decides
        return None
    try:
        return dataset_spec(dataset_name).num_coords
    except NotImplementedError:
        return None


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``acrloss-pca``: fit and save the PCA models of several variance levels."""
    parser = argparse.ArgumentParser(
        prog="acrloss-pca",
        description="Fit PCA shape models on a folder of normalized-label .npy files.",
    )
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. 300w")
    parser.add_argument("--labels", required=True, help="folder of one-face .npy label files")
    parser.add_argument("--percent", type=float, nargs="+", default=[80, 85, 90, 95],
                        help="kept-variance levels in percent (default: 80 85 90 95)")
    parser.add_argument("--out", default=None, help="output folder (default: the labels folder)")
    args = parser.parse_args(argv)

    try:
        dataset = DatasetName.parse(args.dataset)
        levels = sorted({_check_percentage(p) for p in args.percent})
        labels, files = load_labels_npy(args.labels, _expected_num_coords(dataset))
    except ValueError as exc:
        parser.error(str(exc))
    full = fit_full(labels)
    out_dir = args.out if args.out is not None else args.labels
    print(f"{len(files)} faces, {labels.shape[1]} coordinates, "
          f"{full.eigenvalues.size} non-degenerate components")
    for p in levels:
        model = full.model(p)
        model.save(out_dir, dataset)
        cum = float(full.explained_variance_ratio[: model.num_components].sum()) * 100.0
        print(f"{_percent_tag(p)}%: {model.num_components} components "
              f"({cum:.2f}% of the variance) -> {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
