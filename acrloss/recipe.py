"""The training-recipe levers of issue 12: the optimizer (global-norm gradient clipping, an
exponential moving average of the weights), the EMA-aware validation/best checkpoint, the
resume check, and their command-line flags.

``TrainConfig.clip_global_norm`` becomes the Keras optimizer's ``global_clipnorm`` (the
gradient of all weights together is rescaled to at most that norm).
``TrainConfig.ema_momentum`` turns on the optimizer's ``use_ema`` with that momentum:
after every step ``average = m * average + (1 - m) * weight`` (the first step copies the
weights). With EMA on, :func:`ema_callbacks` puts the averaged weights into the model for
every validation pass and at every epoch end *before* :class:`acrloss.callbacks.BestCheckpoint`
runs, and swaps the raw weights back at the next epoch's start. So the validation NME in
``log.csv``, ``best.h5`` and the final model are the EMA weights, while
``BackupAndRestore`` (which runs first) backs up the raw training weights and
``OptimizerStateBackup`` the averages (they are optimizer variables), so ``--resume``
continues both exactly.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import keras

from acrloss.config import SPLITS, AugmentConfig, TrainConfig

#: config.json fields that must be equal when a run is resumed
RESUME_FIELDS: tuple[str, ...] = ("split", "clip_global_norm", "ema_momentum", "augment")


def build_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """The AdamW optimizer of a run, with the configured clipping and EMA."""
    cfg.validate_recipe()
    kwargs: dict[str, Any] = {}
    if cfg.clip_global_norm is not None:
        kwargs["global_clipnorm"] = float(cfg.clip_global_norm)
    if cfg.ema_momentum is not None:
        kwargs.update(use_ema=True, ema_momentum=float(cfg.ema_momentum))
    return keras.optimizers.AdamW(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, **kwargs)


class ResumableSwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' ``SwapEMAWeights(swap_on_epoch=True)`` that knows a resumed run's state.

    The epoch checkpoint (:class:`acrloss.checkpoint.EpochCheckpoint`, after this callback)
    is taken with the averaged weights swapped into the model; a run resumed from it starts
    in that swapped state, so the first ``on_epoch_begin`` swaps back, exactly as the
    uninterrupted run would have."""

    def __init__(self, resumed: bool = False) -> None:
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = bool(resumed)


def ema_callbacks(cfg: TrainConfig, resumed: bool = False) -> list[keras.callbacks.Callback]:
    """Callbacks to place right before the epoch checkpoint writer: with EMA on,
    :class:`ResumableSwapEMAWeights` (validation and the epoch-end callbacks after it see
    the averaged weights; ``resumed``: the run continues from a checkpoint); otherwise none."""
    if cfg.ema_momentum is None:
        return []
    return [ResumableSwapEMAWeights(resumed)]


def check_resume(save_path: str | Path, cfg: TrainConfig) -> None:
    """On ``--resume``: the recipe settings must be those the run started with (its
    ``config.json``); a mismatch raises ``ValueError`` naming the fields, so a resumed run
    never silently changes its clipping, EMA, split or augmentation."""
    path = Path(save_path) / "config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    current = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig()), default=str))
    diff = []
    for key in RESUME_FIELDS:
        before = saved.get(key, defaults[key])  # runs saved before these settings existed
        if key == "augment" and isinstance(before, dict):
            before = {**defaults["augment"], **before}
        if before != current[key]:
            diff.append(f"{key}: saved {before!r}, now {current[key]!r}")
    if diff:
        raise ValueError(f"{path}: --resume with different recipe settings than the run started with ("
                         + "; ".join(diff) + "); pass the original flags or start a new --save-path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe flags of ``train.py``."""
    d = TrainConfig()
    g = parser.add_argument_group("generalization recipe (issue 12)")
    g.add_argument("--split", default=d.split, choices=list(SPLITS),
                   help="random: fixed-seed --val-fraction of the 300-W train split; loso-lfpw / loso-helen: "
                        "train on the other two sources, validate on all of lfpw/trainset / helen/trainset")
    g.add_argument("--clip-norm", type=float, default=d.clip_global_norm,
                   help="global-norm gradient clipping (the optimizer's global_clipnorm); default off")
    g.add_argument("--ema", type=float, default=d.ema_momentum, metavar="MOMENTUM",
                   help="exponential moving average of the weights with this momentum (e.g. 0.99); validation "
                        "and best.h5 use the averaged weights; default off")
    g.add_argument("--augment", default=None, choices=["default", "robust", "none"],
                   help="augmentation preset (robust: + low resolution, JPEG, motion blur, greyscale, rotations "
                        "up to 35 deg, detector-like box jitter); default: default (none with --no-augment)")


def apply_arguments(args: argparse.Namespace, cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the recipe flags of ``args`` applied (validated)."""
    augment = cfg.augment
    if args.augment is not None:
        if getattr(args, "no_augment", False) and args.augment != "none":
            raise SystemExit("acrloss-train: --no-augment contradicts --augment " + args.augment)
        augment = AugmentConfig.preset(args.augment)
    try:
        return dataclasses.replace(cfg, split=args.split, clip_global_norm=args.clip_norm, ema_momentum=args.ema,
                                   augment=augment)
    except ValueError as exc:
        raise SystemExit(f"acrloss-train: {exc}") from exc
