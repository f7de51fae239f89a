"""Training checkpoints that survive a kill at any instant, and the run-folder rules.

One file, ``SAVE_PATH/checkpoint.npz``, is the whole resume state of a run: every model
variable (weights, batch-norm statistics, dropout seed states), every optimizer variable
(step counter, Adam moments, learning rate), the number of finished epochs, the
``log.csv`` rows of those epochs, the best-checkpoint record and the run's settings. It is
written to a temporary file, flushed to disk and renamed into place: a kill leaves either
the old or the new checkpoint, never a mix. The one before it is kept as
``checkpoint.prev.npz`` (used when the newest one is unreadable).

Order of one epoch's save (``EpochCheckpoint.on_epoch_end``):

1. ``best.h5`` and ``best.h5.json`` when the monitored value improved (each atomic);
2. the new checkpoint to a temporary file (fsync), the old one renamed to
   ``checkpoint.prev.npz``, the new one renamed to ``checkpoint.npz`` (the commit point);
3. ``log.csv`` rewritten from the checkpoint's rows (atomic).

A kill before the commit resumes from the previous epoch and recomputes this one (with
the same seed the same way: ``best.h5`` is rewritten with the same content); a kill after
it finds every derived file (``log.csv``, ``summary.json``) rebuilt from the checkpoint.

Run-folder rules (:class:`RunFolder`): a fresh run refuses a non-empty folder unless
``overwrite``; ``resume`` on a finished run says so and touches nothing; temporary files
of killed writers are removed when a run starts; an unreadable checkpoint is named in a
:class:`CheckpointError`.

Testing hook: ``ACRLOSS_FAULT=POINT@EPOCH`` sends ``SIGKILL`` to the process when the save
of epoch ``EPOCH`` (1-based; 0 is the initial checkpoint) reaches ``POINT`` (one of
:data:`SAVE_POINTS`); ``ACRLOSS_FAULT=delay@EPOCH=SECONDS`` kills it ``SECONDS`` after that
save began, wherever it then is. ``ACRLOSS_FAULT_TRACE=FILE`` appends each point's time.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from acrloss.config import TrainConfig, is_flat_settings
from acrloss.io import atomic_path, atomic_write_bytes

CHECKPOINT = "checkpoint.npz"
PREVIOUS = "checkpoint.prev.npz"
FORMAT_VERSION = 1
#: the instants of one epoch's save, in order (the fault-injection points)
SAVE_POINTS = ("begin", "best-h5", "best-json", "tmp-written", "prev-moved", "committed", "log", "end")
#: files a run writes in its folder (removed by ``overwrite``)
RUN_OUTPUTS = (CHECKPOINT, PREVIOUS, "best.h5", "best.h5.json", "log.csv", "summary.json", "config.json",
               "optimizer_state.npz", "pca", "backup", "tensorboard")
#: settings that may change between a run and its resume
RESUMABLE_CHANGES = frozenset({"workers", "devices", "image_cache_mb"})
FAULT_ENV = "ACRLOSS_FAULT"
TRACE_ENV = "ACRLOSS_FAULT_TRACE"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (unreadable, from other settings); names the file."""


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (e.g. a fresh run into a non-empty one)."""


# -- fault injection (tests) ----------------------------------------------------------------
class _Faults:
    def __init__(self) -> None:
        self.t0 = 0.0

    def point(self, name: str, epoch: int) -> None:
        trace = os.environ.get(TRACE_ENV)
        if name == "begin":
            self.t0 = time.perf_counter()
        if trace:
            with open(trace, "a") as fh:
                fh.write(f"{epoch} {name} {time.perf_counter() - self.t0:.6f}\n")
        spec = os.environ.get(FAULT_ENV)
        if not spec:
            return
        where, _, delay = spec.partition("=")
        point, _, at = where.partition("@")
        if not at or int(at) != epoch:
            return
        if point == "delay" and name == "begin":
            timer = threading.Timer(float(delay), os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()
        elif point == name:
            os.kill(os.getpid(), signal.SIGKILL)


FAULTS = _Faults()


# -- the checkpoint file ----------------------------------------------------------------------
@dataclass
class CheckpointState:
    """What ``checkpoint.npz`` holds: ``epoch`` finished epochs, their ``log`` rows, the
    ``best`` record (``{"best", "monitor", "epoch"}`` or ``None``), the run's ``config``
    (JSON-ready dict) and the model / optimizer variable values in order."""

    epoch: int
    epochs: int
    config: dict[str, Any]
    log: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    model_values: list[np.ndarray] = field(default_factory=list)
    optimizer_values: list[np.ndarray] = field(default_factory=list)
    path: Path | None = None

    @property
    def finished(self) -> bool:
        return self.epoch >= self.epochs


def _meta(state: CheckpointState) -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "epoch": state.epoch, "epochs": state.epochs, "config": state.config,
            "log": state.log, "best": state.best, "num_model": len(state.model_values),
            "num_optimizer": len(state.optimizer_values)}


def write_checkpoint(folder: Path, state: CheckpointState) -> None:
    """Write ``folder/checkpoint.npz`` atomically (temporary file, fsync, rename), keeping
    the one it replaces as ``checkpoint.prev.npz``."""
    arrays = {"meta": np.frombuffer(json.dumps(_meta(state)).encode(), np.uint8)}
    arrays.update({f"m{i}": v for i, v in enumerate(state.model_values)})
    arrays.update({f"o{i}": v for i, v in enumerate(state.optimizer_values)})
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{CHECKPOINT}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        FAULTS.point("tmp-written", state.epoch)
        if (folder / CHECKPOINT).exists():
            os.replace(folder / CHECKPOINT, folder / PREVIOUS)
        FAULTS.point("prev-moved", state.epoch)
        os.replace(tmp, folder / CHECKPOINT)
        _fsync_dir(folder)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    FAULTS.point("committed", state.epoch)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: Path, arrays: bool = True) -> CheckpointState:
    """Read one checkpoint file; :class:`CheckpointError` names it when it is empty,
    truncated or not a checkpoint. ``arrays=False`` reads the metadata only."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown checkpoint format {meta.get('format')!r}")
            model_values = [data[f"m{i}"] for i in range(meta["num_model"])] if arrays else []
            optimizer_values = [data[f"o{i}"] for i in range(meta["num_optimizer"])] if arrays else []
            return CheckpointState(epoch=int(meta["epoch"]), epochs=int(meta["epochs"]), config=meta["config"],
                                   log=meta["log"], best=meta["best"], model_values=model_values,
                                   optimizer_values=optimizer_values, path=path)
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        if isinstance(exc, OSError) and not path.exists():
            raise CheckpointError(f"{path}: checkpoint not found") from exc
        size = path.stat().st_size if path.exists() else 0
        what = "empty file" if size == 0 else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{path}: unreadable checkpoint ({what})") from exc


