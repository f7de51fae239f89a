"""Tests of acrloss.data_prep.datasets on the real 300-W folders and on small tmp folders."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from acrloss.data_prep.datasets import (
    Sample,
    SubsetNotFoundError,
    available_subsets,
    load_split,
    read_folder,
    train_val_split,
    w300_subset,
)
from acrloss.data_prep.formats import LandmarkFileError, read_pts, write_pts


def count_pts(folder: Path) -> int:
    return len(list(folder.glob("*.pts")))


# ----------------------------------------------------------------- real 300-W
def test_train_subset_has_2012_faces(w300_dir):
    samples = w300_subset(w300_dir, "train")
    assert len(samples) == 2012
    # the count is the sum of the three folders, counted independently here
    expected = sum(count_pts(w300_dir / f) for f in ("afw", "helen/trainset", "lfpw/trainset"))
    assert expected == 2012
    s = samples[0]
    assert isinstance(s, Sample)
    assert s.points.shape == (68, 2)
    assert Path(s.image_path).is_file()
    assert s.box is None


def test_common_subset_has_554_faces_with_matching_points(w300_dir):
    samples = w300_subset(w300_dir, "common")
    assert len(samples) == 554
    folders = {Path(s.image_path).parent.relative_to(w300_dir).as_posix() for s in samples}
    assert folders == {"helen/testset", "lfpw/testset"}
    # every sample's points are its own .pts file's values minus one (parsed here by hand)
    for s in samples[::97]:
        text = Path(s.image_path).with_suffix(".pts").read_text().split("{")[1].split("}")[0]
        raw = np.array([[float(v) for v in ln.split()] for ln in text.strip().splitlines()])
        np.testing.assert_allclose(s.points, raw - 1.0)
    # image and .pts belong together
    assert all(Path(s.image_path).with_suffix(".pts").is_file() for s in samples)
    assert len({s.image_path for s in samples}) == 554


def test_challenging_is_missing_and_says_so(w300_dir):
    assert not (w300_dir / "ibug").exists()
    with pytest.raises(SubsetNotFoundError) as info:
        w300_subset(w300_dir, "challenging")
    assert str(info.value) == f"challenging: ibug/ not found under {w300_dir}"
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(SubsetNotFoundError, match=r"^full: ibug/ not found under "):
        w300_subset(w300_dir, "full")


def test_available_subsets_reports_missing_as_strings(w300_dir):
    found = available_subsets(w300_dir)
    assert set(found) == {"common", "challenging", "full"}
    assert isinstance(found["common"], list) and len(found["common"]) == 554
    assert isinstance(found["challenging"], str) and "ibug/" in found["challenging"]
    assert isinstance(found["full"], str) and found["full"].startswith("full:")


def test_load_split_dispatch(w300_dir):
    assert len(load_split("300w", w300_dir, "common")) == 554
    images = load_split("images", w300_dir / "lfpw" / "testset", "ignored")
    assert len(images) == 224
    with pytest.raises(ValueError, match="unknown 300-W subset"):
        w300_subset(w300_dir, "private")
    with pytest.raises(SubsetNotFoundError, match="not a WFLW folder"):  # WFLW has a reader now (issue 18)
        load_split("wflw", w300_dir, "train")


# ----------------------------------------------------------------- synthetic folders
def make_face(folder: Path, stem: str, points: np.ndarray, image: bool = True, ext: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_pts(folder / f"{stem}.pts", points)
    if image:
        (folder / f"{stem}{ext}").write_bytes(b"not decoded here")


def test_partial_300w_layout(tmp_path):
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    make_face(tmp_path / "helen" / "testset", "h1", pts)
    make_face(tmp_path / "helen" / "testset", "h2", pts)
    # lfpw/testset and ibug absent
    with pytest.raises(SubsetNotFoundError, match=re.escape(f"common: lfpw/testset/ not found under {tmp_path}")):
        w300_subset(tmp_path, "common")
    with pytest.raises(SubsetNotFoundError, match=re.escape("full: lfpw/testset/, ibug/ not found")):
        w300_subset(tmp_path, "full")
    make_face(tmp_path / "lfpw" / "testset", "l1", pts, ext=".png")
    got = available_subsets(tmp_path, ("common", "challenging"))
    assert [Path(s.image_path).name for s in got["common"]] == ["h1.jpg", "h2.jpg", "l1.png"]
    assert isinstance(got["challenging"], str)


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SubsetNotFoundError, match=re.escape(str(missing))):
        w300_subset(missing, "common")
    with pytest.raises(LandmarkFileError, match=re.escape(str(missing))):
        read_folder(missing)


def test_empty_folder_names_the_folder(tmp_path):
    empty = tmp_path / "empty_dataset"
    empty.mkdir()
    (empty / "readme.txt").write_text("no faces here")
    with pytest.raises(LandmarkFileError, match=re.escape(str(empty))):
        read_folder(empty)


def test_pts_without_image_names_the_pts(tmp_path):
    pts = np.zeros((68, 2))
    make_face(tmp_path, "has_image", pts)
    make_face(tmp_path, "lonely_face", pts, image=False)
    with pytest.raises(LandmarkFileError, match=re.escape(str(tmp_path / "lonely_face.pts"))):
        read_folder(tmp_path)


def test_bad_pts_in_folder_names_the_pts(tmp_path):
    make_face(tmp_path, "good", np.zeros((68, 2)))
    make_face(tmp_path, "only_five", np.zeros((5, 2)))
    with pytest.raises(LandmarkFileError, match=r"only_five\.pts"):
        read_folder(tmp_path, num_points=68)


def test_read_folder_recursive_sorted_and_uppercase_extension(tmp_path):
    rng = np.random.default_rng(3)
    p1, p2, p3 = (rng.uniform(0, 50, (68, 2)) for _ in range(3))
    make_face(tmp_path / "b", "z", p1)
    make_face(tmp_path / "a", "y", p2, ext=".PNG")
    make_face(tmp_path, "x", p3, ext=".jpeg")
    samples = read_folder(tmp_path)
    names = [Path(s.image_path).relative_to(tmp_path).as_posix() for s in samples]
    assert names == ["a/y.PNG", "b/z.jpg", "x.jpeg"]
    np.testing.assert_allclose(samples[0].points, p2, atol=1e-6)
    assert samples[1].name == "z"
    assert [Path(s.image_path).name for s in read_folder(tmp_path, recursive=False)] == ["x.jpeg"]


def test_real_folder_copy_reads_the_same_points(tmp_path, w300_dir):
    """A small tmp copy of real faces reads back exactly like the original .pts files."""
    src = sorted((w300_dir / "lfpw" / "testset").glob("*.pts"))[:3]
    for p in src:
        shutil.copy(p, tmp_path / p.name)
        shutil.copy(p.with_suffix(".jpg"), tmp_path / p.with_suffix(".jpg").name)
    samples = read_folder(tmp_path)
    assert len(samples) == 3
    for s, p in zip(samples, src):
        np.testing.assert_array_equal(s.points, read_pts(p))


# ----------------------------------------------------------------- train/val split
def fake_samples(n: int) -> list[Sample]:
    return [Sample(f"/x/{i:04d}.jpg", np.full((68, 2), float(i))) for i in range(n)]


def test_train_val_split_deterministic_and_disjoint():
    samples = fake_samples(200)
    tr1, va1 = train_val_split(samples, 0.1, seed=7)
    tr2, va2 = train_val_split(samples, 0.1, seed=7)
    assert [s.image_path for s in tr1] == [s.image_path for s in tr2]
    assert [s.image_path for s in va1] == [s.image_path for s in va2]
    assert len(va1) == 20 and len(tr1) == 180
    a, b = {s.image_path for s in tr1}, {s.image_path for s in va1}
    assert not a & b
    assert a | b == {s.image_path for s in samples}
    # another seed picks another validation set
    _, va3 = train_val_split(samples, 0.1, seed=8)
    assert {s.image_path for s in va3} != b
    # the validation set is not simply the head or tail of the list
    assert b != {s.image_path for s in samples[:20]} and b != {s.image_path for s in samples[-20:]}


def test_train_val_split_edge_fractions():
    samples = fake_samples(10)
    tr, va = train_val_split(samples, 0.0)
    assert len(tr) == 10 and va == []
    tr, va = train_val_split(samples, 0.25)
    assert len(va) in (2, 3) and len(tr) + len(va) == 10


def test_train_val_split_on_real_train(w300_dir):
    samples = w300_subset(w300_dir, "train")
    tr, va = train_val_split(samples, 0.1, seed=0)
    assert len(va) == round(2012 * 0.1)
    assert len(tr) + len(va) == 2012
    assert not {s.image_path for s in tr} & {s.image_path for s in va}
