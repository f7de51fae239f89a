#!/usr/bin/env python
"""Tune ACR's knobs on the validation split (never the test subsets) at a short budget.

    python benchmarks/acr_sweep.py --data-dir ../shared/data/300w --runs-dir runs/sweep \
        --json out/acr_sweep.json [--parallel 2]

Every configuration trains MobileNetV2 (ImageNet start, 128 px, 10 epochs, AdamW 1e-3
cosine, fixed-seed validation split of train) with ``train.py``; only the loss settings
differ. A configuration whose run folder already holds a finished run with the same
settings is read back, not retrained, and an interrupted one resumes (``--resume``).
With ``--parallel K`` K runs train side by side, one thread each.

Writes ``{"budget": {...}, "runs": [{"name", "loss", "acr_scale", "acr_lambda",
"pca_levels", "best_val_nme", "best_epoch", "last_val_nme", "ratio_to_l2"}],
"best_acr": name}``. NME is in percent of the outer-eye-corner distance, on the
validation faces.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from acrloss.config import TrainConfig  # noqa: E402
from acrloss.io import emit_json  # noqa: E402

BUDGET = {"arch": "mnv2", "start": "imagenet", "input_size": 128, "epochs": 10, "batch_size": 32, "lr": 1e-3, "seed": 0}

# name -> loss settings; the defaults are loss acr, scale 1, lambda 1, levels 80 85 90 95
CONFIGS: dict[str, dict] = {
    "l2": {"loss": "l2"},
    "l1": {"loss": "l1"},
    "acr_s1": {},
    "acr_s1_p95": {"pca_levels": [95]},
    "acr_s8": {"acr_scale": 8.0},
    "acr_s8_l4": {"acr_scale": 8.0, "acr_lambda": 4.0},
    "acr_s16": {"acr_scale": 16.0},
    "acr_s32": {"acr_scale": 32.0},
}
DEFAULTS = {"loss": "acr", "acr_scale": 1.0, "acr_lambda": 1.0, "pca_levels": [80, 85, 90, 95]}


def settings(name: str) -> dict:
    return {**DEFAULTS, **CONFIGS[name]}


def train_args(name: str, data_dir: str, run_dir: Path, budget: dict) -> list[str]:
    s = settings(name)
    return [
        sys.executable, str(ROOT / "train.py"), "--arch", budget["arch"], "--start", budget["start"],
        "--data-dir", data_dir, "--epochs", str(budget["epochs"]), "--input-size", str(budget["input_size"]),
        "--batch-size", str(budget["batch_size"]), "--lr", str(budget["lr"]), "--seed", str(budget["seed"]),
        "--workers", "1", "--loss", s["loss"], "--acr-scale", str(s["acr_scale"]), "--acr-lambda", str(s["acr_lambda"]),
        "--pca-levels", *[str(v) for v in s["pca_levels"]], "--save-path", str(run_dir), "--resume",
    ]


def finished(run_dir: Path, name: str, budget: dict) -> bool:
    """True when run_dir holds a completed run of exactly these settings."""
    summary, config = run_dir / "summary.json", run_dir / "config.json"
    if not (summary.is_file() and config.is_file()):
        return False
    c = TrainConfig.from_dict(json.loads(config.read_text()))  # older (flat) config.json files too
    s = settings(name)
    want = (s["loss"], budget["epochs"], budget["input_size"], budget["start"], budget["seed"])
    got = (c.loss.name, c.epochs, c.crop.input_size, c.start, c.seed)
    if want != got:
        return False
    if s["loss"] == "acr":
        return (c.loss.acr_scale, c.loss.acr_lambda, list(c.curriculum.levels)) == (
            s["acr_scale"], s["acr_lambda"], s["pca_levels"])
    return True


def run_one(name: str, data_dir: str, runs_dir: Path, budget: dict) -> dict:
    run_dir = runs_dir / name
    if not finished(run_dir, name, budget):
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1", ACRLOSS_QUIET="1")
        with open(runs_dir / f"{name}.log", "ab") as log:
            subprocess.run(train_args(name, data_dir, run_dir, budget), env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    s = settings(name)
    if s["loss"] != "acr":  # the ACR knobs do not apply
        s = {"loss": s["loss"], "acr_scale": None, "acr_lambda": None, "pca_levels": None}
    return {
        "name": name, **s,
        "best_val_nme": summary["best_val_nme"], "best_epoch": summary["best_epoch"],
        "last_val_nme": summary["history"]["val_nme"][-1] if summary["history"].get("val_nme") else None,
        "val_faces": summary["val_faces"],
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--runs-dir", default="runs/acr_sweep")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--epochs", type=int, default=BUDGET["epochs"])
    p.add_argument("--parallel", type=int, default=1)
    a = p.parse_args(argv)
    budget = dict(BUDGET, epochs=a.epochs)
    runs_dir = Path(a.runs_dir)
    with ThreadPoolExecutor(max(1, a.parallel)) as pool:
        runs = list(pool.map(lambda n: run_one(n, a.data_dir, runs_dir, budget), a.configs))
    l2 = next((r["best_val_nme"] for r in runs if r["loss"] == "l2"), None)
    for r in runs:
        r["ratio_to_l2"] = r["best_val_nme"] / l2 if l2 else None
    acr = [r for r in runs if r["loss"] == "acr"]
    out = {"budget": budget, "split": "validation (fixed-seed 10 % of train)", "runs": runs,
           "best_acr": min(acr, key=lambda r: r["best_val_nme"])["name"] if acr else None}
    return emit_json(out, a.json)


if __name__ == "__main__":
    main()
