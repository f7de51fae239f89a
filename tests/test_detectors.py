"""Tests of :class:`acrloss.detectors.DlibHOGDetector`'s grey and colour modes and of the
calibration each detector carries into :class:`acrloss.align.FaceAligner`.

Tests on real photos use the 300-W folder beside the checkout (or env ``ACRLOSS_300W``) and
skip with a reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from acrloss.data_prep.crop import face_box
from acrloss.data_prep.formats import read_pts
from acrloss.data_prep.images import read_image
from acrloss.detectors import GREY_THRESHOLD, BoxCalibration, StaticBoxes, box_iou, calibration_for

dlib = pytest.importorskip("dlib", reason="dlib is not installed")
from acrloss.detectors import DlibHOGDetector  # noqa: E402


def _full() -> Path:
    env = os.environ.get("ACRLOSS_300W")
    return (Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/300w") / "full"


FULL = _full()
needs_data = pytest.mark.skipif(not FULL.is_dir(), reason=f"300-W whole photos not found at {FULL} (set ACRLOSS_300W)")
PHOTOS = ("lfpw/testset/image_0001.jpg", "lfpw/testset/image_0003.jpg", "helen/testset/2971848745_1.jpg")


class _Recorder:
    """Stands in for dlib's detector: records what ``run`` was given, returns one rectangle."""

    def __init__(self):
        self.calls = []

    def run(self, image, upsample, threshold):
        self.calls.append((image.copy(), upsample, threshold))
        return [dlib.rectangle(10, 20, 50, 60)], [1.5], [0]


def _rgb(h=40, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("grey", [True, False])
def test_each_mode_hands_dlib_its_image_and_threshold(grey):
    det = DlibHOGDetector(grey=grey)
    det._detector = rec = _Recorder()
    rgb = _rgb()
    [(box, score)] = det(rgb)
    image, upsample, threshold = rec.calls[0]
    if grey:
        assert image.shape == rgb.shape[:2] and image.dtype == np.uint8
        # luma, not one channel: the BT.601 weights of cv2.COLOR_RGB2GRAY
        luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(image.astype(np.float64) - luma).max() <= 1.0
        assert threshold == GREY_THRESHOLD == -0.1
    else:
        np.testing.assert_array_equal(image, rgb)
        assert threshold == 0.0
    assert upsample == 1 and score == 1.5
    np.testing.assert_array_equal(box, [10, 20, 50, 60])


def test_grey_mode_shrinks_and_maps_boxes_back():
    det = DlibHOGDetector(grey=True, max_side=30)
    det._detector = rec = _Recorder()
    [(box, _)] = det(_rgb(40, 60))
    assert rec.calls[0][0].shape == (20, 30)  # one channel, longer side 30
    np.testing.assert_allclose(box, (np.array([10, 20, 50, 60]) + 0.5) * 2 - 0.5)


def test_explicit_threshold_wins_over_the_mode_default():
    assert DlibHOGDetector(grey=True, threshold=0.25).threshold == 0.25
    assert DlibHOGDetector(grey=False, threshold=-0.3).threshold == -0.3
    assert "grey=True" in repr(DlibHOGDetector())


@pytest.mark.parametrize("kwargs, match", [({"upsample": -1}, "upsample"), ({"max_side": 0}, "max_side"),
                                           ({"grey": "yes"}, "grey")])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DlibHOGDetector(**kwargs)


def test_each_mode_carries_its_calibration_into_the_aligner():
    from acrloss.align import FaceAligner
    from tests.test_align import constant_model  # a tiny keras model, no weights loaded

    model = constant_model(np.zeros(136, np.float32))
    grey, colour = DlibHOGDetector(grey=True), DlibHOGDetector(grey=False)
    assert grey.box_calibration == BoxCalibration()
    assert colour.box_calibration == BoxCalibration.dlib_hog_colour() != BoxCalibration()
    assert FaceAligner(model, detector=colour).calibration == BoxCalibration.dlib_hog_colour()
    assert FaceAligner(model, detector=grey).calibration == BoxCalibration()
    assert FaceAligner(model).calibration == BoxCalibration()  # the default detector is grey
    mine = BoxCalibration(0.0, 0.1, 1.0)
    assert FaceAligner(model, detector=colour, calibration=mine).calibration == mine
    assert calibration_for(StaticBoxes([[0, 0, 10, 10]])) == BoxCalibration()
    assert calibration_for(lambda image: []) == BoxCalibration()


@needs_data
@pytest.mark.parametrize("rel", PHOTOS)
def test_both_modes_find_the_annotated_face_where_it_is(rel):
    path = FULL / rel
    if not path.is_file():
        pytest.skip(f"{path} not found")
    rgb, lm_box = read_image(path), face_box(read_pts(path.with_suffix(".pts")))
    found = {}
    for grey in (True, False):
        det = DlibHOGDetector(grey=grey)
        ious = [box_iou(det.box_calibration.apply(b), lm_box) for b, _ in det(rgb)]
        assert ious, f"{rel}: grey={grey} found no face"
        found[grey] = max(ious)
        assert found[grey] > 0.5, f"{rel}: grey={grey}: best calibrated IoU {found[grey]:.2f}"
    assert abs(found[True] - found[False]) < 0.15, found
