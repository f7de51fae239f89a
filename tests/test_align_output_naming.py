"""Tests of :mod:`acrloss.align_outputs`: collision-free names, box records, per-photo
failures, and what the JSON says about boxes beyond the image (real photo, dlib)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from acrloss.align_outputs import (
    MANIFEST_NAME,
    assign_names,
    clip_box,
    fit_name,
    names_conflict,
    output_files,
)
from acrloss.cli import main

EDGE_PHOTO = "full/lfpw/testset/image_0013.jpg"  # dlib's boxes run past both side borders (366 px wide)


def test_names_conflict_exactly_when_file_sets_can_share_a_file():
    assert names_conflict("good", "good") and names_conflict("good", "GOOD")
    assert names_conflict("good", "good_face0") and names_conflict("good_face12", "good")
    assert names_conflict("Good_Face1", "good")
    assert not names_conflict("good", "good_face") and not names_conflict("good", "good_face0_2")
    assert not names_conflict("good", "good_aligned") and not names_conflict("a/good", "good")
    # the claim behind the rule: over face counts 0..12 and both formats, the file sets meet
    # exactly when names_conflict says so
    names = ["good", "good_face0", "good_face1", "good_face0_2", "good_aligned", "good_2", "Good", "good_face"]
    for a in names:
        for b in names:
            if a == b:
                continue
            files_a = {f.casefold() for n in range(13) for fmt in ("jpg", "png") for f in output_files(a, n, fmt)}
            files_b = {f.casefold() for n in range(13) for fmt in ("jpg", "png") for f in output_files(b, n, fmt)}
            assert bool(files_a & files_b) == names_conflict(a, b), (a, b)


def test_assign_names_is_deterministic_and_collision_free():
    bases = ["good", "good_face0", "Good_face1", "good", "align_manifest", "sub/x", "x", "good_face0"]
    names = assign_names(bases)
    assert names == ["good", "good_face0_2", "Good_face1_2", "good_2", "align_manifest_2", "sub/x", "x", "good_face0_3"]
    assert assign_names(bases) == names
    for i, a in enumerate(names):
        assert not any(names_conflict(a, b) for b in names[:i])
    assert Path(MANIFEST_NAME).stem not in names


def test_fit_name_keeps_short_names_and_shortens_long_ones():
    assert fit_name("a" * 242) == "a" * 242
    long = fit_name("d/" + "é" * 200)  # 400 UTF-8 bytes
    head, last = long.split("/")
    assert head == "d" and len(last.encode()) <= 242 and "~" in last
    assert fit_name("d/" + "é" * 200) == long and fit_name("d/" + "é" * 201) != long  # hash of the whole name
    assert all(len(f.encode()) <= 255 for f in output_files(last, 9999, "jpg"))


def test_clip_box():
    assert clip_box([-22.0, 202.0, 373.0, 356.0], 366, 522) == [0.0, 202.0, 365.0, 356.0]
    assert clip_box([1.0, 2.0, 3.0, 4.0], 10, 10) == [1.0, 2.0, 3.0, 4.0]


@pytest.fixture()
def edge_photo(w300_dir) -> Path:
    pytest.importorskip("dlib", reason="dlib is not installed")
    p = w300_dir / EDGE_PHOTO
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


def test_boxes_beyond_the_image_are_raw_and_clipped_copies_are_given(edge_photo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["align", str(edge_photo), "--out", str(out)]) == 0
    capsys.readouterr()
    rec = json.loads((out / f"{edge_photo.stem}.json").read_text())
    w, h = rec["width"], rec["height"]
    boxes = np.array([f["box"] for f in rec["faces"]])
    assert len(boxes) == 2
    assert boxes[:, 0].min() < 0 and boxes[:, 2].max() > w - 1  # the detector's raw boxes leave the image
    for face in rec["faces"]:
        np.testing.assert_allclose(face["box_in_image"], clip_box(face["box"], w, h), atol=1e-3)
        x0, y0, x1, y1 = face["box_in_image"]
        assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
    assert "may extend beyond the image" in rec["coordinates"]


def test_a_photo_whose_detection_fails_is_named_and_skipped(edge_photo, tmp_path):
    """A per-photo detector/model error does not end the batch (library level)."""
    from acrloss.align import FaceAligner
    from acrloss.align_outputs import align_photos
    from acrloss.detectors import DlibHOGDetector

    dlib_detector = DlibHOGDetector()

    def detector(image):
        if image.shape[1] == 366:  # the edge photo only
            raise RuntimeError("detector crashed")
        return dlib_detector(image)

    good = tmp_path / "in" / "ok.jpg"
    good.parent.mkdir()
    shutil.copyfile(edge_photo.parent / "image_0001.jpg", good)
    messages: list[str] = []
    run = align_photos(FaceAligner(detector=detector), [(edge_photo, "edge"), (good, "ok")], tmp_path / "out",
                       err=messages.append, out=lambda _: None)
    assert [r.status for r in run.results] == ["failed", "ok"]
    assert messages == [f"skipping {edge_photo}: landmark detection failed (RuntimeError: detector crashed)"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(["ok.pts", "ok_aligned.jpg", "ok.json",
                                                                             MANIFEST_NAME])
