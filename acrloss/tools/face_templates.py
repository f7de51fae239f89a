"""Derive the generic face templates shipped in :mod:`acrloss.chips` and :mod:`acrloss.pose`.

Both are computed here from the 2-D iBUG 68-point annotations of the 300-W *train* split
(afw + helen/trainset + lfpw/trainset; no test face is used) and printed as Python
literals, which are pasted into the modules (``MEAN_SHAPE_68`` and ``FACE_3D_68``):

- **2-D mean shape** (``MEAN_SHAPE_68``): generalized Procrustes analysis (similarity
  transforms, 10 iterations), made left-right symmetric with the iBUG mirror map, then
  translated and scaled so that the bounding box of points 17-67 (brows, nose, eyes,
  mouth; the jaw contour is left out because it slides with head pose) is the unit square
  ``[0, 1] x [0, 1]``.
- **3-D face** (``FACE_3D_68``): Tomasi-Kanade factorization under scaled orthography.
  Every face's points, centred, give two rows of a ``2F x 68`` measurement matrix; its
  rank-3 truncation ``M S`` is upgraded to a metric shape by the orthonormality
  constraints on the rows of each face's ``2 x 3`` block (the symmetric ``Q Q^T`` solved
  by linear least squares); the depth sign (Necker reversal) is fixed so that the nose tip
  is nearer to the camera than the eye corners. The shape is then rotated into the
  frontal frame (x: image right, y: image down, z: away from the camera, origin at the
  midpoint of the outer eye corners), made mirror-symmetric, and scaled so that the outer
  eye corners (36, 45) are 90 mm apart (roughly an adult's biocular width; the scale does
  not change the recovered angles).

Run::

    python -m acrloss.tools.face_templates --data-dir ../shared/data/300w
"""
from __future__ import annotations

import argparse

import numpy as np

from acrloss.config import W300_SPEC


def _similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` mapped by the least-squares similarity onto ``dst`` (both ``(N, 2)``)."""
    from acrloss.chips import similarity_transform  # noqa: PLC0415

    m = similarity_transform(src, dst)
    return src @ m[:, :2].T + m[:, 2]


def mirror(points: np.ndarray) -> np.ndarray:
    """Points of the mirrored face (x negated, indices swapped by the iBUG mirror map)."""
    out = np.asarray(points, dtype=np.float64)[list(W300_SPEC.mirror)].copy()
    out[:, 0] *= -1
    return out


def mean_shape_2d(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Symmetric Procrustes mean of ``(F, 68, 2)`` shapes, points 17-67 spanning the unit square."""
    ref = shapes[0] - shapes[0].mean(0)
    for _ in range(iterations):
        aligned = np.stack([_similarity_fit(s, ref) for s in shapes])
        mean = aligned.mean(0)
        mean = (mean + mirror(mean)) / 2.0
        mean -= mean.mean(0)
        ref = mean / np.sqrt((mean ** 2).sum())
    inner = ref[17:]
    lo, hi = inner.min(0), inner.max(0)
    return (ref - lo) / (hi - lo)


def face_3d(shapes: np.ndarray) -> np.ndarray:
    """Tomasi-Kanade metric 3-D shape ``(68, 3)`` from ``(F, 68, 2)`` 2-D shapes (see module docs)."""
    f = len(shapes)
    c = shapes - shapes.mean(1, keepdims=True)
    c = c / np.sqrt((c ** 2).sum((1, 2), keepdims=True))  # equal weight per face
    w = np.concatenate([c[:, :, 0], c[:, :, 1]], axis=0)  # rows 0..F-1: x, F..2F-1: y
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    m_hat = u[:, :3] * np.sqrt(s[:3])
    s_hat = np.sqrt(s[:3])[:, None] * vt[:3]

    def row(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # coefficients of a^T L b in L's 6 unknowns
        return np.array([a[0] * b[0], a[0] * b[1] + a[1] * b[0], a[0] * b[2] + a[2] * b[0],
                         a[1] * b[1], a[1] * b[2] + a[2] * b[1], a[2] * b[2]])

    rows = []
    for i in range(f):
        a, b = m_hat[i], m_hat[f + i]
        rows.append(row(a, a) - row(b, b))
        rows.append(row(a, b))
    rows.append(np.mean([row(m_hat[i], m_hat[i]) for i in range(f)], axis=0))
    rhs = np.zeros(len(rows))
    rhs[-1] = 1.0
    sol, *_ = np.linalg.lstsq(np.array(rows) * np.r_[np.ones(2 * f), f][:, None], rhs * f, rcond=None)
    big_l = np.array([[sol[0], sol[1], sol[2]], [sol[1], sol[3], sol[4]], [sol[2], sol[4], sol[5]]])
    vals, vecs = np.linalg.eigh(big_l)
    if vals.min() <= 0:
        raise ValueError(f"face_3d: the metric constraint matrix is not positive definite (eigenvalues {vals})")
    q = vecs @ np.diag(np.sqrt(vals))
    shape = (np.linalg.inv(q) @ s_hat).T  # (68, 3), arbitrary rotation
    # frontal frame: x from the image-left outer eye corner (36) to the image-right one (45)
    pairs = [(i, j) for i, j in enumerate(W300_SPEC.mirror) if i < j]
    x_axis = np.mean([shape[j] - shape[i] for i, j in pairs], axis=0)
    x_axis /= np.linalg.norm(x_axis)
    down = shape[8] - shape[27]  # nose root -> chin
    y_axis = down - x_axis * (down @ x_axis)
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)  # right-handed, x right, y down -> z away from the camera
    shape = shape @ np.stack([x_axis, y_axis, z_axis]).T
    eyes = (shape[36] + shape[45]) / 2.0
    if shape[30, 2] > eyes[2]:  # nose tip behind the eyes: the depth-reversed solution
        shape[:, 2] *= -1
    shape = (shape + mirror(shape)) / 2.0  # mirror() negates x and swaps the paired points
    shape -= (shape[36] + shape[45]) / 2.0
    return shape * (90.0 / np.linalg.norm(shape[45] - shape[36]))


def _literal(name: str, arr: np.ndarray, digits: int) -> str:
    lines = [f"{name} = np.array(["]
    for k, p in enumerate(arr):
        lines.append("    [" + ", ".join(f"{v:.{digits}f}" for v in p) + f"],  # {k}")
    lines.append("])")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from acrloss.data_prep.datasets import w300_subset  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="the 300-W folder (its train split is used)")
    a = p.parse_args(argv)
    shapes = np.stack([s.points for s in w300_subset(a.data_dir, "train")])
    print(f"# {len(shapes)} faces of the 300-W train split")
    print(_literal("MEAN_SHAPE_68", mean_shape_2d(shapes), 4))
    print(_literal("FACE_3D_68", face_3d(shapes), 2))


if __name__ == "__main__":
    main()
