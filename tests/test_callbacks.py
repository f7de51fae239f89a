"""Tests of acrloss.callbacks: curriculum levels, the cosine schedule, BestCheckpoint."""
from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from acrloss.callbacks import BestCheckpoint, CurriculumCallback, cosine_lr, curriculum_level


# ----------------------------------------------------------------- curriculum
def levels_for(epochs: int, num_levels: int) -> list[int]:
    return [curriculum_level(e, epochs, num_levels) for e in range(epochs)]


def test_curriculum_eight_epochs_four_levels():
    # four levels share eight epochs evenly: two epochs each, in order
    assert levels_for(8, 4) == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("epochs", [4, 5, 7, 9, 13, 60, 100])
def test_curriculum_is_ordered_complete_and_even(epochs):
    seq = levels_for(epochs, 4)
    assert seq[0] == 0 and seq[-1] == 3
    assert all(b - a in (0, 1) for a, b in zip(seq, seq[1:]))  # in order, no level skipped
    counts = [seq.count(k) for k in range(4)]
    assert max(counts) - min(counts) <= 1  # evenly shared
    if epochs == 100:
        assert counts == [25, 25, 25, 25]


def test_curriculum_never_exceeds_last_level():
    for epochs in (1, 2, 3, 8, 100):
        for e in range(0, 3 * epochs + 5):
            assert 0 <= curriculum_level(e, epochs, 4) <= 3


def test_curriculum_short_runs():
    assert levels_for(1, 4) == [0]
    seq = levels_for(3, 4)  # fewer epochs than levels: still ordered, starts at the first
    assert seq[0] == 0 and seq == sorted(seq) and len(set(seq)) == 3
    assert curriculum_level(0, 0, 4) == 0
    assert curriculum_level(5, 10, 0) == 0
    assert levels_for(6, 1) == [0] * 6


class FakeSeq:
    def __init__(self):
        self.phi_level = -1
        self.epoch = 0
        self.reshuffled = 0

    def _reshuffle(self):
        self.reshuffled += 1


def test_curriculum_callback_sets_levels_and_epoch():
    a, b = FakeSeq(), FakeSeq()
    cb = CurriculumCallback([a, b], (80, 85, 90, 95), epochs=8)
    seen = []
    for epoch in range(8):
        cb.on_epoch_begin(epoch)
        assert a.phi_level == b.phi_level
        assert a.epoch == epoch  # a resumed run starting at epoch k reshuffles as epoch k
        logs = {}
        cb.on_epoch_end(epoch, logs)
        seen.append((a.phi_level, logs["pca_percent"]))
    assert seen == [(0, 80.0), (0, 80.0), (1, 85.0), (1, 85.0), (2, 90.0), (2, 90.0), (3, 95.0), (3, 95.0)]
    d = FakeSeq()
    unsorted = CurriculumCallback([d], (95, 80, 90, 85), epochs=4)  # phi_table columns are ascending
    percents = []
    for epoch in range(4):
        unsorted.on_epoch_begin(epoch)
        logs = {}
        unsorted.on_epoch_end(epoch, logs)
        percents.append(logs["pca_percent"])
    assert percents == [80.0, 85.0, 90.0, 95.0]
    c = FakeSeq()
    CurriculumCallback([c], (80, 85, 90, 95), epochs=8).on_epoch_begin(5)  # resume in the middle
    assert c.phi_level == 2 and c.epoch == 5 and c.reshuffled == 1


# ----------------------------------------------------------------- cosine schedule
def test_cosine_lr_warmup_then_decay_to_floor():
    base, epochs, warmup, floor = 2e-3, 100, 3, 0.01
    f = cosine_lr(base, epochs, warmup=warmup, floor=floor)
    lrs = [f(e) for e in range(epochs)]
    # warm-up: starts low and rises linearly to the peak
    assert lrs[0] < 0.5 * base
    assert lrs[0] < lrs[1] < lrs[2] < base
    np.testing.assert_allclose(np.diff(lrs[: warmup + 1]), base / (warmup + 1), rtol=1e-9)
    assert lrs[warmup] == pytest.approx(base)
    # then never increasing, ending near floor * base
    assert all(b <= a + 1e-15 for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))
    assert lrs[-1] == pytest.approx(floor * base, abs=0.01 * base)
    assert f(epochs) == pytest.approx(floor * base)
    assert f(epochs + 50) == pytest.approx(floor * base)  # past the end: stays at the floor
    # half-way through the decay the cosine is at its midpoint
    mid = warmup + (epochs - warmup) / 2
    assert f(mid) == pytest.approx(base * (floor + (1 - floor) / 2))
    assert min(lrs) >= floor * base * (1 - 1e-12)


