"""The ``acrloss`` command (also ``python -m acrloss``).

::

    acrloss align PATH... --out DIR [--model NAME_OR_PATH] [--detector dlib] [--refine N] [--tta|--no-tta] [--recursive]
    acrloss export MODEL --format tflite|onnx --out FILE [--data-dir DIR] [--atol 1e-4]
    acrloss train|test|pca|prep|demo|flops ARGS...     (= acrloss-train ARGS..., etc.)

``align`` takes image files and folders (their .jpg/.jpeg/.png/.bmp files; ``--recursive``
for sub-folders). For each image it writes, under ``--out``, keeping the layout below each
given folder:

- ``NAME_aligned.jpg`` (``--image-format png`` for PNG): the photo with every face's
  landmarks and detector box drawn (:func:`acrloss.align.draw_landmarks`);
- ``NAME.pts``: the landmarks as a 1-based iBUG ``.pts`` file; with several faces one file per
  face, ``NAME_face0.pts``, ``NAME_face1.pts``, ... (by detector score);
- ``NAME.json``: ``{"image", "width", "height", "model", "detector", "coordinates",
  "faces": [{"box": [x0, y0, x1, y1], "score", "landmarks": [[x, y] * 68], "pts"}]}``, boxes
  and landmarks in the original photo's 0-based pixel-centre coordinates.

An unreadable file (missing, not an image, corrupt) and an image without a face are
reported on stderr, naming the file, and the run goes on; an image without a face still
gets its JSON (``"faces": []``) and its (unmarked) image, and no ``.pts``. Exit status of
``align``: 0 when at least one input image was read (whether or not faces were found), 1
when none could be read (every path unreadable, or no image in the given folders), 2 for
usage errors (unknown model, missing detector package, ``--out`` equal to an input folder,
which would overwrite the ``.pts`` files beside the images).

``export`` writes a ``.tflite`` or ``.onnx`` file through :mod:`acrloss.export`, checks it
against Keras on real face crops and prints the largest difference; exit 1 when the export
fails (an op without a TFLite/ONNX equivalent, a failed parity check, a missing export
package; nothing is written), 2 for usage errors (unknown model, unknown file type).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

#: pass-through sub-commands: name -> (module, help)
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "train": ("acrloss.train", "train a model (= acrloss-train)"),
    "test": ("acrloss.test", "evaluate a checkpoint: NME, FR, AUC, CED (= acrloss-test)"),
    "pca": ("acrloss.pca_utility", "fit PCA shape models (= acrloss-pca)"),
    "prep": ("acrloss.data_prep.labels", "write normalized label .npy files (= acrloss-prep)"),
    "demo": ("acrloss.demo", "align the sample portrait, evaluate on 300-W (= acrloss-demo)"),
    "flops": ("acrloss.flops", "parameters and multiply-adds of a checkpoint"),
}
IMAGE_FORMATS = ("jpg", "png")


def _err(msg: str) -> None:
    print(f"acrloss: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------- align
def collect_images(paths: Sequence[str], recursive: bool = False) -> tuple[list[tuple[Path, str]], list[str]]:
    """``([(image path, output name without suffix), ...], [problems])`` for files and folders.

    Files are taken as given (whatever their suffix: a non-image fails later, when read);
    folders contribute their image files (by suffix), sorted, named by their path relative
    to the folder. Names that would collide get ``_2``, ``_3``, ... appended.
    """
    from acrloss.data_prep.images import IMAGE_EXTENSIONS  # noqa: PLC0415

    found: list[tuple[Path, str]] = []
    problems: list[str] = []
    used: set[str] = set()

    def add(path: Path, name: str) -> None:
        base, k = name, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        found.append((path, name))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in (p.rglob("*") if recursive else p.iterdir())
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                problems.append(f"{p}: no image files (.jpg/.jpeg/.png/.bmp) in this folder")
            for f in files:
                add(f, f.relative_to(p).with_suffix("").as_posix())
        else:  # files, and paths that do not exist (reported as unreadable when read)
            add(p, p.stem)
    return found, problems


def pts_names(name: str, num_faces: int) -> list[str]:
    """The ``.pts`` file names for an image's faces (see the module docs)."""
    if num_faces == 1:
        return [f"{name}.pts"]
    return [f"{name}_face{k}.pts" for k in range(num_faces)]


