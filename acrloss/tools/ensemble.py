"""Build an ensemble checkpoint from trained models (:mod:`acrloss.models.ensemble`).

    acrloss ensemble musica_p8_long_acr_300w mnv2_acr_300w --weights 0.6 0.4 --out ensemble.h5
    acrloss ensemble A B C --weights 0.4 0.35 0.25 --region-weights jaw=0.3,0.5,0.2 --out ens.h5

Each member is a shipped model name or a ``.h5`` / ``.keras`` checkpoint. Their crop margins
must agree (the predictor cuts one crop for all of them): a margin is read from the
checkpoint's settings, a shipped model's ``NAME.json`` or a training run's ``config.json``
beside its ``best.h5``; a member with neither is an error unless ``--margin`` states it.
The checkpoint is written through a temporary file and a rename, with ``OUT.json`` beside it
recording the members (file, SHA-256, weight, input size), the margin and the command.
``--region-weights NAME=w1,...,wK`` replaces ``--weights`` on one named region of the 68-point
scheme (:data:`acrloss.models.ensemble.REGIONS_68`: jaw, brows, nose, eyes, mouth); the JSON
records them under ``region_weights``. ``--anchor-gate K LOW HIGH`` lets member ``K`` (0-based)
take over a face where its points lie far from the others' (see
:func:`acrloss.models.ensemble.build_ensemble`); recorded under ``anchor_gate``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence


class EnsembleError(ValueError):
    """A member or an option the ensemble cannot use; the message names the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when it lies inside it (a shipped member beside the
    ensemble), else absolute."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def member_files(meta_path: str | Path) -> list[Path]:
    """The member checkpoints an ensemble's JSON records (relative entries resolved against
    the JSON's folder)."""
    meta_path = Path(meta_path)
    record = json.loads(meta_path.read_text())
    return [meta_path.parent / m["file"] for m in record["ensemble"]["members"]]


def member_margin(path: Path) -> float | None:
    """The crop margin a checkpoint was trained with: from ``NAME.json`` beside it (a shipped
    model) or ``config.json`` in its folder (a training run); ``None`` when neither exists."""
    from acrloss.config import TrainConfig  # noqa: PLC0415

    for meta_path, key in ((path.with_suffix(".json"), "settings"), (path.parent / "config.json", None)):
        if not meta_path.is_file():
            continue
        try:
            record = json.loads(meta_path.read_text())
            settings = record[key] if key else record
            return float(TrainConfig.from_dict(settings).crop.margin)
        except (ValueError, KeyError, TypeError) as exc:
            raise EnsembleError(f"{meta_path}: cannot read the crop margin of {path.name} ({exc})") from exc
    return None


def parse_region_weights(items: Sequence[str]) -> dict[str, list[float]]:
    """``["jaw=0.3,0.7", ...]`` -> ``{"jaw": [0.3, 0.7], ...}``; ``EnsembleError`` on a malformed
    item or a region given twice (the weights themselves are checked by the model)."""
    out: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            weights = [float(v) for v in values.split(",")]
        except ValueError:
            raise EnsembleError(f"--region-weights {item!r}: expected NAME=w1,w2,... e.g. jaw=0.3,0.7") from None
        if name in out:
            raise EnsembleError(f"--region-weights: region {name!r} given twice")
        out[name] = weights
    return out


