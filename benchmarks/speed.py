"""Milliseconds per face against dlib, like for like: every runtime at 1 thread (as dlib) and
at all cores, batch 1 and batch 16, predictor only and end to end, dlib measured in the
same run.

    python benchmarks/speed.py --json OUT [--data-dir DIR] [--models NAME ...] [--faces 40] [--e2e-threads 1]
        [--rounds 3] [--quantize int8 dynamic] [--nme-faces N] [--early-exit auto|off|THRESHOLD]

Predictor only (``what: "predictor"``): ``--faces`` evenly spaced faces of the 300-W common
test set on which dlib's HOG detector finds the annotated face; detection runs once,
untimed, and every runtime gets the same box per face.

- dlib: ``shape_predictor_68_face_landmarks.dat`` on the image and the box (single
  threaded; no batch API: ``dlib_ms`` is per face).
- each model (default: every shipped model) exported to ``tflite`` (LiteRT, XNNPACK) and
  ``onnx`` (ONNX Runtime CPU) through :mod:`acrloss.export` (1e-4 parity checked), plus
  the ``--quantize`` modes through :mod:`acrloss.quantize` (written only within 0.10 NME
  points of the float model; a refused one is listed under ``refused``), on the crop
  :class:`acrloss.align.FaceAligner` would cut (calibrated box, already cut out), as
  :class:`acrloss.export.ExportedModel` with ``num_threads`` 1 and ``os.cpu_count()``;
  batch 1 (one call per face) and batch 16 (calls of 16 faces; ``ms`` = call time / 16).
- MuSiCa also as ``tflite-early-exit``: the per-stage export
  (:mod:`acrloss.export_cascade`) run with early exit at a threshold chosen on the
  validation split of the 300-W training folders (``--early-exit auto``: the largest
  threshold of a grid whose validation NME is within 3 % (relative) of the full cascade's;
  the same split and seed as training) or the given one. With ``--quantize dynamic`` also
  as ``tflite-dynamic-early-exit``: the per-stage file dynamic-range quantized
  (``export_cascade_tflite(quantize="dynamic")``, written only within 0.10 NME points of
  the float model, else under ``refused``), its threshold chosen by the same rule on its
  own predicted errors (or the given one). Both run as ``ExportedCascade`` does by default:
  a face may stop only before the last stage (``exits="last"``: the file's ``head`` call,
  then the last stage for the faces above the threshold; the choice's ``exit_stages``).

End to end (``what: "end_to_end"``): the 24 whole photos of ``DIR/full`` (decoded once,
untimed): dlib = HOG detector + shape predictor on every detection, with dlib's HOG on the
colour image as its examples run it (``dlib_end_to_end_ms``, ``ratio_to_dlib``) and with the
acrloss path's grey-image HOG (``dlib_grey_end_to_end_ms``, ``ratio_to_dlib_grey``); acrloss =
``FaceAligner(runner, detector=DlibHOGDetector()).get_landmarks(rgb)`` (grey-image HOG
detection, box calibration, crop, predictor, points back to the photo; ``batch`` = the faces
of one photo), per photo, against both dlib references timed in the same rounds.

``--rounds`` passes, all runners interleaved call by call within each pass (face or photo ``i``
of every runner, then ``i + 1``) so background load and clock drift hit
them alike; ``ms`` is the median over calls; ``ms_mean`` (``ratio_mean_to_dlib`` against
dlib's own) takes each call's median over the rounds, then the mean over the calls: the
time a set of faces costs, which is what early exit saves at batch 1 (faces stop at
different stages, so the median call is one typical face, not the average). ``nme``: the 300-W common-set NME (%, outer
eye corners) of that model file / runtime, on crops cut from the landmark box as
``test.py`` cuts them, over ``--nme-faces`` evenly spaced faces (default all 554;
``nme_faces`` says how many). The machine's load average before and after is recorded:
timings on a shared machine are only comparable within one run.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EE_GRID = (0.10, 0.08, 0.07, 0.06, 0.055, 0.05, 0.045, 0.04, 0.035, 0.03)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="write the result here (also printed)")
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"),
                   help="300-W folder (default: env ACRLOSS_300W, else ../shared/data/300w beside the repository)")
    p.add_argument("--models", nargs="+", help="model names or .h5 paths (default: every shipped model)")
    p.add_argument("--runtimes", nargs="+", default=["tflite", "onnx"], choices=["tflite", "onnx"])
    p.add_argument("--quantize", nargs="*", default=["int8", "dynamic"], choices=["int8", "dynamic", "float16"],
                   help="quantized TFLite variants to try per model (default int8 dynamic)")
    p.add_argument("--faces", type=int, default=40, help="common-test faces timed (default 40)")
    p.add_argument("--rounds", type=int, default=3, help="timed passes (default 3)")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and os.cpu_count())")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes (default 1 16)")
    p.add_argument("--nme-faces", type=int, default=None, help="common-set faces for the NME (default all 554)")
    p.add_argument("--early-exit", default="auto", help="MuSiCa early-exit threshold: auto (chosen on validation), "
                                                      "off, or a number (default auto)")
    p.add_argument("--no-end-to-end", action="store_true", help="skip the whole-photo timing")
    p.add_argument("--e2e-rounds", type=int, default=1, help="timed passes over the 24 photos (default 1)")
    p.add_argument("--e2e-threads", type=int, nargs="+", default=[1], help="thread counts end to end (default 1, as dlib)")
    p.add_argument("--e2e-runtimes", nargs="+", default=["tflite", "tflite-early-exit"],
                   help="runtimes timed end to end (default tflite tflite-early-exit; any timed runtime: onnx, "
                        "tflite-int8, tflite-dynamic, tflite-dynamic-early-exit, ...)")
    p.add_argument("--e2e-settings", nargs="+", default=["default", "single"], choices=["default", "single"],
                   help="FaceAligner settings timed end to end: default (its refine/tta defaults) and/or single "
                        "(refine=0, tta=False: one model call per face, as dlib's one predictor call)")
    p.add_argument("--export-dir", default="out/export", help="where the exports go (default out/export)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    a = _parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    import dlib
    import face_recognition_models

    from acrloss.align import FaceAligner, available_models, resolve_model
    from acrloss.config import CropConfig
    from acrloss.data_prep.crop import CropTransform, denormalize, face_box
    from acrloss.data_prep.datasets import train_val_split, w300_subset
    from acrloss.data_prep.images import read_image
    from acrloss.presets import find_data_dir
    from acrloss.detectors import DlibHOGDetector, best_match
    from acrloss.export import ExportedModel, export_onnx, export_tflite
    from acrloss.metrics import nme
    from acrloss.predictor import LandmarkPredictor, PredictorOptions

    load_before = os.getloadavg()
    t_start = time.time()
    cores = os.cpu_count() or 1
    threads = sorted(set(a.threads or [1, cores]))
    data_dir, why = find_data_dir("300w", a.data_dir)
    if data_dir is None:
        raise SystemExit(f"speed.py: 300-W data not found ({why}); give --data-dir")
    data_dir = Path(data_dir)

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- faces and boxes
    samples = w300_subset(data_dir, "common")
    detector = DlibHOGDetector()  # the library's default: HOG on the grey image
    calibration = detector.box_calibration
    faces = []  # (rgb, detector box, gt points)
    primary = [int(i) for i in np.unique(np.linspace(0, len(samples) - 1, min(a.faces, len(samples))).round())]
    for i in primary + [i for i in range(len(samples)) if i not in set(primary)]:
        if len(faces) >= a.faces:
            break
        s = samples[i]
        rgb = read_image(s.image_path)
        det, iou = best_match([(calibration.apply(d.box if hasattr(d, "box") else d[0]),
                                d.box if hasattr(d, "box") else d[0]) for d in detector(rgb)], face_box(s.points))
        if det is None or iou < 0.3:
            continue
        faces.append((rgb, det[1], s.points))
    log(f"{len(faces)} timed faces with a matched dlib box")

    nme_idx = np.unique(np.linspace(0, len(samples) - 1, min(a.nme_faces or len(samples), len(samples))).round().astype(int))
    nme_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def nme_set(size: int):
        if size not in nme_cache:
            crops, pts = [], []
            for i in nme_idx:
                t = CropTransform.from_points(samples[i].points, size, CropConfig.margin)
                crops.append(t.warp(read_image(samples[i].image_path)))
                pts.append(t.forward(samples[i].points))
            nme_cache[size] = (np.stack(crops).astype(np.float32), np.stack(pts))
        return nme_cache[size]

    def common_nme(model, size: int) -> float:
        crops, pts = nme_set(size)
        out = LandmarkPredictor(model, PredictorOptions(batch_size=16)).predict_crops(crops)
        return float(np.mean(nme(denormalize(out, size), pts, (36, 45))) * 100)

    # ---------------------------------------------------------------- dlib
    sp_path = face_recognition_models.pose_predictor_model_location()
    predictor = dlib.shape_predictor(sp_path)
    dlib_inputs = [(np.ascontiguousarray(rgb), dlib.rectangle(*(int(round(v)) for v in box))) for rgb, box, _ in faces]

    def run_dlib(item):
        shape = predictor(item[0], item[1])
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    dlib_pred = np.stack([run_dlib(x) for x in dlib_inputs])
    dlib_nme_timed = float(np.mean(nme(dlib_pred, np.stack([f[2] for f in faces]), (36, 45))) * 100)

    # ---------------------------------------------------------------- runners
    runners: list[dict] = [{"key": ("dlib",), "fn": run_dlib, "calls": dlib_inputs, "per": 1}]
    refused: list[dict] = []
    files: dict[str, dict] = {}
    names = a.models or available_models()
    export_dir = Path(a.export_dir)
    e2e_models: list[tuple[dict, object]] = []  # (row meta, factory(threads) -> model for FaceAligner)

    def add_timed(meta: dict, make, size: int, transforms) -> None:
        crops = np.stack([t.warp(rgb) for t, (rgb, _, _) in zip(transforms, faces)]).astype(np.float32)
        for th in threads:
            model = make(th)
            for b in a.batches:  # the predictor's model stage: one call per batch of b crops
                fn = LandmarkPredictor(model, PredictorOptions(batch_size=b)).predict_crops
                calls = [crops[i:i + b] for i in range(0, len(crops) - b + 1, b)] or [crops[:b]]
                runners.append({"key": (meta["name"], meta["runtime"], th, b), "fn": fn, "calls": calls, "per": b,
                                "meta": {**meta, "threads": th, "batch": b}})
        e2e_models.append((meta, make))

    for name in names:
        path = resolve_model(name)
        model = LandmarkPredictor(path).model
        stem = Path(path).stem
        size = int(model.input_shape[1])
        transforms = [CropTransform.from_box(calibration.apply(box), size, CropConfig.margin) for _, box, _ in faces]
        variants = []  # (runtime, file)
        for fmt, export in (("tflite", export_tflite), ("onnx", export_onnx)):
            if fmt in a.runtimes:
                out = export_dir / f"{stem}.{fmt}"
                rep = export(model, out, data_dir=data_dir)
                files[str(out)] = {"parity_max_abs_diff": rep.max_abs_diff}
                variants.append((fmt, out))
        for q in a.quantize or []:
            from acrloss.quantize import QuantizationError, export_quantized

            out = export_dir / f"{stem}.{q}.tflite"
            try:
                rep = export_quantized(model, out, q, data_dir=data_dir, eval_faces=a.nme_faces)
                files[str(out)] = rep.to_dict()
                variants.append((f"tflite-{q}", out))
            except QuantizationError as exc:
                refused.append({"name": stem, "runtime": f"tflite-{q}", "reason": str(exc)})
        log(f"{stem}: exported {[v[0] for v in variants]}; refused {[r['runtime'] for r in refused if r['name'] == stem]}")
        for runtime, out in variants:
            probe = ExportedModel(out, num_threads=cores)
            meta = {"name": stem, "runtime": runtime, "file": str(out), "input_size": size,
                    "nme": round(common_nme(probe, size), 3), "nme_faces": int(len(nme_idx))}
            add_timed(meta, lambda th, out=out: ExportedModel(out, num_threads=th), size, transforms)
        if "musica" in stem and a.early_exit != "off":
            from acrloss.export_cascade import ExportedCascade, export_cascade_tflite
            from acrloss.quantize import QuantizationError

            cascades = [("tflite-early-exit", export_dir / f"{stem}.cascade.tflite", None)]
            if "dynamic" in (a.quantize or []):  # the per-stage file, dynamic-range quantized (NME-gated)
                cascades.append(("tflite-dynamic-early-exit", export_dir / f"{stem}.cascade.dynamic.tflite", "dynamic"))
            val_set = None  # (crops, points) of the validation split, cut once
            for runtime, out, q in cascades:
                if q is None:
                    rep = export_cascade_tflite(model, out, data_dir=data_dir)
                    files[str(out)] = {"parity_max_abs_diff": rep.max_abs_diff}
                else:
                    try:
                        rep = export_cascade_tflite(model, out, data_dir=data_dir, quantize=q, eval_faces=a.nme_faces)
                    except QuantizationError as exc:
                        refused.append({"name": stem, "runtime": runtime, "reason": str(exc)})
                        continue
                    files[str(out)] = rep.to_dict()
                chooser = ExportedCascade(out, num_threads=cores)
                choice: dict = {}
                if a.early_exit == "auto":  # validation split of the training folders, as training made it
                    if val_set is None:
                        _, val = train_val_split(w300_subset(data_dir, "train"), 0.1, 0)
                        vcrops, vpts = [], []
                        for s in val:
                            t = CropTransform.from_points(s.points, size, CropConfig.margin)
                            vcrops.append(t.warp(read_image(s.image_path)))
                            vpts.append(t.forward(s.points))
                        val_set = np.stack(vcrops).astype(np.float32), np.stack(vpts)
                    vcrops, vpts = val_set

                    # every stage once for every face; a threshold only decides where each face stops
                    levels = chooser._run_start(vcrops)
                    shape = np.broadcast_to(chooser.mean_shape, (len(vcrops), chooser.mean_shape.size)).copy()
                    hidden = np.zeros((len(vcrops), chooser.hidden_units), np.float32)
                    shapes, errs = [], []
                    for t, fn in enumerate(chooser._stage_fns):
                        shape, hidden, err = fn([levels[chooser.levels[t]], shape, hidden])
                        shapes.append(np.asarray(shape))
                        errs.append(np.asarray(err).reshape(-1))
                    shapes, errs = np.stack(shapes), np.stack(errs)  # (T, M, 2N), (T, M)
                    last = len(errs) - 1

                    exits = np.asarray(chooser.exit_stages, np.int64)  # where the runner lets a face stop

                    def val_nme(th, shapes=shapes, errs=errs, last=last, vcrops=vcrops, vpts=vpts, chooser=chooser, exits=exits):
                        below = errs[exits] < th
                        stop = np.where(below.any(axis=0), exits[below.argmax(axis=0)], last)
                        pred = shapes[stop, np.arange(len(vcrops))]
                        macs = float(np.mean([chooser.stage_macs[: k + 1].sum() for k in stop]))
                        return float(np.mean(nme(denormalize(pred.reshape(len(vcrops), -1, 2), size), vpts,
                                                 (36, 45))) * 100), macs

                    full_nme, full_macs = val_nme(float("-inf"))
                    sweep = [(th, *val_nme(th)) for th in EE_GRID]
                    ok = [s for s in sweep if s[1] <= full_nme * 1.03]
                    threshold = max(ok)[0] if ok else float("-inf")
                    choice = {"rule": "largest threshold with validation NME <= 1.03 x the full cascade's",
                              "exit_stages": [int(e) for e in exits],
                              "val_faces": len(vcrops), "val_nme_full": round(full_nme, 3),
                              "sweep": [{"threshold": t, "val_nme": round(n, 3), "mma": round(m / 1e6, 2)}
                                        for t, n, m in sweep]}
                else:
                    threshold = float(a.early_exit)
                ee = ExportedCascade(out, threshold=threshold, num_threads=cores)
                res_mac = ee.run(nme_set(size)[0], threshold).mean_macs
                meta = {"name": stem, "runtime": runtime, "file": str(out), "input_size": size,
                        "threshold": threshold, "threshold_choice": choice, "mma": round(res_mac / 1e6, 2),
                        "nme": round(common_nme(ee, size), 3), "nme_faces": int(len(nme_idx))}
                add_timed(meta, lambda th, out=out, thr=threshold: ExportedCascade(out, threshold=thr, num_threads=th),
                          size, transforms)
                log(f"{stem}: {runtime} at {threshold} (common NME {meta['nme']} %, {meta['mma']} M multiply-adds)")

    # ---------------------------------------------------------------- end to end

    if not a.no_end_to_end:
        photos = sorted((data_dir / "full").rglob("*.jpg")) + sorted((data_dir / "full").rglob("*.png"))
        rgbs = [np.ascontiguousarray(read_image(p)) for p in photos]

        def dlib_e2e(rgb, det):
            return [run_dlib((rgb, dlib.rectangle(*(int(round(v)) for v in (d.box if hasattr(d, "box") else d[0])))))
                    for d in det(rgb)]

        # dlib as its documentation runs it (HOG on the colour image), and dlib given the same
        # grey-image HOG as the acrloss path: two references, both in every round
        colour_detector = DlibHOGDetector(grey=False)
        runners.append({"key": ("e2e", "dlib"), "fn": lambda rgb: dlib_e2e(rgb, colour_detector), "calls": rgbs, "per": 1})
        runners.append({"key": ("e2e", "dlib-grey"), "fn": lambda rgb: dlib_e2e(rgb, detector), "calls": rgbs, "per": 1})
        for meta, make in e2e_models:
            if meta["runtime"] not in a.e2e_runtimes:
                continue
            for th in a.e2e_threads:
                for setting in a.e2e_settings:
                    options = {} if setting == "default" else {"refine": 0, "tta": False}
                    aligner = FaceAligner(make(th), detector=detector, calibration=calibration, **options)
                    photo_path = {"refine": aligner.refine, "tta": aligner.tta}
                    runners.append({"key": ("e2e", meta["name"], meta["runtime"], th, setting), "fn": aligner.get_landmarks,
                                    "calls": rgbs, "per": 1, "meta": {**meta, "threads": th, "batch": "faces of a photo",
                                                                      "photo_path": photo_path}})
        log(f"end to end on {len(rgbs)} whole photos")

    # ---------------------------------------------------------------- timing
    for r in runners:  # warm-up (allocations, first-call costs)
        for x in r["calls"][:2]:
            r["fn"](x)
        r["times"] = []
    # interleaved call by call (face i / photo i of every runner, then i + 1): a drift of the
    # machine's speed (other jobs, clock) hits all runners alike, not the ones timed during it
    for rnd in range(a.rounds):
        active = [r for r in runners if not (r["key"][0] == "e2e" and rnd >= a.e2e_rounds)]
        for i in range(max(len(r["calls"]) for r in active)):
            for r in active:
                if i < len(r["calls"]):
                    x = r["calls"][i]
                    t0 = time.perf_counter()
                    r["fn"](x)
                    r["times"].append((time.perf_counter() - t0) / r["per"])
        log(f"round {rnd + 1}/{a.rounds}")

    def ms(r) -> float:
        return float(np.median(r["times"]) * 1000)

    def mean_ms(r) -> float:  # each call's median over its rounds, then the mean over calls
        t = np.asarray(r["times"])
        return float(np.mean(np.median(t.reshape(-1, len(r["calls"])), axis=0)) * 1000)

    dlib_ms = ms(runners[0])
    dlib_mean_ms = mean_ms(runners[0])
    by_key = {r["key"]: r for r in runners}
    dlib_e2e_ms = ms(by_key[("e2e", "dlib")]) if ("e2e", "dlib") in by_key else None
    dlib_grey_e2e_ms = ms(by_key[("e2e", "dlib-grey")]) if ("e2e", "dlib-grey") in by_key else None
    rows = []
    for r in runners:
        if "meta" not in r:
            continue
        e2e_row = r["key"][0] == "e2e"
        ref = dlib_e2e_ms if e2e_row else dlib_ms
        m = ms(r)
        m_mean, ref_mean = mean_ms(r), mean_ms(by_key[("e2e", "dlib")] if e2e_row else runners[0])
        rows.append({"name": r["meta"]["name"], "runtime": r["meta"]["runtime"], "threads": r["meta"]["threads"],
                     "batch": r["meta"]["batch"], "what": "end_to_end" if e2e_row else "predictor",
                     "ms": round(m, 3), "ratio_to_dlib": round(m / ref, 3),
                     "ms_mean": round(m_mean, 3), "ratio_mean_to_dlib": round(m_mean / ref_mean, 3),
                     **({"ratio_to_dlib_grey": round(m / dlib_grey_e2e_ms, 3),
                         "ratio_mean_to_dlib_grey": round(m_mean / mean_ms(by_key[("e2e", "dlib-grey")]), 3)}
                        if e2e_row else {}),
                     "nme": r["meta"]["nme"],
                     "nme_faces": r["meta"]["nme_faces"],
                     **{k: r["meta"][k] for k in ("threshold", "mma", "photo_path") if k in r["meta"]}})
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    result = {
        "dlib_ms": round(dlib_ms, 3),
        "dlib_ms_mean": round(dlib_mean_ms, 3),
        "dlib_end_to_end_ms": None if dlib_e2e_ms is None else round(dlib_e2e_ms, 3),
        "dlib_grey_end_to_end_ms": None if dlib_grey_e2e_ms is None else round(dlib_grey_e2e_ms, 3),
        "detectors": {"acrloss": repr(detector), "dlib": "DlibHOGDetector(grey=False) (dlib's colour-image HOG, as "
                      "dlib's examples run it)", "dlib-grey": repr(detector) + " (the acrloss path's detector)"},
        "models": rows,
        "dlib": {"file": Path(sp_path).name, "threads": 1, "nme_timed_faces": round(dlib_nme_timed, 3),
                 "version": dlib.__version__},
        "early_exit": list({(r["meta"]["name"], r["meta"]["runtime"]): {
            k: r["meta"].get(k) for k in ("name", "runtime", "threshold", "threshold_choice", "mma", "nme")}
            for r in reversed(runners) if r.get("meta", {}).get("runtime", "").endswith("early-exit")}.values())[::-1],
        "refused_quantized": refused,
        "files": files,
        "unit": ("predictor: ms per face (batch b: call time / b), median over faces x rounds, crop already cut "
                 "(ms_mean: each call's median over rounds, mean over calls); "
                 "end_to_end: ms per whole photo (detector + calibration + crop + predictor), median over photos x rounds"),
        "faces": len(faces), "photos": len(by_key[("e2e", "dlib")]["calls"]) if dlib_e2e_ms is not None else 0,
        "rounds": a.rounds, "e2e_rounds": a.e2e_rounds, "threads": threads,
        "nme_note": f"300-W common-set NME (%), {len(nme_idx)} of {len(samples)} faces, landmark-box crops",
        "machine": {"cpu": cpu, "cores": cores, "platform": platform.platform(), "python": platform.python_version()},
        "load": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()],
                 "note": "os.getloadavg(); other jobs on the machine slow every runtime alike within a round"},
        "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": round(time.time() - t_start, 1),
    }
    versions = {}
    for mod in ("onnxruntime", "ai_edge_litert", "tensorflow", "keras", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    result["versions"] = versions
    from acrloss.io import emit_json

    emit_json(result, a.json)
    return result


if __name__ == "__main__":
    main()