def test_cosine_lr_short_runs_and_keras_signature():
    f = cosine_lr(1e-3, 1)
    assert 0 < f(0) <= 1e-3
    g = cosine_lr(1e-3, 3, warmup=0)
    assert g(0) == pytest.approx(1e-3) and g(0, 0.5) == pytest.approx(1e-3)  # (epoch, lr) like Keras passes
    assert g(2) < g(1) < g(0)


# ----------------------------------------------------------------- BestCheckpoint
def tiny_model(value: float) -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    model.get_layer("d").set_weights([np.full((3, 2), value, np.float32), np.zeros(2, np.float32)])
    return model


def saved_kernel(path) -> float:
    return float(keras.models.load_model(path, compile=False).get_layer("d").get_weights()[0][0, 0])


def test_best_checkpoint_writes_only_on_improvement(tmp_path):
    path = tmp_path / "best.h5"
    meta = tmp_path / "best.h5.json"
    model = tiny_model(1.0)
    cb = BestCheckpoint(path, monitor="val_nme")
    cb.set_model(model)
    assert cb.best == math.inf

    cb.on_epoch_end(0, {"val_nme": 5.0})
    assert path.is_file() and saved_kernel(path) == 1.0
    assert json.loads(meta.read_text()) == {"best": 5.0, "monitor": "val_nme", "epoch": 1}

    for epoch, logs in [(1, {"val_nme": 6.0}), (2, {"val_nme": 5.0}), (3, {"val_nme": float("nan")}),
                        (4, {"loss": 0.1}), (5, None)]:
        model.get_layer("d").set_weights([np.full((3, 2), 10.0 + epoch, np.float32), np.zeros(2, np.float32)])
        cb.on_epoch_end(epoch, logs)
        assert saved_kernel(path) == 1.0, (epoch, logs)  # not overwritten
        assert json.loads(meta.read_text())["best"] == 5.0

    model.get_layer("d").set_weights([np.full((3, 2), 2.0, np.float32), np.zeros(2, np.float32)])
    cb.on_epoch_end(6, {"val_nme": 4.25})
    assert saved_kernel(path) == 2.0
    assert json.loads(meta.read_text()) == {"best": 4.25, "monitor": "val_nme", "epoch": 7}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.h5", "best.h5.json"]  # no temporaries


def test_best_checkpoint_resumes_from_its_json(tmp_path):
    path = tmp_path / "run" / "best.h5"
    first = BestCheckpoint(path, monitor="nme")
    first.set_model(tiny_model(3.0))
    first.on_epoch_end(0, {"nme": 7.5})
    assert path.is_file()

    resumed = BestCheckpoint(path, monitor="nme")
    assert resumed.best == 7.5
    resumed.set_model(tiny_model(4.0))
    resumed.on_epoch_end(3, {"nme": 8.0})  # worse than the previous run's best
    assert saved_kernel(path) == 3.0
    resumed.on_epoch_end(4, {"nme": 7.0})
    assert saved_kernel(path) == 4.0
    assert json.loads(path.with_name("best.h5.json").read_text())["epoch"] == 5


def test_same_schedule_so_far_holds_through_the_warm_up_only():
    from acrloss.callbacks import same_schedule_so_far

    # warm-up (epochs 0, 1) and the first cosine epoch (t = 0) agree for any long enough count
    assert same_schedule_so_far(1e-3, 200, 60, 4, 3)
    assert same_schedule_so_far(1e-3, 200, 60, 4, 0)
    assert not same_schedule_so_far(1e-3, 200, 60, 4, 4)  # epoch 3: the cosine has moved on differently
    assert not same_schedule_so_far(1e-3, 30, 4, 4, 3)  # epoch 2: curriculum level 2 of 4 under 4 epochs
    assert same_schedule_so_far(1e-3, 50, 50, 4, 50)
