"""The shipped checkpoints: they load, and their recorded results reproduce.

Each ``pre_trained_models/NAME.h5`` has a ``NAME.json`` with the settings it was trained
with and the results measured on 300-W; here ``test.py`` is run on it again and must
report the same figures on the full ``common`` subset (554 faces).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "pre_trained_models").glob("*.h5") if not p.name.endswith(".weights.h5"))


def test_at_least_one_checkpoint_is_shipped():
    assert SHIPPED, "pre_trained_models/ holds no .h5 checkpoint"
    for path in SHIPPED:
        meta = path.with_suffix(".json")
        assert meta.is_file(), f"{path.name} has no JSON of its settings and results"
        record = json.loads(meta.read_text())
        assert record["results"]["subsets"]["common"]["n"] == 554
        assert "non-commercial" in record["license"]


ENSEMBLES = [p for p in SHIPPED if "ensemble" in json.loads(p.with_suffix(".json").read_text())]


@pytest.mark.parametrize("path", ENSEMBLES, ids=[p.stem for p in ENSEMBLES])
def test_a_shipped_ensemble_holds_its_shipped_members(path):
    """An ensemble embeds copies of its members' weights: a member shipped again without
    rebuilding the ensemble shows up as a changed SHA-256 (and as different points)."""
    import hashlib

    import keras

    from acrloss.models import load_model
    from acrloss.tools.ensemble import member_files

    record = json.loads(path.with_suffix(".json").read_text())["ensemble"]
    files = member_files(path.with_suffix(".json"))
    assert len(files) >= 2 and all(f.parent == path.parent for f in files)  # shipped members, beside it
    for member, f in zip(record["members"], files):
        assert hashlib.sha256(f.read_bytes()).hexdigest() == member["sha256"], f"{f.name} changed since {path.name} was built"
    model = load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, record["input_size"], record["input_size"], 3)).astype("float32")
    stacked = np.asarray(model(x)["members"])
    for k, (member, f) in enumerate(zip(record["members"], files)):
        m = load_model(f)
        size = member["input_size"]
        xs = x if size == record["input_size"] else np.asarray(keras.layers.Resizing(size, size)(x))
        out = m(xs, training=False)
        pts = np.asarray(out["landmarks"] if isinstance(out, dict) else out).reshape(2, -1)
        np.testing.assert_allclose(stacked[:, k], pts, atol=1e-4, err_msg=f.name)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_results_reproduce_with_test_cli(path, w300_dir, tmp_path):
    from acrloss.test import main

    out = tmp_path / "result.json"
    main(["--model", str(path), "--dataset", "300w", "--data-dir", str(w300_dir), "--json", str(out)])
    result = json.loads(out.read_text())
    common = result["subsets"]["common"]
    assert common["n"] == 554
    recorded = json.loads(path.with_suffix(".json").read_text())["results"]["subsets"]["common"]
    for key in ("nme", "fr10", "auc10"):
        assert np.isfinite(common[key])
        assert common[key] == pytest.approx(recorded[key], abs=1e-3), key
    assert "challenging" in result["missing"]
    assert (tmp_path / "result_ced.png").stat().st_size > 0
