"""Landmarks on video: tracking, identities, One Euro smoothing, video files in and out.

::

    from acrloss.align import FaceAligner
    from acrloss.video import TrackConfig, read_video

    aligner = FaceAligner()
    for result in aligner.track(read_video("clip.mp4"), TrackConfig(detect_every=10)):
        for face in result.faces:
            face.id, face.landmarks            # (68, 2), smoothed, 0-based pixel centres

    # or, on the command line:  acrloss align clip.mp4 --out DIR

How a frame is processed (:func:`track_faces`):

1. **Detect** every ``detect_every`` frames, when there is no face yet, or when a track was
   lost on the previous frame. Detections are matched to the tracks by the IoU of the
   calibrated detector box with the track's landmark box (greedy, highest IoU first,
   ``match_iou`` at least); an unmatched detection starts a new track with a new id; a
   track that ``max_missed`` detection passes in a row do not confirm ends.
2. **Track** every other frame, and every matched track on a detection frame, by the
   refine path of :class:`acrloss.align.FaceAligner`: the crop is the landmark-extent crop
   of the track's previous (raw) landmarks, averaged over the last two frames and moved by
   their centroid's last frame-to-frame motion (constant velocity). The averaging matters:
   fed its own output, the crop -> prediction loop can oscillate in size from frame to
   frame (seen on real faces: 3.5x the jitter). All faces of a frame share one model call.
3. **Lost**: a face whose new landmark box overlaps the box it was cropped from by less
   than ``lost_iou``, or that left the image, is not reported on that frame and triggers
   a detection on the next frame, where it can be matched again and keep its id. Two
   tracks that settle on one face (box IoU above ``duplicate_iou``) are merged into the
   older one.
4. **Smooth** each track's landmarks with a :class:`OneEuroFilter` (Casiez, Roussel and
   Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input in
   Interactive Systems", CHI 2012): a low-pass filter whose cutoff rises with speed, so
   a still face does not jitter and a moving one is not lagged. The speed is that of the
   face as a whole (the least-squares similarity motion of its 68 points, in face sizes
   per second), so noise on single points does not open the filter. Crops always follow
   the raw landmarks: smoothing never feeds back into tracking.

Video files are read with OpenCV (:func:`read_video`, any container/codec its FFmpeg
backend reads); a frame that cannot be decoded is reported (:attr:`FrameResult.error`)
and skipped, not fatal. :func:`process_video` writes the annotated video and the per-frame
CSV and JSON (``acrloss align VIDEO --out DIR``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import cv2
import numpy as np

from acrloss.data_prep.crop import face_box
from acrloss.detectors import box_iou
from acrloss.pose import HeadPose, estimate_pose

if TYPE_CHECKING:  # pragma: no cover
    from acrloss.align import FaceAligner
    from acrloss.predictor import LandmarkPredictor

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file (by its suffix, :data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


# ---------------------------------------------------------------------------- One Euro filter
def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def similarity_speed(points: np.ndarray, velocity: np.ndarray) -> float:
    """RMS over the points of the least-squares similarity (translation, rotation, scale)
    velocity field fitted to per-point ``velocity`` at ``points`` (both ``(N, 2)``)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    v = np.asarray(velocity, dtype=np.float64).reshape(-1, 2)
    c = p - p.mean(0)
    # v = [a, -b; b, a] c + t  ->  least squares in (a, b, tx, ty)
    a_mat = np.zeros((2 * len(p), 4))
    a_mat[0::2] = np.stack([c[:, 0], -c[:, 1], np.ones(len(p)), np.zeros(len(p))], 1)
    a_mat[1::2] = np.stack([c[:, 1], c[:, 0], np.zeros(len(p)), np.ones(len(p))], 1)
    sol, *_ = np.linalg.lstsq(a_mat, v.reshape(-1), rcond=None)
    fitted = (a_mat @ sol).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum(fitted ** 2, axis=1))))


