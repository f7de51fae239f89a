"""The ``acrloss`` command (also ``python -m acrloss``).

::

    acrloss align PATH... --out DIR [--model NAME_OR_PATH] [--detector dlib] [--refine N] [--tta|--no-tta] [--recursive] [--verbose]
    acrloss export MODEL --format tflite|onnx --out FILE [--data-dir DIR] [--atol 1e-4] [--quantize int8|dynamic|float16] [--verbose]
    acrloss [--verbose] train|test|pca|prep|demo|flops ARGS...     (= acrloss-train ARGS..., etc.)

``align`` also takes video files (by suffix: .mp4, .avi, .mov, .mkv, .webm, ...; see
:mod:`acrloss.video`): each is tracked and written as ``NAME_aligned.mp4``, ``NAME.csv`` and
``NAME.json`` (``--detect-every``, ``--no-smooth``, ``--pose``).

``align`` takes image files and folders (their .jpg/.jpeg/.png/.bmp files; ``--recursive``
for sub-folders). For each photo with a face it writes, under ``--out``, keeping the layout
below each given folder, ``NAME_aligned.jpg`` (``--image-format png`` for PNG; landmarks and
detector boxes drawn), ``NAME.pts`` (1-based; with several faces ``NAME_face0.pts``, ... by
detector score) and ``NAME.json`` (boxes, scores and landmarks in the photo's 0-based
pixel centres); and once per run ``align_manifest.json`` listing every photo with its status
and files. Names never collide, a re-run replaces a photo's previous files, and the JSON's
``box`` is the detector's raw box (it can extend beyond the image; ``box_in_image`` is
clipped): see :mod:`acrloss.align_outputs`.

A photo that cannot be read (missing, not an image, corrupt), aligned or written (e.g. a
name the file system refuses) and a photo without a face are named on stderr, get no files,
are listed in the manifest, and the run goes on. Exit status of ``align``: 0 when at least
one photo was processed (its files written, or found to hold no face), 1 when none was
(every path unreadable or failed, or no image in the given folders), 2 for usage errors,
reported in one line (unknown model, missing detector package, ``--out`` an existing file
or not creatable, ``--out`` equal to an input folder, which would overwrite the ``.pts``
files beside the images).

Every command prints only its own output; ``--verbose`` (``acrloss --verbose COMMAND ...``
for any command, or ``acrloss align|export --verbose``) also shows the backend's logs
(TensorFlow, absl). See :mod:`acrloss.console`.

``export`` writes a ``.tflite`` or ``.onnx`` file through :mod:`acrloss.export`, checks it
against Keras on real face crops and prints the largest difference; exit 1 when the export
fails (an op without a TFLite/ONNX equivalent, a failed parity check, a missing export
package; nothing is written), 2 for usage errors (unknown model, unknown file type).
"""
from __future__ import annotations

import argparse
import importlib
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
    "ensemble": ("acrloss.tools.ensemble", "average several trained models in one checkpoint"),
}
IMAGE_FORMATS = ("jpg", "png")


def _err(msg: str) -> None:
    print(f"acrloss: {msg}", file=sys.stderr)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


# ---------------------------------------------------------------------------- align
def collect_images(paths: Sequence[str], recursive: bool = False) -> tuple[list[tuple[Path, str]], list[str]]:
    """``([(image path, output name without suffix), ...], [problems])`` for files and folders.

    Files are taken as given (whatever their suffix: a non-image fails later, when read);
    folders contribute their image files (by suffix), sorted, named by their path relative
    to the folder. Names whose output files could collide get ``_2``, ``_3``, ... appended
    (:func:`acrloss.align_outputs.assign_names`).
    """
    from acrloss.align_outputs import assign_names  # noqa: PLC0415
    from acrloss.data_prep.images import IMAGE_EXTENSIONS  # noqa: PLC0415

    found: list[tuple[Path, str]] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in (p.rglob("*") if recursive else p.iterdir())
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                problems.append(f"{p}: no image files (.jpg/.jpeg/.png/.bmp) in this folder")
            found.extend((f, f.relative_to(p).with_suffix("").as_posix()) for f in files)
        else:  # files, and paths that do not exist (reported as unreadable when read)
            found.append((p, p.stem))
    names = assign_names([name for _, name in found])
    return [(path, name) for (path, _), name in zip(found, names)], problems


def pts_names(name: str, num_faces: int) -> list[str]:
    """The ``.pts`` file names for an image's faces (see the module docs)."""
    from acrloss.align_outputs import pts_names as names  # noqa: PLC0415

    return names(name, num_faces)


