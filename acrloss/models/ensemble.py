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
      -> PointAverage: sum_k w_k points_k  (weights fixed, sum 1; one per member, or one per
         member and point: w_kn, each point's column summing to 1, e.g. per face region)
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

#: named point groups of the iBUG 68-point scheme (0-based indices), for per-region member weights
REGIONS_68: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)), "brows": tuple(range(17, 27)), "nose": tuple(range(27, 36)),
    "eyes": tuple(range(36, 48)), "mouth": tuple(range(48, 68)),
}


def _positive_weight(w: Any) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
        raise ValueError(f"ensemble: every weight must be a finite number > 0, got {w!r}")
    return float(w)


def check_weights(weights: Sequence[float], count: int) -> list[float]:
    """``weights`` as floats after checking: one per member, each finite and > 0, summing to 1
    (within 1e-6); ``ValueError`` naming the problem otherwise."""
    values = list(weights)
    if len(values) != count:
        raise ValueError(f"ensemble: {count} members need {count} weights, got {len(values)}")
    out = [_positive_weight(w) for w in values]
    if abs(sum(out) - 1.0) > 1e-6:
        raise ValueError(f"ensemble: weights must sum to 1, got {out} (sum {sum(out):g})")
    return out


def check_point_weights(weights: Sequence[Sequence[float]], count: int) -> list[list[float]]:
    """Per-point weights ``(count, N)`` after checking: every row the same length ``N``, every
    entry finite and > 0, each point's column summing to 1 (within 1e-6); ``ValueError`` otherwise."""
    rows = [list(r) for r in weights]
    if len(rows) != count:
        raise ValueError(f"ensemble: {count} members need {count} rows of point weights, got {len(rows)}")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"ensemble: every member needs one weight per point, got rows of lengths {sorted(lengths)}")
    rows = [[_positive_weight(w) for w in r] for r in rows]
    for n, column in enumerate(zip(*rows)):
        if abs(sum(column) - 1.0) > 1e-6:
            raise ValueError(f"ensemble: point {n}'s weights must sum to 1, got {list(column)} (sum {sum(column):g})")
    return rows


def region_point_weights(weights: Sequence[float], regions: dict[str, Sequence[float]],
                         num_points: int = 68) -> list[list[float]]:
    """``(K, N)`` per-point weights: ``weights`` (one per member) everywhere, replaced on each
    named region of :data:`REGIONS_68` by that region's own member weights."""
    base = check_weights(weights, len(list(weights)))
    if regions and num_points != 68:
        raise ValueError(f"ensemble: named regions are defined for the 68-point scheme, not {num_points} points")
    rows = [[w] * num_points for w in base]
    for name, values in regions.items():
        if name not in REGIONS_68:
            raise ValueError(f"ensemble: unknown region {name!r}; choose from {sorted(REGIONS_68)}")
        values = check_weights(values, len(base))
        for k, w in enumerate(values):
            for n in REGIONS_68[name]:
                rows[k][n] = w
    return rows


