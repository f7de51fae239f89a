"""Write normalized labels, one ``.npy`` per face (the input of :class:`PCAUtility`).

CLI: ``acrloss-prep --dataset 300w --data-dir DIR --subset train --out DIR [--input-size 224]``
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from acrloss.config import CropConfig, DatasetName
from acrloss.data_prep.datasets import Sample, load_split
from acrloss.data_prep.formats import save_npy_atomic
from acrloss.data_prep.pipeline import normalized_labels


def write_label_npys(samples: Sequence[Sample], out_dir: str | os.PathLike, crop: CropConfig) -> list[Path]:
    """One ``{image stem}.npy`` (flat normalized ``[x0, y0, ...]``) per face in ``out_dir``."""
    out_dir = Path(out_dir)
    labels = normalized_labels(samples, crop)
    paths = []
    for sample, row in zip(samples, labels):
        rel = Path(sample.image_path)
        path = out_dir / f"{rel.parent.name}__{rel.stem}.npy"
        save_npy_atomic(path, row)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="acrloss-prep", description="Write normalized landmark labels as .npy files.")
    p.add_argument("--dataset", default="300w", help="300w, wflw, cofw, cofw68, aflw, images or coco (docs/datasets.md)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--subset", default="train")
    p.add_argument("--out", required=True)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--margin", type=float, default=CropConfig.margin)
    a = p.parse_args(argv)
    samples = load_split(DatasetName.parse(a.dataset), a.data_dir, a.subset)
    paths = write_label_npys(samples, a.out, CropConfig(a.input_size, a.margin))
    print(f"wrote {len(paths)} label files to {a.out}")


if __name__ == "__main__":
    main()
