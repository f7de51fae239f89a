"""MuSiCa builder: the default architecture, point subsets, :func:`build_musica` and stage
access (see :mod:`acrloss.models.musica`)."""
from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

from acrloss.config import MusicaConfig
from acrloss.models.musica.layers import ImagePyramid, InitialState, PatchEncoder
from acrloss.models.musica.sampler import PatchSampler, resolve_points

#: output keys of the model (every one is fed the same targets in training)
OUTPUT_KEYS = ("landmarks", "stages", "errors", "cascade")

#: default architecture (see :func:`build_musica`); chosen for <= 100 M multiply-adds per face
DEFAULTS: dict[str, Any] = {"input_size": 128, **MusicaConfig().model_options()}


# --------------------------------------------------------------------------- model
def _stage_model(index: int, level_shape: tuple, num_points: int, points: list[int], hidden_units: int,
                 patch_size: int, channels: Sequence[int], centre: int, gate_units: int, patch_units: int,
                 normalize_patches: bool) -> keras.Model:
    """One cascade stage as a functional model ``[image, shape, hidden] -> [shape', hidden', error]``."""
    n2 = 2 * num_points
    name = f"stage_{index}"
    image = keras.Input(level_shape, name=f"{name}_image")
    shape = keras.Input((n2,), name=f"{name}_shape")
    hidden = keras.Input((hidden_units,), name=f"{name}_hidden")
    k = len(points)
    L = keras.layers

    patches = PatchSampler(points, patch_size + 2, num_points, normalize=normalize_patches, name=f"{name}_sampler")([image, shape])
    feats = PatchEncoder(patch_size, level_shape[-1], channels, centre, name=f"{name}_encoder")(patches)
    squeeze = L.Dense(gate_units, activation="relu", name=f"{name}_gate_squeeze")(feats)
    gate = L.Dense(int(feats.shape[-1]), activation="sigmoid", name=f"{name}_gate")(squeeze)
    attended = L.Multiply(name=f"{name}_attend")([feats, gate])
    proj = L.Dense(patch_units, activation="relu", name=f"{name}_project")(attended)
    x = L.Concatenate(name=f"{name}_input")([L.Reshape((k * patch_units,), name=f"{name}_flatten")(proj), shape])

    xh = L.Concatenate(name=f"{name}_xh")([x, hidden])
    z = L.Dense(hidden_units, activation="sigmoid", name=f"{name}_update_gate")(xh)
    r = L.Dense(hidden_units, activation="sigmoid", name=f"{name}_reset_gate")(xh)
    rh = L.Multiply(name=f"{name}_reset")([r, hidden])
    cand = L.Dense(hidden_units, activation="tanh", name=f"{name}_candidate")(L.Concatenate(name=f"{name}_xrh")([x, rh]))
    step = L.Multiply(name=f"{name}_step")([z, L.Subtract(name=f"{name}_diff")([cand, hidden])])
    new_hidden = L.Add(name=f"{name}_hidden_out")([hidden, step])

    delta = L.Dense(n2, kernel_initializer="zeros", name=f"{name}_delta")(new_hidden)
    new_shape = L.Add(name=f"{name}_shape_out")([shape, delta])
    error = L.Dense(1, bias_initializer=keras.initializers.Constant(0.05), name=f"{name}_error")(new_hidden)
    return keras.Model([image, shape, hidden], [new_shape, new_hidden, error], name=name)