class OneEuroFilter:
    """One Euro filter (Casiez et al., CHI 2012) for ``(N, 2)`` landmark arrays.

    ``min_cutoff`` (Hz): the cutoff at rest (lower = less jitter, more lag at slow speed);
    ``beta`` (Hz per face size per second): how fast the cutoff rises with speed (higher
    = less lag in fast motion); ``d_cutoff`` (Hz): the cutoff of the speed estimate. The
    speed is :func:`similarity_speed` of the filtered derivative divided by ``scale``
    (the face size in pixels given with each sample), one value for the whole face.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"OneEuroFilter: need min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"{min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None
        self.last_cutoff = float(min_cutoff)

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """The filtered value of sample ``x`` taken at time ``t`` (seconds, increasing)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0:
            raise ValueError(f"OneEuroFilter: timestamps must increase, got {t} after {self._t}")
        if x.shape != self._x.shape:
            raise ValueError(f"OneEuroFilter: shape changed from {self._x.shape} to {x.shape}")
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        speed = similarity_speed(self._x, self._dx) / max(float(scale), 1e-9) if x.ndim == 2 else float(
            np.sqrt(np.mean(self._dx ** 2)) / max(float(scale), 1e-9))
        cutoff = self.min_cutoff + self.beta * speed
        self.last_cutoff = cutoff
        a = _alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = float(t)
        return self._x.copy()


