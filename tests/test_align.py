"""Tests of the real-photo path: detectors, box calibration, FaceAligner, draw_landmarks, demo.

Tests on real annotated photos use ``/work/shared/data/300w/full`` (or env ``ACRLOSS_300W``)
and are skipped with a reason when it is absent. The model-output -> original-coordinates
path is tested exactly with tiny fake models whose output is known.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from acrloss.align import FaceAligner, draw_landmarks, resolve_model
from acrloss.data_prep.crop import CropTransform, face_box, normalize
from acrloss.data_prep.formats import read_pts
from acrloss.data_prep.images import read_image
from acrloss.detectors import BoxCalibration, StaticBoxes, box_iou

S = 64  # input size of the fake models
# these tests check the single-pass maths exactly: no refine pass, no flip TTA (the photo
# defaults, refine 1 + TTA, are tested in tests/test_tta.py)
SINGLE = dict(refine=0, tta=False)
MARGIN = 0.25


def _data_dir() -> Path:
    env = os.environ.get("ACRLOSS_300W")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/300w"


DATA = _data_dir()
FULL = DATA / "full"
needs_data = pytest.mark.skipif(
    not FULL.is_dir(), reason=f"300-W whole photos not found at {FULL} (set ACRLOSS_300W to the 300-W folder)"
)
# small whole photos (a single annotated face each) keep the detector fast
PHOTOS = ("lfpw/testset/image_0001.jpg", "lfpw/testset/image_0003.jpg", "helen/testset/2971848745_1.jpg")


def _dlib():
    return pytest.importorskip("dlib", reason="dlib is not installed")


def photo(rel: str) -> tuple[Path, np.ndarray]:
    path = FULL / rel
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path, read_pts(path.with_suffix(".pts"))


def constant_model(flat: np.ndarray, size: int = S) -> keras.Model:
    """A keras model whose output is ``flat`` (shape (2N,)) for every input crop."""
    inp = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    out = keras.layers.Dense(
        len(flat),
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(np.asarray(flat, dtype=np.float32)),
    )(x)
    return keras.Model(inp, out)


class RecordingModel:
    """A plain (non-keras) model object: records its input batches, returns fixed points."""

    def __init__(self, flat: np.ndarray, size: int = S) -> None:
        self.input_shape = (None, size, size, 3)
        self.flat = np.asarray(flat, dtype=np.float32)
        self.batches: list[np.ndarray] = []

    def __call__(self, x):
        self.batches.append(np.array(x))
        return np.tile(self.flat, (len(x), 1))


def expected_transform(face_box_: np.ndarray, calibrate: bool = True) -> CropTransform:
    """The crop the aligner must use, built here independently of FaceAligner."""
    box = BoxCalibration().apply(face_box_) if calibrate else np.asarray(face_box_, dtype=np.float64)
    return CropTransform.from_box(box, S, MARGIN)


def sample_portrait() -> np.ndarray:
    from acrloss.demo import sample_image_path

    return read_image(sample_image_path())


def synthetic_points(n: int = 68, seed: int = 0) -> np.ndarray:
    """Plausible normalized points inside the crop (not on its centre)."""
    return np.random.default_rng(seed).uniform(-0.35, 0.3, size=(n, 2))


# ------------------------------------------------------------------ calibration maths
def test_box_calibration_apply_and_measure_roundtrip():
    det = np.array([100.0, 50.0, 300.0, 250.0])
    gt = np.array([90.0, 80.0, 310.0, 290.0])  # centre shifted, larger, not square
    dx, dy, scale = BoxCalibration.measure(det, gt)
    np.testing.assert_allclose([dx, dy, scale], [0.0, 0.175, 1.1])
    cal = BoxCalibration(dx, dy, scale).apply(det)
    # same centre and same longer side as the landmark box -> same crop
    np.testing.assert_allclose((cal[:2] + cal[2:]) / 2, (gt[:2] + gt[2:]) / 2)
    np.testing.assert_allclose(cal[2] - cal[0], 220.0)
    np.testing.assert_allclose(CropTransform.from_box(cal, S).matrix, CropTransform.from_box(gt, S).matrix)
    np.testing.assert_allclose(BoxCalibration.identity().apply([1, 2, 5, 4]), [1, 1, 5, 5])


def test_default_calibration_is_fitted():
    cal = BoxCalibration()
    assert cal != BoxCalibration.identity(), "defaults must be the fitted dlib constants"
    assert 0.7 < cal.scale < 1.4 and abs(cal.dx) < 0.2 and abs(cal.dy) < 0.3


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


# ------------------------------------------------------------------ real photos
@needs_data
@pytest.mark.parametrize("rel", PHOTOS)
def test_detector_finds_annotated_face(rel):
    _dlib()
    from acrloss.detectors import DlibHOGDetector

    path, gt = photo(rel)
    dets = DlibHOGDetector()(read_image(path))
    assert dets, f"dlib found no face in {path}"
    for box, score in dets:
        assert box.shape == (4,) and isinstance(score, float)
    lm_box = face_box(gt)
    best = max(box_iou(BoxCalibration().apply(b), lm_box) for b, _ in dets)
    assert best > 0.3, f"{rel}: best calibrated IoU with the landmark box is {best:.2f}"


@needs_data
@pytest.mark.parametrize("rel", PHOTOS[:2])
def test_landmarks_come_back_in_original_coordinates(rel):
    _dlib()
    from acrloss.detectors import DlibHOGDetector

    path, gt = photo(rel)
    detector = DlibHOGDetector()
    dets = detector(read_image(path))
    assert dets, f"dlib found no face in {path}"
    det_box = max(dets, key=lambda d: box_iou(d[0], face_box(gt)))[0]
    t = expected_transform(det_box)
    flat = normalize(t.forward(gt), S).reshape(-1)
    aligner = FaceAligner(constant_model(flat), detector=detector, **SINGLE)
    faces, boxes, scores = aligner.get_landmarks(str(path), return_boxes=True)
    assert len(faces) == len(dets) == len(boxes) == len(scores)
    k = int(np.argmin([np.abs(b - det_box).max() for b in boxes]))
    assert faces[k].shape == (68, 2)
    np.testing.assert_allclose(faces[k], gt, atol=1e-3)
    # the same face through caller boxes (calibrated like detector boxes)
    again = aligner.get_landmarks(path, boxes=[det_box])
    np.testing.assert_allclose(again[0], gt, atol=1e-3)


@needs_data
def test_uncalibrated_landmark_box_and_batch_paths():
    paths, gts = zip(*(photo(r) for r in PHOTOS[:2]))
    boxes = [face_box(g) for g in gts]
    # calibrate=False: the caller's landmark box is the crop box
    t = expected_transform(boxes[0], calibrate=False)
    aligner = FaceAligner(constant_model(normalize(t.forward(gts[0]), S).reshape(-1)), **SINGLE)
    got = aligner.get_landmarks(paths[0], boxes=[boxes[0]], calibrate=False)
    np.testing.assert_allclose(got[0], gts[0], atol=1e-3)
    # calibrate=True on the same box gives a different crop, hence different points
    moved = aligner.get_landmarks(paths[0], boxes=[boxes[0]])
    assert np.abs(moved[0] - gts[0]).max() > 0.5


# ------------------------------------------------------------------ no face, drawing, inputs
@pytest.mark.parametrize("kind", ["grey", "noise"])
def test_no_face_returns_empty_list(kind):
    _dlib()
    if kind == "grey":
        image = np.full((240, 320, 3), 128, np.uint8)
    else:
        image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    aligner = FaceAligner(constant_model(synthetic_points().reshape(-1)), **SINGLE)
    assert aligner.get_landmarks(image) == []
    faces, boxes, scores = aligner.get_landmarks(image, return_boxes=True)
    assert faces == [] and boxes.shape == (0, 4) and scores.shape == (0,)
    assert aligner.get_landmarks_batch([image, image]) == [[], []]


def test_dlib_finds_the_sample_portrait():
    _dlib()
    image = sample_portrait()
    aligner = FaceAligner(constant_model(synthetic_points().reshape(-1)), **SINGLE)
    faces, boxes, _ = aligner.get_landmarks(image, return_boxes=True)
    assert len(faces) == 1 and faces[0].shape == (68, 2)
    # every point lies inside the (margin-enlarged) crop around the face
    crop = CropTransform.from_box(BoxCalibration().apply(boxes[0]), S, MARGIN)
    inside = crop.forward(faces[0])
    assert np.all((inside > -0.5) & (inside < S - 0.5))


def test_draw_landmarks_changes_a_copy():
    image = np.full((200, 300, 3), 90, np.uint8)
    before = image.copy()
    pts = np.stack([np.linspace(50, 250, 68), np.linspace(40, 160, 68)], axis=1)
    out = draw_landmarks(image, [pts], boxes=[[40, 30, 260, 170]])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.any(out != image)
    np.testing.assert_array_equal(image, before)  # input untouched
    # a point is drawn where it is, a box edge where it is
    assert np.any(out[40, 50] != 90) and np.any(out[100, 40] != 90)
    assert np.all(out[5, 5] == 90)
    # greyscale input -> RGB output; nothing to draw -> an unchanged copy
    grey = draw_landmarks(image[:, :, 0], [])
    assert grey.shape == (200, 300, 3) and np.all(grey == 90)


def test_static_boxes_and_input_kinds():
    image = sample_portrait()
    box = np.array([180.0, 140.0, 365.0, 325.0])
    flat = synthetic_points(seed=1).reshape(-1)
    rec = RecordingModel(flat)
    aligner = FaceAligner(rec, detector=StaticBoxes([box]), **SINGLE)
    t = expected_transform(box)
    want = t.inverse((flat.reshape(-1, 2) + 0.5) * S - 0.5)
    rgb = aligner.get_landmarks(image)
    np.testing.assert_allclose(rgb[0], want, atol=1e-4)
    # the model saw exactly the crop of the calibrated box, float32 RGB in [0, 255]
    seen = rec.batches[-1]
    assert seen.shape == (1, S, S, 3) and seen.dtype == np.float32
    np.testing.assert_array_equal(seen[0], t.warp(image).astype(np.float32))

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    for variant in (grey, grey[:, :, None], rgba):
        got = aligner.get_landmarks(variant)
        assert len(got) == 1
        np.testing.assert_allclose(got[0], want, atol=1e-4)
        assert rec.batches[-1].shape == (1, S, S, 3)
    np.testing.assert_array_equal(rec.batches[-1][0], seen[0])  # RGBA crop == RGB crop
    g = rec.batches[-3][0]  # the (H, W) greyscale call
    np.testing.assert_array_equal(g[..., 0], g[..., 2])  # greyscale replicated to 3 channels

    # two static boxes -> two faces, one model call
    rec.batches.clear()
    two = FaceAligner(rec, detector=StaticBoxes([box, box + 20]), **SINGLE).get_landmarks(image)
    assert len(two) == 2 and len(rec.batches) == 1 and rec.batches[0].shape[0] == 2
    np.testing.assert_allclose(two[1] - two[0], 20 * np.ones((68, 2)), atol=1e-4)
    assert StaticBoxes([])(image) == []
    with pytest.raises(ValueError):
        StaticBoxes([[10, 10, 5, 20]])


def test_batch_and_folder(tmp_path):
    image = sample_portrait()
    box = [180.0, 140.0, 365.0, 325.0]
    aligner = FaceAligner(RecordingModel(synthetic_points().reshape(-1)), detector=StaticBoxes([box]), **SINGLE)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.cvtColor(image[:, ::-1], cv2.COLOR_RGB2BGR))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    single = aligner.get_landmarks(image)
    batch = aligner.get_landmarks_batch([image, str(tmp_path / "a.png")])
    assert len(batch) == 2 and all(len(f) == 1 for f in batch)
    np.testing.assert_allclose(batch[0][0], single[0])
    with pytest.warns(UserWarning, match="broken.jpg"):
        found = aligner.get_landmarks_from_folder(tmp_path)
    assert sorted(Path(p).name for p in found) == ["a.png", "b.jpg"]
    np.testing.assert_allclose(found[str(tmp_path / "a.png")][0], single[0])
    with pytest.raises(ValueError, match="broken.jpg"):
        aligner.get_landmarks_from_folder(tmp_path, skip_unreadable=False)


# ------------------------------------------------------------------ model resolution, demo
def test_resolve_model_and_load_by_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="available names"):
        resolve_model("no_such_model_name")
    flat = synthetic_points().reshape(-1)
    path = tmp_path / "fake.h5"
    constant_model(flat).save(path)
    assert resolve_model(path) == path
    aligner = FaceAligner(str(path), detector=StaticBoxes([[10, 10, 50, 50]]), **SINGLE)
    assert aligner.input_size == S and aligner.model_path == str(path)
    got = aligner.get_landmarks(np.zeros((80, 80, 3), np.uint8))
    want = expected_transform(np.array([10.0, 10, 50, 50])).inverse((flat.reshape(-1, 2) + 0.5) * S - 0.5)
    np.testing.assert_allclose(got[0], want, atol=1e-3)


def test_demo_writes_annotated_image_and_fails_on_bad_image(tmp_path, capsys):
    _dlib()
    from acrloss import demo

    model = tmp_path / "fake.h5"
    constant_model(synthetic_points().reshape(-1)).save(model)
    out = tmp_path / "out"
    assert demo.main(["--model", str(model), "--out", str(out), "--no-eval"]) == 0
    text = capsys.readouterr().out
    assert "faces found: 1" in text
    rows = [ln for ln in text.splitlines() if len(ln.split()) == 2 and ln.replace(".", "").replace(" ", "").replace("-", "").isdigit()]
    assert len(rows) == 68
    written = read_image(out / "aligned.png")
    assert written.shape == sample_portrait().shape and np.any(written != sample_portrait())

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    assert demo.main(["--image", str(bad), "--model", str(model), "--out", str(out), "--no-eval"]) != 0
    assert "cannot read the image" in capsys.readouterr().err
    assert demo.main(["--image", str(tmp_path / "missing.png"), "--model", str(model), "--no-eval"]) != 0


def test_large_photo_boxes_map_back_to_original_pixels():
    _dlib()
    from acrloss.detectors import DlibHOGDetector

    image = sample_portrait()
    f = 2.5  # 1280 x 1500: shrunk for detection (max_side 1024), boxes mapped back
    big = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
    # the colour HOG: on this face it fires at the same pyramid scale in both sizes, so the
    # boxes must agree; the grey HOG fires one scale up on the large copy (a box 20 % larger),
    # a detector property, not the mapping's (tests/test_detectors.py checks the grey path's
    # mapping exactly with a stand-in detector)
    small = DlibHOGDetector(grey=False)(image)
    large = DlibHOGDetector(grey=False)(big)
    assert len(small) == 1 and len(large) == 1
    scaled = (small[0][0] + 0.5) * f - 0.5
    assert box_iou(large[0][0], scaled) > 0.8, (large[0][0], scaled)


# ------------------------------------------------------------------ colour order (issue 19)
COLOUR_PHOTOS = ("lfpw/testset/image_0001.jpg", "lfpw/testset/image_0009.jpg", "lfpw/testset/image_0013.jpg",
                 "helen/testset/296814969_3.jpg")


@needs_data
def test_bgr_arrays_with_color_bgr_equal_paths_on_real_photos():
    """``get_landmarks(cv2.imread(p), color="bgr")`` == ``get_landmarks(p)`` within 1e-6 px,
    for every face of real photos; the same array taken as RGB (the trap) is off."""
    _dlib()
    aligner = FaceAligner()  # shipped model, dlib
    bgr_aligner = FaceAligner(aligner.model, color="bgr")
    n_faces, trap = 0, []
    for rel in COLOUR_PHOTOS:
        path, _ = photo(rel)
        want = aligner.get_landmarks(path)
        bgr = cv2.imread(str(path))
        for got in (aligner.get_landmarks(bgr, color="bgr"), bgr_aligner.get_landmarks(bgr),
                    aligner.get_landmarks_batch([bgr], color="bgr")[0]):
            assert len(got) == len(want) >= 1, path
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)
        # the per-call color wins over the aligner's; a path ignores color
        np.testing.assert_allclose(bgr_aligner.get_landmarks(bgr[:, :, ::-1], color="rgb")[0], want[0], atol=1e-6,
                                   rtol=0)
        np.testing.assert_allclose(bgr_aligner.get_landmarks(path)[0], want[0], atol=1e-6, rtol=0)
        wrong = aligner.get_landmarks(bgr, boxes=aligner.detect(path)[1])  # BGR taken as RGB, same boxes
        trap.append(max(np.abs(a - b).max() for a, b in zip(wrong, want)))
        n_faces += len(want)
    assert n_faces >= 6
    assert max(trap) > 0.1, f"BGR read as RGB should move the points; max shift {max(trap):.3f} px"


def test_color_argument_is_checked():
    with pytest.raises(ValueError, match="'rgb' or 'bgr'"):
        FaceAligner(RecordingModel(synthetic_points().reshape(-1)), color="BGR ")
    aligner = FaceAligner(RecordingModel(synthetic_points().reshape(-1)), detector=StaticBoxes([[10, 10, 50, 50]]))
    with pytest.raises(ValueError, match="'rgb' or 'bgr'"):
        aligner.get_landmarks(np.zeros((64, 64, 3), np.uint8), color="hsv")
    with pytest.raises(ValueError, match="'rgb' or 'bgr'"):
        draw_landmarks(np.zeros((8, 8, 3), np.uint8), [], color="rbg")


def test_bgra_arrays_and_greyscale_with_color_bgr():
    image = sample_portrait()
    box = [180.0, 140.0, 365.0, 325.0]
    rec = RecordingModel(synthetic_points().reshape(-1))
    aligner = FaceAligner(rec, detector=StaticBoxes([box]), **SINGLE)
    aligner.get_landmarks(image)
    rgb_crop = rec.batches[-1][0]
    bgra = np.dstack([image[:, :, ::-1], np.full(image.shape[:2], 255, np.uint8)])
    aligner.get_landmarks(bgra, color="bgr")
    np.testing.assert_array_equal(rec.batches[-1][0], rgb_crop)  # the model saw the same RGB crop
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    aligner.get_landmarks(grey, color="bgr")  # greyscale: no channel order to apply
    aligner.get_landmarks(grey)
    np.testing.assert_array_equal(rec.batches[-1][0], rec.batches[-2][0])


def test_draw_landmarks_color_and_save_annotated_write_red_boxes(tmp_path):
    from acrloss.align import save_annotated

    image_rgb = np.full((120, 160, 3), 90, np.uint8)
    box = [[20, 20, 140, 100]]
    pts = [np.array([[80.0, 60.0]])]
    def red(px) -> bool:  # anti-aliased edges: dominant red
        r, g, b = (int(v) for v in px)
        return r > 200 and g < 60 and b < 60

    rgb = draw_landmarks(image_rgb, pts, box, radius=3)  # RGB in, RGB out: red box, green points
    assert red(rgb[20, 80])
    np.testing.assert_array_equal(rgb[60, 80], [0, 255, 0])
    bgr = draw_landmarks(image_rgb[:, :, ::-1], pts, box, radius=3, color="bgr")  # BGR in, BGR out
    np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "cv2.png"), bgr)
    assert red(read_image(tmp_path / "cv2.png")[20, 80])  # red on disk
    for name, arr, order in (("a.png", image_rgb, "rgb"), ("b.png", image_rgb[:, :, ::-1].copy(), "bgr")):
        written = save_annotated(tmp_path / name, arr, pts, box, color=order, radius=3)
        back = read_image(written)
        np.testing.assert_array_equal(back, rgb)  # the same picture, whichever order came in
    jpg = read_image(save_annotated(tmp_path / "c.jpg", image_rgb, pts, box, radius=3))
    r, g, b = (int(v) for v in jpg[20, 80])  # JPEG blurs the 1-px line: red must dominate (not blue)
    assert r - max(g, b) > 60 and b < 90, (r, g, b)
    with pytest.raises(ValueError, match="unknown image type"):
        save_annotated(tmp_path / "d.gif", image_rgb, pts)
