"""What ``acrloss align`` writes for a batch of photos, and how the files are named.

For each photo, under the output folder (keeping the layout below each given folder)::

    NAME.json              the record: image, size, model, detector, faces (box, score, landmarks, pts file)
    NAME_aligned.jpg|png   the photo with every face's landmarks and detector box drawn
    NAME.pts               1-based iBUG points of the only face, or with several faces
    NAME_face0.pts, ...    one file per face, by detector score

and once per run ``align_manifest.json`` (:data:`MANIFEST_NAME`): every input photo with
its status (``ok``, ``no_face``, ``unreadable``, ``failed``), its files and its error, and
the counts. File names in the JSON and the manifest are relative to the output folder. A
photo without a face and a photo that cannot be read or written get no files
(they are named on stderr and listed in the manifest).

Naming never collides. ``NAME`` is the photo's file stem (its path below a given folder);
two photos whose *file sets* could share a file get distinct names (``_2``, ``_3``, ...),
whatever the number of faces later found: ``good.jpg`` (``good_face0.pts`` when it holds
two faces) and ``good_face0.jpg`` become ``good`` and ``good_face0_2``. Names are compared
case-insensitively (for case-insensitive file systems) and the manifest's name is reserved.
A name too long for the file system (255 bytes with the longest suffix) is shortened to a
prefix plus ``~`` and 8 hex digits of its hash. Names depend only on the input paths, so
re-running gives the same names.

Re-running into the same folder replaces a photo's files: before its new files are written,
the files the previous run wrote for it (listed by the old manifest, for the same photo, and
by the old ``NAME.json``) are removed, so no stale ``NAME_face3.pts`` stays beside a new
one-face result. Files written earlier in the same run are never removed or overwritten.

Coordinates in the JSON: the original photo's 0-based pixel centres (x, y). ``box`` is the
face detector's raw box and can extend beyond the image (dlib's boxes do, for faces at the
border); ``box_in_image`` is the same box clipped to the pixel centres ``[0, W-1] x [0, H-1]``.
Landmarks are never clipped: points of a face cut by the border may lie outside the image.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

MANIFEST_NAME = "align_manifest.json"
#: longest suffix a photo's name gets: ``_aligned.jpg`` (12), ``_face9999.pts`` (13)
LONGEST_SUFFIX = len("_face9999.pts")
NAME_MAX_BYTES = 255
OUTPUT_SUFFIXES = (".json", ".pts", ".jpg", ".png")
STATUSES = ("ok", "no_face", "unreadable", "failed")


# ---------------------------------------------------------------------------- names
def pts_names(name: str, num_faces: int) -> list[str]:
    """The ``.pts`` file names for a photo's faces: ``NAME.pts`` for one, ``NAME_faceK.pts`` for several."""
    if num_faces == 1:
        return [f"{name}.pts"]
    return [f"{name}_face{k}.pts" for k in range(num_faces)]


def output_files(name: str, num_faces: int, image_format: str) -> list[str]:
    """Every file a photo named ``name`` with ``num_faces`` faces gets (none without a face)."""
    if num_faces == 0:
        return []
    return [*pts_names(name, num_faces), f"{name}_aligned.{image_format}", f"{name}.json"]


def _key(name: str) -> str:
    return name.casefold()


def names_conflict(a: str, b: str) -> bool:
    """Whether photos named ``a`` and ``b`` could write the same file for some face counts.

    Their files are ``N.json``, ``N_aligned.EXT``, ``N.pts`` and ``N_faceK.pts``; two names
    share one exactly when they are equal or one is the other plus ``_faceK``
    (case-insensitively).
    """
    a, b = _key(a), _key(b)
    if a == b:
        return True
    return bool(re.fullmatch(re.escape(a) + r"_face\d+", b) or re.fullmatch(re.escape(b) + r"_face\d+", a))


def fit_name(name: str, max_bytes: int = NAME_MAX_BYTES - LONGEST_SUFFIX) -> str:
    """``name`` with its last path component shortened to ``max_bytes`` UTF-8 bytes (a prefix,
    ``~`` and 8 hex digits of the whole name's SHA-1) when it is longer."""
    head, _, last = name.rpartition("/")
    if len(last.encode()) <= max_bytes:
        return name
    tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    short = last
    while len((short + tag).encode()) > max_bytes:
        short = short[:-1]
    return f"{head}/{short}{tag}" if head else short + tag


