#!/usr/bin/env python
"""MuSiCa early exit on 300-W common: multiply-adds, accuracy and CPU time per face for the
full cascade and a sweep of early-exit thresholds.

    KERAS_BACKEND=jax python benchmarks/early_exit.py --data-dir ../shared/data/300w \\
        --json out/early_exit/early_exit.json [--model pre_trained_models/musica_acr_300w.h5]

Thresholds are predicted-error values (NME fractions, see :mod:`acrloss.early_exit`): a face
stops after the first stage whose predicted error is below the threshold; ``"+inf"``: stage
1 only, ``"-inf"``: every stage (infinite thresholds are written as these strings).

Writes ``{"full": {"mma", "nme", "fr10", "auc10", "ms", ...}, "sweep": [{"threshold", "mma",
"nme", "fr10", "stopped_at", "faces_per_stage", "flagged", "ms", ...}], ...}``:

* ``mma``: mean multiply-adds per face in millions, from the per-stage counts
  (:func:`acrloss.models.musica.stage_macs`) times the faces that reached each stage.
* ``nme`` / ``fr10`` (percent) and ``auc10``: on the original image coordinates, outer
  eye corners, as ``test.py`` reports them.
* ``stopped_at``: share of the faces that stopped at each stage.
* ``flagged``: faces still above ``--failure-threshold`` after the last stage; with
  ``flagged_fail_share`` (their share that really has NME > 10 %).
* ``ms``: CPU milliseconds per face at batch 1 (mean over ``--timing-faces`` faces, after a
  warm-up), through the backend's compiled path (``jax.jit`` / ``tf.function``) with
  ``--threads`` threads; ``ms_median`` as well. The machine's load average before and after
  is recorded: timings on a shared machine are upper bounds.
"""
from __future__ import annotations

import argparse
import json
import os
import time

DEFAULT_THRESHOLDS = ("+inf", "0.10", "0.08", "0.07", "0.06", "0.055", "0.05", "0.045", "0.04", "0.035", "-inf")


def _set_threads(threads: int) -> None:
    """Limit the backends' CPU threads (before they are imported)."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} " \
                                  f"intra_op_parallelism_threads={threads}".strip()


def _threshold(text: str) -> float:
    return float(text.replace("+inf", "inf"))


def _label(value: float):
    if value == float("inf"):
        return "+inf"
    if value == float("-inf"):
        return "-inf"
    return value


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="the 300-W folder")
    p.add_argument("--json", required=True, help="write the results here")
    p.add_argument("--model", default="musica_acr_300w", help="a MuSiCa .h5 (or a shipped model name)")
    p.add_argument("--subset", default="common")
    p.add_argument("--thresholds", default=",".join(DEFAULT_THRESHOLDS),
                   help="comma-separated NME fractions, +inf and -inf (e.g. --thresholds=+inf,0.05,-inf)")
    p.add_argument("--failure-threshold", type=float, default=0.10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timing-faces", type=int, default=None, help="faces timed at batch 1 (default: all)")
    p.add_argument("--max-faces", type=int, default=None)
    a = p.parse_args(argv)
    _set_threads(a.threads)

    import keras
    import numpy as np

    from acrloss.data_prep.datasets import available_subsets
    from acrloss.early_exit import EarlyExitCascade
    from acrloss.io import write_json
    from acrloss.metrics import nme as nme_fn, summarize
    from acrloss.predictor import LandmarkPredictor, PredictorOptions

    try:  # the predictor cuts the crops and maps the points back; the cascade runs stage by stage
        predictor = LandmarkPredictor(a.model, PredictorOptions(batch_size=64))
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc} (train one: train.py --arch musica ...; or pass --model)") from exc
    runner = EarlyExitCascade(predictor.model)
    found = available_subsets(a.data_dir, (a.subset,))
    samples = found[a.subset]
    if isinstance(samples, str):
        raise SystemExit(f"{a.data_dir}: subset {a.subset!r} unavailable: {samples}")
    if a.max_faces is not None:
        samples = samples[: a.max_faces]
    images, transforms, _ = predictor.crop_samples(samples)
    gt = np.stack([s.points for s in samples])
    m = len(images)

    def accuracy(landmarks: np.ndarray) -> dict:
        errors = nme_fn(predictor.to_photo(landmarks, transforms), gt)
        return {"errors": errors, **summarize(errors)}

    def timed(fn, count: int) -> tuple[float, float]:
        fn(images[:1])  # warm-up: compile for batch 1
        fn(images[1:2])
        times = []
        for i in range(count):
            x = images[i : i + 1]
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
        return float(np.mean(times) * 1e3), float(np.median(times) * 1e3)

    count = min(m, a.timing_faces or m)
    macs = runner.stage_macs.astype(float)
    load_before = os.getloadavg()
    full_lm = np.concatenate([runner.full(images[i : i + 64]) for i in range(0, m, 64)])
    acc = accuracy(full_lm)
    ms, ms_med = timed(runner.full, count)
    result: dict = {
        "model": predictor.model_path,
        "subset": a.subset,
        "faces": m,
        "backend": keras.backend.backend(),
        "threads": a.threads,
        "cpu_count": os.cpu_count(),
        "timing_faces": count,
        "stage_mmacs": [round(v / 1e6, 3) for v in macs],
        "failure_threshold": a.failure_threshold,
        "full": {"mma": round(float(macs.sum()) / 1e6, 3), "nme": acc["nme"], "fr10": acc["fr10"], "auc10": acc["auc10"],
                 "ms": ms, "ms_median": ms_med},
        "sweep": [],
    }
    for text in [t.strip() for t in a.thresholds.split(",") if t.strip()]:
        thr = _threshold(text)
        parts = [runner.run(images[i : i + 64], thr, a.failure_threshold) for i in range(0, m, 64)]
        landmarks = np.concatenate([r.landmarks for r in parts])
        stopped = np.concatenate([r.stopped_at for r in parts])
        flagged = np.concatenate([r.flagged for r in parts])
        faces = np.sum([r.faces_per_stage for r in parts], axis=0)
        acc = accuracy(landmarks)
        ms, ms_med = timed(lambda x, thr=thr: runner.run(x, thr, a.failure_threshold), count)
        fails = acc["errors"] > 0.10
        row = {
            "threshold": _label(thr),
            "mma": round(float(macs @ faces) / m / 1e6, 3),
            "nme": acc["nme"],
            "fr10": acc["fr10"],
            "auc10": acc["auc10"],
            "stopped_at": [float(c) / m for c in np.bincount(stopped, minlength=runner.num_stages)],
            "faces_per_stage": faces.tolist(),
            "flagged": int(flagged.sum()),
            "flagged_fail_share": float(fails[flagged].mean()) if flagged.any() else None,
            "failures_flagged": f"{int((fails & flagged).sum())}/{int(fails.sum())}",
            "ms": ms,
            "ms_median": ms_med,
        }
        result["sweep"].append(row)
        print(json.dumps(row), flush=True)
    result["load_avg_before"] = [round(v, 2) for v in load_before]
    result["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    write_json(a.json, result)
    print(json.dumps({k: v for k, v in result.items() if k != "sweep"}, indent=1))
    return result


if __name__ == "__main__":
    main()
