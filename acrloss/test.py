"""``Test``: evaluate a checkpoint per subset (NME / FR / AUC, CED plot, per-face CSV).

CLI (also the root ``test.py`` and the ``acrloss-test`` console script)::

    test.py --model PATH --dataset 300w --data-dir DIR --json OUT [--strict]
    test.py --model PATH --dataset wflw --data-dir DIR [--subsets test pose blur]
    test.py --model PATH --images DIR --json OUT

Errors are one line naming the file: a missing model or data folder exits 2 (usage); a
model that cannot be read or does not fit the data, no face to evaluate, or (with
``--strict``) any rejected sample exits 1. Without ``--strict`` bad samples (a malformed
``.pts``, points far outside the image, a missing or unreadable image) are skipped and
listed under ``rejected`` in the JSON.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from acrloss.config import CropConfig, DatasetName, Decoder, dataset_spec
from acrloss.data_prep.datasets import available_subsets, read_folder
from acrloss.data_prep.formats import LandmarkFileError, RejectedFile, rejected_summary
from acrloss.io import atomic_write_bytes
from acrloss.data_prep.subsets import find_subsets, resolve_spec
from acrloss.dataset_metrics import subset_report
from acrloss.metrics import plot_ced
from acrloss.predictor import LandmarkPredictor, PredictorError, PredictorOptions


class EvaluationError(RuntimeError):
    """An evaluation that cannot run or must fail (no data, a model that does not fit the
    data, rejected samples under ``strict``); the message names the file or folder."""


class EvaluationUsageError(EvaluationError):
    """A missing input named on the command line (``acrloss-test`` exits 2)."""


def load_predictor(path: str | os.PathLike, num_points: int, dataset: str, margin: float = CropConfig.margin,
                   batch_size: int = 32, decoder: str | None = None, tta: bool = False,
                   refine: int = 0) -> LandmarkPredictor:
    """The :class:`acrloss.predictor.LandmarkPredictor` of the model at ``path`` (a checkpoint or
    an exported ``.tflite`` / ``.onnx`` file) after checking that it takes square RGB crops and
    gives ``num_points`` landmarks; :class:`EvaluationError` naming ``path`` otherwise
    (``FileNotFoundError`` for a missing file). ``tta`` / ``refine``: the predictor's
    flip test-time averaging and re-crop passes (:class:`acrloss.predictor.PredictorOptions`)."""
    try:
        predictor = LandmarkPredictor(path, PredictorOptions(margin=margin, batch_size=batch_size, decoder=decoder,
                                                             tta=tta, refine=refine))
        predictor.check_points(num_points, dataset)
    except PredictorError as exc:
        raise EvaluationError(str(exc)) from exc
    return predictor


class Test:
    """Evaluate ``.h5`` checkpoints.

    ``Test().test_model(ds_name=DatasetName.w300, pretrained_model_path="m.h5", data_dir=DIR)``
    returns ``{"subsets": {"common": {"n", "nme", "fr10", "auc10"}, ...}, "missing": {...}}``
    with NME and FR in percent, normalized by the dataset's NME points (300-W: the outer eye
    corners 36/45; WFLW 60/72; COFW 8/9; AFLW the box size: see ``docs/datasets.md``),
    FR = share of faces with NME above the dataset's failure threshold (10 %; AFLW 7 %: keys
    ``fr7`` / ``auc7``), AUC = area under the CED up to it, divided by it. Subsets whose files
    are absent are listed under ``missing``. Datasets with occlusion labels (COFW) also give
    ``point_subsets``: ``{"test": {"visible": {...}, "occluded": {...}}}``, the NME over each
    face's visible / occluded points.
    """

    def test_model(
        self,
        ds_name: DatasetName | str = DatasetName.w300,
        pretrained_model_path: str | os.PathLike = "",
        data_dir: str | os.PathLike | None = None,
        images_dir: str | os.PathLike | None = None,
        subsets: Sequence[str] | None = None,
        out_dir: str | os.PathLike | None = None,
        margin: float = CropConfig.margin,
        batch_size: int = 32,
        max_faces: int | None = None,
        decoder: str | None = None,
        mirror: "Sequence[int] | str | None" = None,
        norm_points: "Sequence[int] | str | None" = None,
        strict: bool = False,
        file_prefix: str = "",
        tta: bool = False,
        refine: int = 0,
    ) -> dict[str, Any]:
        """Evaluate one checkpoint (see the class docstring). ``subsets`` ``None``: the
        dataset's test subsets. ``decoder`` (heatmap models only: ``argmax``, ``quarter``,
        ``dark``, ``keyposs``) replaces the decoder saved in the checkpoint; ``None`` keeps
        it. ``mirror`` / ``norm_points``: the scheme of user data (``images``, ``coco``; see
        :func:`acrloss.config.user_spec`). ``tta`` (horizontal-flip test-time averaging
        through the scheme's mirror map) and ``refine`` (extra passes re-cropping each face
        around its predicted points) are the photo path's settings
        (:class:`acrloss.predictor.PredictorOptions`); the result records them when set.

        Bad samples (malformed ``.pts``, points far outside the image, missing or unreadable
        image) are skipped and listed under ``"rejected"`` (``{"file", "reason"}``) with their
        count in ``"n_rejected"``; with ``strict`` any of them raises :class:`EvaluationError`.
        Raises :class:`EvaluationUsageError` for a missing data folder,
        ``FileNotFoundError`` for a missing model, :class:`EvaluationError` when the model's
        input or landmark count does not fit the data or no face could be evaluated.
        ``out_dir`` receives ``{file_prefix}ced.png`` and ``{file_prefix}per_face.csv``.
        """
        dataset = DatasetName.images if images_dir is not None else DatasetName.parse(ds_name)
        source = images_dir if images_dir is not None else data_dir
        if source is None:
            raise EvaluationUsageError("test_model: give data_dir (the dataset folder) or images_dir")
        if not Path(source).exists():
            raise EvaluationUsageError(f"{source}: data folder not found")
        rejected: list[RejectedFile] = []
        try:
            if images_dir is not None:
                found: dict[str, Any] = {"images": read_folder(images_dir, None, rejected=rejected)}
            elif dataset is DatasetName.w300:
                found = available_subsets(data_dir, subsets or dataset_spec(dataset).test_subsets, rejected=rejected)
            else:
                found = find_subsets(dataset, data_dir, subsets)
        except LandmarkFileError as exc:  # e.g. no .pts at all
            raise EvaluationError(str(exc)) from exc
        if strict and rejected:
            raise EvaluationError(f"--strict: {len(rejected)} bad samples, first {rejected[0].path}: {rejected[0].reason}")
        present = [v for v in found.values() if not isinstance(v, str) and v]
        user = dataset in (DatasetName.images, DatasetName.coco)  # the scheme comes from the files
        if user and not present:
            raise EvaluationError(f"{source}: no face to evaluate (every file rejected)")
        spec = resolve_spec(dataset, present[0] if user else None, mirror, norm_points)
        predictor = load_predictor(pretrained_model_path, spec.num_points, spec.name, margin, batch_size, decoder,
                                   tta, refine)
        result: dict[str, Any] = {
            "model": str(pretrained_model_path),
            "dataset": spec.name if images_dir is None else "images",
            "normalization": spec.norm_name,
            "failure_threshold": spec.failure_threshold,
            "input_size": predictor.input_size,
            **({"decoder": decoder} if decoder is not None else {}),
            **({"tta": True} if tta else {}),
            **({"refine": int(refine)} if refine else {}),
            "subsets": {},
            "missing": {},
        }
        curves, rows = {}, []
        for name, samples in found.items():
            if isinstance(samples, str):
                result["missing"][name] = samples
                continue
            if max_faces is not None:
                samples = samples[:max_faces]
            if not samples:
                result["missing"][name] = f"{name}: no usable face (all rejected)"
                continue
            bad_images: list[RejectedFile] = []
            pred = predictor.predict_samples(samples, rejected=bad_images, progress=True)
            rejected.extend(r for r in bad_images if r not in rejected)
            if strict and bad_images:
                raise EvaluationError(f"--strict: {len(bad_images)} unreadable images, first {bad_images[0].path}: {bad_images[0].reason}")
            ok = np.isfinite(pred).all(axis=(1, 2))
            if not ok.any():
                result["missing"][name] = f"{name}: no usable face (all images unreadable)"
                continue
            samples = [s for s, good in zip(samples, ok) if good]
            summary, errors, point_subsets = subset_report(pred[ok], samples, spec)
            result["subsets"][name] = summary
            if point_subsets:
                result.setdefault("point_subsets", {})[name] = point_subsets
            curves[name] = errors
            rows += [(name, s.image_path, float(e) * 100) for s, e in zip(samples, errors)]
        result["n_rejected"] = len(rejected)
        result["rejected"] = [r.as_dict() for r in rejected]
        if rejected:
            print(rejected_summary(rejected), file=sys.stderr)
        if not result["subsets"]:
            reasons = "; ".join(result["missing"].values()) or "nothing found"
            raise EvaluationError(f"{source}: no face to evaluate ({reasons})")
        if out_dir is not None and curves:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            plot_ced(curves, out_dir / f"{file_prefix}ced.png", threshold=spec.failure_threshold)
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["subset", "image", "nme_percent"])
            w.writerows(rows)
            atomic_write_bytes(out_dir / f"{file_prefix}per_face.csv", buf.getvalue().encode())
        return result


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of a :meth:`Test.test_model` result."""
    tag = f"{round(float(result.get('failure_threshold', 0.10)) * 100, 6):g}"
    fr, au = f"fr{tag.replace('.', '_')}", f"auc{tag.replace('.', '_')}"
    lines = [f"{'subset':<12}{'n':>6}{'NME %':>9}{'FR@' + tag + ' %':>10}{'AUC@' + tag:>9}   ({result['normalization']})"]
    for name, r in result["subsets"].items():
        lines.append(f"{name:<12}{r['n']:>6}{r['nme']:>9.3f}{r[fr]:>10.2f}{r[au]:>9.4f}")
        for part, q in result.get("point_subsets", {}).get(name, {}).items():
            lines.append(f"{'  ' + part + ' pts':<12}{q['n']:>6}{q['nme']:>9.3f}{q[fr]:>10.2f}{q[au]:>9.4f}")
    for name, why in result["missing"].items():
        lines.append(f"{name:<12}  not evaluated: {why}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="acrloss-test", description="Evaluate a landmark checkpoint: NME, FR, AUC, CED.")
    p.add_argument("--model", required=True, help=".h5 checkpoint")
    p.add_argument("--dataset", default="300w", choices=[n.value for n in DatasetName],
                   help="300w | wflw | cofw | cofw68 | aflw | images | coco (see docs/datasets.md)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data-dir", default=None, help="the dataset folder (300-W: or env ACRLOSS_300W); --dataset coco: the JSON file")
    src.add_argument("--images", help="any folder of images with a .pts beside each (subset 'images')")
    p.add_argument("--subsets", nargs="+", default=None, help="default: the dataset's test subsets")
    p.add_argument("--mirror", default=None, help="user data (--images, --dataset coco): the mirror map (JSON list or file)")
    p.add_argument("--norm-points", nargs="+", default=None, metavar="A B | box",
                   help="user data: NME normalization, two point indices or 'box' (default: box; 68 points: 36 45)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--out-dir", help="CED plot and per-face CSV (default: beside --json; named after its stem: "
                                     "r.json -> r_ced.png, r_per_face.csv)")
    p.add_argument("--strict", action="store_true", help="fail (exit 1) on any bad sample instead of skipping and listing it")
    p.add_argument("--max-faces", type=int, default=None)
    p.add_argument("--decoder", choices=Decoder.choices(), default=None,
                   help="heatmap models: decode with this instead of the checkpoint's own decoder")
    p.add_argument("--tta", action="store_true",
                   help="horizontal-flip test-time averaging (the photo path's default; twice the model calls)")
    p.add_argument("--refine", type=int, default=0,
                   help="extra passes re-cropping each face around its predicted points (default 0)")
    a = p.parse_args(argv)
    if a.images is None and a.data_dir is None and a.dataset == DatasetName.w300.value:
        a.data_dir = os.environ.get("ACRLOSS_300W")
    if a.images is None and a.data_dir is None:
        p.error("give --data-dir (or set ACRLOSS_300W for 300-W) or --images")
    from acrloss.data_prep.user_options import parse_mirror, parse_norm_points
    out_dir = a.out_dir or (str(Path(a.json).parent) if a.json else None)
    prefix = f"{Path(a.json).stem}_" if a.json else ""
    try:
        result = Test().test_model(a.dataset, a.model, data_dir=None if a.images else a.data_dir, images_dir=a.images,
                                   subsets=a.subsets, out_dir=out_dir, max_faces=a.max_faces, decoder=a.decoder,
                                   mirror=parse_mirror(a.mirror), norm_points=parse_norm_points(a.norm_points),
                                   strict=a.strict, file_prefix=prefix, tta=a.tta, refine=a.refine)
    except (EvaluationUsageError, FileNotFoundError) as exc:
        _fail(exc, 2)
    except (EvaluationError, LandmarkFileError, ValueError, OSError) as exc:
        _fail(exc, 1)
    print(format_table(result))
    if a.json:
        atomic_write_bytes(a.json, json.dumps(result, indent=1).encode())
    return result


def _fail(exc: BaseException, code: int) -> None:
    """One line on stderr, then exit ``code``."""
    print(f"acrloss-test: error: {' '.join(str(exc).split())}", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
