"""The README stays a short user guide whose figures come from the shipped JSONs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_a_short_guide():
    assert len(README.encode()) <= 12 * 1024


def test_every_relative_link_exists():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def _model_rows() -> dict[str, list[str]]:
    rows = {}
    for line in README.splitlines():
        m = re.match(r"\| `([a-z0-9_]+)`[^|]*\|(.*)\|\s*$", line)
        if m and (ROOT / "pre_trained_models" / f"{m.group(1)}.json").is_file():
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def test_every_shipped_model_has_a_row():
    shipped = {p.stem for p in (ROOT / "pre_trained_models").glob("*.json")}
    assert set(_model_rows()) == shipped


@pytest.mark.parametrize("name", sorted(_model_rows()))
def test_model_row_matches_its_json(name):
    nme, fr, auc, macs = _model_rows()[name][:4]
    meta = json.loads((ROOT / "pre_trained_models" / f"{name}.json").read_text())
    common = meta["results"]["subsets"]["common"]
    assert nme == f"{common['nme']:.2f}"
    assert fr == f"{common['fr10']:.2f}"
    assert auc == f"{common['auc10']:.3f}"
    assert macs == f"{meta['size']['mmacs']:.1f}"
