"""Early exit (acrloss.early_exit): +inf runs one stage, -inf all; later stages are called
only with the faces still above the threshold (compaction, checked by spying on the stage
functions); results agree with the full model; flags and multiply-add accounting."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from acrloss.early_exit import EarlyExitCascade
from acrloss.models.musica import build_musica, stage_macs

RNG = np.random.default_rng(1)
M = 10


@pytest.fixture(scope="module")
def model():
    m = build_musica(RNG.uniform(-0.3, 0.3, 136).astype("float32"), input_size=32, stage_levels=(2, 1, 0),
                     stage_points=("coarse", "half", "all"), patch_size=4, channels=(4, 8), gate_units=4, patch_units=4,
                     hidden_units=16)
    for w in m.weights:  # non-trivial shape updates and errors that differ per face
        if w.trainable:
            w.assign(RNG.normal(0, 0.1, tuple(w.shape)).astype("float32"))
    return m


@pytest.fixture(scope="module")
def images():
    return RNG.uniform(0, 255, (M, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="module")
def reference(model, images):
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(images).items()}


def spy(runner):
    """Record the batch size each stage function is called with."""
    seen = [[] for _ in runner._stage_fns]

    def wrap(t, fn):
        def inner(inputs):
            sizes = {len(x) for x in inputs}
            assert len(sizes) == 1, "stage inputs of different batch sizes"
            seen[t].append(sizes.pop())
            return fn(inputs)

        return inner

    runner._stage_fns = [wrap(t, fn) for t, fn in enumerate(runner._stage_fns)]
    return seen


@pytest.mark.parametrize("compiled", [True, False])
def test_plus_infinity_runs_one_stage_minus_infinity_all(model, images, reference, compiled):
    runner = EarlyExitCascade(model, compiled=compiled)
    seen = spy(runner)
    res = runner.run(images, np.inf)
    assert seen == [[M], [], []]  # stages 2 and 3 were never called
    assert res.faces_per_stage.tolist() == [M, 0, 0] and runner.calls.tolist() == [M, 0, 0]
    assert res.stopped_at.tolist() == [0] * M and res.stopped_share == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(res.landmarks, reference["stages"][:, 0], atol=1e-5)
    np.testing.assert_allclose(res.errors, reference["errors"][:, 0], atol=1e-5)
    assert not res.flagged.any()  # only faces that ran the last stage can be flagged
    assert res.mean_macs == stage_macs(model)[0]

    res = runner.run(images, -np.inf)
    assert seen == [[M, M], [M], [M]]
    assert res.faces_per_stage.tolist() == [M, M, M] and runner.calls.tolist() == [2 * M, M, M]
    assert res.stopped_at.tolist() == [2] * M
    np.testing.assert_allclose(res.landmarks, reference["landmarks"], atol=1e-5)
    np.testing.assert_allclose(runner.full(images), reference["landmarks"], atol=1e-5)
    assert res.mean_macs == sum(stage_macs(model))
    np.testing.assert_array_equal(res.flagged, reference["errors"][:, -1] > 0.10)


def test_only_faces_above_the_threshold_continue(model, images, reference):
    runner = EarlyExitCascade(model)
    seen = spy(runner)
    err = reference["errors"]
    threshold = float(np.median(err[:, 0]))
    res = runner.run(images, threshold, failure_threshold=float(np.median(err[:, -1])))
    go1 = ~(err[:, 0] < threshold)
    go2 = go1 & ~(err[:, 1] < threshold)
    assert 0 < go1.sum() < M  # a real split
    assert seen == [[M], [int(go1.sum())], [int(go2.sum())] if go2.any() else []]
    assert res.faces_per_stage.tolist() == [M, int(go1.sum()), int(go2.sum())]
    expected_stop = np.where(~go1, 0, np.where(~go2, 1, 2))
    np.testing.assert_array_equal(res.stopped_at, expected_stop)
    # every face's landmarks and error are those of the stage it stopped at in the full model
    rows = np.arange(M)
    np.testing.assert_allclose(res.landmarks, reference["stages"][rows, expected_stop], atol=1e-5)
    np.testing.assert_allclose(res.errors, err[rows, expected_stop], atol=1e-5)
    np.testing.assert_array_equal(res.flagged, (expected_stop == 2) & (err[:, -1] > res.failure_threshold))
    macs = np.asarray(stage_macs(model))
    assert res.mean_macs == pytest.approx(float(macs @ res.faces_per_stage) / M)
    assert sum(res.stopped_share) == pytest.approx(1.0)


def test_rejects_other_models_and_bad_inputs(model):
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not a MuSiCa model"):
        EarlyExitCascade(plain)
    with pytest.raises(ValueError, match="images must be"):
        EarlyExitCascade(model).run(np.zeros((2, 16, 16, 3), np.float32), 0.05)
