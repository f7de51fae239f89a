"""Dataset readers (issue 18) on fixtures written in each official layout from the real
sample faces of ../shared/data/samples: the points come back exactly, with boxes, occlusion
flags, box sizes and subsets; bad input gives clear errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dataset_fixtures import (WFLW_FLAGS, build_cofw68, build_cofw_official, build_mmpose_coco, build_wflw_official,
                              rgb, sample_faces, wflw_line, write_cofw_mat)

from acrloss.data_prep.coco import read_coco
from acrloss.data_prep.datasets import SubsetNotFoundError, load_split
from acrloss.data_prep.formats import LandmarkFileError
from acrloss.data_prep.images import read_image
from acrloss.data_prep.subsets import find_subsets, load_subset


def xyxy(bbox):
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h])


# ---------------------------------------------------------------------------------- WFLW
def test_wflw_official_list_gives_the_sample_points_boxes_and_attribute_subsets(tmp_path):
    faces = sample_faces("wflw")
    build_wflw_official(tmp_path)
    test = load_split("wflw", tmp_path, "test")
    assert len(test) == len(faces) == 4
    for s, f in zip(test, faces):
        assert s.points.shape == (98, 2)
        assert np.array_equal(s.points, f["points"])  # exactly, not approximately
        assert np.array_equal(s.box, xyxy(f["bbox"]))
        assert s.image_path.endswith("WFLW_images/36--Football/" + f["image"].name)
        assert s.visible is None  # WFLW has no occlusion labels per point
    flags = np.array(WFLW_FLAGS)
    for column, name in enumerate(("pose", "expression", "illumination", "makeup", "occlusion", "blur")):
        subset = load_split("wflw", tmp_path, name)
        expected = [i for i in range(4) if flags[i, column] == 1]
        got = [next(i for i, t in enumerate(test) if np.array_equal(t.points, s.points)) for s in subset]
        assert got == expected, name
    assert len(load_subset("wflw", tmp_path, "largepose")) == 1  # mmpose's name for the pose subset
    assert len(load_split("wflw", tmp_path, "train")) == 4


def test_wflw_mmpose_json_layout_and_missing_attribute_file(tmp_path):
    faces = sample_faces("wflw")
    build_mmpose_coco(tmp_path, "wflw", {"face_landmarks_wflw_train": None, "face_landmarks_wflw_test": None,
                                         "face_landmarks_wflw_test_blur": [1, 3]})
    test = load_split("wflw", tmp_path, "test")
    assert [np.array_equal(s.points, f["points"]) for s, f in zip(test, faces)] == [True] * 4
    blur = load_split("wflw", tmp_path, "blur")
    assert np.array_equal(blur[1].points, faces[3]["points"])
    missing = tmp_path / "annotations" / "face_landmarks_wflw_test_makeup.json"
    with pytest.raises(SubsetNotFoundError, match="attribute file .*face_landmarks_wflw_test_makeup.json not found"):
        load_split("wflw", tmp_path, "makeup")
    found = find_subsets("wflw", tmp_path)  # Test's default subsets: the absent ones are reported, not fatal
    assert len(found["test"]) == 4 and len(found["blur"]) == 2
    assert isinstance(found["makeup"], str) and str(missing) in found["makeup"]


def test_wflw_errors_wrong_point_count_unknown_subset_and_no_attribute_columns(tmp_path):
    faces = sample_faces("wflw")
    build_wflw_official(tmp_path)
    lists = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    bad = wflw_line(faces[0]["points"][:68], [0, 0, 1, 1], [0] * 6, "36--Football/" + faces[0]["image"].name)
    (lists / "list_98pt_rect_attr_train.txt").write_text(bad + "\n")
    with pytest.raises(LandmarkFileError, match=r"list_98pt_rect_attr_train.txt: line 1 .*wrong point count"):
        load_split("wflw", tmp_path, "train")
    with pytest.raises(ValueError, match=r"unknown WFLW subset 'smile'.*'expression'"):
        load_split("wflw", tmp_path, "smile")
    with pytest.raises(ValueError, match="unknown WFLW subset"):  # checked before anything is read
        find_subsets("wflw", tmp_path / "nowhere", ["test", "smile"])
    # a points-only list (list_98pt_test layout) has no attribute flags: asking for one is an error
    plain = " ".join(repr(float(v)) for v in faces[0]["points"].reshape(-1)) + " 36--Football/" + faces[0]["image"].name
    (lists / "list_98pt_rect_attr_test.txt").write_text(plain + "\n")
    assert load_split("wflw", tmp_path, "test")[0].box is None
    with pytest.raises(LandmarkFileError, match="no attribute flags"):
        load_split("wflw", tmp_path, "pose")
    with pytest.raises(SubsetNotFoundError, match="not a WFLW folder"):
        load_split("wflw", tmp_path / "WFLW_images", "test")


# ---------------------------------------------------------------------------------- COFW
def test_cofw_official_v73_mat_gives_the_sample_points_occlusion_boxes_and_pixels(tmp_path):
    faces = sample_faces("cofw")
    build_cofw_official(tmp_path)
    with open(tmp_path / "COFW_test_color.mat", "rb") as fh:
        assert fh.read(10) == b"MATLAB 7.3"  # the fixture is a real v7.3 file (HDF5 after a MATLAB header)
    for split in ("test", "train"):
        samples = load_split("cofw", tmp_path, split)
        assert len(samples) == 2
        for s, f in zip(samples, faces):
            assert s.points.shape == (29, 2)
            # the file is 1-based: written as x + 1, read as value - 1, equal up to that addition's rounding
            np.testing.assert_allclose(s.points, f["points"], rtol=0, atol=1e-9)
            assert np.array_equal(s.visible, f["v"] == 2)
            assert 0 < (~s.visible).sum() < 29  # the samples hold both visible and occluded points
            assert np.array_equal(s.box, xyxy(f["bbox"]))
    image = read_image(samples[1].image_path)
    assert np.array_equal(image, rgb(faces[1]["image"]))  # the pixels stored in the .mat come back unchanged
    # the same faces through mmpose's COCO JSON (v = 2 visible, 1 occluded) agree
    build_mmpose_coco(tmp_path / "mm", "cofw", {"cofw_test": None})
    mm = load_split("cofw", tmp_path / "mm", "test")
    for a, b in zip(mm, samples):
        np.testing.assert_allclose(a.points, b.points, rtol=0, atol=1e-9)
        assert np.array_equal(a.visible, b.visible)


def test_cofw_mat_errors(tmp_path):
    faces = sample_faces("cofw")
    images = [rgb(f["image"]) for f in faces]
    phis68 = np.zeros((2, 3 * 68))
    write_cofw_mat(tmp_path / "COFW_test_color.mat", "test", images, phis68, np.ones((2, 4)))
    with pytest.raises(LandmarkFileError, match=r"COFW_test_color.mat: phisT .*68 points found \(wrong point count\)"):
        load_split("cofw", tmp_path, "test")
    with pytest.raises(SubsetNotFoundError, match="COFW_train_color.mat"):
        load_split("cofw", tmp_path, "train")
    with pytest.raises(ValueError, match=r"unknown COFW subset 'valid'"):
        load_split("cofw", tmp_path, "valid")
    (tmp_path / "COFW_test_color.mat").write_bytes(b"not a mat file")
    with pytest.raises(LandmarkFileError, match="COFW_test_color.mat"):
        load_split("cofw", tmp_path, "test")


def test_cofw68_points_mat_gives_the_sample_points_and_occlusion(tmp_path):
    root, faces, occs = build_cofw68(tmp_path)
    samples = load_split("cofw68", root, "test")
    assert len(samples) == 2
    for s, f, occ in zip(samples, faces, occs):
        assert s.points.shape == (68, 2)
        np.testing.assert_allclose(s.points, f["points"], rtol=0, atol=1e-9)  # 1-based in the file
        assert np.array_equal(s.visible, occ == 0)
        assert s.box is None
    assert np.array_equal(read_image(samples[0].image_path), rgb(faces[0]["image"]))
    (root / "test_annotations" / "2_points.mat").unlink()
    with pytest.raises(LandmarkFileError, match=r"2_points.mat: COFW-68 label file not found"):
        load_split("cofw68", root, "test")
    with pytest.raises(ValueError, match="unknown COFW-68 subset 'train'"):
        load_split("cofw68", root, "train")


# ---------------------------------------------------------------------------------- AFLW
def test_aflw_full_and_frontal_with_box_size(tmp_path):
    faces = sample_faces("aflw")
    build_mmpose_coco(tmp_path, "aflw", {"face_landmarks_aflw_test": None, "face_landmarks_aflw_test_frontal": [1]})
    full = load_split("aflw", tmp_path, "full")
    assert [np.array_equal(s.points, f["points"]) for s, f in zip(full, faces)] == [True, True]
    assert [s.norm for s in full] == [f["box_size"] for f in faces] == [362.0, 128.0]
    frontal = load_split("aflw", tmp_path, "frontal")
    assert len(frontal) == 1 and np.array_equal(frontal[0].points, faces[1]["points"])
    found = find_subsets("aflw", tmp_path)
    assert set(found) == {"full", "frontal"}
    with pytest.raises(SubsetNotFoundError, match="face_landmarks_aflw_train.json not found"):
        load_split("aflw", tmp_path, "train")
    # a 98-point file where AFLW-19 is expected: a clear point-count error
    shutil.copy(sample_faces("wflw")[0]["image"].parent / "test_wflw.json", tmp_path / "annotations" / "face_landmarks_aflw_test.json")
    with pytest.raises(LandmarkFileError, match=r"holds 98 points; AFLW-19 has 19 points \(wrong point count\)"):
        load_split("aflw", tmp_path, "full")


# ---------------------------------------------------------------------------------- COCO
@pytest.mark.parametrize("dataset, count", [("300w", 68), ("wflw", 98), ("cofw", 29), ("aflw", 19)])
def test_generic_coco_reader_on_every_sample_file(dataset, count):
    faces = sample_faces(dataset)
    path = faces[0]["image"].parent / f"test_{dataset}.json"
    samples = read_coco(path)
    assert len(samples) == len(faces)
    for s, f in zip(samples, faces):
        assert s.points.shape == (count, 2) and np.array_equal(s.points, f["points"])
        assert np.array_equal(s.box, xyxy(f["bbox"]))
        assert s.image_path == str(f["image"])
    assert (samples[0].visible is not None) == (dataset == "cofw")  # only COFW's file uses v = 2 / 1
    user = load_split("coco", path, "all")  # the user-data path: one COCO JSON, any point count
    assert len(user) == len(faces) and user[0].points.shape == (count, 2)


def test_coco_reader_errors(tmp_path):
    faces = sample_faces("aflw")
    doc = json.loads((faces[0]["image"].parent / "test_aflw.json").read_text())
    doc["annotations"][1]["keypoints"] = doc["annotations"][1]["keypoints"][:-3]
    (tmp_path / "mixed.json").write_text(json.dumps(doc))
    with pytest.raises(LandmarkFileError, match=r"mixed.json: annotation 1 .* holds 18 points; the first annotation has 19"):
        read_coco(tmp_path / "mixed.json", image_root=faces[0]["image"].parent)
    doc = json.loads((faces[0]["image"].parent / "test_aflw.json").read_text())
    doc["annotations"][0]["keypoints"][2] = 0
    (tmp_path / "unlabelled.json").write_text(json.dumps(doc))
    with pytest.raises(LandmarkFileError, match=r"unlabelled.json: annotation 0 .* 1 unlabelled points"):
        read_coco(tmp_path / "unlabelled.json", image_root=faces[0]["image"].parent)
    assert len(read_coco(tmp_path / "unlabelled.json", image_root=faces[0]["image"].parent, skip_unlabelled=True)) == 1
    with pytest.raises(LandmarkFileError, match=r"image 'image22568.jpg' not found under"):
        read_coco(tmp_path / "unlabelled.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(LandmarkFileError, match="broken.json: cannot read as JSON"):
        read_coco(tmp_path / "broken.json")
