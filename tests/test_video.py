"""Video (acrloss.video): One Euro filter, identities through a cross-over, corrupt frames, CLI."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from acrloss.data_prep.crop import CropTransform, face_box
from acrloss.video import Frame, OneEuroFilter, TrackConfig, is_video, read_video, similarity_speed


# ---------------------------------------------------------------------------- One Euro filter
def _face(rng: np.random.Generator, size: float = 100.0) -> np.ndarray:
    return rng.uniform(0, size, size=(68, 2))


def test_one_euro_low_jitter_at_rest():
    rng = np.random.default_rng(0)
    base = _face(rng)
    f = OneEuroFilter(min_cutoff=1.0, beta=10.0, d_cutoff=10.0)
    noisy = [base + rng.normal(0, 1.0, base.shape) for _ in range(120)]
    out = [f(x, k / 30.0, 100.0) for k, x in enumerate(noisy)]
    step_in = np.sqrt(np.mean([np.sum((b - a) ** 2, 1) for a, b in zip(noisy[60:], noisy[61:])]))
    step_out = np.sqrt(np.mean([np.sum((b - a) ** 2, 1) for a, b in zip(out[60:], out[61:])]))
    assert step_out < 0.25 * step_in  # frame-to-frame jitter cut by more than 4x
    assert np.sqrt(np.mean((np.mean(out[60:], 0) - base) ** 2)) < 0.5  # and no drift


def test_one_euro_little_lag_in_fast_motion_and_adapts_its_cutoff():
    rng = np.random.default_rng(1)
    base = _face(rng)
    v = np.array([6.0, -3.0])  # px per frame, face size 100 px: fast motion
    adaptive = OneEuroFilter(min_cutoff=1.0, beta=10.0, d_cutoff=10.0)
    fixed = OneEuroFilter(min_cutoff=1.0, beta=0.0, d_cutoff=10.0)
    lags_a, lags_f = [], []
    for k in range(60):
        x = base + k * v + rng.normal(0, 0.3, base.shape)
        ya, yf = adaptive(x, k / 30.0, 100.0), fixed(x, k / 30.0, 100.0)
        if k >= 30:
            truth = base + k * v
            lags_a.append(np.mean(np.linalg.norm(ya - truth, axis=1)))
            lags_f.append(np.mean(np.linalg.norm(yf - truth, axis=1)))
    assert np.mean(lags_a) < 2.5  # under half a frame's motion behind
    assert np.mean(lags_a) < 0.1 * np.mean(lags_f)  # the speed-adaptive cutoff is what removes the lag
    assert adaptive.last_cutoff > 10 * fixed.last_cutoff


def test_similarity_speed_sees_rigid_motion_not_noise():
    rng = np.random.default_rng(2)
    pts = _face(rng)
    assert similarity_speed(pts, np.tile([3.0, 4.0], (68, 1))) == pytest.approx(5.0)
    rot = (pts - pts.mean(0)) @ np.array([[0, -1], [1, 0]]).T * 0.1  # a pure rotation field
    assert similarity_speed(pts, rot) == pytest.approx(np.sqrt(np.mean(np.sum(rot ** 2, 1))))
    assert similarity_speed(pts, rng.normal(0, 1.0, (68, 2))) < 0.5  # zero-mean noise averages out


def test_one_euro_rejects_bad_input():
    f = OneEuroFilter()
    f(np.zeros((68, 2)), 0.0)
    with pytest.raises(ValueError, match="increase"):
        f(np.zeros((68, 2)), 0.0)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros((5, 2)), 1.0)
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError, match="detect_every"):
        TrackConfig(detect_every=0)


def test_is_video():
    assert is_video("a/b.MP4") and is_video("x.avi") and not is_video("x.jpg") and not is_video("folder")


# ---------------------------------------------------------------------------- clips of real faces
@pytest.fixture(scope="module")
def aligner():
    from acrloss.align import FaceAligner

    return FaceAligner()


def _patch(sample, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A real face cut out as a ``side`` px square (face box = 1/1.6 of it) and its points."""
    from acrloss.data_prep.images import read_image

    t = CropTransform.from_box(face_box(sample.points), side, margin=0.6)
    return t.warp(read_image(sample.image_path)), t.forward(sample.points)


