"""Fixture builders for the dataset readers (issue 18): the real sample faces of
``../shared/data/samples`` written, in a temporary folder, in each dataset's official layout.

Every writer here follows the published layout independently of the library's readers:
WFLW's ``list_98pt_rect_attr_*.txt`` lines, COFW's MATLAB v7.3 ``.mat`` (h5py, the layout
mmpose's ``parse_cofw_dataset.py`` reads), COFW-68's ``<i>_points.mat`` (scipy, MATLAB v5),
and mmpose's COCO-style JSON. The ground truth is read straight from the sample JSONs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import w300_path


def samples_path() -> Path:
    """``../shared/data/samples`` (beside the 300-W folder)."""
    return w300_path().parent / "samples"


def require_samples() -> Path:
    path = samples_path()
    if not (path / "wflw" / "test_wflw.json").is_file():
        pytest.skip(f"sample faces not found at {path}")
    return path


def sample_faces(dataset: str) -> list[dict]:
    """The faces of ``samples/<dataset>/test_<dataset>.json`` as plain dicts (ground truth):
    ``image`` (path), ``points`` (N, 2), ``v`` (N,), ``bbox`` [x, y, w, h], ``box_size``."""
    root = require_samples() / dataset
    doc = json.loads((root / f"test_{dataset}.json").read_text())
    files = {img["id"]: img["file_name"] for img in doc["images"]}
    faces = []
    for ann in doc["annotations"]:
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        faces.append({"image": root / files[ann["image_id"]], "points": kp[:, :2].copy(), "v": kp[:, 2].copy(),
                      "bbox": [float(v) for v in ann["bbox"]], "box_size": ann.get("box_size"), "id": ann["id"]})
    return faces


def link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


# ---------------------------------------------------------------------------------- WFLW
def wflw_line(points: np.ndarray, rect: list[float], flags: list[int], rel_path: str) -> str:
    """One line of ``list_98pt_rect_attr_*.txt``: 196 coordinates, x_min y_min x_max y_max,
    pose expression illumination make-up occlusion blur, the image path."""
    values = [repr(float(v)) for v in np.asarray(points).reshape(-1)] + [repr(float(v)) for v in rect]
    return " ".join(values + [str(int(f)) for f in flags] + [rel_path])


#: attribute flags given to the four WFLW sample faces in the fixture
WFLW_FLAGS = [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 1], [0, 0, 0, 1, 1, 0]]


def build_wflw_official(root: Path, faces: list[dict] | None = None, flags: list[list[int]] | None = None,
                        train_faces: list[dict] | None = None, event: str = "36--Football") -> Path:
    """``root/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt``
    and ``root/WFLW_images/<event>/...``; the test list holds ``faces`` (default: the samples)."""
    faces = sample_faces("wflw") if faces is None else faces
    flags = WFLW_FLAGS if flags is None else flags
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True, exist_ok=True)
    for split, group, group_flags in (("test", faces, flags), ("train", train_faces or faces, None)):
        lines = []
        for k, face in enumerate(group):
            rel = f"{event}/{Path(face['image']).name}"
            if not (root / "WFLW_images" / rel).exists():
                link(Path(face["image"]), root / "WFLW_images" / rel)
            x, y, w, h = face["bbox"]
            lines.append(wflw_line(face["points"], [x, y, x + w, y + h], (group_flags or [[0] * 6] * len(group))[k], rel))
        (lists / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def build_mmpose_coco(root: Path, dataset: str, files: dict[str, list[int] | None]) -> Path:
    """mmpose's ``annotations/<name>.json`` (a copy of the sample JSON, or only the annotations
    at the given indices) and ``images/``."""
    src = require_samples() / dataset
    doc = json.loads((src / f"test_{dataset}.json").read_text())
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for img in doc["images"]:
        link(src / img["file_name"], root / "images" / img["file_name"])
    for name, keep in files.items():
        part = dict(doc)
        if keep is not None:
            part["annotations"] = [doc["annotations"][i] for i in keep]
        (root / "annotations" / f"{name}.json").write_text(json.dumps(part))
    return root


# ---------------------------------------------------------------------------------- COFW
def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_cofw_mat(path: Path, split: str, images: list[np.ndarray], phis: np.ndarray, boxes: np.ndarray) -> Path:
    """A MATLAB v7.3 file as COFW ships it: a 512-byte MATLAB header before the HDF5 data;
    ``IsT`` an N x 1 cell (h5py (1, N) object references into ``#refs#``), each image
    H x W x 3 uint8 stored column-major (h5py (3, W, H)); ``phisT`` N x 87 (h5py (87, N));
    ``bboxesT`` N x 4 (h5py (4, N))."""
    import h5py

    names = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}[split]
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        cell = f.create_dataset(names[0], shape=(1, len(images)), dtype=h5py.ref_dtype)
        for k, image in enumerate(images):
            d = refs.create_dataset(f"i{k}", data=np.asarray(image, dtype=np.uint8).transpose(2, 1, 0))
            d.attrs["MATLAB_class"] = np.bytes_("uint8")
            cell[0, k] = d.ref
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        for name, arr in ((names[1], phis), (names[2], boxes)):
            d = f.create_dataset(name, data=np.asarray(arr, dtype=np.float64).T)
            d.attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    return path


def build_cofw_official(root: Path, faces: list[dict] | None = None) -> Path:
    """``root/COFW_test_color.mat`` and ``root/COFW_train_color.mat`` holding the COFW sample
    faces: phis = [x + 1, y + 1, occluded] (MATLAB 1-based; occluded = 2 - v as mmpose
    converts back), boxes = the JSON bbox."""
    faces = sample_faces("cofw") if faces is None else faces
    images = [rgb(f["image"]) for f in faces]
    phis = np.stack([np.concatenate([f["points"][:, 0] + 1, f["points"][:, 1] + 1, 2 - f["v"]]) for f in faces])
    boxes = np.array([f["bbox"] for f in faces])
    root.mkdir(parents=True, exist_ok=True)
    write_cofw_mat(root / "COFW_test_color.mat", "test", images, phis, boxes)
    write_cofw_mat(root / "COFW_train_color.mat", "train", images, phis, boxes)
    return root


def build_cofw68(root: Path) -> tuple[Path, list[dict], list[np.ndarray]]:
    """A COFW-68 folder from the 68-point samples: ``COFW_test_color.mat`` holding their
    images and ``test_annotations/<i>_points.mat`` (MATLAB v5: ``Points`` 68 x 2 1-based,
    ``Occ`` 68 x 1). Returns (root, faces, the occlusion flags written)."""
    from scipy.io import savemat

    faces = sample_faces("300w")
    root.mkdir(parents=True, exist_ok=True)
    images = [rgb(f["image"]) for f in faces]
    write_cofw_mat(root / "COFW_test_color.mat", "test", images, np.zeros((len(faces), 87)), np.zeros((len(faces), 4)))
    occs = []
    for i, face in enumerate(faces):
        occ = np.zeros(68)
        occ[[3 + i, 30, 48 + i]] = 1
        occs.append(occ)
        (root / "test_annotations").mkdir(exist_ok=True)
        savemat(root / "test_annotations" / f"{i + 1}_points.mat", {"Points": face["points"] + 1.0, "Occ": occ[:, None]})
    return root, faces, occs


# ------------------------------------------------------------------ a tiny 98-point set
def build_wflw_synthetic(root: Path, train_copies: int = 6, test_copies: int = 2, size: int = 128, seed: int = 0) -> Path:
    """A small WFLW folder in the official layout made of augmented copies of the four real
    WFLW sample faces: each face is cut out (a square of twice its landmark extent, ``size``
    px), then every copy gets its own rotation (+-15 deg), scale, shift and brightness, the
    98 points moved with it. The test list cycles :data:`WFLW_FLAGS`, so every attribute
    subset holds faces."""
    rng = np.random.default_rng(seed)
    faces = sample_faces("wflw")
    groups: dict[str, list[dict]] = {"train": [], "test": []}
    flags: list[list[int]] = []
    for k, face in enumerate(faces):
        image = cv2.imread(str(face["image"]), cv2.IMREAD_COLOR)
        pts = face["points"]
        centre = (pts.min(0) + pts.max(0)) / 2
        side = 2.0 * float((pts.max(0) - pts.min(0)).max())
        for split, copies in (("train", train_copies), ("test", test_copies)):
            for c in range(copies):
                angle = rng.uniform(-15, 15)
                scale = size / side * rng.uniform(0.9, 1.1)
                m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
                m[:, 2] += (size - 1) / 2 - centre + rng.uniform(-5, 5, 2)
                crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                crop = np.clip(crop.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
                rel = f"synthetic/{split}_{k}_{c}.jpg"
                path = root / "WFLW_images" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
                moved = pts @ m[:, :2].T + m[:, 2]
                lo, hi = moved.min(0), moved.max(0)
                groups[split].append({"image": path, "points": moved, "bbox": [*lo, *(hi - lo)], "rel": rel})
                if split == "test":
                    flags.append(WFLW_FLAGS[k])
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True, exist_ok=True)
    for split, group in groups.items():
        lines = []
        for i, f in enumerate(group):
            x, y, w, h = f["bbox"]
            lines.append(wflw_line(f["points"], [x, y, x + w, y + h], flags[i] if split == "test" else [0] * 6, f["rel"]))
        (lists / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root
