#!/usr/bin/env python
"""Write one model card per shipped checkpoint, generated from the checkpoint's JSON.

    python scripts/model_cards.py [--models pre_trained_models] [--out docs/models]

Each card (``docs/models/<name>.md``) states what the model is, how it was trained (every
stage's command), its size and its measured results with the command that made them, so
that no figure is typed by hand. ``--check`` exits 1 when a card on disk differs from what
the JSON gives (used by the tests to keep the cards current).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from acrloss.config import TrainConfig

#: the subsets reported in a card, in this order
SUBSETS = ("common", "challenging", "full")


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def render_card(meta: dict[str, Any]) -> str:
    """The Markdown model card of one checkpoint JSON (as written by ``scripts/ship_checkpoint.py``)."""
    ensemble = meta.get("ensemble")
    for key in ("name", "results") + (() if ensemble else ("settings",)):
        if key not in meta:
            raise ValueError(f"model JSON {meta.get('name', '?')!r} has no {key!r} entry")
    name, results = meta["name"], meta["results"]
    lines = [f"# `{name}`", "",
             "Generated from `pre_trained_models/" + f"{name}.json` by `python scripts/model_cards.py`; "
             "do not edit by hand.", "",
             "| setting | value |", "|---|---|"]
    if ensemble:  # an average of shipped models (acrloss.models.ensemble): no training of its own
        members = ", ".join(f"`{Path(m['file']).stem}` x {m['weight']:g}" for m in ensemble["members"])
        lines += ["| architecture | ensemble (`acrloss.models.ensemble`): the members' points averaged |",
                  f"| members | {members} (each has its own card) |",
                  *(["| region weights | " + ", ".join(f"{r}: " + " / ".join(f"{w:g}" for w in v)
                                                       for r, v in ensemble["region_weights"].items()) + " |"]
                    if ensemble.get("region_weights") else []),
                  *([f"| anchor gate | member {ensemble['anchor_gate']['member']} "
                     f"(`{Path(ensemble['members'][ensemble['anchor_gate']['member']]['file']).stem}`) takes over "
                     f"a face from {ensemble['anchor_gate']['low']:g} to {ensemble['anchor_gate']['high']:g} "
                     "(its mean distance from the others, fraction of the crop side) |"]
                    if ensemble.get("anchor_gate") else []),
                  f"| input | {ensemble['input_size']} px, margin {ensemble['margin']} (members with a smaller input "
                  "get a bilinear resize) |",
                  f"| dataset | {meta.get('data')} |"]
    else:
        settings = TrainConfig.from_dict(meta["settings"])  # flat (older) or nested settings
        lines += [f"| architecture | `{settings.arch}` |",
                  f"| loss | `{settings.loss.name}` |",
                  f"| start | `{settings.start}` |",
                  f"| input | {settings.crop.input_size} px, margin {settings.crop.margin} |",
                  f"| dataset | {meta.get('data', settings.dataset)} |"]
    size = meta.get("size")
    if size:
        lines.append(f"| parameters | {size['params']:,} |")
        lines.append(f"| multiply-adds per face | {_fmt(size['mmacs'], 1)} M (`{size.get('command', '')}`) |")
    lines += ["", "## Results", "",
              f"Normalization: {results.get('normalization', 'outer eye corners (36, 45)')}; "
              f"command: `{meta.get('eval_command', '')}`.", "",
              "| subset | faces | NME % | FR@10 % | AUC@10 |", "|---|---|---|---|---|"]
    subsets = results.get("subsets", {})
    for sub in [s for s in SUBSETS if s in subsets] + [s for s in subsets if s not in SUBSETS]:
        r = subsets[sub]
        lines.append(f"| {sub} | {r['n']} | {_fmt(r['nme'], 3)} | {_fmt(r['fr10'])} | {_fmt(r['auc10'], 3)} |")
    for sub, why in results.get("missing", {}).items():
        lines.append(f"| {sub} | not measured: {why} | | | |")
    if ensemble:
        lines += ["", "## How it was made", "",
                  f"`{meta.get('command')}`", "",
                  "Its members were trained as their cards say; the ensemble itself has no training."]
        if meta.get("license"):
            lines += ["", "## Licence", "", meta["license"]]
        return "\n".join(lines) + "\n"
    training = meta.get("training", {})
    lines += ["", "## Training", ""]
    best = meta.get("best_checkpoint") or {}
    for i, stage in enumerate([*training.get("continues", []), None], start=1):
        if stage is None:
            cmd, epochs, stage_best = training.get("command"), meta.get("epochs_logged"), best
            if training.get("continues"):  # the last stage's own command is the last one of the chain
                cmd = str(cmd).split(", then ")[-1]
        else:
            cmd, epochs, stage_best = stage.get("command"), stage.get("epochs_logged"), stage.get("best_checkpoint") or {}
        lines.append(f"{i}. `{cmd}` — {epochs} epochs; best {stage_best.get('monitor', 'val_nme')} "
                     f"{_fmt(stage_best.get('best'), 3)} at epoch {stage_best.get('epoch')}")
    if training.get("machine"):
        lines += ["", f"Machine: {training['machine']}. Each stage resumes after a kill with `--resume`."]
    if meta.get("license"):
        lines += ["", "## Licence", "", meta["license"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--models", type=Path, default=root / "pre_trained_models", help="folder of <name>.json files")
    ap.add_argument("--out", type=Path, default=root / "docs" / "models", help="folder for the cards")
    ap.add_argument("--check", action="store_true", help="exit 1 if a card differs from its JSON")
    args = ap.parse_args(argv)
    jsons = sorted(p for p in args.models.glob("*.json"))
    if not jsons:
        print(f"model_cards: no *.json under {args.models}", file=sys.stderr)
        return 2
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for path in jsons:
        try:
            card = render_card(json.loads(path.read_text()))
        except (ValueError, KeyError, json.JSONDecodeError) as err:
            print(f"model_cards: {path}: {err}", file=sys.stderr)
            return 2
        target = args.out / f"{path.stem}.md"
        if args.check:
            if not target.is_file() or target.read_text() != card:
                stale.append(str(target))
        else:
            tmp = target.with_suffix(".md.tmp")
            tmp.write_text(card)
            tmp.replace(target)
    if stale:
        print("model_cards: out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
