"""LandmarkSequence with a heatmap codec: targets are {"heatmaps", "landmarks"}, and the
heatmaps decode back to the (augmented, flipped) crop labels."""
from __future__ import annotations

import numpy as np
import pytest

from acrloss.codecs import HeatmapCodec
from acrloss.config import AugmentConfig, CropConfig, W300_SPEC
from acrloss.data_prep.datasets import w300_subset
from acrloss.data_prep.pipeline import LandmarkSequence


@pytest.fixture(scope="module")
def samples(w300_dir):
    return w300_subset(w300_dir, "common")[:6]


@pytest.mark.parametrize("hm, sigma, decoder, tol_cells", [(32, 1.5, "dark", 0.01), (8, 1.0, "keyposs", 0.01),
                                                             (4, 1.0, "keyposs", 0.02)])
def test_heatmap_targets_decode_back_to_the_labels(samples, hm, sigma, decoder, tol_cells):
    codec = HeatmapCodec(input_size=128, heatmap_size=hm, sigma=sigma, decoder=decoder)
    seq = LandmarkSequence(samples, CropConfig(128), batch_size=6, codec=codec, workers=1)
    images, targets = seq[0]
    assert set(targets) == {"heatmaps", "landmarks"}
    maps, labels = targets["heatmaps"], targets["landmarks"]
    assert maps.shape == (6, hm, hm, 68) and maps.dtype == np.float32
    assert labels.shape == (6, 136)
    assert 0.0 <= maps.min() and maps.max() <= 1.0 + 1e-6
    # the labels themselves are the un-augmented crop points, as without a codec
    plain = LandmarkSequence(samples, CropConfig(128), batch_size=6, workers=1)[0][1]
    np.testing.assert_array_equal(labels, plain)
    decoded = codec.decode(maps)  # (B, N, 2) crop pixels
    want = (labels.reshape(6, 68, 2).astype(np.float64) + 0.5) * 128 - 0.5
    assert np.abs(decoded - want).max() <= tol_cells * codec.stride + 1e-3


def test_augmented_and_flipped_heatmaps_follow_the_points(samples):
    aug = AugmentConfig(flip_prob=1.0, rotation_deg=15.0, scale_range=(0.9, 1.1), shift_frac=0.05, brightness=0.0,
                        contrast=0.0, gamma_range=(1.0, 1.0), blur_prob=0.0, occlusion_prob=0.0)
    codec = HeatmapCodec(input_size=128, heatmap_size=32, sigma=1.5, decoder="dark")
    seq = LandmarkSequence(samples, CropConfig(128), batch_size=6, augment=aug, mirror=W300_SPEC.mirror,
                           shuffle=True, seed=3, codec=codec, workers=1)
    _, targets = seq[0]
    decoded = codec.decode(targets["heatmaps"])
    want = (targets["landmarks"].reshape(6, 68, 2).astype(np.float64) + 0.5) * 128 - 0.5
    # DARK needs the 3x3 neighbourhood: points the augmentation pushed within a cell of the
    # map border (or out of the crop) fall back to the argmax; compare the others
    u = (want + 0.5) / codec.stride - 0.5
    inside = np.all((u >= 1.0) & (u <= codec.heatmap_size - 2.0), axis=-1)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(decoded[inside], want[inside], atol=0.02 * codec.stride)
    # after the flip the mirror map was applied: point 36 (the outer corner of the eye on the
    # image's left) is still left of point 45 in every flipped crop
    assert np.all(decoded[:, 36, 0] < decoded[:, 45, 0])
    # and the augmentation really moved the points away from the plain crop
    plain = LandmarkSequence(samples, CropConfig(128), batch_size=6, workers=1)
    order = seq._order[:6]
    base = plain[0][1][order]
    assert np.abs(targets["landmarks"] - base).max() > 0.01


def test_codec_must_match_the_crop_and_excludes_phi(samples):
    with pytest.raises(ValueError, match="codec is for input 64, the crop is 128"):
        LandmarkSequence(samples, CropConfig(128), codec=HeatmapCodec(64, 8, 1.0))
    with pytest.raises(ValueError, match="not both"):
        LandmarkSequence(samples, CropConfig(128), codec=HeatmapCodec(128, 8, 1.0),
                         phi_table=np.zeros((len(samples), 1, 136), np.float32))
