"""``Test``: evaluate a checkpoint per subset (NME / FR / AUC, CED plot, per-face CSV).

CLI (also the root ``test.py`` and the ``acrloss-test`` console script)::

    test.py --model PATH --dataset 300w --data-dir DIR --json OUT
    test.py --model PATH --dataset wflw --data-dir DIR [--subsets test pose blur]
    test.py --model PATH --images DIR --json OUT
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
from tqdm import tqdm

from acrloss.config import CropConfig, DatasetName
from acrloss.data_prep.crop import denormalize
from acrloss.data_prep.datasets import Sample
from acrloss.data_prep.subsets import find_subsets, resolve_spec
from acrloss.dataset_metrics import subset_report
from acrloss.data_prep.formats import atomic_write_bytes
from acrloss.data_prep.pipeline import LandmarkSequence
from acrloss.metrics import plot_ced
from acrloss.models import landmarks_from_output, load_model


def predict_samples(model, samples: Sequence[Sample], crop: CropConfig, batch_size: int = 32,
                    num_points: int | None = None) -> np.ndarray:
    """Landmarks ``(M, N, 2)`` in each sample's original image coordinates (``num_points``:
    the count the model must predict)."""
    seq = LandmarkSequence(samples, crop, batch_size=batch_size, return_transforms=True, workers=1)
    out = []
    for i in tqdm(range(len(seq)), desc="predict", unit="batch", disable=not sys.stderr.isatty()):
        images, _, transforms = seq[i]
        pred = landmarks_from_output(model(images, training=False), num_points).reshape(len(images), -1, 2)
        for p, t in zip(pred, transforms):
            out.append(t.inverse(denormalize(p, crop.input_size)))
    return np.stack(out)


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
    ) -> dict[str, Any]:
        """Evaluate one checkpoint (see the class docstring). ``subsets`` ``None``: the
        dataset's test subsets. ``decoder`` (heatmap models only: ``argmax``, ``quarter``,
        ``dark``, ``keyposs``) replaces the decoder saved in the checkpoint; ``None`` keeps
        it. ``mirror`` / ``norm_points``: the scheme of user data (``images``, ``coco``; see
        :func:`acrloss.config.user_spec`)."""
        dataset = DatasetName.images if images_dir is not None else DatasetName.parse(ds_name)
        if images_dir is not None:
            found: dict[str, Any] = {"images": find_subsets(dataset, images_dir, ("images",))["images"]}
        else:
            if data_dir is None:
                raise ValueError("test_model: give data_dir (the dataset folder) or images_dir")
            found = find_subsets(dataset, data_dir, subsets)
        present = [v for v in found.values() if not isinstance(v, str)]
        user = dataset in (DatasetName.images, DatasetName.coco)  # the scheme comes from the files
        spec = resolve_spec(dataset, present[0] if user and present else None, mirror, norm_points)
        model = load_model(pretrained_model_path)
        if decoder is not None:
            from acrloss.models.heatmap import set_decoder

            try:
                set_decoder(model, decoder)
            except ValueError as exc:
                raise ValueError(f"{pretrained_model_path}: {exc}") from exc
        crop = CropConfig(int(model.input_shape[1]), margin)
        out = model.output.get("landmarks") if isinstance(model.output, dict) else model.output
        width = None if out is None or isinstance(out, (list, tuple)) else out.shape[-1]
        if width is not None and int(width) != spec.num_coords:
            raise ValueError(f"{pretrained_model_path}: the model predicts {int(width) // 2} points; {spec.name} has "
                             f"{spec.num_points} (wrong point count)")
        result: dict[str, Any] = {
            "model": str(pretrained_model_path),
            "dataset": spec.name if images_dir is None else "images",
            "normalization": spec.norm_name,
            "failure_threshold": spec.failure_threshold,
            "input_size": crop.input_size,
            **({"decoder": decoder} if decoder is not None else {}),
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
            pred = predict_samples(model, samples, crop, batch_size, spec.num_points)
            summary, errors, point_subsets = subset_report(pred, samples, spec)
            result["subsets"][name] = summary
            if point_subsets:
                result.setdefault("point_subsets", {})[name] = point_subsets
            curves[name] = errors
            rows += [(name, s.image_path, float(e) * 100) for s, e in zip(samples, errors)]
        if out_dir is not None and curves:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            plot_ced(curves, out_dir / "ced.png", threshold=spec.failure_threshold)
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["subset", "image", "nme_percent"])
            w.writerows(rows)
            atomic_write_bytes(out_dir / "per_face.csv", buf.getvalue().encode())
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
    p.add_argument("--out-dir", help="CED plot and per-face CSV (default: beside --json)")
    p.add_argument("--max-faces", type=int, default=None)
    p.add_argument("--decoder", choices=["argmax", "quarter", "dark", "keyposs"], default=None,
                   help="heatmap models: decode with this instead of the checkpoint's own decoder")
    a = p.parse_args(argv)
    if a.images is None and a.data_dir is None and a.dataset == DatasetName.w300.value:
        a.data_dir = os.environ.get("ACRLOSS_300W")
    if a.images is None and a.data_dir is None:
        raise SystemExit("acrloss-test: give --data-dir (or set ACRLOSS_300W for 300-W) or --images")
    from acrloss.data_prep.user_options import parse_mirror, parse_norm_points
    out_dir = a.out_dir or (str(Path(a.json).parent) if a.json else None)
    result = Test().test_model(a.dataset, a.model, data_dir=None if a.images else a.data_dir, images_dir=a.images,
                               subsets=a.subsets, out_dir=out_dir, max_faces=a.max_faces, decoder=a.decoder,
                               mirror=parse_mirror(a.mirror), norm_points=parse_norm_points(a.norm_points))
    print(format_table(result))
    if a.json:
        atomic_write_bytes(a.json, json.dumps(result, indent=1).encode())
    return result


if __name__ == "__main__":
    main()
