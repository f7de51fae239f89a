"""Early exit for MuSiCa cascades (:mod:`acrloss.models.musica`): run stage by stage and
stop, per face, as soon as the stage's predicted error falls below a threshold.

Only the faces still above the threshold go on to the next stage: after every stage the
rows of the still-active faces (their pyramid level, shape and hidden state) are gathered
into a smaller batch, so a stopped face costs no further computation (no masking). A face
that reaches the last stage with its predicted error still above ``failure_threshold`` is
flagged as a likely failure.

Thresholds are in the unit the stages predict: the face's NME as a fraction (mean
point-to-point error over the outer-eye-corner distance on 300-W; 0.05 = 5 %).
``threshold=+inf`` stops every face after stage 1; ``threshold=-inf`` runs every stage.

Example::

    from acrloss.early_exit import EarlyExitCascade
    runner = EarlyExitCascade(load_model("musica.h5"))
    result = runner.run(images, threshold=0.05)           # images (M, S, S, 3) RGB [0, 255]
    result.landmarks, result.stopped_at, result.flagged    # (M, 2N) normalized, (M,), (M,)
    result.mean_macs                                       # multiply-adds per face actually spent

Each stage, the pyramid and the full model run through a compiled function of the active
Keras backend (``jax.jit`` of ``stateless_call`` on JAX, ``tf.function`` with XLA on TensorFlow,
plain calls elsewhere), built once from the model's current weights: build the runner
after training or loading.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import numpy as np

from acrloss.models.musica import stage_macs, stage_models

__all__ = ["EarlyExitCascade", "EarlyExitResult", "compiled_call"]


def _to_numpy(x: Any) -> Any:
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x)


def compiled_call(layer: keras.layers.Layer) -> Callable[[Any], Any]:
    """A compiled inference function of ``layer`` (a model or layer): NumPy in, NumPy out
    (same structure as the layer's outputs). Uses the weights ``layer`` holds now."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        fn = jax.jit(lambda tv, ntv, x: layer.stateless_call(tv, ntv, x)[0])  # inference: no dropout/BN in MuSiCa
        return lambda x: _to_numpy(fn(trainable, non_trainable, x))
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: layer(x, training=False), jit_compile=True, reduce_retracing=True)
        return lambda x: _to_numpy(fn(x))
    return lambda x: _to_numpy(layer(x, training=False))


@dataclass
class EarlyExitResult:
    """What :meth:`EarlyExitCascade.run` returns.

    Attributes:
        landmarks: ``(M, 2N)`` normalized crop coordinates of the stage each face stopped at.
        stopped_at: ``(M,)`` 0-based index of that stage.
        errors: ``(M,)`` that stage's predicted error (NME fraction).
        flagged: ``(M,)`` True where the face ran the last stage and its predicted error is
            still above ``failure_threshold``.
        faces_per_stage: ``(T,)`` number of faces each stage actually processed.
        stage_macs: ``(T,)`` multiply-adds of each stage for one face.
        threshold, failure_threshold: the thresholds used.
    """

    landmarks: np.ndarray
    stopped_at: np.ndarray
    errors: np.ndarray
    flagged: np.ndarray
    faces_per_stage: np.ndarray
    stage_macs: np.ndarray
    threshold: float
    failure_threshold: float
    stage_errors: list[np.ndarray] = field(default_factory=list)

    @property
    def num_faces(self) -> int:
        return int(len(self.stopped_at))

    @property
    def stopped_share(self) -> list[float]:
        """Share of the faces that stopped at each stage (sums to 1)."""
        counts = np.bincount(self.stopped_at, minlength=len(self.faces_per_stage))
        return [float(c) / max(self.num_faces, 1) for c in counts]

    @property
    def mean_macs(self) -> float:
        """Multiply-adds per face actually spent: ``sum_t macs_t * faces_t / M``."""
        return float(np.dot(self.stage_macs, self.faces_per_stage) / max(self.num_faces, 1))


