"""Milliseconds per face at batch 1: shipped models as Keras, TFLite and ONNX, against dlib.

    python benchmarks/speed.py --json OUT [--data-dir DIR] [--faces 100] [--threads 2] [--rounds 5]

Faces: ``--faces`` evenly spaced faces of the 300-W common test set (helen/testset +
lfpw/testset) on which dlib's HOG detector finds the annotated face (calibrated IoU with
the landmark box >= 0.3); detection runs once, untimed, and every runtime gets the same
detector box per face. Timed, per call, with the box already known (no detection):

- dlib: ``shape_predictor_68_face_landmarks.dat`` (from the ``face_recognition_models``
  package) on the image and the box, points converted to a NumPy array. dlib's shape
  predictor is single-threaded whatever ``--threads`` says.
- each shipped model (``pre_trained_models/*.h5``, not ``*.weights.h5``), on the crop the
  :class:`acrloss.align.FaceAligner` would cut (calibrated box, 25 % margin) already cut
  out (float32 ``(1, S, S, 3)``); the crop warp itself is timed separately (``crop_ms``, one
  ``cv2.warpAffine``) and not included:
  - ``keras``: the model's call in a ``tf.function`` graph with a fixed ``(1, S, S, 3)``
    signature (traced once before timing; no eager per-call overhead, no XLA), output
    fetched to NumPy; TensorFlow pinned to ``--threads`` intra-op threads, 1 inter-op;
  - ``tflite``: :class:`acrloss.export.ExportedModel` on a fresh ``.tflite`` export
    (LiteRT interpreter, XNNPACK, ``num_threads=--threads``);
  - ``onnx``: the same on a fresh ``.onnx`` export (ONNX Runtime CPU,
    ``intra_op_num_threads=--threads``). Exports pass the 1e-4 parity check first.

``--rounds`` passes over all faces, runtimes interleaved within each pass so background
load hits them alike; ``ms`` is the median per-call time over all calls (mean and 90th
percentile are reported too); ``ratio_to_dlib = ms / dlib_ms`` (above 1: slower than
dlib). The NME (%, outer eye corners) of every runtime on these faces is reported as a
sanity check. The machine's load average before and after is recorded: timings on a
shared machine are only comparable within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def _pin_threads(n: int) -> None:
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="write the result here (also printed)")
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"),
                   help="300-W folder (default: env ACRLOSS_300W, else ../shared/data/300w beside the repository)")
    p.add_argument("--faces", type=int, default=100, help="faces of the common test set (default 100)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per runtime (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed passes over the faces (default 5)")
    p.add_argument("--models", nargs="+", help="model names or .h5 paths (default: every shipped model)")
    p.add_argument("--runtimes", nargs="+", default=["keras", "tflite", "onnx"], choices=["keras", "tflite", "onnx"])
    p.add_argument("--export-dir", default="out/export", help="where the .tflite/.onnx exports go (default out/export)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    a = _parse(argv)
    _pin_threads(a.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    import keras

    from acrloss.align import available_models, resolve_model
    from acrloss.config import CropConfig
    from acrloss.data_prep.crop import CropTransform, denormalize, face_box
    from acrloss.data_prep.datasets import w300_subset
    from acrloss.data_prep.formats import atomic_write_bytes
    from acrloss.data_prep.images import read_image
    from acrloss.demo import find_data_dir
    from acrloss.detectors import BoxCalibration, DlibHOGDetector, best_match
    from acrloss.export import ExportedModel, export_onnx, export_tflite
    from acrloss.metrics import nme
    from acrloss.models.regressor import landmarks_from_output, load_model

    load_before = os.getloadavg()
    t_start = time.time()
    data_dir, why = find_data_dir(a.data_dir)
    if data_dir is None:
        raise SystemExit(f"speed.py: 300-W data not found ({why}); give --data-dir")

    # ---------------------------------------------------------------- faces and boxes
    samples = w300_subset(data_dir, "common")
    detector = DlibHOGDetector()
    calibration = BoxCalibration()
    faces = []  # (rgb, detector box, gt points)
    primary = [int(i) for i in np.unique(np.linspace(0, len(samples) - 1, min(a.faces, len(samples))).round())]
    order = primary + [i for i in range(len(samples)) if i not in set(primary)]  # fill-ins for misses
    for i in order:
        if len(faces) >= a.faces:
            break
        s = samples[i]
        rgb = read_image(s.image_path)
        gt_box = face_box(s.points)
        det, iou = best_match([(calibration.apply(b), b) for b, _ in detector(rgb)], gt_box)
        if det is None or iou < 0.3:
            continue
        faces.append((rgb, det[1], s.points))
    if not faces:
        raise SystemExit("speed.py: dlib found none of the annotated faces")
    gts = np.stack([f[2] for f in faces])
    print(f"{len(faces)} faces with a matched dlib box ({time.time() - t_start:.0f} s)", file=sys.stderr)

    runners: list[dict] = []  # {"name", "runtime", "fn", "inputs", "decode"}

    # ---------------------------------------------------------------- dlib
    import dlib
    import face_recognition_models

    sp_path = face_recognition_models.pose_predictor_model_location()
    predictor = dlib.shape_predictor(sp_path)
    dlib_inputs = [(np.ascontiguousarray(rgb), dlib.rectangle(*(int(round(v)) for v in box))) for rgb, box, _ in faces]

    def run_dlib(item):
        shape = predictor(item[0], item[1])
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    runners.append({"name": "dlib_shape_predictor_68", "runtime": "dlib", "fn": run_dlib, "inputs": dlib_inputs,
                    "decode": lambda out, k: out})

    # ---------------------------------------------------------------- models
    names = a.models or available_models()
    crop_ms_by_size: dict[int, float] = {}
    model_meta = {}
    tf = None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    for name in names:
        path = resolve_model(name)
        model = load_model(path)
        size = int(model.input_shape[1])
        transforms = [CropTransform.from_box(calibration.apply(box), size, CropConfig.margin) for _, box, _ in faces]
        t0 = time.perf_counter()
        crops = [t.warp(rgb)[None].astype(np.float32) for t, (rgb, _, _) in zip(transforms, faces)]
        crop_ms_by_size[size] = (time.perf_counter() - t0) / len(faces) * 1000

        def decode(out, k, transforms=transforms, size=size):
            return transforms[k].inverse(denormalize(landmarks_from_output(out).reshape(-1, 2), size))

        stem = Path(path).stem
        model_meta[stem] = {"path": str(path), "input_size": size}
        if "keras" in a.runtimes:
            if tf is not None:
                graph_fn = tf.function(lambda x, m=model: m(x, training=False),
                                       input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])

                def run_keras(x, f=graph_fn):
                    return keras.tree.map_structure(lambda v: v.numpy(), f(x))
            else:  # other backends: the model's compiled predict step
                def run_keras(x, m=model):
                    return m.predict_on_batch(x)
            runners.append({"name": stem, "runtime": "keras", "fn": run_keras, "inputs": crops, "decode": decode})
        for fmt, export in (("tflite", export_tflite), ("onnx", export_onnx)):
            if fmt not in a.runtimes:
                continue
            out_path = Path(a.export_dir) / f"{stem}.{fmt}"
            report = export(model, out_path)
            model_meta[stem][f"{fmt}_parity_max_abs_diff"] = report.max_abs_diff
            model_meta[stem][f"{fmt}_file"] = str(out_path)
            runner = ExportedModel(out_path, num_threads=a.threads)
            runners.append({"name": stem, "runtime": fmt, "fn": runner, "inputs": crops, "decode": decode,
                            "engine": runner.runtime})
            print(f"exported {out_path} (parity {report.max_abs_diff:.2g})", file=sys.stderr)

    # ---------------------------------------------------------------- accuracy (untimed) and warm-up
    for r in runners:
        outs = [r["fn"](x) for x in r["inputs"]]
        pred = np.stack([r["decode"](o, k) for k, o in enumerate(outs)])
        r["nme"] = float(np.mean(nme(pred, gts, (36, 45))) * 100)
        r["times"] = []

    # ---------------------------------------------------------------- timing
    for rnd in range(a.rounds):
        for r in runners:
            fn, ts = r["fn"], r["times"]
            for x in r["inputs"]:
                t0 = time.perf_counter()
                fn(x)
                ts.append(time.perf_counter() - t0)
        print(f"round {rnd + 1}/{a.rounds} done ({time.time() - t_start:.0f} s)", file=sys.stderr)

    def stats(ts):
        arr = np.asarray(ts) * 1000
        return float(np.median(arr)), float(arr.mean()), float(np.percentile(arr, 90))

    dlib_ms, dlib_mean, dlib_p90 = stats(runners[0]["times"])
    rows = []
    for r in runners[1:]:
        ms, mean, p90 = stats(r["times"])
        size = model_meta[r["name"]]["input_size"]
        row = {"name": r["name"], "runtime": r["runtime"], "ms": round(ms, 3), "ratio_to_dlib": round(ms / dlib_ms, 3),
               "mean_ms": round(mean, 3), "p90_ms": round(p90, 3), "nme": round(r["nme"], 3), "input_size": size}
        if "engine" in r:
            row["engine"] = r["engine"]
        rows.append(row)
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    result = {
        "dlib_ms": round(dlib_ms, 3),
        "dlib": {"file": Path(sp_path).name, "mean_ms": round(dlib_mean, 3), "p90_ms": round(dlib_p90, 3),
                 "nme": round(runners[0]["nme"], 3), "threads": 1, "dlib_version": dlib.__version__},
        "models": rows,
        "unit": "milliseconds per face, batch 1, median over faces x rounds; detection not included",
        "timed": ("dlib: shape_predictor(image, box) + parts to NumPy; keras: tf.function graph call on the pre-cut "
                  "(1, S, S, 3) crop + fetch; tflite/onnx: ExportedModel call on the same crop. Crop warp excluded "
                  "(crop_ms)"),
        "crop_ms": {str(k): round(v, 3) for k, v in crop_ms_by_size.items()},
        "faces": len(faces),
        "face_source": f"300-W common test set at {data_dir}, evenly spaced, dlib HOG box matched to the annotation",
        "rounds": a.rounds,
        "threads": a.threads,
        "keras_backend": keras.backend.backend(),
        "versions": {"keras": keras.__version__, "tensorflow": getattr(tf, "__version__", None),
                     "numpy": np.__version__},
        "model_files": model_meta,
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()],
                 "note": "os.getloadavg(); other jobs on the machine slow every runtime"},
        "seconds": round(time.time() - t_start, 1),
    }
    for mod in ("onnxruntime", "ai_edge_litert"):
        try:
            result["versions"][mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    text = json.dumps(result, indent=1)
    print(text)
    atomic_write_bytes(a.json, (text + "\n").encode())
    return result


if __name__ == "__main__":
    main()
