"""Every model builder, codec, loss, PCA shape model and metric works for the point counts
of the supported datasets (98 WFLW, 68 300-W, 29 COFW, 19 AFLW), the output size taken from
the count (issue 18)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from acrloss.codecs.heatmap import HeatmapCodec
from acrloss.losses import get_loss
from acrloss.metrics import NMEMetric
from acrloss.models import build_heatmap_model, build_musica, build_regressor
from acrloss.models.heatmap import train_codec
from acrloss.models.musica import resolve_points
from acrloss.tasks.musica import compile_arguments
from acrloss.pca_utility import PCAUtility, phi_table

COUNTS = [98, 68, 29, 19]


@pytest.mark.parametrize("n", COUNTS)
def test_builders_give_2n_outputs(n):
    images = np.random.default_rng(n).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    reg = build_regressor("mnv2", num_points=n, input_size=64, alpha=0.35)
    assert tuple(reg(images).shape) == (2, 2 * n)
    hm = build_heatmap_model(n, alpha=0.35, codec=train_codec(64, 4, 1.0))
    out = hm(images)
    assert tuple(out["landmarks"].shape) == (2, 2 * n) and tuple(out["heatmaps"].shape) == (2, 4, 4, n)
    mean = np.random.default_rng(0).uniform(-0.3, 0.3, 2 * n)
    mus = build_musica(mean, input_size=32, num_points=n, stage_levels=(2, 1, 0), stage_points=("coarse", "half", "all"),
                       patch_size=4, channels=(4, 8), hidden_units=16)
    out = mus(images[:, :32, :32])
    assert tuple(out["landmarks"].shape) == (2, 2 * n) and tuple(out["cascade"].shape) == (2, 3, 2 * n + 1)
    coarse = resolve_points("coarse", n)
    assert 0 < len(coarse) < n and len(set(coarse)) == len(coarse) and max(coarse) < n


@pytest.mark.parametrize("n, norm", [(98, (60, 72)), (29, (8, 9)), (19, "box")])
def test_losses_metrics_pca_and_codec_for_any_count(n, norm):
    rng = np.random.default_rng(n)
    labels = rng.uniform(-0.35, 0.35, (40, 2 * n))
    models = PCAUtility().fit_levels(labels, levels=(80, 95))
    phi = phi_table(labels, models)
    assert phi.shape == (40, 2, 2 * n) and np.all((phi >= 0) & (phi <= 1))
    y_true = np.concatenate([labels[:4], phi[:4, 0]], axis=1).astype("float32")
    y_pred = (labels[:4] + rng.normal(0, 0.02, (4, 2 * n))).astype("float32")
    for name in ("acr", "l2", "l1"):
        value = float(keras.ops.convert_to_numpy(get_loss(name, 2 * n)(y_true, y_pred)))
        assert np.isfinite(value) and value > 0, name
    metric = NMEMetric(n, norm)
    metric.update_state(y_true, y_pred)
    assert float(keras.ops.convert_to_numpy(metric.result())) > 0
    cascade = compile_arguments(n, norm, 2)["loss"]["cascade"]
    stacked = np.stack([y_pred, y_pred], axis=1)
    packed = np.concatenate([stacked, np.full((4, 2, 1), 0.05, "float32")], axis=-1)
    assert np.isfinite(float(keras.ops.convert_to_numpy(cascade(y_true, packed))))
    codec = HeatmapCodec(input_size=64, heatmap_size=16, sigma=1.5)
    pts = rng.uniform(8, 56, (3, n, 2))
    maps = codec.encode_batch(pts)
    assert maps.shape == (3, 16, 16, n)
    decoded = np.asarray(keras.ops.convert_to_numpy(codec.decode(maps.astype("float32"), "dark"))).reshape(3, n, 2)
    assert np.abs(decoded - pts).max() < 1.0  # sub-pixel round trip for every one of the n points
