"""Tests of the ``acrloss`` command (:mod:`acrloss.cli`): ``align`` writes what it says, reports
unreadable files and faceless images by name, and picks its exit status as documented.

The real-photo test runs the shipped model on a whole 300-W photo (``w300_dir`` fixture;
skipped when the data is absent) and scores the written ``.pts`` against the photo's own.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from acrloss.cli import PASSTHROUGH, collect_images, main, pts_names
from acrloss.data_prep.formats import read_pts
from acrloss.data_prep.images import read_image
from acrloss.metrics import nme

REPO = Path(__file__).resolve().parents[1]
PHOTO = Path("full/lfpw/testset/image_0001.jpg")


def _dlib():
    return pytest.importorskip("dlib", reason="dlib is not installed")


def tiny_checkpoint(path: Path, size: int = 32) -> Path:
    inp = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    out = keras.layers.Dense(136, kernel_initializer="zeros",
                             bias_initializer=keras.initializers.RandomUniform(-0.3, 0.3, seed=0))(x)
    keras.Model(inp, out).save(path)
    return path


def write_grey(path: Path) -> Path:
    cv2.imwrite(str(path), np.full((120, 160, 3), 128, np.uint8))
    return path


def test_align_real_photo_writes_image_pts_json(w300_dir, tmp_path, capsys):
    _dlib()
    photo = w300_dir / PHOTO
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    broken = tmp_path / "in" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(np.random.default_rng(0).bytes(500))  # garbage bytes named .jpg
    grey = write_grey(tmp_path / "in" / "grey.png")
    out = tmp_path / "out"
    rc = main(["align", str(photo), str(broken.parent), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # the broken file and the faceless image are reported by name, not fatal
    assert f"{broken}: cannot decode image" in captured.err
    assert f"{grey}: no face found" in captured.err
    assert "2 image(s) read, 1 face(s) found, 1 image(s) without a face, 1 unreadable" in captured.out

    stem = photo.stem
    image = read_image(photo)
    annotated = read_image(out / f"{stem}_aligned.jpg")
    assert annotated.shape == image.shape
    assert np.abs(annotated.astype(int) - image).mean() > 0.2  # something was drawn
    record = json.loads((out / f"{stem}.json").read_text())
    assert record["image"] == str(photo) and (record["width"], record["height"]) == (image.shape[1], image.shape[0])
    assert len(record["faces"]) == 1
    face = record["faces"][0]
    assert len(face["box"]) == 4 and isinstance(face["score"], float) and face["pts"] == f"{stem}.pts"
    landmarks = np.array(face["landmarks"])
    pts = read_pts(out / face["pts"])  # 1-based file -> 0-based points, as in the JSON
    np.testing.assert_allclose(pts, landmarks, atol=1e-3)
    # in the photo's original coordinates: close to its own annotation
    gt = read_pts(photo.with_suffix(".pts"))
    error = float(nme(pts[None], gt[None])[0])
    assert error < 0.08, f"NME {error:.3f} of the CLI's points against {photo.with_suffix('.pts')}"
    # the faceless image and the broken file: named and skipped, no files; listed in the manifest
    assert not list(out.glob("grey*")) and not list(out.glob("broken*"))
    manifest = json.loads((out / "align_manifest.json").read_text())
    status = {Path(e["image"]).name: (e["status"], e["files"]) for e in manifest["images"]}
    assert status["grey.png"] == ("no_face", []) and status["broken.jpg"] == ("unreadable", [])
    assert status[photo.name] == ("ok", [f"{stem}.pts", f"{stem}_aligned.jpg", f"{stem}.json"])
    assert manifest["complete"] is True and manifest["counts"]["ok"] == 1
    assert not list(out.glob(".*"))  # no temporary files left


def test_align_detector_flag_picks_the_hog_mode(w300_dir, tmp_path, capsys):
    """``--detector dlib`` (default) runs HOG on the grey image, ``dlib-colour`` on the colour
    image; the JSON names the detector, and both find the photo's face."""
    _dlib()
    photo = w300_dir / PHOTO
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    records = {}
    for flag in ("dlib", "dlib-colour"):
        out = tmp_path / flag
        assert main(["align", str(photo), "--out", str(out), "--detector", flag]) == 0, capsys.readouterr().err
        records[flag] = json.loads((out / f"{photo.stem}.json").read_text())
    assert "grey=True" in records["dlib"]["detector"] and "grey=False" in records["dlib-colour"]["detector"]
    assert len(records["dlib"]["faces"]) == len(records["dlib-colour"]["faces"]) == 1
    with pytest.raises(SystemExit):
        main(["align", str(photo), "--out", str(tmp_path / "x"), "--detector", "opencv"])


