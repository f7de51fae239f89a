"""Time the heatmap decoders of :mod:`acrloss.codecs.heatmap`.

    python benchmarks/decode_speed.py --json OUT [--batch 64] [--repeat 5] [--sizes 64,32,16,8,4]

For each heatmap size and decoder, a batch of faces with 68 random landmarks (uniform over
the central 70 % of a 256-px crop, encoded as Gaussian heatmaps, sigma 1.5 cells at 32 and
64, 1.0 below) is decoded ``--repeat`` times after one warm-up call; the median batch time
divided by the batch size is ``ms_per_face``. Two modes: ``eager`` (keras.ops called
directly) and ``compiled`` (``tf.function`` on TensorFlow, ``jax.jit`` on jax). The mean
decode error on these clean maps (heatmap px) is reported too. Compute is pinned to
``--threads`` CPU threads (default 1) to leave other work on the machine alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from acrloss.tools.timing import block, compiler, pin_threads



def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--sizes", default="64,32,16,8,4")
    p.add_argument("--points", type=int, default=68)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", default="eager,compiled")
    a = p.parse_args(argv)
    pin_threads(a.threads)

    import keras
    from keras import ops

    from acrloss.codecs import DECODERS, HeatmapCodec

    backend = keras.backend.backend()
    compile_fn = compiler(backend)
    rng = np.random.default_rng(0)
    results = []
    for size in [int(s) for s in a.sizes.split(",")]:
        sigma = 1.5 if size >= 32 else 1.0
        pts = rng.uniform(0.15 * 256, 0.85 * 256, size=(a.batch, a.points, 2))
        for decoder in DECODERS:
            codec = HeatmapCodec(input_size=256, heatmap_size=size, sigma=sigma, decoder=decoder)
            maps = ops.convert_to_tensor(codec.encode_batch(pts))
            for mode in a.modes.split(","):
                if mode == "compiled" and compile_fn is None:
                    continue
                fn = compile_fn(codec.decode) if mode == "compiled" else codec.decode
                out = fn(maps)
                block(out)  # warm-up (and tracing)
                times = []
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    out = fn(maps)
                    block(out)
                    times.append(time.perf_counter() - t0)
                err = np.linalg.norm(ops.convert_to_numpy(out) - pts, axis=-1).mean() / codec.stride
                row = {"heatmap": size, "decoder": decoder, "mode": mode, "batch": a.batch,
                       "ms_per_face": 1000.0 * float(np.median(times)) / a.batch,
                       "mean_err_heatmap_px": float(err)}
                results.append(row)
                print(json.dumps(row), flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "results": results,
        "backend": backend,
        "points": a.points,
        "repeat": a.repeat,
        "threads": a.threads,
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "machine": platform.platform(),
        "machine_load_note": (
            "CPU timings on a shared machine: another long job (model training) kept the other "
            f"core(s) busy during this run (load average {load}); the benchmark used "
            f"{a.threads} thread(s). Compare numbers only within one run."
        ),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "results"}))
    if a.json:
        from acrloss.io import write_json

        write_json(a.json, report)
    return report


if __name__ == "__main__":
    main()
