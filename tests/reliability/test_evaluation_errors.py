"""``test.py`` / ``Test`` errors (issue 15, item 4; issue 19, item 4): no data fails with one
line, bad samples are listed and skipped (or fail with ``--strict``), unreadable or
misfitting models are named, and extra files are named after the ``--json`` stem."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from acrloss import test as evaluation
from acrloss.models import build_regressor

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.h5"
    build_regressor("mnv2", 68, input_size=32, alpha=0.35).save(path)
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    sys.path.insert(0, str(HERE))
    from tiny_run import make_faces

    return make_faces(tmp_path_factory.mktemp("faces"), n=4)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``acrloss-test ARGV`` run in this process."""
    try:
        evaluation.main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("acrloss-test: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_data_folder_exits_2_with_one_line(model_path, tmp_path, capsys):
    code, _, err = run(capsys, "--model", str(model_path), "--data-dir", str(tmp_path / "nowhere"), "--json", str(tmp_path / "r.json"))
    assert code == 2
    assert str(tmp_path / "nowhere") in error_line(err)
    assert not (tmp_path / "r.json").exists()


def test_data_folder_without_any_subset_fails(model_path, tmp_path, capsys):
    (tmp_path / "empty300w").mkdir()
    code, _, err = run(capsys, "--model", str(model_path), "--data-dir", str(tmp_path / "empty300w"), "--subsets", "common")
    assert code == 1
    line = error_line(err)
    assert "no face to evaluate" in line and "helen/testset/" in line


@pytest.fixture
def messy(faces, tmp_path) -> Path:
    """Four good faces and four bad samples: garbage .pts, a .pts without image, a point
    at 1e30, a truncated image (found when its pixels are read)."""
    folder = tmp_path / "messy"
    shutil.copytree(faces, folder)
    (folder / "garbage.pts").write_text("hello\n")
    assert cv2.imwrite(str(folder / "garbage.png"), np.zeros((64, 64, 3), np.uint8))
    shutil.copy(folder / "face00.pts", folder / "orphan.pts")
    text = (folder / "face01.pts").read_text().splitlines()
    text[3] = "1e30 1e30"
    (folder / "absurd.pts").write_text("\n".join(text) + "\n")
    shutil.copy(folder / "face01.png", folder / "absurd.png")
    shutil.copy(folder / "face02.pts", folder / "broken.pts")
    (folder / "broken.png").write_bytes((folder / "face02.png").read_bytes()[:300])  # valid header, truncated pixels
    return folder


def test_bad_samples_are_listed_and_skipped(model_path, messy, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, _, err = run(capsys, "--model", str(model_path), "--images", str(messy), "--json", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["subsets"]["images"]["n"] == 4
    assert data["n_rejected"] == 4
    reasons = {Path(r["file"]).name: r["reason"] for r in data["rejected"]}
    assert set(reasons) == {"garbage.pts", "orphan.pts", "absurd.pts", "broken.png"}
    assert "not a .pts file" in reasons["garbage.pts"]
    assert "no image" in reasons["orphan.pts"]
    assert "absurdly far" in reasons["absurd.pts"]
    assert "cannot decode" in reasons["broken.png"]
    assert "rejected 4" in err


def test_strict_fails_on_a_bad_sample(model_path, messy, tmp_path, capsys):
    code, _, err = run(capsys, "--model", str(model_path), "--images", str(messy), "--strict", "--json", str(tmp_path / "r.json"))
    assert code == 1
    assert "--strict" in error_line(err) and str(messy) in error_line(err)
    assert not (tmp_path / "r.json").exists()


def test_missing_model_exits_2_naming_it(faces, tmp_path, capsys):
    code, _, err = run(capsys, "--model", str(tmp_path / "absent.h5"), "--images", str(faces))
    assert code == 2
    assert "absent.h5" in error_line(err)


def test_truncated_model_exits_1_naming_it(model_path, faces, tmp_path, capsys):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    code, _, err = run(capsys, "--model", str(cut), "--images", str(faces))
    assert code == 1
    assert "cut.h5" in error_line(err)


def test_model_with_the_wrong_point_count_is_named(faces, tmp_path, capsys):
    path = tmp_path / "five_points.h5"
    build_regressor("mnv2", 5, input_size=32, alpha=0.35).save(path)
    code, _, err = run(capsys, "--model", str(path), "--images", str(faces))
    assert code == 1
    line = error_line(err)
    assert "five_points.h5" in line and "predicts 5 points" in line and "68" in line


def test_model_with_a_wrong_input_is_named(faces, tmp_path, capsys):
    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Dense(136)(keras.layers.Flatten()(inputs))
    path = tmp_path / "grey_input.h5"
    keras.Model(inputs, outputs).save(path)
    code, _, err = run(capsys, "--model", str(path), "--images", str(faces))
    assert code == 1
    assert "grey_input.h5" in error_line(err) and "(batch, S, S, 3)" in error_line(err)


def test_two_runs_into_one_folder_keep_both_sets_of_files(model_path, faces, tmp_path, capsys):
    folder = tmp_path / "reports"
    for name in ("first", "second"):
        code, _, err = run(capsys, "--model", str(model_path), "--images", str(faces), "--json", str(folder / f"{name}.json"),
                           "--max-faces", "2" if name == "first" else "3")
        assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == [
        "first.json", "first_ced.png", "first_per_face.csv", "second.json", "second_ced.png", "second_per_face.csv"]
    assert len((folder / "first_per_face.csv").read_text().splitlines()) == 1 + 2
    assert len((folder / "second_per_face.csv").read_text().splitlines()) == 1 + 3