def test_align_nothing_readable_exits_1(tmp_path, capsys):
    _dlib()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    ckpt = tiny_checkpoint(tmp_path / "tiny.h5")
    rc = main(["align", str(bad), str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"), "--model", str(ckpt)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{bad}: cannot decode image" in err and "missing.png: image file not found" in err
    assert "no input image could be read" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["align", str(empty), "--out", str(tmp_path / "out"), "--model", str(ckpt)]) == 1
    assert f"{empty}: no image files" in capsys.readouterr().err


def test_align_faceless_only_exits_0_and_usage_errors_exit_2(tmp_path, capsys):
    _dlib()
    ckpt = tiny_checkpoint(tmp_path / "tiny.h5")
    grey = write_grey(tmp_path / "grey.png")
    assert main(["align", str(grey), "--out", str(tmp_path / "o"), "--model", str(ckpt), "--image-format", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["align_manifest.json"]  # named and skipped
    assert f"{grey}: no face found" in capsys.readouterr().err
    # unknown model, --out equal to the images' folder: usage errors naming the problem
    assert main(["align", str(grey), "--out", str(tmp_path / "o"), "--model", "no_such_model"]) == 2
    assert "no_such_model" in capsys.readouterr().err
    assert main(["align", str(tmp_path), "--out", str(tmp_path), "--model", str(ckpt)]) == 2
    assert "would be overwritten" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --out is required
        main(["align", str(grey)])


def test_align_refine_recrops_around_the_predicted_points(w300_dir, tmp_path, capsys):
    _dlib()
    from acrloss.data_prep.crop import CropTransform, denormalize, face_box

    photo = w300_dir / PHOTO
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    ckpt = tiny_checkpoint(tmp_path / "tiny.h5")  # constant output: the same normalized points for any crop
    flat = keras.models.load_model(ckpt).predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0)[0]
    runs = {}
    for r in (0, 1):
        assert main(["align", str(photo), "--out", str(tmp_path / f"r{r}"), "--model", str(ckpt), "--refine", str(r), "--no-tta"]) == 0
        runs[r] = read_pts(tmp_path / f"r{r}" / f"{photo.stem}.pts")
        assert json.loads((tmp_path / f"r{r}" / f"{photo.stem}.json").read_text())["refine"] == r
    capsys.readouterr()
    # refine 1 = the constant points mapped back through the crop of the first pass's points' box
    second = CropTransform.from_box(face_box(runs[0]), 32, 0.25)
    np.testing.assert_allclose(runs[1], second.inverse(denormalize(flat.reshape(-1, 2), 32)), atol=1e-3)
    assert np.abs(runs[1] - runs[0]).max() > 1.0


def test_collect_images_and_pts_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    for p in ("a/x.jpg", "a/y.PNG", "a/notes.txt", "a/sub/z.jpg", "b/x.jpg"):
        (tmp_path / p).write_bytes(b"")
    found, problems = collect_images([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "a" / "x.jpg")])
    assert [n for _, n in found] == ["x", "y", "x_2", "x_3"] and problems == []
    assert [p.name for p, _ in found] == ["x.jpg", "y.PNG", "x.jpg", "x.jpg"]
    deep, _ = collect_images([str(tmp_path / "a")], recursive=True)
    assert [n for _, n in deep] == ["sub/z", "x", "y"]
    assert pts_names("img", 1) == ["img.pts"]
    assert pts_names("img", 2) == ["img_face0.pts", "img_face1.pts"] and pts_names("img", 0) == []


def test_passthrough_and_entry_points(capsys):
    assert set(PASSTHROUGH) >= {"train", "test", "pca", "prep", "demo"}
    with pytest.raises(SystemExit) as exc:
        main(["test", "--help"])
    assert exc.value.code == 0 and "acrloss-test" in capsys.readouterr().out
    assert main([]) == 2
    pyproject = (REPO / "pyproject.toml").read_text()  # (tomllib is Python >= 3.11 only)
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert 'acrloss = "acrloss.cli:main"' in scripts.splitlines()


def test_python_dash_m_acrloss(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "acrloss", "align", "--help"], capture_output=True, text=True, check=False,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout and "--model" in proc.stdout and "--detector" in proc.stdout
