"""The heatmap architecture end to end on real 300-W faces: a short run that is killed and
resumed, its best.h5 evaluated by Test with each decoder, the test.py --decoder flag, the
KeyPosS benchmark script, and the train CLI on the jax backend."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from acrloss import AugmentConfig
from acrloss import test as evaluation  # not "Test": pytest would collect it
from acrloss.config import CropConfig, HeatmapConfig, ModelArch
from acrloss.data_prep.crop import denormalize
from acrloss.data_prep.datasets import w300_subset
from acrloss.data_prep.pipeline import LandmarkSequence
from acrloss.models import load_model
from acrloss.models.heatmap import heatmap_codec
from acrloss.train import Train, build_parser

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SETTINGS = dict(arch=ModelArch.MNV2_HEATMAP, dataset_name="300w", epochs=2, max_train_faces=48, learning_rate=2e-3,
                input_size=64, model=HeatmapConfig(alpha=0.35, size=4, sigma=1.0), batch_size=16, workers=1,
                augment=AugmentConfig(occlusion_prob=0.0, blur_prob=0.0))


class Interrupt(Exception):
    pass


class KillAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.kill_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.kill_epoch:
            raise Interrupt(f"killed after epoch {epoch}")


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.fixture(scope="module")
def heatmap_run(w300_dir, tmp_path_factory):
    """Two epochs: killed after the first, then resumed (only the second runs)."""
    save = tmp_path_factory.mktemp("heatmap_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACRLOSS_QUIET", "1")
        with pytest.raises(Interrupt):
            Train(save_path=save, data_dir=w300_dir, **SETTINGS).train(extra_callbacks=[KillAfterEpoch(0)])
        assert (save / "checkpoint.npz").is_file()  # the resume state (acrloss.checkpoint)
        rec = Recorder()
        summary = Train(save_path=save, data_dir=w300_dir, **SETTINGS).train(resume=True, extra_callbacks=[rec])
    return save, summary, rec.epochs


def test_run_resumes_and_logs_the_landmark_nme(heatmap_run):
    save, summary, epochs = heatmap_run
    assert epochs == [1]  # the resumed run only did the missing epoch
    assert all(math.isfinite(v) for v in summary["history"]["loss"])
    with open(save / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert "val_landmarks_nme" in rows[0] and "pca_percent" not in rows[0]
    meta = json.loads((save / "best.h5.json").read_text())
    assert meta["monitor"] == "val_landmarks_nme"
    assert meta["best"] == pytest.approx(min(float(r["val_landmarks_nme"]) for r in rows))
    config = json.loads((save / "config.json").read_text())
    assert config["arch"] == "mnv2_heatmap" and config["loss"]["name"] == "heatmap_mse"
    assert config["model"] == {"family": "heatmap", "alpha": 0.35, "size": 4, "sigma": 1.0, "decoder": "keyposs", "fg_weight": 10.0}
    assert not (save / "pca").exists()  # no ACR curriculum / PCA tables for the heatmap arch
    assert not (save / "backup").exists()


def test_best_checkpoint_is_a_heatmap_model_that_test_evaluates(heatmap_run, w300_dir):
    save, _, _ = heatmap_run
    model = load_model(save / "best.h5")
    codec = heatmap_codec(model)
    assert (codec.input_size, codec.heatmap_size, codec.sigma, codec.decoder) == (64, 4, 1.0, "keyposs")
    results = {}
    for decoder in (None, "argmax"):
        r = evaluation.Test().test_model("300w", save / "best.h5", data_dir=w300_dir, subsets=("common",),
                                         max_faces=8, batch_size=8, decoder=decoder)
        assert r["subsets"]["common"]["n"] == 8 and math.isfinite(r["subsets"]["common"]["nme"])
        results[decoder] = r["subsets"]["common"]["nme"]
    # Test's number is the model's own "landmarks" output mapped back to the image
    samples = w300_subset(w300_dir, "common")[:8]
    images, _, transforms = LandmarkSequence(samples, CropConfig(64), batch_size=8, return_transforms=True, workers=1)[0]
    out = model(images, training=False)
    pts = np.asarray(out["landmarks"], np.float64).reshape(8, 68, 2)
    mine = np.mean([np.linalg.norm(t.inverse(denormalize(p, 64)) - s.points, axis=1).mean()
                    / np.linalg.norm(s.points[36] - s.points[45]) * 100 for p, t, s in zip(pts, transforms, samples)])
    assert results[None] == pytest.approx(mine, rel=1e-4)
    # argmax on 4x4 maps can only land on 16 cell centres: its points are different
    assert results["argmax"] != pytest.approx(results[None], rel=1e-6)


def test_test_cli_decoder_flag(heatmap_run, w300_dir, tmp_path):
    save, _, _ = heatmap_run
    out = tmp_path / "eval.json"
    evaluation.main(["--model", str(save / "best.h5"), "--data-dir", str(w300_dir), "--subsets", "common",
                     "--max-faces", "4", "--decoder", "dark", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["decoder"] == "dark" and result["subsets"]["common"]["n"] == 4
    regressor = REPO / "pre_trained_models" / "mnv2_acr_300w.h5"
    if regressor.is_file():
        with pytest.raises(evaluation.EvaluationError, match="mnv2_acr_300w.h5: .*no heatmap decode layer"):
            evaluation.Test().test_model("300w", regressor, data_dir=w300_dir, subsets=("common",), max_faces=2,
                                         decoder="argmax")


def test_keyposs_benchmark_on_the_run(heatmap_run, w300_dir, tmp_path):
    save, _, _ = heatmap_run
    out = tmp_path / "keyposs.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "keyposs.py"), "--data-dir", str(w300_dir), "--json", str(out),
           "--models", str(save / "best.h5"), "--max-faces", "8", "--batch", "8", "--repeat", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [r["decoder"] for r in rows] == ["argmax", "quarter", "dark", "keyposs"]
    assert all(r["heatmap"] == 4 and r["n"] == 8 and r["ms_decode"] > 0 and math.isfinite(r["nme"]) for r in rows)
    argmax, keyposs = rows[0]["nme"], rows[3]["nme"]
    assert report["ratios"]["4"]["keyposs_over_argmax"] == pytest.approx(keyposs / argmax)
    # the benchmark's keyposs figure is the checkpoint's own decoder: it equals Test's
    r = evaluation.Test().test_model("300w", save / "best.h5", data_dir=w300_dir, subsets=("common",), max_faces=8)
    assert keyposs == pytest.approx(r["subsets"]["common"]["nme"], rel=1e-4)


def test_train_parser_has_the_heatmap_flags():
    a = build_parser().parse_args(["--arch", "mnv2_heatmap", "--heatmap-size", "8", "--heatmap-sigma", "1.25",
                                   "--decoder", "dark", "--heatmap-fg-weight", "0", "--save-path", "x"])
    assert (a.arch, a.heatmap_size, a.heatmap_sigma, a.decoder, a.heatmap_fg_weight) == ("mnv2_heatmap", 8, 1.25, "dark", 0.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--decoder", "softargmax", "--save-path", "x"])


def test_unreachable_heatmap_size_fails_before_training(w300_dir, tmp_path):
    with pytest.raises(ValueError, match="heatmap_size 3"):
        Train(save_path=tmp_path, data_dir=w300_dir, **{**SETTINGS, "model": HeatmapConfig(alpha=0.35, size=3)}).build_model()


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_heatmap_train_cli_on_jax_backend(w300_dir, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "ACRLOSS_QUIET": "1"}
    cmd = [sys.executable, "-m", "acrloss.train", "--arch", "mnv2_heatmap", "--alpha", "0.35", "--input-size", "64",
           "--heatmap-size", "8", "--heatmap-sigma", "1.0", "--decoder", "keyposs", "--data-dir", str(w300_dir),
           "--epochs", "1", "--max-train-faces", "40", "--batch-size", "16", "--save-path", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert math.isfinite(summary["history"]["loss"][0]) and "val_landmarks_nme" in summary["history"]
    check = (
        "import math; from acrloss.test import Test; "
        f"r = Test().test_model('300w', r'{tmp_path / 'run' / 'best.h5'}', data_dir=r'{w300_dir}', subsets=('common',), "
        "max_faces=4, batch_size=4, decoder='dark'); assert math.isfinite(r['subsets']['common']['nme']); print('OK')"
    )
    proc = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
