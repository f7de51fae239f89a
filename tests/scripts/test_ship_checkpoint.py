"""scripts/ship_checkpoint.py: the stages a continued run stands on are recorded."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ship_module():
    spec = importlib.util.spec_from_file_location("ship_checkpoint", ROOT / "scripts" / "ship_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, epochs: int, lr: float, init: str | None, best_epoch: int, seconds: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"learning_rate": lr, "init_weights": init}))
    (folder / "log.csv").write_text("epoch,loss\n" + "".join(f"{i},0.1\n" for i in range(epochs)))
    (folder / "best.h5.json").write_text(json.dumps({"best": 5.0, "monitor": "val_nme", "epoch": best_epoch}))
    (folder / "summary.json").write_text(json.dumps({"seconds_this_run": seconds}))
    return folder


def test_stages_of_a_chain_of_runs(tmp_path):
    ship = _ship_module()
    first = _run(tmp_path / "a", 30, 1e-3, None, 28, 100.0)
    second = _run(tmp_path / "b", 20, 5e-4, str(first / "best.h5"), 19, 50.0)
    stages = ship.earlier_stages(second / "best.h5")
    assert [s["epochs_logged"] for s in stages] == [30, 20]
    assert [s["learning_rate"] for s in stages] == [1e-3, 5e-4]
    assert stages[0]["best_checkpoint"]["epoch"] == 28 and stages[1]["seconds_last_run"] == 50.0


def test_stages_behind_a_shipped_checkpoint(tmp_path):
    ship = _ship_module()
    shipped = tmp_path / "shipped" / "model.h5"
    shipped.parent.mkdir()
    shipped.write_bytes(b"")
    meta = {"epochs_logged": 50, "settings": {"learning_rate": 1e-3}, "best_checkpoint": {"epoch": 49},
            "training": {"command": "python train.py --epochs 50", "seconds_last_run": 2000.0,
                         "continues": [{"run": "runs/older", "epochs_logged": 10}]}}
    shipped.with_suffix(".json").write_text(json.dumps(meta))
    stages = ship.earlier_stages(shipped)
    assert [s["epochs_logged"] for s in stages] == [10, 50]
    assert stages[1]["command"] == "python train.py --epochs 50" and stages[1]["best_checkpoint"] == {"epoch": 49}
    # a run continued from the shipped file, then continued again: shipped stages come first
    run = _run(tmp_path / "c", 30, 3e-4, str(shipped), 25, 900.0)
    stages = ship.earlier_stages(run / "best.h5")
    assert [s["epochs_logged"] for s in stages] == [10, 50, 30]
