"""acrloss.tasks: the family table, per-family option checks, and a new (toy) family added
with one task class plus one table entry, trained end to end by the unchanged ``Train``."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from acrloss import AugmentConfig
from acrloss.config import LossName, ModelArch
from acrloss.losses import get_loss
from acrloss.metrics import NMEMetric
from acrloss.tasks import TASKS, HeatmapTask, MusicaTask, RegressionTask, Task, TaskConfigError, task_class
from acrloss.train import Train

TRAIN_PY = Path(__file__).resolve().parents[2] / "acrloss" / "train.py"


def trainer(tmp_path, arch: str, **settings: Any) -> Train:
    """A ``Train`` on 300-W settings (nothing is read before ``train()``)."""
    return Train(arch=arch, dataset_name="300w", save_path=tmp_path / "run", data_dir=tmp_path, **settings)


def test_every_architecture_has_a_task_and_train_has_no_family_branch():
    assert set(TASKS) == {a.value for a in ModelArch}
    assert task_class("MNV2") is RegressionTask and task_class(ModelArch.MUSICA) is MusicaTask
    assert task_class("mnv2_heatmap") is HeatmapTask
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet'.*musica"):
        task_class("resnet")
    source = TRAIN_PY.read_text()
    for family in ("ModelArch.MUSICA", "ModelArch.MNV2_HEATMAP", "heatmap_model", "musica_model", "models.heatmap",
                   "models.musica", "build_regressor"):
        assert family not in source, family


@pytest.mark.parametrize("arch, settings, bad", [
    ("musica", dict(head="spatial"), "head"),
    ("musica", dict(alpha=0.5), "alpha"),
    ("efficientnet_b0", dict(alpha=0.5), "alpha"),
    ("mnv2", dict(heatmap_size=8), "heatmap_size"),
    ("mnv2", dict(musica_options={"hidden_units": 32}), "musica_options"),
    ("mnv2_heatmap", dict(head="spatial"), "head"),
    ("mnv2_heatmap", dict(acr_scale=4.0), "acr_scale"),
    ("mnv2", dict(loss="l2", acr_scale=4.0), "acr_scale"),
    ("musica", dict(loss="l1", acr_lambda=2.0), "acr_lambda"),
])
def test_an_option_of_another_family_or_loss_is_an_error(tmp_path, arch, settings, bad):
    with pytest.raises(TaskConfigError, match=re.escape(repr(bad))):
        trainer(tmp_path, arch, **settings)


def test_the_loss_is_the_familys_own(tmp_path):
    assert trainer(tmp_path, "mnv2").config.loss == "acr"  # None: the family's default
    assert trainer(tmp_path, "mnv2_heatmap").config.loss == "heatmap_mse"
    assert trainer(tmp_path, "mnv2_heatmap", loss="heatmap_mse").config.loss == "heatmap_mse"  # old config.json
    for arch, loss in (("mnv2_heatmap", "l2"), ("mnv2", "heatmap_mse"), ("musica", "heatmap_mse")):
        with pytest.raises(TaskConfigError, match=f"loss '{loss}' does not apply to arch '{arch}'"):
            trainer(tmp_path, arch, loss=loss)
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        trainer(tmp_path, "mnv2", loss="huber")


def test_acr_scale_reaches_musica_loss(tmp_path):
    t = trainer(tmp_path, "musica", acr_scale=8.0, acr_lambda=2.0)
    loss = t.task.compile_arguments()["loss"]["cascade"]
    assert (loss.scale, loss.lambda_) == (8.0, 2.0)
    assert t.task.monitor == "landmarks_nme" and t.task.uses_phi


# --------------------------------------------------------------------------- a new family
class ToyTask(Task):
    """A toy family: a two-layer conv net regressing the coordinates, L2 loss, NME metric, and a
    batch adapter that scales the images to [0, 1] (so the hooks are seen to be used)."""

    options = ()
    losses = (LossName.L2,)
    wrapped = 0

    def build_model(self, backbone_weights, preprocessing, train_samples):
        s = self.config.crop.input_size
        inputs = keras.Input((s, s, 3), name="image")
        x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(self.spec.num_coords, name="landmarks")(x), name="toy")

    def compile_arguments(self) -> dict[str, Any]:
        return {"loss": get_loss("l2", self.spec.num_coords),
                "metrics": [NMEMetric(self.spec.num_points, self.spec.norm_points)]}

    def wrap(self, sequence):
        type(self).wrapped += 1
        return _Scaled(sequence)


class _Scaled(keras.utils.PyDataset):
    def __init__(self, inner):
        super().__init__(workers=1)
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        images, targets = self.inner[index][:2]
        return np.asarray(images, np.float32) / 255.0, targets

    def on_epoch_end(self):
        self.inner.on_epoch_end()


def test_a_new_family_is_one_task_class_and_one_table_entry(w300_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ACRLOSS_QUIET", "1")
    monkeypatch.setitem(TASKS, "toy", ToyTask)  # the one table entry
    t = Train(arch="toy", dataset_name="300w", save_path=tmp_path / "toy", data_dir=w300_dir, epochs=1,
              max_train_faces=24, batch_size=8, input_size=32, workers=1, augment=AugmentConfig.none())
    assert isinstance(t.task, ToyTask) and t.config.loss == "l2"
    summary = t.train()
    assert ToyTask.wrapped == 2  # training and validation batches went through the task
    assert len(summary["history"]["loss"]) == 1 and np.isfinite(summary["history"]["loss"][0])
    assert json.loads((tmp_path / "toy" / "best.h5.json").read_text())["monitor"] == "val_nme"
    assert json.loads((tmp_path / "toy" / "config.json").read_text())["arch"] == "toy"
    with pytest.raises(TaskConfigError, match="'alpha'"):  # the toy reads no family option
        Train(arch="toy", dataset_name="300w", save_path=tmp_path / "x", data_dir=w300_dir, alpha=0.5)
