"""Issue 12 recipe levers: global-norm clipping and EMA reach the optimizer, are saved in
config.json, survive --resume (a tiny real-data run killed and resumed), and best.h5 holds
the averaged weights; the leave-one-source-out splits; the CLI flags."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from acrloss import AugmentConfig
from acrloss.config import LossConfig, RegressionConfig, TrainConfig
from acrloss.data_prep.splits import loso_split
from acrloss.recipe import build_optimizer, check_resume
from acrloss.train import Train

SMALL = dict(input_size=64, model=RegressionConfig(alpha=0.35), batch_size=16, augment=AugmentConfig.none(), workers=1)


def trainable(model) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]


def test_optimizer_gets_clipping_and_ema():
    opt = build_optimizer(TrainConfig(clip_global_norm=1.5, ema_momentum=0.98))
    assert opt.global_clipnorm == 1.5 and opt.use_ema and opt.ema_momentum == pytest.approx(0.98)
    plain = build_optimizer(TrainConfig())
    assert plain.global_clipnorm is None and not plain.use_ema
    for bad in (dict(clip_global_norm=0.0), dict(ema_momentum=1.0), dict(ema_momentum=-0.1), dict(split="loso-afw")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_clipping_bounds_the_update():
    """Gradients of a huge global norm are rescaled to the configured norm; without clipping
    they pass unchanged."""
    opt = build_optimizer(TrainConfig(clip_global_norm=1.0, learning_rate=0.1, weight_decay=0.0))
    grads = [keras.ops.convert_to_tensor(np.full((3,), 1e3, np.float32)), keras.ops.convert_to_tensor(np.full((4,), -1e3, np.float32))]
    clipped = opt._clip_gradients(grads)
    norm = float(np.sqrt(sum(float(np.sum(np.square(keras.ops.convert_to_numpy(g)))) for g in clipped)))
    assert norm == pytest.approx(1.0, rel=1e-5)
    unclipped = build_optimizer(TrainConfig())._clip_gradients(grads)
    assert float(np.abs(keras.ops.convert_to_numpy(unclipped[0])).max()) == pytest.approx(1e3)


class Interrupt(Exception):
    pass


class Watch(keras.callbacks.Callback):
    """Runs after the built-in callbacks: records the model's trainable weights (the EMA
    weights, swapped in at epoch end) and the optimizer's averages (the raw weights then),
    and optionally kills the run after an epoch."""

    def __init__(self, kill_epoch: int | None = None):
        super().__init__()
        self.kill_epoch = kill_epoch
        self.model_weights: dict[int, list[np.ndarray]] = {}
        self.averages: dict[int, list[np.ndarray]] = {}
        self.start_model = self.start_averages = None
        self.optimizer_config = None

    def _avg(self):
        return [np.array(keras.ops.convert_to_numpy(v)) for v in self.model.optimizer._model_variables_moving_average]

    def on_train_begin(self, logs=None):  # after the checkpoint's state was restored
        self.optimizer_config = self.model.optimizer.get_config()

    def on_epoch_begin(self, epoch, logs=None):  # the state the first epoch trains from
        if self.start_model is None and self.model.optimizer.built:
            self.start_model, self.start_averages = trainable(self.model), self._avg()

    def on_epoch_end(self, epoch, logs=None):
        self.model_weights[epoch] = trainable(self.model)
        self.averages[epoch] = self._avg()
        if epoch == self.kill_epoch:
            raise Interrupt(f"killed after epoch {epoch}")


def test_clip_and_ema_saved_and_survive_resume(w300_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ACRLOSS_QUIET", "1")
    save = tmp_path / "ema_run"
    settings = dict(arch="mnv2", dataset_name="300w", save_path=save, data_dir=w300_dir, loss=LossConfig("acr"), epochs=3,
                    max_train_faces=40, learning_rate=2e-3, clip_global_norm=0.5, ema_momentum=0.7, **SMALL)
    first = Watch(kill_epoch=1)
    with pytest.raises(Interrupt):
        Train(**settings).train(extra_callbacks=[first])
    config = json.loads((save / "config.json").read_text())
    assert config["clip_global_norm"] == 0.5 and config["ema_momentum"] == 0.7 and config["split"] == "random"
    assert first.optimizer_config["global_clipnorm"] == 0.5 and first.optimizer_config["use_ema"]
    # at epoch end the model holds the EMA weights, which differ from the raw weights
    ema1, raw1 = first.model_weights[1], first.averages[1]
    assert max(float(np.abs(a - b).max()) for a, b in zip(ema1, raw1)) > 1e-4
    # best.h5 is the EMA model of its epoch
    best_epoch = json.loads((save / "best.h5.json").read_text())["epoch"] - 1
    best = keras.models.load_model(save / "best.h5", compile=False)
    for a, b in zip(trainable(best), first.model_weights[best_epoch]):
        np.testing.assert_allclose(a, b, atol=1e-6)

    # resuming with another EMA momentum is refused, naming the field
    with pytest.raises(ValueError, match="ema_momentum"):
        Train(**dict(settings, ema_momentum=0.9)).train(resume=True)
    second = Watch()
    summary = Train(**settings).train(resume=True, extra_callbacks=[second])
    assert len(summary["history"]["loss"]) == 1  # only the missing epoch ran
    assert second.optimizer_config["global_clipnorm"] == 0.5 and second.optimizer_config["ema_momentum"] == 0.7
    # the raw weights and the averages continue exactly from the killed run
    for a, b in zip(second.start_model, raw1):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(second.start_averages, ema1):
        np.testing.assert_array_equal(a, b)
    assert json.loads((save / "config.json").read_text())["ema_momentum"] == 0.7


def test_check_resume_accepts_old_configs(tmp_path):
    """A run saved before these settings existed resumes with the defaults; others are refused."""
    old = json.loads(json.dumps(__import__("dataclasses").asdict(TrainConfig()), default=str))
    for key in ("split", "clip_global_norm", "ema_momentum"):
        old.pop(key)
    for key in ("lowres_prob", "box_jitter_prob"):
        old["augment"].pop(key)
    (tmp_path / "config.json").write_text(json.dumps(old))
    check_resume(tmp_path, TrainConfig())
    with pytest.raises(ValueError, match="clip_global_norm"):
        check_resume(tmp_path, TrainConfig(clip_global_norm=1.0))
    with pytest.raises(ValueError, match="augment"):
        check_resume(tmp_path, TrainConfig(augment=AugmentConfig.robust()))


def test_loso_splits(w300_dir):
    train, val = loso_split(w300_dir, "loso-lfpw")
    assert len(val) == 805 and all("/lfpw/trainset/" in s.image_path for s in val)
    assert len(train) == 337 + 870 and not any("/lfpw/" in s.image_path for s in train)
    train, val = loso_split(w300_dir, "loso-helen", max_train_faces=100)
    assert len(val) == 870 and all("/helen/trainset/" in s.image_path for s in val)
    assert len(train) == 100 and not any("/helen/" in s.image_path for s in train)
    trainer = Train(arch="mnv2", dataset_name="300w", save_path="unused", data_dir=w300_dir, split="loso-helen", **SMALL)
    t2, v2 = trainer._samples()
    assert len(t2) == 337 + 805 and len(v2) == 870
    with pytest.raises(ValueError, match="not a leave-one-source-out"):
        loso_split(w300_dir, "random")


def test_cli_recipe_flags(train_cli):
    cfg = train_cli("--clip-norm", "1", "--ema", "0.99", "--split", "loso-helen", "--augment", "robust")
    assert (cfg.clip_global_norm, cfg.ema_momentum, cfg.split) == (1.0, 0.99, "loso-helen")
    assert cfg.augment == AugmentConfig.robust()
    cfg = train_cli()
    assert (cfg.clip_global_norm, cfg.ema_momentum, cfg.split) == (None, None, "random")
    assert cfg.augment == AugmentConfig()
    with pytest.raises(SystemExit):
        train_cli("--ema", "1.5")
    with pytest.raises(SystemExit):
        train_cli("--no-augment", "--augment", "robust")
