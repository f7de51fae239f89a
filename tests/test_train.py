"""Integration tests on real 300-W faces: a short training run learns, its checkpoint
evaluates, and an interrupted run resumes where it stopped."""
from __future__ import annotations

import csv
import json
import math

import keras
import numpy as np
import pytest

from acrloss import AugmentConfig
from acrloss.config import CropConfig, LossConfig, RegressionConfig
from acrloss.data_prep.crop import denormalize
from acrloss.data_prep.datasets import w300_subset
from acrloss.data_prep.pipeline import LandmarkSequence
from acrloss import test as evaluation  # not "Test": pytest would collect it
from acrloss.train import Train

pytestmark = pytest.mark.slow

SMALL = dict(input_size=64, model=RegressionConfig(alpha=0.35), batch_size=16, augment=AugmentConfig.none(), workers=1)


@pytest.fixture(scope="module")
def trained_run(w300_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACRLOSS_QUIET", "1")
        save = tmp_path_factory.mktemp("run")
        trainer = Train(arch="mnv2", dataset_name="300w", save_path=save, data_dir=w300_dir, loss=LossConfig("acr"), epochs=4,
                        max_train_faces=112, learning_rate=2e-3, **SMALL)
        summary = trainer.train()
    return save, summary


def test_short_training_run_lowers_the_loss(trained_run):
    save, summary = trained_run
    losses = summary["history"]["loss"]
    assert len(losses) == 4
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    assert summary["train_faces"] + summary["val_faces"] == 112
    assert summary["val_faces"] == round(112 * 0.1)
    # the validation NME is tracked and the best checkpoint belongs to it
    assert len(summary["history"]["val_nme"]) == 4
    assert (save / "best.h5").is_file()
    meta = json.loads((save / "best.h5.json").read_text())
    assert meta["monitor"] == "val_nme"
    assert meta["best"] == pytest.approx(min(summary["history"]["val_nme"]))
    assert meta["epoch"] == 1 + int(np.argmin(summary["history"]["val_nme"]))
    assert summary["best_val_nme"] == meta["best"]
    # the curriculum walked through the kept-variance levels in order
    assert summary["history"]["pca_percent"] == [80.0, 85.0, 90.0, 95.0]
    # the PCA models of the four levels were saved; config and log written; backup removed
    for level in (80, 85, 90, 95):
        assert (save / "pca" / f"300w_pca{level}_eigenvectors.npy").is_file()
    config = json.loads((save / "config.json").read_text())
    assert config["crop"]["input_size"] == 64 and config["loss"]["name"] == "acr" and config["epochs"] == 4
    with open(save / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], losses, rtol=1e-5)
    assert not (save / "backup").exists()
    assert (save / "checkpoint.npz").is_file()  # the last epoch's resume state (acrloss.checkpoint)


