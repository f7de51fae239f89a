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
