"""Heatmap decoders on trained heatmap checkpoints: NME on 300-W common and decode time.

    python benchmarks/keyposs.py --data-dir ../shared/data/300w --json out/keyposs/keyposs.json
        [--models pre_trained_models/mnv2_heatmap8_300w.h5 ...] [--decoders argmax,quarter,dark,keyposs]
        [--batch 64] [--repeat 5] [--threads 1] [--max-faces N]

For each checkpoint (default: every ``pre_trained_models/mnv2_heatmap{H}_300w.h5``) the
network runs **once** over the 554 faces of the common subset (the un-augmented crops of
``Test``); its heatmaps are then decoded with every decoder, using the checkpoint's own codec
settings (sigma, KeyPosS k / iterations) and only changing the decoder. Points go back to the
original image through each face's crop transform, and NME / FR@10 / AUC@10 are computed
exactly as ``Test`` does (mean point error / distance of the outer eye corners 36-45).

``ms_decode``: decode time per face, median of ``--repeat`` timed calls (after one warm-up /
tracing call) on a batch of ``--batch`` of these real predicted heatmaps, compiled
(``tf.function`` on TensorFlow, ``jax.jit`` on jax, as in ``benchmarks/decode_speed.py``),
compute pinned to ``--threads`` CPU threads. Network time is not included.

JSON: ``{"results": [{"heatmap", "decoder", "nme", "fr10", "auc10", "ms_decode", "model"},
...], "ratios": {"<H>": {"keyposs_over_argmax": ..., ...}}, ...}``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from acrloss.tools.timing import block, compiler, pin_threads  # the timing approach of decode_speed.py

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_GLOB = str(ROOT / "pre_trained_models" / "mnv2_heatmap*_300w.h5")


def _checkpoints(patterns: list[str] | None) -> list[Path]:
    paths: list[Path] = []
    for pattern in patterns or [DEFAULT_GLOB]:
        hits = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        paths += [Path(h) for h in hits]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"keyposs.py: checkpoint(s) not found: {', '.join(missing)}")
    if not paths:
        raise SystemExit(f"keyposs.py: no heatmap checkpoints match {patterns or [DEFAULT_GLOB]} "
                         "(train and ship them first, see the README)")
    return paths


def evaluate_checkpoint(path: Path, samples, decoders: list[str], batch_size: int = 32,
                        time_batch: int = 64, repeat: int = 5) -> list[dict]:
    """Rows ``{"heatmap", "decoder", "nme", "fr10", "auc10", "ms_decode", "model", ...}`` for
    one heatmap checkpoint (network run once, its heatmaps decoded with each decoder)."""
    import keras
    from keras import ops

    from acrloss.config import W300_SPEC
    from acrloss.metrics import nme as nme_fn, summarize
    from acrloss.models.heatmap import heatmap_codec
    from acrloss.predictor import LandmarkPredictor, PredictorOptions

    predictor = LandmarkPredictor(path, PredictorOptions(batch_size=batch_size))  # its crops and the way back
    codec = heatmap_codec(predictor.model)
    net = keras.Model(predictor.model.inputs, predictor.model.get_layer("heatmaps").output)  # heatmaps only, no decoding
    preds: dict[str, list[np.ndarray]] = {d: [] for d in decoders}
    kept: list[np.ndarray] = []
    t_net = time.perf_counter()
    for start in range(0, len(samples), batch_size):
        images, transforms, _ = predictor.crop_samples(samples[start : start + batch_size])
        maps = ops.convert_to_numpy(net(images, training=False)).astype(np.float32)
        if sum(len(k) for k in kept) < time_batch:
            kept.append(maps)
        for d in decoders:
            pts = codec.decode(maps, d)  # (B, N, 2) crop pixels
            preds[d].append(predictor.to_photo(np.asarray(pts), transforms, normalized=False))
    t_net = time.perf_counter() - t_net
    gt = np.stack([s.points for s in samples])

    timing = np.concatenate(kept)[:time_batch]
    compile_fn = compiler(keras.backend.backend())
    rows = []
    for d in decoders:
        errors = nme_fn(np.concatenate(preds[d]), gt, W300_SPEC.norm_points)
        def fn(m, _d=d):
            return codec.decode(m, _d)

        fn = compile_fn(fn) if compile_fn is not None else fn
        maps_t = ops.convert_to_tensor(timing)
        block(fn(maps_t))  # warm-up / tracing
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            block(fn(maps_t))
            times.append(time.perf_counter() - t0)
        rows.append({"heatmap": codec.heatmap_size, "decoder": d, **summarize(errors),
                     "ms_decode": 1000.0 * float(np.median(times)) / len(timing),
                     "model": os.path.relpath(path, ROOT) if str(path).startswith(str(ROOT)) else str(path),
                     "input_size": codec.input_size, "sigma": codec.sigma,
                     "codec": codec.get_config(), "seconds_network_and_decode_all": round(t_net, 1)})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "codec"}), flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"), help="300-W folder (or env ACRLOSS_300W)")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--models", nargs="+", help=f"heatmap checkpoints or globs (default {DEFAULT_GLOB})")
    p.add_argument("--decoders", default="argmax,quarter,dark,keyposs")
    p.add_argument("--batch", type=int, default=64, help="faces per timed decode call")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-faces", type=int, default=None, help="only the first N faces of common (quick checks)")
    a = p.parse_args(argv)
    if a.data_dir is None:
        raise SystemExit("keyposs.py: give --data-dir (or set ACRLOSS_300W)")
    pin_threads(a.threads)

    import keras

    from acrloss.codecs import DECODERS
    from acrloss.data_prep.datasets import w300_subset
    from acrloss.io import write_json

    decoders = [d.strip() for d in a.decoders.split(",") if d.strip()]
    bad = [d for d in decoders if d not in DECODERS]
    if bad:
        raise SystemExit(f"keyposs.py: unknown decoder(s) {bad}; choose from {list(DECODERS)}")
    paths = _checkpoints(a.models)
    samples = w300_subset(a.data_dir, "common")
    if a.max_faces is not None:
        samples = samples[: a.max_faces]

    results: list[dict] = []
    for path in paths:
        results += evaluate_checkpoint(path, samples, decoders, time_batch=a.batch, repeat=a.repeat)
    ratios: dict[str, dict[str, float]] = {}
    for row in results:
        base = next((r for r in results if r["model"] == row["model"] and r["decoder"] == "argmax"), None)
        if base is not None and row["decoder"] != "argmax":
            ratios.setdefault(str(row["heatmap"]), {})[f"{row['decoder']}_over_argmax"] = row["nme"] / base["nme"]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "results": results,
        "ratios": ratios,
        "faces": len(samples),
        "subset": "common",
        "normalization": "outer eye corners (36, 45)",
        "backend": keras.backend.backend(),
        "decode_batch": a.batch,
        "repeat": a.repeat,
        "threads": a.threads,
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "machine": platform.platform(),
        "command": "python benchmarks/keyposs.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps({"ratios": ratios}))
    if a.json:
        write_json(a.json, report)
    return report


if __name__ == "__main__":
    main()