def latest_checkpoint(folder: Path, arrays: bool = True) -> CheckpointState | None:
    """The newest readable checkpoint of ``folder`` (``checkpoint.npz``, else
    ``checkpoint.prev.npz``), ``None`` when there is none; :class:`CheckpointError` when
    checkpoint files exist but none is readable (naming each and why)."""
    errors = []
    for name in (CHECKPOINT, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            return read_checkpoint(path, arrays)
        except CheckpointError as exc:
            errors.append(str(exc))
    if errors:
        raise CheckpointError("; ".join(errors) + " (start again with --overwrite, or restore the file)")
    return None


# -- log.csv and the summary, derived from a checkpoint ----------------------------------------
def log_row(epoch: int, logs: dict[str, Any]) -> dict[str, Any]:
    """One ``log.csv`` row as Keras' ``CSVLogger`` writes it: ``epoch`` then the logs by key."""
    row: dict[str, Any] = {"epoch": epoch}
    for key in sorted(logs):
        value = logs[key]
        try:
            row[key] = float(value)
        except (TypeError, ValueError):
            row[key] = str(value)
    return row


def render_log(rows: list[dict[str, Any]]) -> bytes:
    """``log.csv`` bytes of ``rows`` (the columns of the first row, in its order)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue().encode()


def summary_from(state: CheckpointState, **extra: Any) -> dict[str, Any]:
    """A ``summary.json`` of a finished checkpoint (history of all its epochs)."""
    keys = [k for k in (state.log[0] if state.log else {}) if k != "epoch"]
    best = state.best or {}
    return {"best_val_nme": best.get("best"), "best_epoch": best.get("epoch"), "epochs": state.epochs,
            **extra, "history": {k: [float(r[k]) for r in state.log] for k in keys}}


# -- the run folder -------------------------------------------------------------------------
#: settings added after runs were saved without them: their value for such a run
LATER_SETTINGS = {"precision": "float32"}


def _config_diff(saved: dict[str, Any], now: dict[str, Any], also_resumable: frozenset[str] = frozenset()) -> list[str]:
    if is_flat_settings(saved):  # a run started before the nested loss / family configs: read as it is now
        saved = TrainConfig.from_dict(saved).to_dict()
    keys = sorted((set(saved) | set(now)) - RESUMABLE_CHANGES - also_resumable)
    saved = {**LATER_SETTINGS, **saved}
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


def jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from JSON (tuples as lists, enums/paths as strings)."""
    return json.loads(json.dumps(config, default=str))


class RunFolder:
    """The rules of one run folder (see the module docstring).

    ``prepare(resume, overwrite)`` returns the checkpoint to continue from (``None`` for a
    fresh start) after cleaning temporary files; :meth:`finished_run` tells a finished run
    before anything is touched.
    """

    def __init__(self, path: str | os.PathLike, config: dict[str, Any], epochs: int,
                 also_resumable: frozenset[str] = frozenset()) -> None:
        self.path = Path(path)
        self.config = jsonable(config)
        self.epochs = int(epochs)
        # settings the caller has checked may differ from the checkpoint's on resume (beyond
        # RESUMABLE_CHANGES), e.g. ``epochs`` while the run is still in its warm-up (acrloss.train)
        self.also_resumable = frozenset(also_resumable)

    # which files are ours
    def temp_files(self) -> list[Path]:
        """Leftovers of writers killed mid-write (``.NAME.XXXX.tmp`` / ``.best.h5.XXXX.h5``)."""
        if not self.path.is_dir():
            return []
        out = []
        for folder in (self.path, self.path / "pca"):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.is_file() and p.name.startswith(".") and (p.suffix in (".tmp", ".h5", ".npy", ".npz")):
                    out.append(p)
        return sorted(out)

    def clean_temp_files(self) -> list[Path]:
        removed = self.temp_files()
        for p in removed:
            p.unlink(missing_ok=True)
        return removed

    def _check(self, state: CheckpointState) -> None:
        diff = _config_diff(state.config, self.config, self.also_resumable)
        if diff:
            raise CheckpointError(f"{state.path}: saved by a run with other settings ({'; '.join(diff)}); "
                                  "resume with the same settings, or start again with --overwrite")

    def finished_run(self) -> CheckpointState | None:
        """The checkpoint of this folder when the run finished all its epochs and every
        derived file agrees with it (nothing to do, nothing to touch); else ``None``."""
        if not (self.path / CHECKPOINT).is_file():
            return None
        state = latest_checkpoint(self.path, arrays=False)
        if state is None or not state.finished:
            return None
        self._check(state)
        log = self.path / "log.csv"
        if not (log.is_file() and log.read_bytes() == render_log(state.log) and (self.path / "summary.json").is_file()):
            return None
        return state

    def legacy_finished(self) -> dict[str, Any] | None:
        """A run of an older acrloss (no checkpoint file) that finished: its summary."""
        summary = self.path / "summary.json"
        if (self.path / CHECKPOINT).exists() or (self.path / PREVIOUS).exists() or not summary.is_file():
            return None
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            return None
        if (self.path / "backup").exists() or len(data.get("history", {}).get("loss", [])) == 0:
            return None
        return data if int(data.get("epochs", -1)) == self.epochs else None

    def prepare(self, resume: bool, overwrite: bool) -> CheckpointState | None:
        """Make the folder ready; the checkpoint to resume from, or ``None`` (fresh)."""
        if resume and overwrite:
            raise RunFolderError("give resume or overwrite, not both")
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path}: exists and is not a folder")
        entries = sorted(p.name for p in self.path.iterdir()) if self.path.is_dir() else []
        if overwrite:
            for name in RUN_OUTPUTS:
                p = self.path / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
            self.clean_temp_files()
            return None
        if not resume:
            if entries:
                shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
                raise RunFolderError(f"{self.path}: folder is not empty ({shown}); continue it with --resume, "
                                     "replace it with --overwrite, or choose a new --save-path")
            return None
        if not entries:
            return None
        state = latest_checkpoint(self.path)
        if state is None:
            ours = {"config.json", "pca"}
            foreign = [e for e in entries if e not in ours and not e.startswith(".")]
            if foreign:
                raise RunFolderError(f"{self.path}: no {CHECKPOINT} to resume from (found {', '.join(foreign[:5])}; "
                                     "a run of an older acrloss or another program); use --overwrite or a new --save-path")
            self.clean_temp_files()
            return None  # killed before its first checkpoint: nothing was trained yet
        self._check(state)
        if state.path is not None and state.path.name == PREVIOUS and (self.path / CHECKPOINT).exists():
            # the newest checkpoint is unreadable: continue from the one before it (that epoch is redone)
            print(f"warning: {self.path / CHECKPOINT} is unreadable; resuming from {PREVIOUS} "
                  f"(epoch {state.epoch}) and removing it", file=sys.stderr)
            (self.path / CHECKPOINT).unlink()
        self.clean_temp_files()
        return state