# ---------------------------------------------------------------------------- config and results
@dataclass(frozen=True)
class TrackConfig:
    """Options of :func:`track_faces` (see the module docs for what each step does).

    ``detect_every``: frames between detections (1 = every frame). ``smooth``: One Euro
    smoothing on/off, with ``min_cutoff`` (Hz), ``beta`` and ``d_cutoff`` (Hz), chosen on
    clips made from the 300-W *train* split (``benchmarks/jitter.py --subset train --clips 4
    --sweep``; ``docs/video.md``): the grid's lowest jitter.
    ``fps``: the frame rate when frames carry no timestamps (a video's own rate is used
    by :func:`read_video`). ``return_pose``: head pose per face (:mod:`acrloss.pose`).
    """

    detect_every: int = 10
    smooth: bool = True
    min_cutoff: float = 1.0
    beta: float = 10.0
    d_cutoff: float = 10.0
    fps: float = 30.0
    match_iou: float = 0.3
    lost_iou: float = 0.5
    duplicate_iou: float = 0.6
    max_missed: int = 2
    return_pose: bool = False

    def __post_init__(self) -> None:
        if int(self.detect_every) < 1:
            raise ValueError(f"TrackConfig: detect_every must be >= 1, got {self.detect_every}")
        if self.fps <= 0:
            raise ValueError(f"TrackConfig: fps must be > 0, got {self.fps}")
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError("TrackConfig: need min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        for name in ("match_iou", "lost_iou", "duplicate_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TrackConfig: {name} must be in [0, 1], got {getattr(self, name)}")
        if int(self.max_missed) < 0:
            raise ValueError(f"TrackConfig: max_missed must be >= 0, got {self.max_missed}")


@dataclass
class Frame:
    """One frame of a video: ``image`` (RGB uint8) or ``None`` with the decoding ``error``."""

    index: int
    time: float
    image: np.ndarray | None
    error: str | None = None


@dataclass
class TrackedFace:
    """One face on one frame: its track ``id``, smoothed ``landmarks`` (what to use),
    the model's ``raw_landmarks``, the landmark ``box`` and, when asked, its ``pose``."""

    id: int
    landmarks: np.ndarray
    raw_landmarks: np.ndarray
    box: np.ndarray
    detected: bool
    pose: HeadPose | None = None


@dataclass
class FrameResult:
    """The faces of one frame. ``error`` is set (and ``faces`` empty) for a frame that could
    not be read; ``detected`` says whether the detector ran on it."""

    index: int
    time: float
    faces: list[TrackedFace] = field(default_factory=list)
    detected: bool = False
    error: str | None = None
    width: int = 0
    height: int = 0
    image: np.ndarray | None = field(default=None, repr=False)  # the RGB frame the faces are on


@dataclass
class _Track:
    id: int
    raw: np.ndarray
    prev_raw: np.ndarray | None
    filter: OneEuroFilter | None
    missed: int = 0
    lost: bool = False
    age: int = 0

    def predicted(self) -> np.ndarray:
        """Where the face should be on the next frame: the mean of the last two raw shapes
        (it damps the two-frame size oscillation the crop -> prediction loop can fall into)
        moved by the centroid's constant velocity (1.5 frames from the mean's time)."""
        if self.prev_raw is None or self.lost:
            return self.raw
        return (self.raw + self.prev_raw) / 2.0 + 1.5 * (self.raw.mean(0) - self.prev_raw.mean(0))


def _as_frames(frames: Iterable[Any], fps: float) -> Iterator[Frame]:
    for k, item in enumerate(frames):
        if isinstance(item, Frame):
            yield item
        elif item is None:
            yield Frame(k, k / fps, None, "no image (None)")
        else:
            yield Frame(k, k / fps, item)


def video_predictor(aligner: "FaceAligner") -> "LandmarkPredictor":
    """The aligner's :class:`acrloss.predictor.LandmarkPredictor` as the tracker runs it: one
    pass, no TTA, ``compiled`` (a Keras model on the TensorFlow backend runs through one
    cached ``tf.function``: eager Keras calls cost several times more than the network per
    frame). It shares the aligner's loaded model (and its traced graph)."""
    return aligner.predictor.with_options(compiled=True, refine=0, tta=False)


def _face_size(points: np.ndarray) -> float:
    b = face_box(points)
    return float(max(b[2] - b[0], b[3] - b[1], 1.0))


# ---------------------------------------------------------------------------- the tracker
def track_faces(aligner: "FaceAligner", frames: Iterable[Any], config: TrackConfig | None = None) -> Iterator[FrameResult]:
    """Per-frame faces for an iterable of frames (RGB/greyscale arrays, or :class:`Frame`
    objects as :func:`read_video` yields); see the module docs. A frame that is ``None``,
    an error :class:`Frame`, or an array that is not an image yields a :class:`FrameResult`
    with ``error`` set and the tracks kept for the next frame."""
    from acrloss.data_prep.images import to_rgb  # noqa: PLC0415

    cfg = config or TrackConfig()
    tracks: list[_Track] = []
    next_id = 0
    since_detect = cfg.detect_every  # detect on the first frame
    force_detect = True
    predictor = video_predictor(aligner)
    for fr in _as_frames(frames, cfg.fps):
        if fr.image is None:
            yield FrameResult(fr.index, fr.time, error=fr.error or "unreadable frame")
            continue
        try:
            rgb = to_rgb(np.asarray(fr.image), f"frame {fr.index}")
            if rgb.shape[0] < 2 or rgb.shape[1] < 2:
                raise ValueError(f"frame {fr.index}: image too small {rgb.shape}")
        except (ValueError, TypeError) as exc:
            yield FrameResult(fr.index, fr.time, error=str(exc))
            continue
        h, w = rgb.shape[:2]
        detect = force_detect or since_detect >= cfg.detect_every - 1 or not tracks
        force_detect = False
        # -- crops: one per active track, plus one per new detection
        jobs: list[tuple[_Track | None, np.ndarray]] = []  # (track or None=new, basis box the crop is cut around)
        matched: set[int] = set()
        if detect:
            since_detect = 0
            _, boxes, _ = aligner.detect(rgb)
            cal = [aligner.crop_box(b) for b in boxes]
            pairs = sorted(((box_iou(face_box(t.predicted()), c), ti, di) for ti, t in enumerate(tracks)
                            for di, c in enumerate(cal)), reverse=True)
            used_t: set[int] = set()
            used_d: set[int] = set()
            for iou, ti, di in pairs:
                if iou < cfg.match_iou or ti in used_t or di in used_d:
                    continue
                used_t.add(ti)
                used_d.add(di)
                t = tracks[ti]
                t.missed = 0
                matched.add(t.id)
                if t.lost:  # its last points are unreliable: restart from the detection
                    t.raw, t.prev_raw, t.lost = None, None, False  # type: ignore[assignment]
                    if t.filter is not None:
                        t.filter.reset()
                    jobs.append((t, cal[di]))
            for ti, t in enumerate(tracks):
                if ti not in used_t:
                    t.missed += 1
            tracks = [t for t in tracks if t.missed <= cfg.max_missed]
            for di, c in enumerate(cal):
                if di not in used_d:
                    t = _Track(next_id, None, None,  # type: ignore[arg-type]
                               OneEuroFilter(cfg.min_cutoff, cfg.beta, cfg.d_cutoff) if cfg.smooth else None)
                    next_id += 1
                    matched.add(t.id)
                    tracks.append(t)
                    jobs.append((t, c))
        else:
            since_detect += 1
        queued = {id(j[0]) for j in jobs}
        for t in tracks:
            if id(t) not in queued and not t.lost:
                basis = face_box(t.predicted())
                jobs.append((t, basis))
        # -- model: detector-box crops get one refine pass (as tracked faces start from points)
        results: dict[int, tuple[_Track, np.ndarray, np.ndarray]] = {}
        if jobs:
            pts = list(predictor.predict(rgb, [basis for _, basis in jobs]).points)
            fresh = [k for k, (t, _) in enumerate(jobs) if t is not None and t.raw is None and np.all(np.isfinite(pts[k]))]
            if fresh:
                again = predictor.predict(rgb, [face_box(pts[k]) for k in fresh]).points
                for k, p in zip(fresh, again):
                    pts[k] = p
            for (t, basis), p in zip(jobs, pts):
                results[id(t)] = (t, p, basis)
        # -- lost faces, duplicates, smoothing
        faces: list[TrackedFace] = []
        alive: list[_Track] = []
        for t in tracks:
            if id(t) not in results:  # lost earlier, waiting for a detection
                alive.append(t)
                continue
            _, p, basis = results[id(t)]
            nb = face_box(p)
            inside = box_iou(nb, np.array([0.0, 0.0, w - 1.0, h - 1.0])) > 0 and \
                (min(nb[2], w - 1) - max(nb[0], 0)) * (min(nb[3], h - 1) - max(nb[1], 0)) > 0.5 * (nb[2] - nb[0]) * (nb[3] - nb[1])
            fresh_track = t.raw is None
            if not np.all(np.isfinite(p)) or not inside or (not fresh_track and box_iou(nb, basis) < cfg.lost_iou):
                if fresh_track:  # a detection the model cannot follow: drop it
                    continue
                t.lost = True
                force_detect = True
                alive.append(t)
                continue
            t.prev_raw, t.raw = (None if fresh_track else t.raw), p
            t.age += 1
            alive.append(t)
        # duplicates: two tracks on one face -> keep the older (smaller id)
        alive.sort(key=lambda t: t.id)
        kept: list[_Track] = []
        for t in alive:
            if not t.lost and any(not k.lost and box_iou(face_box(k.raw), face_box(t.raw)) > cfg.duplicate_iou for k in kept):
                continue
            kept.append(t)
        tracks = kept
        for t in tracks:
            if t.lost or id(t) not in results:
                continue
            smooth = t.filter(t.raw, fr.time, _face_size(t.raw)) if t.filter is not None else t.raw.copy()
            pose = estimate_pose(smooth, (w, h)) if cfg.return_pose else None
            faces.append(TrackedFace(t.id, smooth, t.raw.copy(), face_box(smooth), detect and t.id in matched, pose))
        yield FrameResult(fr.index, fr.time, faces, detect, None, w, h, rgb)


# ---------------------------------------------------------------------------- video files
def read_video(path: str | os.PathLike, max_bad_run: int = 25) -> Iterator[Frame]:
    """RGB :class:`Frame` objects of a video file, read with OpenCV.

    A frame that cannot be decoded yields ``Frame(index, time, None, error)`` and reading
    goes on with the next one, as long as the container says more frames follow (its frame
    count) and fewer than ``max_bad_run`` frames in a row failed. Raises
    :class:`FileNotFoundError` / :class:`ValueError` naming the file when it is missing or
    no reader opens it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: cannot open the video (not a video, or a codec OpenCV cannot read)")
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        fps = fps if fps > 0 and math.isfinite(fps) else 30.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index, bad = 0, 0
        while True:
            ok = cap.grab()
            image = None
            if ok:
                ok, image = cap.retrieve()
            if not ok or image is None:
                if count > 0 and index < count and bad < max_bad_run:
                    bad += 1
                    yield Frame(index, index / fps, None, f"{path}: frame {index} cannot be decoded (corrupt data)")
                    index += 1
                    continue
                if count > 0 and index < count:
                    yield Frame(index, index / fps, None,
                                f"{path}: {max_bad_run} frames in a row cannot be decoded; stopped at frame {index} "
                                f"of {count}")
                break
            bad = 0
            if image.ndim == 3 and image.shape[2] == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            yield Frame(index, index / fps, image)
            index += 1
    finally:
        cap.release()


def video_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"fps", "frames", "width", "height"}`` as the container reports them (0 when unknown)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: cannot open the video (not a video, or a codec OpenCV cannot read)")
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        return {"fps": float(fps) if fps > 0 and math.isfinite(fps) else 30.0,
                "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)}
    finally:
        cap.release()


@dataclass
class VideoSummary:
    """What :func:`process_video` wrote and found."""

    video: str
    frames: int
    frames_read: int
    corrupt_frames: list[dict[str, Any]]
    faces: int
    tracks: int
    seconds: float
    outputs: dict[str, str]


def csv_header(num_points: int = 68, pose: bool = False) -> list[str]:
    """The per-frame CSV columns: one row per face per frame."""
    cols = ["frame", "time_s", "face_id", "detected"]
    cols += [f"{c}{k}" for k in range(num_points) for c in ("x", "y")]
    if pose:
        cols += ["yaw", "pitch", "roll"]
    return cols


def process_video(
    aligner: "FaceAligner",
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    name: str | None = None,
    config: TrackConfig | None = None,
    progress: bool = True,
    codec: str = "mp4v",
) -> VideoSummary:
    """Track the faces of a video file and write, under ``out_dir``:

    - ``NAME_aligned.mp4``: the video with each face's landmarks, id and (with
      ``config.return_pose``) pose axes drawn; frames that could not be read are left out;
    - ``NAME.csv``: one row per face per frame (:func:`csv_header`; 0-based pixel centres);
    - ``NAME.json``: the video's properties, the options, the unreadable frames and every
      frame's faces (id, box, landmarks, pose).

    Each file is written under a temporary name and renamed when complete. Unreadable frames
    are reported on stderr and in the JSON (``"corrupt_frames"``) and skipped. A progress
    bar (tqdm, on stderr) shows with ``progress=True``.
    """
    import time  # noqa: PLC0415

    from tqdm import tqdm  # noqa: PLC0415

    from acrloss.align import draw_landmarks  # noqa: PLC0415
    from acrloss.io import atomic_write_bytes  # noqa: PLC0415

    cfg = config or TrackConfig()
    path = Path(path)
    out_dir = Path(out_dir)
    name = name or path.stem
    info = video_info(path)
    cfg_run = TrackConfig(**{**asdict(cfg), "fps": info["fps"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    video_out = out_dir / f"{name}_aligned.mp4"
    tmp_video = out_dir / f".{name}_aligned.tmp.mp4"
    writer = None
    rows: list[list[Any]] = []
    frames_json: list[dict[str, Any]] = []
    corrupt: list[dict[str, Any]] = []
    ids: set[int] = set()
    n_faces = n_read = n_total = 0
    t0 = time.time()
    bar = tqdm(total=info["frames"] or None, unit="frame", desc=path.name, disable=not progress, file=sys.stderr)
    try:
        for res in track_faces(aligner, read_video(path), cfg_run):
            n_total += 1
            bar.update(1)
            if res.error is not None:
                corrupt.append({"frame": res.index, "error": res.error})
                bar.write(f"acrloss: {res.error}; skipped", file=sys.stderr)
                continue
            n_read += 1
            faces = res.faces
            n_faces += len(faces)
            ids.update(f.id for f in faces)
            for f in faces:
                row: list[Any] = [res.index, round(res.time, 4), f.id, int(f.detected)]
                row += [round(float(v), 3) for v in f.landmarks.reshape(-1)]
                if cfg.return_pose and f.pose is not None:
                    row += [round(f.pose.yaw, 2), round(f.pose.pitch, 2), round(f.pose.roll, 2)]
                rows.append(row)
            frames_json.append({
                "frame": res.index, "time": round(res.time, 4), "detected": res.detected,
                "faces": [{"id": f.id, "box": [round(float(v), 3) for v in f.box],
                           "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in f.landmarks],
                           **({"pose": f.pose.as_dict()} if f.pose is not None else {})} for f in faces],
            })
            if writer is None:
                writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*codec), info["fps"],
                                         (res.width, res.height))
                if not writer.isOpened():
                    raise ValueError(f"{video_out}: OpenCV cannot write video with the {codec!r} codec")
            canvas = draw_landmarks(res.image, [f.landmarks for f in faces], poses=[f.pose for f in faces] if cfg.return_pose else None)
            for f in faces:
                x0, y0 = int(f.box[0]), int(f.box[1]) - 6
                cv2.putText(canvas, f"#{f.id}", (x0, max(12, y0)), cv2.FONT_HERSHEY_SIMPLEX,
                            max(0.4, (f.box[2] - f.box[0]) / 250.0), (255, 255, 0), 1, cv2.LINE_AA)
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    except BaseException:
        if writer is not None:
            writer.release()
        tmp_video.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    if writer is not None:
        writer.release()
        os.replace(tmp_video, video_out)
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(csv_header(68, cfg.return_pose))
    wr.writerows(rows)
    csv_out = out_dir / f"{name}.csv"
    atomic_write_bytes(csv_out, buf.getvalue().encode())
    record = {
        "video": str(path), "width": info["width"], "height": info["height"], "fps": info["fps"],
        "frames": n_total, "frames_read": n_read, "corrupt_frames": corrupt,
        "model": aligner.model_path or type(aligner.model).__name__,
        "options": asdict(cfg_run),
        "coordinates": "0-based pixel centres (x, y) of the video frame",
        "pose_convention": "degrees; yaw > 0: face turned to the image right, pitch > 0: chin up, roll > 0: clockwise"
        if cfg.return_pose else None,
        "frames_faces": frames_json,
    }
    json_out = out_dir / f"{name}.json"
    atomic_write_bytes(json_out, (json.dumps(record) + "\n").encode())
    outputs = {"csv": str(csv_out), "json": str(json_out)}
    if writer is not None:
        outputs["video"] = str(video_out)
    return VideoSummary(str(path), n_total, n_read, corrupt, n_faces, len(ids), round(time.time() - t0, 2), outputs)



def video_only_options(a: Any) -> list[str]:
    """Warnings for ``acrloss align`` options that apply to videos only, given without a video."""
    if getattr(a, "videos_done", False):  # the videos of this command were processed already
        return []
    given = [flag for flag, on in (("--detect-every", getattr(a, "detect_every", 10) != 10),
                                   ("--no-smooth", getattr(a, "no_smooth", False)),
                                   ("--pose", getattr(a, "pose", False))) if on]
    return [f"{', '.join(given)}: apply to video files only; no video among the inputs"] if given else []


def align_videos_command(a: Any, videos: list[str]) -> int:
    """``acrloss align VIDEO... --out DIR`` (called by :mod:`acrloss.cli`): exit status 0 when
    every video was processed (unreadable frames are reported and skipped), 1 when a video
    could not be opened, 2 for usage errors (unknown model, bad option, missing package)."""
    from acrloss.align import FaceAligner  # noqa: PLC0415
    from acrloss.detectors import DlibHOGDetector  # noqa: PLC0415

    def err(msg: str) -> None:
        print(f"acrloss: {msg}", file=sys.stderr)

    try:
        cfg = TrackConfig(detect_every=a.detect_every, smooth=not a.no_smooth, return_pose=a.pose)
        aligner = FaceAligner(a.model, detector=DlibHOGDetector(upsample=a.upsample,
                                                                grey=getattr(a, "detector", "dlib") == "dlib"))
    except (ImportError, FileNotFoundError, ValueError, TypeError) as exc:
        err(str(exc))
        return 2
    if getattr(a, "refine", 0):
        err("--refine has no effect on videos: tracked faces are re-cropped around their landmarks on every frame")
    out_dir = Path(a.out)
    status = 0
    used: set[str] = set()
    for v in videos:
        name, k = Path(v).stem, 1
        while name in used:
            k += 1
            name = f"{Path(v).stem}_{k}"
        used.add(name)
        try:
            summary = process_video(aligner, v, out_dir, name, cfg, progress=sys.stderr.isatty())
        except (FileNotFoundError, ValueError, OSError) as exc:
            err(f"skipping {exc}" if str(v) in str(exc) else f"skipping {v}: {exc}")
            status = 1
            continue
        bad = len(summary.corrupt_frames)
        print(f"{v}: {summary.frames_read} frame(s) read, {bad} unreadable (skipped), {summary.faces} face(s) in "
              f"{summary.tracks} track(s) -> {', '.join(summary.outputs.values())}")
    return status