def assign_names(bases: Sequence[str]) -> list[str]:
    """Output names for photos with these base names (in order): each fitted to the length
    limit and distinct, per :func:`names_conflict`, from the earlier ones and from the
    manifest (``_2``, ``_3``, ... appended)."""
    reserved = [Path(MANIFEST_NAME).stem]
    out: list[str] = []
    for base in bases:
        base = fit_name(base)
        name, k = base, 1
        while any(names_conflict(name, other) for other in reserved):
            k += 1
            name = fit_name(f"{base}_{k}")
        reserved.append(name)
        out.append(name)
    return out


# ---------------------------------------------------------------------------- records
def clip_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """``(x0, y0, x1, y1)`` clipped to the pixel centres ``[0, width-1] x [0, height-1]``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx = lambda v: min(max(v, 0.0), float(width - 1))  # noqa: E731
    cy = lambda v: min(max(v, 0.0), float(height - 1))  # noqa: E731
    return [cx(x0), cy(y0), cx(x1), cy(y1)]


@dataclass
class PhotoResult:
    """One input photo's outcome, as listed in the manifest."""

    image: str
    name: str
    status: str
    faces: int = 0
    files: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"image": self.image, "name": self.name, "status": self.status, "faces": self.faces,
                             "files": self.files}
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass
class RunSummary:
    """The outcome of :func:`align_photos`."""

    results: list[PhotoResult]
    manifest: Path
    removed_stale: list[str]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def faces(self) -> int:
        return sum(r.faces for r in self.results if r.status == "ok")

    @property
    def processed(self) -> int:
        """Photos read and handled to the end (written, or found to hold no face)."""
        return self.count("ok") + self.count("no_face")


