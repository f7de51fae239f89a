"""benchmarks/acr_sweep.py: finished runs are read back (never retrained), other settings
are not mistaken for them, and the JSON ranks the runs against L2."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from acrloss.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("acr_sweep", REPO / "benchmarks" / "acr_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(root: Path, name: str, sweep, best: float, flat: bool = False, **override) -> None:
    s = sweep.settings(name)
    b = dict(sweep.BUDGET, **override)
    run = root / name
    run.mkdir(parents=True)
    config = {"loss": s["loss"], "epochs": b["epochs"], "crop": {"input_size": b["input_size"]}, "start": b["start"],
              "seed": b["seed"], "acr_scale": s["acr_scale"], "acr_lambda": s["acr_lambda"],
              "curriculum": {"levels": s["pca_levels"]}}
    if not flat:  # as a run writes it now (nested loss settings)
        config = TrainConfig.from_dict(config).to_dict()
    (run / "config.json").write_text(json.dumps(config))
    history = {"val_nme": [best + 3.0, best, best + 0.5]}
    (run / "summary.json").write_text(json.dumps({"best_val_nme": best, "best_epoch": 2, "val_faces": 201, "history": history}))


def test_finished_runs_are_collected_not_retrained(sweep, tmp_path, monkeypatch):
    for name, best in (("l2", 10.0), ("acr_s1", 9.0), ("acr_s8_l4", 8.0)):
        fake_run(tmp_path, name, sweep, best, flat=name == "acr_s1")  # a run of older code: flat config.json

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(sweep.subprocess, "run", no_training)
    out = sweep.main(["--data-dir", str(tmp_path), "--runs-dir", str(tmp_path), "--json", str(tmp_path / "s.json"),
                      "--configs", "l2", "acr_s1", "acr_s8_l4"])
    assert json.loads((tmp_path / "s.json").read_text()) == out
    by_name = {r["name"]: r for r in out["runs"]}
    assert by_name["acr_s8_l4"]["ratio_to_l2"] == pytest.approx(0.8)
    assert by_name["acr_s8_l4"]["last_val_nme"] == pytest.approx(8.5)
    assert (by_name["acr_s8_l4"]["acr_scale"], by_name["acr_s8_l4"]["acr_lambda"]) == (8.0, 4.0)
    assert out["best_acr"] == "acr_s8_l4"


def test_other_settings_are_not_taken_for_a_finished_run(sweep, tmp_path):
    fake_run(tmp_path, "acr_s8", sweep, 9.0)
    assert sweep.finished(tmp_path / "acr_s8", "acr_s8", sweep.BUDGET)
    assert not sweep.finished(tmp_path / "acr_s8", "acr_s8_l4", sweep.BUDGET)  # other λ
    assert not sweep.finished(tmp_path / "acr_s8", "acr_s8", dict(sweep.BUDGET, epochs=20))
    assert not sweep.finished(tmp_path / "missing", "acr_s8", sweep.BUDGET)


def test_each_config_trains_with_its_own_loss_settings(sweep, tmp_path):
    args = sweep.train_args("acr_s8_l4", "DATA", tmp_path / "r", sweep.BUDGET)
    joined = " ".join(args)
    assert "--loss acr" in joined and "--acr-scale 8.0" in joined and "--acr-lambda 4.0" in joined
    assert "--pca-levels 80 85 90 95" in joined and "--resume" in joined
    assert "--pca-levels 95 " in " ".join(sweep.train_args("acr_s1_p95", "DATA", tmp_path / "r", sweep.BUDGET)) + " "
    assert "--loss l2" in " ".join(sweep.train_args("l2", "DATA", tmp_path / "r", sweep.BUDGET))
