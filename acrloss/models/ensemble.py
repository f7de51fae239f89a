"""Ensembles: several landmark models behind one crop, their points averaged (one checkpoint).

Why: the library's two model families fail differently. A global regressor
(:func:`acrloss.models.build_regressor`, e.g. ``mnv2_acr_300w``) sees the whole crop at once and
rarely loses a face, but places points less precisely; the MuSiCa cascade
(:mod:`acrloss.models.musica`) refines patches around a shape that starts at the mean face,
is precise, and on a few unusual faces (strong pitch, closed eyes) converges to the wrong
shape. Averaging the two removes most of both errors (measured in docs/generalization.md).

Model (``keras.ops`` only; every Keras 3 backend; ``.h5`` save/load; exports like any model)::

    crop (B, S, S, 3) RGB [0, 255], S = the largest member input (the predictor crops at S)
      -> member k: its own input size S_k (bilinear resize when S_k != S), its points (B, 2N)
      -> PointAverage: sum_k w_k points_k  (weights fixed, sum 1)
    outputs {"landmarks": (B, 2N), "members": (B, K, 2N), "disagreement": (B,)}

``disagreement``: the weighted mean over members and points of each member's point distance
from the average, in normalized crop units (a fraction of the crop side); a per-face quality
score (large where the members disagree, i.e. where at least one of them is wrong).

Members must give the same number of points and use the same crop margin (the predictor cuts
one crop for all of them); :func:`build_ensemble` checks the points, the caller the margins
(:mod:`acrloss.tools.ensemble` reads them from the checkpoints' JSON).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import keras
from keras import ops

#: output keys of an ensemble model
OUTPUT_KEYS = ("landmarks", "members", "disagreement")


def check_weights(weights: Sequence[float], count: int) -> list[float]:
    """``weights`` as floats after checking: one per member, each finite and > 0, summing to 1
    (within 1e-6); ``ValueError`` naming the problem otherwise."""
    values = list(weights)
    if len(values) != count:
        raise ValueError(f"ensemble: {count} members need {count} weights, got {len(values)}")
    out = []
    for w in values:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ValueError(f"ensemble: every weight must be a finite number > 0, got {w!r}")
        out.append(float(w))
    if abs(sum(out) - 1.0) > 1e-6:
        raise ValueError(f"ensemble: weights must sum to 1, got {out} (sum {sum(out):g})")
    return out


@keras.saving.register_keras_serializable(package="acrloss")
class PointAverage(keras.layers.Layer):
    """Fixed-weight average of ``K`` members' ``(B, 2N)`` points -> ``(average, stacked, disagreement)``.

    ``average``: ``(B, 2N)``; ``stacked``: ``(B, K, 2N)``; ``disagreement``: ``(B,)``, the
    weighted mean over members and points of each member's point distance from the average.
    """

    def __init__(self, member_weights: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.member_weights = check_weights(member_weights, len(list(member_weights)))

    def call(self, members: Sequence[Any]) -> tuple[Any, Any, Any]:
        if len(members) != len(self.member_weights):
            raise ValueError(f"PointAverage: {len(self.member_weights)} weights, {len(members)} inputs")
        stacked = ops.stack([ops.reshape(m, (ops.shape(m)[0], -1)) for m in members], axis=1)  # (B, K, 2N)
        w = ops.reshape(ops.convert_to_tensor(self.member_weights, dtype=stacked.dtype), (1, -1, 1))
        average = ops.sum(stacked * w, axis=1)
        offsets = stacked - average[:, None, :]
        points = ops.reshape(offsets, (ops.shape(offsets)[0], ops.shape(offsets)[1], -1, 2))
        dist = ops.sqrt(ops.sum(points * points, axis=-1) + 1e-12)  # (B, K, N)
        disagreement = ops.sum(ops.mean(dist, axis=-1) * w[:, :, 0], axis=1)
        return average, stacked, disagreement

    def compute_output_spec(self, members: Sequence[Any]) -> tuple[Any, Any, Any]:
        b, n2 = members[0].shape[0], members[0].shape[-1]
        dtype = members[0].dtype
        return (keras.KerasTensor((b, n2), dtype=dtype), keras.KerasTensor((b, len(members), n2), dtype=dtype),
                keras.KerasTensor((b,), dtype=dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "member_weights": list(self.member_weights)}


def _input_size(model: keras.Model) -> int:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(f"ensemble: member {model.name!r} takes input {shape}; members need square RGB crops")
    return int(shape[1])


def _points_output(output: Any) -> Any:
    if isinstance(output, dict):
        if "landmarks" not in output:
            raise ValueError(f"ensemble: a member's output dict has no 'landmarks' entry (keys: {sorted(output)})")
        return output["landmarks"]
    if isinstance(output, (list, tuple)):
        raise ValueError("ensemble: a member returned several unnamed outputs; name its landmarks 'landmarks'")
    return output


def _unique_names(members: list[keras.Model]) -> list[keras.Model]:
    """The members with distinct names (nested models are saved under their names): a member
    whose name was already taken is rebuilt from its config under ``NAME_<k>`` (same weights)."""
    out, taken = [], set()
    for k, model in enumerate(members, start=1):
        if model.name in taken:
            config = model.get_config()
            config["name"] = f"{model.name}_{k}"
            clone = model.__class__.from_config(config)
            clone.set_weights(model.get_weights())
            model = clone
        taken.add(model.name)
        out.append(model)
    return out


def build_ensemble(members: Sequence[keras.Model], weights: Sequence[float], input_size: int | None = None,
                   name: str = "ensemble") -> keras.Model:
    """One model averaging ``members``' points (see the module docstring).

    Args:
        members: two or more landmark models (square RGB crop in, ``(B, 2N)`` or a dict with
            ``"landmarks"`` out), all with the same ``N``; each keeps its own weights.
        weights: one per member, > 0, summing to 1.
        input_size: the ensemble's crop side; default the largest member input (members
            with a smaller input get a bilinear resize).
        name: the model's name.
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"ensemble: needs at least two members, got {len(members)}")
    weights = check_weights(weights, len(members))
    members = _unique_names(members)
    sizes = [_input_size(m) for m in members]
    size = max(sizes) if input_size is None else int(input_size)
    if size < 8:
        raise ValueError(f"ensemble: input_size must be >= 8, got {input_size!r}")
    image = keras.Input((size, size, 3), name="image")
    outputs, counts = [], []
    for model, side in zip(members, sizes):
        x = image if side == size else keras.layers.Resizing(side, side, interpolation="bilinear",
                                                              name=f"{model.name}_resize")(image)
        points = keras.layers.Flatten(name=f"{model.name}_points")(_points_output(model(x, training=False)))
        counts.append(int(points.shape[-1]))
        outputs.append(points)
    if len(set(counts)) != 1 or counts[0] % 2:
        raise ValueError(f"ensemble: members must give the same number of points, got {[c // 2 for c in counts]}")
    average, stacked, disagreement = PointAverage(weights, name="average")(outputs)
    out = {key: keras.layers.Identity(name=key)(value) for key, value in zip(OUTPUT_KEYS, (average, stacked, disagreement))}
    return keras.Model(image, out, name=name)


def is_ensemble(model: Any) -> bool:
    """Whether ``model`` is a Keras model built by :func:`build_ensemble`."""
    try:
        return isinstance(model.get_layer("average"), PointAverage)
    except (ValueError, AttributeError):
        return False
