#!/usr/bin/env python
"""ACR against L2, like for like: evaluate every shipped ACR/L2 checkpoint pair on 300-W.

    python benchmarks/acr_vs_l2.py --data-dir ../shared/data/300w --json out/acr_vs_l2.json

A pair is ``pre_trained_models/{arch}_acr_300w.h5`` with ``{arch}_l2_300w.h5`` (same
network, data, schedule and budget; only the loss differs, see each checkpoint's JSON).
Writes ``{"pairs": [{"arch", "acr": {...}, "l2": {...}, "ratio": acr_nme / l2_nme}],
"missing": [...]}`` with the metrics of the ``common`` subset (NME and FR in percent).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from acrloss.config import ModelArch  # noqa: E402
from acrloss.io import emit_json  # noqa: E402
from acrloss.metrics import plot_ced  # noqa: E402
from acrloss.test import Test  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--models-dir", default=str(ROOT / "pre_trained_models"))
    p.add_argument("--subset", default="common")
    a = p.parse_args(argv)
    models = Path(a.models_dir)
    out = {"subset": a.subset, "normalization": None, "pairs": [], "missing": []}
    curves = {}
    for arch in ModelArch:
        paths = {loss: models / f"{arch.value}_{loss}_300w.h5" for loss in ("acr", "l2")}
        absent = [str(p.name) for p in paths.values() if not p.is_file()]
        if absent:
            out["missing"].append({"arch": arch.value, "absent": absent})
            continue
        pair = {"arch": arch.value}
        for loss, path in paths.items():
            eval_dir = Path(a.json).parent / f"{arch.value}_{loss}"
            result = Test().test_model("300w", path, data_dir=a.data_dir, subsets=(a.subset,), out_dir=eval_dir)
            out["normalization"] = result["normalization"]
            pair[loss] = result["subsets"][a.subset]
            with open(eval_dir / "per_face.csv") as fh:
                curves[f"{arch.value} {loss.upper()}"] = np.array([float(r["nme_percent"]) / 100 for r in csv.DictReader(fh)])
            pair[loss]["model"] = f"pre_trained_models/{path.name}"
        pair["ratio"] = pair["acr"]["nme"] / pair["l2"]["nme"]
        out["pairs"].append(pair)
    if curves:
        out["ced_png"] = str(plot_ced(curves, Path(a.json).parent / "acr_vs_l2_ced.png"))
    emit_json(out, a.json)
    return out


if __name__ == "__main__":
    main()
