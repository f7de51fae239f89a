"""Fit the dlib-box -> landmark-box calibration on the 300-W *train* split.

    python benchmarks/box_calibration.py --data-dir ../shared/data/300w [--max-faces 400] [--json OUT]

Only the train subsets (afw, helen/trainset, lfpw/trainset) are used, never the test
subsets. With ``--max-faces`` an evenly spaced subset of the train images is taken (fixed,
no randomness). Prints JSON with dx, dy, scale, n_used, n_tried; the numbers are the
defaults of :class:`acrloss.detectors.BoxCalibration`. ``jitter`` holds how the calibrated
boxes scatter around the landmark boxes (:func:`acrloss.detectors.box_jitter_stats`): the
statistics behind the detector-like box-jitter augmentation of ``AugmentConfig``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


from acrloss.data_prep.datasets import w300_subset  # noqa: E402
from acrloss.io import emit_json  # noqa: E402
from acrloss.detectors import DlibHOGDetector, fit_box_calibration  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"), help="300-W folder (or env ACRLOSS_300W)")
    p.add_argument("--max-faces", type=int, default=400, help="evenly spaced subset of the train images (0 = all)")
    p.add_argument("--upsample", type=int, default=1)
    p.add_argument("--hog", choices=["grey", "colour"], default="grey",
                   help="HOG on the luma image (DlibHOGDetector's default) or on the colour image (grey=False)")
    p.add_argument("--json", help="also write the result here")
    a = p.parse_args(argv)
    if not a.data_dir:
        p.error("give --data-dir (or set ACRLOSS_300W)")
    samples = w300_subset(a.data_dir, "train")
    if a.max_faces and a.max_faces < len(samples):
        idx = np.linspace(0, len(samples) - 1, a.max_faces).round().astype(int)
        samples = [samples[i] for i in idx]
    detector = DlibHOGDetector(upsample=a.upsample, grey=a.hog == "grey")
    t0 = time.time()

    def progress(i: int, n: int) -> None:
        if i % 50 == 0 or i == n:
            print(f"  {i}/{n} images ({time.time() - t0:.0f} s)", file=sys.stderr)

    fit = fit_box_calibration(samples, detector, progress=progress)
    result = {
        "dx": round(fit["dx"], 4),
        "dy": round(fit["dy"], 4),
        "scale": round(fit["scale"], 4),
        "n_used": fit["n_used"],
        "n_tried": fit["n_tried"],
        "iou_raw_median": round(fit["iou_raw_median"], 4),
        "iou_calibrated_median": round(fit["iou_calibrated_median"], 4),
        "jitter": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in fit["jitter"].items()},
        "detector": repr(detector),
        "split": "300-W train (afw, helen/trainset, lfpw/trainset)",
        "seconds": round(time.time() - t0, 1),
    }
    return emit_json(result, a.json)


if __name__ == "__main__":
    main()
