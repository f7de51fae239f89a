"""Tests of the evaluation CLI (acrloss.test.main) and the root train.py/test.py front ends."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from acrloss import test as evaluation
from acrloss.models import build_regressor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.h5"
    build_regressor("mnv2", 68, input_size=32, alpha=0.35).save(path)
    return path


@pytest.fixture
def three_faces(w300_dir, tmp_path):
    """Three real 300-W images with their .pts, copied into a tmp folder."""
    folder = tmp_path / "three"
    folder.mkdir()
    for pts in sorted((w300_dir / "helen" / "testset").glob("*.pts"))[:3]:
        shutil.copy(pts, folder / pts.name)
        shutil.copy(pts.with_suffix(".jpg"), folder / pts.with_suffix(".jpg").name)
    return folder


def test_cli_on_an_images_folder_writes_json_and_ced(tiny_model_path, three_faces, tmp_path, capsys):
    out = tmp_path / "report" / "result.json"
    result = evaluation.main(["--model", str(tiny_model_path), "--images", str(three_faces), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "images" in printed and "NME" in printed
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert data["dataset"] == "images"
    assert data["subsets"]["images"]["n"] == 3
    for key in ("nme", "fr10", "auc10"):
        assert math.isfinite(data["subsets"]["images"][key])
    assert data["missing"] == {}
    assert data["input_size"] == 32
    assert (out.parent / "result_ced.png").read_bytes()[:4] == b"\x89PNG"  # named after the --json stem
    per_face = (out.parent / "result_per_face.csv").read_text().splitlines()
    assert len(per_face) == 4 and per_face[0] == "subset,image,nme_percent"
    assert {Path(line.split(",")[1]).name for line in per_face[1:]} == {p.name for p in three_faces.glob("*.jpg")}


def test_cli_on_300w_reports_missing_subsets(tiny_model_path, w300_dir, tmp_path):
    out = tmp_path / "r.json"
    evaluation.main(["--model", str(tiny_model_path), "--data-dir", str(w300_dir), "--subsets", "common", "challenging",
                     "--max-faces", "5", "--json", str(out), "--out-dir", str(tmp_path / "plots")])
    data = json.loads(out.read_text())
    assert data["subsets"]["common"]["n"] == 5
    assert data["missing"]["challenging"] == f"challenging: ibug/ not found under {w300_dir}"
    assert (tmp_path / "plots" / "r_ced.png").is_file()
    assert not (tmp_path / "ced.png").exists()


def test_cli_tta_and_refine_run_the_photo_path_and_are_recorded(w300_dir, tmp_path):
    """``--tta`` / ``--refine`` reach the predictor: the shipped model's points change (flip
    averaging moves every face a little) and the JSON says which settings made the numbers."""
    model = REPO / "pre_trained_models" / "musica_acr_300w.h5"
    if not model.is_file():
        pytest.skip(f"{model} not found")
    runs = {}
    for name, extra in (("plain", []), ("tta", ["--tta"]), ("tta_r1", ["--tta", "--refine", "1"])):
        out = tmp_path / f"{name}.json"
        evaluation.main(["--model", str(model), "--data-dir", str(w300_dir), "--subsets", "common", "--max-faces", "12",
                         "--json", str(out), *extra])
        runs[name] = json.loads(out.read_text())
    assert "tta" not in runs["plain"] and "refine" not in runs["plain"]
    assert runs["tta"]["tta"] is True and "refine" not in runs["tta"]
    assert runs["tta_r1"]["tta"] is True and runs["tta_r1"]["refine"] == 1
    nmes = [runs[k]["subsets"]["common"]["nme"] for k in ("plain", "tta", "tta_r1")]
    assert all(math.isfinite(v) for v in nmes) and len(set(nmes)) == 3, nmes


def test_cli_needs_a_data_source(tiny_model_path, monkeypatch):
    monkeypatch.delenv("ACRLOSS_300W", raising=False)
    with pytest.raises(SystemExit):
        evaluation.main(["--model", str(tiny_model_path)])


def test_cli_decoder_choices_are_the_decoder_enum(capsys):
    from acrloss.config import Decoder

    with pytest.raises(SystemExit) as exc:
        evaluation.main(["--model", "m.h5", "--decoder", "softargmax"])
    assert exc.value.code == 2
    assert f"choose from {', '.join(map(repr, Decoder.choices()))}" in capsys.readouterr().err


def test_cli_bad_model_path_names_it(three_faces, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluation.main(["--model", str(tmp_path / "no_model_here.h5"), "--images", str(three_faces)])
    assert exc.value.code == 2
    assert "no_model_here.h5" in capsys.readouterr().err


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ACRLOSS_300W", None)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_train_py_help_runs():
    proc = run_script("train.py", "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for flag in ("--arch", "--data-dir", "--loss", "--epochs", "--save-path", "--resume"):
        assert flag in proc.stdout
    assert "mnv2" in proc.stdout


def test_train_py_without_data_dir_says_so(tmp_path):
    proc = run_script("train.py", "--save-path", str(tmp_path / "x"), "--epochs", "1")
    assert proc.returncode != 0
    assert "--data-dir" in proc.stderr
    assert not (tmp_path / "x").exists()
