"""Typed training settings: the enums' shared parsing, MuSiCa's typed architecture, reading the
settings of shipped models and old runs, and the train CLI checked against TrainConfig."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from acrloss.codecs.heatmap import DECODERS
from acrloss.config import (ChoiceEnum, DatasetName, Decoder, Head, LossName, ModelArch, MusicaConfig, TrainConfig)
from acrloss.losses import LOSS_NAMES
from acrloss.models.musica import DEFAULTS
from acrloss.tasks import TASKS
from acrloss.train import build_parser

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
    assert {"input_size": 128, **dataclasses.asdict(MusicaConfig())} == DEFAULTS
    cfg = MusicaConfig.from_options({"stage_levels": [1, 0], "stage_points": ["coarse", [0, 1, 2]], "channels": [4, 8]})
    assert cfg.stage_levels == (1, 0) and cfg.stage_points == ("coarse", (0, 1, 2)) and cfg.channels == (4, 8)
    for bad, match in (({"bogus": 1}, "unknown keys \\['bogus'\\]"), ({"hidden_units": "64"}, "hidden_units"),
                       ({"stage_levels": [1, 0]}, "one subset per stage"), ({"grey": 1}, "grey"),
                       ({"channels": [4]}, "two widths")):
        with pytest.raises(ValueError, match=match):
            MusicaConfig.from_options(bad)
    assert TrainConfig(musica_options={"hidden_units": 32}).musica_options == MusicaConfig(hidden_units=32)


@pytest.mark.parametrize("path", sorted((ROOT / "pre_trained_models").glob("*.json")), ids=lambda p: p.stem)
def test_shipped_settings_read_back(path):
    settings = json.loads(path.read_text())["settings"]
    cfg = TrainConfig.from_dict(settings)
    assert cfg.arch == settings["arch"] and cfg.crop.input_size == settings["crop"]["input_size"]
    assert cfg.loss == settings["loss"] and isinstance(cfg.musica_options, MusicaConfig)
    # what a run writes (config.json) reads back to the same config
    again = TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))
    assert again == cfg


def test_old_run_config_reads_back_and_unknown_settings_are_named():
    old = {"arch": "mnv2_heatmap", "loss": "heatmap_mse", "heatmap_size": 4, "musica_options": {}, "crop": {"input_size": 64},
           "curriculum": {"levels": [80, 90]}}
    cfg = TrainConfig.from_dict(old)
    assert cfg.loss == "heatmap_mse" and cfg.crop.input_size == 64 and list(cfg.curriculum.levels) == [80, 90]
    with pytest.raises(ValueError, match=r"unknown settings \['musica_stages'\]"):
        TrainConfig.from_dict({**old, "musica_stages": 3})


#: every TrainConfig field -> the train CLI flag's dest that sets it (None: deliberately not a flag)
CLI_FIELDS = {
    "arch": "arch", "dataset": "dataset", "loss": "loss", "epochs": "epochs", "batch_size": "batch_size",
    "learning_rate": "lr", "weight_decay": None, "val_fraction": "val_fraction", "seed": "seed", "alpha": "alpha",
    "head": "head", "start": "start", "init_weights": "init_weights", "preprocessing": None, "acr_lambda": "acr_lambda",
    "acr_scale": "acr_scale", "workers": "workers", "max_train_faces": "max_train_faces", "heatmap_size": "heatmap_size",
    "heatmap_sigma": "heatmap_sigma", "decoder": "decoder", "heatmap_fg_weight": "heatmap_fg_weight",
    "musica_error_weight": "musica_error_weight", "musica_options": "musica_option", "user_mirror": "mirror",
    "user_norm_points": "norm_points", "crop": "input_size", "augment": "augment", "curriculum": "pca_levels",
    "split": "split", "clip_global_norm": "clip_norm", "ema_momentum": "ema",
    "devices": "devices", "precision": "precision", "image_cache_mb": "image_cache_mb",
}


def test_train_cli_and_train_config_cannot_drift():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(CLI_FIELDS) == set(fields), "a TrainConfig field without a CLI decision (add it to CLI_FIELDS)"
    actions = {a.dest: a for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)}
    d = TrainConfig()
    for name, dest in CLI_FIELDS.items():
        if dest is None:
            continue
        assert dest in actions, f"TrainConfig.{name}: no --{dest.replace('_', '-')} flag"
        default = getattr(d, name)
        if isinstance(default, (int, float, str)) or default is None:
            assert actions[dest].default == default, (name, actions[dest].default, default)
    choices = {"arch": list(TASKS), "loss": LossName.choices(), "head": Head.choices(), "decoder": Decoder.choices()}
    for dest, expected in choices.items():
        assert list(actions[dest].choices) == expected, dest