# ---------------------------------------------------------------------------- stale files
def _inside(out_dir: Path, rel: Any) -> str | None:
    """``rel`` as a clean relative path inside ``out_dir`` with an output suffix, else None."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        return None
    parts = Path(rel).parts
    if ".." in parts or Path(rel).suffix.lower() not in OUTPUT_SUFFIXES or rel == MANIFEST_NAME:
        return None
    return Path(rel).as_posix()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def previous_files(out_dir: Path, old_manifest: dict[str, Any] | None, image: Path, name: str) -> set[str]:
    """Files an earlier run wrote for this photo or under this name: the old manifest's entry
    for the same image, the files the old ``NAME.json`` lists, and ``NAME_aligned.jpg|png``."""
    found: set[str] = set()
    if old_manifest is not None:
        try:
            same = str(image.resolve())
            for entry in old_manifest.get("images", []):
                if isinstance(entry, dict) and entry.get("image_resolved") == same:
                    found.update(f for f in map(lambda r: _inside(out_dir, r), entry.get("files", [])) if f)
        except (AttributeError, TypeError, OSError):
            pass
    old = _read_json(out_dir / f"{name}.json")
    if old is not None:
        listed = list(old.get("files", [])) if isinstance(old.get("files"), list) else []
        for face in old.get("faces", []) if isinstance(old.get("faces"), list) else []:
            if isinstance(face, dict):
                listed.append(face.get("pts"))
        found.update(f for f in map(lambda r: _inside(out_dir, r), listed) if f)
        found.update({f"{name}_aligned.jpg", f"{name}_aligned.png", f"{name}.json"})
    return found


# ---------------------------------------------------------------------------- the run
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"acrloss: {msg}", file=sys.stderr)


def align_photos(
    aligner: Any,
    images: Sequence[tuple[Path, str]],
    out_dir: Path,
    image_format: str = "jpg",
    inputs: Sequence[str] = (),
    detector_name: str = "",
    model_name: str = "",
    out: Log = print,
    err: Log = _stderr,
) -> RunSummary:
    """Align every photo of ``images`` (``(path, output name)``, names from :func:`assign_names`)
    and write its files under ``out_dir`` (see the module docs); a photo that cannot be read,
    aligned or written is named through ``err``, listed in the manifest and skipped.

    ``aligner``: a :class:`acrloss.align.FaceAligner`. ``out_dir`` must be a folder (or not
    exist yet). Returns the per-photo results, the manifest path and the stale files removed.
    """
    from acrloss import __version__  # noqa: PLC0415
    from acrloss.align import draw_landmarks, encode_image  # noqa: PLC0415
    from acrloss.data_prep.formats import LandmarkFileError, write_pts  # noqa: PLC0415
    from acrloss.io import atomic_write_bytes  # noqa: PLC0415
    from acrloss.data_prep.images import read_image  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_NAME
    old_manifest = _read_json(manifest_path)
    header: dict[str, Any] = {
        "tool": "acrloss align",
        "version": __version__,
        "inputs": [str(p) for p in inputs],
        "model": model_name,
        "detector": detector_name,
        "refine": getattr(aligner, "refine", None),
        "tta": getattr(aligner, "tta", None),
        "image_format": image_format,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "coordinates": "0-based pixel centres (x, y) of the original image; the .pts files are 1-based",
    }

    def write_manifest(results: list[PhotoResult], removed: list[str], complete: bool) -> None:
        counts = {s: sum(r.status == s for r in results) for s in STATUSES}
        counts["faces"] = sum(r.faces for r in results if r.status == "ok")
        body = {**header, "complete": complete, "counts": counts,
                "images": [{**r.as_dict(), "image_resolved": str(Path(r.image).resolve())} for r in results],
                "removed_stale": removed}
        atomic_write_bytes(manifest_path, (json.dumps(body, indent=1) + "\n").encode())

    results: list[PhotoResult] = []
    removed: list[str] = []
    written: set[str] = set()  # casefolded relative paths of every file this run wrote
    write_manifest(results, removed, complete=False)  # an interrupted run leaves "complete": false

    for path, name in images:
        try:
            image = read_image(path)
        except (LandmarkFileError, OSError) as exc:
            msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            err(f"skipping {msg}")
            results.append(PhotoResult(str(path), name, "unreadable", error=msg))
            continue
        try:
            aligned = aligner.align_faces(image)
            faces, boxes, scores = [f.points for f in aligned], [f.box for f in aligned], [f.score for f in aligned]
        except Exception as exc:  # noqa: BLE001  (a per-image failure must not end the batch)
            msg = f"{path}: landmark detection failed ({type(exc).__name__}: {exc})"
            err(f"skipping {msg}")
            results.append(PhotoResult(str(path), name, "failed", error=msg))
            continue

        # the previous run's files of this photo (never a file this run wrote)
        for rel in sorted(previous_files(out_dir, old_manifest, path, name)):
            target = out_dir / rel
            if _key(rel) in written or not target.is_file():
                continue
            try:
                target.unlink()
                removed.append(rel)
            except OSError as exc:
                err(f"{target}: cannot remove the previous run's file ({exc.strerror or exc})")

        if not faces:
            err(f"{path}: no face found (skipped: no files written)")
            results.append(PhotoResult(str(path), name, "no_face"))
            continue

        names = pts_names(name, len(faces))
        files = output_files(name, len(faces), image_format)
        clash = [f for f in files if _key(f) in written]
        if clash:  # cannot happen with assign_names; a guard, never an overwrite
            msg = f"{path}: output name {clash[0]} already written by this run"
            err(f"skipping {msg}")
            results.append(PhotoResult(str(path), name, "failed", error=msg))
            continue
        height, width = image.shape[:2]
        record = {
            "image": str(path),
            "width": int(width),
            "height": int(height),
            "model": model_name,
            "detector": detector_name,
            "refine": header["refine"],
            "tta": header["tta"],
            "coordinates": header["coordinates"] + "; box: the detector's raw box (may extend beyond the image), "
                           "box_in_image: clipped to [0, W-1] x [0, H-1]; landmarks are not clipped",
            "files": files,
            "faces": [
                {"box": [round(float(v), 3) for v in box],
                 "box_in_image": [round(v, 3) for v in clip_box(box, width, height)],
                 "score": round(float(score), 4),
                 "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in pts], "pts": pts_name,
                 # quality: flip disagreement (NME-like fraction, lower is better; None without tta)
                 "flip_disagreement": None if f.flip_disagreement is None else round(f.flip_disagreement, 5)}
                for pts, box, score, pts_name, f in zip(faces, boxes, scores, names, aligned)
            ],
        }
        done: list[str] = []
        try:
            for pts, pts_name in zip(faces, names):
                write_pts(out_dir / pts_name, pts)
                done.append(pts_name)
            image_name = f"{name}_aligned.{image_format}"
            atomic_write_bytes(out_dir / image_name, encode_image(draw_landmarks(image, faces, boxes), image_format))
            done.append(image_name)
            json_name = f"{name}.json"  # last: a JSON present means its files are complete
            atomic_write_bytes(out_dir / json_name, (json.dumps(record, indent=1) + "\n").encode())
            done.append(json_name)
        except (OSError, ValueError) as exc:
            for rel in done:  # nothing half-written: drop this photo's new files
                try:
                    (out_dir / rel).unlink()
                except OSError:
                    pass
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            msg = f"{path}: cannot write its outputs under {out_dir} as {name!r} ({reason})"
            err(f"skipping {msg}")
            results.append(PhotoResult(str(path), name, "failed", error=msg))
            continue
        written.update(_key(f) for f in files)
        results.append(PhotoResult(str(path), name, "ok", faces=len(faces), files=files))
        out(f"{path}: {len(faces)} face(s) -> {', '.join(str(out_dir / f) for f in files)}")

    write_manifest(results, removed, complete=True)
    return RunSummary(results, manifest_path, removed)
