"""acrloss.tasks: the family table, per-family config checks, and a new (toy) family added
with one task class (and its own config class) plus one table entry, trained end to end by the
unchanged ``Train``."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from acrloss import AugmentConfig
from acrloss.config import (FamilyConfig, HeatmapConfig, LossConfig, LossName, ModelArch, MusicaConfig, RegressionConfig,
                            TrainConfig)
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


def test_each_family_declares_its_config_and_fills_in_its_defaults(tmp_path):
    expected = {RegressionTask: RegressionConfig, HeatmapTask: HeatmapConfig, MusicaTask: MusicaConfig}
    for arch, task in TASKS.items():
        assert task.config_class is expected[task], arch
        assert trainer(tmp_path, arch).config.model == expected[task]()  # None: the family's defaults
    mine = RegressionConfig(alpha=0.5)
    t = trainer(tmp_path, "mnv2", model=mine)
    assert t.config.model is mine and t.task.build_model  # taken as given


@pytest.mark.parametrize("arch, settings, named", [
    ("musica", dict(model=RegressionConfig(head="spatial")), "RegressionConfig (the 'regression' family's settings) does not "
                                                              "apply to arch 'musica', which takes MusicaConfig"),
    ("mnv2", dict(model=HeatmapConfig(size=8)), "HeatmapConfig (the 'heatmap' family's settings) does not apply to arch "
                                                "'mnv2', which takes RegressionConfig"),
    ("mnv2_heatmap", dict(model=MusicaConfig()), "MusicaConfig (the 'musica' family's settings) does not apply to arch "
                                                 "'mnv2_heatmap', which takes HeatmapConfig"),
    ("efficientnet_b0", dict(model=RegressionConfig(alpha=0.5)), "['alpha'] does not apply to arch 'efficientnet_b0'"),
    ("mnv2_heatmap", dict(loss=LossConfig(acr_scale=4.0)), "['acr_scale'] do not apply to loss 'heatmap_mse'"),
])
def test_a_config_of_another_family_or_loss_is_an_error(tmp_path, arch, settings, named):
    with pytest.raises(TaskConfigError, match=re.escape(named)):
        trainer(tmp_path, arch, **settings)


def test_the_loss_is_the_familys_own(tmp_path):
    assert trainer(tmp_path, "mnv2").config.loss.name == "acr"  # None: the family's default
    assert trainer(tmp_path, "mnv2_heatmap").config.loss.name == "heatmap_mse"
    assert trainer(tmp_path, "mnv2_heatmap", loss=LossConfig("heatmap_mse")).config.loss.name == "heatmap_mse"
    given = LossConfig(acr_scale=8.0)
    assert trainer(tmp_path, "musica", loss=given).config.loss == LossConfig("acr", acr_scale=8.0)
    assert given.name is None  # the caller's config is not changed
    for arch, loss in (("mnv2_heatmap", "l2"), ("mnv2", "heatmap_mse"), ("musica", "heatmap_mse")):
        with pytest.raises(TaskConfigError, match=f"loss '{loss}' does not apply to arch '{arch}'"):
            trainer(tmp_path, arch, loss=LossConfig(loss))
    with pytest.raises(ValueError, match="TrainConfig.loss must be a LossConfig"):
        trainer(tmp_path, "mnv2", loss="l2")


def test_imagenet_start_needs_a_full_width_mobilenet(tmp_path):
    assert trainer(tmp_path, "mnv2").task.imagenet_start and trainer(tmp_path, "mnv2_heatmap").task.imagenet_start
    assert not trainer(tmp_path, "mnv2", model=RegressionConfig(alpha=0.5)).task.imagenet_start
    assert not trainer(tmp_path, "efficientnet_b0").task.imagenet_start and not trainer(tmp_path, "musica").task.imagenet_start
    with pytest.raises(ValueError, match="alpha=1.0 only"):
        trainer(tmp_path, "mnv2_heatmap", model=HeatmapConfig(alpha=0.35), start="imagenet")._start()


def test_acr_scale_reaches_musica_loss(tmp_path):
    t = trainer(tmp_path, "musica", loss=LossConfig(acr_scale=8.0, acr_lambda=2.0))
    loss = t.task.compile_arguments()["loss"]["cascade"]
    assert (loss.scale, loss.lambda_) == (8.0, 2.0)
    assert t.task.monitor == "landmarks_nme" and t.task.uses_phi


# --------------------------------------------------------------------------- a new family
@dataclass
class ToyConfig(FamilyConfig, family="toy"):
    """The toy family's own settings."""

    width: int = 4  # convolution filters

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"ToyConfig.width must be an integer >= 1, got {self.width!r}")


class ToyTask(Task):
    """A toy family: a two-layer conv net regressing the coordinates, L2 loss, NME metric, and a
    batch adapter that scales the images to [0, 1] (so the hooks are seen to be used)."""

    config_class = ToyConfig
    losses = (LossName.L2,)
    wrapped = 0

    def build_model(self, backbone_weights, preprocessing, train_samples):
        s = self.config.crop.input_size
        inputs = keras.Input((s, s, 3), name="image")
        x = keras.layers.Conv2D(self.config.model.width, 3, strides=4, activation="relu")(inputs)
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
              max_train_faces=24, batch_size=8, input_size=32, workers=1, augment=AugmentConfig.none(),
              model=ToyConfig(width=6))
    assert isinstance(t.task, ToyTask) and t.config.loss.name == "l2"
    summary = t.train()
    assert t.model.layers[1].filters == 6  # the family read its own config
    assert ToyTask.wrapped == 2  # training and validation batches went through the task
    assert len(summary["history"]["loss"]) == 1 and np.isfinite(summary["history"]["loss"][0])
    assert json.loads((tmp_path / "toy" / "best.h5.json").read_text())["monitor"] == "val_nme"
    written = json.loads((tmp_path / "toy" / "config.json").read_text())
    assert written["arch"] == "toy" and written["model"] == {"family": "toy", "width": 6}
    assert TrainConfig.from_dict(written).model == ToyConfig(width=6)  # read back by its family tag
    with pytest.raises(TaskConfigError, match="RegressionConfig .* does not apply to arch 'toy', which takes ToyConfig"):
        Train(arch="toy", dataset_name="300w", save_path=tmp_path / "x", data_dir=w300_dir, model=RegressionConfig())