def check_anchor_gate(gate: dict[str, Any] | None, count: int) -> dict[str, Any] | None:
    """``{"member": k, "low": a, "high": b}`` after checking (``0 <= k < count``, ``0 <= a < b``,
    distances in crop units, i.e. fractions of the crop side), or ``None``."""
    if gate is None:
        return None
    if not isinstance(gate, dict) or set(gate) != {"member", "low", "high"}:
        raise ValueError(f"ensemble: anchor_gate must be a dict with keys member, low, high; got {gate!r}")
    member, low, high = gate["member"], gate["low"], gate["high"]
    if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < count:
        raise ValueError(f"ensemble: anchor_gate member must be a member index 0..{count - 1}, got {member!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)) \
            or not 0 <= low < high:
        raise ValueError(f"ensemble: anchor_gate needs 0 <= low < high, got low={low!r}, high={high!r}")
    return {"member": int(member), "low": float(low), "high": float(high)}


def _is_per_point(weights: Sequence[Any]) -> bool:
    return any(isinstance(w, (list, tuple)) or hasattr(w, "__len__") for w in weights)


@keras.saving.register_keras_serializable(package="acrloss")
class PointAverage(keras.layers.Layer):
    """Fixed-weight average of ``K`` members' ``(B, 2N)`` points -> ``(average, stacked, disagreement)``.

    ``member_weights``: ``K`` numbers (one per member) or ``K`` rows of ``N`` numbers (one per
    member and point, :func:`check_point_weights`). ``average``: ``(B, 2N)``; ``stacked``:
    ``(B, K, 2N)``; ``disagreement``: ``(B,)``, the mean over points of the weighted sum over
    members of each member's point distance from the average.
    """

    def __init__(self, member_weights: Sequence[Any], anchor_gate: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        values = list(member_weights)
        self.per_point = _is_per_point(values)
        self.member_weights = (check_point_weights(values, len(values)) if self.per_point
                               else check_weights(values, len(values)))
        self.anchor_gate = check_anchor_gate(anchor_gate, len(values))

    def call(self, members: Sequence[Any]) -> tuple[Any, Any, Any]:
        if len(members) != len(self.member_weights):
            raise ValueError(f"PointAverage: {len(self.member_weights)} weights, {len(members)} inputs")
        stacked = ops.stack([ops.reshape(m, (ops.shape(m)[0], -1)) for m in members], axis=1)  # (B, K, 2N)
        k, n2 = len(self.member_weights), stacked.shape[-1]
        if self.per_point and n2 is not None and 2 * len(self.member_weights[0]) != n2:
            raise ValueError(f"PointAverage: weights for {len(self.member_weights[0])} points, members give {n2 // 2}")
        points = ops.reshape(stacked, (ops.shape(stacked)[0], k, -1, 2))  # (B, K, N, 2)
        w = ops.reshape(ops.convert_to_tensor(self.member_weights, dtype=stacked.dtype), (1, k, -1))  # (1, K, N or 1)
        if self.anchor_gate is not None:
            w = self._gated(points, w)  # (B, K, N or 1)
        average = ops.sum(points * w[..., None], axis=1)  # (B, N, 2)
        dist = ops.sqrt(ops.sum(ops.square(points - average[:, None]), axis=-1) + 1e-12)  # (B, K, N)
        disagreement = ops.mean(ops.sum(dist * w, axis=1), axis=-1)
        return ops.reshape(average, (ops.shape(average)[0], -1)), stacked, disagreement

    def _gated(self, points: Any, w: Any) -> Any:
        """Per-face weights moved toward the anchor member by how far it lies from the others'
        weighted mean: unchanged below ``low``, the anchor alone above ``high``, linear between."""
        gate, k = self.anchor_gate, len(self.member_weights)
        onehot = ops.reshape(ops.one_hot(gate["member"], k, dtype=w.dtype), (1, k, 1))
        others = w * (1.0 - onehot)
        others = others / ops.sum(others, axis=1, keepdims=True)
        rest = ops.sum(points * others[..., None], axis=1)  # (B, N, 2)
        anchor = points[:, gate["member"]]
        gap = ops.mean(ops.sqrt(ops.sum(ops.square(anchor - rest), axis=-1) + 1e-12), axis=-1)  # (B,)
        share = ops.clip((gap - gate["low"]) / (gate["high"] - gate["low"]), 0.0, 1.0)[:, None, None]
        return (1.0 - share) * w + share * onehot

    def compute_output_spec(self, members: Sequence[Any]) -> tuple[Any, Any, Any]:
        b, n2 = members[0].shape[0], members[0].shape[-1]
        dtype = members[0].dtype
        return (keras.KerasTensor((b, n2), dtype=dtype), keras.KerasTensor((b, len(members), n2), dtype=dtype),
                keras.KerasTensor((b,), dtype=dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "member_weights": list(self.member_weights), "anchor_gate": self.anchor_gate}


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


def build_ensemble(members: Sequence[keras.Model], weights: Sequence[Any], input_size: int | None = None,
                   name: str = "ensemble", anchor_gate: dict[str, Any] | None = None) -> keras.Model:
    """One model averaging ``members``' points (see the module docstring).

    Args:
        members: two or more landmark models (square RGB crop in, ``(B, 2N)`` or a dict with
            ``"landmarks"`` out), all with the same ``N``; each keeps its own weights.
        weights: one per member, > 0, summing to 1; or one row of ``N`` point weights per
            member (each point's column summing to 1, :func:`region_point_weights`).
        input_size: the ensemble's crop side; default the largest member input (members
            with a smaller input get a bilinear resize).
        name: the model's name.
        anchor_gate: ``{"member": k, "low": a, "high": b}``: on a face where member ``k``'s
            points lie more than ``a`` (mean distance, fraction of the crop side) from the other
            members' weighted mean, its weight rises linearly to 1 at ``b`` (a robust member
            takes over where the others have converged to a wrong shape); ``None``: fixed weights.
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"ensemble: needs at least two members, got {len(members)}")
    weights = list(weights)
    weights = (check_point_weights(weights, len(members)) if _is_per_point(weights)
               else check_weights(weights, len(members)))
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
    if _is_per_point(weights) and 2 * len(weights[0]) != counts[0]:
        raise ValueError(f"ensemble: point weights for {len(weights[0])} points, the members give {counts[0] // 2}")
    average, stacked, disagreement = PointAverage(weights, anchor_gate=anchor_gate, name="average")(outputs)
    out = {key: keras.layers.Identity(name=key)(value) for key, value in zip(OUTPUT_KEYS, (average, stacked, disagreement))}
    return keras.Model(image, out, name=name)


def is_ensemble(model: Any) -> bool:
    """Whether ``model`` is a Keras model built by :func:`build_ensemble`."""
    try:
        return isinstance(model.get_layer("average"), PointAverage)
    except (ValueError, AttributeError):
        return False
