"""Reliability drills for ``acrloss align`` outputs (issue 15, items 1 and 2).

Each drill runs the real command (:func:`acrloss.cli.main`, shipped model, dlib detector) on
real 300-W photos copied into a temporary folder under crafted names, and checks the files
on disk. Every defect test here failed on the code before the fix:

- colliding names: ``good.jpg`` with two faces wrote ``good_face0.pts``, which
  ``good_face0.jpg`` then overwrote (``good.json`` pointed at the other photo's points);
- a re-run into the same ``--out`` left the previous run's ``NAME_face*.pts`` beside the new
  ``NAME.pts``;
- a legal 244-character file name failed on its temporary name ("File name too long") with
  a traceback, and the photos after it were never processed; any other write failure did
  the same;
- ``--out`` naming an existing file raised ``FileExistsError`` (exit 1) instead of a
  one-line usage error (exit 2).

Skipped, with the reason, when the 300-W data or dlib is absent.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from acrloss.cli import main
from acrloss.data_prep.formats import read_pts
from acrloss.data_prep.images import read_image
from acrloss.metrics import nme

TWO_FACES = "full/lfpw/testset/image_0009.jpg"  # dlib finds two faces; the .pts is the larger one's
ONE_FACE = "full/lfpw/testset/image_0001.jpg"
ONE_FACE_B = "full/lfpw/testset/image_0002.jpg"
ONE_FACE_C = "full/lfpw/testset/image_0004.jpg"
NO_FACE = "full/helen/testset/2970690152_2.jpg"  # dlib finds no face in this photo
MANIFEST = "align_manifest.json"


@pytest.fixture(scope="module")
def photos(w300_dir) -> dict[str, Path]:
    pytest.importorskip("dlib", reason="dlib is not installed (the align command's detector)")
    paths = {k: w300_dir / v for k, v in
             {"two": TWO_FACES, "one": ONE_FACE, "one_b": ONE_FACE_B, "one_c": ONE_FACE_C, "none": NO_FACE}.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.skip(f"300-W whole photos not found: {missing}")
    return paths


def place(src: Path, dst: Path) -> Path:
    """Copy a real photo (and its .pts, for the ground truth) under a crafted name."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def align(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(["align", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def records(out: Path) -> dict[str, dict]:
    """``{image file name: its JSON record}`` for every per-photo JSON in ``out``."""
    found = {}
    for p in out.rglob("*.json"):
        if p.name == MANIFEST or not p.is_file():
            continue
        rec = json.loads(p.read_text())
        found[Path(rec["image"]).name] = {**rec, "_json": p}
    return found


def check_record(out: Path, rec: dict, source: Path) -> None:
    """A photo's JSON, .pts files and annotated image agree and belong to ``source``."""
    assert rec["image"] == str(source)
    image = read_image(source)
    assert (rec["width"], rec["height"]) == (image.shape[1], image.shape[0])
    assert rec["faces"], f"{rec['_json']}: no faces"
    for face in rec["faces"]:
        pts = read_pts(rec["_json"].parent / face["pts"])  # 1-based file -> 0-based points
        np.testing.assert_allclose(pts, np.array(face["landmarks"]), atol=1e-3,
                                   err_msg=f"{face['pts']} does not hold {rec['_json'].name}'s points")
    annotated = list(rec["_json"].parent.glob(rec["_json"].stem + "_aligned.*"))
    assert len(annotated) == 1 and read_image(annotated[0]).shape == image.shape


def close_to_truth(rec: dict, truth_pts: Path) -> float:
    """The smallest NME of the record's faces against the photo's own annotation."""
    gt = read_pts(truth_pts)
    return min(float(nme(np.array(f["landmarks"])[None], gt[None])[0]) for f in rec["faces"])


# ---------------------------------------------------------------------------- defect 1: collisions
def test_colliding_names_never_overwrite_another_photos_points(photos, tmp_path, capsys):
    src = tmp_path / "in"
    good = place(photos["two"], src / "good.jpg")         # two faces: good_face0.pts, good_face1.pts
    good_face0 = place(photos["one"], src / "good_face0.jpg")  # its own .pts would be good_face0.pts
    out = tmp_path / "out"
    rc, _, err = align([str(src), "--out", str(out)], capsys)
    assert rc == 0, err
    recs = records(out)
    assert set(recs) == {"good.jpg", "good_face0.jpg"}
    assert len(recs["good.jpg"]["faces"]) == 2 and len(recs["good_face0.jpg"]["faces"]) == 1
    check_record(out, recs["good.jpg"], good)
    check_record(out, recs["good_face0.jpg"], good_face0)
    assert close_to_truth(recs["good_face0.jpg"], photos["one"].with_suffix(".pts")) < 0.08
    assert close_to_truth(recs["good.jpg"], photos["two"].with_suffix(".pts")) < 0.08
    pts_files = [f["pts"] for r in recs.values() for f in r["faces"]]
    assert len(set(pts_files)) == len(pts_files) == 3


