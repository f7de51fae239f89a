"""Tests of acrloss.data_prep.formats: .pts reading/writing and its errors."""
from __future__ import annotations

import re

import numpy as np
import pytest

from acrloss.data_prep.formats import LandmarkFileError, read_pts, save_npy_atomic, write_pts


def pts_text(points, declared=None) -> str:
    """An iBUG .pts file written by hand (values exactly as given, 1-based)."""
    n = len(points) if declared is None else declared
    body = "\n".join(f"{x} {y}" for x, y in points)
    return f"version: 1\nn_points:  {n}\n{{\n{body}\n}}\n"


def test_read_pts_converts_one_based_file_values_to_zero_based(tmp_path):
    file_values = [(1.0, 1.0), (10.5, 20.25), (100.0, 3.0)]
    path = tmp_path / "face.pts"
    path.write_text(pts_text(file_values))
    pts = read_pts(path, num_points=3)
    assert pts.shape == (3, 2)
    assert pts.dtype == np.float64
    expected = np.array([[0.0, 0.0], [9.5, 19.25], [99.0, 2.0]])
    np.testing.assert_array_equal(pts, expected)


def test_read_pts_68_points_and_any_count_when_none(tmp_path):
    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(1, 400, (68, 2)), 3)
    path = tmp_path / "a.pts"
    path.write_text(pts_text(values.tolist()))
    np.testing.assert_allclose(read_pts(path), values - 1.0, atol=1e-12)
    path5 = tmp_path / "b.pts"
    path5.write_text(pts_text(values[:5].tolist()))
    assert read_pts(path5, num_points=None).shape == (5, 2)


def test_write_then_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    pts = rng.uniform(-5, 500, (68, 2))
    path = tmp_path / "sub" / "rt.pts"  # parent folder is created
    write_pts(path, pts)
    np.testing.assert_allclose(read_pts(path), pts, atol=1e-6)
    # the file holds 1-based values: the first point in the text is pts[0] + 1
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    assert lines[0].startswith("version")
    assert re.match(r"n_points:\s*68$", lines[1])
    first = np.array([float(v) for v in lines[lines.index("{") + 1].split()])
    np.testing.assert_allclose(first, pts[0] + 1.0, atol=1e-6)
    # no temporary files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["rt.pts"]


def test_write_pts_overwrites(tmp_path):
    path = tmp_path / "o.pts"
    write_pts(path, np.zeros((68, 2)))
    write_pts(path, np.full((68, 2), 7.0))
    np.testing.assert_array_equal(read_pts(path), np.full((68, 2), 7.0))


def test_wrong_point_count_names_the_file(tmp_path):
    path = tmp_path / "short_face.pts"
    path.write_text(pts_text([(1, 2)] * 67))
    with pytest.raises(LandmarkFileError, match=r"short_face\.pts.*68"):
        read_pts(path, num_points=68)


def test_header_count_disagreeing_with_body_names_the_file(tmp_path):
    path = tmp_path / "liar.pts"
    path.write_text(pts_text([(1, 2)] * 68, declared=70))
    with pytest.raises(LandmarkFileError, match=r"liar\.pts"):
        read_pts(path)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_values_name_the_file(tmp_path, bad):
    values = [(1.0, 2.0)] * 68
    text = pts_text(values).replace("1.0 2.0", f"1.0 {bad}", 1)
    path = tmp_path / f"nonfinite_{bad}.pts"
    path.write_text(text)
    with pytest.raises(LandmarkFileError, match=re.escape(path.name)):
        read_pts(path)


@pytest.mark.parametrize(
    "text",
    [
        "this is not a landmark file at all\n",
        "",
        "version: 1\nn_points: 68\n{\n1.0 two\n}\n",
        "version: 1\nn_points: 1\n{\n1.0 2.0 3.0\n}\n",
        "version: 1\nn_points: lots\n{\n1.0 2.0\n}\n",
        "version: 1\nn_points: 1\n{\n1.0 2.0\n",  # no closing brace
        "version: 1\nn_points: 2\n{\n1.0 2.0\n3.0\n}\n",  # ragged
    ],
    ids=["prose", "empty", "word", "three-numbers", "bad-header", "unclosed", "ragged"],
)
def test_garbage_text_names_the_file(tmp_path, text):
    path = tmp_path / "garbage_file.pts"
    path.write_text(text)
    with pytest.raises(LandmarkFileError, match=r"garbage_file\.pts"):
        read_pts(path, num_points=None)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "does_not_exist.pts"
    with pytest.raises(LandmarkFileError, match=r"does_not_exist\.pts"):
        read_pts(path)


def test_landmark_file_error_is_a_value_error():
    assert issubclass(LandmarkFileError, ValueError)


def test_save_npy_atomic(tmp_path):
    arr = np.arange(136, dtype=np.float32)
    path = tmp_path / "deep" / "x.npy"
    save_npy_atomic(path, arr)
    np.testing.assert_array_equal(np.load(path), arr)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.npy"]
