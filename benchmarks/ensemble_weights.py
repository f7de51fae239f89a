"""Choose an ensemble's member weights on a validation set, never on the test subsets.

    python benchmarks/ensemble_weights.py --data-dir DIR --json OUT --split loso-lfpw \\
        --members RUN_A/best.h5 RUN_B/best.h5 --weights 0.4,0.6 0.5,0.5 0.6,0.4 0.7,0.3
    python benchmarks/ensemble_weights.py ... --members A B C --grid 0.05 --leave-out 100

Each member predicts the validation faces of ``--split`` once, with landmark boxes
(:meth:`acrloss.predictor.LandmarkPredictor.predict_samples`, one pass, no TTA):
``loso-lfpw`` / ``loso-helen``: the whole held-out source (members trained on that split);
``random``: the fixed-seed 10 % validation split of the 300-W train folders. Every weight
vector is then scored on the weighted mean of those points (what
:class:`acrloss.models.ensemble.PointAverage` computes). The JSON holds each member's own
NME / FR@10 / AUC@10, one row per weight vector, and ``best``: the lowest NME, ties (within
0.01 points) broken by the lower FR@10. NME: % of the outer-eye-corner distance (36, 45).

``--grid STEP`` adds every weight vector whose entries are multiples of ``STEP`` (each > 0,
summing to 1). ``--leave-out N`` drops the ``N`` evenly spaced faces that
``benchmarks/generalization.py --limit N`` scores on the same set, so weights chosen here are
judged there on faces they were not chosen on. ``--regions`` then chooses, from the same weight
vectors, the best one for each named region of the 68-point scheme (jaw, brows, nose, eyes,
mouth; the mean NME is a sum over points, so each region is chosen on its own points), with
the best global vector elsewhere, and scores that mix (``regions`` in the JSON, with the
``acrloss ensemble --region-weights`` arguments that build it).
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


def simplex_grid(count: int, step: float) -> list[list[float]]:
    """Every ``count``-vector of positive multiples of ``step`` summing to 1 (``1/step`` must be
    a whole number), e.g. ``simplex_grid(2, 0.25)`` -> ``[[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]]``."""
    units = round(1.0 / step) if step > 0 else 0
    if units < count or abs(units * step - 1.0) > 1e-9:
        raise ValueError(f"--grid {step}: needs 1/step to be a whole number >= the {count} members")

    def parts(total: int, k: int) -> list[list[int]]:
        if k == 1:
            return [[total]]
        return [[first, *rest] for first in range(1, total - k + 2) for rest in parts(total - first, k - 1)]

    return [[round(u / units, 10) for u in combo] for combo in parts(units, count)]


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
    p.add_argument("--weights", nargs="+", default=[], type=parse_weights,
                   help="weight vectors to score, one per argument, e.g. 0.6,0.4 (each > 0, summing to 1)")
    p.add_argument("--grid", type=float, default=None,
                   help="also score every weight vector of multiples of this step, e.g. 0.05")
    p.add_argument("--leave-out", type=int, default=0, metavar="N",
                   help="leave out the N evenly spaced faces generalization.py --limit N scores (0: none)")
    p.add_argument("--regions", action="store_true",
                   help="also choose the weights per 68-point region (jaw, brows, nose, eyes, mouth)")
    a = p.parse_args(argv)
    if not a.data_dir:
        p.error("give --data-dir (or set ACRLOSS_300W)")
    if len(a.members) < 2:
        p.error("give at least two --members")
    from acrloss.models.ensemble import check_weights

    if a.leave_out < 0:
        p.error(f"--leave-out must be >= 0, got {a.leave_out}")
    try:
        vectors = [check_weights(w, len(a.members)) for w in a.weights]
        if a.grid is not None:
            vectors += [v for v in simplex_grid(len(a.members), a.grid) if v not in vectors]
    except ValueError as exc:
        p.error(str(exc))
    if not vectors:
        p.error("give --weights or --grid")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from acrloss.data_prep.datasets import train_val_split, w300_subset
    from acrloss.data_prep.splits import evenly_spaced, loso_split
    from acrloss.metrics import nme, summarize
    from acrloss.predictor import LandmarkPredictor, PredictorOptions

    t_start = time.time()
    if a.split == "random":
        samples = train_val_split(w300_subset(a.data_dir, "train"), 0.1, 0)[1]
    else:
        samples = loso_split(a.data_dir, a.split)[1]
    left_out = set(evenly_spaced(len(samples), a.leave_out).tolist()) if a.leave_out else set()
    if len(left_out) >= len(samples):
        raise SystemExit(f"--leave-out {a.leave_out} leaves none of the {len(samples)} validation faces")
    samples = [s for i, s in enumerate(samples) if i not in left_out]
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
    best = best_row(rows)
    regions = None
    if a.regions:
        from acrloss.models.ensemble import REGIONS_68, region_point_weights

        if gt.shape[1] != 68:
            raise SystemExit(f"--regions: the named regions are defined for 68 points, these faces have {gt.shape[1]}")
        iod = np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1)[:, None]
        chosen = {}
        for region, idx in REGIONS_68.items():
            idx = list(idx)
            scores = [float(np.mean(np.linalg.norm(sum(w * pts[:, idx] for w, pts in zip(weights, points)) - gt[:, idx],
                                                   axis=-1) / iod)) for weights in vectors]
            chosen[region] = vectors[int(np.argmin(scores))]
        rows_kn = np.asarray(region_point_weights(best["weights"], chosen))  # (K, 68)
        mix = np.einsum("kn,kfnc->fnc", rows_kn, np.stack(points))
        regions = {"base": best["weights"], "weights": chosen,
                   **{k: round(v, 4) for k, v in summarize(nme(mix, gt)).items()},
                   "arguments": "--weights " + " ".join(f"{w:g}" for w in best["weights"]) + " --region-weights "
                                + " ".join(f"{r}=" + ",".join(f"{w:g}" for w in v) for r, v in chosen.items())}
    result = {
        "data": str(a.data_dir),
        "split": a.split,
        "faces": len(samples),
        "left_out": len(left_out),
        "boxes": "landmark boxes, one pass, no TTA",
        "normalization": "outer eye corners (36, 45)",
        "members": members,
        "rows": rows,
        "best": best,
        **({"regions": regions} if regions else {}),
        "seconds": round(time.time() - t_start, 1),
    }
    from acrloss.io import emit_json

    return emit_json(result, Path(a.json))


if __name__ == "__main__":
    main()
