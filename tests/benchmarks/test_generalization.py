"""benchmarks/generalization.py: the roles follow the model's training split, the
landmark-box rows equal test.py's numbers on the same faces, and the detector rows count
misses apart (and as failures in fr10_with_misses)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks.bench_module import load_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen():
    return load_benchmark("generalization")


def test_roles_and_settings(gen, tmp_path):
    r = gen.roles("loso-lfpw")
    assert r["lfpw/trainset"] == r["lfpw/testset"] == "cross_source"
    assert r["helen/testset"] == "in_source" and r["helen/trainset"] == "seen_in_training"
    assert gen.roles("random")["val"] == "in_source" and gen.roles("random")["lfpw/trainset"] == "seen_in_training"
    assert gen.summary_sets("loso-helen") == {"in_source": ["lfpw/testset"], "cross_source": ["helen/trainset"]}
    assert gen.parse_setting("r1+tta") == (1, True) and gen.parse_setting("R0") == (0, False)
    with pytest.raises(Exception, match="rN"):
        gen.parse_setting("tta")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "mnv2", "split": "loso-helen"}))
    assert gen.model_split(run / "best.h5") == "loso-helen"
    assert gen.model_split(REPO / "pre_trained_models" / "mnv2_acr_300w.h5") == "random"
    assert gen.model_split(REPO / "pre_trained_models" / "ensemble_acr_300w.h5") == "random"  # its members' split


def test_an_ensemble_takes_its_members_split(gen, tmp_path):
    for name, split in (("a", "loso-lfpw"), ("b", "loso-lfpw"), ("c", "loso-helen")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"arch": "mnv2", "split": split}))
    record = {"ensemble": {"members": [{"file": "a/best.h5"}, {"file": "b/best.h5"}]}}
    (tmp_path / "ens.json").write_text(json.dumps(record))
    assert gen.model_split(tmp_path / "ens.h5") == "loso-lfpw"
    record["ensemble"]["members"][1]["file"] = "c/best.h5"
    (tmp_path / "ens.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="different splits"):
        gen.model_split(tmp_path / "ens.h5")


@pytest.mark.slow
def test_small_run_matches_test_py(gen, w300_dir, tmp_path):
    from acrloss.data_prep.datasets import read_folder
    from acrloss.metrics import nme
    from acrloss.predictor import LandmarkPredictor

    model = REPO / "pre_trained_models" / "mnv2_acr_300w.h5"
    if not model.is_file():
        pytest.skip(f"{model} not found")
    out = tmp_path / "g.json"
    result = gen.main(["--data-dir", str(w300_dir), "--json", str(out), "--model", str(model), "--limit", "5",
                       "--sets", "lfpw/testset", "helen/testset", "--settings", "r0", "r1+tta"])
    assert json.loads(out.read_text()) == result
    m = result["models"]["mnv2_acr_300w"]
    assert m["split"] == "random"
    rows = m["sets"]
    assert set(rows) == {"lfpw/testset", "helen/testset", "common"} and rows["common"]["n"] == 10
    # landmark boxes: the numbers test.py gets on the same five faces
    samples = read_folder(w300_dir / "lfpw/testset", 68, recursive=False)
    samples = [samples[i] for i in np.linspace(0, len(samples) - 1, 5).round().astype(int)]
    pred = LandmarkPredictor(model).predict_samples(samples)
    expected = 100 * nme(pred, np.stack([s.points for s in samples])).mean()
    assert rows["lfpw/testset"]["landmark_boxes"]["nme"] == pytest.approx(expected, abs=1e-3)
    for name in ("lfpw/testset", "helen/testset"):
        for setting in ("r0", "r1+tta"):
            cell = rows[name]["detector_boxes"][setting]
            assert cell["detected"] + cell["missed"] == 5
            if cell["detected"]:
                assert cell["fr10_with_misses"] >= cell["fr10"] * cell["detected"] / 5 - 1e-6
                assert 0 < cell["nme"] < 50 and cell["ms_per_face"] > 0
        assert "quality_spearman" in rows[name]["detector_boxes"]["r1+tta"]
        assert "quality_spearman" not in rows[name]["detector_boxes"]["r0"]
    assert m["summary"] == {}  # neither val nor the trainsets were run


def test_bad_counts_are_refused(gen, tmp_path):
    for flag in ("--limit", "--leave-out"):
        with pytest.raises(SystemExit):
            gen.main(["--data-dir", str(tmp_path), "--json", str(tmp_path / "g.json"), flag, "-1"])


@pytest.mark.slow
def test_leave_out_scores_other_faces_and_per_face_rows(gen, w300_dir, tmp_path):
    from acrloss.data_prep.datasets import read_folder
    from acrloss.data_prep.splits import evenly_spaced

    model = REPO / "pre_trained_models" / "mnv2_acr_300w.h5"
    if not model.is_file():
        pytest.skip(f"{model} not found")
    args = ["--data-dir", str(w300_dir), "--model", str(model), "--sets", "lfpw/testset", "--settings", "r0", "--per-face"]
    held = gen.main(args + ["--json", str(tmp_path / "a.json"), "--limit", "4"])
    tune = gen.main(args + ["--json", str(tmp_path / "b.json"), "--limit", "3", "--leave-out", "4"])
    assert tune["left_out"] == 4 and held["left_out"] is None
    assert tune["command"].startswith("python benchmarks/generalization.py ") and "--leave-out 4" in tune["command"]
    rows_h = held["models"]["mnv2_acr_300w"]["sets"]["lfpw/testset"]
    rows_t = tune["models"]["mnv2_acr_300w"]["sets"]["lfpw/testset"]
    samples = read_folder(w300_dir / "lfpw/testset", 68, recursive=False)
    assert rows_h["per_face"]["images"] == [samples[i].image_path for i in evenly_spaced(len(samples), 4)]
    assert len(rows_t["per_face"]["images"]) == 3 and not set(rows_t["per_face"]["images"]) & set(rows_h["per_face"]["images"])
    for row in (rows_h, rows_t):
        lm = row["per_face"]["landmark_boxes"]
        assert len(lm) == row["n"] and np.mean(lm) == pytest.approx(row["landmark_boxes"]["nme"], abs=2e-3)
        det = [v for v in row["per_face"]["r0"] if v is not None]
        assert len(det) == row["detector_boxes"]["r0"]["detected"]
