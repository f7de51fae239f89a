"""Cost of the photo-path settings (refine passes, flip TTA) per face, against dlib's shape predictor.

    python benchmarks/photo_cost.py --data-dir ../shared/data/300w --json OUT [--model NAME] [--faces 20] [--rounds 3]
        [--settings r0 r1 r1+tta r2+tta]

On ``--faces`` evenly spaced faces of the fixed-seed validation split (seed 0, 10 % of the
300-W train split) where dlib's HOG detector finds the face (detection runs once, untimed),
each call is timed with the detector box already known and the image decoded:

- ``dlib``: ``shape_predictor_68_face_landmarks.dat`` (``face_recognition_models``) on the
  image and the box, points to NumPy;
- each setting ``rN[+tta]``: ``FaceAligner(model, refine=N, tta=...).align_faces(image,
  boxes=[box])``, the library's whole per-face path after detection (calibration, crop warps,
  eager Keras calls, mapping back).

Runtimes are interleaved face by face in every round, so background load hits them alike;
``ms`` is the median over all calls, ``ratio_to_dlib`` = ms / dlib's ms (measured in the same
run). NME (%, outer eye corners) on these faces is reported as a sanity check.
"""
from __future__ import annotations

import argparse
import os
import time


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"), help="300-W folder (or env ACRLOSS_300W)")
    p.add_argument("--json", required=True)
    p.add_argument("--model", default="mnv2_acr_300w")
    p.add_argument("--faces", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settings", nargs="+", default=["r0", "r1", "r1+tta", "r2+tta"])
    a = p.parse_args(argv)
    if not a.data_dir:
        p.error("give --data-dir (or set ACRLOSS_300W)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import dlib
    import face_recognition_models
    import numpy as np

    from acrloss.align import FaceAligner
    from acrloss.data_prep.crop import face_box
    from acrloss.data_prep.datasets import train_val_split, w300_subset
    from acrloss.data_prep.images import read_image
    from acrloss.detectors import DlibHOGDetector, box_iou
    from acrloss.metrics import nme

    settings = []
    for text in a.settings:
        tta = text.endswith("+tta")
        settings.append((text, int(text[1:-4] if tta else text[1:]), tta))
    val = train_val_split(w300_subset(a.data_dir, "train"), 0.1, 0)[1]
    detector = DlibHOGDetector()
    cal = detector.box_calibration
    faces = []
    for s in [val[i] for i in np.linspace(0, len(val) - 1, min(len(val), 3 * a.faces)).round().astype(int)]:
        img = read_image(s.image_path)
        dets = [(box_iou(cal.apply(b), face_box(s.points)), b) for b, _ in detector(img)]
        if dets and max(d[0] for d in dets) >= 0.3:
            faces.append((s, img, max(dets, key=lambda d: d[0])[1]))
        if len(faces) == a.faces:
            break
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    aligners = {name: FaceAligner(a.model, detector=detector, refine=r, tta=t) for name, r, t in settings}
    times: dict[str, list[float]] = {"dlib": [], **{name: [] for name, _, _ in settings}}
    preds: dict[str, list] = {k: [None] * len(faces) for k in times}
    for name, al in aligners.items():  # warm-up, untimed
        al.align_faces(faces[0][1], boxes=[faces[0][2]])
    load_before = os.getloadavg()[0]
    for _ in range(a.rounds):
        for i, (s, img, box) in enumerate(faces):
            t = time.perf_counter()
            shape = predictor(img, dlib.rectangle(*(int(round(v)) for v in box)))
            pts = np.array([[q.x, q.y] for q in shape.parts()], dtype=np.float64)
            times["dlib"].append(time.perf_counter() - t)
            preds["dlib"][i] = pts
            for name, al in aligners.items():
                t = time.perf_counter()
                preds[name][i] = al.align_faces(img, boxes=[box])[0].points
                times[name].append(time.perf_counter() - t)
    gt = np.stack([f[0].points for f in faces])
    dlib_ms = 1000 * float(np.median(times["dlib"]))
    result = {
        "model": a.model, "faces": len(faces), "rounds": a.rounds,
        "faces_from": "fixed-seed validation split (seed 0, 10 % of 300-W train), dlib-detected",
        "timed": "per face, detector box known, image decoded; dlib shape predictor vs FaceAligner.align_faces",
        "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
        "runtimes": {},
    }
    for name, ts in times.items():
        ms = 1000 * float(np.median(ts))
        result["runtimes"][name] = {"ms": round(ms, 2), "ratio_to_dlib": round(ms / dlib_ms, 2),
                                    "nme": round(100 * float(nme(np.stack(preds[name]), gt).mean()), 3)}
    from acrloss.io import emit_json

    emit_json(result, a.json)
    return result


if __name__ == "__main__":
    main()
