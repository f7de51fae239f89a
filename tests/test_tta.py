"""Flip test-time averaging and the per-face quality score (acrloss.tta via FaceAligner):
on a mirrored real photo ``tta=True`` gives the mirrored points; the flip disagreement ranks
faces of the fixed-seed validation split by their true error (Spearman > 0.3) with the
shipped model; exact maths with a model of known output."""
from __future__ import annotations


import numpy as np
import pytest

from acrloss.align import FaceAligner, available_models
from acrloss.config import W300_SPEC
from acrloss.data_prep.crop import face_box
from acrloss.data_prep.datasets import train_val_split, w300_subset
from acrloss.data_prep.formats import read_pts
from acrloss.data_prep.images import read_image
from acrloss.metrics import nme
from acrloss.tta import AlignedFace, predict_tta, spec_for_points, unflip

MIRROR = np.array(W300_SPEC.mirror)
MODEL = "mnv2_acr_300w"
needs_model = pytest.mark.skipif(MODEL not in available_models(), reason=f"shipped model {MODEL} not found")


def ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(np.asarray(a)), ranks(np.asarray(b)))[0, 1])


def test_unflip_and_predict_tta_maths():
    """A model that sees the crop's mirror image through a known map: TTA averages exactly."""
    rng = np.random.default_rng(0)
    base = rng.uniform(-0.4, 0.4, (68, 2))
    skew = np.array([0.01, -0.02])

    def predict(x):  # plain crops -> base + skew; mirrored crops (left column bright) -> mirror of base - skew
        out = []
        for img in x:
            mirrored = img[0, 0, 0] > img[0, -1, 0]
            out.append(unflip((base - skew)[None], MIRROR)[0] if mirrored else base + skew)
        return np.stack(out)

    crops = np.zeros((3, 16, 16, 3), np.float32)
    crops[:, :, -1] = 255.0  # the right column is bright; mirrored crops have it on the left
    avg, dis = predict_tta(predict, crops)
    np.testing.assert_allclose(avg, np.broadcast_to(base, avg.shape), atol=1e-12)
    np.testing.assert_allclose(dis, np.full(3, np.linalg.norm(2 * skew) * 16), rtol=1e-9)
    # unflip is an involution and swaps the outer eye corners
    pts = rng.uniform(-0.5, 0.5, (2, 68, 2))
    np.testing.assert_allclose(unflip(unflip(pts, MIRROR), MIRROR), pts)
    np.testing.assert_allclose(unflip(pts, MIRROR)[:, 36], pts[:, 45] * [-1, 1])
    assert spec_for_points(68) is W300_SPEC
    with pytest.raises(ValueError, match="7 points"):
        spec_for_points(7)


@needs_model
@pytest.mark.parametrize("rel", ["lfpw/testset/image_0001.jpg", "helen/testset/2971848745_1.jpg"])
def test_tta_on_a_mirrored_photo_gives_the_mirrored_points(w300_dir, rel):
    path = w300_dir / "full" / rel
    if not path.is_file():
        pytest.skip(f"{path} not found")
    image = read_image(path)
    w = image.shape[1]
    box = face_box(read_pts(path.with_suffix(".pts")))
    mbox = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]])

    def mirrored_back(points):
        p = points.copy()
        p[:, 0] = w - 1 - p[:, 0]
        return p[MIRROR]

    gaps = {}
    for tta in (True, False):
        aligner = FaceAligner(MODEL, tta=tta, refine=1)
        a = aligner.align_faces(image, boxes=[box], calibrate=False)[0]
        b = aligner.align_faces(np.ascontiguousarray(image[:, ::-1]), boxes=[mbox], calibrate=False)[0]
        gaps[tta] = float(np.abs(mirrored_back(b.points) - a.points).max())
        assert isinstance(a, AlignedFace) and (a.flip_disagreement is not None) == tta
    # TTA is mirror-equivariant up to OpenCV's 1/32-px fixed-point bilinear sampling (and the
    # area pre-shrink of large photos) of the crops: measured 0.006 and 0.04 px, against 4 and 27 px without
    assert gaps[True] < 0.05 and gaps[True] < gaps[False] / 50, gaps
    assert gaps[False] > 0.05, gaps  # the plain model is not: the check can fail


@needs_model
def test_flip_disagreement_ranks_validation_faces(w300_dir):
    """Spearman rank correlation of the quality score with the true NME > 0.3 on the fixed-seed
    validation split (seed 0, 10 % of 300-W train: faces the shipped model never trained on)."""
    _, val = train_val_split(w300_subset(w300_dir, "train"), 0.1, 0)
    aligner = FaceAligner(MODEL, tta=True)
    items = [(read_image(s.image_path), face_box(s.points)[None]) for s in val]
    # all faces in batched model calls (align_faces does the same one image at a time)
    preds = aligner.predictor.predict_batch(items)  # landmark boxes: no calibration
    pred = np.stack([p.points[0] for p in preds])
    q = np.array([p.flip_disagreement[0] for p in preds])
    errors = nme(pred, np.stack([s.points for s in val]))
    rho = spearman(q, errors)
    assert len(val) == 201 and np.all(q > 0)
    assert rho > 0.3, rho
    # the quality score is on the NME scale: its median is a few percent of the eye distance
    assert 0.002 < float(np.median(q)) < 0.1
    # and align_faces reports the same score for a face
    f = aligner.align_faces(val[0].image_path, boxes=[face_box(val[0].points)], calibrate=False)[0]
    assert f.flip_disagreement == pytest.approx(q[0], rel=1e-4)