def _encode(image_rgb: Any, fmt: str) -> bytes:
    import cv2  # noqa: PLC0415

    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, buf = cv2.imencode(f".{fmt}", bgr, params)
    if not ok:  # pragma: no cover
        raise ValueError(f"cannot encode the annotated image as {fmt}")
    return buf.tobytes()


def align_command(a: argparse.Namespace) -> int:
    """``acrloss align``: see the module docs."""
    from acrloss.align import FaceAligner, draw_landmarks  # noqa: PLC0415
    from acrloss.data_prep.formats import LandmarkFileError, atomic_write_bytes, write_pts  # noqa: PLC0415
    from acrloss.data_prep.images import read_image  # noqa: PLC0415
    from acrloss.detectors import DlibHOGDetector  # noqa: PLC0415

    out_dir = Path(a.out)
    images, problems = collect_images(a.paths, a.recursive)
    for msg in problems:
        _err(msg)
    out_resolved = out_dir.resolve()
    for path, name in images:
        if (out_resolved / name).parent == path.resolve().parent:
            _err(f"--out {out_dir} is the folder of the input {path}: its .pts/.json files would be overwritten; "
                 "choose another --out")
            return 2
    try:
        detector = DlibHOGDetector(upsample=a.upsample)
        aligner = FaceAligner(a.model, detector=detector, refine=a.refine, tta=a.tta)
    except (ImportError, FileNotFoundError, ValueError, TypeError) as exc:
        _err(str(exc))
        return 2
    model_name = aligner.model_path or str(a.model)

    n_read = n_faces = n_unreadable = n_empty = 0
    for path, name in images:
        try:
            image = read_image(path)
        except (LandmarkFileError, OSError) as exc:
            n_unreadable += 1
            _err(f"skipping {exc}" if str(path) in str(exc) else f"skipping {path}: {exc}")
            continue
        n_read += 1
        aligned = aligner.align_faces(image)
        faces, boxes, scores = [f.points for f in aligned], [f.box for f in aligned], [f.score for f in aligned]
        names = pts_names(name, len(faces))
        record = {
            "image": str(path),
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "model": model_name,
            "detector": repr(detector),
            "refine": aligner.refine,
            "tta": aligner.tta,
            "coordinates": "0-based pixel centres (x, y) of the original image; the .pts files are 1-based",
            "faces": [
                {"box": [round(float(v), 3) for v in box], "score": round(float(score), 4),
                 "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in pts], "pts": pts_name,
                 "flip_disagreement": None if f.flip_disagreement is None else round(f.flip_disagreement, 5)}
                for pts, box, score, pts_name, f in zip(faces, boxes, scores, names, aligned)
            ],
        }
        image_out = out_dir / f"{name}_aligned.{a.image_format}"
        atomic_write_bytes(image_out, _encode(draw_landmarks(image, faces, boxes), a.image_format))
        for pts, pts_name in zip(faces, names):
            write_pts(out_dir / pts_name, pts)
        json_out = out_dir / f"{name}.json"
        atomic_write_bytes(json_out, (json.dumps(record, indent=1) + "\n").encode())
        n_faces += len(faces)
        if faces:
            print(f"{path}: {len(faces)} face(s) -> {image_out}, {', '.join(str(out_dir / n) for n in names)}, {json_out}")
        else:
            n_empty += 1
            _err(f"{path}: no face found (wrote {json_out} with no faces, and {image_out})")
    print(f"{n_read} image(s) read, {n_faces} face(s) found, {n_empty} image(s) without a face, "
          f"{n_unreadable} unreadable; output in {out_dir}")
    if n_read == 0:
        _err("no input image could be read")
        return 1
    return 0


