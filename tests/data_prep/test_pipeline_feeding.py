"""The pipeline that feeds several devices (issue 16): worker threads, in-epoch prefetch, the
decoded-image cache and per-process shards never change a batch's content; a batch depends
only on (seed, epoch, batch index, curriculum level)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from acrloss.config import W300_SPEC, AugmentConfig, CropConfig
from acrloss.data_prep.datasets import Sample
from acrloss.data_prep.formats import read_pts
from acrloss.data_prep.pipeline import LandmarkSequence

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[Sample]:
    sys.path.insert(0, str(HERE.parent / "reliability"))
    from tiny_run import make_faces

    folder = make_faces(tmp_path_factory.mktemp("faces"), n=12)
    return [Sample(str(p), read_pts(p.with_suffix(".pts"))) for p in sorted(folder.glob("*.png"))]


def make(samples, **kw) -> LandmarkSequence:
    table = np.random.default_rng(0).uniform(0, 1, (len(samples), 3, 136)).astype(np.float32)
    return LandmarkSequence(samples, CropConfig(32), batch_size=4, augment=AugmentConfig(), mirror=W300_SPEC.mirror,
                            shuffle=True, seed=5, phi_table=table, **kw)


def epochs_of(seq: LandmarkSequence, levels=(0, 0, 2)) -> list:
    """Batches of 3 epochs as Train's callbacks drive them (level set at each epoch's start)."""
    out = []
    for level in levels:
        seq.phi_level = level
        out.extend(seq[i] for i in range(len(seq)))
        seq.on_epoch_end()
    return out


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_threads_prefetch_and_cache_do_not_change_the_batches(samples):
    plain = epochs_of(make(samples, workers=1))
    threaded = make(samples, workers=3, prefetch=2, cache_bytes=1 << 30)
    assert_same(epochs_of(threaded), plain)
    assert threaded._cache and threaded._cached_bytes <= 1 << 30
    threaded.close()
    assert not np.array_equal(plain[0][0], plain[3][0])  # epochs differ (shuffle + augmentation)


def test_a_level_change_after_prefetch_is_honoured(samples):
    seq = make(samples, workers=2, prefetch=2)
    seq[0]  # prefetches batches 1 and 2 at level 0
    seq.phi_level = 1
    fresh = make(samples, workers=1)
    fresh.phi_level = 1
    np.testing.assert_array_equal(seq[1][1], fresh[1][1])
    seq.close()


def test_a_resumed_sequence_starts_with_the_batches_of_the_uninterrupted_one(samples):
    full = epochs_of(make(samples, workers=2))
    resumed = make(samples, workers=2)
    resumed.epoch = 2
    resumed._reshuffle()
    resumed.phi_level = 2
    assert_same([resumed[i] for i in range(len(resumed))], full[2 * len(resumed):])


def test_cache_budget_is_respected(samples):
    one = make(samples[:4], workers=1, cache_bytes=64 * 64 * 3 + 1)  # room for one 64x64 image
    one[0]
    assert len(one._cache) == 1
    assert make(samples[:4], workers=1)._cache == {}


def test_process_shards_make_up_the_global_batch(samples):
    whole = make(samples, workers=1)
    parts = [make(samples, workers=2, shard=(p, 2)) for p in range(2)]
    for i in range(len(whole)):
        x, y = whole[i]
        np.testing.assert_array_equal(np.concatenate([p[i][0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[i][1] for p in parts]), y)
    with pytest.raises(ValueError, match="shard"):
        make(samples, shard=(2, 2))
    with pytest.raises(ValueError, match="not a multiple of the 3 processes"):
        make(samples, shard=(0, 3))[0]


def test_multiple_of_cuts_the_last_batch_for_the_devices(samples):
    seq = make(samples[:11], workers=1, multiple_of=2)  # batches of 4, 4, 3 -> 4, 4, 2
    assert len(seq) == 3 and [len(seq[i][0]) for i in range(3)] == [4, 4, 2]
    assert len(make(samples[:9], workers=1, multiple_of=2)) == 2  # a last batch of 1 -> none
    with pytest.raises(ValueError, match="multiple_of"):
        make(samples[:3], multiple_of=4)
