"""Whole photos against crops: does detect -> calibrate -> crop -> regress keep the accuracy?

    python benchmarks/whole_photo.py --data-dir DIR --json OUT [--model NAME_OR_PATH ...] [--refine 0 1 2] [--tta]

On ``DIR/full/`` (24 whole, uncropped 300-W test photos, one annotated face each, ``.pts``
beside each), for each model (default: every shipped model):

- ``whole``: :meth:`acrloss.align.FaceAligner.get_landmarks` on the photo file, the
  default path (dlib HOG detector, the fitted box calibration, crop, regress, map back to
  the photo's pixels). The annotated face is *found* when the calibrated box of a
  detection overlaps its landmark box with IoU >= ``--min-iou`` (0.3); that detection's
  landmarks are scored.
- ``whole_refineR``: the same with ``FaceAligner(refine=R, tta=False)`` (R extra passes
  re-cropping around the predicted points' box), on the same detection; with ``--tta`` also
  ``whole_refineR_tta`` (``tta=True``: horizontal-flip test-time averaging). Each has
  ``ms_per_face_...``: the seconds of the crop + model calls per face (detection excluded,
  the photo already decoded), measured in this run.
- ``crop``: the same model on the crop :class:`acrloss.test.Test` uses (the annotated
  points' box, made square, 25 % margin), cut from the same whole photo
  (``get_landmarks(photo, boxes=[landmark box], calibrate=False)``).
- ``crop_300w``: the same face from the cropped 300-W release (``DIR/helen/testset``,
  ``DIR/lfpw/testset``; same file name), evaluated exactly as ``test.py`` does, when present.

NME is in % of the outer-eye-corner distance (points 36/45), in the photo's original
coordinates. ``nme_diff`` = mean whole - mean crop over the found faces. Target: >= 22 of
24 found and ``|nme_diff|`` <= 0.5 points.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"), help="300-W folder holding full/ (or env ACRLOSS_300W)")
    p.add_argument("--json", required=True, help="write the result here (also printed)")
    p.add_argument("--model", nargs="+", help="model names/paths (default: every shipped model)")
    p.add_argument("--min-iou", type=float, default=0.3, help="calibrated-box IoU that counts as found (default 0.3)")
    p.add_argument("--refine", type=int, nargs="*", default=[0, 1, 2],
                   help="also score FaceAligner(refine=R, tta=False) for these R on the same detections (default 0 1 2)")
    p.add_argument("--tta", action="store_true", help="also score each R with tta=True (flip test-time averaging)")
    p.add_argument("--hog", choices=["grey", "colour"], default="grey",
                   help="dlib HOG on the grey image (DlibHOGDetector's default) or the colour image; figures "
                        "recorded before the grey default used colour")
    a = p.parse_args(argv)
    if not a.data_dir:
        p.error("give --data-dir (or set ACRLOSS_300W)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from acrloss.align import FaceAligner, available_models
    from acrloss.data_prep.crop import face_box
    from acrloss.data_prep.datasets import Sample, read_folder
    from acrloss.data_prep.formats import read_pts
    from acrloss.data_prep.images import read_image
    from acrloss.detectors import DlibHOGDetector, box_iou
    from acrloss.metrics import nme

    t_start = time.time()
    data_dir = Path(a.data_dir)
    photos = read_folder(data_dir / "full")
    detector = DlibHOGDetector(grey=a.hog == "grey")
    result: dict = {
        "data": str(data_dir / "full"),
        "photos": len(photos),
        "detector": repr(detector),
        "normalization": "outer eye corners (36, 45)",
        "min_iou": a.min_iou,
        "models": {},
    }
    variants = [(r, False) for r in a.refine] + ([(r, True) for r in a.refine] if a.tta else [])

    def key_of(r: int, tta: bool) -> str:
        return f"nme_whole_refine{r}" + ("_tta" if tta else "")
    for name in a.model or available_models():
        aligner = FaceAligner(name, detector=detector)
        default_refine, default_tta = aligner.refine, aligner.tta
        timings: dict[str, list[float]] = {key_of(r, t): [] for r, t in variants}
        plain = aligner.predictor.with_options(refine=0, tta=False)  # test.py's one pass on the 300-W crops
        rows = []
        for s in photos:
            rel = Path(s.image_path).relative_to(data_dir / "full")
            gt = s.points
            lm_box = face_box(gt)
            faces, boxes, _ = aligner.get_landmarks(s.image_path, return_boxes=True)  # default path
            ious = [box_iou(aligner.crop_box(b), lm_box) for b in boxes]
            k = int(np.argmax(ious)) if ious else -1
            found = k >= 0 and ious[k] >= a.min_iou
            crop_pred = aligner.get_landmarks(s.image_path, boxes=[lm_box], calibrate=False)[0]
            row = {
                "photo": rel.as_posix(),
                "detections": len(boxes),
                "found": bool(found),
                "iou": round(float(ious[k]), 3) if ious else 0.0,
                "nme_whole": round(float(nme(faces[k][None], gt[None])[0] * 100), 3) if found else None,
                "nme_crop": round(float(nme(crop_pred[None], gt[None])[0] * 100), 3),
            }
            rgb = read_image(s.image_path) if found else None
            for r, tta in variants:
                key = key_of(r, tta)
                if found:
                    aligner.refine, aligner.tta = r, tta  # the default path with R re-crops (and TTA), same detection
                    t1 = time.perf_counter()
                    refined = aligner.get_landmarks(rgb, boxes=[boxes[k]])[0]
                    timings[key].append(time.perf_counter() - t1)
                    aligner.refine, aligner.tta = default_refine, default_tta
                    row[key] = round(float(nme(refined[None], gt[None])[0] * 100), 3)
                else:
                    row[key] = None
            cropped = data_dir / rel
            if cropped.is_file() and cropped.with_suffix(".pts").is_file():
                sample = Sample(str(cropped), read_pts(cropped.with_suffix(".pts")))
                pred = plain.predict_samples([sample])
                row["nme_crop_300w"] = round(float(nme(pred, sample.points[None])[0] * 100), 3)
            rows.append(row)
            print(f"{name} {row}", file=sys.stderr)
        found_rows = [r for r in rows if r["found"]]

        def mean(key, rs):
            vals = [r[key] for r in rs if r.get(key) is not None]
            return round(float(np.mean(vals)), 3) if vals else None

        summary = {
            "model": aligner.model_path,
            "defaults": {"refine": default_refine, "tta": default_tta},
            "found": len(found_rows),
            "of": len(rows),
            "missed": [r["photo"] for r in rows if not r["found"]],
            "nme_whole": mean("nme_whole", found_rows),
            "nme_crop": mean("nme_crop", found_rows),
            "nme_crop_300w": mean("nme_crop_300w", found_rows),
            "nme_crop_all": mean("nme_crop", rows),
        }
        summary["nme_diff"] = (round(summary["nme_whole"] - summary["nme_crop"], 3)
                               if found_rows else None)
        summary["nme_diff_vs_300w_crops"] = (round(summary["nme_whole"] - summary["nme_crop_300w"], 3)
                                             if found_rows and summary["nme_crop_300w"] is not None else None)
        summary["meets_target"] = bool(len(found_rows) >= 22 and summary["nme_diff"] is not None
                                       and abs(summary["nme_diff"]) <= 0.5)
        summary["median_photo_diff"] = (round(float(np.median([r["nme_whole"] - r["nme_crop"] for r in found_rows])), 3)
                                        if found_rows else None)
        for r, tta in variants:
            key = key_of(r, tta)
            tag = key[len("nme_whole_"):]
            summary[key] = mean(key, found_rows)
            summary[f"nme_diff_{tag}"] = (round(summary[key] - summary["nme_crop"], 3)
                                          if summary[key] is not None else None)
            summary[f"meets_target_{tag}"] = bool(len(found_rows) >= 22 and summary[key] is not None
                                                  and abs(summary[key] - summary["nme_crop"]) <= 0.5)
            # the first call of each variant also builds its traced function: median, not mean
            summary[f"ms_per_face_{tag}"] = round(1000.0 * float(np.median(timings[key])), 1) if timings[key] else None
        summary["per_photo"] = rows
        result["models"][Path(aligner.model_path or name).stem] = summary
    result["seconds"] = round(time.time() - t_start, 1)
    from acrloss.io import emit_json

    emit_json(result, a.json)
    return result


if __name__ == "__main__":
    main()
