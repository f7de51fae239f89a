"""Tests of acrloss.data_prep.pipeline (LandmarkSequence batches) and the labels CLI."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from acrloss.config import W300_SPEC, AugmentConfig, CropConfig
from acrloss.data_prep import labels as labels_cli
from acrloss.data_prep.crop import CropTransform, denormalize
from acrloss.data_prep.datasets import Sample
from acrloss.data_prep.pipeline import LandmarkSequence, normalized_labels
from acrloss.pca_utility import PCAUtility

MIRROR = np.array(W300_SPEC.mirror)


def expected_targets(samples, margin: float) -> np.ndarray:
    """Normalized targets written out from the convention: the crop is a square of side
    (1 + margin) x the landmark extent's longer side, centred on the extent, and
    normalized coordinates run from -0.5 to 0.5 across it, so n = (p - centre) / side."""
    out = []
    for s in samples:
        lo, hi = s.points.min(axis=0), s.points.max(axis=0)
        side = (hi - lo).max() * (1.0 + margin)
        out.append(((s.points - (lo + hi) / 2.0) / side).reshape(-1))
    return np.array(out)


@pytest.fixture(scope="module")
def faces(w300_common):
    return w300_common[200:210]


def test_batch_shapes_dtypes_and_values(faces):
    size = 48
    seq = LandmarkSequence(faces, CropConfig(size, 0.25), batch_size=4, workers=1)
    assert len(seq) == 3  # ceil(10 / 4)
    sizes = []
    for b in range(len(seq)):
        images, targets = seq[b]
        assert images.dtype == np.float32 and targets.dtype == np.float32
        assert images.shape[1:] == (size, size, 3)
        assert targets.shape == (len(images), 136)
        assert images.min() >= 0.0 and images.max() <= 255.0
        assert images.max() > 100.0  # real pixels, not a black or [0, 1] image
        np.testing.assert_array_equal(images, np.round(images))  # decoded uint8 values
        sizes.append(len(images))
    assert sizes == [4, 4, 2]


def test_unaugmented_targets_match_the_convention(faces):
    seq = LandmarkSequence(faces, CropConfig(64, 0.25), batch_size=10, workers=1)
    _, targets = seq[0]
    np.testing.assert_allclose(targets, expected_targets(faces, 0.25), atol=1e-6)
    np.testing.assert_allclose(normalized_labels(faces, CropConfig(64, 0.1)), expected_targets(faces, 0.1), atol=1e-6)


def test_unaugmented_image_is_the_described_crop(faces):
    """Crop re-made here with OpenCV from the convention (scale >= 0.5: a single warp)."""
    size = 224
    s = faces[0]
    seq = LandmarkSequence([s], CropConfig(size, 0.25), batch_size=1, workers=1)
    images, _ = seq[0]
    lo, hi = s.points.min(axis=0), s.points.max(axis=0)
    side = (hi - lo).max() * 1.25
    k = size / side
    assert k >= 0.5
    centre = (lo + hi) / 2.0
    c = (size - 1) / 2.0
    m = np.array([[k, 0, c - k * centre[0]], [0, k, c - k * centre[1]]])
    raw = cv2.cvtColor(cv2.imread(s.image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    mine = cv2.warpAffine(raw, m, (size, size), flags=cv2.INTER_LINEAR).astype(np.float32)
    assert np.abs(images[0] - mine).max() <= 1.0


def test_return_transforms_map_targets_back_to_image_points(faces):
    size = 64
    seq = LandmarkSequence(faces, CropConfig(size, 0.25), batch_size=5, return_transforms=True, workers=1)
    images, targets, transforms = seq[1]
    assert len(transforms) == 5 and all(isinstance(t, CropTransform) for t in transforms)
    for t, row, s in zip(transforms, targets, faces[5:]):
        back = t.inverse(denormalize(row.reshape(68, 2), size))
        np.testing.assert_allclose(back, s.points, atol=1e-3)


def random_phi_table(m: int, levels: int = 4) -> np.ndarray:
    return np.random.default_rng(42).uniform(0, 1, (m, levels, 136)).astype(np.float32)


def test_phi_half_is_the_table_row_at_the_current_level(faces):
    table = random_phi_table(len(faces))
    seq = LandmarkSequence(faces, CropConfig(32, 0.25), batch_size=4, phi_table=table, workers=1)
    for level in range(4):
        seq.phi_level = level
        row0 = 0
        for b in range(len(seq)):
            _, targets = seq[b]
            n = len(targets)
            assert targets.shape == (n, 272)
            np.testing.assert_allclose(targets[:, :136], expected_targets(faces[row0 : row0 + n], 0.25), atol=1e-6)
            np.testing.assert_array_equal(targets[:, 136:], table[row0 : row0 + n, level])
            row0 += n
    seq.phi_level = 0
    _, first = seq[0]
    seq.phi_level = 3
    _, last = seq[0]
    np.testing.assert_array_equal(first[:, :136], last[:, :136])
    assert not np.allclose(first[:, 136:], last[:, 136:])


def test_shuffled_batches_keep_points_and_phi_together(faces):
    table = random_phi_table(len(faces))
    expected = expected_targets(faces, 0.25)
    seq = LandmarkSequence(faces, CropConfig(32, 0.25), batch_size=3, shuffle=True, seed=1, phi_table=table, workers=1)
    orders = []
    for epoch in range(2):
        order = []
        for b in range(len(seq)):
            _, targets = seq[b]
            for row in targets:
                j = int(np.argmin(np.abs(expected - row[:136]).max(axis=1)))
                np.testing.assert_allclose(row[:136], expected[j], atol=1e-6)
                np.testing.assert_array_equal(row[136:], table[j, 0])
                order.append(j)
        assert sorted(order) == list(range(len(faces)))  # every face once per epoch
        orders.append(order)
        seq.on_epoch_end()
    assert orders[0] != orders[1]  # reshuffled
    assert orders[0] != list(range(len(faces)))


def test_flipped_phi_follows_the_relabeled_points(faces):
    table = random_phi_table(len(faces))
    flip_only = dataclasses.replace(AugmentConfig.none(), flip_prob=1.0)
    seq = LandmarkSequence(faces[:4], CropConfig(32, 0.25), batch_size=4, augment=flip_only, mirror=MIRROR,
                           phi_table=table[:4], workers=1)
    seq.phi_level = 2
    _, targets = seq[0]
    for i, row in enumerate(targets):
        np.testing.assert_array_equal(row[136:].reshape(68, 2), table[i, 2].reshape(68, 2)[MIRROR])


def test_greyscale_300w_images_load(w300_dir):
    """Some 300-W photos are single-channel; they load as three equal channels."""
    from acrloss.data_prep.datasets import read_folder

    grey = []
    for s in read_folder(w300_dir / "helen" / "testset"):
        raw = cv2.imread(s.image_path, cv2.IMREAD_UNCHANGED)
        if raw.ndim == 2:
            grey.append(s)
        if len(grey) == 3:
            break
    assert len(grey) == 3, "expected single-channel photos in helen/testset"
    seq = LandmarkSequence(grey, CropConfig(48, 0.25), batch_size=3, workers=1)
    images, targets = seq[0]
    assert images.shape == (3, 48, 48, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 1], images[..., 2])
    assert images.max() > 50
    np.testing.assert_allclose(targets, expected_targets(grey, 0.25), atol=1e-6)


def test_constructor_errors(faces):
    with pytest.raises(ValueError, match="no samples"):
        LandmarkSequence([], CropConfig(32))
    with pytest.raises(ValueError, match="mirror"):
        LandmarkSequence(faces, CropConfig(32), augment=AugmentConfig())
    with pytest.raises(ValueError, match="phi_table"):
        LandmarkSequence(faces, CropConfig(32), phi_table=random_phi_table(len(faces) - 1))


def test_missing_image_error_names_the_file(tmp_path, faces):
    ghost = Sample(str(tmp_path / "vanished.jpg"), faces[0].points)
    seq = LandmarkSequence([ghost], CropConfig(32), batch_size=1, workers=1)
    with pytest.raises(ValueError, match=r"vanished\.jpg"):
        seq[0]


# ----------------------------------------------------------------- labels CLI -> PCA
def test_labels_cli_writes_one_npy_per_face_and_pca_reads_them(w300_dir, w300_common, tmp_path, capsys):
    out = tmp_path / "labels"
    labels_cli.main(["--dataset", "300w", "--data-dir", str(w300_dir), "--subset", "common",
                     "--out", str(out), "--input-size", "64"])
    assert "wrote 554" in capsys.readouterr().out
    files = sorted(out.glob("*.npy"))
    assert len(files) == 554
    assert not list(out.glob(".*"))  # no temporary files left
    expected = {f"{Path(s.image_path).parent.name}__{Path(s.image_path).stem}": row
                for s, row in zip(w300_common, expected_targets(w300_common, CropConfig.margin))}
    assert {f.stem for f in files} == set(expected)
    stack = []
    for f in files:
        arr = np.load(f)
        assert arr.shape == (136,) and arr.dtype == np.float32
        np.testing.assert_allclose(arr, expected[f.stem], atol=1e-6)
        stack.append(arr.astype(np.float64))
    stack = np.array(stack)

    model = PCAUtility().create_pca_from_npy("300w", out, 90, out_dir=tmp_path / "pca")
    np.testing.assert_allclose(model.mean, stack.mean(axis=0), atol=1e-9)
    # 90 % kept variance, checked against an independent eigendecomposition
    evals = np.sort(np.linalg.eigvalsh(np.cov(stack, rowvar=False)))[::-1]
    k = int(np.searchsorted(np.cumsum(evals) / evals.sum(), 0.9)) + 1
    assert model.num_components == k
    np.testing.assert_allclose(model.eigenvalues, evals[:k], rtol=1e-6)
    assert (tmp_path / "pca" / "300w_pca90_eigenvectors.npy").is_file()


def test_labels_cli_on_a_small_images_folder(w300_dir, tmp_path):
    src = tmp_path / "faces"
    src.mkdir()
    chosen = sorted((w300_dir / "afw").glob("*.pts"))[:4]
    for p in chosen:
        shutil.copy(p, src / p.name)
        shutil.copy(p.with_suffix(".jpg"), src / p.with_suffix(".jpg").name)
    out = tmp_path / "npy"
    labels_cli.main(["--dataset", "images", "--data-dir", str(src), "--out", str(out), "--input-size", "32",
                     "--margin", "0.4"])
    files = sorted(out.glob("*.npy"))
    assert [f.name for f in files] == [f"faces__{p.stem}.npy" for p in chosen]
    from acrloss.data_prep.formats import read_pts

    samples = [Sample(str(p.with_suffix(".jpg")), read_pts(p)) for p in chosen]
    for f, row in zip(files, expected_targets(samples, 0.4)):
        np.testing.assert_allclose(np.load(f), row, atol=1e-6)