class EarlyExitCascade:
    """Stage-by-stage inference of a MuSiCa model with per-face early exit.

    Args:
        model: a MuSiCa model (:func:`acrloss.models.musica.build_musica`, or loaded).
        compiled: run the stages through :func:`compiled_call` (else plain Keras calls).
    """

    def __init__(self, model: keras.Model, compiled: bool = True) -> None:
        self.model = model
        self.stages = stage_models(model)
        try:
            self.pyramid = model.get_layer("pyramid")
            self.initial = model.get_layer("initial_state")
        except ValueError as exc:
            raise ValueError(f"{model.name}: not a MuSiCa model ({exc})") from exc
        size = int(model.input_shape[1])
        self.input_size = size
        self.levels: list[int] = []
        for stage in self.stages:
            side = int(stage.inputs[0].shape[1])
            level = int(round(math.log2(size / side)))
            if side * 2**level != size or level >= self.pyramid.levels:
                raise ValueError(f"{stage.name}: input side {side} is not a pyramid level of {size}")
            self.levels.append(level)
        self.stage_macs = np.asarray(stage_macs(model), np.int64)
        mean_shape = np.asarray(keras.ops.convert_to_numpy(self.initial.mean_shape), np.float32)
        self.mean_shape = mean_shape
        self.hidden_units = int(self.initial.hidden_units)
        call = compiled_call if compiled else (lambda layer: (lambda x: _to_numpy(layer(x, training=False))))
        self._pyramid_fn = call(self.pyramid)
        self._stage_fns = [call(stage) for stage in self.stages]
        self._full_fn = call(model)
        #: rows processed by each stage since construction (cumulative; see ``reset_counters``)
        self.calls = np.zeros(len(self.stages), np.int64)
        #: the (0-based) stages after which a face may stop: every stage but the last
        self.exit_stages: tuple[int, ...] = tuple(range(len(self.stages) - 1))

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def reset_counters(self) -> None:
        """Zero :attr:`calls`."""
        self.calls[:] = 0

    def full(self, images: np.ndarray) -> np.ndarray:
        """All stages for every face (the whole model in one compiled call): ``(M, 2N)``."""
        out = self._full_fn(np.asarray(images, np.float32))
        return np.asarray(out["landmarks"])

    def run(self, images: np.ndarray, threshold: float, failure_threshold: float = 0.10) -> EarlyExitResult:
        """Landmarks with early exit.

        Args:
            images: ``(M, S, S, 3)`` RGB [0, 255] face crops.
            threshold: a face stops after the first stage of :attr:`exit_stages` whose
                predicted error is below this (NME fraction); ``+inf``: stop at the first exit
                (stage 1 by default); ``-inf``: all stages.
            failure_threshold: faces reaching the last stage with a predicted error above
                this are flagged.
        """
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"images must be (M, {self.input_size}, {self.input_size}, 3), got {images.shape}")
        m = len(images)
        t_count = self.num_stages
        levels = self._pyramid_fn(images)
        shape = np.broadcast_to(self.mean_shape, (m, self.mean_shape.size)).copy()
        hidden = np.zeros((m, self.hidden_units), np.float32)
        errors = np.full(m, np.nan, np.float32)
        stopped_at = np.zeros(m, np.int64)
        faces = np.zeros(t_count, np.int64)
        stage_errors: list[np.ndarray] = []
        active = np.arange(m)
        for t, fn in enumerate(self._stage_fns):
            if active.size == 0:
                stage_errors.append(np.zeros(0, np.float32))
                continue
            level = levels[self.levels[t]]
            sub = level if active.size == m else level[active]  # compaction: only the active faces
            new_shape, new_hidden, err = fn([sub, shape[active], hidden[active]])
            err = np.asarray(err, np.float32).reshape(-1)
            faces[t] = active.size
            shape[active] = new_shape
            hidden[active] = new_hidden
            errors[active] = err
            stopped_at[active] = t
            stage_errors.append(err)
            if t < t_count - 1 and t in self.exit_stages:
                active = active[~(err < threshold)]  # NaN keeps going
        self.calls += faces
        flagged = (stopped_at == t_count - 1) & (errors > failure_threshold)
        return EarlyExitResult(shape, stopped_at, errors, flagged, faces, self.stage_macs.copy(), float(threshold),
                               float(failure_threshold), stage_errors)
