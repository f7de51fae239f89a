"""scripts/model_cards.py: one card per shipped checkpoint, generated from its JSON and kept current."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cards_module():
    spec = importlib.util.spec_from_file_location("model_cards", ROOT / "scripts" / "model_cards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_cards_match_the_shipped_jsons():
    cards = _cards_module()
    assert cards.main(["--models", str(ROOT / "pre_trained_models"), "--out", str(ROOT / "docs" / "models"), "--check"]) == 0
    for meta_path in (ROOT / "pre_trained_models").glob("*.json"):
        meta = json.loads(meta_path.read_text())
        card = (ROOT / "docs" / "models" / f"{meta['name']}.md").read_text()
        common = meta["results"]["subsets"]["common"]
        assert f"| common | {common['n']} | {common['nme']:.3f} |" in card
        assert meta["eval_command"] in card


def test_check_fails_when_a_figure_changes(tmp_path):
    cards = _cards_module()
    models, out = tmp_path / "models", tmp_path / "cards"
    models.mkdir()
    shutil.copy(ROOT / "pre_trained_models" / "mnv2_acr_300w.json", models)
    assert cards.main(["--models", str(models), "--out", str(out)]) == 0
    assert cards.main(["--models", str(models), "--out", str(out), "--check"]) == 0
    meta = json.loads((models / "mnv2_acr_300w.json").read_text())
    meta["results"]["subsets"]["common"]["nme"] = 3.0
    (models / "mnv2_acr_300w.json").write_text(json.dumps(meta))
    assert cards.main(["--models", str(models), "--out", str(out), "--check"]) == 1
    assert "| common | 554 | 3.000 |" in cards.render_card(meta)


def test_a_card_reads_the_nested_settings_of_newer_runs():
    from acrloss.config import TrainConfig

    cards = _cards_module()
    meta = json.loads((ROOT / "pre_trained_models" / "mnv2_heatmap8_300w.json").read_text())
    nested = dict(meta, settings=TrainConfig.from_dict(meta["settings"]).to_dict())
    assert nested["settings"]["loss"]["name"] == "heatmap_mse"
    card = cards.render_card(nested)
    assert card == cards.render_card(meta) and "| loss | `heatmap_mse` |" in card


def test_a_json_without_results_is_refused():
    cards = _cards_module()
    with pytest.raises(ValueError, match="results"):
        cards.render_card({"name": "x", "settings": {}})


def test_an_ensemble_card_states_its_region_weights_and_anchor_gate():
    cards = _cards_module()
    meta = json.loads((ROOT / "pre_trained_models" / "ensemble_acr_300w.json").read_text())
    plain_ensemble = {k: v for k, v in meta["ensemble"].items() if k not in ("region_weights", "anchor_gate")}
    plain = cards.render_card(dict(meta, ensemble=plain_ensemble))
    assert "region weights" not in plain and "anchor gate" not in plain
    meta["ensemble"] = dict(plain_ensemble, region_weights={"jaw": [0.3, 0.4, 0.3]},
                            anchor_gate={"member": 1, "low": 0.02, "high": 0.035})
    card = cards.render_card(meta)
    assert "| region weights | jaw: 0.3 / 0.4 / 0.3 |" in card
    member = Path(meta["ensemble"]["members"][1]["file"]).stem
    assert f"| anchor gate | member 1 (`{member}`) takes over a face from 0.02 to 0.035" in card