def _background(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    small = rng.integers(60, 200, size=(h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def two_faces(w300_common):
    from acrloss.detectors import DlibHOGDetector

    det = DlibHOGDetector()
    found = []
    for s in w300_common[::23]:  # two real faces the detector finds in a 150 px patch
        patch, pts = _patch(s, 150)
        if len(det(patch)) == 1:
            found.append((patch, pts))
        if len(found) == 2:
            return found
    pytest.skip("the detector found fewer than two faces")


def test_tracking_keeps_identities_when_two_faces_cross(aligner, two_faces):
    """Face A goes left -> right, face B right -> left just below it; B's patch covers the
    bottom of A's while they pass. Each keeps its id through the cross-over."""
    (pa, ga), (pb, gb) = two_faces
    h, w, side, n = 380, 520, 150, 36
    bg = _background(h, w)
    frames, gts = [], []
    for k in range(n):
        xa = int(round(20 + k * (w - side - 40) / (n - 1)))
        xb = int(round(w - side - 20 - k * (w - side - 40) / (n - 1)))
        ya, yb = 30, 30 + int(0.75 * side)
        img = bg.copy()
        img[ya:ya + side, xa:xa + side] = pa
        img[yb:yb + side, xb:xb + side] = pb  # B drawn over A where they overlap
        frames.append(img)
        gts.append((ga + [xa, ya], gb + [xb, yb]))
    results = list(aligner.track(frames, TrackConfig(detect_every=5)))
    assert len(results) == n
    ids_a, ids_b = [], []
    for r, (g_a, g_b) in zip(results, gts):
        for f in r.faces:
            da = np.mean(np.linalg.norm(f.landmarks - g_a, axis=1))
            db = np.mean(np.linalg.norm(f.landmarks - g_b, axis=1))
            eye = np.linalg.norm(g_a[45] - g_a[36])
            assert min(da, db) < 0.25 * eye, f"frame {r.index}: a face far from both true faces"
            (ids_a if da < db else ids_b).append(f.id)
    assert len(ids_a) >= n - 2 and len(ids_b) >= n - 2  # both faces found on (almost) every frame
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1, (ids_a, ids_b)  # one id each, never swapped
    assert ids_a[0] != ids_b[0]
    assert gts[0][0][:, 0].mean() < gts[0][1][:, 0].mean() and gts[-1][0][:, 0].mean() > gts[-1][1][:, 0].mean()
    assert sum(r.detected for r in results) < n  # tracked, not detected, on most frames


def _moving_clip(sample, n: int, size=(320, 240)) -> tuple[list[np.ndarray], np.ndarray]:
    from acrloss.data_prep.images import read_image

    image = read_image(sample.image_path)
    box = face_box(sample.points)
    c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    s = 120.0 / max(box[2] - box[0], box[3] - box[1])
    frames, gts = [], []
    for k in range(n):
        m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), 0.5 * k, s)
        m[:, 2] += np.array([size[0] / 2 + 1.5 * k - 10, size[1] / 2]) - c
        frames.append(cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        gts.append(sample.points @ m[:, :2].T + m[:, 2])
    return frames, np.stack(gts)


def _write_mjpg(path, frames, fps=10.0) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert w.isOpened()
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()


def _corrupt_frame(path, index: int) -> None:
    """Wipe the start (SOI marker and headers) of the ``index``-th JPEG in an MJPG file."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i] == 0xFF and data[i + 1] == 0xD8 and data[i + 2] == 0xFF]
    k = starts[index]
    data[k:k + 300] = bytes(300)
    path.write_bytes(bytes(data))


def test_track_skips_unreadable_frames_and_keeps_tracking(aligner, w300_common):
    frames, gts = _moving_clip(w300_common[3], 8)
    items: list = list(frames)
    items[3] = None
    items[5] = Frame(5, 5 / 30.0, None, "frame 5: bad data")
    items[6] = np.zeros((1, 1, 3), np.uint8)
    results = list(aligner.track(items, detect_every=4, return_pose=True))
    assert [r.index for r in results] == list(range(8))
    assert [r.error is not None for r in results] == [False, False, False, True, False, True, True, False]
    assert "bad data" in results[5].error
    for r, g in zip(results, gts):
        if r.error is None:
            assert len(r.faces) == 1 and r.faces[0].id == 0
            assert np.mean(np.linalg.norm(r.faces[0].landmarks - g, axis=1)) < 0.15 * np.linalg.norm(g[45] - g[36])
            assert r.faces[0].pose is not None and abs(r.faces[0].pose.yaw) < 60


def test_video_with_a_corrupt_frame_is_processed_to_the_end(aligner, w300_common, tmp_path):
    from acrloss.video import process_video

    frames, gts = _moving_clip(w300_common[3], 12)
    clip = tmp_path / "clip.avi"
    _write_mjpg(clip, frames)
    _corrupt_frame(clip, 5)
    read = list(read_video(clip))
    assert len(read) == 12 and [f.index for f in read if f.image is None] == [5]  # the file really is corrupt

    summary = process_video(aligner, clip, tmp_path / "out", config=TrackConfig(return_pose=True), progress=False)
    assert summary.frames == 12 and summary.frames_read == 11
    assert [c["frame"] for c in summary.corrupt_frames] == [5] and "frame 5" in summary.corrupt_frames[0]["error"]
    record = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert record["frames"] == 12 and [c["frame"] for c in record["corrupt_frames"]] == [5]
    assert [f["frame"] for f in record["frames_faces"]] == [k for k in range(12) if k != 5]
    rows = list(csv.DictReader((tmp_path / "out" / "clip.csv").open()))
    assert [int(r["frame"]) for r in rows] == [k for k in range(12) if k != 5]  # the frames after 5 are there
    last = np.array([[float(rows[-1][f"x{i}"]), float(rows[-1][f"y{i}"])] for i in range(68)])
    assert np.mean(np.linalg.norm(last - gts[11], axis=1)) < 0.15 * np.linalg.norm(gts[11][45] - gts[11][36])
    assert "yaw" in rows[0]
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip_aligned.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 11
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary file left


def test_cli_align_video(w300_common, tmp_path, capsys):
    from acrloss.cli import main

    frames, _ = _moving_clip(w300_common[7], 6)
    clip = tmp_path / "walk.avi"
    _write_mjpg(clip, frames)
    assert main(["align", str(clip), "--out", str(tmp_path / "o"), "--detect-every", "3"]) == 0
    out = capsys.readouterr().out
    assert "6 frame(s) read, 0 unreadable" in out
    for name in ("walk_aligned.mp4", "walk.csv", "walk.json"):
        assert (tmp_path / "o" / name).is_file()
    record = json.loads((tmp_path / "o" / "walk.json").read_text())
    assert record["options"]["detect_every"] == 3 and len(record["frames_faces"]) == 6
    # a video and a photo together: each gets its outputs; video-only options on photos are reported
    from acrloss.data_prep.images import read_image

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    assert main(["align", str(clip), str(photo), "--out", str(tmp_path / "o3"), "--pose"]) == 0
    assert (tmp_path / "o3" / "walk.csv").is_file() and (tmp_path / "o3" / "photo.json").is_file()
    assert "yaw" in (tmp_path / "o3" / "walk.csv").read_text().splitlines()[0]
    assert "apply to video files only" not in capsys.readouterr().err
    assert main(["align", str(photo), "--out", str(tmp_path / "o4"), "--no-smooth"]) == 0
    assert "--no-smooth: apply to video files only" in capsys.readouterr().err
    assert read_image(tmp_path / "o4" / "photo_aligned.jpg").shape == frames[0].shape
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert main(["align", str(tmp_path / "bad.mp4"), "--out", str(tmp_path / "o2")]) == 1
    assert "bad.mp4" in capsys.readouterr().err