def test_checkpoint_evaluates_on_common_and_reports_missing(trained_run, w300_dir, tmp_path):
    save, _ = trained_run
    out = tmp_path / "eval"
    result = evaluation.Test().test_model(ds_name="300w", pretrained_model_path=save / "best.h5", data_dir=w300_dir,
                               max_faces=16, out_dir=out, batch_size=8)
    common = result["subsets"]["common"]
    assert common["n"] == 16
    for key in ("nme", "fr10", "auc10"):
        assert math.isfinite(common[key]), key
    assert common["nme"] > 0 and 0 <= common["fr10"] <= 100 and 0 <= common["auc10"] <= 1
    assert set(result["subsets"]) == {"common"}
    assert "challenging" in result["missing"] and "ibug/" in result["missing"]["challenging"]
    assert "full" in result["missing"]
    assert result["input_size"] == 64
    assert (out / "ced.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(out / "per_face.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and {r["subset"] for r in rows} == {"common"}
    per_face = np.array([float(r["nme_percent"]) for r in rows])
    assert common["nme"] == pytest.approx(per_face.mean())
    assert common["fr10"] == pytest.approx(100.0 * np.mean(per_face > 10.0))

    # recompute the first faces' NME here: predictions mapped back to the image, mean point
    # error divided by the distance between the outer eye corners 36 and 45
    samples = w300_subset(w300_dir, "common")[:4]
    assert [r["image"] for r in rows[:4]] == [s.image_path for s in samples]
    model = keras.models.load_model(save / "best.h5", compile=False)
    images, _, transforms = LandmarkSequence(samples, CropConfig(64), batch_size=4, return_transforms=True, workers=1)[0]
    pred = np.asarray(model(images, training=False), dtype=np.float64).reshape(4, 68, 2)
    for s, p, t, row in zip(samples, pred, transforms, rows):
        img_pts = t.inverse(denormalize(p, 64))
        iod = np.linalg.norm(s.points[36] - s.points[45])
        mine = np.linalg.norm(img_pts - s.points, axis=1).mean() / iod * 100.0
        assert float(row["nme_percent"]) == pytest.approx(mine, rel=1e-4)


class Interrupt(Exception):
    pass


class KillAfterEpoch(keras.callbacks.Callback):
    """Simulates a kill at the end of an epoch (after the built-in callbacks ran)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.kill_epoch = epoch
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.kill_epoch:
            self.weights = [np.array(w) for w in self.model.get_weights()]
            raise Interrupt(f"killed after epoch {epoch}")


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.start_weights = None
        self.epochs = []

    def on_train_begin(self, logs=None):  # runs after the checkpoint callback restored the weights
        self.start_weights = [np.array(w) for w in self.model.get_weights()]

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_interrupted_run_resumes_without_redoing_epochs(w300_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ACRLOSS_QUIET", "1")
    save = tmp_path / "resume"
    settings = dict(arch="mnv2", dataset_name="300w", save_path=save, data_dir=w300_dir, loss=LossConfig("acr"), epochs=3,
                    max_train_faces=40, learning_rate=2e-3, **SMALL)
    kill = KillAfterEpoch(1)
    with pytest.raises(Interrupt):
        Train(**settings).train(extra_callbacks=[kill])
    assert (save / "checkpoint.npz").is_file()
    with open(save / "log.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [0, 1]
    best_before = json.loads((save / "best.h5.json").read_text())["best"]

    rec = Recorder()
    summary = Train(**settings).train(resume=True, extra_callbacks=[rec])
    assert rec.epochs == [2]  # only the missing epoch ran
    assert len(summary["history"]["loss"]) == 1
    assert summary["history"]["pca_percent"] == [90.0]  # epoch 3 of 3 -> third level (4 levels share 3 epochs)
    # it continued from the weights of the interrupted run, not from a fresh model
    assert kill.weights is not None and len(rec.start_weights) == len(kill.weights)
    for a, b in zip(rec.start_weights, kill.weights):
        np.testing.assert_array_equal(a, b)
    with open(save / "log.csv") as fh:
        text = fh.read()
    assert text.count("epoch") == 1  # one header
    assert [int(r["epoch"]) for r in csv.DictReader(text.splitlines())] == [0, 1, 2]
    best_after = json.loads((save / "best.h5.json").read_text())["best"]
    assert best_after <= best_before
    assert not (save / "backup").exists()


def test_cli_passes_the_acr_knobs_to_the_config(train_cli):
    """--acr-scale, --acr-lambda and --pca-levels reach the TrainConfig that Train gets."""
    cfg = train_cli("--loss", "acr", "--acr-scale", "8", "--acr-lambda", "4", "--pca-levels", "95", "--resume")
    assert (cfg.loss, tuple(cfg.curriculum.levels), train_cli.resume) == (LossConfig("acr", 4.0, 8.0), (95,), True)


def test_init_weights_start_from_a_finished_run(trained_run, w300_dir, tmp_path):
    """init_weights loads a finished run's best.h5 into the freshly built model; a missing
    file and a different architecture are named in the error."""
    save, _ = trained_run
    best = save / "best.h5"
    trainer = Train(arch="mnv2", dataset_name="300w", save_path=tmp_path / "again", data_dir=w300_dir,
                    init_weights=str(best), **SMALL)
    model = trainer.build_model()
    reference = keras.models.load_model(best, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(reference(x)), atol=1e-5)
    fresh = Train(arch="mnv2", dataset_name="300w", save_path=tmp_path / "fresh", data_dir=w300_dir, **SMALL).build_model()
    assert np.abs(keras.ops.convert_to_numpy(fresh(x)) - keras.ops.convert_to_numpy(reference(x))).max() > 1e-3
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        Train(arch="mnv2", dataset_name="300w", save_path=tmp_path / "x", data_dir=w300_dir,
              init_weights=str(tmp_path / "nowhere.h5"), **SMALL).build_model()
    with pytest.raises(ValueError, match="best.h5"):
        Train(arch="mnv2", dataset_name="300w", save_path=tmp_path / "y", data_dir=w300_dir,
              init_weights=str(best), **dict(SMALL, model=RegressionConfig(alpha=1.0))).build_model()
