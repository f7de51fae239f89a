"""Label validation at read time (issue 15, item 5): absurd, non-finite or miscounted
points are refused with the file named; readers can skip and list them instead."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from acrloss.data_prep.datasets import load_split, read_folder, w300_subset
from acrloss.data_prep.formats import LandmarkFileError, RejectedFile, read_pts, rejected_summary, validate_points


def write_pts(path: Path, pts: np.ndarray) -> Path:
    body = "\n".join(f"{float(x)!r} {float(y)!r}" for x, y in pts)
    path.write_text(f"version: 1\nn_points:  {len(pts)}\n{{\n{body}\n}}\n")
    return path


def face(n: int = 68, size: int = 100) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([size / 2 + size / 4 * np.cos(t), size / 2 + size / 4 * np.sin(t)], 1) + 1.0  # 1-based


def add_image(path: Path, size: int = 100) -> None:
    assert cv2.imwrite(str(path), np.zeros((size, size, 3), np.uint8))


def test_a_point_at_1e30_is_refused_naming_the_file(tmp_path):
    pts = face()
    pts[30] = (1e30, 40.0)
    path = write_pts(tmp_path / "huge.pts", pts)
    with pytest.raises(LandmarkFileError, match=r"huge\.pts: point 30 .*1e\+30"):
        read_pts(path)


def test_points_far_outside_the_image_are_refused_and_near_ones_pass(tmp_path):
    pts = face()
    pts[5] = (100 + 0.6 * 100, 50.0)  # 60 % of the image side beyond the right border
    write_pts(tmp_path / "far.pts", pts)
    add_image(tmp_path / "far.jpg")
    with pytest.raises(LandmarkFileError, match=r"far\.pts: point 5 at \(159, 49\) lies far outside the 100x100 image"):
        read_folder(tmp_path)
    near = face()
    near[0] = (-3.0, 50.0)  # an occluded jaw point just past the border is legitimate
    write_pts(tmp_path / "far.pts", near)
    (sample,) = read_folder(tmp_path)
    np.testing.assert_allclose(sample.points, near - 1.0)


def test_validate_points_checks_shape_count_and_finiteness():
    good = face() - 1.0
    np.testing.assert_array_equal(validate_points(good, "x.pts", 68, (100, 100)), good)
    with pytest.raises(LandmarkFileError, match=r"x\.pts: expected 68 points, found 67"):
        validate_points(good[:-1], "x.pts", 68)
    with pytest.raises(LandmarkFileError, match=r"x\.pts: landmarks must be \(N, 2\)"):
        validate_points(good.reshape(-1), "x.pts")
    bad = good.copy()
    bad[7, 1] = np.nan
    with pytest.raises(LandmarkFileError, match=r"x\.pts: point 7 is not finite"):
        validate_points(bad, "x.pts", 68)
    with pytest.raises(LandmarkFileError, match=r"x\.pts: point 0 .* outside the 10x20 image"):
        validate_points(np.array([[-11.0, 0.0]]), "x.pts", image_size=(10, 20))  # slack 0.5 * 20 = 10 px
    validate_points(np.array([[-9.0, 0.0]]), "x.pts", image_size=(10, 20))


def test_readers_skip_and_list_rejected_files(tmp_path):
    for i in range(3):
        write_pts(tmp_path / f"good{i}.pts", face())
        add_image(tmp_path / f"good{i}.png")
    absurd = face()
    absurd[0] = (1e30, 1e30)
    write_pts(tmp_path / "absurd.pts", absurd)
    add_image(tmp_path / "absurd.png")
    write_pts(tmp_path / "short.pts", face(60))
    add_image(tmp_path / "short.png")
    write_pts(tmp_path / "noimage.pts", face())
    (tmp_path / "garbage.pts").write_text("not a pts file\n")
    add_image(tmp_path / "garbage.png")
    with pytest.raises(LandmarkFileError):
        read_folder(tmp_path)  # strict by default
    rejected: list[RejectedFile] = []
    samples = load_split("images", tmp_path, "train", rejected=rejected)
    assert sorted(Path(s.image_path).name for s in samples) == ["good0.png", "good1.png", "good2.png"]
    reasons = {Path(r.path).name: r.reason for r in rejected}
    assert set(reasons) == {"absurd.pts", "short.pts", "noimage.pts", "garbage.pts"}
    assert "absurdly far" in reasons["absurd.pts"]
    assert "expected 68 points, found 60" in reasons["short.pts"]
    assert "no image" in reasons["noimage.pts"]
    assert "not a .pts file" in reasons["garbage.pts"]
    text = rejected_summary(rejected, total=7)
    assert text.startswith("rejected 4 of 7 annotated files:") and str(tmp_path / "absurd.pts") in text


def test_no_real_300w_face_is_rejected(w300_dir):
    """The margin is loose enough for real annotations: every 300-W face passes."""
    rejected: list[RejectedFile] = []
    n = sum(len(w300_subset(w300_dir, subset, rejected=rejected)) for subset in ("train", "common"))
    assert rejected == []
    assert n == 2012 + 554