def check_out_dir(out_dir: Path, images: Sequence[tuple[Path, str]]) -> str | None:
    """Why ``--out`` cannot be used (one line), or ``None``: an existing file, a path below a
    file, or the folder of an input image (its ``.pts`` would be overwritten). Checked
    before the model loads; :func:`make_out_dir` reports the other creation failures."""
    if out_dir.exists() and not out_dir.is_dir():
        return f"--out {out_dir} is an existing file, not a folder; choose a folder"
    ancestor = next((p for p in out_dir.absolute().parents if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        return f"--out {out_dir}: cannot create the folder ({ancestor} is a file)"
    try:
        out_resolved = out_dir.resolve()
    except OSError as exc:  # pragma: no cover - e.g. a symlink loop
        return f"--out {out_dir}: {exc}"
    for path, name in images:
        if (out_resolved / name).parent == path.resolve().parent:
            return (f"--out {out_dir} is the folder of the input {path}: its .pts/.json files would be overwritten; "
                    "choose another --out")
    return None


def make_out_dir(out_dir: Path) -> str | None:
    """Create ``--out``; why it cannot be created (one line), or ``None``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--out {out_dir}: cannot create the folder ({exc.strerror or exc})"
    return None


def align_command(a: argparse.Namespace) -> int:
    """``acrloss align``: see the module docs."""
    from acrloss.video import is_video, video_only_options  # noqa: PLC0415  (video files: acrloss.video)

    videos = [p for p in a.paths if is_video(p)]
    if videos:
        return _align_videos_and_images(a, videos, [p for p in a.paths if not is_video(p)])
    for msg in video_only_options(a):
        _err(msg)
    out_dir = Path(a.out)
    images, problems = collect_images(a.paths, a.recursive)
    for msg in problems:
        _err(msg)
    why = check_out_dir(out_dir, images)
    if why is not None:
        _err(why)
        return 2

    from acrloss.align import FaceAligner  # noqa: PLC0415
    from acrloss.align_outputs import align_photos  # noqa: PLC0415
    from acrloss.detectors import DlibHOGDetector  # noqa: PLC0415

    try:
        detector = DlibHOGDetector(upsample=a.upsample, grey=a.detector == "dlib")
        aligner = FaceAligner(a.model, detector=detector, refine=a.refine, tta=a.tta)
    except (ImportError, FileNotFoundError, ValueError, TypeError) as exc:
        _err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 2
    why = make_out_dir(out_dir)
    if why is not None:
        _err(why)
        return 2
    try:
        run = align_photos(aligner, images, out_dir, image_format=a.image_format, inputs=a.paths,
                           detector_name=repr(detector), model_name=aligner.model_path or str(a.model), err=_err)
    except OSError as exc:  # the manifest itself cannot be written (per-photo failures are skipped inside)
        _err(f"--out {out_dir}: cannot write {exc.filename or 'the manifest'} ({exc.strerror or exc})")
        return 1
    n_read = len(run.results) - run.count("unreadable")
    print(f"{n_read} image(s) read, {run.faces} face(s) found, {run.count('no_face')} image(s) without a face, "
          f"{run.count('unreadable')} unreadable, {run.count('failed')} failed; output in {out_dir}, "
          f"manifest {run.manifest}")
    if run.processed == 0:
        _err("no input image could be read" if n_read == 0 else "no input image could be processed")
        return 1
    return 0


def _align_videos_and_images(a: argparse.Namespace, videos: list[str], others: list[str]) -> int:
    """``acrloss align`` with video files among the paths: each video through
    :func:`acrloss.video.align_videos_command`, the other paths as usual."""
    from acrloss.video import align_videos_command  # noqa: PLC0415

    status = align_videos_command(a, videos)
    if others and status != 2:
        a.paths, a.videos_done = others, True
        other = align_command(a)
        status = other if status == 0 or other == 2 else status
    return status


# ---------------------------------------------------------------------------- export
def export_command(a: argparse.Namespace) -> int:
    """``acrloss export``: write the file, print the parity check."""
    from acrloss.export import ExportError, export_model, format_for_path  # noqa: PLC0415

    try:
        fmt = a.format or format_for_path(a.out)
        if getattr(a, "quantize", None):  # acrloss.quantize: written only if the NME gate holds
            from acrloss.quantize import export_quantized  # noqa: PLC0415

            q = export_quantized(a.model, a.out, a.quantize, format=fmt, data_dir=a.data_dir)
            print(f"wrote {q.path} ({q.format}, {q.mode}, {q.bytes:,} bytes) in {q.seconds:.1f} s")
            print(f"NME on {q.eval_source}: {q.nme_quantized:.3f} % quantized vs {q.nme_float:.3f} % float "
                  f"(allowed +{q.max_nme_increase:g})")
            return 0
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
    from acrloss.presets import DEFAULT_MODEL, DEFAULT_REFINE, DEFAULT_TTA  # noqa: PLC0415  (light: no cv2, no backend)

    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("--verbose", action="store_true", help="also show the backend's logs (TensorFlow, absl)")
    p = argparse.ArgumentParser(prog="acrloss", parents=[verbose],
                                description="Face alignment with ACR Loss: align photos, export models, "
                                "and the training/evaluation tools. Put --verbose before any COMMAND to see the "
                                "backend's logs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    al = sub.add_parser("align", help="landmarks for every face in photos: annotated image, .pts and JSON per image",
                        parents=[verbose],
                        description="Detect faces and write the annotated image, .pts and JSON per photo with a face, "
                        "and align_manifest.json for the run (see docs/align.md).")
    al.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders of images")
    al.add_argument("--out", required=True, help="output folder")
    al.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"shipped model name, .h5/.keras checkpoint, or exported .tflite/.onnx file (default {DEFAULT_MODEL})")
    al.add_argument("--detector", default="dlib", choices=["dlib", "dlib-colour"],
                    help="face detector: dlib's HOG on the grey image (default; about a third faster) or on the "
                         "colour image (dlib-colour); each with its own fitted box calibration")
    al.add_argument("--upsample", type=non_negative_int, default=1, help="dlib upsampling steps (more finds smaller faces; slower)")
    al.add_argument("--refine", type=non_negative_int, default=DEFAULT_REFINE,
                    help=f"extra passes re-cropping each face around its predicted points (default {DEFAULT_REFINE})")
    al.add_argument("--tta", action=argparse.BooleanOptionalAction, default=DEFAULT_TTA,
                    help="horizontal-flip test-time averaging; also gives each face its flip_disagreement quality "
                         f"score in the JSON (default {'on' if DEFAULT_TTA else 'off'})")
    al.add_argument("--recursive", action="store_true", help="also take images in sub-folders of folder arguments")
    al.add_argument("--image-format", default="jpg", choices=IMAGE_FORMATS, help="annotated image format (default jpg)")
    al.add_argument("--detect-every", type=int, default=10,
                    help="videos: run the face detector every N frames, track in between (default 10)")
    al.add_argument("--no-smooth", action="store_true", help="videos: no One Euro smoothing of the landmarks")
    al.add_argument("--pose", action="store_true", help="videos: head pose per face (CSV/JSON columns, drawn axes)")
    al.set_defaults(func=align_command)

    ex = sub.add_parser("export", help="export a model to .tflite or .onnx, checked against Keras", parents=[verbose],
                        description="Export a model to TFLite or ONNX and check it against Keras on real face crops.")
    ex.add_argument("model", help="shipped model name or .h5/.keras checkpoint")
    ex.add_argument("--format", choices=["tflite", "onnx"], help="default: from the --out suffix")
    ex.add_argument("--out", required=True, help="the file to write (.tflite or .onnx)")
    ex.add_argument("--data-dir", help="300-W folder for the parity crops (default: env ACRLOSS_300W, else "
                                       "../shared/data/300w, else matplotlib's sample portrait)")
    ex.add_argument("--atol", type=float, default=1e-4, help="parity tolerance, normalized coordinates (default 1e-4)")
    ex.add_argument("--quantize", choices=["int8", "dynamic", "float16"],
                    help="quantized export (int8: full-integer, calibrated on 300-W training crops), written only if "
                         "its NME on the 300-W common set is within 0.10 points of the float model's")
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
    """Run the ``acrloss`` command; returns the exit status.

    Nothing heavy is imported before the arguments are parsed: ``--help`` and argument
    errors return without loading Keras or a backend.
    """
    from acrloss.console import set_backend_logs  # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] == "--verbose":  # the global flag, before any COMMAND
        verbose = True
        argv.pop(0)
    if argv and argv[0] in PASSTHROUGH:
        set_backend_logs(True if verbose else None)
        return _passthrough(argv[0], argv[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help(sys.stderr)
        return 2
    set_backend_logs(True if verbose or a.verbose else None)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
