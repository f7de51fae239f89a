"""Copy a folder of images + iBUG ``.pts`` files with every image shrunk, for carrying.

Training on a borrowed GPU machine means carrying the training faces there in a few tens of
megabytes. This writes the same layout (sub-folders, file names, ``counts.json`` and other
non-image files) with each image's longer side shrunk to at most ``--max-side`` pixels and
saved as JPEG at ``--quality``, and each ``.pts`` rescaled with the pixel-centre convention
(0-based centre ``x`` maps to ``(x + 0.5) * s - 0.5``). Images already small enough are
re-encoded only. Greyscale images stay single-channel.

    python scripts/shrink_landmark_folder.py ../shared/data/300w /tmp/300w_small \
        --subsets afw helen/trainset lfpw/trainset --max-side 256 --quality 90
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from acrloss.data_prep.datasets import read_pts_sample
from acrloss.data_prep.formats import LandmarkFileError, write_pts


def shrink_one(pts_path: Path, src_root: Path, dst_root: Path, max_side: int, quality: int) -> int:
    """Shrink one face (image + points); returns the bytes written for the image."""
    try:
        sample = read_pts_sample(pts_path, num_points=None)  # the image beside it, points checked
    except LandmarkFileError as exc:
        raise SystemExit(str(exc)) from None
    image = cv2.imread(sample.image_path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SystemExit(f"{sample.image_path}: cannot decode image")
    points = sample.points
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        sx, sy = size[0] / w, size[1] / h
        points = (points + 0.5) * np.array([sx, sy]) - 0.5
    rel = pts_path.relative_to(src_root)
    out_pts = dst_root / rel
    out_pts.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SystemExit(f"{sample.image_path}: cannot encode JPEG")
    out_pts.with_suffix(".jpg").write_bytes(buf.tobytes())
    write_pts(out_pts, points)
    return len(buf)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--subsets", nargs="*", default=None, help="sub-folders to copy (default: all)")
    p.add_argument("--max-side", type=int, default=256)
    p.add_argument("--quality", type=int, default=90)
    a = p.parse_args(argv)
    if a.dst.exists() and any(a.dst.iterdir()):
        raise SystemExit(f"{a.dst}: not empty")
    folders = [a.src / s for s in a.subsets] if a.subsets else [a.src]
    total = faces = 0
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"{folder}: no such folder")
        for pts_path in sorted(folder.rglob("*.pts")):
            total += shrink_one(pts_path, a.src, a.dst, a.max_side, a.quality)
            faces += 1
    for extra in a.src.iterdir():  # counts.json, README and the like
        if extra.is_file() and extra.suffix not in (".pts", ".jpg", ".png"):
            shutil.copy2(extra, a.dst / extra.name)
    print(f"{faces} faces, {total / 2**20:.1f} MiB of images in {a.dst}")


if __name__ == "__main__":
    main()
