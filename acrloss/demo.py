"""Demo: align the faces of a real photo with the shipped model (and evaluate it on 300-W).

    python -m acrloss.demo [--image PATH] [--model NAME_OR_PATH] [--out DIR] [--data-dir DIR] [--verbose]

Without ``--image`` it uses matplotlib's sample Grace Hopper portrait (shipped inside
matplotlib, nothing is downloaded). It detects the faces (dlib HOG), predicts 68 landmarks
per face, writes ``OUT/aligned.png`` (default ``out/``) and prints the landmarks in the
original image's 0-based pixel coordinates. When a 300-W folder is found (``--data-dir``,
else env ``ACRLOSS_300W``, else ``../shared/data/300w`` beside the repository) the model is
also evaluated with :meth:`acrloss.test.Test.test_model` and the table is printed.
Only the demo's own output is printed; ``--verbose`` also shows the backend's logs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from acrloss import presets
from acrloss.align import FaceAligner, save_annotated
from acrloss.presets import DEFAULT_MODEL, resolve_model, sample_image_path  # noqa: F401  (re-exported)
from acrloss.console import set_backend_logs
from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.images import read_image


def find_data_dir(explicit: str | None) -> tuple[Path | None, str]:
    """The 300-W folder to evaluate on, and where it came from (or why there is none)."""
    return presets.find_data_dir("300w", explicit)


def format_landmarks(points: np.ndarray) -> str:
    return "\n".join(f"{x:.2f} {y:.2f}" for x, y in np.asarray(points).reshape(-1, 2))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m acrloss.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--image", help="photo to align (default: matplotlib's grace_hopper.jpg)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped model name or .h5 path (default {DEFAULT_MODEL})")
    p.add_argument("--out", default="out", help="output folder for aligned.png (default out/)")
    p.add_argument("--data-dir", help="300-W folder for the evaluation table (default: env ACRLOSS_300W, "
                                      "else ../shared/data/300w beside the repository)")
    p.add_argument("--max-test-faces", type=int, default=None, help="evaluate on at most this many faces per subset")
    p.add_argument("--no-eval", action="store_true", help="skip the 300-W evaluation")
    p.add_argument("--verbose", action="store_true", help="also show the backend's logs (TensorFlow, absl)")
    a = p.parse_args(argv)
    set_backend_logs(True if a.verbose else None)  # before the backend is imported (first model load)

    def fail(msg: str) -> int:
        print(f"acrloss.demo: error: {msg}", file=sys.stderr)
        return 2

    try:
        image_path = Path(a.image) if a.image else sample_image_path()
        image = read_image(image_path)
    except (LandmarkFileError, FileNotFoundError, OSError) as exc:
        return fail(f"cannot read the image: {exc}")
    try:
        model_path = resolve_model(a.model)
        aligner = FaceAligner(str(model_path))
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))

    faces, boxes, scores = aligner.get_landmarks(image, return_boxes=True)
    h, w = image.shape[:2]
    print(f"image: {image_path} ({w}x{h})")
    print(f"model: {model_path} (input {aligner.input_size}x{aligner.input_size})")
    print(f"faces found: {len(faces)}")
    for i, (pts, box, score) in enumerate(zip(faces, boxes, scores)):
        x0, y0, x1, y1 = box
        print(f"face {i}: box ({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}) score {score:.3f}; {len(pts)} landmarks (x y, 0-based pixels):")
        print(format_landmarks(pts))

    out_path = save_annotated(Path(a.out) / "aligned.png", image, faces, boxes)  # image: RGB (read_image)
    print(f"wrote {out_path}")

    if a.no_eval:
        print("300-W evaluation skipped (--no-eval)")
        return 0
    data_dir, why = find_data_dir(a.data_dir)
    if data_dir is None:
        print(f"300-W data not found ({why}): evaluation table skipped")
        return 0
    from acrloss.test import Test, format_table  # noqa: PLC0415

    print(f"evaluating {model_path.name} on 300-W at {data_dir} ({why}):")
    result = Test().test_model(pretrained_model_path=str(model_path), data_dir=str(data_dir), max_faces=a.max_test_faces)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