def test_rerun_removes_the_photos_stale_outputs(photos, tmp_path, capsys):
    src = tmp_path / "in"
    out = tmp_path / "out"
    place(photos["two"], src / "x.jpg")
    assert align([str(src), "--out", str(out)], capsys)[0] == 0
    assert sorted(p.name for p in out.glob("x*.pts")) == ["x_face0.pts", "x_face1.pts"]
    # the same photo name now holds one face: only x.pts, no stale x_face*.pts beside it
    place(photos["one"], src / "x.jpg")
    assert align([str(src), "--out", str(out)], capsys)[0] == 0
    assert sorted(p.name for p in out.glob("x*")) == ["x.json", "x.pts", "x_aligned.jpg"]
    check_record(out, records(out)["x.jpg"], src / "x.jpg")
    # ... and now no face: the photo's previous files go, it is named and listed
    place(photos["none"], src / "x.jpg")
    rc, _, err = align([str(src), "--out", str(out), "--image-format", "png"], capsys)
    assert rc == 0 and f"{src / 'x.jpg'}: no face found" in err
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]
    entry, = json.loads((out / MANIFEST).read_text())["images"]
    assert (entry["status"], entry["files"]) == ("no_face", [])


# ---------------------------------------------------------------------------- defect 2: failures
def test_244_character_name_is_written_and_the_batch_goes_on(photos, tmp_path, capsys):
    src = tmp_path / "in"
    long_name = place(photos["one"], src / ("a" * 240 + ".jpg"))  # 244 characters, legal
    longer = place(photos["one_c"], src / ("c" * 247 + ".jpg"))   # 251: its outputs must be shortened
    after = place(photos["one_b"], src / "z.jpg")                 # sorted after them
    out = tmp_path / "out"
    rc, _, err = align([str(src), "--out", str(out)], capsys)
    assert rc == 0, err
    recs = records(out)
    assert set(recs) == {long_name.name, longer.name, after.name}
    for path in (long_name, longer, after):
        check_record(out, recs[path.name], path)
    assert (out / ("a" * 240 + ".json")).is_file()  # fits: the name is kept
    assert all(len(p.name.encode()) <= 255 for p in out.iterdir())
    assert not list(out.glob(".*"))  # no temporary files left


def test_a_photo_that_cannot_be_written_is_named_and_skipped(photos, tmp_path, capsys):
    src = tmp_path / "in"
    place(photos["one"], src / "b.jpg")
    blocked = place(photos["one_b"], src / "c.jpg")
    place(photos["one_c"], src / "d.jpg")
    out = tmp_path / "out"
    (out / "c.json").mkdir(parents=True)  # a folder where c.jpg's JSON must go: the write fails
    rc, _, err = align([str(src), "--out", str(out)], capsys)
    assert rc == 0, err
    assert f"{blocked}: cannot write its outputs" in err
    recs = records(out)
    assert set(recs) == {"b.jpg", "d.jpg"}
    assert not list(out.glob("c.pts")) and not list(out.glob("c_aligned.*"))  # nothing half-written
    status = {Path(e["image"]).name: e["status"] for e in json.loads((out / MANIFEST).read_text())["images"]}
    assert status == {"b.jpg": "ok", "c.jpg": "failed", "d.jpg": "ok"}


@pytest.mark.parametrize("kind", ["file", "below_a_file"])
def test_out_that_is_not_a_folder_is_a_one_line_usage_error(tmp_path, capsys, kind):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"")
    target = tmp_path / "taken.txt"
    target.write_text("not a folder\n")
    out = target if kind == "file" else target / "sub"
    rc, stdout, err = align([str(photo), "--out", str(out)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0], err
    assert target.read_text() == "not a folder\n"


# ---------------------------------------------------------------------------- the acceptance drill
def test_drill_colliding_names_long_name_and_unreadable_file(photos, tmp_path, capsys):
    """Issue 15's acceptance: colliding names, a 244-character name and an unreadable file:
    correct outputs for every readable photo, exit 0."""
    src = tmp_path / "in"
    sources = {
        "good.jpg": place(photos["two"], src / "good.jpg"),
        "good_face0.jpg": place(photos["one"], src / "good_face0.jpg"),
        "Good_face1.jpg": place(photos["one_c"], src / "Good_face1.jpg"),  # differs only in case
        "b" * 240 + ".jpg": place(photos["one_b"], src / ("b" * 240 + ".jpg")),
        "nobody.jpg": place(photos["none"], src / "nobody.jpg"),
    }
    truth = {"good.jpg": "two", "good_face0.jpg": "one", "Good_face1.jpg": "one_c", "b" * 240 + ".jpg": "one_b"}
    broken = src / "broken.jpg"
    broken.write_bytes(np.random.default_rng(0).bytes(800))
    out = tmp_path / "out"
    rc, stdout, err = align([str(src), "--out", str(out)], capsys)
    assert rc == 0, err
    assert f"{broken}: cannot decode image" in err and f"{sources['nobody.jpg']}: no face found" in err
    recs = records(out)
    assert set(recs) == set(truth)
    for name, key in truth.items():
        check_record(out, recs[name], sources[name])
        assert close_to_truth(recs[name], photos[key].with_suffix(".pts")) < 0.08, name
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] is True
    assert manifest["counts"] == {"ok": 4, "no_face": 1, "unreadable": 1, "failed": 0, "faces": 5}
    # every file on disk is listed exactly once, by the photo that wrote it
    listed = [f for e in manifest["images"] for f in e["files"]]
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(listed) == on_disk and len({f.casefold() for f in listed}) == len(listed)
    # a second run into the same folder gives the same files (nothing stale, nothing renamed)
    assert align([str(src), "--out", str(out)], capsys)[0] == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST) == on_disk
