"""Tests of acrloss.pca_utility on synthetic shapes and (when present) real 300-W labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acrloss.config import DatasetName
from acrloss.pca_utility import (
    PCAModel,
    PCAUtility,
    difficulty,
    main,
    phi_table,
)

LEVELS = (80, 85, 90, 95)


def synthetic_faces(seed: int = 0, m: int = 300, n_points: int = 20, rank: int = 8) -> np.ndarray:
    """Random mean face + bounded low-rank variation with decaying variances."""
    rng = np.random.default_rng(seed)
    d = 2 * n_points
    mean = rng.uniform(-0.4, 0.4, d)
    basis, _ = np.linalg.qr(rng.normal(size=(d, rank)))
    sd = 0.05 * 0.7 ** np.arange(rank)
    # uniform coefficients stay within sqrt(3) standard deviations (< the 3-sigma clip)
    coeffs = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), (m, rank)) * sd
    return mean + coeffs @ basis.T


def dist_to_mean(model: PCAModel, faces: np.ndarray) -> np.ndarray:
    return np.linalg.norm(model.smooth_face(faces) - model.mean, axis=1)


# ----------------------------------------------------------------- fitting
def test_full_variance_rebuilds_faces_exactly():
    faces = synthetic_faces()
    model = PCAUtility().fit(faces, 100)
    assert model.num_components == 8  # the rank of the synthetic variation
    np.testing.assert_allclose(model.smooth_face(faces), faces, atol=1e-6)
    np.testing.assert_allclose(model.project(faces), faces, atol=1e-6)
    # a single face works too
    np.testing.assert_allclose(model.smooth_face(faces[3]), faces[3], atol=1e-6)


def test_matches_independent_covariance_eigendecomposition():
    faces = synthetic_faces(seed=1, rank=5)
    model = PCAUtility().fit(faces, 100)
    cov = np.cov(faces, rowvar=False)  # M - 1 denominator
    w, v = np.linalg.eigh(cov)
    w, v = w[::-1][:5], v[:, ::-1][:, :5]
    np.testing.assert_allclose(model.eigenvalues, w, rtol=1e-8)
    np.testing.assert_allclose(model.mean, faces.mean(axis=0), atol=1e-12)
    # same subspaces column by column (up to sign)
    np.testing.assert_allclose(np.abs(np.sum(model.eigenvectors * v, axis=0)), 1.0, atol=1e-8)
    np.testing.assert_allclose(model.eigenvectors.T @ model.eigenvectors, np.eye(5), atol=1e-10)


@pytest.mark.parametrize("p", LEVELS)
def test_component_count_matches_sklearn(p):
    sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
    faces = synthetic_faces(seed=2)
    ref = sklearn_decomposition.PCA(n_components=p / 100.0, svd_solver="full").fit(faces)
    model = PCAUtility().fit(faces, p)
    assert model.num_components == ref.n_components_
    ratio = model.eigenvalues.sum() / np.var(faces, axis=0, ddof=1).sum()
    assert ratio >= p / 100.0
    np.testing.assert_allclose(model.eigenvalues, ref.explained_variance_, rtol=1e-8)


def test_fit_levels_one_decomposition_equals_separate_fits():
    faces = synthetic_faces(seed=3)
    util = PCAUtility()
    models = util.fit_levels(faces, (95, 80, 90, 85))
    assert list(models) == [80, 85, 90, 95]
    for p, model in models.items():
        single = util.fit(faces, p)
        assert model.percentage == p
        assert model.num_components == single.num_components
        np.testing.assert_allclose(model.smooth_face(faces), single.smooth_face(faces), atol=1e-10)
        # the first k columns of the full decomposition
        full = util.fit_full(faces)
        np.testing.assert_allclose(model.eigenvectors, full.eigenvectors[:, : model.num_components])


def test_smooth_face_moves_toward_mean_as_p_falls():
    faces = synthetic_faces(seed=4)
    models = PCAUtility().fit_levels(faces, LEVELS)
    ks = [models[p].num_components for p in LEVELS]
    assert ks == sorted(ks) and ks[0] < ks[-1]
    dists = np.stack([dist_to_mean(models[p], faces) for p in LEVELS])  # (L, M)
    assert np.all(np.diff(dists, axis=0) >= -1e-12)  # non-increasing as p falls
    assert dists[0].mean() < dists[-1].mean()  # strictly closer at the lowest level
    # and every Smooth-Face is no further from the mean than the face itself
    assert np.all(dists[-1] <= np.linalg.norm(faces - models[95].mean, axis=1) + 1e-12)


def test_coefficients_are_clipped_at_three_sigma():
    faces = synthetic_faces(seed=5)
    model = PCAUtility().fit(faces, 95)
    v, lam, mu = model.eigenvectors, model.eigenvalues, model.mean
    sd = np.sqrt(lam)
    outlier_pos = mu + 10.0 * sd[0] * v[:, 0] + 0.5 * sd[1] * v[:, 1]
    outlier_neg = mu - 7.0 * sd[1] * v[:, 1] + 2.0 * sd[2] * v[:, 2]
    smooth = model.smooth_face(np.stack([outlier_pos, outlier_neg]))
    expected_pos = mu + 3.0 * sd[0] * v[:, 0] + 0.5 * sd[1] * v[:, 1]
    expected_neg = mu - 3.0 * sd[1] * v[:, 1] + 2.0 * sd[2] * v[:, 2]
    np.testing.assert_allclose(smooth[0], expected_pos, atol=1e-10)
    np.testing.assert_allclose(smooth[1], expected_neg, atol=1e-10)
    # without clipping the outlier is rebuilt as is (it lies in the model's span)
    np.testing.assert_allclose(model.smooth_face(outlier_pos, clip=False), outlier_pos, atol=1e-10)


def test_wrong_face_length_rejected():
    model = PCAUtility().fit(synthetic_faces(), 90)
    with pytest.raises(ValueError, match="coordinates"):
        model.smooth_face(np.zeros((2, 10)))
    with pytest.raises(ValueError):
        PCAUtility().fit(synthetic_faces(), 0)
    with pytest.raises(ValueError):
        PCAUtility().fit(synthetic_faces(), 101)


# ----------------------------------------------------------------- Φ
def test_difficulty_hand_case():
    g = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    s = np.array([[0.1, -0.2, 0.05, 0.0], [1.0, 2.0, 3.0, 4.0]])
    phi = difficulty(g, s)
    np.testing.assert_allclose(phi[0], [0.5, 1.0, 0.25, 0.0])
    np.testing.assert_array_equal(phi[1], 0.0)  # face equal to its Smooth-Face


def test_difficulty_range_and_max_per_face():
    faces = synthetic_faces(seed=6)
    model = PCAUtility().fit(faces, 80)
    phi = difficulty(faces, model.smooth_face(faces))
    assert phi.shape == faces.shape
    assert phi.min() >= 0.0 and phi.max() <= 1.0
    np.testing.assert_allclose(phi.max(axis=1), 1.0)
    # Φ is |g - s| scaled by one positive number per face
    diff = np.abs(faces - model.smooth_face(faces))
    np.testing.assert_allclose(phi * diff.max(axis=1, keepdims=True), diff, atol=1e-15)


def test_phi_table():
    faces = synthetic_faces(seed=7)
    models = PCAUtility().fit_levels(faces, (90, 80))
    table = phi_table(faces, models)
    assert table.shape == (faces.shape[0], 2, faces.shape[1]) and table.dtype == np.float32
    for i, p in enumerate(sorted(models)):
        ref = difficulty(faces, models[p].smooth_face(faces))
        np.testing.assert_allclose(table[:, i], ref, atol=1e-6)
    # at 100 % (no clipping engaged) every face is its own Smooth-Face -> Φ = 0
    full = PCAUtility().fit_levels(faces, (100,))
    np.testing.assert_array_equal(phi_table(faces, full), 0.0)


# ----------------------------------------------------------------- files
def write_faces(folder: Path, faces: np.ndarray) -> None:
    for i, face in enumerate(faces):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        arr = face.reshape(-1, 2) if i % 3 == 0 else face  # mix (N, 2) and flat files
        np.save(sub / f"face_{i:04d}.npy", arr.astype(np.float32))


def test_create_save_load_round_trip(tmp_path):
    faces = synthetic_faces(seed=8, m=80, n_points=68, rank=10)
    labels_dir = tmp_path / "labels"
    write_faces(labels_dir, faces)
    util = PCAUtility()
    model = util.create_pca_from_npy(DatasetName.w300, labels_dir, 90, out_dir=tmp_path / "pca")
    for kind, shape in (("eigenvalues", (model.num_components,)),
                        ("eigenvectors", (136, model.num_components)),
                        ("meanvector", (136,))):
        path = tmp_path / "pca" / f"300w_pca90_{kind}.npy"
        assert path.is_file()
        assert np.load(path).shape == shape
    assert not [p for p in (tmp_path / "pca").iterdir() if p.name.startswith(".")]  # no temp files left
    loaded = util.load_pca("300w", 90, tmp_path / "pca")
    np.testing.assert_array_equal(loaded.eigenvalues, model.eigenvalues)
    np.testing.assert_array_equal(loaded.eigenvectors, model.eigenvectors)
    np.testing.assert_array_equal(loaded.mean, model.mean)
    # same as fitting the float32 faces in memory
    ref = util.fit(faces.astype(np.float32).astype(np.float64), 90)
    np.testing.assert_allclose(loaded.smooth_face(faces), ref.smooth_face(faces), atol=1e-9)
    # default out_dir is the labels folder
    util.create_pca_from_npy("300w", labels_dir, 85)
    assert (labels_dir / "300w_pca85_eigenvectors.npy").is_file()
    # ... and a second run there ignores the PCA files it finds beside the labels
    again = util.create_pca_from_npy("300w", labels_dir, 85)
    ref_85 = util.fit(faces.astype(np.float32).astype(np.float64), 85)
    np.testing.assert_allclose(again.smooth_face(faces), ref_85.smooth_face(faces), atol=1e-9)
    with pytest.raises(FileNotFoundError, match="300w_pca95_eigenvalues.npy"):
        util.load_pca("300w", 95, tmp_path / "pca")


def test_empty_folder_error(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(ValueError, match="nothing_here"):
        PCAUtility().create_pca_from_npy("300w", empty)


def test_wrong_length_file_error(tmp_path):
    faces = synthetic_faces(seed=9, m=10, n_points=68)
    write_faces(tmp_path, faces)
    np.save(tmp_path / "b" / "short_face.npy", np.zeros(134))
    with pytest.raises(ValueError, match="short_face.npy"):
        PCAUtility().create_pca_from_npy("300w", tmp_path)


def test_length_from_first_file_when_dataset_has_no_spec(tmp_path):
    faces = synthetic_faces(seed=10, m=10, n_points=5)
    write_faces(tmp_path, faces)
    model = PCAUtility().create_pca_from_npy("images", tmp_path, 100)  # user data: any point count
    assert model.num_coords == 10
    with pytest.raises(ValueError, match="expected 58"):  # COFW's spec fixes 29 points (issue 18)
        PCAUtility().create_pca_from_npy("cofw", tmp_path, 100)
    np.save(tmp_path / "zz_odd.npy", np.zeros(12))
    with pytest.raises(ValueError, match="zz_odd.npy"):
        PCAUtility().create_pca_from_npy("images", tmp_path, 100)


def test_nan_and_unreadable_file_errors(tmp_path):
    faces = synthetic_faces(seed=11, m=10, n_points=68)
    write_faces(tmp_path / "nan", faces)
    bad = faces[0].copy()
    bad[5] = np.nan
    np.save(tmp_path / "nan" / "bad_face.npy", bad)
    with pytest.raises(ValueError, match="bad_face.npy"):
        PCAUtility().create_pca_from_npy("300w", tmp_path / "nan")
    write_faces(tmp_path / "junk", faces)
    (tmp_path / "junk" / "broken.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="broken.npy"):
        PCAUtility().create_pca_from_npy("300w", tmp_path / "junk")


def test_cli(tmp_path, capsys):
    faces = synthetic_faces(seed=12, m=60, n_points=68, rank=12)
    write_faces(tmp_path / "labels", faces)
    rc = main(["--dataset", "300w", "--labels", str(tmp_path / "labels"),
               "--percent", "80", "95", "--out", str(tmp_path / "out")])
    assert rc == 0
    out = capsys.readouterr().out
    for p in (80, 95):
        k = PCAUtility().load_pca("300w", p, tmp_path / "out").num_components
        assert f"{p}%: {k} components" in out
    with pytest.raises(SystemExit):
        main(["--dataset", "300w", "--labels", str(tmp_path / "missing")])


# ----------------------------------------------------------------- real 300-W labels
def read_pts(path: Path) -> np.ndarray:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    start = lines.index("{") + 1
    end = lines.index("}")
    pts = np.array([[float(v) for v in ln.split()] for ln in lines[start:end]])
    assert pts.shape == (68, 2), path
    return pts


def test_real_300w_afw_labels(w300_dir):
    """On the afw subset of the real 300-W labels (``w300_dir`` skips when absent)."""
    afw = w300_dir / "afw"
    if not afw.is_dir():
        pytest.skip(f"no afw folder in {w300_dir}")
    files = sorted(afw.glob("*.pts"))
    assert files
    faces = []
    for f in files:
        pts = read_pts(f)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        faces.append(((pts - lo) / (hi - lo) - 0.5).reshape(-1))
    faces = np.stack(faces)
    util = PCAUtility()
    full = util.fit(faces, 100)
    # rebuilding from all components is the identity
    np.testing.assert_allclose(full.project(faces), faces, atol=1e-6)
    # with clipping, faces whose coefficients all lie within 3 sigma are unchanged
    inside = np.all(np.abs(full.coefficients(faces)) <= 3.0 * np.sqrt(full.eigenvalues), axis=1)
    assert inside.any()
    np.testing.assert_allclose(full.smooth_face(faces[inside]), faces[inside], atol=1e-6)

    models = util.fit_levels(faces, LEVELS)
    ks = [models[p].num_components for p in LEVELS]
    assert ks == sorted(ks) and ks[0] < ks[-1] < faces.shape[1]
    dists = np.stack([dist_to_mean(models[p], faces) for p in LEVELS])
    assert np.all(np.diff(dists, axis=0) >= -1e-12)
    assert dists[0].mean() < dists[-1].mean()
    phi = phi_table(faces, models)
    assert phi.min() >= 0.0 and phi.max() <= 1.0
    np.testing.assert_allclose(phi.max(axis=2), 1.0, atol=1e-6)