def build_ensemble_file(members: Sequence[str], weights: Sequence[float], out: str | Path,
                        margin: float | None = None, name: str | None = None,
                        command: str | None = None,
                        region_weights: dict[str, Sequence[float]] | None = None,
                        anchor_gate: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load ``members``, build the ensemble, write ``out`` and ``out.json``; returns the JSON record.

    ``margin``: the members' crop margin when their settings cannot be found (else it must match them).
    ``region_weights``: member weights per named 68-point region, replacing ``weights`` there.
    ``anchor_gate``: ``{"member": k, "low": a, "high": b}`` (:func:`acrloss.models.build_ensemble`).
    """
    from acrloss.io import atomic_path, write_json  # noqa: PLC0415
    from acrloss.models import build_ensemble, load_model  # noqa: PLC0415
    from acrloss.models.ensemble import check_anchor_gate, check_weights, region_point_weights  # noqa: PLC0415
    from acrloss.presets import resolve_model  # noqa: PLC0415

    out = Path(out)
    if out.suffix not in (".h5", ".keras"):
        raise EnsembleError(f"{out}: the ensemble checkpoint must end in .h5 or .keras")
    region_weights = {k: list(v) for k, v in (region_weights or {}).items()}
    try:
        weights = check_weights(weights, len(members))
        point_weights = region_point_weights(weights, region_weights) if region_weights else None
        anchor_gate = check_anchor_gate(anchor_gate, len(members))
    except ValueError as exc:
        raise EnsembleError(str(exc)) from exc
    paths = [resolve_model(m) for m in members]
    margins = {}
    for path in paths:
        found = member_margin(path)
        if found is None and margin is None:
            raise EnsembleError(f"{path}: no settings beside it to read its crop margin from; give --margin")
        margins[str(path)] = found if found is not None else float(margin)
    values = set(margins.values()) | ({float(margin)} if margin is not None else set())
    if len(values) != 1:
        raise EnsembleError(f"members' crop margins differ: {margins}"
                            + (f" (--margin {margin})" if margin is not None else ""))
    models = []
    for path in paths:
        try:
            models.append(load_model(path))
        except ValueError as exc:
            raise EnsembleError(str(exc)) from exc
    try:
        model = build_ensemble(models, point_weights or weights, name=name or out.stem, anchor_gate=anchor_gate)
    except ValueError as exc:
        raise EnsembleError(f"{out}: {exc}") from exc
    with atomic_path(out, suffix=out.suffix) as tmp:
        model.save(tmp)
    record = {
        "name": name or out.stem,
        "file": out.name,
        "ensemble": {
            "members": [{"file": _relative(p, out.parent), "sha256": _sha256(p), "weight": w, "input_size": int(m.input_shape[1]),
                         "model_name": m.name} for p, w, m in zip(paths, weights, models)],
            "input_size": int(model.input_shape[1]),
            "margin": values.pop(),
            **({"region_weights": region_weights} if region_weights else {}),
            **({"anchor_gate": anchor_gate} if anchor_gate else {}),
        },
        "command": command,
    }
    write_json(out.with_suffix(".json"), record)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="acrloss ensemble", description=__doc__.splitlines()[0],
                                epilog="See docs/generalization.md for how the shipped ensemble's weights were chosen.")
    p.add_argument("members", nargs="+", metavar="MODEL", help="two or more shipped model names or checkpoints")
    p.add_argument("--weights", type=float, nargs="+", required=True, help="one per member, > 0, summing to 1")
    p.add_argument("--region-weights", nargs="+", default=[], metavar="NAME=W1,W2",
                   help="member weights on one 68-point region (jaw, brows, nose, eyes, mouth), replacing --weights there")
    p.add_argument("--anchor-gate", nargs=3, metavar=("K", "LOW", "HIGH"),
                   help="member K (0-based) takes over a face where its points lie more than LOW (mean distance, "
                        "fraction of the crop side) from the others' mean, fully at HIGH")
    p.add_argument("--out", required=True, help="the ensemble checkpoint to write (.h5 or .keras)")
    p.add_argument("--name", help="the model's name (default: the --out file's stem)")
    p.add_argument("--margin", type=float, help="the members' crop margin, for checkpoints without settings beside them")
    args = p.parse_args(argv)
    if len(args.members) < 2:
        p.error("give at least two members")
    gate = None
    if args.anchor_gate:
        try:
            gate = {"member": int(args.anchor_gate[0]), "low": float(args.anchor_gate[1]),
                    "high": float(args.anchor_gate[2])}
        except ValueError:
            p.error(f"--anchor-gate {' '.join(args.anchor_gate)}: expected a member index and two numbers")
    command = "acrloss ensemble " + " ".join(sys.argv[1:] if argv is None else list(argv))
    try:
        record = build_ensemble_file(args.members, args.weights, args.out, margin=args.margin, name=args.name,
                                     command=command, region_weights=parse_region_weights(args.region_weights),
                                     anchor_gate=gate)
    except (EnsembleError, FileNotFoundError) as exc:
        print(f"acrloss ensemble: {exc}", file=sys.stderr)
        return 1
    members = ", ".join(f"{Path(m['file']).name} x {m['weight']:g}" for m in record["ensemble"]["members"])
    print(f"wrote {args.out} ({members}; crop {record['ensemble']['input_size']} px, margin {record['ensemble']['margin']:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