def build_musica(
    mean_shape: Sequence[float] | np.ndarray,
    input_size: int = DEFAULTS["input_size"],
    num_points: int = 68,
    stage_levels: Sequence[int] = DEFAULTS["stage_levels"],
    stage_points: Sequence[str | Sequence[int]] = DEFAULTS["stage_points"],
    patch_size: int = DEFAULTS["patch_size"],
    channels: Sequence[int] = DEFAULTS["channels"],
    centre: int = DEFAULTS["centre"],
    gate_units: int = DEFAULTS["gate_units"],
    patch_units: int = DEFAULTS["patch_units"],
    hidden_units: int = DEFAULTS["hidden_units"],
    grey: bool = DEFAULTS["grey"],
    normalize_patches: bool = DEFAULTS["normalize_patches"],
    name: str = "musica",
) -> keras.Model:
    """The MuSiCa cascade (see the module docstring): ``(B, S, S, 3)`` RGB [0, 255] ->
    ``{"landmarks", "stages", "errors", "cascade"}``.

    Args:
        mean_shape: ``(2N,)`` normalized initial shape (mean of the training labels).
        input_size: ``S`` (divisible by ``2**max(stage_levels)``).
        num_points: ``N``.
        stage_levels: pyramid level of each stage (0 = full size, 1 = half, 2 = quarter);
            ``T = len(stage_levels)`` stages.
        stage_points: per stage ``"all"``, ``"half"``, ``"coarse"`` or explicit indices.
        patch_size: ``P``, the encoder's patch side in pixels of the stage's level (multiple of 4);
            ``P + 2`` pixels are sampled (the first convolution is "valid").
        channels: the patch encoder's two convolution widths.
        centre: side of the finer encoder level's central window.
        gate_units: bottleneck of the patch attention gate.
        patch_units: ``D``, features per patch after the projection.
        hidden_units: ``H``, the recurrent state.
        grey: grey pyramid (else RGB).
        normalize_patches: standardize each patch.
        name: model name.
    """
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1)
    if mean_shape.size != 2 * num_points:
        raise ValueError(f"build_musica: mean_shape has {mean_shape.size} values, expected {2 * num_points}")
    levels = [int(v) for v in stage_levels]
    if not levels or min(levels) < 0:
        raise ValueError(f"build_musica: stage_levels must be non-empty levels >= 0, got {stage_levels!r}")
    if len(stage_points) != len(levels):
        raise ValueError(f"build_musica: {len(stage_points)} point subsets for {len(levels)} stages")
    num_levels = max(levels) + 1
    if input_size % (2 ** (num_levels - 1)):
        raise ValueError(f"build_musica: input_size {input_size} not divisible by {2 ** (num_levels - 1)}")
    L = keras.layers
    n2 = 2 * num_points
    images = keras.Input((input_size, input_size, 3), name="image")
    pyramid = ImagePyramid(num_levels, grey, name="pyramid")(images)
    shape, hidden = InitialState(mean_shape, hidden_units, name="initial_state")(images)
    shapes, errors = [], []
    for t, (level, pts) in enumerate(zip(levels, stage_points)):
        stage = _stage_model(t + 1, tuple(pyramid[level].shape[1:]), num_points, resolve_points(pts, num_points),
                             hidden_units, patch_size, channels, centre, gate_units, patch_units, normalize_patches)
        shape, hidden, err = stage([pyramid[level], shape, hidden])
        shapes.append(L.Reshape((1, n2), name=f"stage_{t + 1}_row")(shape))
        errors.append(err)
    count = len(levels)
    stages = shapes[0] if count == 1 else L.Concatenate(axis=1, name="stages")(shapes)
    errs = errors[0] if count == 1 else L.Concatenate(axis=-1, name="errors")(errors)
    cascade = L.Concatenate(axis=-1, name="cascade")([stages, L.Reshape((count, 1), name="errors_col")(errs)])
    landmarks = L.Identity(name="landmarks")(shape)
    outputs = {"landmarks": landmarks, "stages": stages, "errors": errs, "cascade": cascade}
    return keras.Model(images, outputs, name=name)


def stage_models(model: keras.Model) -> list[keras.Model]:
    """The stage sub-models ``stage_1 .. stage_T`` of a MuSiCa model, in order."""
    stages = []
    while True:
        try:
            stages.append(model.get_layer(f"stage_{len(stages) + 1}"))
        except ValueError:
            break
    if not stages:
        raise ValueError(f"{model.name}: not a MuSiCa model (no 'stage_1' layer)")
    return stages


def stage_macs(model: keras.Model) -> list[int]:
    """Multiply-adds of each stage for one face (the pyramid and initial state: 0)."""
    from acrloss.flops import count_macs

    return [int(count_macs(s)) for s in stage_models(model)]
