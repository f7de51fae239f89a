"""Typed training settings: the enums' shared parsing, the loss and per-family configs, reading the
settings of shipped models and old (flat) runs, and the train CLI checked against the dataclasses."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from acrloss.codecs.heatmap import DECODERS
from acrloss.checkpoint import _config_diff
from acrloss.config import (ChoiceEnum, DatasetName, Decoder, FamilyConfig, HeatmapConfig, Head, LossConfig, LossName,
                            ModelArch, MusicaConfig, RegressionConfig, TaskConfigError, TrainConfig, is_flat_settings)
from acrloss.losses import LOSS_NAMES
from acrloss.models.musica import DEFAULTS
from acrloss.tasks import TASKS
from acrloss.train import FAMILY_FLAGS, LOSS_FLAGS, build_parser

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("enum, label", [(DatasetName, "dataset"), (ModelArch, "architecture"), (LossName, "loss"),
                                         (Head, "head"), (Decoder, "decoder")])
def test_enums_share_one_parse(enum, label):
    assert issubclass(enum, ChoiceEnum)
    first = list(enum)[0]
    assert enum.parse(first) is first and enum.parse(first.value.upper()) is first and enum.parse(first.name) is first
    with pytest.raises(ValueError) as err:
        enum.parse("nope")
    assert str(err.value) == f"unknown {label} 'nope'; choose one of {enum.choices()}"


def test_choice_lists_come_from_the_enums():
    assert DECODERS == tuple(Decoder.choices())
    assert LOSS_NAMES == ("acr", "l2", "l1")


def test_musica_config_is_typed_and_validated():
    assert {"input_size": 128, **MusicaConfig().model_options()} == DEFAULTS
    assert "error_weight" not in MusicaConfig().model_options() and MusicaConfig().error_weight == 0.1
    cfg = MusicaConfig.from_dict({"stage_levels": [1, 0], "stage_points": ["coarse", [0, 1, 2]], "channels": [4, 8]})
    assert cfg.stage_levels == (1, 0) and cfg.stage_points == ("coarse", (0, 1, 2)) and cfg.channels == (4, 8)
    for bad, match in (({"bogus": 1}, "unknown settings \\['bogus'\\]"), ({"hidden_units": "64"}, "hidden_units"),
                       ({"stage_levels": [1, 0]}, "one subset per stage"), ({"grey": 1}, "grey"),
                       ({"channels": [4]}, "two widths"), ({"error_weight": -1}, "error_weight")):
        with pytest.raises(ValueError, match=match):
            MusicaConfig.from_dict(bad)


@pytest.mark.parametrize("cls, bad, match", [
    (LossConfig, dict(name="huber"), "unknown loss 'huber'"),
    (LossConfig, dict(acr_scale=0), "acr_scale must be a number > 0"),
    (LossConfig, dict(acr_lambda="2"), "acr_lambda"),
    (RegressionConfig, dict(head="fc"), "unknown head 'fc'"),
    (RegressionConfig, dict(alpha=0), "alpha"),
    (HeatmapConfig, dict(decoder="softargmax"), "unknown decoder 'softargmax'"),
    (HeatmapConfig, dict(size=0), "size must be an integer >= 1"),
    (HeatmapConfig, dict(size=True), "size"),
    (HeatmapConfig, dict(sigma=-1.0), "sigma"),
    (HeatmapConfig, dict(fg_weight=-0.5), "fg_weight must be a number >= 0"),
])
def test_loss_and_family_configs_are_validated(cls, bad, match):
    with pytest.raises(ValueError, match=match):
        cls(**bad)


def test_acr_options_with_another_loss_are_an_error_not_ignored():
    assert LossConfig("l2") == LossConfig("l2", acr_lambda=1.0, acr_scale=1.0)
    assert LossConfig(None, acr_scale=8.0).acr_scale == 8.0  # the family's default loss: decided by its task
    with pytest.raises(TaskConfigError, match=r"\['acr_lambda', 'acr_scale'\] do not apply to loss 'l1'"):
        LossConfig("l1", acr_lambda=2.0, acr_scale=4.0)


def test_train_config_holds_typed_sections():
    cfg = TrainConfig()
    assert cfg.loss == LossConfig() and cfg.model is None  # None: the arch's family config, filled in by its task
    for bad in (dict(loss="acr"), dict(model={"alpha": 0.5}), dict(model=LossConfig())):
        with pytest.raises(ValueError, match="TrainConfig"):
            TrainConfig(**bad)


def test_family_configs_read_back_by_their_family_tag():
    for config in (RegressionConfig(alpha=0.5, head="spatial"), HeatmapConfig(size=8, decoder="dark"),
                   MusicaConfig(hidden_units=32, stage_levels=(1, 0), stage_points=("coarse", (0, 1)))):
        data = json.loads(json.dumps(config.to_dict()))
        assert data["family"] == config.family
        assert FamilyConfig.from_dict(data) == config and type(config).from_dict(data) == config
    with pytest.raises(ValueError, match="unknown model family 'resnet'"):
        FamilyConfig.from_dict({"family": "resnet"})
    with pytest.raises(ValueError, match="settings of the 'heatmap' family"):
        RegressionConfig.from_dict(HeatmapConfig().to_dict())
    with pytest.raises(TypeError, match="already has its config"):
        type("Other", (FamilyConfig,), {}, family="heatmap")


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "pre_trained_models").glob("*.json")
                                         if "ensemble" not in json.loads(p.read_text())), ids=lambda p: p.stem)
def test_shipped_settings_read_back(path):  # ensembles have no settings of their own: tests/test_pretrained.py
    settings = json.loads(path.read_text())["settings"]
    cfg = TrainConfig.from_dict(settings)
    family = TASKS[cfg.arch].config_class
    assert type(cfg.model) is family
    assert cfg.arch == settings["arch"] and cfg.crop.input_size == settings["crop"]["input_size"]
    if not is_flat_settings(settings):  # shipped after the nested configs: the run's own config.json
        assert settings["model"]["family"] == family.family
        assert json.loads(json.dumps(cfg.to_dict())) == settings
        return
    # shipped before the nested configs: the old flat settings
    assert cfg.loss.name == settings["loss"] and cfg.loss.acr_lambda == settings["acr_lambda"]
    if family is HeatmapConfig:
        assert (cfg.model.size, cfg.model.sigma, cfg.model.decoder) == (
            settings["heatmap_size"], settings["heatmap_sigma"], settings["decoder"])
    if family is RegressionConfig:
        assert (cfg.model.alpha, cfg.model.head) == (settings["alpha"], settings["head"])
    # what a run writes (config.json) is nested and reads back to the same config
    written = json.loads(json.dumps(cfg.to_dict()))
    assert not is_flat_settings(written) and written["model"]["family"] == family.family
    assert TrainConfig.from_dict(written) == cfg


def test_old_run_config_reads_back_and_unknown_settings_are_named():
    old = {"arch": "mnv2_heatmap", "loss": "heatmap_mse", "heatmap_size": 4, "musica_options": {}, "crop": {"input_size": 64},
           "curriculum": {"levels": [80, 90]}, "alpha": 0.5, "head": "gap", "musica_error_weight": 0.1}
    cfg = TrainConfig.from_dict(old)
    assert cfg.loss == LossConfig("heatmap_mse") and cfg.model == HeatmapConfig(alpha=0.5, size=4)
    assert cfg.crop.input_size == 64 and list(cfg.curriculum.levels) == [80, 90]
    musica = TrainConfig.from_dict({"arch": "musica", "loss": "l2", "musica_error_weight": 0.3,
                                    "musica_options": {"hidden_units": 32}, "decoder": "keyposs"})
    assert musica.model == MusicaConfig(error_weight=0.3, hidden_units=32)
    with pytest.raises(ValueError, match=r"unknown settings \['musica_stages'\]"):
        TrainConfig.from_dict({**old, "musica_stages": 3})
    # another family's setting away from its old default cannot be dropped silently
    with pytest.raises(TaskConfigError, match=r"\['head'\] do not apply to arch 'mnv2_heatmap'"):
        TrainConfig.from_dict({**old, "head": "spatial"})
    with pytest.raises(TaskConfigError, match="musica_options"):
        TrainConfig.from_dict({**old, "musica_options": {"hidden_units": 32}})
    with pytest.raises(ValueError, match="mix the flat form"):
        TrainConfig.from_dict({**old, "model": None})


def test_resume_check_reads_an_old_flat_checkpoint_config():
    """A run started before the nested configs keeps resuming: its flat settings compare equal
    to the same settings now, and a real difference is still named."""
    shipped = json.loads((ROOT / "pre_trained_models" / "mnv2_acr_300w.json").read_text())["settings"]
    now = TrainConfig.from_dict(shipped).to_dict()
    assert _config_diff(shipped, now) == []
    changed = TrainConfig.from_dict({**shipped, "alpha": 0.5}).to_dict()
    assert [d.split(":")[0] for d in _config_diff(shipped, changed)] == ["model"]


#: every TrainConfig field -> the train CLI flag's dest that sets it (None: deliberately not a flag;
#: "loss" / "model": the LossConfig / family config, routed by LOSS_FLAGS / FAMILY_FLAGS)
CLI_FIELDS = {
    "arch": "arch", "dataset": "dataset", "loss": LOSS_FLAGS, "model": FAMILY_FLAGS, "epochs": "epochs",
    "batch_size": "batch_size", "learning_rate": "lr", "weight_decay": None, "val_fraction": "val_fraction", "seed": "seed",
    "start": "start", "init_weights": "init_weights", "preprocessing": None, "workers": "workers",
    "max_train_faces": "max_train_faces", "user_mirror": "mirror", "user_norm_points": "norm_points", "crop": "input_size",
    "augment": "augment", "curriculum": "pca_levels", "split": "split", "clip_global_norm": "clip_norm", "ema_momentum": "ema",
    "devices": "devices", "precision": "precision", "image_cache_mb": "image_cache_mb",
}


def test_train_cli_and_train_config_cannot_drift():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(CLI_FIELDS) == set(fields), "a TrainConfig field without a CLI decision (add it to CLI_FIELDS)"
    actions = {a.dest: a for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)}
    d = TrainConfig()
    for name, dest in CLI_FIELDS.items():
        if dest is None or isinstance(dest, dict):
            continue
        assert dest in actions, f"TrainConfig.{name}: no --{dest.replace('_', '-')} flag"
        default = getattr(d, name)
        if isinstance(default, (int, float, str)) or default is None:
            assert actions[dest].default == default, (name, actions[dest].default, default)
    # the loss and every family config of the task table: each field is set by one flag, whose default
    # None leaves the dataclass default (so the two cannot disagree)
    family_configs = {task.config_class for task in TASKS.values()} - {None}
    assert set(FAMILY_FLAGS) == family_configs, "a family config without CLI flags (add it to FAMILY_FLAGS)"
    for config_class, flags in [(LossConfig, LOSS_FLAGS), *FAMILY_FLAGS.items()]:
        names = [f.name for f in dataclasses.fields(config_class)]
        routed = [field for field in flags.values() if field != "*"]
        assert len(routed) == len(set(routed)) and set(routed) <= set(names), config_class.__name__
        if "*" not in flags.values():
            assert set(routed) == set(names), f"{config_class.__name__}: fields without a flag {set(names) - set(routed)}"
        for dest in flags:
            assert dest in actions and actions[dest].default is None, (config_class.__name__, dest)
    assert set(MusicaConfig.architecture_fields()) | {"error_weight"} == {f.name for f in dataclasses.fields(MusicaConfig)}
    choices = {"arch": list(TASKS), "loss": LossName.choices(), "head": Head.choices(), "decoder": Decoder.choices()}
    for dest, expected in choices.items():
        assert list(actions[dest].choices) == expected, dest


def test_cli_flags_fill_the_arch_family_config(train_cli):
    assert train_cli().model == RegressionConfig() and train_cli().loss == LossConfig()
    assert train_cli("--alpha", "0.5", "--head", "spatial").model == RegressionConfig(alpha=0.5, head="spatial")
    cfg = train_cli("--arch", "mnv2_heatmap", "--alpha", "0.35", "--heatmap-size", "8", "--heatmap-sigma", "1.25",
                     "--decoder", "dark", "--heatmap-fg-weight", "0")
    assert cfg.model == HeatmapConfig(alpha=0.35, size=8, sigma=1.25, decoder="dark", fg_weight=0.0)
    cfg = train_cli("--arch", "musica", "--loss", "l2", "--musica-error-weight", "0.3", "--musica-option", "hidden_units=32")
    assert cfg.model == MusicaConfig(error_weight=0.3, hidden_units=32) and cfg.loss == LossConfig("l2")


@pytest.mark.parametrize("flags, named", [
    (["--heatmap-size", "8"], "--heatmap-size: not an option of --arch mnv2 (its own: --alpha, --head)"),
    (["--arch", "musica", "--alpha", "1.0"], "--alpha: not an option of --arch musica"),
    (["--arch", "mnv2_heatmap", "--head", "gap", "--musica-option", "hidden_units=8"], "--head, --musica-option: not an option"),
    (["--loss", "l2", "--acr-scale", "8"], "['acr_scale'] do not apply to loss 'l2'"),
    (["--arch", "musica", "--musica-option", "stage_levels=[1,0]"], "one subset per stage"),
])
def test_cli_flag_of_another_family_or_loss_is_an_error(train_cli, capsys, flags, named):
    with pytest.raises(SystemExit) as exc:
        train_cli(*flags)
    assert exc.value.code == 2 and named in capsys.readouterr().err
