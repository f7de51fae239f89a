"""Choose an ensemble's member weights on a validation set, never on the test subsets.

    python benchmarks/ensemble_weights.py --data-dir DIR --json OUT --split loso-lfpw \\
        --members RUN_A/best.h5 RUN_B/best.h5 --weights 0.4,0.6 0.5,0.5 0.6,0.4 0.7,0.3

Each member predicts the validation faces of ``--split`` once, with landmark boxes
(:meth:`acrloss.predictor.LandmarkPredictor.predict_samples`, one pass, no TTA):
``loso-lfpw`` / ``loso-helen``: the whole held-out source (members trained on that split);
``random``: the fixed-seed 10 % validation split of the 300-W train folders. Every weight
vector is then scored on the weighted mean of those points (what
:class:`acrloss.models.ensemble.PointAverage` computes). The JSON holds each member's own
NME / FR@10 / AUC@10, one row per weight vector, and ``best``: the lowest NME, ties (within
0.01 points) broken by the lower FR@10. NME: % of the outer-eye-corner distance (36, 45).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def parse_weights(text: str) -> list[float]:
    """``"0.6,0.4"`` -> ``[0.6, 0.4]``."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"weights {text!r}: expected comma-separated numbers, e.g. 0.6,0.4") from exc


def best_row(rows: list[dict]) -> dict:
    """The row with the lowest NME; rows within 0.01 points of it are ranked by FR@10."""
    low = min(r["nme"] for r in rows)
    near = [r for r in rows if r["nme"] <= low + 0.01]
    return min(near, key=lambda r: (r["fr10"], r["nme"]))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"), help="300-W folder (or env ACRLOSS_300W)")
    p.add_argument("--json", required=True, help="write the result here (also printed)")
    p.add_argument("--split", required=True, choices=["random", "loso-lfpw", "loso-helen"],
                   help="the split the members were trained on; its validation faces are scored")
    p.add_argument("--members", nargs="+", required=True, help="two or more model names or checkpoints")
    p.add_argument("--weights", nargs="+", required=True, type=parse_weights,
                   help="weight vectors to score, one per argument, e.g. 0.6,0.4 (each > 0, summing to 1)")
    a = p.parse_args(argv)
    if not a.data_dir:
        p.error("give --data-dir (or set ACRLOSS_300W)")
    if len(a.members) < 2:
        p.error("give at least two --members")
    from acrloss.models.ensemble import check_weights

    try:
        vectors = [check_weights(w, len(a.members)) for w in a.weights]
    except ValueError as exc:
        p.error(str(exc))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from acrloss.data_prep.datasets import train_val_split, w300_subset
    from acrloss.data_prep.splits import loso_split
    from acrloss.metrics import nme, summarize
    from acrloss.predictor import LandmarkPredictor, PredictorOptions

    t_start = time.time()
    if a.split == "random":
        samples = train_val_split(w300_subset(a.data_dir, "train"), 0.1, 0)[1]
    else:
        samples = loso_split(a.data_dir, a.split)[1]
    gt = np.stack([s.points for s in samples])
    points, members = [], {}
    for name in a.members:
        predictor = LandmarkPredictor(name, PredictorOptions(batch_size=32))
        pts = predictor.predict_samples(samples)
        points.append(pts)
        members[name] = {k: round(v, 4) for k, v in summarize(nme(pts, gt)).items()}
        print(f"{name}: {members[name]}", flush=True)
    rows = []
    for weights in vectors:
        mix = sum(w * pts for w, pts in zip(weights, points))
        rows.append({"weights": weights, **{k: round(v, 4) for k, v in summarize(nme(mix, gt)).items()}})
    result = {
        "data": str(a.data_dir),
        "split": a.split,
        "faces": len(samples),
        "boxes": "landmark boxes, one pass, no TTA",
        "normalization": "outer eye corners (36, 45)",
        "members": members,
        "rows": rows,
        "best": best_row(rows),
        "seconds": round(time.time() - t_start, 1),
    }
    from acrloss.io import emit_json

    return emit_json(result, Path(a.json))


if __name__ == "__main__":
    main()
