"""``Test``: evaluate a checkpoint per subset (NME / FR / AUC, CED plot, per-face CSV).

CLI (also the root ``test.py`` and the ``acrloss-test`` console script)::

    test.py --model PATH --dataset 300w --data-dir DIR --json OUT
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

from acrloss.config import CropConfig, DatasetName, dataset_spec
from acrloss.data_prep.crop import denormalize
from acrloss.data_prep.datasets import Sample, available_subsets, read_folder
from acrloss.data_prep.formats import atomic_write_bytes
from acrloss.data_prep.pipeline import LandmarkSequence
from acrloss.metrics import nme as nme_fn, plot_ced, summarize
from acrloss.models import landmarks_from_output, load_model


def predict_samples(model, samples: Sequence[Sample], crop: CropConfig, batch_size: int = 32) -> np.ndarray:
    """Landmarks ``(M, N, 2)`` in each sample's original image coordinates."""
    seq = LandmarkSequence(samples, crop, batch_size=batch_size, return_transforms=True, workers=1)
    out = []
    for i in tqdm(range(len(seq)), desc="predict", unit="batch", disable=not sys.stderr.isatty()):
        images, _, transforms = seq[i]
        pred = landmarks_from_output(model(images, training=False)).reshape(len(images), -1, 2)
        for p, t in zip(pred, transforms):
            out.append(t.inverse(denormalize(p, crop.input_size)))
    return np.stack(out)


class Test:
    """Evaluate ``.h5`` checkpoints.

    ``Test().test_model(ds_name=DatasetName.w300, pretrained_model_path="m.h5", data_dir=DIR)``
    returns ``{"subsets": {"common": {"n", "nme", "fr10", "auc10"}, ...}, "missing": {...}}``
    with NME and FR in percent, normalized by the dataset's NME points (300-W: the outer eye
    corners 36/45), FR = share of faces with NME > 10 %, AUC = area under the CED up to
    10 % divided by 0.1. Subsets whose folders are absent are listed under ``missing``.
    """

    def test_model(
        self,
        ds_name: DatasetName | str = DatasetName.w300,
        pretrained_model_path: str | os.PathLike = "",
        data_dir: str | os.PathLike | None = None,
        images_dir: str | os.PathLike | None = None,
        subsets: Sequence[str] = ("common", "challenging", "full"),
        out_dir: str | os.PathLike | None = None,
        margin: float = CropConfig.margin,
        batch_size: int = 32,
        max_faces: int | None = None,
        decoder: str | None = None,
    ) -> dict[str, Any]:
        """Evaluate one checkpoint (see the class docstring). ``decoder`` (heatmap models
        only: ``argmax``, ``quarter``, ``dark``, ``keyposs``) replaces the decoder saved in the
        checkpoint; ``None`` keeps it."""
        spec = dataset_spec(DatasetName.images if images_dir is not None else ds_name)
        model = load_model(pretrained_model_path)
        if decoder is not None:
            from acrloss.models.heatmap import set_decoder

            try:
                set_decoder(model, decoder)
            except ValueError as exc:
                raise ValueError(f"{pretrained_model_path}: {exc}") from exc
        crop = CropConfig(int(model.input_shape[1]), margin)
        if images_dir is not None:
            found: dict[str, Any] = {"images": read_folder(images_dir, spec.num_points)}
        else:
            if data_dir is None:
                raise ValueError("test_model: give data_dir (the 300-W folder) or images_dir")
            found = available_subsets(data_dir, subsets)
        result: dict[str, Any] = {
            "model": str(pretrained_model_path),
            "dataset": spec.name if images_dir is None else "images",
            "normalization": spec.norm_name,
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
            pred = predict_samples(model, samples, crop, batch_size)
            gt = np.stack([s.points for s in samples])
            errors = nme_fn(pred, gt, spec.norm_points)
            result["subsets"][name] = summarize(errors)
            curves[name] = errors
            rows += [(name, s.image_path, float(e) * 100) for s, e in zip(samples, errors)]
        if out_dir is not None and curves:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            plot_ced(curves, out_dir / "ced.png")
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["subset", "image", "nme_percent"])
            w.writerows(rows)
            atomic_write_bytes(out_dir / "per_face.csv", buf.getvalue().encode())
        return result


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of a :meth:`Test.test_model` result."""
    lines = [f"{'subset':<12}{'n':>6}{'NME %':>9}{'FR@10 %':>10}{'AUC@10':>9}   ({result['normalization']})"]
    for name, r in result["subsets"].items():
        lines.append(f"{name:<12}{r['n']:>6}{r['nme']:>9.3f}{r['fr10']:>10.2f}{r['auc10']:>9.4f}")
    for name, why in result["missing"].items():
        lines.append(f"{name:<12}  not evaluated: {why}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="acrloss-test", description="Evaluate a landmark checkpoint: NME, FR, AUC, CED.")
    p.add_argument("--model", required=True, help=".h5 checkpoint")
    p.add_argument("--dataset", default="300w", choices=[DatasetName.w300.value])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data-dir", default=os.environ.get("ACRLOSS_300W"), help="300-W folder (or env ACRLOSS_300W)")
    src.add_argument("--images", help="any folder of images with a .pts beside each (subset 'images')")
    p.add_argument("--subsets", nargs="+", default=["common", "challenging", "full"])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--out-dir", help="CED plot and per-face CSV (default: beside --json)")
    p.add_argument("--max-faces", type=int, default=None)
    p.add_argument("--decoder", choices=["argmax", "quarter", "dark", "keyposs"], default=None,
                   help="heatmap models: decode with this instead of the checkpoint's own decoder")
    a = p.parse_args(argv)
    if a.images is None and a.data_dir is None:
        raise SystemExit("acrloss-test: give --data-dir (or set ACRLOSS_300W) or --images")
    out_dir = a.out_dir or (str(Path(a.json).parent) if a.json else None)
    result = Test().test_model(a.dataset, a.model, data_dir=None if a.images else a.data_dir, images_dir=a.images,
                               subsets=a.subsets, out_dir=out_dir, max_faces=a.max_faces, decoder=a.decoder)
    print(format_table(result))
    if a.json:
        atomic_write_bytes(a.json, json.dumps(result, indent=1).encode())
    return result


if __name__ == "__main__":
    main()