# ---------------------------------------------------------------------------- export
def export_command(a: argparse.Namespace) -> int:
    """``acrloss export``: write the file, print the parity check."""
    from acrloss.export import ExportError, export_model, format_for_path  # noqa: PLC0415

    try:
        fmt = a.format or format_for_path(a.out)
        report = export_model(a.model, a.out, format=fmt, data_dir=a.data_dir, atol=a.atol)
    except ExportError as exc:  # ParityError, a conversion that failed, a missing export package
        _err(str(exc))
        return 1
    except (FileNotFoundError, ValueError, TypeError) as exc:  # unknown model, unknown suffix
        _err(str(exc))
        return 2
    print(f"wrote {report.path} ({report.format}, {report.bytes:,} bytes, input {report.input_size}x{report.input_size}, "
          f"{report.num_points} points) in {report.seconds:.1f} s")
    print(f"parity with Keras on {report.parity_source}: max |difference| = {report.max_abs_diff:.3g} "
          f"(normalized coordinates; tolerance {report.atol:g})")
    return 0


# ---------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    from acrloss.align import DEFAULT_MODEL, DEFAULT_REFINE, DEFAULT_TTA  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="acrloss", description="Face alignment with ACR Loss: align photos, export models, "
                                "and the training/evaluation tools.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    al = sub.add_parser("align", help="landmarks for every face in photos: annotated image, .pts and JSON per image",
                        description="Detect faces and write the annotated image, .pts and JSON per input image.")
    al.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders of images")
    al.add_argument("--out", required=True, help="output folder")
    al.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"shipped model name, .h5/.keras checkpoint, or exported .tflite/.onnx file (default {DEFAULT_MODEL})")
    al.add_argument("--detector", default="dlib", choices=["dlib"], help="face detector (dlib's HOG detector)")
    al.add_argument("--upsample", type=int, default=1, help="dlib upsampling steps (more finds smaller faces; slower)")
    al.add_argument("--refine", type=int, default=DEFAULT_REFINE,
                    help=f"extra passes re-cropping each face around its predicted points (default {DEFAULT_REFINE})")
    al.add_argument("--tta", action=argparse.BooleanOptionalAction, default=DEFAULT_TTA,
                    help="horizontal-flip test-time averaging; also gives each face its flip_disagreement quality "
                         f"score in the JSON (default {'on' if DEFAULT_TTA else 'off'})")
    al.add_argument("--recursive", action="store_true", help="also take images in sub-folders of folder arguments")
    al.add_argument("--image-format", default="jpg", choices=IMAGE_FORMATS, help="annotated image format (default jpg)")
    al.set_defaults(func=align_command)

    ex = sub.add_parser("export", help="export a model to .tflite or .onnx, checked against Keras",
                        description="Export a model to TFLite or ONNX and check it against Keras on real face crops.")
    ex.add_argument("model", help="shipped model name or .h5/.keras checkpoint")
    ex.add_argument("--format", choices=["tflite", "onnx"], help="default: from the --out suffix")
    ex.add_argument("--out", required=True, help="the file to write (.tflite or .onnx)")
    ex.add_argument("--data-dir", help="300-W folder for the parity crops (default: env ACRLOSS_300W, else "
                                       "../shared/data/300w, else matplotlib's sample portrait)")
    ex.add_argument("--atol", type=float, default=1e-4, help="parity tolerance, normalized coordinates (default 1e-4)")
    ex.set_defaults(func=export_command)

    for name, (_, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=text, add_help=False)
    return p


def _passthrough(name: str, argv: list[str]) -> int:
    module = importlib.import_module(PASSTHROUGH[name][0])
    fn: Callable[[list[str]], Any] = module.main
    result = fn(argv)
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``acrloss`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return _passthrough(argv[0], argv[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help(sys.stderr)
        return 2
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
