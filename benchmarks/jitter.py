"""Landmark stability on video with known motion: tracked + smoothed acrloss vs per-frame acrloss vs dlib.

    python benchmarks/jitter.py --json OUT [--data-dir DIR] [--clips 6] [--frames 60] [--subset common]

Clips: ``--clips`` photos, evenly spaced, of the 300-W common test subset (helen/testset +
lfpw/testset; ``--subset train`` uses the train split instead, for choosing the smoothing
parameters). Each photo is moved through a 640x480 frame (``--width``/``--height``) by a
smooth similarity motion with sub-pixel steps: translation (up to ~60 px), rotation (up to
~10 deg) and scale (up to ~10 %) along a random smooth path, travelled at a speed that goes
from standstill to fast (up to ~6 px/frame) and back, so each clip has still and moving
parts. The frame is filled by reflecting the photo at its borders (``cv2.warpAffine``,
linear interpolation); then Gaussian sensor noise (``--noise`` grey levels) and JPEG
compression (``--jpeg`` quality) are applied. The 68 annotated points go through the
same motion: the ground truth of every frame is known. The face is 150-250 px tall.

Measured on the same frames:

- ``acrloss`` (the result): :meth:`acrloss.align.FaceAligner.track` (detection every
  ``--detect-every`` frames, tracking by re-cropping around the previous landmarks, One
  Euro smoothing with the :class:`acrloss.video.TrackConfig` defaults unless
  ``--min-cutoff``/``--beta`` are given); ``tracked_raw`` is the same run's landmarks before
  smoothing;
- ``per_frame``: :meth:`FaceAligner.get_landmarks` on every frame independently (detector
  box -> crop -> model), i.e. still-photo alignment applied to video;
- ``dlib``: dlib's HOG detector on every frame plus ``shape_predictor_68_face_landmarks.dat``
  (from the ``face_recognition_models`` package), as dlib users do. The detector is the
  same :class:`acrloss.detectors.DlibHOGDetector` (``--upsample``, default 0: the faces are
  large) for all three.

Metrics (percent of the ground-truth outer eye-corner distance, points 36 and 45):

- ``jitter``: RMS over consecutive frame pairs and points of (predicted frame-to-frame
  change - true change), each pair normalized by that frame's eye-corner distance;
- ``nme``: mean over frames of the NME against the moved ground truth (includes lag);
- frames where a method reports no face are counted in ``missed`` and left out of its
  numbers (jitter uses pairs where both frames have the face).

``fps``: frames per second over all clips, one face, 640x480: for acrloss the whole
``track`` loop (detection on some frames, crops, model, smoothing); for dlib detection plus
shape prediction on every frame; for ``per_frame`` detection plus crop plus model. Frame
synthesis is not timed. ``--sweep`` also evaluates a grid of One Euro parameters on the
tracked raw landmarks (smoothing never changes the crops, so this is exact).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="write the result here (also printed)")
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"),
                   help="300-W folder (default: env ACRLOSS_300W, else ../shared/data/300w beside the repository)")
    p.add_argument("--subset", default="common", choices=["common", "train"],
                   help="photos from the common test subset (default) or the train split (for tuning)")
    p.add_argument("--clips", type=int, default=6, help="number of clips (default 6)")
    p.add_argument("--frames", type=int, default=60, help="frames per clip (default 60)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--noise", type=float, default=3.0, help="sensor noise sigma in grey levels (default 3)")
    p.add_argument("--jpeg", type=int, default=80, help="JPEG quality (default 80)")
    p.add_argument("--max-speed", type=float, default=3.0,
                   help="peak motion in px/frame (rotation 0.1x that in deg/frame; default 3)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate the clips are played at (default 30)")
    p.add_argument("--model", default=None, help="model name or path (default: FaceAligner's default)")
    p.add_argument("--detect-every", type=int, default=None, help="TrackConfig.detect_every (default: its default)")
    p.add_argument("--min-cutoff", type=float, default=None, help="One Euro min_cutoff, Hz (default: TrackConfig's)")
    p.add_argument("--beta", type=float, default=None, help="One Euro beta (default: TrackConfig's)")
    p.add_argument("--upsample", type=int, default=0, help="dlib HOG upsampling for every detector (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="store_true", help="also report a grid of One Euro parameters")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    return p.parse_args(argv)


def make_clip(rgb, points, n_frames, rng, size=(640, 480), noise=3.0, jpeg=80, max_speed=3.0):
    """``(frames [uint8 RGB], ground truth (T, 68, 2))`` for one photo; see the module docs."""
    import cv2
    import numpy as np

    from acrloss.data_prep.crop import face_box

    w, h = size
    box = face_box(points)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    base = rng.uniform(150, 250) / max(box[3] - box[1], box[2] - box[0])
    # a smooth path in (dx, dy, angle, log-scale), travelled at a speed that stops and goes
    t = np.arange(n_frames)
    speed = np.clip(0.2 + 1.6 * np.sin(2 * np.pi * t / rng.uniform(35, 60) + rng.uniform(0, 2 * np.pi)), 0, None)
    u = np.cumsum(speed) / max(speed.max(), 1e-9)  # path parameter: at most 1 per frame
    ph = rng.uniform(0, 2 * np.pi, size=4)
    fr = rng.uniform(0.8, 1.2, size=4) / 40.0  # path frequencies, cycles per unit of u
    path = np.stack([np.sin(2 * np.pi * fr[k] * u + ph[k]) for k in range(4)], 1)
    step = np.abs(np.diff(path, axis=0)).max(0) + 1e-9
    # peak steps: max_speed px/frame (x, y), 0.1 * max_speed deg/frame, 0.1 * max_speed % scale per frame
    dx, dy, ang, lsc = (path * (np.array([max_speed, max_speed, 0.1 * max_speed, 0.001 * max_speed]) / step)).T
    lsc = np.clip(lsc, -0.15, 0.15)
    frames, gts = [], []
    for k in range(n_frames):
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(ang[k]), float(base * np.exp(lsc[k])))
        m[:, 2] += np.array([(w - 1) / 2 + np.clip(dx[k], -w / 4, w / 4), (h - 1) / 2 + np.clip(dy[k], -h / 5, h / 5)]) - centre
        img = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        img = np.clip(img.astype(np.float32) + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg)])
        frames.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
        gts.append(points @ m[:, :2].T + m[:, 2])
    return frames, np.stack(gts)


def clip_metrics(pred, gt):
    """``{"jitter", "nme", "missed"}`` (percent) for per-frame predictions (``None`` = no face)."""
    import numpy as np

    eye = np.linalg.norm(gt[:, 45] - gt[:, 36], axis=1)
    nmes = [np.mean(np.linalg.norm(p - g, axis=1)) / e for p, g, e in zip(pred, gt, eye) if p is not None]
    diffs = []
    for k in range(1, len(gt)):
        if pred[k] is None or pred[k - 1] is None:
            continue
        d = (pred[k] - pred[k - 1]) - (gt[k] - gt[k - 1])
        diffs.append(np.sum(d ** 2, axis=1) / eye[k] ** 2)
    return {
        "jitter": round(float(np.sqrt(np.mean(diffs)) * 100), 4) if diffs else None,
        "nme": round(float(np.mean(nmes) * 100), 4) if nmes else None,
        "missed": int(sum(p is None for p in pred)),
    }


def _closest(faces, g):
    import numpy as np

    if not faces:
        return None
    c = g.mean(0)
    return min(faces, key=lambda p: float(np.linalg.norm(np.asarray(p).mean(0) - c)))


def main(argv: list[str] | None = None) -> dict:
    a = _parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(a.threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"

    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    import dlib
    import face_recognition_models

    from acrloss.align import DEFAULT_MODEL, FaceAligner
    from acrloss.data_prep.datasets import w300_subset
    from acrloss.data_prep.images import read_image
    from acrloss.demo import find_data_dir
    from acrloss.detectors import DlibHOGDetector
    from acrloss.video import OneEuroFilter, TrackConfig, video_predictor

    t_start = time.time()
    load_before = os.getloadavg()
    data_dir, why = find_data_dir(a.data_dir)
    if data_dir is None:
        raise SystemExit(f"jitter.py: 300-W data not found ({why}); give --data-dir")
    samples = w300_subset(data_dir, a.subset)
    rng = np.random.default_rng(a.seed)
    picks = [int(i) for i in np.unique(np.linspace(0, len(samples) - 1, max(1, a.clips) * 3).round())]

    detector = DlibHOGDetector(upsample=a.upsample)
    aligner = FaceAligner(a.model or DEFAULT_MODEL, detector=detector)
    overrides = {k: v for k, v in (("detect_every", a.detect_every), ("min_cutoff", a.min_cutoff), ("beta", a.beta))
                 if v is not None}
    cfg = TrackConfig(fps=a.fps, **overrides)
    sp_path = face_recognition_models.pose_predictor_model_location()
    predictor = dlib.shape_predictor(sp_path)
    # per_frame uses the same compiled model call as track (an eager Keras call costs more than the network)
    aligner.predictor = video_predictor(aligner)
    aligner.get_landmarks(np.zeros((a.height, a.width, 3), np.uint8), boxes=[[200, 150, 400, 350]])  # warm-up

    clips, raw_runs = [], []
    totals = {"acrloss": 0.0, "per_frame": 0.0, "dlib": 0.0}
    n_frames_total = 0
    for i in picks:
        if len(clips) >= a.clips:
            break
        s = samples[i]
        frames, gt = make_clip(read_image(s.image_path), s.points, a.frames, rng, (a.width, a.height), a.noise, a.jpeg, a.max_speed)
        if not detector(frames[0]):  # a clip starts with a face the detector finds (else skipped for all)
            continue
        # acrloss: tracked + smoothed
        t0 = time.perf_counter()
        results = list(aligner.track(frames, cfg))
        totals["acrloss"] += time.perf_counter() - t0
        ours = [_closest([f.landmarks for f in r.faces], g) for r, g in zip(results, gt)]
        raw = [_closest([f.raw_landmarks for f in r.faces], g) for r, g in zip(results, gt)]
        # dlib detection on every frame (timed once, shared by per_frame and dlib)
        per_frame, dl = [], []
        t_det = t_pf = t_dl = 0.0
        for img, g in zip(frames, gt):
            t0 = time.perf_counter()
            dets = detector(img)
            t_det += time.perf_counter() - t0
            boxes = [b for b, _ in dets]
            t0 = time.perf_counter()
            pf = aligner.get_landmarks(img, boxes=boxes) if boxes else []
            t_pf += time.perf_counter() - t0
            per_frame.append(_closest(pf, g))
            t0 = time.perf_counter()
            shapes = []
            for b in boxes:
                shape = predictor(img, dlib.rectangle(*(int(round(v)) for v in b)))
                shapes.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64))
            t_dl += time.perf_counter() - t0
            dl.append(_closest(shapes, g))
        totals["per_frame"] += t_det + t_pf
        totals["dlib"] += t_det + t_dl
        n_frames_total += len(frames)
        row = {"image": Path(s.image_path).name, "frames": len(frames),
               "acrloss": clip_metrics(ours, gt), "tracked_raw": clip_metrics(raw, gt),
               "per_frame": clip_metrics(per_frame, gt), "dlib": clip_metrics(dl, gt),
               "detections": int(sum(r.detected for r in results)),
               "true_motion_px_per_frame": round(float(np.mean(np.linalg.norm(np.diff(gt, axis=0), axis=2))), 3)}
        clips.append(row)
        raw_runs.append((raw, gt))
        print(f"clip {len(clips)}/{a.clips} {row['image']}: jitter {row['acrloss']['jitter']} vs dlib "
              f"{row['dlib']['jitter']}, nme {row['acrloss']['nme']} vs per-frame {row['per_frame']['nme']} "
              f"({time.time() - t_start:.0f} s)", file=sys.stderr)
    if not clips:
        raise SystemExit("jitter.py: the detector found no face in any clip's first frame")

    def pooled(key: str) -> dict:
        """Frame-weighted means over clips of a method's jitter and NME."""
        out = {}
        for m in ("jitter", "nme"):
            vals = [(c[key][m], c["frames"]) for c in clips if c[key][m] is not None]
            if m == "jitter":  # RMS: pool the squares
                out[m] = round(float(np.sqrt(sum(v * v * n for v, n in vals) / sum(n for _, n in vals))), 4)
            else:
                out[m] = round(float(sum(v * n for v, n in vals) / sum(n for _, n in vals)), 4)
        out["missed"] = int(sum(c[key]["missed"] for c in clips))
        return out

    ours_o, raw_o, pf_o, dl_o = (pooled(k) for k in ("acrloss", "tracked_raw", "per_frame", "dlib"))
    overall = {
        "jitter": ours_o["jitter"], "dlib_jitter": dl_o["jitter"],
        "jitter_ratio_to_dlib": round(ours_o["jitter"] / dl_o["jitter"], 4),
        "nme": ours_o["nme"], "dlib_nme": dl_o["nme"],
        "fps": round(n_frames_total / totals["acrloss"], 2), "dlib_fps": round(n_frames_total / totals["dlib"], 2),
        "per_frame_nme": pf_o["nme"], "per_frame_jitter": pf_o["jitter"], "per_frame_fps": round(n_frames_total / totals["per_frame"], 2),
        "nme_minus_per_frame": round(ours_o["nme"] - pf_o["nme"], 4),
        "tracked_raw_jitter": raw_o["jitter"], "tracked_raw_nme": raw_o["nme"],
        "missed": {"acrloss": ours_o["missed"], "per_frame": pf_o["missed"], "dlib": dl_o["missed"]},
    }
    overall["acceptance"] = {
        "jitter_ratio_to_dlib <= 0.5": bool(overall["jitter_ratio_to_dlib"] <= 0.5),
        "nme <= per_frame_nme + 0.2": bool(overall["nme_minus_per_frame"] <= 0.2),
    }
    result = {
        "overall": overall,
        "clips": clips,
        "units": "jitter and nme in percent of the ground-truth outer eye-corner distance; fps = frames per second",
        "settings": {"subset": a.subset, "clips": len(clips), "frames_per_clip": a.frames, "size": [a.width, a.height],
                     "noise_sigma": a.noise, "jpeg_quality": a.jpeg, "fps_assumed": a.fps, "seed": a.seed,
                     "track_config": {k: v for k, v in cfg.__dict__.items()}, "model": aligner.model_path,
                     "detector": repr(detector), "dlib_predictor": Path(sp_path).name, "threads": a.threads},
        "load": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
        "seconds": round(time.time() - t_start, 1),
    }
    if a.sweep:
        grid = []
        for mc, beta, dc in [(mc, beta, dc) for mc in (0.1, 0.3, 1.0, 3.0) for beta in (0.0, 3.0, 10.0, 30.0, 100.0)
                             for dc in (1.0, 3.0, 10.0)]:
            if True:
                js, ns = [], []
                for raw, gt in raw_runs:
                    f = OneEuroFilter(mc, beta, dc)
                    sm = []
                    for k, p in enumerate(raw):
                        if p is None:
                            f.reset()
                            sm.append(None)
                            continue
                        sm.append(f(p, k / a.fps, float(np.ptp(p, axis=0).max())))
                    m = clip_metrics(sm, gt)
                    js.append(m["jitter"])
                    ns.append(m["nme"])
                grid.append({"min_cutoff": mc, "beta": beta, "d_cutoff": dc, "jitter": round(float(np.sqrt(np.mean(np.square(js)))), 4),
                             "nme": round(float(np.mean(ns)), 4)})
        result["sweep"] = grid
    from acrloss.io import emit_json

    emit_json(result, a.json)
    return result


if __name__ == "__main__":
    main()