# -- the callback -------------------------------------------------------------------------
class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the run's state at the start (epoch 0) and at every epoch end in the order
    of the module docstring; restores ``state`` (when given) at train begin.

    Put it after the callbacks that add to the epoch logs (learning rate, curriculum
    level) and before any that may stop the run. ``monitor`` (lower is better) chooses
    ``best.h5``.
    """

    def __init__(self, folder: RunFolder, state: CheckpointState | None, monitor: str) -> None:
        super().__init__()
        self.folder = folder
        self.state = state
        self.monitor = monitor
        self.log = list(state.log) if state else []
        self.best = dict(state.best) if state and state.best else None

    # variables
    def _optimizer(self):
        opt = self.model.optimizer
        if not opt.built:
            opt.build(self.model.trainable_variables)
        return opt

    def _restore(self, state: CheckpointState) -> None:
        model_vars, opt_vars = self.model.variables, self._optimizer().variables
        for kind, variables, values in (("model", model_vars, state.model_values), ("optimizer", opt_vars, state.optimizer_values)):
            if len(values) != len(variables):
                raise CheckpointError(f"{state.path}: holds {len(values)} {kind} variables, this {kind} has {len(variables)}")
            for var, value in zip(variables, values):
                if tuple(var.shape) != tuple(value.shape):
                    raise CheckpointError(f"{state.path}: {kind} variable {var.path} has shape {tuple(var.shape)}, "
                                          f"the checkpoint {tuple(value.shape)}")
                var.assign(value)

    def _save(self, epoch: int) -> None:
        state = CheckpointState(
            epoch=epoch, epochs=self.folder.epochs, config=self.folder.config, log=list(self.log),
            best=self.best, model_values=[keras.ops.convert_to_numpy(v) for v in self.model.variables],
            optimizer_values=[keras.ops.convert_to_numpy(v) for v in self._optimizer().variables])
        write_checkpoint(self.folder.path, state)
        self.state = state

    def on_train_begin(self, logs=None):
        if self.state is not None:
            self._restore(self.state)
            atomic_write_bytes(self.folder.path / "log.csv", render_log(self.log))  # a kill may have left it behind
        else:
            FAULTS.point("begin", 0)
            self._save(0)
            FAULTS.point("end", 0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        done = epoch + 1
        FAULTS.point("begin", done)
        value = logs.get(self.monitor)
        if value is not None and math.isfinite(float(value)) and (self.best is None or float(value) < self.best["best"]):
            self.best = {"best": float(value), "monitor": self.monitor, "epoch": done}
            path = self.folder.path / "best.h5"
            with atomic_path(path, suffix=".h5") as tmp:
                self.model.save(tmp, overwrite=True)
            FAULTS.point("best-h5", done)
            atomic_write_bytes(self.folder.path / "best.h5.json", json.dumps(self.best, indent=1).encode())
        else:
            FAULTS.point("best-h5", done)
        FAULTS.point("best-json", done)
        self.log.append(log_row(epoch, logs))
        self._save(done)
        atomic_write_bytes(self.folder.path / "log.csv", render_log(self.log))
        FAULTS.point("log", done)
        FAULTS.point("end", done)
